"""Frame-rate encoder and decoder for the audio VAE: causal log-mel front end + ConvNeXt trunks + iSTFT head.

Dimension legend: B batch, L samples, N spectral frames (L / frame_hop), T latent frames (L / hop), M mel bands,
C channels, r = hop / frame_hop (frames per latent frame).

Why: the waveform-rate conv encoder/decoder (``model.Encoder``/``model.Decoder``) spend almost all their compute at
16,000 steps per second and learn harmonic structure slowly. Here every layer runs at the spectral frame rate
(100 Hz for frame_hop 160 at 16 kHz) or the latent rate, and the decoder predicts STFT frames (Vocos-style), so a
step costs a fraction and the model sees the spectrum directly (measured in docs/VAE.md).

Everything is causal: the front end frames pad on the left only (spectral frame n covers samples
[(n + 1) * frame_hop - n_fft, (n + 1) * frame_hop)), and every convolution is left-padded, so latent frame t depends
only on samples < (t + 1) * hop. The decoder has a ``step(z, state)`` form for chunked decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vocoder_vae.modules import CausalConv1d, CausalConvTranspose1d, ISTFTHead
from vocoder_vae.spectral import MelSpectrogram


@dataclass
class FrameNetConfig:
    """Settings of the ``mel`` encoder and the ``convnext`` decoder (unused by the conv ones)."""

    frame_hop: int = 160  # samples per spectral frame (front end and iSTFT head); must divide hop
    n_mels: int = 80  # front-end mel bands (n_fft = 4 * frame_hop)
    dim: int = 256  # trunk width
    mlp_mult: int = 3  # ConvNeXt pointwise expansion
    kernel: int = 7  # depthwise causal kernel
    encoder_frame_blocks: int = 3  # blocks at the spectral frame rate, then downsample by r
    encoder_latent_blocks: int = 3  # blocks at the latent rate
    decoder_latent_blocks: int = 3  # blocks at the latent rate, then upsample by r
    decoder_frame_blocks: int = 4  # blocks at the spectral frame rate, then the iSTFT head
    layer_scale: float = 0.1  # initial residual branch scale


class ConvNeXtBlock(nn.Module):
    """Causal 1-D ConvNeXt block: x + gamma * MLP(LayerNorm(depthwise_conv(x))).  [B, C, T] -> [B, C, T]."""

    def __init__(self, dim: int, mult: int, kernel: int, layer_scale: float):
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.pad = kernel - 1
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, mult * dim)
        self.pw2 = nn.Linear(mult * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def _branch(self, h: Tensor) -> Tensor:  # [B, C, T] after the depthwise conv -> [B, C, T]
        h = self.pw2(F.gelu(self.pw1(self.norm(h.transpose(1, 2)))))
        return (h * self.gamma).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return x + self._branch(self.dw(F.pad(x, (self.pad, 0))))

    def step(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """Streaming form: ``state`` [B, C, kernel - 1] holds the previous inputs of the depthwise conv."""
        if state is None:
            state = x.new_zeros(x.shape[0], x.shape[1], self.pad)
        xx = torch.cat([state, x], dim=-1)
        return x + self._branch(self.dw(xx)), xx[..., xx.shape[-1] - self.pad :]


class ConvNeXtStack(nn.Module):
    def __init__(self, cfg: FrameNetConfig, n: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.mlp_mult, cfg.kernel, cfg.layer_scale) for _ in range(n)
        )

    def forward(self, x: Tensor) -> Tensor:
        for b in self.blocks:
            x = b(x)
        return x

    def step(self, x: Tensor, state: list | None) -> tuple[Tensor, list]:
        state = state or [None] * len(self.blocks)
        new = []
        for b, s in zip(self.blocks, state):
            x, s = b.step(x, s)
            new.append(s)
        return x, new


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of [B, C, T]."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _ratio(hop: int, frame_hop: int) -> int:
    if frame_hop <= 0 or hop % frame_hop:
        raise ValueError(f"frame.frame_hop {frame_hop} must be a positive divisor of the hop {hop}")
    return hop // frame_hop


class MelEncoder(nn.Module):
    """wav [B, 1, L] -> [B, out_channels, L / hop]: log-mel, ConvNeXt at the frame rate, strided conv by r,
    ConvNeXt at the latent rate, LayerNorm + linear projection."""

    def __init__(self, sample_rate: int, hop: int, cfg: FrameNetConfig, out_channels: int):
        super().__init__()
        r = _ratio(hop, cfg.frame_hop)
        self.mel = MelSpectrogram(sample_rate, 4 * cfg.frame_hop, cfg.n_mels, cfg.frame_hop, causal=True)
        self.conv_in = CausalConv1d(cfg.n_mels, cfg.dim, cfg.kernel)
        self.frame_blocks = ConvNeXtStack(cfg, cfg.encoder_frame_blocks)
        self.down = CausalConv1d(cfg.dim, cfg.dim, 2 * r, stride=r) if r > 1 else nn.Identity()
        self.latent_blocks = ConvNeXtStack(cfg, cfg.encoder_latent_blocks)
        self.norm = ChannelNorm(cfg.dim)
        self.proj = nn.Conv1d(cfg.dim, out_channels, 1)

    def forward(self, wav: Tensor) -> Tensor:
        x = self.frame_blocks(self.conv_in(self.mel(wav[:, 0])))  # [B, M, L / frame_hop] -> [B, C, N]
        return self.proj(self.norm(self.latent_blocks(self.down(x))))


class ConvNeXtDecoder(nn.Module):
    """z [B, D, T] -> wav [B, 1, T * hop]: ConvNeXt at the latent rate, causal transposed conv by r, ConvNeXt at
    the frame rate, LayerNorm, iSTFT head (log-magnitude + phase per frame, causal overlap-add)."""

    def __init__(self, latent_dim: int, hop: int, cfg: FrameNetConfig):
        super().__init__()
        r = _ratio(hop, cfg.frame_hop)
        self.conv_in = CausalConv1d(latent_dim, cfg.dim, cfg.kernel)
        self.latent_blocks = ConvNeXtStack(cfg, cfg.decoder_latent_blocks)
        self.up = CausalConvTranspose1d(cfg.dim, cfg.dim, r) if r > 1 else None
        self.frame_blocks = ConvNeXtStack(cfg, cfg.decoder_frame_blocks)
        self.norm = ChannelNorm(cfg.dim)
        self.head = ISTFTHead(cfg.dim, cfg.frame_hop)

    def forward(self, z: Tensor) -> Tensor:
        x = self.latent_blocks(self.conv_in(z))
        if self.up is not None:
            x = self.up(x)
        return self.head(self.norm(self.frame_blocks(x)))

    def step(self, z: Tensor, state: list | None) -> tuple[Tensor, list]:
        """Chunk [B, D, t] -> [B, 1, t * hop], carrying the state of every causal layer."""
        s_in, s_lat, s_up, s_frame, s_head = state or [None] * 5
        x, s_in = self.conv_in.step(z, s_in)
        x, s_lat = self.latent_blocks.step(x, s_lat)
        if self.up is not None:
            x, s_up = self.up.step(x, s_up)
        x, s_frame = self.frame_blocks.step(x, s_frame)
        y, s_head = self.head.step(self.norm(x), s_head)
        return y, [s_in, s_lat, s_up, s_frame, s_head]
