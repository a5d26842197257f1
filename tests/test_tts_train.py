"""TTS trainer: losses fall on a tiny overfit, kill + resume is exact, 2-process DDP == 1 process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from latentlm.checkpoint import load_training_state
from latentlm.config import load_config
from tests.helpers import (
    make_tiny_corpus,
    run_tts_train,
    subprocess_env,
    train_tiny_release,
    write_tiny_recipe,
)
from tts.frontend import TEXT_NORM_VERSION, Frontend
from tts.manifests import read_jsonl
from tts.model import TTS
from tts.store_files import phoneme_cache
from tts.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(real_speech_dir, tmp_path_factory):
    return make_tiny_corpus(real_speech_dir, tmp_path_factory.mktemp("tts_corpus"))


def _train(recipe: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_tts_train(recipe, *overrides)


def test_losses_fall_on_tiny_overfit(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run", dim=64)
    cfg = load_config(
        TrainConfig,
        recipe,
        ["max_steps=60", "optim.lr=3e-3", "p_uncond=0.0", "latent_noise_scale=0.0"],
    )
    tr = Trainer(cfg, resume=False)
    tr.setup_data(read_jsonl(cfg.data.manifest))
    logs = [tr.train_step() for _ in range(60)]
    first = {k: sum(x[k] for x in logs[:8]) / 8 for k in ("lm", "diff_audio")}
    last = {k: sum(x[k] for x in logs[-8:]) / 8 for k in ("lm", "diff_audio")}
    assert last["lm"] < 0.5 * first["lm"], (first, last)
    assert last["diff_audio"] < 0.8 * first["diff_audio"], (first, last)
    # the EMA release loads through the public API and is strict
    out = tr.ema_tts().save_pretrained(tmp_path / "release")
    assert TTS.from_pretrained(out).lm.layout.size == tr.lm.layout.size


def test_init_from_a_release_starts_from_its_weights(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    release = train_tiny_release(recipe, corpus["manifest"], tmp_path / "release", steps=3)
    init = [f"init_from={release}", f"out_dir={tmp_path / 'run2'}"]
    tr2 = Trainer(load_config(TrainConfig, recipe, init), resume=False)
    want = TTS.from_pretrained(release).lm.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in tr2.lm.state_dict().items())
    assert not torch.equal(
        tr2.lm.embed.weight, Trainer(load_config(TrainConfig, recipe), resume=False).lm.embed.weight
    )
    with pytest.raises(ValueError, match="LatentLM config differs"):
        Trainer(load_config(TrainConfig, recipe, [*init, "tts.model.trunk.n_layers=3"]), resume=False)
    # an interrupted run resumes from its own checkpoint, even when the release it started from is gone
    tr2.setup_data(read_jsonl(corpus["manifest"]))
    tr2.train_step()
    tr2.save()
    gone = [f"init_from={tmp_path / 'moved'}", f"out_dir={tmp_path / 'run2'}"]
    tr3 = Trainer(load_config(TrainConfig, recipe, gone))
    assert tr3.step == 1
    assert all(torch.equal(v, tr2.lm.state_dict()[k]) for k, v in tr3.lm.state_dict().items())


def test_a_campaign_goes_on_from_its_release_at_start_step(corpus, tmp_path):
    """A campaign whose run folder is gone goes on from its release: the step counter and the cosine continue at
    start_step, the lr warms up again (fresh optimizer moments), and a resumed run keeps the offset it began with."""
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    release = train_tiny_release(recipe, corpus["manifest"], tmp_path / "release", steps=3)
    over = [f"init_from={release}", f"out_dir={tmp_path / 'run2'}", "max_steps=100", "optim.lr=1e-3"]
    over += ["optim.warmup_steps=4", "start_step=50"]
    tr = Trainer(load_config(TrainConfig, recipe, over), resume=False)
    tr.setup_data(read_jsonl(corpus["manifest"]))
    assert tr.step == 50
    lrs = [tr.train_step()["lr"] for _ in range(6)]  # the lr of the next update after each step
    for k, lr in enumerate(lrs, start=1):
        want = 1e-3 * tr._lr_factor(50 + k) * min(1.0, (k + 1) / 4)
        assert lr == pytest.approx(want, rel=1e-6), (k, lr, want)
    assert lrs[-1] < 0.6e-3  # past the warmup: the cosine at step 56 (~0.49 of the peak), not a new one
    assert tr.step == 56
    tr.save()
    # rerun with another start_step: the checkpoint's offset wins, so the schedule resumes exactly
    tr2 = Trainer(load_config(TrainConfig, recipe, [*over[:-1], "start_step=7"]))
    tr2.setup_data(read_jsonl(corpus["manifest"]))
    assert (tr2.step, tr2.start_step) == (56, 50)
    assert tr2.train_step()["lr"] == pytest.approx(1e-3 * tr._lr_factor(57), rel=1e-6)
    assert tr2.ema_tts().save_pretrained(tmp_path / "rel2").is_dir()
    # a campaign extended on resume (a larger max_steps): the cosine is refitted to the new end from the step it is at
    tr3 = Trainer(load_config(TrainConfig, recipe, [*over[:-1], "max_steps=200"]))
    tr3.setup_data(read_jsonl(corpus["manifest"]))
    assert (tr3.step, tr3.start_step) == (56, 50)
    want = 1e-3 * tr3._lr_factor(57)
    assert want > 1e-3 * tr._lr_factor(57) and tr3.train_step()["lr"] == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="needs init_from"):
        load_config(TrainConfig, recipe, ["start_step=5"])
    with pytest.raises(ValueError, match="not below max_steps"):
        load_config(TrainConfig, recipe, [*over, "max_steps=50"])
    with pytest.raises(ValueError, match="inside the schedule's warmup"):
        load_config(TrainConfig, recipe, [*over[:-1], "start_step=3"])


def test_phoneme_cache_written_next_to_latents(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    tr = Trainer(load_config(TrainConfig, recipe), resume=False)
    tr.setup_data(read_jsonl(corpus["manifest"]))
    cache = Path(corpus["latents"]) / "phonemes.json"
    assert cache.is_file() and len(tr.ds) == 6
    assert all(len(tr.ds.phonemes[r.id]) > 5 for r in tr.ds.rows)
    meta = cache.with_name("phonemes.meta.json")
    assert json.loads(meta.read_text())["text_norm"] == TEXT_NORM_VERSION


def test_a_phoneme_cache_from_another_front_end_is_refused(corpus, tmp_path):
    """A cache made before a front-end change (no or another phonemes.meta.json) holds stale phonemes, and the
    durations aligned to them: the trainer stops and says what to rerun instead of training on them."""
    import shutil

    lat = tmp_path / "lat"
    shutil.copytree(corpus["latents"], lat)
    rows = read_jsonl(corpus["manifest"])
    fe = Frontend("en-us")
    (lat / "phonemes.json").write_text(json.dumps({r.id: fe.encode(r.text) for r in rows}))
    (lat / "phonemes.meta.json").unlink(missing_ok=True)  # as an older release's cache has none
    with pytest.raises(ValueError, match="another front end.*tts.durations"):
        phoneme_cache(rows, lat, fe)
    (lat / "phonemes.meta.json").write_text(json.dumps({"text_norm": TEXT_NORM_VERSION, "language": "en-us"}))
    assert phoneme_cache(rows, lat, fe) == json.loads((lat / "phonemes.json").read_text())


def test_data_workers_give_the_same_steps_and_resume_exactly(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")

    def run(out: Path, steps: int, workers: int, resume: bool = False):
        over = [f"out_dir={out}", f"data.num_workers={workers}", "data.prefetch=2"]
        tr = Trainer(load_config(TrainConfig, recipe, over), resume=resume)
        tr.setup_data(read_jsonl(corpus["manifest"]))
        return tr, [tr.train_step() for _ in range(steps)]

    ref, ref_logs = run(tmp_path / "ref", 6, workers=0)
    assert ref.epoch >= 1  # the walk crosses an epoch boundary
    tr, logs = run(tmp_path / "w", 3, workers=2)
    assert logs == ref_logs[:3]
    tr.save()  # the workers planned ahead; the checkpoint holds what was trained
    del tr
    tr, logs = run(tmp_path / "w", 3, workers=2, resume=True)
    assert tr.step == 6 and logs == ref_logs[3:] and (tr.epoch, tr.pos) == (ref.epoch, ref.pos)
    assert all(torch.equal(v, ref.lm.state_dict()[k]) for k, v in tr.lm.state_dict().items())


def test_export_from_a_run_and_from_its_ema_parts(corpus, tmp_path):
    from safetensors.torch import load_file

    from tts.export import main as export_main

    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    tr = Trainer(load_config(TrainConfig, recipe, ["max_steps=2", "progress=false"]), resume=False)
    tr.setup_data(read_jsonl(corpus["manifest"]))
    tr.fit()  # writes config.yaml and last.pt
    export_main([str(tmp_path / "run"), str(tmp_path / "rel")])
    tts = TTS.from_pretrained(tmp_path / "rel")
    assert all(torch.equal(v, tr.ema[k]) for k, v in tts.lm.state_dict().items())
    export_main([str(tmp_path / "run"), "--ema-parts", str(tmp_path / "parts"), "--part-mb", "0.05"])
    assert len(list((tmp_path / "parts").glob("ema-*.safetensors"))) > 2
    export_main([str(tmp_path / "parts"), str(tmp_path / "rel2")])
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("rel", "rel2"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit, match="no config.yaml"):
        export_main([str(tmp_path), str(tmp_path / "rel3")])


def _poisoned(tr: Trainer) -> None:
    """Make the trainer's next loss terms NaN (what a bf16 blow-up looks like from the outside)."""
    forward = type(tr.net).forward
    tr.net.forward = lambda *a, **k: {n: v * float("nan") for n, v in forward(tr.net, *a, **k).items()}


def test_nonfinite_update_is_skipped_and_stops_when_it_persists(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    tr = Trainer(load_config(TrainConfig, recipe, ["max_bad_steps=2"]), resume=False)
    tr.setup_data(read_jsonl(corpus["manifest"]))
    assert tr.train_step()["skipped"] == 0.0
    before = {k: v.clone() for k, v in tr.lm.state_dict().items()}
    ema = {k: v.clone() for k, v in tr.ema.items()}
    _poisoned(tr)
    logs = tr.train_step()
    assert logs["skipped"] == 1.0 and tr.step == 2 and tr.bad_steps == 1
    assert all(torch.equal(v, before[k]) for k, v in tr.lm.state_dict().items())  # no update applied
    assert all(torch.equal(v, ema[k]) for k, v in tr.ema.items())
    del tr.net.forward  # healthy again: training goes on and the counter resets
    assert tr.train_step()["skipped"] == 0.0 and tr.bad_steps == 0
    assert all(torch.isfinite(v).all() for v in tr.lm.state_dict().values() if v.is_floating_point())
    _poisoned(tr)
    tr.train_step()
    with pytest.raises(RuntimeError, match="2 updates in a row had a non-finite loss"):
        tr.train_step()
    with pytest.raises(ValueError, match="max_bad_steps"):
        load_config(TrainConfig, recipe, ["max_bad_steps=0"])


def _weights(path: Path) -> dict:
    return load_training_state(path)["model"]


@pytest.mark.slow
def test_sigterm_then_resume_is_exact(corpus, tmp_path):
    ref = write_tiny_recipe(tmp_path / "ref.yaml", corpus, tmp_path / "ref")
    r = _train(ref, "max_steps=8")
    assert r.returncode == 0, r.stderr[-2000:]

    run = write_tiny_recipe(tmp_path / "run.yaml", corpus, tmp_path / "run")
    cmd = [sys.executable, "-m", "tts.train", str(run), "max_steps=8", "save_every=1"]
    p = subprocess.Popen(
        cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ckpt = tmp_path / "run" / "last.pt"
    t0 = time.monotonic()
    while not ckpt.exists() and time.monotonic() - t0 < 120 and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out[-2000:]
    assert "interrupted at step" in out, out[-2000:]
    stopped = load_training_state(ckpt)["step"]
    assert 1 <= stopped < 8
    r = _train(run, "max_steps=8")
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _weights(tmp_path / "ref" / "last.pt"), _weights(ckpt)
    assert load_training_state(ckpt)["step"] == 8
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(corpus, tmp_path):
    one = write_tiny_recipe(tmp_path / "one.yaml", corpus, tmp_path / "one")
    r = _train(one, "max_steps=2", "optim.accum_steps=2")
    assert r.returncode == 0, r.stderr[-2000:]
    two = write_tiny_recipe(tmp_path / "two.yaml", corpus, tmp_path / "two")
    r = run_tts_train(two, "max_steps=2", nproc=2)
    assert r.returncode == 0, r.stderr[:4000]
    a, b = _weights(tmp_path / "one" / "last.pt"), _weights(tmp_path / "two" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
    # and the weights moved: the comparison is not between two untouched initialisations
    init = Trainer(load_config(TrainConfig, one, [f"out_dir={tmp_path / 'fresh'}"]), resume=False)
    moved = max((a[k] - v).abs().max().item() for k, v in init.lm.state_dict().items())
    assert moved > 1e-4


def test_transit_dtype_round_trips_stores_and_releases(corpus, tmp_path):
    sys.path.insert(0, str(REPO / "recipes" / "demo"))
    from transit_dtype import convert

    from tts.data import LatentStore

    convert(Path(corpus["latents"]), tmp_path / "f16", torch.float16)
    convert(tmp_path / "f16", tmp_path / "f32", torch.float32)
    src, half, back = (LatentStore(p) for p in (corpus["latents"], tmp_path / "f16", tmp_path / "f32"))
    assert back.frame_rate == src.frame_rate and back.index.keys() == src.index.keys()
    for i in src.index:
        assert half.get(i).dtype == torch.float16 and back.get(i).dtype == torch.float32
        torch.testing.assert_close(back.get(i), src.get(i), rtol=1e-3, atol=1e-3)
    # a release (with its vae/) survives the trip, its latent statistics exactly, so init_from accepts it
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    tr = Trainer(load_config(TrainConfig, recipe), resume=False)
    rel = tr.ema_tts().save_pretrained(tmp_path / "rel")
    convert(rel, tmp_path / "rel16", torch.float16)
    convert(tmp_path / "rel16", tmp_path / "rel32", torch.float32)
    a, b = TTS.from_pretrained(rel), TTS.from_pretrained(tmp_path / "rel32")
    for k, v in a.lm.state_dict().items():
        if k.startswith(("latent_mean", "latent_std")):
            assert torch.equal(b.lm.state_dict()[k], v)
        else:
            torch.testing.assert_close(b.lm.state_dict()[k], v, rtol=1e-3, atol=1e-3)
    Trainer(load_config(TrainConfig, recipe, [f"init_from={tmp_path / 'rel32'}"]), resume=False)
    with pytest.raises(SystemExit, match="neither a latent store"):
        convert(tmp_path, tmp_path / "x", torch.float16)
    # --keep: only some utterances travel (a store read through the kept index holds exactly those)
    kept = set(sorted(src.index)[:2])
    convert(Path(corpus["latents"]), tmp_path / "some", torch.float16, kept)
    some = LatentStore(tmp_path / "some")
    assert set(some.index) == kept and all(some.get(i).shape == src.get(i).shape for i in kept)
    with pytest.raises(SystemExit, match="latent stores only"):
        convert(rel, tmp_path / "relx", torch.float16, kept)


@pytest.mark.gpu
@pytest.mark.parametrize("bf16", [False, True])
def test_training_steps_on_cuda(corpus, tmp_path, bf16):
    """Batches are laid out on the CPU (here in a worker) and trained on the GPU: the first H200 step failed on a
    device mismatch that no CPU test could see."""
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    over = [
        "device=cuda",
        f"bf16={str(bf16).lower()}",
        "data.num_workers=1",
        "ctc_weight=0.1",
        "ctc_blind=0.5",
    ]
    tr = Trainer(load_config(TrainConfig, recipe, over), resume=False)
    tr.setup_data(read_jsonl(corpus["manifest"]))
    logs = [tr.train_step() for _ in range(4)]
    assert all(x["skipped"] == 0.0 and torch.isfinite(torch.tensor(x["total"])) for x in logs)
    assert next(tr.lm.parameters()).device.type == "cuda"
