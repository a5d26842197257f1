"""Reconstruction quality of a VAE release on held-out audio:

    python -m vocoder_vae.evaluate --release DIR [--audio SOURCES] [--out results.jsonl] [--noise 0,0.1,0.5]

SOURCES defaults to the real dev set (shared/data/real_speech/dev/manifest.tsv, never trained on). Each clip is
loaded at the model rate, encoded to latent means, optionally perturbed with Gaussian noise of std
``noise * latent_std`` per dim (decoder robustness), decoded, and scored against the original. Prints the mean
of each metric over clips (per noise level) and, with --out, writes per-clip JSONL plus a summary JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vocoder_vae.audio import load_audio
from vocoder_vae.data import list_audio
from vocoder_vae.metrics import all_metrics
from vocoder_vae.model import AudioVAE

DEFAULT_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_speech" / "dev" / "manifest.tsv"


@torch.no_grad()
def evaluate(vae: AudioVAE, files: list[Path], noise_levels=(0.0,), seed: int = 0) -> list[dict]:
    rows = []
    g = torch.Generator(vae.device).manual_seed(seed)
    for f in files:
        wav = load_audio(f, vae.sample_rate)
        z = vae.encode(wav, vae.sample_rate)  # [T, D]
        post_var = float(z.var(0).mean())
        for lvl in noise_levels:
            zn = z + lvl * vae.latent_std * torch.randn(z.shape, generator=g, device=z.device)
            y = vae.decode(zn)[: len(wav)].cpu()
            rows.append(
                {"file": str(f), "noise": lvl, "latent_var": post_var, **all_metrics(wav, y, vae.sample_rate)}
            )
    return rows


def summarize(rows: list[dict]) -> dict:
    out = {}
    for lvl in sorted({r["noise"] for r in rows}):
        sel = [r for r in rows if r["noise"] == lvl]
        keys = [k for k in sel[0] if k not in ("file", "noise")]
        out[str(lvl)] = {k: float(np.mean([r[k] for r in sel])) for k in keys} | {"clips": len(sel)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Reconstruction metrics of an audio VAE release.")
    ap.add_argument("--release", required=True)
    ap.add_argument("--audio", default=str(DEFAULT_DEV), help="manifests/dirs/files, comma-separated")
    ap.add_argument("--max-files", type=int, default=0)
    ap.add_argument("--noise", default="0", help="comma-separated latent noise levels (x latent std)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="per-clip JSONL path (a .summary.json is written beside it)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    vae = AudioVAE.from_pretrained(args.release, device=args.device)
    files = list_audio(args.audio)
    if args.max_files:
        files = files[: args.max_files]
    rows = evaluate(vae, files, [float(x) for x in args.noise.split(",")])
    summary = summarize(rows)
    for lvl, s in summary.items():
        print(f"noise {lvl}: " + "  ".join(f"{k} {v:.4g}" for k, v in s.items()), flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))
        doc = {"aggregation": "mean over clips per noise level", "release": args.release, "summary": summary}
        out.with_suffix(".summary.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
