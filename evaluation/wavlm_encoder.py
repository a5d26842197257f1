"""WavLM-Large encoder for inference, with the fairseq/UniSpeech parameter names.

    enc = WavLM(WavLMConfig())              # WavLM-Large: 24 pre-LN layers, 1024 wide, 315,453,120 parameters
    states = enc.hidden_states(wav)          # wav (B, S) at 16 kHz, already layer-normalised (see wavlm_tdnn.py)
    len(states) == 25; states[i]: (B, T, 1024), T = S // 320 (about)

Written from the public WavLM code (microsoft/unilm ``wavlm/WavLM.py``, vendored in s3prl as
``s3prl/upstream/wavlm``): a 7-layer conv feature extractor with LayerNorm in every block ("layer_norm" mode,
no conv bias), LayerNorm + Linear 512 -> 1024, a weight-normalised grouped positional convolution, and a
pre-LayerNorm Transformer whose attention adds a T5-style bucketed relative position bias (computed in
layer 0, reused by every layer) scaled per query by a learned gate (``grep_linear``/``grep_a``).

State-dict names match fairseq's ``WavLM`` module exactly (``feature_extractor.conv_layers.0.0.weight``,
``encoder.pos_conv.0.weight_g``, ``encoder.layers.N.self_attn.grep_linear.weight``, ``mask_emb`` ...), so the
``feature_extract.model.*`` part of UniSpeech's speaker-verification checkpoint loads with strict=True.
Training-only parts (masking, dropout, layer drop, the fp32 attention switch) are left out.

Dimensions: B batch, S samples (16 kHz), T frames (50 Hz), F conv channels (512), C model dim (1024),
H heads, Dh head dim (C // H), K positional-conv kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ConvSpec = tuple[int, int, int]  # (channels, kernel, stride)
WAVLM_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2  # 320x downsampling: 16 kHz -> 50 Hz


@dataclass
class WavLMConfig:
    """Defaults = WavLM-Large (the upstream of UniSpeech's ``wavlm_large_finetune.pth``)."""

    conv_layers: tuple[ConvSpec, ...] = WAVLM_CONV
    dim: int = 1024
    ffn_dim: int = 4096
    num_layers: int = 24
    num_heads: int = 16
    conv_pos: int = 128  # positional conv kernel
    conv_pos_groups: int = 16
    num_buckets: int = 320  # relative-position buckets (both directions)
    max_distance: int = 800  # frames; distances beyond share the last bucket

    def __post_init__(self):
        if (
            min(self.dim, self.ffn_dim, self.num_layers, self.num_heads, self.conv_pos, self.conv_pos_groups)
            < 1
        ):
            raise ValueError(f"WavLMConfig sizes must be positive: {self}")
        if self.dim % self.num_heads or self.dim % self.conv_pos_groups:
            raise ValueError(
                f"dim {self.dim} must divide by num_heads {self.num_heads} and conv_pos_groups "
                f"{self.conv_pos_groups}"
            )
        if not self.conv_layers or self.conv_layers[-1][0] == self.dim:
            # fairseq drops post_extract_proj when the widths agree; that layout is not supported here
            raise ValueError(f"the last conv width must differ from dim {self.dim}; got {self.conv_layers}")


class _TransposeLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(-2, -1)


def _conv_block(n_in: int, n_out: int, kernel: int, stride: int) -> nn.Sequential:
    # fairseq's indices: 0 conv, 1 dropout (identity at inference), 2 LayerNorm over channels, 3 GELU
    norm = nn.Sequential(_TransposeLast(), nn.LayerNorm(n_out), _TransposeLast())
    return nn.Sequential(
        nn.Conv1d(n_in, n_out, kernel, stride=stride, bias=False), nn.Identity(), norm, nn.GELU()
    )


class ConvFeatureExtractor(nn.Module):
    def __init__(self, layers: tuple[ConvSpec, ...]):
        super().__init__()
        blocks, n_in = [], 1
        for n_out, kernel, stride in layers:
            blocks.append(_conv_block(n_in, n_out, kernel, stride))
            n_in = n_out
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav[:, None]  # (B, S) -> (B, 1, S)
        for block in self.conv_layers:
            x = block(x)
        return x  # (B, F, T)


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d with weight = g * v / ||v||, the norm over all axes but the kernel axis.

    Stored as ``torch.nn.utils.weight_norm(conv, dim=2)`` stores it: ``weight_g`` (1, 1, K),
    ``weight_v`` (C, C / groups, K), ``bias`` (C,).
    """

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight_v = nn.Parameter(torch.randn(dim, dim // groups, kernel) * math.sqrt(4 / (kernel * dim)))
        self.weight_g = nn.Parameter(self.weight_v.detach().norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.kernel // 2, groups=self.groups)


class _SamePad(nn.Module):
    """Drops the extra last frame an even kernel with padding K // 2 produces."""

    def __init__(self, kernel: int):
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : x.shape[-1] - self.remove]


def relative_position_buckets(t: int, num_buckets: int, max_distance: int, device=None) -> torch.Tensor:
    """T5-style bidirectional buckets of (key - query) offsets: (T, T) long, values in [0, num_buckets)."""
    pos = torch.arange(t, dtype=torch.long, device=device)
    rel = pos[None, :] - pos[:, None]  # (T, T): key position - query position
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    max_exact = half // 2
    # same float32 op order as the reference, so the bucket edges agree; clamp avoids log(0) (masked anyway)
    large = (
        max_exact
        + (
            torch.log(rel.clamp(min=1).float() / max_exact)
            / math.log(max_distance / max_exact)
            * (half - max_exact)
        ).long()
    )
    large = large.clamp(max=half - 1)
    return buckets + torch.where(rel < max_exact, rel, large)


class SelfAttention(nn.Module):
    """Multi-head self-attention with the gated relative position bias (gru_rel_pos)."""

    def __init__(self, cfg: WavLMConfig, has_relative_bias: bool):
        super().__init__()
        c, self.heads = cfg.dim, cfg.num_heads
        self.head_dim = c // cfg.num_heads
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        if has_relative_bias:
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, cfg.num_heads)
        self.k_proj, self.v_proj = nn.Linear(c, c), nn.Linear(c, c)
        self.q_proj, self.out_proj = nn.Linear(c, c), nn.Linear(c, c)
        self.grep_linear = nn.Linear(self.head_dim, 8)
        self.grep_a = nn.Parameter(torch.ones(1, cfg.num_heads, 1, 1))

    def position_bias(self, t: int, device) -> torch.Tensor:
        buckets = relative_position_buckets(t, self.num_buckets, self.max_distance, device)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)  # (T, T, H) -> (H, T, T)

    def forward(self, x: torch.Tensor, pos_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, c = x.shape
        if pos_bias is None:
            pos_bias = self.position_bias(t, x.device)  # (H, T, T), shared by the later layers ungated
        # gate from the (layer-normed) input split into heads, not from the projected queries
        xh = x.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, T, C) -> (B, H, T, Dh)
        gates = torch.sigmoid(self.grep_linear(xh).view(b, self.heads, t, 2, 4).sum(-1))  # (B, H, T, 2)
        gate_a, gate_b = gates.chunk(2, dim=-1)  # (B, H, T, 1) each
        bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * pos_bias  # (B, H, T, T)

        def heads(proj: nn.Linear) -> torch.Tensor:
            return proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

        out = F.scaled_dot_product_attention(heads(self.q_proj), heads(self.k_proj), heads(self.v_proj), bias)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, c)), pos_bias  # (B, H, T, Dh) -> (B, T, C)


class EncoderLayer(nn.Module):
    """Pre-LN block: x + attn(LN(x)), then x + fc2(gelu(fc1(LN(x))))."""

    def __init__(self, cfg: WavLMConfig, has_relative_bias: bool):
        super().__init__()
        self.self_attn = SelfAttention(cfg, has_relative_bias)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.dim)
        self.fc1 = nn.Linear(cfg.dim, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.dim)
        self.final_layer_norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor, pos_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h, pos_bias = self.self_attn(self.self_attn_layer_norm(x), pos_bias)
        x = x + h
        x = x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        return x, pos_bias


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: WavLMConfig):
        super().__init__()
        pos = WeightNormConv1d(cfg.dim, cfg.conv_pos, cfg.conv_pos_groups)
        self.pos_conv = nn.Sequential(pos, _SamePad(cfg.conv_pos), nn.GELU())
        self.layers = nn.ModuleList(
            EncoderLayer(cfg, has_relative_bias=i == 0) for i in range(cfg.num_layers)
        )
        self.layer_norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, T, C) -> num_layers + 1 states (B, T, C): each layer's input, then LN(last layer's output).

        These are exactly s3prl's ``hidden_states`` for WavLM (hooks on every layer's input and on the
        encoder's output), the features UniSpeech's ECAPA-TDNN weights and sums.
        """
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)  # (B, C, T) conv -> (B, T, C)
        states, pos_bias = [], None
        for layer in self.layers:
            states.append(x)
            x, pos_bias = layer(x, pos_bias)
        states.append(self.layer_norm(x))
        return states


class WavLM(nn.Module):
    def __init__(self, cfg: WavLMConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.conv_layers[-1][0]
        self.feature_extractor = ConvFeatureExtractor(cfg.conv_layers)
        self.layer_norm = nn.LayerNorm(width)
        self.post_extract_proj = nn.Linear(width, cfg.dim)
        self.mask_emb = nn.Parameter(
            torch.zeros(cfg.dim)
        )  # pre-training mask vector: unused, kept for the keys
        self.encoder = TransformerEncoder(cfg)

    def num_frames(self, samples: int) -> int:
        for _, kernel, stride in self.cfg.conv_layers:
            samples = (samples - kernel) // stride + 1
        return samples

    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """wav (B, S), equal lengths (no padding mask) -> num_layers + 1 tensors (B, T, C)."""
        feats = self.feature_extractor(wav).transpose(1, 2)  # (B, F, T) -> (B, T, F)
        return self.encoder(self.post_extract_proj(self.layer_norm(feats)))
