"""Reconstruction metrics: mel distance, STOI, SI-SDR and PESQ between a reference and an estimate.

All take mono float waveforms (numpy or torch, [L]) at the same sample rate; the estimate is cut or padded to
the reference length. PESQ and STOI run at 16 kHz (resampled if needed); PESQ wide-band mode.
"""

from __future__ import annotations

import numpy as np
import torch

from vocoder_vae.audio import resample
from vocoder_vae.spectral import MelSpectrogram


def _pair(ref, est) -> tuple[np.ndarray, np.ndarray]:
    ref = (ref.detach().cpu().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)).astype(
        np.float64
    )
    est = (est.detach().cpu().numpy() if isinstance(est, torch.Tensor) else np.asarray(est)).astype(
        np.float64
    )
    if ref.ndim != 1 or est.ndim != 1:
        raise ValueError(f"metrics expect mono [L] waveforms, got {ref.shape} and {est.shape}")
    if ref.size == 0:
        raise ValueError("metrics: empty reference")
    est = est[: ref.size] if est.size >= ref.size else np.pad(est, (0, ref.size - est.size))
    return ref, est


def si_sdr(ref, est) -> float:
    """Scale-invariant SDR in dB (higher is better)."""
    ref, est = _pair(ref, est)
    ref, est = ref - ref.mean(), est - est.mean()
    alpha = np.dot(est, ref) / max(np.dot(ref, ref), 1e-12)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10(max(np.dot(target, target), 1e-12) / max(np.dot(noise, noise), 1e-12)))


def mel_distance(ref, est, sample_rate: int) -> float:
    """Mean L1 between log-mel spectrograms, averaged over windows 512/1024/2048 (80 mels; lower is better)."""
    ref, est = _pair(ref, est)
    r = torch.from_numpy(ref).float()[None]
    e = torch.from_numpy(est).float()[None]
    dists = [
        (MelSpectrogram(sample_rate, w, 80)(e) - MelSpectrogram(sample_rate, w, 80)(r)).abs().mean()
        for w in (512, 1024, 2048)
    ]
    return float(sum(dists) / len(dists))


def stoi(ref, est, sample_rate: int) -> float:
    from pystoi import stoi as _stoi

    ref, est = _pair(ref, est)
    return float(_stoi(ref, est, sample_rate, extended=False))


def pesq(ref, est, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, 1.0-4.6) at 16 kHz."""
    from pesq import pesq as _pesq

    ref, est = _pair(ref, est)
    if sample_rate != 16000:
        ref = resample(ref.astype(np.float32), sample_rate, 16000).astype(np.float64)
        est = resample(est.astype(np.float32), sample_rate, 16000).astype(np.float64)
    return float(_pesq(16000, ref, est, "wb"))


def all_metrics(ref, est, sample_rate: int) -> dict[str, float]:
    return {
        "mel_distance": mel_distance(ref, est, sample_rate),
        "stoi": stoi(ref, est, sample_rate),
        "si_sdr": si_sdr(ref, est),
        "pesq": pesq(ref, est, sample_rate),
    }
