"""Checkpoints: resumable training state, and releases for users.

Training state (one ``.pt`` file, loaded with ``weights_only=True`` so it can never execute code):
    save_training_state(path, {"model": sd, "optimizer": sd, "step": 10, "config": to_dict(cfg), ...})
    state = load_training_state(path)
  Writes are atomic (temp file + os.replace), so a kill mid-save never leaves a torn checkpoint.
  ``rng_state()`` / ``set_rng_state()`` capture torch, CUDA, Python and NumPy generators in a weights_only-safe form.

Release (what users download and ``from_pretrained`` loads):
    directory/model.safetensors   weights (strict load: missing/unexpected keys are errors)
    directory/config.json         {"format_version": 1, "kind": ..., "config": <resolved config dict>, "meta": {...}}
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from latentlm.config import to_dict

RELEASE_WEIGHTS = "model.safetensors"
RELEASE_CONFIG = "config.json"
FORMAT_VERSION = 1


def _atomic_write(path: Path, write_fn) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a dict of tensors / plain Python values (no arbitrary objects)."""
    _atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, or one that needs unpickling arbitrary objects
        raise ValueError(f"cannot load training checkpoint {path}: {e}") from e


def rng_state() -> dict[str, Any]:
    """All global RNG states, as tensors / lists / tuples (weights_only-loadable)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, keys, *rest = state["python"]
    random.setstate((version, tuple(keys), *rest))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_release(
    directory: str | Path,
    model: nn.Module | dict[str, torch.Tensor],
    config: Any,
    meta: dict | None = None,
    kind: str = "latentlm",
) -> Path:
    """Write model.safetensors + config.json. ``config`` is a config dataclass or its dict."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    # safetensors refuses shared/non-contiguous storage: store plain contiguous copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}
    _atomic_write(directory / RELEASE_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    cfg_dict = config if isinstance(config, dict) else to_dict(config)
    doc = {"format_version": FORMAT_VERSION, "kind": kind, "config": cfg_dict, "meta": meta or {}}
    text = json.dumps(doc, indent=2) + "\n"
    _atomic_write(directory / RELEASE_CONFIG, lambda tmp: Path(tmp).write_text(text))
    return directory


def load_release(
    directory: str | Path, kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """-> (state_dict, config dict, meta). Checks the files exist and, if given, that ``kind`` matches."""
    directory = Path(directory)
    wpath, cpath = directory / RELEASE_WEIGHTS, directory / RELEASE_CONFIG
    for p in (wpath, cpath):
        if not p.is_file():
            raise FileNotFoundError(f"{directory} is not a release: missing {p.name}")
    try:
        doc = json.loads(cpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cpath}: not JSON ({e}); copy or export the release again") from None
    if not isinstance(doc, dict) or "config" not in doc:
        raise ValueError(f"{cpath}: not a release config (no 'config' key)")
    version = doc.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(
            f"{cpath}: format_version must be an integer (this code writes {FORMAT_VERSION}), got {version!r}"
        )
    if version > FORMAT_VERSION:
        raise ValueError(f"{cpath}: format_version {version} is newer than this code supports")
    if kind is not None and doc.get("kind") != kind:
        raise ValueError(f"{directory} holds a {doc.get('kind')!r} release, expected {kind!r}")
    try:
        weights = load_file(str(wpath))
    except Exception as e:  # safetensors' SafetensorError: truncated, garbage, or a header that lies
        raise ValueError(
            f"{wpath} is not a readable safetensors file ({e}); it may be truncated or corrupt: "
            "download or export the release again"
        ) from None
    return weights, doc["config"], doc.get("meta", {})


def load_state_dict_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """load_state_dict(strict=True) with a readable message that names what does not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shape = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if shape:
            parts.append(
                "shape mismatch "
                + ", ".join(f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:5])
            )
        raise ValueError(f"{source} does not match the model built from its config: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)
