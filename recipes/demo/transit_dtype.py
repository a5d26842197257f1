"""Copy a latent store (tts.extract) or a release (model.safetensors + config, any vae/ inside) with its tensors
cast to another dtype: float16 halves it for a transfer with a size limit, float32 restores it for use.

    python recipes/demo/transit_dtype.py SRC DST float16|float32

Latent statistics (``latent_mean*`` / ``latent_std*`` buffers) stay float32, so a model continued from a
transported release still matches the VAE's statistics exactly; safetensors metadata (e.g. frame_rate) is kept.
A float16 round trip changes other weights by up to ~0.05% (fine to continue training from; ship the originals).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

KEEP = ("latent_mean", "latent_std")


def _cast_file(src: Path, dst: Path, dtype: torch.dtype) -> None:
    with safe_open(src, "pt") as f:
        meta = f.metadata()
    out = {}
    for k, v in load_file(src).items():
        keep = not v.is_floating_point() or k.rsplit(".", 1)[-1].startswith(KEEP)
        out[k] = (v if keep else v.to(dtype)).contiguous()
    save_file(out, dst, metadata=meta)


def convert(src: Path, dst: Path, dtype: torch.dtype) -> None:
    if not any(src.glob("index-r*.json")) and not (src / "model.safetensors").is_file():
        raise SystemExit(
            f"error: {src} is neither a latent store (index-r*.json) nor a release (model.safetensors)"
        )
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        if p.suffix == ".safetensors":
            _cast_file(p, dst / p.name, dtype)
        elif p.is_dir() and (p / "model.safetensors").is_file():  # a release's vae/
            convert(p, dst / p.name, dtype)
        elif p.is_file():
            shutil.copy(p, dst / p.name)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in ("float16", "float32"):
        raise SystemExit(__doc__)
    convert(Path(sys.argv[1]), Path(sys.argv[2]), getattr(torch, sys.argv[3]))
