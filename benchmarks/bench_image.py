"""Image generation throughput (images/s) of the class-conditional digits LatentLM on this machine.

    python -m benchmarks.bench_image                                   # recipe-sized model, random weights
    python -m benchmarks.bench_image --release runs/image_digits       # a trained release (lm/ + vae/)
    python -m benchmarks.bench_image --threads 2 --batches 1 16 64 --steps 5 10

Every image is a fixed span of L latents (16 for the digits recipe), each sampled by the diffusion head with
DPM-Solver++ (``steps`` head evaluations; x2 rows with CFG) after one cached trunk step, then decoded by the
image VAE. The count of latents is fixed, so random weights time the same work as trained ones.
Prints one row per (batch, steps, cfg): images/s and ms per image (median of ``--repeats`` runs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latentlm.config import load_config
from latentlm.image.generation import sample_images
from latentlm.image.train import ImageTrainConfig
from latentlm.image.vae import ImageVAE
from latentlm.model import LatentLM


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/image/digits.yaml")
    ap.add_argument(
        "--release", default="", help="directory with lm/ and vae/ releases (else random weights)"
    )
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--steps", type=int, nargs="+", default=[10])
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.release:
        model = LatentLM.from_pretrained(f"{args.release}/lm")
        vae = ImageVAE.from_pretrained(f"{args.release}/vae")
        src = args.release
    else:
        cfg = load_config(ImageTrainConfig, args.recipe)
        torch.manual_seed(0)
        model, vae = LatentLM(cfg.lm).eval(), ImageVAE(cfg.vae).eval()
        src = f"{args.recipe} (random weights)"
    n_lat = vae.cfg.num_latents
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model: {src}; {params:.2f}M LM params, {n_lat} latents x {vae.latent_dim} dims per image, "
          f"threads {args.threads}")  # fmt: skip
    print(f"{'batch':>6} {'steps':>6} {'cfg':>5} {'images/s':>10} {'ms/image':>10}")
    for b in args.batches:
        labels = torch.arange(b) % model.cfg.vocab_size
        for steps in args.steps:
            for cfg_scale in args.cfg:
                times = []
                for r in range(args.repeats + 1):  # first run is a warm-up
                    g = torch.Generator().manual_seed(r)
                    t0 = time.perf_counter()
                    sample_images(model, vae, labels, cfg=cfg_scale, steps=steps, generator=g)
                    if r:
                        times.append(time.perf_counter() - t0)
                t = statistics.median(times)
                print(f"{b:>6} {steps:>6} {cfg_scale:>5g} {b / t:>10.1f} {1000 * t / b:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
