"""python -m latentlm.image.train RECIPE.yaml [key=value ...]: class-conditional image LatentLM, end to end.

Stages: (1) train the image sigma-VAE, measure latent stats; (2) encode the training images to latent grids;
(3) train a LatentLM (modality ``image``, one class token per image, ``<null>`` with prob. ``p_null`` for CFG);
(4) evaluate: a classifier trained on the real training images scores samples of every class (accuracy of the
requested class) and the Frechet distance in its feature space against held-out real images, per CFG scale;
(5) write the releases (``out_dir/vae``, ``out_dir/lm``), PNG sample grids and ``out_dir/report.json``.

Recipes: recipes/image/digits.yaml (CPU, minutes), recipes/image/imagefolder.yaml (ImageNet-style, GPU).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from latentlm.config import load_config, save_config, to_dict
from latentlm.diffusion import DiffusionConfig
from latentlm.head import HeadConfig
from latentlm.image.data import ImageFolder, load_digits_images, save_grid, split_digits
from latentlm.image.evaluate import (
    ClassifierConfig,
    class_accuracy,
    classifier_features,
    frechet_distance,
    inception_features,
    train_classifier,
)
from latentlm.image.generation import MODALITY, class_batch, sample_images
from latentlm.image.vae import ImageVAE, ImageVAEConfig, train_vae
from latentlm.model import LatentLM, LatentLMConfig
from latentlm.training import optimizer_step
from latentlm.transformer import TransformerConfig


@dataclass
class ImageDataConfig:
    kind: Literal["digits", "imagefolder"] = "digits"
    root: str = ""  # imagefolder: root/<class>/<image>
    test_root: str = ""  # imagefolder: held-out tree (default: a split of root)
    limit: int | None = None  # imagefolder: read at most this many images (they are held in memory)
    test_fraction: float = 0.2


@dataclass
class ImageEvalConfig:
    samples_per_class: int = 20
    max_classes: int = 10  # evaluate the first classes only (ImageNet has 1000)
    cfg_scales: list[float] = field(default_factory=lambda: [1.0, 2.0])
    steps: int = 10  # DPM-Solver++ steps per latent
    temperature: float = 1.0
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    inception_weights: str = ""  # local pt_inception-2015-12-05-6726825d.pth enables FID; empty = skip


def _default_lm() -> LatentLMConfig:
    dim = 128
    return LatentLMConfig(
        vocab_size=10,
        trunk=TransformerConfig(dim=dim, n_layers=4, n_heads=4, max_seq_len=64),
        modalities={
            MODALITY: HeadConfig(
                latent_dim=4, cond_dim=dim, width=128, depth=3, diffusion=DiffusionConfig(prediction="v")
            )
        },
    )


@dataclass
class ImageTrainConfig:
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    vae: ImageVAEConfig = field(default_factory=ImageVAEConfig)
    vae_steps: int = 1500
    vae_lr: float = 2e-3
    vae_batch: int = 64
    lm: LatentLMConfig = field(default_factory=_default_lm)
    lm_steps: int = 3000
    lm_lr: float = 1e-3
    batch: int = 64
    p_null: float = 0.1  # condition dropout for classifier-free guidance
    eval: ImageEvalConfig = field(default_factory=ImageEvalConfig)
    out_dir: str = "runs/image_digits"
    device: str = "cpu"
    seed: int = 0
    threads: int = 1
    log_every: int = 200


def load_data(cfg: ImageTrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (train_x, train_y, test_x, test_y), images in [-1, 1]."""
    d, v = cfg.data, cfg.vae
    if d.kind == "digits":
        if v.channels != 1:
            raise ValueError("digits are grayscale: set vae.channels=1")
        x, y = load_digits_images(v.image_size)
        return split_digits(x, y, d.test_fraction, seed=cfg.seed)
    if not d.root:
        raise ValueError("data.kind=imagefolder needs data.root=/path/to/train (root/<class>/<image>)")
    x, y = ImageFolder(d.root, v.image_size, v.channels).load_all(d.limit)
    if d.test_root:
        tx, ty = ImageFolder(d.test_root, v.image_size, v.channels).load_all(d.limit)
        return x, y, tx, ty
    return split_digits(x, y, d.test_fraction, seed=cfg.seed)


def check_compatible(cfg: ImageTrainConfig, num_classes: int) -> None:
    if MODALITY not in cfg.lm.modalities:
        raise ValueError(f"lm.modalities must contain {MODALITY!r}")
    if cfg.lm.modalities[MODALITY].latent_dim != cfg.vae.bottleneck.latent_dim:
        raise ValueError(
            f"lm.modalities.image.latent_dim ({cfg.lm.modalities[MODALITY].latent_dim}) must equal "
            f"vae.bottleneck.latent_dim ({cfg.vae.bottleneck.latent_dim})"
        )
    if cfg.lm.vocab_size < num_classes:
        raise ValueError(
            f"lm.vocab_size ({cfg.lm.vocab_size}) must be >= the number of classes ({num_classes})"
        )
    need = cfg.vae.num_latents + 5
    if cfg.lm.trunk.max_seq_len < need:
        raise ValueError(
            f"lm.trunk.max_seq_len must be >= {need} for {cfg.vae.num_latents} latents per image"
        )


def train_lm(
    cfg: ImageTrainConfig, vae: ImageVAE, mu: torch.Tensor, labels: torch.Tensor, g: torch.Generator
) -> LatentLM:
    """Train the class-conditional LatentLM on VAE means mu [n, L, D] (device of mu)."""
    model = LatentLM(cfg.lm).to(mu.device)
    flat = mu.reshape(-1, mu.shape[-1])  # [n*L, D]
    model.set_latent_stats(MODALITY, flat.mean(0), flat.std(0).clamp_min(1e-5))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lm_lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lm_lr, total_steps=cfg.lm_steps, pct_start=0.05
    )
    model.train()
    for step in range(cfg.lm_steps):
        idx = torch.randint(0, len(labels), (cfg.batch,), generator=g)
        batch = class_batch(model, vae, mu[idx.to(mu.device)].cpu(), labels[idx], cfg.p_null, g)
        terms = model.losses(batch.to(mu.device))
        optimizer_step(model, opt, sched, terms)
        if cfg.log_every and (step % cfg.log_every == 0 or step == cfg.lm_steps - 1):
            print(
                f"lm step {step:5d}  " + "  ".join(f"{k} {v.item():.4f}" for k, v in terms.items()),
                flush=True,
            )
    return model.eval()


def evaluate(
    cfg: ImageTrainConfig, model: LatentLM, vae: ImageVAE, data: tuple, out_dir: Path | None = None
) -> dict:
    """Class accuracy and classifier-feature FD per CFG scale (and FID if inception weights are given)."""
    tx, ty, vx, vy = data
    e = cfg.eval
    ccfg = ClassifierConfig(
        **{**to_dict(e.classifier), "channels": tx.shape[1], "num_classes": int(ty.max()) + 1}
    )
    clf = train_classifier(tx, ty, ccfg, seed=cfg.seed)
    report: dict = {"classifier_test_acc": class_accuracy(clf, vx, vy)}
    recon = vae.decode(vae.encode(vx.to(next(vae.parameters()).device))).cpu()
    report["vae_recon_acc"] = class_accuracy(clf, recon, vy)
    report["vae_recon_mse"] = float((recon - vx).pow(2).mean())
    real_feats = classifier_features(clf, vx)
    n_cls = min(e.max_classes, int(ty.max()) + 1)
    labels = torch.arange(n_cls).repeat_interleave(e.samples_per_class)
    for scale in e.cfg_scales:
        g = torch.Generator().manual_seed(cfg.seed + 7)
        t0 = time.perf_counter()
        imgs = sample_images(
            model, vae, labels, cfg=scale, steps=e.steps, temperature=e.temperature, generator=g
        ).cpu()
        key = f"cfg{scale:g}"
        report[f"{key}_acc"] = class_accuracy(clf, imgs, labels)
        report[f"{key}_fd"] = frechet_distance(classifier_features(clf, imgs), real_feats)
        report[f"{key}_images_per_s"] = len(labels) / (time.perf_counter() - t0)
        if e.inception_weights:
            fid_real = inception_features(vx, e.inception_weights)
            report[f"{key}_fid"] = frechet_distance(inception_features(imgs, e.inception_weights), fid_real)
        if out_dir is not None:
            save_grid(imgs, out_dir / f"samples_{key}.png", nrow=e.samples_per_class)
    report["fd_real_vs_real_train"] = frechet_distance(classifier_features(clf, tx[: len(vx)]), real_feats)
    return report


def train(cfg: ImageTrainConfig, write: bool = True) -> tuple[LatentLM, ImageVAE, dict]:
    """The whole pipeline; ``write`` = save releases, grids and the report under ``cfg.out_dir``."""
    torch.manual_seed(cfg.seed)
    dev = torch.device(cfg.device)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    data = load_data(cfg)
    tx, ty = data[0], data[1]
    check_compatible(cfg, int(ty.max()) + 1)
    out = Path(cfg.out_dir)
    t0 = time.perf_counter()
    vae = ImageVAE(cfg.vae).to(dev)
    vae_terms = train_vae(
        vae, tx.to(dev), cfg.vae_steps, cfg.vae_batch, cfg.vae_lr, generator=None, log_every=cfg.log_every
    )
    with torch.no_grad():
        mu = torch.cat([vae.to_tokens(vae.encode(tx[i : i + 256].to(dev))) for i in range(0, len(tx), 256)])
    t1 = time.perf_counter()
    model = train_lm(cfg, vae, mu, ty, g)
    t2 = time.perf_counter()
    report = {"vae_train_s": t1 - t0, "lm_train_s": t2 - t1, **{f"vae_{k}": v for k, v in vae_terms.items()}}
    report.update(evaluate(cfg, model, vae, data, out if write else None))
    if write:
        out.mkdir(parents=True, exist_ok=True)
        vae.save_pretrained(out / "vae", meta={"data": cfg.data.kind})
        model.save_pretrained(out / "lm", meta={"vae": "../vae", "task": "class-conditional image"})
        save_config(cfg, out / "train_config.yaml")
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return model, vae, report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="YAML recipe, e.g. recipes/image/digits.yaml")
    ap.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. lm_steps=500")
    args = ap.parse_args(argv)
    cfg = load_config(ImageTrainConfig, args.recipe, args.overrides)
    torch.set_num_threads(cfg.threads)
    _, _, report = train(cfg)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
