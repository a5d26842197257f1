"""Copy a latent store (tts.extract) or a release (model.safetensors + config, any vae/ inside) with its tensors
cast to another dtype: float16 halves it for a transfer with a size limit, float32 restores it for use.

    python recipes/demo/transit_dtype.py SRC DST float16|float32 [--keep MANIFEST]

``--keep MANIFEST`` (latent stores): only the utterances of that JSONL manifest travel (e.g. a manifest whose
clips were replaced by their pieces, tts.split_speakers, leaves the whole clips' latents behind).

Latent statistics (``latent_mean*`` / ``latent_std*`` buffers) stay float32, so a model continued from a
transported release still matches the VAE's statistics exactly; safetensors metadata (e.g. frame_rate) is kept.
A float16 round trip changes other weights by up to ~0.05% (fine to continue training from; ship the originals).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

KEEP = ("latent_mean", "latent_std")


def _cast_file(src: Path, dst: Path, dtype: torch.dtype, ids: set[str] | None = None) -> None:
    """Cast one safetensors file; ``ids``: keep only those tensors (a latent shard's utterance ids)."""
    with safe_open(src, "pt") as f:
        meta = f.metadata()
    out = {}
    for k, v in load_file(src).items():
        if ids is not None and k not in ids:
            continue
        keep = not v.is_floating_point() or k.rsplit(".", 1)[-1].startswith(KEEP)
        out[k] = (v if keep else v.to(dtype)).contiguous()
    if out or ids is None:  # a shard with none of the kept utterances is left out
        save_file(out, dst, metadata=meta)


def convert(src: Path, dst: Path, dtype: torch.dtype, ids: set[str] | None = None) -> None:
    store = any(src.glob("index-r*.json"))
    if not store and not (src / "model.safetensors").is_file():
        raise SystemExit(
            f"error: {src} is neither a latent store (index-r*.json) nor a release (model.safetensors)"
        )
    if ids is not None and not store:
        raise SystemExit("error: --keep applies to latent stores only")
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        if p.suffix == ".safetensors":
            _cast_file(p, dst / p.name, dtype, ids if store else None)
        elif (
            p.is_dir() and (p / "model.safetensors").is_file()
        ):  # a release's vae/, a store's duration_model/
            convert(p, dst / p.name, dtype)
        elif p.is_file() and ids is not None and p.name.startswith("index") and p.suffix == ".json":
            index = json.loads(p.read_text())  # {id: {"shard", "frames"}}
            (dst / p.name).write_text(json.dumps({k: v for k, v in index.items() if k in ids}))
        elif p.is_file():
            shutil.copy(p, dst / p.name)


if __name__ == "__main__":
    args = sys.argv[1:]
    keep = None
    if len(args) == 5 and args[3] == "--keep":
        keep = {json.loads(line)["id"] for line in open(args[4], encoding="utf-8") if line.strip()}
        args = args[:3]
    if len(args) != 3 or args[2] not in ("float16", "float32"):
        raise SystemExit(__doc__)
    convert(Path(args[0]), Path(args[1]), getattr(torch, args[2]), keep)
