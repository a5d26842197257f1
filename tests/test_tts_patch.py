"""Several VAE frames per sequence item (tts/patch.py, TTSConfig.patch): layout, store view, synthesis, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentlm.config import load_config
from tests.helpers import make_tiny_corpus, make_tiny_tts, tiny_tts_config, write_tiny_recipe
from tts.data import LatentStore
from tts.manifests import read_jsonl
from tts.model import TTS, TTSConfig, TTSInputError
from tts.patch import repeat_stats, to_frames, to_items
from tts.train import TrainConfig, Trainer


def test_items_hold_consecutive_frames_and_round_trip():
    z = torch.arange(7 * 3, dtype=torch.float32).view(7, 3)  # 7 frames of 3 dims
    x = to_items(z, 2)
    assert x.shape == (3, 6)  # the 7th frame does not fill an item and is dropped
    np.testing.assert_array_equal(x[1].numpy(), torch.cat([z[2], z[3]]).numpy())
    np.testing.assert_array_equal(to_frames(x, 2).numpy(), z[:6].numpy())
    assert to_items(z, 1) is z and to_frames(z, 1) is z
    # statistics laid out like the items: normalising items == grouping normalised frames
    mean, std = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 4.0])
    m2, s2 = repeat_stats(mean, std, 2)
    np.testing.assert_allclose(((x - m2) / s2).numpy(), to_items((z - mean) / std, 2).numpy())


def test_config_checks_the_patch_against_the_latent_dim():
    with pytest.raises(ValueError, match="patch"):
        tiny_tts_config(79, latent_dim=8, patch=3)
    with pytest.raises(ValueError, match="patch"):
        tiny_tts_config(79, latent_dim=8, patch=0)
    assert tiny_tts_config(79, latent_dim=8, patch=2).frame_dim == 4


@pytest.fixture(scope="module")
def corpus(real_speech_dir, tmp_path_factory):
    return make_tiny_corpus(real_speech_dir, tmp_path_factory.mktemp("tts_patch_corpus"), n=4)


def test_patched_store_views_real_latents_in_items(corpus):
    store = LatentStore(corpus["latents"])
    view = LatentStore(corpus["latents"], patch=3)
    uid = next(r.id for r in read_jsonl(corpus["manifest"]))
    z = store.get(uid)
    assert uid in view and len(view) == len(store) and view.frame_rate == store.frame_rate
    assert view.frames(uid) == z.shape[0] // 3
    np.testing.assert_array_equal(view.get(uid).numpy(), to_items(z, 3).numpy())


@pytest.fixture(scope="module")
def dev(real_speech_dir):
    d = real_speech_dir / "dev"
    return {
        "lj1": d / "coqui__LJ001-0001.wav",
        "lj1_text": "Printing, in the only sense with which we are at present concerned,",
    }


@pytest.fixture(scope="module")
def tts2():
    torch.set_num_threads(1)
    return make_tiny_tts(seed=0, patch=2)


def test_synthesis_with_two_frames_per_item(tts2, dev):
    kw = dict(prompt_text=dev["lj1_text"], max_seconds=0.6, seed=1, steps=3)
    res = tts2.synthesize("Two frames at a time.", dev["lj1"], **kw)
    frames = res.info["frames"][0]
    assert frames % 2 == 0 and frames > 0  # VAE frames, whole items
    assert len(res.audio) == frames * tts2.vae.hop
    assert frames <= 0.6 * tts2.cfg.frame_rate + 1  # the cap counts frames, not items
    assert res.info["prompt_frames"] % 2 == 0
    chunks = list(tts2.stream("Two frames at a time.", dev["lj1"], chunk_frames=2, **kw))
    assert len(chunks[0]) == 2 * tts2.vae.hop  # first audio after one item = two frames
    np.testing.assert_allclose(np.concatenate(chunks), res.audio, atol=1e-5)
    [batched] = tts2.synthesize_batch([dict(text="Two frames at a time.", prompt_audio=dev["lj1"], **kw)])
    np.testing.assert_allclose(batched.audio, res.audio, atol=1e-4)


def test_continuation_keeps_the_prompt_frames_the_items_hold(tts2, dev):
    prompt = tts2.load_prompt(dev["lj1"])[: 2 * tts2.sample_rate + 3 * tts2.vae.hop]  # 53 frames: odd
    res = tts2.synthesize(dev["lj1_text"], prompt, continuation=True, max_seconds=3.0, steps=2)
    kept = res.info["prompt_frames"] * tts2.vae.hop
    assert kept <= len(prompt) and len(prompt) - kept < 2 * tts2.vae.hop
    np.testing.assert_array_equal(res.audio[:kept], prompt[:kept].numpy())
    assert len(res.audio) == kept + res.info["frames"][0] * tts2.vae.hop


def test_a_patched_release_round_trips_and_checks_its_vae(tts2, tmp_path):
    out = tts2.save_pretrained(tmp_path / "rel")
    back = TTS.from_pretrained(out)
    assert back.cfg.patch == 2 and back.cfg.latent_dim == 2 * back.vae.latent_dim
    cfg = TTSConfig(model=tts2.cfg.model, patch=1)  # a 16-dim model cannot use the 8-dim VAE frame by frame
    with pytest.raises(TTSInputError, match="patch"):
        TTS(cfg, tts2.lm, tts2.vae, tts2.frontend)


def test_training_with_patches_runs_and_exports(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    over = ["tts.patch=2", "tts.model.modalities.audio.latent_dim=16", "max_steps=3"]
    tr = Trainer(load_config(TrainConfig, recipe, over), resume=False)
    tr.setup_data(read_jsonl(corpus["manifest"]))
    assert tr.lm.latent_dims["audio"] == 16
    mean, _ = tr.lm.latent_stats("audio")
    np.testing.assert_allclose(mean[:8].numpy(), mean[8:].numpy())  # the VAE's statistics, twice
    logs = [tr.train_step() for _ in range(3)]
    assert all(np.isfinite(x["diff_audio"]) for x in logs)
    rel = TTS.from_pretrained(tr.ema_tts().save_pretrained(tmp_path / "release"))
    assert rel.cfg.patch == 2
