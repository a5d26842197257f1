"""Training data for the audio VAE: audio file lists from manifests, and random crops.

Sources (``DataConfig.train``, comma-separated): a JSONL manifest (rows {"audio": path, ...}; relative paths
are relative to the manifest's folder), a TSV manifest with a ``file`` or ``audio`` column (the real-speech
``manifest.tsv``), a directory (searched recursively for wav/flac/ogg), or a single audio file.

Batches are a pure function of (seed, rank, step): resuming at step s replays exactly the crops an
uninterrupted run would have drawn, so the data position is the step counter and nothing else.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vocoder_vae.audio import load_audio

AUDIO_EXTS = {".wav", ".flac", ".ogg"}


@dataclass
class DataConfig:
    train: str = ""  # comma-separated manifests (.jsonl / .tsv), directories or audio files
    valid: str = ""  # clips for TensorBoard audio samples; "" = the first train files
    segment_seconds: float = 1.0  # crop length (rounded down to a multiple of hop)
    batch_size: int = 16
    max_files: int = 0  # 0 = all files
    num_samples: int = 2  # audio samples written to TensorBoard
    stats_files: int = 64  # files encoded to measure latent mean/std for the release


def _rows_from_tsv(path: Path) -> list[Path]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{path}: empty manifest")
    header = rows[0]
    col = next((header.index(c) for c in ("audio", "file", "path") if c in header), None)
    if col is None:
        raise ValueError(f"{path}: TSV manifest needs an 'audio' or 'file' column, header is {header}")
    return [path.parent / r[col] for r in rows[1:] if r]


def _rows_from_jsonl(path: Path) -> list[Path]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        if "audio" not in row:
            raise ValueError(f"{path}:{i + 1}: row has no 'audio' key: {line[:100]}")
        out.append(path.parent / row["audio"])
    return out


def list_audio(spec: str) -> list[Path]:
    """Resolve a comma-separated list of sources to audio file paths (sorted within each directory)."""
    files: list[Path] = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_EXTS)
            if not found:
                raise ValueError(f"{p}: directory holds no audio files ({sorted(AUDIO_EXTS)})")
            files += found
        elif p.suffix == ".jsonl":
            files += _rows_from_jsonl(p)
        elif p.suffix == ".tsv":
            files += _rows_from_tsv(p)
        elif p.suffix.lower() in AUDIO_EXTS and p.is_file():
            files.append(p)
        else:
            raise ValueError(f"data source {item!r} is not a directory, .jsonl/.tsv manifest or audio file")
    if not files:
        raise ValueError(f"no audio files found in {spec!r}")
    return files


class CropDataset:
    """All clips held in memory at the model rate; ``batch(step)`` draws random crops (length-weighted)."""

    def __init__(self, files: list[Path], sample_rate: int, segment: int, seed: int = 0, rank: int = 0):
        self.files, self.segment, self.seed, self.rank = files, segment, seed, rank
        self.clips = [load_audio(f, sample_rate) for f in files]
        lengths = torch.tensor([len(c) for c in self.clips], dtype=torch.float64)
        self.weights = lengths / lengths.sum()

    @property
    def num_samples(self) -> int:
        return sum(len(c) for c in self.clips)

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        """Crops for ``step`` -> [B, 1, segment] (short clips zero-padded on the right)."""
        g = torch.Generator().manual_seed(int(np.uint64(self.seed * 1_000_003 + self.rank * 7919 + step)))
        idx = torch.multinomial(self.weights, batch_size, replacement=True, generator=g)
        out = torch.zeros(batch_size, 1, self.segment)
        for b, i in enumerate(idx.tolist()):
            clip = self.clips[i]
            span = len(clip) - self.segment
            start = int(torch.randint(0, span + 1, (1,), generator=g)) if span > 0 else 0
            piece = clip[start : start + self.segment]
            out[b, 0, : len(piece)] = piece
        return out
