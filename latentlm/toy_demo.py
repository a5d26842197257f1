"""python -m latentlm.toy_demo: train a small LatentLM on the toy task (about a minute on 2 CPU cores) and print
mode coverage, autoregressive consistency, stopping and the effect of classifier-free guidance."""

from __future__ import annotations

import argparse

import torch

from latentlm.toy import MODES, S, nearest_mode, sample, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = train(steps=args.steps, log_every=100)
    lay = model.layout
    for c in (0, 1):
        for cfg in (1.0, 3.0):
            out = sample(model, c, args.samples, cfg=cfg)
            ok = [r for r in out if len(r) == 3 and r[2] == lay.end["x"]]
            z1 = torch.stack([r[0] for r in ok])
            z2 = torch.stack([r[1] for r in ok])
            dist, k = nearest_mode(z1, c)
            on = dist < 4 * S
            freq = torch.bincount(k[on], minlength=2).float() / on.sum()
            print(
                f"class {c} cfg {cfg}: stopped after 2 latents {len(ok) / len(out):.1%}, on a mode {on.float().mean():.1%}, "
                f"mode freq {[round(x, 2) for x in freq.tolist()]} (true {MODES[c][1].tolist()}), "
                f"median dist to mode {dist.median():.3f}, median |z1+z2| {(z1 + z2).norm(dim=1).median():.3f}"
            )


if __name__ == "__main__":
    main()
