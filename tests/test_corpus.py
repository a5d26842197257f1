"""Offline demo corpus generator: reproducible speakers, disjoint splits, a tiny real build, resume."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes" / "demo"))

import make_corpus as MC  # noqa: E402
from corpus import texts as T  # noqa: E402
from corpus import voices as V  # noqa: E402

from tts import manifests as M  # noqa: E402

_missing = [b for b in ("espeak-ng", "flite", "festival", "sox") if shutil.which(b) is None]
needs_engines = pytest.mark.skipif(
    bool(_missing), reason=f"speech engines missing: {_missing} (apt-get install ...)"
)


def test_speakers_reproducible_and_distinct() -> None:
    a, b = V.make_speakers(300, seed=0), V.make_speakers(300, seed=0)
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b]
    c = V.make_speakers(300, seed=1)
    assert [s.espeak_variant for s in a if s.engine == "espeak"] != [
        s.espeak_variant for s in c if s.engine == "espeak"
    ]
    esp = [s for s in a if s.engine == "espeak"]
    assert len(esp) > 200 and len({s.espeak_variant.split("\n", 1)[1] for s in esp}) == len(esp)
    assert {s.voice for s in a if s.engine == "flite"} == set(V.FLITE_VOICES)
    assert {s.voice for s in a if s.engine == "festival"} == set(V.FESTIVAL_VOICES)
    assert len({s.id for s in a}) == 300
    with pytest.raises(ValueError, match="at least one"):
        V.make_speakers(0)


def test_generated_sentences_have_numbers_and_are_deterministic() -> None:
    g = T.generated_sentences(50, seed=3)
    assert g == T.generated_sentences(50, seed=3) and len(set(g)) == 50
    assert sum(any(ch.isdigit() for ch in s) for s in g) == 50


def test_plan_is_speaker_and_sentence_disjoint() -> None:
    cfg = MC.CorpusConfig(out="unused", hours=0.5, speakers=60, seed=0)
    speakers, jobs = MC.plan(cfg)
    spk = {s: set() for s in MC.SPLIT_FRACTIONS}
    sent = {s: set() for s in MC.SPLIT_FRACTIONS}
    for split, sp, items in jobs:
        spk[split].add(sp.id)
        sent[split].update(t for _, t in items)
    for a, b in [("train", "valid"), ("train", "test"), ("valid", "test")]:
        assert not spk[a] & spk[b] and not sent[a] & sent[b]
    assert all(spk.values()) and len(set().union(*spk.values())) == 60
    assert MC.plan(cfg)[1] == jobs  # deterministic
    with pytest.raises(ValueError, match="hours"):
        MC.plan(MC.CorpusConfig(out="x", hours=0))


@needs_engines
def test_tiny_build_resume_and_manifests(tmp_path: Path, real_speech_dir: Path, real_manifest) -> None:
    # 32 speakers: indices 3/10/17/24 are flite voices, 31 a festival voice (plus test/valid espeak speakers)
    cfg = MC.CorpusConfig(
        out=str(tmp_path / "c"),
        hours=0.004,
        speakers=32,
        workers=2,
        sample_rate=16000,
        real_speech=str(real_speech_dir),
    )
    counts = MC.build(cfg, progress=False)
    n_real = len(real_manifest("librispeech_train-clean-100"))
    assert counts["valid"] >= 1 and counts["test"] >= 2 and counts["train"] > n_real
    rows = {s: M.read_jsonl(tmp_path / "c" / f"{s}.jsonl") for s in counts}
    gen = {s: [r for r in rows[s] if r.transcript_source == "generated"] for s in rows}
    engines = {r.meta["engine"] for r in gen["train"]}
    assert engines == {"espeak", "flite", "festival"}
    for r in gen["train"][:40] + gen["test"]:
        w, sr = sf.read(r.audio)
        assert sr == 16000 == r.sample_rate and w.ndim == 1
        assert r.duration == pytest.approx(len(w) / sr) and 0.5 < r.duration < 20
        assert 0.05 < np.abs(w).max() <= 1.0 and np.sqrt(np.mean(w**2)) > 0.01  # not silence
    # real LibriSpeech clips join train with official text; the held-out dev set never does
    real = [r for r in rows["train"] if r.source.startswith("real_speech")]
    assert len(real) == n_real and all(r.transcript_source == "official" for r in real)
    assert not any("dev" in r.source for s in rows for r in rows[s])
    spk = {s: {r.speaker for r in gen[s]} for s in gen}
    assert not spk["train"] & spk["test"] and not spk["valid"] & spk["test"]
    # different speakers reading differ audibly: same text, different spectra
    first = {}
    for r in gen["train"]:
        first.setdefault(r.meta["engine"], r)
    cents = [_centroid(r.audio) for r in first.values()]
    assert np.ptp(cents) > 50.0
    # resume: nothing to redo; a deleted clip is made again, finished clips are untouched
    victim = Path(gen["train"][0].audio)
    keep = Path(gen["train"][1].audio)
    mtime = keep.stat().st_mtime_ns
    victim.unlink()
    counts2 = MC.build(cfg, progress=False)
    assert counts2 == counts and victim.exists() and keep.stat().st_mtime_ns == mtime
    assert not list((tmp_path / "c").rglob("*.part.wav"))


def _centroid(path: str) -> float:
    w, sr = sf.read(path)
    spec = np.abs(np.fft.rfft(w * np.hanning(len(w))))
    f = np.fft.rfftfreq(len(w), 1 / sr)
    return float((spec * f).sum() / spec.sum())


def test_missing_transcripts_need_a_whisper_model() -> None:
    rows = [M.Utterance("a", "/nonexistent.flac", "", "s", 1.0, 16000, "x", "missing")]
    with pytest.raises(ValueError, match="whisper-model"):
        MC.transcribe_missing(rows, None)
    ok = [M.Utterance("b", "/nonexistent.flac", "HELLO", "s", 1.0, 16000, "x")]
    assert MC.transcribe_missing(ok, None) == ok
