"""Audio input handling: read with soundfile, convert any dtype/layout to mono float32, resample, validate.

Accepted arrays: numpy or torch; int16 / int32 / uint8 / float; mono [L], or multichannel [L, C] / [C, L]
(the channel axis is the short one, at most 8 channels). Output: float32 torch tensor [L] in [-1, 1].

Every clip's rate and length are checked BEFORE it is decoded or resampled (``check_rate_and_length``): a header
that claims 1 Hz would otherwise make a 2 MB file resample to ~128 GB. ``read_audio`` reads the header first
(``soundfile.info``), so a too-long, header-only or absurd-rate file is refused without reading its samples.
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
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 384000  # Hz; a rate outside is a broken header, not speech
MAX_SECONDS = 3600.0  # the longest clip read or resampled in one piece (callers pass tighter limits)


def check_rate_and_length(
    n_samples: int, sample_rate, name: str = "audio", max_seconds: float | None = MAX_SECONDS
) -> float:
    """Before decoding or resampling: the rate is an int in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE], the clip is not
    empty and at most ``max_seconds`` long. Returns the duration in seconds; ValueError naming ``name``."""
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool):
        raise ValueError(f"{name}: sample_rate must be an int, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"{name}: sample rate {int(sample_rate)} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz "
            "(a broken header?); re-encode the clip at a normal rate such as 16000 or 44100 Hz"
        )
    if n_samples == 0:
        raise ValueError(f"{name}: empty audio (0 samples; a header-only file?); give a clip with speech")
    seconds = n_samples / int(sample_rate)
    if max_seconds is not None and seconds > max_seconds:
        raise ValueError(
            f"{name}: the audio is too long: {seconds:.1f} s; the limit is {max_seconds:g} s. Cut it shorter"
        )
    return seconds


class UnreadableAudio(ValueError):
    """An audio file that is missing or that soundfile cannot decode."""


def read_audio(path: str | Path, max_seconds: float | None = MAX_SECONDS, name: str | None = None):
    """A file -> (float32 numpy [L, C], sample_rate), its header checked first (``check_rate_and_length``).
    UnreadableAudio for a missing or undecodable file, ValueError for an empty, absurd-rate or too-long one."""
    name = name or str(path)
    if not Path(path).is_file():
        raise UnreadableAudio(f"{name}: file not found: {path}")
    try:
        info = sf.info(str(path))
        check_rate_and_length(int(info.frames), int(info.samplerate), name, max_seconds)
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [L, C]
    except ValueError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for corrupt files
        raise UnreadableAudio(f"cannot read audio file {path}: {e}") from None
    check_rate_and_length(len(data), sr, name, max_seconds)  # a header may understate its frames
    return data, sr


def to_mono_float(wav, name: str = "audio") -> np.ndarray:
    """Any array-like of samples -> float32 numpy [L] (int types scaled to [-1, 1], channels averaged)."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    if not isinstance(wav, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array or torch tensor, got {type(wav).__name__}")
    if wav.size == 0:  # before the channel average ([0, 1].mean(axis=0) would be one NaN sample)
        raise ValueError(f"{name}: empty audio (0 samples; a header-only file?); give a clip with speech")
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


def prepare(
    wav, sample_rate: int, target_rate: int, name: str = "audio", max_seconds: float | None = MAX_SECONDS
) -> torch.Tensor:
    """Validate (rate and length first), downmix and resample -> float32 tensor [L] at ``target_rate``."""
    check_rate_and_length(1, sample_rate, name, None)  # the rate, before anything is converted
    mono = to_mono_float(wav, name)
    check_rate_and_length(mono.size, sample_rate, name, max_seconds)
    check_audio(mono, name)
    return torch.from_numpy(resample(mono, int(sample_rate), target_rate).copy())


def load_audio(path: str | Path, target_rate: int, max_seconds: float | None = MAX_SECONDS) -> torch.Tensor:
    """Read a file with soundfile -> float32 tensor [L] at ``target_rate`` (mono). Clear error if unreadable."""
    data, sr = read_audio(path, max_seconds)
    return prepare(data, sr, target_rate, name=str(path), max_seconds=max_seconds)
