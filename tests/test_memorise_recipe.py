"""recipes/lab/memorise.py: the subset of training voices and its cross-sentence job list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes" / "lab"))
import memorise  # noqa: E402


def _corpus(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "id": f"{s}_{k}",
            "speaker": s,
            "text": f"sentence {k} of {s}",
            "audio": f"audio/{s}_{k}.wav",
            "duration": 2.0,
        }
        for s, n in (("a", 3), ("b", 2), ("c", 4), ("solo", 1))
        for k in range(n)
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_every_utterance_is_a_target_once_with_another_of_its_speaker_as_prompt(tmp_path):
    rows = memorise.subset(_corpus(tmp_path), ["a", "b"])
    assert sorted(r["id"] for r in rows) == ["a_0", "a_1", "a_2", "b_0", "b_1"]
    assert all(Path(r["audio"]).is_absolute() for r in rows)
    jobs = memorise.jobs(rows, seed=0)
    assert [j["id"] for j in jobs] == [r["id"] for r in rows]
    by_audio = {r["audio"]: r for r in rows}
    for j in jobs:
        p = by_audio[j["prompt_audio"]]
        assert p["speaker"] == j["speaker"] and p["id"] != j["id"] and j["prompt_text"] == p["text"]
        assert j["out"] == f"{j['id']}.wav" and j["ref_audio"] == by_audio[j["ref_audio"]]["audio"]
    assert memorise.jobs(rows, seed=0) == jobs  # deterministic


def test_unknown_or_single_utterance_speakers_are_refused(tmp_path):
    corpus = _corpus(tmp_path)
    with pytest.raises(SystemExit, match="not in"):
        memorise.subset(corpus, ["a", "nobody"])
    with pytest.raises(SystemExit, match=">= 2 utterances"):
        memorise.subset(corpus, ["solo"])


def test_cli_writes_the_manifest_and_the_jobs(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(REPO / "recipes/lab/memorise.py"),
        "--corpus",
        str(corpus),
        "--speakers",
        "c",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert len((out / "train.jsonl").read_text().splitlines()) == 4
    assert len((out / "jobs.jsonl").read_text().splitlines()) == 4
