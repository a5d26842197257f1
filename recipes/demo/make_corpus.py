"""Build the offline multi-speaker demo corpus (LibriTTS-like) from Debian's speech engines.

    python recipes/demo/make_corpus.py OUT_DIR --hours 20 --speakers 300 --workers 2
    python recipes/demo/make_corpus.py /tmp/tiny --hours 0.02 --speakers 12   # a minute of audio

Output:
    OUT_DIR/audio/{split}/{speaker}/{utt}.wav     mono 16-bit at --sample-rate
    OUT_DIR/{train,valid,test}.jsonl              tts.manifests rows; meta says how each clip was made
    OUT_DIR/speakers.json                         every speaker's recipe (engine, voice file, sox chain, seed)
Splits are speaker-disjoint (every 20th speaker -> test, every 20th+10 -> valid) and sentence-disjoint (a
stable hash of the sentence). Re-running skips finished clips (atomic writes), so an interrupted run resumes.
The real LibriSpeech clips (--real-speech DIR, official transcripts) join train.jsonl; real_speech/dev never does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from corpus import texts as T  # noqa: E402
from corpus import voices as V  # noqa: E402

from tts import manifests as M  # noqa: E402

GENERATOR = "recipes/demo/make_corpus.py v1"
SPLIT_FRACTIONS = {"train": 0.9, "valid": 0.05, "test": 0.05}


@dataclass
class CorpusConfig:
    out: str
    hours: float = 20.0
    speakers: int = 300
    seed: int = 0
    sample_rate: int = 24000
    workers: int = 2
    seconds_per_utt: float = 5.0  # planning estimate only (real durations go in the manifest)
    chunk: int = 40  # utterances per job (one festival process per job)
    real_speech: str | None = None
    whisper_model: str | None = None


def speaker_split(i: int) -> str:
    return "test" if i % 20 == 0 else "valid" if i % 20 == 10 else "train"


def plan(cfg: CorpusConfig) -> tuple[list[V.Speaker], list[tuple[str, V.Speaker, list[tuple[str, str]]]]]:
    """Deterministic plan: speakers and jobs (split, speaker, [(utt_id, text)]). Same config -> same plan."""
    if cfg.hours <= 0:
        raise ValueError(f"--hours must be > 0, got {cfg.hours}")
    if cfg.speakers < 3:
        raise ValueError(f"need >= 3 speakers for three speaker-disjoint splits, got {cfg.speakers}")
    speakers = V.make_speakers(cfg.speakers, cfg.seed)
    by_split = {s: [spk for i, spk in enumerate(speakers) if speaker_split(i) == s] for s in SPLIT_FRACTIONS}
    if not by_split["valid"]:  # small corpora: guarantee every split has a speaker
        by_split["valid"] = [by_split["train"].pop()]
    pool = T.sentence_pool(cfg.seed)
    jobs = []
    for split, frac in SPLIT_FRACTIONS.items():
        n_utt = max(len(by_split[split]), math.ceil(cfg.hours * 3600 * frac / cfg.seconds_per_utt))
        sents = pool[split]
        per_spk: dict[str, list[tuple[str, str]]] = {s.id: [] for s in by_split[split]}
        for k in range(n_utt):
            spk = by_split[split][k % len(by_split[split])]
            n = len(per_spk[spk.id])
            per_spk[spk.id].append((f"{spk.id}_{n:05d}", sents[k % len(sents)]))
        for spk in by_split[split]:
            items = per_spk[spk.id]
            for a in range(0, len(items), cfg.chunk):
                jobs.append((split, spk, items[a : a + cfg.chunk]))
    return speakers, jobs


def wav_path(out: Path, split: str, spk: V.Speaker, utt: str) -> Path:
    return out / "audio" / split / spk.id / f"{utt}.wav"


def run_job(args: tuple[str, str, V.Speaker, list[tuple[str, str]], int]) -> tuple[int, float]:
    """Render the missing clips of one job. Returns (clips made, seconds of audio made)."""
    out, split, spk, items, sr = args
    out = Path(out)
    todo = [(u, t) for u, t in items if not wav_path(out, split, spk, u).exists()]
    if not todo:
        return 0, 0.0
    made, secs = 0, 0.0
    with tempfile.TemporaryDirectory(dir=out / "tmp") as tmp:
        tmp = Path(tmp)
        raw = [(t, tmp / f"{u}.raw.wav") for u, t in todo]
        V.synthesize_raw(spk, raw, out / "espeak", tmp)
        for (u, _), (_, r) in zip(todo, raw):
            final = wav_path(out, split, spk, u)
            final.parent.mkdir(parents=True, exist_ok=True)
            part = final.with_name(f"{u}.part.wav")
            V.postprocess(spk, r, part, sr)
            os.replace(part, final)  # atomic: a finished name always holds a whole file
            made += 1
            secs += sf.info(str(final)).duration
    return made, secs


def build(cfg: CorpusConfig, progress: bool = True) -> dict[str, int]:
    """Generate (or resume) the corpus and write the manifests. Returns rows per split."""
    missing = [e for e, ok in V.engines_available().items() if not ok]
    if missing:
        raise RuntimeError(
            f"missing speech engines {missing}: apt-get install espeak-ng flite festival "
            "festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox"
        )
    out = Path(cfg.out)
    (out / "tmp").mkdir(parents=True, exist_ok=True)
    speakers, jobs = plan(cfg)
    V.espeak_data_dir(out / "espeak", speakers)
    (out / "speakers.json").write_text(json.dumps([s.to_dict() for s in speakers], indent=1))
    t0, made, secs = time.time(), 0, 0.0
    args = [(str(out), split, spk, items, cfg.sample_rate) for split, spk, items in jobs]
    with get_context("spawn").Pool(max(1, cfg.workers)) as pool:
        it = pool.imap_unordered(run_job, args)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(args), desc="corpus jobs")
        for m, s in it:
            made, secs = made + m, secs + s
    wall = time.time() - t0
    if progress:
        print(
            f"made {made} clips, {secs / 60:.1f} min of audio in {wall:.1f} s "
            f"({secs / max(wall, 1e-6):.1f}x real time)"
        )
    return write_manifests(cfg, jobs)


def write_manifests(cfg: CorpusConfig, jobs) -> dict[str, int]:
    out = Path(cfg.out)
    rows: dict[str, list[M.Utterance]] = {s: [] for s in SPLIT_FRACTIONS}
    for split, spk, items in jobs:
        meta = {
            "generator": GENERATOR,
            "engine": spk.engine,
            "voice": spk.voice,
            "speaker_seed": spk.seed,
            "sox": spk.sox,
        }
        for u, text in items:
            p = wav_path(out, split, spk, u)
            if not p.exists():
                continue
            info = sf.info(str(p))
            rows[split].append(
                M.Utterance(
                    u,
                    str(p.relative_to(out)),
                    text,
                    spk.id,
                    info.duration,
                    info.samplerate,
                    f"demo/{spk.engine}",
                    "generated",
                    meta=meta,
                )
            )
    if cfg.real_speech:
        real = M.real_speech(cfg.real_speech)  # the LibriSpeech training clips only; dev/ stays held out
        if any(r.transcript_source != "official" for r in real):
            real = transcribe_missing(real, cfg.whisper_model)
        rows["train"].extend(real)
    return {s: M.write_jsonl(r, out / f"{s}.jsonl") for s, r in rows.items()}


def transcribe_missing(rows: list[M.Utterance], model_dir: str | None) -> list[M.Utterance]:
    """Fill empty transcripts with faster-whisper (CTranslate2 'base' model from a local folder); such rows
    are flagged transcript_source='whisper-base'. Rows that still have no text are dropped."""
    todo = [r for r in rows if not r.text]
    if not todo:
        return rows
    if not model_dir:
        raise ValueError(
            f"{len(todo)} clips have no transcript; pass --whisper-model DIR (faster-whisper base)"
        )
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=1)
    for r in todo:
        segs, _ = model.transcribe(r.audio, language="en", beam_size=5)
        r.text = " ".join(s.text.strip() for s in segs).strip()
        r.transcript_source = "whisper-base"
    return [r for r in rows if r.text]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--hours", type=float, default=20.0)
    p.add_argument("--speakers", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=24000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--real-speech",
        default=None,
        help="folder of the team's real clips, e.g. REAL_SPEECH_DIR (its LibriSpeech part joins train)",
    )
    p.add_argument("--whisper-model", default=None, help="faster-whisper model folder for clips without text")
    a = p.parse_args(argv)
    cfg = CorpusConfig(
        a.out,
        a.hours,
        a.speakers,
        a.seed,
        a.sample_rate,
        a.workers,
        real_speech=None if a.real_speech in (None, "none") else a.real_speech,
        whisper_model=a.whisper_model,
    )
    counts = build(cfg)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
