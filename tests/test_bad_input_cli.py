"""Bad input to the command lines and the demo (issue 22): exit 2 with a message before any synthesis, nothing
written outside the output folder, no finished output lost. A tiny untrained release, real prompts from examples/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import app
from evaluation import run as eval_cli
from evaluation.librispeech import read_jobs as read_eval_jobs
from tests.helpers import make_tiny_release
from tts import batch as batch_cli
from tts import synthesize as synth_cli
from tts.manifests import read_jsonl
from tts.model import TTS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AEW = EXAMPLES / "arctic_aew_a0003.wav"
AEW_TEXT = "For the twentieth time that evening the two men shook hands."


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_tiny_release(tmp_path_factory.mktemp("tts") / "tiny")


def _job(jid: str, **extra) -> dict:
    return {"id": jid, "text": "Hello.", "prompt_audio": str(AEW), "prompt_text": AEW_TEXT, **extra}


def _batch(release: Path, jobs: list, tmp_path: Path, *extra: str) -> tuple[int, Path]:
    jl = tmp_path / "jobs.jsonl"
    jl.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    out = tmp_path / "run" / "out"
    args = f"{jl} --checkpoint {release} --out-dir {out} --max-seconds 0.2 --no-progress".split()
    return batch_cli.main(args + list(extra)), out


def _no_synthesis(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("synthesis started before the input was checked")

    monkeypatch.setattr(TTS, "synthesize", boom)
    monkeypatch.setattr(TTS, "synthesize_batch", boom)


# ------------------------------------------------------------------ 1, 2: batch outputs
def test_batch_outputs_stay_inside_the_output_folder(release, tmp_path, capsys, monkeypatch):
    _no_synthesis(monkeypatch)
    jobs = [
        _job("../escape"),  # default out = id + .wav
        _job("abs", out=str(tmp_path / "abs.wav")),
        _job("up", out="../../x.wav"),
        _job("ok", out="fine.wav"),
    ]
    rc, out = _batch(release, jobs, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2 and "3 job(s) have a bad output path (nothing was synthesized)" in err
    assert (
        "job '../escape'" in err
        and "leaves --out-dir" in err
        and "job 'abs'" in err
        and "absolute path" in err
    )
    assert "job 'up'" in err and "job 'ok'" not in err
    written = [p for p in tmp_path.rglob("*.wav")]
    assert written == [] and not out.exists()


def test_batch_refuses_shared_outputs_up_front_and_loses_nothing(release, tmp_path, capsys, monkeypatch):
    jobs = [
        _job("a", out="same.wav"),
        _job("b", out="same.wav"),
        _job("s", out="summary.json"),
        _job("m", out="m.mp3"),
    ]
    _no_synthesis(monkeypatch)
    rc, out = _batch(release, jobs, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2 and "job 'b'" in err and "the same file as job 'a'" in err
    assert (
        "summary.json is the batch's own file" in err and "job 'm'" in err and "end the name in .wav" in err
    )
    monkeypatch.undo()
    rc, out = _batch(release, [_job("a", out="a.wav"), _job("b", out="b.wav")], tmp_path)
    assert rc == 0 and sf.info(out / "a.wav").frames and sf.info(out / "b.wav").frames


def test_batch_settings_are_checked_before_any_synthesis(release, tmp_path, capsys, monkeypatch):
    _no_synthesis(monkeypatch)
    rc, _ = _batch(release, [_job("a")], tmp_path, "--cfg", "nan")
    assert rc == 2 and "cfg must be a finite number" in capsys.readouterr().err
    rc, _ = _batch(release, [_job("a")], tmp_path, "--seed", str(2**70))
    assert rc == 2 and "seed must be in" in capsys.readouterr().err
    rc, _ = _batch(release, [_job("a")], tmp_path, "--batch-size", "0")
    assert rc == 2 and "--batch-size and --threads must be >= 1" in capsys.readouterr().err
    monkeypatch.undo()
    # a job's own bad seed or speed fails that job alone; the others are synthesized
    rc, out = _batch(release, [_job("a"), _job("b", seed=2**70), _job("c", speed="fast")], tmp_path)
    assert rc == 1 and (out / "a.wav").exists() and not (out / "b.wav").exists()
    fails = {f["id"]: f["error"] for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}
    assert "seed must be in" in fails["b"] and "speed must be a number" in fails["c"]


def test_a_jsonl_line_that_is_not_an_object_names_its_line(release, tmp_path, capsys):
    jl = tmp_path / "jobs.jsonl"
    jl.write_text(json.dumps(_job("a", out="a.wav")) + "\n" + json.dumps(["b", "Hello."]) + "\n")
    rc = batch_cli.main(
        [str(jl), "--checkpoint", str(release), "--out-dir", str(tmp_path / "o"), "--no-progress"]
    )
    assert rc == 2 and f"{jl}:2: a job must be a JSON object" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"jobs.jsonl:2: a job must be a JSON object .* got a list"):
        read_eval_jobs(jl)
    manifest = tmp_path / "m.jsonl"
    row = {"id": "a", "audio": str(AEW), "text": "x", "speaker": "s", "duration": 3.5, "sample_rate": 16000}
    manifest.write_text(json.dumps({**row, "source": "arctic"}) + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=r"m.jsonl:2: bad manifest row: a row must be a JSON object"):
        read_jsonl(manifest)


# ------------------------------------------------------------------ 4: broken release files
def test_clis_exit_2_on_a_truncated_release(release, tmp_path, capsys):
    bad = Path(shutil.copytree(release, tmp_path / "bad"))
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    args = ["--checkpoint", str(bad), "--text", "Hi.", "--prompt", str(AEW), "--prompt-text", AEW_TEXT]
    assert synth_cli.main(args + ["--out", str(tmp_path / "x.wav")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    rc, _ = _batch(bad, [_job("a")], tmp_path)
    assert rc == 2 and "truncated or corrupt" in capsys.readouterr().err
    assert app.main(["--checkpoint", str(bad)]) == 2 and "truncated or corrupt" in capsys.readouterr().err


# ------------------------------------------------------------------ 9: synthesize --out
@pytest.mark.parametrize(
    "out, needle",
    [
        ("x.mp4", "unsupported extension '.mp4'"),
        ("noext", "unsupported extension '(none)'"),
        ("adir", "is a folder"),
        ("afile/x.wav", "cannot create its folder"),
    ],
)
def test_a_bad_out_is_refused_before_synthesis(release, tmp_path, capsys, monkeypatch, out, needle):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("a file, not a folder")
    _no_synthesis(monkeypatch)
    args = ["--checkpoint", str(release), "--text", "Hi.", "--prompt", str(AEW), "--prompt-text", AEW_TEXT]
    assert synth_cli.main(args + ["--out", str(tmp_path / out)]) == 2
    assert needle in capsys.readouterr().err


def test_out_folders_are_made_and_flac_is_written(release, tmp_path):
    args = ["--checkpoint", str(release), "--text", "Hi.", "--prompt", str(AEW), "--prompt-text", AEW_TEXT]
    out = tmp_path / "new" / "folder" / "x.flac"
    assert synth_cli.main(args + ["--out", str(out), "--max-seconds", "0.2"]) == 0
    assert sf.info(out).format == "FLAC" and sf.info(out).frames == 5 * 640


# ------------------------------------------------------------------ 10: evaluation exits non-zero on failed rows
def test_evaluation_score_fails_when_rows_failed(tmp_path, capsys):
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    clip, sr = sf.read(AEW, dtype="float32")
    sf.write(wavs / "a.wav", clip, sr)
    sf.write(wavs / "b.wav", np.zeros((0, 1), np.float32), sr)  # header only
    jobs = [
        {"id": k, "text": AEW_TEXT, "out": f"{k}.wav", "prompt_audio": str(AEW)}
        for k in ("a", "b", "missing")
    ]
    jl = tmp_path / "jobs.jsonl"
    jl.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    args = ["score", "--jobs", str(jl), "--audio-dir", str(wavs), "--out", str(tmp_path / "scores")]
    assert eval_cli.main(args + ["--asr", "none", "--sim", "resemblyzer"]) == 1
    assert "2 of 3 rows failed" in capsys.readouterr().err
    rows = {
        r["id"]: r
        for r in map(json.loads, (tmp_path / "scores" / "utterances.jsonl").read_text().splitlines())
    }
    assert "empty audio" in rows["b"]["error"] and rows["a"]["error"] is None
