"""What a latent store folder (LATENTS/, tts.data.LatentStore) holds beside the latents, and where a run finds it:

phonemes.json (+ phonemes.meta.json)  phoneme ids per utterance: ``phoneme_cache`` (tts.train, tts.durations)
durations.json (+ aligner.json)       frames per phoneme symbol: python -m tts.durations
duration_model/                       the duration predictor (``duration_model_dir``): tts.duration_train
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch.distributed as dist

from tts.frontend import TEXT_NORM_VERSION, Frontend
from tts.manifests import Utterance

if TYPE_CHECKING:
    from tts.train_config import DataConfig


def phoneme_cache(rows: list[Utterance], latents_dir: Path, frontend: Frontend, rank: int = 0) -> dict:
    """{id: phoneme ids} from LATENTS/phonemes.json, computing (rank 0) and saving the missing ones.
    Texts that phonemize to nothing are skipped with a warning. ``phonemes.meta.json`` beside it names the front
    end that made it (``TEXT_NORM_VERSION``, language); a cache made by another one (or older than the file) is
    refused with what to rerun, since durations.json was aligned to its phonemes."""
    path, meta_path = latents_dir / "phonemes.json", latents_dir / "phonemes.meta.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    made_by = {"text_norm": TEXT_NORM_VERSION, "language": frontend.language}
    old = json.loads(meta_path.read_text()) if meta_path.exists() else {"text_norm": 1}
    if cache and old != made_by:
        raise ValueError(
            f"{path} was made by another front end ({old}, this one is {made_by}): its phonemes and the durations "
            f"aligned to them are stale. Remove {path.name} and durations.json from {latents_dir}, then rerun "
            f"python -m tts.durations --latents {latents_dir} --manifest MANIFEST (and python -m tts.duration_train)"
        )
    todo = [r for r in rows if r.id not in cache]
    if todo and rank == 0:
        try:
            ids = frontend.encode_batch([r.text for r in todo])
            cache.update({r.id: x for r, x in zip(todo, ids)})
        except ValueError:  # one bad text spoils a batch: go one by one
            for r in todo:
                try:
                    cache[r.id] = frontend.encode(r.text)
                except ValueError as e:
                    warnings.warn(f"skipping {r.id}: {e}", stacklevel=2)
        meta_path.write_text(json.dumps(made_by))  # first: the cache below is only ever this front end's
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    if dist.is_initialized():
        dist.barrier()
        cache = json.loads(path.read_text())
    return cache


def duration_model_dir(data: DataConfig) -> Path:
    """Where a run's duration predictor lives: ``data.duration_model``, or LATENTS/duration_model."""
    return Path(data.duration_model or Path(data.latents) / "duration_model")
