"""TTS trainer under FSDP2 (2 CPU processes, gloo): it matches one process, its checkpoints are full (unsharded)
and in the single-process format, resuming is exact, and a single process resumes an FSDP checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from latentlm.checkpoint import load_training_state
from latentlm.config import load_config
from tests.helpers import make_tiny_corpus, run_tts_train, write_tiny_recipe
from tts.manifests import read_jsonl
from tts.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
# every step inside the warmup: the learning rate does not depend on max_steps, so a run stopped by a lower
# max_steps and resumed with a higher one must equal a run that never stopped
WARM = "optim.warmup_steps=10"


@pytest.fixture(scope="module")
def corpus(real_speech_dir, tmp_path_factory):
    return make_tiny_corpus(real_speech_dir, tmp_path_factory.mktemp("tts_fsdp_corpus"))


def _train(recipe: Path, *overrides: str) -> None:
    r = run_tts_train(recipe, *overrides)
    assert r.returncode == 0, r.stderr[-4000:]


def _train_fsdp(recipe: Path, *overrides: str) -> None:
    r = run_tts_train(recipe, "parallel=fsdp", *overrides, nproc=2)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


def _assert_close(a: dict, b: dict, tol: float, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        # a full checkpoint holds plain CPU tensors, never DTensor shards
        assert type(b[k]) is torch.Tensor and b[k].device.type == "cpu", (what, k, type(b[k]))
        torch.testing.assert_close(a[k], b[k], rtol=tol, atol=tol / 100, msg=f"{what} {k}")


def _assert_same_state(a: dict, b: dict, tol: float) -> None:
    """model, EMA and the index-keyed AdamW state of two checkpoints agree (plus step and hyperparameters)."""
    assert a["step"] == b["step"]
    _assert_close(a["model"], b["model"], tol, "model")
    _assert_close(a["ema"], b["ema"], tol, "ema")
    oa, ob = a["optimizer"], b["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    assert oa["state"] and sorted(oa["state"]) == sorted(ob["state"])
    for i in oa["state"]:
        _assert_close(oa["state"][i], ob["state"][i], tol, f"optimizer[{i}]")


@pytest.mark.slow
def test_two_process_fsdp_matches_one_process(corpus, tmp_path):
    one = write_tiny_recipe(tmp_path / "one.yaml", corpus, tmp_path / "one")
    _train(one, "max_steps=2", "optim.accum_steps=2")
    two = write_tiny_recipe(tmp_path / "two.yaml", corpus, tmp_path / "two")
    _train_fsdp(two, "max_steps=2")
    a, b = (
        load_training_state(tmp_path / "one" / "last.pt"),
        load_training_state(tmp_path / "two" / "last.pt"),
    )
    # full model, EMA and optimizer state (not rank 0's shards), in the single-process format
    _assert_same_state(a, b, tol=1e-4)
    # and the weights (and EMA) moved: not two untouched initialisations
    init = Trainer(load_config(TrainConfig, one, [f"out_dir={tmp_path / 'fresh'}"]), resume=False)
    params = list(init.lm.parameters())
    assert sorted(b["optimizer"]["state"]) == list(range(len(params)))  # one entry per parameter
    for part in ("model", "ema"):
        moved = max((b[part][k] - v).abs().max().item() for k, v in init.lm.state_dict().items())
        assert moved > 1e-4, part


@pytest.mark.slow
def test_fsdp_stop_and_resume_is_exact(corpus, tmp_path):
    ref = write_tiny_recipe(tmp_path / "ref.yaml", corpus, tmp_path / "ref")
    _train_fsdp(ref, "max_steps=4", WARM)
    run = write_tiny_recipe(tmp_path / "run.yaml", corpus, tmp_path / "run")
    _train_fsdp(run, "max_steps=2", WARM)
    assert load_training_state(tmp_path / "run" / "last.pt")["step"] == 2
    _train_fsdp(run, "max_steps=4", WARM)  # resumes from run/last.pt
    a, b = (
        load_training_state(tmp_path / "ref" / "last.pt"),
        load_training_state(tmp_path / "run" / "last.pt"),
    )
    _assert_same_state(a, b, tol=0.0)  # bit-identical
    assert (a["epoch"], a["pos"]) == (b["epoch"], b["pos"])


@pytest.mark.slow
def test_single_process_resumes_an_fsdp_checkpoint(corpus, tmp_path):
    # one batch per epoch (all 6 items), so both ranks see the same batch: 2-process FSDP == 1 process, step
    # for step, and a single process can take over the FSDP run mid-way
    one_batch = ["data.max_frames=4000", WARM]
    ref = write_tiny_recipe(tmp_path / "ref.yaml", corpus, tmp_path / "ref")
    _train_fsdp(ref, "max_steps=4", *one_batch)
    run = write_tiny_recipe(tmp_path / "run.yaml", corpus, tmp_path / "run")
    _train_fsdp(run, "max_steps=2", *one_batch)
    saved = load_training_state(tmp_path / "run" / "last.pt")

    tr = Trainer(load_config(TrainConfig, run, ["max_steps=4", *one_batch]))  # resumes run/last.pt
    assert tr.step == 2
    _assert_same_state(saved, tr.state(), tol=0.0)  # loaded as saved, nothing lost or permuted
    tr.setup_data(read_jsonl(corpus["manifest"]))
    assert len(tr.sampler) == 1
    while tr.step < 4:
        tr.train_step()
    _assert_same_state(load_training_state(tmp_path / "ref" / "last.pt"), tr.state(), tol=1e-4)
