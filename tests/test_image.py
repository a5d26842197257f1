"""Image path: sigma-VAE shapes and releases, digits / ImageFolder data, PNG grids, Frechet distance, and a short
CPU training whose class-conditional samples a real-digit classifier recognises (above chance; CFG helps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from latentlm.config import load_config
from latentlm.image.data import ImageFolder, load_digits_images, save_grid, split_digits
from latentlm.image.evaluate import frechet_distance, inception_features
from latentlm.image.train import ImageTrainConfig, check_compatible, train
from latentlm.image.vae import ImageVAE, ImageVAEConfig
from latentlm.model import LatentLM

SMALL = [
    "vae.image_size=8", "vae.levels=2", "vae.width=32", "vae.bottleneck.latent_dim=8", "vae_steps=200",
    "lm.modalities.image.latent_dim=8", "lm.trunk.dim=96", "lm.trunk.n_layers=2",
    "lm.modalities.image.cond_dim=96", "lm.modalities.image.width=96", "lm.modalities.image.depth=2",
    "lm_steps=300", "batch=32", "lm_lr=0.002", "log_every=0",
    "eval.samples_per_class=20", "eval.cfg_scales=[1.0, 2.0]", "eval.classifier.steps=300",
]  # fmt: skip


def test_digits_loader_range_and_split():
    x, y = load_digits_images(16)
    assert x.shape == (1797, 1, 16, 16) and y.shape == (1797,)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.9 and x.max() > 0.9
    assert set(y.tolist()) == set(range(10))
    tx, ty, vx, vy = split_digits(x, y, 0.2, seed=0)
    assert len(vx) == 359 and len(tx) + len(vx) == 1797
    with pytest.raises(ValueError, match="size"):
        load_digits_images(4)


def test_vae_shapes_tokens_and_release(tmp_path):
    cfg = ImageVAEConfig(image_size=16, width=16, levels=2)
    vae = ImageVAE(cfg).eval()
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (3, 4, 4, 4)
    tok = vae.to_tokens(z)
    assert tok.shape == (3, 16, 4)
    assert torch.equal(tok[1, 5], z[1, :, 1, 1])  # raster order: token 5 = row 1, column 1
    assert torch.equal(vae.from_tokens(tok), z)
    y = vae.decode(z)
    assert y.shape == x.shape and y.abs().max() <= 1
    vae.set_latent_stats(torch.full((4,), 0.5), torch.full((4,), 2.0))
    vae.save_pretrained(tmp_path / "vae")
    back = ImageVAE.from_pretrained(tmp_path / "vae")
    assert torch.equal(back.encode(x), z) and torch.equal(back.latent_std, vae.latent_std)
    with pytest.raises(ValueError, match=r"\[B, 1, 16, 16\]"):
        vae.encode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="latent tokens"):
        vae.from_tokens(torch.zeros(2, 15, 4))
    with pytest.raises(ValueError, match="divisible"):
        ImageVAEConfig(image_size=10, levels=2)


def test_imagefolder_reads_pil_tree(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path, size=8)
    assert ds.classes == ["cat", "dog"] and len(ds) == 4
    x, y = ds.load_all()
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 0, 1, 1]
    assert x.min() >= -1 and x.max() <= 1
    gray, _ = ImageFolder(tmp_path, size=8, channels=1)[0]
    assert gray.shape == (1, 8, 8)
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(tmp_path / "empty", size=8)


def test_save_grid_png(tmp_path):
    imgs = torch.linspace(-1, 1, 5 * 64).reshape(5, 1, 8, 8)
    p = save_grid(imgs, tmp_path / "g.png", nrow=3, scale=1)
    im = Image.open(p)
    assert im.size == (3 * 9 + 1, 2 * 9 + 1) and im.mode == "L"
    arr = np.asarray(im)
    assert arr[1, 1] == 0 and arr[8, 8] > arr[1, 1]  # first image's first and last pixel
    with pytest.raises(ValueError):
        save_grid(torch.zeros(2, 8, 8), tmp_path / "bad.png")


def test_frechet_distance_matches_gaussian_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    delta = np.array([1.0, -2.0, 0, 0, 0.5, 0])
    assert frechet_distance(a, a + delta) == pytest.approx(float((delta**2).sum()), rel=1e-6)
    # scaling the features by 2 (same mean 0): Tr(S + 4S - 2*2S) = Tr(S)
    s = np.cov(a, rowvar=False)
    scaled = (a - a.mean(0)) * 2 + a.mean(0)
    assert frechet_distance(a, scaled) == pytest.approx(float(np.trace(s)), rel=1e-5)
    with pytest.raises(ValueError):
        frechet_distance(a, a[:, :3])


def test_fid_needs_local_inception_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        inception_features(torch.zeros(2, 3, 16, 16), tmp_path / "missing.pth")


def test_config_compatibility_errors():
    cfg = load_config(ImageTrainConfig, "recipes/image/digits.yaml", ["vae.bottleneck.latent_dim=8"])
    with pytest.raises(ValueError, match="latent_dim"):
        check_compatible(cfg, 10)
    cfg = load_config(ImageTrainConfig, "recipes/image/digits.yaml", ["lm.vocab_size=5"])
    with pytest.raises(ValueError, match="classes"):
        check_compatible(cfg, 10)


@pytest.mark.slow
def test_short_training_generates_recognisable_digits_and_cfg_helps(tmp_path):
    cfg = load_config(ImageTrainConfig, "recipes/image/digits.yaml", SMALL + [f"out_dir={tmp_path}"])
    model, vae, rep = train(cfg)
    assert rep["classifier_test_acc"] > 0.8  # the judge itself works on real held-out digits
    assert rep["cfg1_acc"] > 0.2, rep  # chance is 0.1
    assert rep["cfg2_acc"] > rep["cfg1_acc"] + 0.05, rep
    assert rep["cfg2_acc"] > 0.3, rep
    for name in (
        "samples_cfg1.png",
        "samples_cfg2.png",
        "report.json",
        "lm/model.safetensors",
        "vae/config.json",
    ):
        assert (tmp_path / name).is_file(), name
    # the releases reload and sample the same images for the same seed
    from latentlm.image.generation import sample_images

    lm2, vae2 = LatentLM.from_pretrained(tmp_path / "lm"), ImageVAE.from_pretrained(tmp_path / "vae")
    a = sample_images(model, vae, [3, 7], cfg=2.0, generator=torch.Generator().manual_seed(0))
    b = sample_images(lm2, vae2, [3, 7], cfg=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-5)


def test_imagefolder_recipe_runs_end_to_end(tmp_path):
    """The GPU recipe's code path (RGB ImageFolder -> VAE -> LM -> eval -> releases) on a tiny tree, CPU-sized."""
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
                tmp_path / "data" / c / f"{i}.png"
            )
    over = [
        f"data.root={tmp_path / 'data'}", "data.test_fraction=0.34", f"out_dir={tmp_path / 'out'}", "device=cpu",
        "vae.image_size=8", "vae.width=16", "vae.levels=2", "vae_steps=2", "vae_batch=4",
        "lm.trunk.dim=32", "lm.trunk.n_layers=1", "lm.trunk.n_heads=2", "lm.modalities.image.cond_dim=32", "lm.modalities.image.width=32",
        "lm.modalities.image.depth=1", "lm_steps=2", "batch=4", "log_every=0",
        "eval.samples_per_class=2", "eval.cfg_scales=[1.5]", "eval.steps=2", "eval.classifier.steps=2",
        "eval.classifier.feat_dim=8",
    ]  # fmt: skip
    cfg = load_config(ImageTrainConfig, "recipes/image/imagefolder.yaml", over)
    _, vae, rep = train(cfg)
    assert vae.cfg.channels == 3 and 0 <= rep["cfg1.5_acc"] <= 1
    assert Image.open(tmp_path / "out" / "samples_cfg1.5.png").mode == "RGB"
    assert LatentLM.from_pretrained(tmp_path / "out" / "lm").cfg.vocab_size == 1000
