"""Audio loading for scoring: any file soundfile reads, any sample rate, mono float32, clear errors.

torchaudio 2.11 cannot decode files without torchcodec, so everything goes through soundfile. Resampling is
polyphase (scipy.signal.resample_poly), which is exact for the integer ratios between common rates. A clip's
rate and length are checked before it is decoded or resampled (vocoder_vae.audio.check_rate_and_length: a header
claiming 1 Hz would otherwise resample a small file to gigabytes).
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from vocoder_vae.audio import MAX_SECONDS, UnreadableAudio, check_rate_and_length, read_audio

SILENCE_PEAK = 1e-4  # peak amplitude below which a file counts as silent (about -80 dBFS)


class AudioError(ValueError):
    """A file cannot be scored: missing, unreadable, empty, silent or non-finite; the message names it."""


def resample(wav: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float array from ``sr`` to ``target_sr`` (polyphase; identity when equal)."""
    if sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {sr} -> {target_sr}")
    if sr == target_sr:
        return wav.astype(np.float32, copy=False)
    g = gcd(sr, target_sr)
    return resample_poly(wav, target_sr // g, sr // g).astype(np.float32)


def check_waveform(wav: np.ndarray, sr: int, name: str = "<array>") -> np.ndarray:
    """Validate a waveform (mono or (T, channels)) and return it as mono float32 (T,)."""
    wav = np.asarray(wav)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)  # (T, channels) -> (T,): downmix
    if wav.ndim != 1:
        raise AudioError(f"{name}: expected a mono (T,) or (T, channels) waveform, got shape {wav.shape}")
    if np.issubdtype(wav.dtype, np.integer):
        wav = wav.astype(np.float32) / float(np.iinfo(wav.dtype).max)
    wav = wav.astype(np.float32, copy=False)
    if wav.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{name}: audio contains NaN or inf samples")
    peak = float(np.max(np.abs(wav)))
    if peak < SILENCE_PEAK:
        raise AudioError(
            f"{name}: audio is silent (peak {peak:.2e} < {SILENCE_PEAK:g}), {wav.size / sr:.2f} s"
        )
    return wav


def load_audio(path: str | Path, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32, resampled to ``target_sr`` if given. Returns (wav (T,), sample_rate)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    try:
        wav, sr = read_audio(path, MAX_SECONDS)  # (T, channels); header (rate, length) checked first
    except UnreadableAudio as e:
        raise AudioError(f"{path}: cannot decode audio ({e})") from None
    except ValueError as e:
        raise AudioError(str(e)) from None
    wav = check_waveform(wav, sr, str(path))
    if target_sr is not None and target_sr != sr:
        wav, sr = resample(wav, sr, target_sr), target_sr
    return wav, sr


def as_waveform(item: str | Path | np.ndarray, sample_rate: int | None, target_sr: int) -> np.ndarray:
    """A path or an array -> validated mono float32 at ``target_sr``. Arrays need ``sample_rate``."""
    if isinstance(item, (str, Path)):
        return load_audio(item, target_sr)[0]
    if sample_rate is None:
        raise ValueError("arrays need sample_rate=... (the rate of the given waveforms)")
    try:
        check_rate_and_length(len(item), sample_rate, "<array>", MAX_SECONDS)  # before resampling
    except ValueError as e:
        raise AudioError(str(e)) from None
    return resample(check_waveform(item, sample_rate), sample_rate, target_sr)
