"""Image sigma-VAE: conv encoder -> a grid of patch latents (the shared ``latentlm.sigma_vae`` bottleneck) -> conv
decoder.

Dimension legend: B batch, K image channels, H x W pixels, h x w latent grid (H / 2^levels), D latent dim,
L = h * w latents per image (raster order: row by row), F conv width.

Pixels are floats in [-1, 1]. The LM sees an image as L latent vectors [L, D] in raster order
(``to_tokens`` / ``from_tokens``). The bottleneck adds one sigma per example in training, so the decoder learns to
reconstruct from noisy latents (robust to the errors autoregressive generation feeds back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlm.checkpoint import load_release, load_state_dict_strict, save_release
from latentlm.config import from_dict
from latentlm.sigma_vae import Bottleneck, BottleneckConfig

RELEASE_KIND = "image_vae"


@dataclass
class ImageVAEConfig:
    image_size: int = 16  # H = W
    channels: int = 1  # K
    width: int = 64  # F
    levels: int = 2  # stride-2 downsamplings: grid h = image_size / 2^levels
    bottleneck: BottleneckConfig = field(
        default_factory=lambda: BottleneckConfig(kind="sigma", latent_dim=4, sigma_scale=0.25)
    )
    mean_penalty: float = 1e-3  # beta on mean(mu^2) (or on the KL for the gaussian kind)

    def __post_init__(self) -> None:
        if self.levels < 1 or self.image_size % (2**self.levels):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2^levels = {2**self.levels} (levels >= 1)"
            )
        if self.channels <= 0 or self.width <= 0:
            raise ValueError("channels and width must be positive")

    @property
    def grid(self) -> int:  # h = w
        return self.image_size // 2**self.levels

    @property
    def num_latents(self) -> int:  # L
        return self.grid**2


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
            nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class ImageVAE(nn.Module):
    def __init__(self, cfg: ImageVAEConfig):
        super().__init__()
        self.cfg = cfg
        f = cfg.width
        enc: list[nn.Module] = [nn.Conv2d(cfg.channels, f, 3, padding=1), ResBlock(f)]
        for _ in range(cfg.levels):
            enc += [nn.Conv2d(f, f, 4, stride=2, padding=1), ResBlock(f)]
        enc += [nn.GroupNorm(8, f), nn.SiLU()]
        self.bottleneck = Bottleneck(cfg.bottleneck)
        enc.append(nn.Conv2d(f, self.bottleneck.in_channels, 1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.bottleneck.latent_dim, f, 3, padding=1), ResBlock(f)]
        for _ in range(cfg.levels):
            dec += [nn.ConvTranspose2d(f, f, 4, stride=2, padding=1), ResBlock(f)]
        dec += [nn.GroupNorm(8, f), nn.SiLU(), nn.Conv2d(f, cfg.channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("latent_mean", torch.zeros(cfg.bottleneck.latent_dim))
        self.register_buffer("latent_std", torch.ones(cfg.bottleneck.latent_dim))

    @property
    def latent_dim(self) -> int:
        return self.cfg.bottleneck.latent_dim

    def _check_images(self, x: Tensor) -> Tensor:
        c, s = self.cfg.channels, self.cfg.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"images must be [B, {c}, {s}, {s}] floats in [-1, 1], got {tuple(x.shape)}")
        return x

    # ---- training -----------------------------------------------------------------------------------------
    def losses(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Flat dict: ``rec`` (L1 + MSE), ``prior`` (mean penalty or KL), ``total`` (weighted sum)."""
        out = self.bottleneck(self.encoder(self._check_images(x)), channel_dim=1, generator=generator)
        y = self.decoder(out.z)  # [B, K, H, W]
        rec = F.l1_loss(y, x) + F.mse_loss(y, x)
        prior = next(iter(out.losses.values()))
        return {"rec": rec, "prior": prior, "total": rec + self.cfg.mean_penalty * prior}

    # ---- latents ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Deterministic latent means: images [B, K, H, W] -> grid [B, D, h, w]."""
        return self.bottleneck.mean(self.encoder(self._check_images(x)), channel_dim=1)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Grid [B, D, h, w] -> images [B, K, H, W], clamped to [-1, 1]."""
        g = self.cfg.grid
        if z.dim() != 4 or tuple(z.shape[1:]) != (self.latent_dim, g, g):
            raise ValueError(f"latent grid must be [B, {self.latent_dim}, {g}, {g}], got {tuple(z.shape)}")
        return self.decoder(z).clamp(-1, 1)

    def to_tokens(self, z: Tensor) -> Tensor:
        """Grid [B, D, h, w] -> raster-order latent tokens [B, L, D]."""
        return z.flatten(2).transpose(1, 2)  # [B, D, L] -> [B, L, D]

    def from_tokens(self, tokens: Tensor) -> Tensor:
        """Raster-order tokens [B, L, D] -> grid [B, D, h, w]."""
        g, d = self.cfg.grid, self.latent_dim
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (g * g, d):
            raise ValueError(f"latent tokens must be [B, {g * g}, {d}], got {tuple(tokens.shape)}")
        return tokens.transpose(1, 2).reshape(-1, d, g, g)  # [B, D, L] -> [B, D, h, w]

    def set_latent_stats(self, mean: Tensor, std: Tensor) -> None:
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp_min(1e-5))

    # ---- releases -----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, meta: dict | None = None) -> Path:
        return save_release(directory, self, self.cfg, meta=meta, kind=RELEASE_KIND)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> ImageVAE:
        sd, cfg_dict, _ = load_release(directory, kind=RELEASE_KIND)
        model = cls(from_dict(ImageVAEConfig, cfg_dict))
        load_state_dict_strict(model, sd, source=str(directory))
        return model.to(device).eval()


def train_vae(
    vae: ImageVAE,
    images: Tensor,
    steps: int,
    batch: int = 64,
    lr: float = 2e-3,
    generator: torch.Generator | None = None,
    log_every: int = 0,
) -> dict[str, float]:
    """Train on images [n, K, H, W]; then measure the latent stats (mean/std of mu over the data) and return
    the final loss terms. Leaves the VAE in eval mode."""
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    vae.train()
    terms: dict[str, Tensor] = {}
    for step in range(steps):
        idx = torch.randint(0, images.shape[0], (batch,), generator=generator)
        terms = vae.losses(images[idx], generator=generator)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"vae step {step:5d}  " + "  ".join(f"{k} {v.item():.4f}" for k, v in terms.items()))
    vae.eval()
    z = torch.cat([vae.to_tokens(vae.encode(images[i : i + 256])) for i in range(0, len(images), 256)])
    flat = z.reshape(-1, vae.latent_dim)  # [n*L, D]
    vae.set_latent_stats(flat.mean(0), flat.std(0))
    return {k: float(v.detach()) for k, v in terms.items()}
