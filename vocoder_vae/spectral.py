"""Spectral transforms shared by the losses, the discriminators and the metrics.

Dimension legend: B batch, L samples, F frequency bins, M mel bands, N STFT frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor, nn


def stft_mag(wav: Tensor, n_fft: int, hop: int | None = None, causal: bool = False) -> Tensor:
    """[B, L] -> magnitude [B, F, N] (hann window, float32). Centred frames (N = L // hop + 1), or with
    ``causal`` left padding only: N = L // hop and frame n covers samples [(n + 1) * hop - n_fft, (n + 1) * hop)."""
    hop = hop or n_fft // 4
    window = torch.hann_window(n_fft, device=wav.device, dtype=torch.float32)
    x = F.pad(wav.float(), (n_fft - hop, 0)) if causal else wav.float()
    spec = torch.stft(x, n_fft, hop, window=window, center=not causal, return_complex=True)
    return spec.abs()


class MelSpectrogram(nn.Module):
    """Log-mel spectrogram: [B, L] -> [B, M, N] (natural log of the clamped mel-filtered magnitude)."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        n_mels: int,
        hop: int | None = None,
        eps: float = 1e-5,
        causal: bool = False,
    ):
        super().__init__()
        self.n_fft, self.hop, self.eps, self.causal = n_fft, hop or n_fft // 4, eps, causal
        # Slaney-style filters, identical to librosa.filters.mel's defaults: [F, M] -> [M, F]
        fb = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, "slaney", "slaney")
        self.register_buffer("fb", fb.T.contiguous(), persistent=False)  # [M, F]

    def forward(self, wav: Tensor) -> Tensor:
        mag = stft_mag(wav, self.n_fft, self.hop, self.causal)  # [B, F, N]
        return torch.log(torch.clamp(self.fb @ mag, min=self.eps))  # [B, M, N]
