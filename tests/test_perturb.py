"""Speed perturbation of real speech (tts.perturb): the audio is the same speech played faster or slower (pitch
and length move by the factor), every copy is a new speaker, held-out dev speakers stay out, reruns resume."""

from __future__ import annotations

import json
import os

import librosa
import numpy as np
import pytest
import soundfile as sf

from tts.data import load_audio
from tts.manifests import by_speaker, read_jsonl, write_jsonl
from tts.perturb import main, perturb, perturb_manifest, speed_ratio
from tts.real_voices import Holdout, check_no_heldout, split

SUBSETS = ("librispeech_dev-clean-2", "speechocean762")
PLAN = (Holdout("librispeech_dev-clean-2", 1, min_utts=3), Holdout("speechocean762", 1, min_utts=3))  # in-repo clips


@pytest.fixture(scope="module")
def rows(real_speech_dir):
    train, dev = split(real_speech_dir, SUBSETS, PLAN)
    return train[:4], dev


def _median_f0(wav: np.ndarray, sr: int) -> float:
    f0, voiced, _ = librosa.pyin(wav, fmin=60, fmax=400, sr=sr, frame_length=1024)
    return float(np.nanmedian(f0[voiced]))


def test_perturb_moves_length_and_pitch_by_the_factor(rows):
    u = rows[0][0]
    wav, sr = load_audio(u)
    wav = wav[: 3 * sr]  # 3 s of a real reader
    f0 = _median_f0(wav, sr)
    for speed in (0.9, 1.1):
        y = perturb(wav, speed)
        assert y.dtype == np.float32
        assert abs(len(y) - len(wav) / speed) <= 2
        ratio = _median_f0(y, sr) / f0
        assert abs(ratio - speed) < 0.03, (speed, ratio)
        # the same speech: played back at the original speed it matches the recording
        back = perturb(y, 1 / speed)
        n = min(len(back), len(wav))
        corr = np.corrcoef(back[:n], wav[:n])[0, 1]
        assert corr > 0.95, corr


def test_speed_ratio_refuses_out_of_range():
    assert speed_ratio(0.9) == speed_ratio(9 / 10)
    with pytest.raises(ValueError, match="speed must be in"):
        speed_ratio(3.0)


def test_manifest_copies_are_new_speakers_and_resume(rows, tmp_path):
    train, _ = rows
    out = perturb_manifest(train, tmp_path, speeds=(0.9, 1.1), progress=False)
    assert out[: len(train)] == list(train)
    new = out[len(train) :]
    assert len(new) == 2 * len(train)
    for r in new:
        src = r.meta["perturbed_from"]
        orig = next(t for t in train if t.id == src["id"])
        assert r.speaker == f"{orig.speaker}_sp{src['speed']:g}" and r.id == f"{orig.id}_sp{src['speed']:g}"
        info = sf.info(r.audio)
        assert info.samplerate == orig.sample_rate and info.channels == 1
        assert abs(r.duration - orig.duration / src["speed"]) < 0.01
    # cross-sentence pairs never mix speeds or speakers: each perturbed speaker holds one speed of one person
    for spk, rs in by_speaker(new).items():
        assert {(r.meta["perturbed_from"]["speaker"], r.meta["perturbed_from"]["speed"]) for r in rs} == {
            (spk.rsplit("_sp", 1)[0], float(spk.rsplit("_sp", 1)[1]))
        }
    # a rerun keeps what was written (an interrupted run resumes) and gives the same rows
    mtimes = {r.audio: os.stat(r.audio).st_mtime_ns for r in new}
    again = perturb_manifest(train, tmp_path, speeds=(0.9, 1.1), progress=False)
    assert again == out
    assert {r.audio: os.stat(r.audio).st_mtime_ns for r in new} == mtimes
    with pytest.raises(ValueError, match="already perturbed"):
        perturb_manifest(new[:1], tmp_path / "twice", speeds=(1.1,), progress=False)


def test_heldout_speakers_and_their_copies_are_refused(rows, tmp_path):
    train, dev = rows
    heldout = {r.speaker for r in dev}
    with pytest.raises(ValueError, match="held-out dev speakers"):
        perturb_manifest(dev[:1], tmp_path, heldout=heldout, progress=False)
    # a perturbed copy of a dev speaker made without the list is still refused by the trainer's guard
    copies = perturb_manifest(dev[:1], tmp_path, speeds=(1.1,), progress=False)[1:]
    with pytest.raises(ValueError, match=dev[0].speaker):
        check_no_heldout(copies, heldout)
    check_no_heldout(perturb_manifest(train[:1], tmp_path, speeds=(1.1,), progress=False), heldout)


def test_cli_writes_manifest_and_refuses_bad_speed(rows, tmp_path, capsys):
    train, _ = rows
    src = tmp_path / "in.jsonl"
    write_jsonl(train[:2], src)
    assert main([str(src), "--out", str(tmp_path / "sp"), "--speeds", "1.1", "--no-progress"]) == 0
    got = read_jsonl(tmp_path / "sp" / "train.jsonl")
    assert [r.id for r in got] == [r.id for r in train[:2]] + [r.id + "_sp1.1" for r in train[:2]]
    assert f"4 rows, {len({r.speaker for r in got})} speakers" in capsys.readouterr().out
    assert main([str(src), "--out", str(tmp_path / "bad"), "--speeds", "1"]) == 2
    assert "speed 1" in capsys.readouterr().err
    assert json.loads((tmp_path / "sp" / "train.jsonl").read_text().splitlines()[-1])["meta"]["perturbed_from"]
