"""Copy a latent store (tts.extract) with its shards cast to another dtype: float16 halves it for a transfer with
a size limit, float32 restores it for training (the metadata, e.g. frame_rate, is kept).

    python recipes/demo/latent_dtype.py SRC DST float16|float32
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def convert(src: Path, dst: Path, dtype: torch.dtype) -> None:
    if not any(src.glob("index-r*.json")):
        raise SystemExit(f"error: {src} is not a latent store (no index-r*.json)")
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        if p.suffix == ".safetensors":
            with safe_open(p, "pt") as f:
                meta = f.metadata()
            save_file(
                {k: v.to(dtype).contiguous() for k, v in load_file(p).items()}, dst / p.name, metadata=meta
            )
        elif p.is_file():
            shutil.copy(p, dst / p.name)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in ("float16", "float32"):
        raise SystemExit(__doc__)
    convert(Path(sys.argv[1]), Path(sys.argv[2]), getattr(torch, sys.argv[3]))
