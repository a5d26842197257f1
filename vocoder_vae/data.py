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
    # decoder fine-tuning on ground-truth-aligned latents (tts/gta.py: an LM's teacher-forced predictions paired
    # with the audio they stand for); needs freeze_encoder. gta_fraction of each batch's rows come from it.
    gta: str = ""
    gta_fraction: float = 0.5


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


class GTAPairs:
    """(latents, audio) pairs from ``python -m tts.gta`` (safetensors: ``z/<id>`` [T, D], ``wav/<id>`` [T * hop]);
    ``batch(step)`` draws frame-aligned crops (length-weighted), a pure function of (seed, rank, step)."""

    def __init__(self, path: str | Path, hop: int, segment_frames: int, seed: int = 0, rank: int = 0):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            ids = sorted(k[2:] for k in f.keys() if k.startswith("z/"))
            if not ids:
                raise ValueError(f"{path}: no z/<id> tensors (make it with python -m tts.gta)")
            if int(meta.get("hop", hop)) != hop:
                raise ValueError(f"{path}: made for hop {meta['hop']}, this VAE's hop is {hop}")
            self.z = [f.get_tensor(f"z/{i}") for i in ids]  # [T, D] each
            self.wav = [f.get_tensor(f"wav/{i}") for i in ids]  # [T * hop] each
        for i, z, w in zip(ids, self.z, self.wav):
            if len(w) != z.shape[0] * hop:
                raise ValueError(f"{path}: {i}: {len(w)} samples for {z.shape[0]} frames of hop {hop}")
        self.hop, self.frames, self.seed, self.rank = hop, segment_frames, seed, rank
        lengths = torch.tensor([z.shape[0] for z in self.z], dtype=torch.float64)
        self.weights = lengths / lengths.sum()

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (audio [B, 1, frames * hop], latents [B, D, frames]); short utterances zero-padded on the right."""
        g = torch.Generator().manual_seed(int(np.uint64(self.seed * 1_000_033 + self.rank * 7907 + step + 17)))
        idx = torch.multinomial(self.weights, batch_size, replacement=True, generator=g)
        d = self.z[0].shape[1]
        wav = torch.zeros(batch_size, 1, self.frames * self.hop)
        z = torch.zeros(batch_size, d, self.frames)
        for b, i in enumerate(idx.tolist()):
            n = self.z[i].shape[0]
            start = int(torch.randint(0, n - self.frames + 1, (1,), generator=g)) if n > self.frames else 0
            piece = self.z[i][start : start + self.frames]  # [t, D]
            z[b, :, : piece.shape[0]] = piece.T
            w = self.wav[i][start * self.hop : (start + piece.shape[0]) * self.hop]
            wav[b, 0, : len(w)] = w
        return wav, z
