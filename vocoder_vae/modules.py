"""Causal, streamable convolution blocks for the audio VAE encoder and decoder.

Dimension legend: B batch, C channels, L samples (at the layer's own rate), T latent frames, K kernel size.

Every layer looks only at the past: convolutions pad on the left, transposed convolutions trim on the right.
Each layer also has a ``step(x, state) -> (y, state)`` form so the decoder can run chunk by chunk; with the
state carried across chunks, the concatenated outputs equal one whole-sequence ``forward`` (up to float error).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

State = dict[str, Tensor]


class CausalConv1d(nn.Module):
    """Conv1d with left padding only. With ``stride`` s, output frame t sees inputs [.., (t+1)*s - 1]."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        if kernel < stride:
            raise ValueError(f"kernel {kernel} must be >= stride {stride}")
        self.conv = weight_norm(nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation))
        self.stride = stride
        self.pad = (kernel - 1) * dilation + 1 - stride  # left context each output frame needs

    def forward(self, x: Tensor) -> Tensor:  # [B, C_in, L] -> [B, C_out, L // stride]
        return self.conv(F.pad(x, (self.pad, 0)))

    def step(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """Streaming form (stride 1 only): ``state`` holds the last ``pad`` input samples."""
        if state is None:
            state = x.new_zeros(x.shape[0], x.shape[1], self.pad)
        xx = torch.cat([state, x], dim=-1)  # [B, C_in, pad + L]
        new_state = xx[..., xx.shape[-1] - self.pad :] if self.pad > 0 else state
        return self.conv(xx), new_state


class OverlapAdd(nn.Module):
    """Streaming overlap-add of per-frame windows of length ``win`` placed every ``hop`` samples.

    ``frames`` [B, C, win, T] -> [B, C, T*hop]; sample n collects frames t with t*hop <= n < t*hop + win, so it
    is causal. The partial sums past the last emitted sample are carried in the state (streaming) or dropped
    (whole sequence: they belong to samples after the end).
    """

    def __init__(self, win: int, hop: int):
        super().__init__()
        if win < hop or win % hop:
            raise ValueError(f"window {win} must be a multiple of hop {hop}")
        self.win, self.hop = win, hop

    def forward(self, frames: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, win, t = frames.shape
        total = (t - 1) * self.hop + win
        out = F.fold(  # [B, C*win, T] -> [B, C, 1, total]
            frames.reshape(b, c * win, t), output_size=(1, total), kernel_size=(1, win), stride=(1, self.hop)
        ).reshape(b, c, total)
        tail = win - self.hop
        if state is not None:
            out = torch.cat([out[..., :tail] + state, out[..., tail:]], dim=-1)
        n = t * self.hop
        return out[..., :n], out[..., n:]  # [B, C, T*hop], carried tail [B, C, win - hop]


class CausalConvTranspose1d(nn.Module):
    """Upsampling by ``stride`` with kernel 2*stride, trimmed on the right (causal), streamable."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = weight_norm(nn.Conv1d(c_in, c_out * 2 * stride, 1, bias=False))  # per-frame kernels
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.ola = OverlapAdd(2 * stride, stride)
        self.c_out = c_out

    def _frames(self, x: Tensor) -> Tensor:
        b, _, t = x.shape
        return self.conv(x).reshape(b, self.c_out, 2 * self.stride, t)  # [B, C_out, 2s, T]

    def forward(self, x: Tensor) -> Tensor:  # [B, C_in, T] -> [B, C_out, T*s]
        y, _ = self.ola(self._frames(x))
        return y + self.bias[:, None]

    def step(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        y, tail = self.ola(self._frames(x), state)
        return y + self.bias[:, None], tail


class ResUnit(nn.Module):
    """Dilated causal residual unit: x + conv1(act(conv_k(act(x))))."""

    def __init__(self, c: int, dilation: int, kernel: int = 7):
        super().__init__()
        self.act1, self.act2 = nn.ELU(), nn.ELU()
        self.conv1 = CausalConv1d(c, c, kernel, dilation=dilation)
        self.conv2 = CausalConv1d(c, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))

    def step(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        h, state = self.conv1.step(self.act1(x), state)
        return x + self.conv2(self.act2(h)), state


class EncoderBlock(nn.Module):
    """Residual units at the input rate, then a strided causal conv: [B, C, L] -> [B, 2C or c_out, L/s]."""

    def __init__(self, c_in: int, c_out: int, stride: int, dilations: tuple[int, ...]):
        super().__init__()
        self.res = nn.Sequential(*[ResUnit(c_in, d) for d in dilations])
        self.act = nn.ELU()
        self.down = CausalConv1d(c_in, c_out, 2 * stride, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.res(x)))


class DecoderBlock(nn.Module):
    """Causal transposed-conv upsampling then residual units; streamable via ``step``."""

    def __init__(self, c_in: int, c_out: int, stride: int, dilations: tuple[int, ...]):
        super().__init__()
        self.act = nn.ELU()
        self.up = CausalConvTranspose1d(c_in, c_out, stride)
        self.res = nn.ModuleList([ResUnit(c_out, d) for d in dilations])

    def forward(self, x: Tensor) -> Tensor:  # [B, C_in, L] -> [B, C_out, L*s]
        x = self.up(self.act(x))
        for r in self.res:
            x = r(x)
        return x

    def step(self, x: Tensor, state: list | None) -> tuple[Tensor, list]:
        state = state or [None] * (1 + len(self.res))
        x, s0 = self.up.step(self.act(x), state[0])
        new = [s0]
        for r, s in zip(self.res, state[1:]):
            x, s = r.step(x, s)
            new.append(s)
        return x, new


class ISTFTHead(nn.Module):
    """Vocos-style head: per frame, predict log-magnitude and phase, inverse rFFT, window, causal overlap-add.

    [B, C, T'] -> [B, 1, T' * hop]. The window sum of squares is constant in steady state (hann, win = 4*hop),
    so the output is divided by that constant; the first ``win - hop`` samples ramp in (causal start).
    """

    def __init__(self, c_in: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = 4 * hop, hop
        self.n_bins = self.n_fft // 2 + 1
        self.proj = CausalConv1d(c_in, 2 * self.n_bins, 1)
        win = torch.hann_window(self.n_fft, periodic=True)
        self.register_buffer("window", win, persistent=False)
        self.norm = float((win**2).sum() / hop)
        self.ola = OverlapAdd(self.n_fft, hop)

    def _frames(self, x: Tensor) -> Tensor:
        mag, phase = self.proj(x).float().chunk(2, dim=1)  # [B, F, T'] each
        spec = torch.exp(mag.clamp(max=10.0)) * torch.exp(1j * phase)
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1)  # [B, n_fft, T']
        frames = frames * self.window[:, None] / self.norm
        return frames[:, None]  # [B, 1, n_fft, T']

    def forward(self, x: Tensor) -> Tensor:
        return self.ola(self._frames(x))[0]

    def step(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.ola(self._frames(x), state)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def prod(xs) -> int:
    return math.prod(xs)
