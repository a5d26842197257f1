"""VAE bottlenecks shared by the audio and image autoencoders.

Two kinds, so the paper's ablation (sigma-VAE vs a conventional VAE) runs on the same encoder/decoder:

- ``sigma`` (LatentLM): the encoder predicts only the mean mu. In training, z = mu + sigma * eps with ONE scalar
  sigma per example, sigma = |N(0, (s / 0.8)^2)| (s = ``sigma_scale``; the 0.8 makes E[sigma] ~= s), eps ~ N(0, I).
  Because sigma does not shrink with training, the latent space keeps its variance and the decoder learns to
  reconstruct from noisy latents, which makes it robust to the errors autoregressive generation feeds back.
  Loss: ``mean_penalty`` = mean(mu^2) (weight it with a small beta in the owner's loss table).
- ``gaussian``: the encoder predicts mu and log-variance per element; z = mu + exp(logvar / 2) * eps;
  loss ``kl`` = mean over elements of KL(N(mu, var) || N(0, 1)). Its posterior variance tends to collapse,
  which is what the ablation measures.

Shapes: h is [B, in_channels, ...] (channel_dim selects the channel axis: audio [B, C, T], image [B, C, H, W],
token-major [B, T, C] with channel_dim=-1). z and mu are [B, latent_dim, ...] in the same layout.
In eval mode forward() returns z = mu (deterministic); ``sample_noisy`` adds sigma-VAE noise on demand
(e.g. to build LM training inputs from stored means).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn


@dataclass
class BottleneckConfig:
    kind: Literal["sigma", "gaussian"] = "sigma"
    latent_dim: int = 32
    sigma_scale: float = 0.5  # s for the sigma kind: sigma ~ |N(0, (s/0.8)^2)| per example
    logvar_min: float = -30.0  # clamp for the gaussian kind
    logvar_max: float = 20.0


@dataclass
class BottleneckOutput:
    z: Tensor  # [B, latent_dim, ...] sampled latents (mu in eval mode)
    mu: Tensor  # [B, latent_dim, ...]
    losses: dict[str, Tensor]  # {"mean_penalty"} (sigma) or {"kl"} (gaussian), scalars
    logvar: Tensor | None = None  # gaussian kind only


def draw_sigma(batch: int, scale: float, generator: torch.Generator | None, device, dtype) -> Tensor:
    """One sigma per example: |N(0, (scale/0.8)^2)| -> [B]."""
    g = torch.randn(batch, generator=generator, device=device, dtype=torch.float32)
    return (g.abs() * (scale / 0.8)).to(dtype)


class Bottleneck(nn.Module):
    def __init__(self, cfg: BottleneckConfig):
        super().__init__()
        if cfg.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {cfg.latent_dim}")
        if cfg.kind == "sigma" and cfg.sigma_scale < 0:
            raise ValueError(f"sigma_scale must be >= 0, got {cfg.sigma_scale}")
        self.cfg = cfg

    @property
    def in_channels(self) -> int:
        """Channels the encoder must output."""
        return self.cfg.latent_dim * (2 if self.cfg.kind == "gaussian" else 1)

    def _split(self, h: Tensor, channel_dim: int) -> tuple[Tensor, Tensor | None]:
        if h.shape[channel_dim] != self.in_channels:
            raise ValueError(
                f"bottleneck expects {self.in_channels} channels on dim {channel_dim}, got shape {tuple(h.shape)}"
            )
        if self.cfg.kind == "sigma":
            return h, None
        mu, logvar = h.chunk(2, dim=channel_dim)
        return mu, logvar.clamp(self.cfg.logvar_min, self.cfg.logvar_max)

    def mean(self, h: Tensor, channel_dim: int = 1) -> Tensor:
        """Deterministic latents (mu) for inference and latent extraction."""
        return self._split(h, channel_dim)[0]

    def sample_noisy(self, mu: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """mu + sigma * eps with one sigma per example (sigma kind's noise), any layout [B, ...]."""
        sigma = draw_sigma(mu.shape[0], self.cfg.sigma_scale, generator, mu.device, mu.dtype)
        sigma = sigma.view(-1, *([1] * (mu.dim() - 1)))  # [B, 1, ...]
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + sigma * eps

    def forward(
        self, h: Tensor, channel_dim: int = 1, generator: torch.Generator | None = None
    ) -> BottleneckOutput:
        mu, logvar = self._split(h, channel_dim)
        if self.cfg.kind == "sigma":
            z = self.sample_noisy(mu, generator) if self.training else mu
            return BottleneckOutput(z=z, mu=mu, losses={"mean_penalty": mu.float().pow(2).mean()})
        assert logvar is not None
        if self.training:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
        else:
            z = mu
        mu32, lv32 = mu.float(), logvar.float()
        kl = 0.5 * (mu32.pow(2) + lv32.exp() - 1.0 - lv32).mean()
        return BottleneckOutput(z=z, mu=mu, losses={"kl": kl}, logvar=logvar)


def make_bottleneck(cfg: BottleneckConfig) -> Bottleneck:
    return Bottleneck(cfg)


def expected_sigma(scale: float) -> float:
    """E|N(0, (scale/0.8)^2)| = scale/0.8 * sqrt(2/pi) (about 0.997 * scale)."""
    return scale / 0.8 * math.sqrt(2.0 / math.pi)
