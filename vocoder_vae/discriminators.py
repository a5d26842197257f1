"""Discriminators for adversarial vocoder training: multi-period (HiFi-GAN) and multi-resolution spectral
(UnivNet / Vocos). Each returns, per sub-discriminator, a score map and its list of feature maps.

Dimension legend: B batch, L samples, P period, F frequency bins, N STFT frames, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from vocoder_vae.spectral import stft_mag


def conv_stack(convs: nn.ModuleList, out: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """LeakyReLU(0.1) conv stack then the output conv -> (score map, every layer's feature map)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = out(x)
    feats.append(x)
    return x, feats


@dataclass
class DiscriminatorConfig:
    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])  # [] disables the MPD
    mpd_channels: int = 16
    resolutions: list[int] = field(default_factory=lambda: [512, 1024, 2048])  # [] disables the MRSD
    mrd_channels: int = 16


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, c: int):
        super().__init__()
        self.period = period
        chans = [1, c, 4 * c, 16 * c, 32 * c]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0)))
            for a, b in zip(chans[:-1], chans[1:])
        )
        self.convs.append(weight_norm(nn.Conv2d(chans[-1], chans[-1], (5, 1), 1, padding=(2, 0))))
        self.out = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:  # wav [B, L]
        b, n = wav.shape
        pad = (-n) % self.period
        x = F.pad(wav, (0, pad), mode="reflect" if pad < n else "constant")
        x = x.view(b, 1, -1, self.period)  # [B, 1, L/P, P]
        return conv_stack(self.convs, self.out, x)


class SpectralDiscriminator(nn.Module):
    """2-D convs over a log-magnitude spectrogram [B, 1, F, N] at one STFT resolution."""

    def __init__(self, n_fft: int, c: int):
        super().__init__()
        self.n_fft = n_fft
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, (7, 5), (2, 1), padding=(3, 2))),
                weight_norm(nn.Conv2d(c, c, (5, 3), (2, 1), padding=(2, 1))),
                weight_norm(nn.Conv2d(c, c, (5, 3), (2, 1), padding=(2, 1))),
                weight_norm(nn.Conv2d(c, c, (3, 3), 1, padding=1)),
            ]
        )
        self.out = weight_norm(nn.Conv2d(c, 1, (3, 3), 1, padding=1))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = torch.log(stft_mag(wav, self.n_fft).clamp_min(1e-5))[:, None]  # [B, 1, F, N]
        return conv_stack(self.convs, self.out, x)


class Discriminators(nn.Module):
    """All sub-discriminators: wav [B, 1, L] -> (scores list, feature-map lists)."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        if not cfg.periods and not cfg.resolutions:
            raise ValueError("discriminator: both periods and resolutions are empty")
        subs: list[nn.Module] = [PeriodDiscriminator(p, cfg.mpd_channels) for p in cfg.periods]
        subs += [SpectralDiscriminator(n, cfg.mrd_channels) for n in cfg.resolutions]
        self.subs = nn.ModuleList(subs)

    def forward(self, wav: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        wav = wav.squeeze(1)  # [B, 1, L] -> [B, L]
        scores, feats = [], []
        for d in self.subs:
            s, f = d(wav)
            scores.append(s)
            feats.append(f)
        return scores, feats
