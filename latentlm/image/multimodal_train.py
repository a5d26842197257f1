"""python -m latentlm.image.multimodal_train RECIPE.yaml [key=value ...]: one LatentLM for text->image,
image->text and text->speech (see ``latentlm.image.multimodal``), trained on the digits, evaluated per direction.

Stages: image sigma-VAE on the digits -> VAE means -> one interleaved LatentLM -> scores:
  t2i_acc_cfg<s>: a classifier trained on the real digits recognises the captioned digit in generated images;
  i2t_acc: the greedy caption of a held-out image names its digit;
  tts_len_corr: Pearson correlation of generated frame count and text length (the model stops by itself);
  tts_match_acc: a generated sequence is nearest to its own text's reference latents (chance 1 / n).
Writes ``out_dir/lm`` (+ tokenizer.json), ``out_dir/vae``, ``samples_t2i.png`` and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from latentlm.config import load_config, save_config
from latentlm.image.data import load_digits_images, save_grid, split_digits
from latentlm.image.evaluate import ClassifierConfig, class_accuracy, train_classifier
from latentlm.image.multimodal import (
    Interleaved,
    MultimodalConfig,
    predicted_digit,
    speech_match_accuracy,
    train_multimodal,
)
from latentlm.image.vae import ImageVAE, ImageVAEConfig, train_vae


@dataclass
class MultimodalTrainConfig:
    vae: ImageVAEConfig = field(default_factory=ImageVAEConfig)
    vae_steps: int = 1500
    vae_lr: float = 2e-3
    mm: MultimodalConfig = field(default_factory=MultimodalConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    eval_per_class: int = 10
    eval_texts: int = 30
    cfg_scales: list[float] = field(default_factory=lambda: [1.0, 2.0])
    steps: int = 10  # DPM-Solver++ steps per latent
    out_dir: str = "runs/multimodal_digits"
    seed: int = 0
    threads: int = 1


@torch.no_grad()
def evaluate_multimodal(
    mm: Interleaved, clf, test_x: torch.Tensor, test_y: torch.Tensor, cfg: MultimodalTrainConfig
) -> tuple[dict, dict]:
    """-> (report, samples {"t2i_cfg<s>": images})."""
    report: dict = {}
    samples: dict = {}
    labels = torch.arange(10).repeat_interleave(cfg.eval_per_class)
    for s in cfg.cfg_scales:
        g = torch.Generator().manual_seed(cfg.seed + 11)
        imgs = mm.text_to_image(labels.tolist(), cfg=s, steps=cfg.steps, generator=g)
        report[f"t2i_acc_cfg{s:g}"] = class_accuracy(clf, imgs, labels)
        samples[f"t2i_cfg{s:g}"] = imgs
    n = min(len(test_y), 10 * cfg.eval_per_class)
    mu = mm.vae.to_tokens(mm.vae.encode(test_x[:n]))  # [n, L, Di]
    caps = mm.image_to_text(mu)
    pred = torch.tensor([predicted_digit(c) for c in caps])
    report["i2t_acc"] = float((pred == test_y[:n]).float().mean())
    report["i2t_examples"] = caps[:5]
    rng = random.Random(cfg.seed + 99)
    texts = [mm.speech.text(rng) for _ in range(cfg.eval_texts)]
    max_frames = mm.speech.cfg.frames_per_char * max(len(t) for t in texts) * 2
    g = torch.Generator().manual_seed(cfg.seed + 12)
    gen = mm.text_to_speech(texts, max_frames=max_frames, steps=cfg.steps, generator=g)
    lens = np.array([len(x) for x in gen], dtype=float)
    want = np.array([len(mm.speech.clean(t)) for t in texts], dtype=float)
    report["tts_len_corr"] = float(np.corrcoef(lens, want)[0, 1]) if lens.std() > 0 else 0.0
    report["tts_len_abs_err"] = float(np.abs(lens - want).mean())
    report["tts_match_acc"] = speech_match_accuracy(gen, [mm.speech.clean(t) for t in texts])
    report["tts_match_chance"] = 1.0 / len(texts)
    return report, samples


def run(cfg: MultimodalTrainConfig, write: bool = True) -> tuple[Interleaved, dict]:
    torch.manual_seed(cfg.seed)
    x, y = load_digits_images(cfg.vae.image_size)
    tx, ty, vx, vy = split_digits(x, y, 0.2, seed=cfg.seed)
    t0 = time.perf_counter()
    vae = ImageVAE(cfg.vae)
    train_vae(vae, tx, cfg.vae_steps, lr=cfg.vae_lr)
    mu = torch.cat([vae.to_tokens(vae.encode(tx[i : i + 256])) for i in range(0, len(tx), 256)])
    t1 = time.perf_counter()
    mm, terms = train_multimodal(cfg.mm, vae, mu, ty)
    t2 = time.perf_counter()
    clf = train_classifier(tx, ty, cfg.classifier, seed=cfg.seed)
    report = {
        "vae_train_s": t1 - t0,
        "lm_train_s": t2 - t1,
        "classifier_test_acc": class_accuracy(clf, vx, vy),
    }
    report.update({f"final_{k}": v for k, v in terms.items()})
    scores, samples = evaluate_multimodal(mm, clf, vx, vy, cfg)
    report.update(scores)
    if write:
        out = Path(cfg.out_dir)
        vae.save_pretrained(out / "vae")
        mm.model.save_pretrained(out / "lm", meta={"vae": "../vae", "tokenizer": "tokenizer.json"})
        mm.tok.save(out / "lm")
        for k, imgs in samples.items():
            save_grid(imgs, out / f"samples_{k}.png", nrow=cfg.eval_per_class)
        save_config(cfg, out / "train_config.yaml")
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return mm, report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    cfg = load_config(MultimodalTrainConfig, args.recipe, args.overrides)
    torch.set_num_threads(cfg.threads)
    _, report = run(cfg)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
