"""The synthesis CLIs on a tiny untrained release with real prompts: output files, errors, resumable batches."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

from tests.helpers import make_tiny_release
from tts import batch as batch_cli
from tts import synthesize as synth_cli

LJ1_TEXT = "Printing, in the only sense with which we are at present concerned,"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_tiny_release(tmp_path_factory.mktemp("tts") / "tiny")


def test_synthesize_cli_writes_wav(release, real_speech_dir, tmp_path, capsys):
    out = tmp_path / "o" / "out.wav"
    prompt = real_speech_dir / "dev" / "coqui__LJ001-0001.wav"
    args = ["--checkpoint", str(release), "--text", "Hello.", "--prompt", str(prompt)]
    rc = synth_cli.main(args + ["--prompt-text", LJ1_TEXT, "--out", str(out), "--max-seconds", "0.4"])
    assert rc == 0
    wav, sr = sf.read(out)
    assert sr == 16000 and len(wav) == 10 * 640
    bad = ["--checkpoint", str(release), "--text", " ", "--prompt", str(prompt), "--prompt-text", "x"]
    rc = synth_cli.main(bad + ["--out", str(out)])
    assert rc == 2 and "text is empty" in capsys.readouterr().err


def test_batch_cli_resumes_and_isolates_a_failing_job(release, real_speech_dir, tmp_path):
    dev = real_speech_dir / "dev"
    jobs = [
        {
            "id": "a",
            "text": "One.",
            "prompt_audio": str(dev / "coqui__LJ001-0001.wav"),
            "prompt_text": LJ1_TEXT,
            "out": "a.wav",
            "ref_audio": "ignored",
            "protocol": "cross",
        },
        {
            "id": "b",
            "text": "Two words.",
            "prompt_audio": str(dev / "coqui__LJ001-0002.wav"),
            "prompt_text": "in being comparatively modern.",
            "out": "sub/b.wav",
        },
        {
            "id": "bad",
            "text": "Three.",
            "prompt_audio": str(tmp_path / "missing.wav"),
            "prompt_text": "x",
            "out": "bad.wav",
        },
        {
            "id": "c",
            "text": "Four.",
            "prompt_audio": str(dev / "coqui__LJ001-0001.wav"),
            "prompt_text": LJ1_TEXT,
        },
    ]
    jl = tmp_path / "jobs.jsonl"
    jl.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    out = tmp_path / "out"
    args = [
        str(jl),
        "--checkpoint",
        str(release),
        "--out-dir",
        str(out),
        "--batch-size",
        "3",
        "--max-seconds",
        "0.3",
        "--no-progress",
    ]
    assert batch_cli.main(args) == 1  # one failure
    for name in ("a.wav", "sub/b.wav", "c.wav"):
        assert sf.info(out / name).frames == 7 * 640  # int(0.3 s x 25 Hz)
    assert not (out / "bad.wav").exists()
    fails = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["id"] for f in fails] == ["bad"] and "not found" in fails[0]["error"]
    assert not list(out.rglob(".*tmp*"))  # no temp files left behind
    s = json.loads((out / "summary.json").read_text())
    assert (s["synthesized"], s["failed"], s["skipped_existing"]) == (3, 1, 0)

    (out / "c.wav").unlink()
    before = (out / "a.wav").stat().st_mtime_ns
    assert batch_cli.main(args) == 1
    s = json.loads((out / "summary.json").read_text())
    assert (s["synthesized"], s["failed"], s["skipped_existing"]) == (1, 1, 2)
    assert (out / "c.wav").exists() and (out / "a.wav").stat().st_mtime_ns == before


def test_batch_cli_reads_tsv(release, real_speech_dir, tmp_path):
    tsv = tmp_path / "jobs.tsv"
    tsv.write_text(
        "id\ttext\tprompt_audio\tprompt_text\tout\n"
        f"x\tHello there.\t{real_speech_dir / 'dev' / 'coqui__LJ001-0001.wav'}\t{LJ1_TEXT}\tx.wav\n"
    )
    out = tmp_path / "o"
    rc = batch_cli.main(
        [
            str(tsv),
            "--checkpoint",
            str(release),
            "--out-dir",
            str(out),
            "--max-seconds",
            "0.2",
            "--no-progress",
        ]
    )
    assert rc == 0 and sf.info(out / "x.wav").frames == 5 * 640
