"""VAE training losses as a flat dict of named terms, combined with a weights table (DAC style).

Generator terms: ``mel`` (multi-resolution L1 log-mel), ``stft`` (multi-resolution log-magnitude L1 + spectral
convergence), ``mean_penalty`` (sigma-VAE) or ``kl`` (gaussian VAE), ``adv`` (generator adversarial loss) and
``feat`` (discriminator feature matching). Discriminator term: ``disc``. A weight of 0 switches a term off
(it is then not computed at all).

Dimension legend: B batch, L samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vocoder_vae.spectral import MelSpectrogram, stft_mag


def default_weights() -> dict[str, float]:
    return {"mel": 15.0, "stft": 1.0, "mean_penalty": 0.01, "kl": 1e-4, "adv": 1.0, "feat": 2.0}


@dataclass
class LossConfig:
    weights: dict[str, float] = field(default_factory=default_weights)
    mel_windows: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    mel_bands: list[int] = field(default_factory=lambda: [40, 64, 80, 128])
    stft_windows: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    gan: Literal["hinge", "lsgan"] = "hinge"
    adv_start_step: int = 2000  # adversarial + feature-matching terms start here

    def __post_init__(self):
        unknown = sorted(set(self.weights) - set(default_weights()))
        if unknown:
            raise ValueError(f"loss weights: unknown term(s) {unknown}; valid: {sorted(default_weights())}")
        if len(self.mel_windows) != len(self.mel_bands):
            raise ValueError("mel_windows and mel_bands must have the same length")

    def weight(self, name: str) -> float:
        return self.weights.get(name, 0.0)


class ReconstructionLoss(nn.Module):
    """Multi-resolution mel and STFT losses: (wav_hat, wav) [B, L] -> {"mel", "stft"}."""

    def __init__(self, cfg: LossConfig, sample_rate: int):
        super().__init__()
        self.cfg = cfg
        self.mels = nn.ModuleList(
            MelSpectrogram(sample_rate, w, m) for w, m in zip(cfg.mel_windows, cfg.mel_bands)
        )

    def forward(self, wav_hat: Tensor, wav: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.cfg.weight("mel") > 0:
            out["mel"] = sum(F.l1_loss(m(wav_hat), m(wav)) for m in self.mels) / len(self.mels)
        if self.cfg.weight("stft") > 0:
            terms = []
            for w in self.cfg.stft_windows:
                s_hat, s = stft_mag(wav_hat, w), stft_mag(wav, w)  # [B, F, N]
                log_l1 = F.l1_loss(torch.log(s_hat.clamp_min(1e-5)), torch.log(s.clamp_min(1e-5)))
                sc = torch.linalg.norm(s - s_hat) / torch.linalg.norm(s).clamp_min(1e-5)
                terms.append(log_l1 + sc)
            out["stft"] = sum(terms) / len(terms)
        return out


def discriminator_loss(real: list[Tensor], fake: list[Tensor], kind: str) -> Tensor:
    """Scores from each sub-discriminator (fake already detached) -> scalar."""
    if kind == "hinge":
        terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)]
    else:
        terms = [(1 - r).pow(2).mean() + f.pow(2).mean() for r, f in zip(real, fake)]
    return sum(terms) / len(terms)


def generator_adv_loss(fake: list[Tensor], kind: str) -> Tensor:
    if kind == "hinge":
        terms = [F.relu(1 - f).mean() for f in fake]
    else:
        terms = [(1 - f).pow(2).mean() for f in fake]
    return sum(terms) / len(terms)


def feature_matching_loss(real_feats: list[list[Tensor]], fake_feats: list[list[Tensor]]) -> Tensor:
    """Mean L1 between discriminator feature maps of real (detached) and generated audio."""
    terms = [F.l1_loss(f, r.detach()) for rs, fs in zip(real_feats, fake_feats) for r, f in zip(rs, fs)]
    return sum(terms) / len(terms)


def total(losses: dict[str, Tensor], cfg: LossConfig) -> Tensor:
    """Weighted sum of the terms that have a weight."""
    return sum(cfg.weight(k) * v for k, v in losses.items() if cfg.weight(k) > 0)
