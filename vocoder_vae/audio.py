"""Audio input handling: read with soundfile, convert any dtype/layout to mono float32, resample, validate.

Accepted arrays: numpy or torch; int16 / int32 / uint8 / float; mono [L], or multichannel [L, C] / [C, L]
(the channel axis is the short one, at most 8 channels). Output: float32 torch tensor [L] in [-1, 1].
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

MAX_CHANNELS = 8
SILENCE_PEAK = 1e-4  # peak amplitude (full scale = 1) below which a clip counts as silent


def to_mono_float(wav, name: str = "audio") -> np.ndarray:
    """Any array-like of samples -> float32 numpy [L] (int types scaled to [-1, 1], channels averaged)."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    if not isinstance(wav, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array or torch tensor, got {type(wav).__name__}")
    if wav.dtype.kind == "i":
        wav = wav.astype(np.float32) / float(np.iinfo(wav.dtype).max + 1)
    elif wav.dtype.kind == "u":
        info = np.iinfo(wav.dtype)
        wav = (wav.astype(np.float32) - (info.max + 1) / 2) / ((info.max + 1) / 2)
    elif wav.dtype.kind == "f":
        wav = wav.astype(np.float32)
    else:
        raise ValueError(f"{name}: unsupported sample dtype {wav.dtype}")
    if wav.ndim == 2:
        if min(wav.shape) > MAX_CHANNELS:
            raise ValueError(f"{name}: shape {wav.shape} is not [samples, channels] or [channels, samples]")
        wav = wav.mean(axis=1) if wav.shape[0] >= wav.shape[1] else wav.mean(axis=0)
    elif wav.ndim != 1:
        raise ValueError(f"{name}: expected mono [samples] or [samples, channels], got shape {wav.shape}")
    return np.ascontiguousarray(wav)


def check_audio(wav: np.ndarray, name: str = "audio") -> None:
    """Reject empty, non-finite and silent input with a readable message."""
    if wav.size == 0:
        raise ValueError(f"{name}: empty audio (0 samples)")
    if not np.isfinite(wav).all():
        raise ValueError(f"{name}: audio contains NaN or infinite samples")
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK:
        raise ValueError(f"{name}: audio is silent (peak amplitude {peak:.2e} < {SILENCE_PEAK:g})")


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy), float32 [L] -> float32 [L * sr_out / sr_in]."""
    if sr_in <= 0:
        raise ValueError(f"sample rate must be positive, got {sr_in}")
    if sr_in == sr_out:
        return wav
    g = gcd(sr_in, sr_out)
    return resample_poly(wav, sr_out // g, sr_in // g).astype(np.float32)


def prepare(wav, sample_rate: int, target_rate: int, name: str = "audio") -> torch.Tensor:
    """Validate, downmix and resample -> float32 tensor [L] at ``target_rate``."""
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool):
        raise ValueError(f"{name}: sample_rate must be an int, got {sample_rate!r}")
    mono = to_mono_float(wav, name)
    check_audio(mono, name)
    return torch.from_numpy(resample(mono, int(sample_rate), target_rate).copy())


def load_audio(path: str | Path, target_rate: int) -> torch.Tensor:
    """Read a file with soundfile -> float32 tensor [L] at ``target_rate`` (mono). Clear error if unreadable."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [L, C]
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for corrupt files
        raise ValueError(f"cannot read audio file {path}: {e}") from e
    return prepare(data, sr, target_rate, name=str(path))
