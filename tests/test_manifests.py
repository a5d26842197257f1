"""Manifest builders on fixtures built here in the official LibriSpeech / LibriTTS / Libriheavy layouts
from the real LibriSpeech clips."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tts import manifests as M

N_CLIPS = 8


@pytest.fixture(scope="module")
def clips(real_speech_dir: Path) -> list[dict]:
    with open(real_speech_dir / "librispeech_train-clean-100" / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    for r in rows:
        r["path"] = real_speech_dir / "librispeech_train-clean-100" / r["file"]
    # a mix of durations on both sides of the 4-10 s window
    rows.sort(key=lambda r: float(r["duration_s"]))
    idx = np.linspace(0, len(rows) - 1, N_CLIPS).round().astype(int)
    return [rows[i] for i in idx]


@pytest.fixture()
def librispeech_root(tmp_path: Path, clips: list[dict]) -> Path:
    """LibriSpeech/test-clean/SPK/CHAP/SPK-CHAP-UTT.flac (symlinks) + SPK-CHAP.trans.txt."""
    root = tmp_path / "LibriSpeech" / "test-clean"
    for r in clips:
        d = root / r["speaker_id"] / r["chapter_id"]
        d.mkdir(parents=True)
        (d / f"{r['utterance_id']}.flac").symlink_to(r["path"])
        (d / f"{r['speaker_id']}-{r['chapter_id']}.trans.txt").write_text(
            f"{r['utterance_id']} {r['transcript']}\n"
        )
    return root


def test_librispeech(librispeech_root: Path, clips: list[dict]) -> None:
    rows = M.librispeech(librispeech_root)
    assert len(rows) == N_CLIPS
    want = {r["utterance_id"]: r for r in clips}
    for u in rows:
        ref = want[u.id]
        assert u.text == ref["transcript"] and u.speaker == ref["speaker_id"]
        assert u.duration == pytest.approx(float(ref["duration_s"]), abs=1e-3)
        assert (
            u.sample_rate == 16000
            and u.source == "librispeech/test-clean"
            and u.transcript_source == "official"
        )
        assert Path(u.audio).exists()


def test_test_clean_4_10_subset(librispeech_root: Path, clips: list[dict]) -> None:
    rows = M.librispeech_test_clean_4_10(librispeech_root)
    expect = {r["utterance_id"] for r in clips if 4.0 <= float(r["duration_s"]) <= 10.0}
    assert {u.id for u in rows} == expect
    assert 0 < len(rows) < N_CLIPS  # the fixture straddles the window


def test_librispeech_errors(tmp_path: Path, librispeech_root: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        M.librispeech(tmp_path / "nope")
    with pytest.raises(ValueError, match="trans.txt"):
        M.librispeech(tmp_path)
    t = next(librispeech_root.glob("*/*/*.trans.txt"))
    t.write_text(t.read_text() + f"{t.name.split('.')[0]}-9999 MISSING AUDIO\n")
    with pytest.raises(ValueError, match="missing audio"):
        M.librispeech(librispeech_root)


@pytest.mark.parametrize("text", ["normalized", "original"])
def test_libritts(tmp_path: Path, clips: list[dict], text: str) -> None:
    """LibriTTS(-R)/dev-clean/SPK/CHAP/SPK_CHAP_000000_000000.wav + .normalized.txt + .original.txt."""
    root = tmp_path / "LibriTTS_R" / "dev-clean"
    for k, r in enumerate(clips[:4]):
        d = root / r["speaker_id"] / r["chapter_id"]
        d.mkdir(parents=True)
        stem = f"{r['speaker_id']}_{r['chapter_id']}_{k:06d}_{0:06d}"
        wav, sr = sf.read(str(r["path"]), dtype="int16")
        sf.write(str(d / f"{stem}.wav"), wav, sr, subtype="PCM_16")
        (d / f"{stem}.normalized.txt").write_text(r["transcript"].capitalize() + ".")
        (d / f"{stem}.original.txt").write_text(r["transcript"].lower())
    (d / f"{r['speaker_id']}_{r['chapter_id']}_{9:06d}_{0:06d}.wav").symlink_to(d / f"{stem}.wav")  # no text
    rows = M.libritts(root, text=text)
    assert len(rows) == 4 and rows[0].source == "libritts/dev-clean"
    by_id = {u.id: u for u in rows}
    for k, r in enumerate(clips[:4]):
        u = by_id[f"{r['speaker_id']}_{r['chapter_id']}_{k:06d}_{0:06d}"]
        assert u.speaker == r["speaker_id"]
        assert u.text == (
            r["transcript"].capitalize() + "." if text == "normalized" else r["transcript"].lower()
        )
        assert u.duration == pytest.approx(float(r["duration_s"]), abs=1e-3)
    with pytest.raises(ValueError, match="normalized"):
        M.libritts(root, text="upper")


def test_libriheavy(tmp_path: Path, clips: list[dict]) -> None:
    """Libriheavy cuts: lhotse MonoCuts over a long recording, path relative to the audio root."""
    audio_root = tmp_path / "librilight"
    rel = Path("small") / clips[-1]["speaker_id"] / "book_64kb" / "chapter_01.flac"
    (audio_root / rel).parent.mkdir(parents=True)
    (audio_root / rel).symlink_to(clips[-1]["path"])
    total = float(clips[-1]["duration_s"])
    cuts = []
    for k, (start, dur) in enumerate([(0.0, 3.0), (3.5, 4.25), (8.0, total - 8.0)]):
        rec_id = f"small/{clips[-1]['speaker_id']}/book_64kb/chapter_01"
        sup = {
            "id": f"{rec_id}_{k}",
            "recording_id": rec_id,
            "start": 0.0,
            "duration": dur,
            "channel": 0,
            "speaker": clips[-1]["speaker_id"],
            "language": "English",
            "custom": {"texts": [f"Original Text {k}.", f"NORMALIZED TEXT {k}"], "pre_texts": ["..."]},
        }
        rec = {
            "id": rec_id,
            "sources": [{"type": "file", "channels": [0], "source": str(rel)}],
            "sampling_rate": 16000,
            "num_samples": int(total * 16000),
            "duration": total,
            "channel_ids": [0],
        }
        cuts.append(
            {
                "id": f"{rec_id}_{k}",
                "start": start,
                "duration": dur,
                "channel": 0,
                "supervisions": [sup],
                "recording": rec,
                "type": "MonoCut",
            }
        )
    path = tmp_path / "libriheavy_cuts_small.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(c) + "\n" for c in cuts)
    rows = M.libriheavy(path, audio_root)
    assert [u.offset for u in rows] == [0.0, 3.5, 8.0]
    assert [u.text for u in rows] == ["Original Text 0.", "Original Text 1.", "Original Text 2."]
    assert rows[1].duration == 4.25 and rows[1].source == "libriheavy/libriheavy_cuts_small"
    assert all(Path(u.audio).exists() and u.speaker == clips[-1]["speaker_id"] for u in rows)
    assert M.libriheavy(path, audio_root, text="normalized")[2].text == "NORMALIZED TEXT 2"
    # offsets survive the JSONL round trip; offset-free rows do not carry the key
    M.write_jsonl(rows, tmp_path / "lh.jsonl")
    assert [u.offset for u in M.read_jsonl(tmp_path / "lh.jsonl")] == [0.0, 3.5, 8.0]
    assert "offset" not in (tmp_path / "lh.jsonl").read_text().splitlines()[0]


def test_real_speech_rows(real_speech_dir: Path, real_manifest) -> None:
    train = M.real_speech(real_speech_dir)
    n = len(real_manifest("librispeech_train-clean-100"))  # 251 in the full folder, 61 in tests/data
    assert len(train) == n and len(M.speaker_map(train)) == n
    assert all(u.transcript_source == "official" and Path(u.audio).exists() for u in train)
    dev = M.real_speech(real_speech_dir, subsets=("dev",))
    assert len(dev) == len(real_manifest("dev")) and {u.speaker for u in dev} == {"LJ", "arctic_aew", "arctic_axb", "jfk"}
    assert {u.sample_rate for u in dev if u.speaker == "LJ"} <= {22050, 24000}
    assert not {u.audio for u in dev} & {u.audio for u in train}
    with pytest.raises(ValueError, match="not found"):
        M.real_speech(real_speech_dir, subsets=("nope",))


def test_jsonl_round_trip_filters_and_cli(tmp_path: Path, librispeech_root: Path) -> None:
    rows = M.librispeech(librispeech_root)
    out = tmp_path / "m.jsonl"
    assert M.write_jsonl(rows, out) == len(rows)
    back = M.read_jsonl(out)
    assert [u.to_json() for u in back] == [u.to_json() for u in rows]
    assert set(json.loads(out.read_text().splitlines()[0])) == {
        "id",
        "audio",
        "text",
        "speaker",
        "duration",
        "sample_rate",
        "source",
        "transcript_source",
    }
    short = M.filter_duration(rows, 0, 5)
    assert short and all(u.duration <= 5 for u in short) and len(short) < len(rows)
    with pytest.raises(ValueError, match="min duration"):
        M.filter_duration(rows, 5, 1)
    spk = M.speaker_map(rows)
    assert sorted(spk.values()) == list(range(len(spk)))
    M.main(
        [
            "librispeech",
            str(librispeech_root),
            str(tmp_path / "cli.jsonl"),
            "--min-duration",
            "4",
            "--max-duration",
            "10",
        ]
    )
    assert {u.id for u in M.read_jsonl(tmp_path / "cli.jsonl")} == {
        u.id for u in M.librispeech_test_clean_4_10(librispeech_root)
    }


def test_bad_rows_rejected(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text(
        json.dumps(
            {
                "id": "x",
                "audio": "a.wav",
                "text": "t",
                "speaker": "s",
                "duration": 1.0,
                "sample_rate": 16000,
                "source": "s",
                "colour": "red",
            }
        )
        + "\n"
    )
    with pytest.raises(ValueError, match="unknown key"):
        M.read_jsonl(p)
    with pytest.raises(ValueError, match="duration"):
        M.Utterance("x", "a.wav", "t", "s", 0.0, 16000, "src")
