"""Causal Transformer trunk: pre-RMSNorm blocks, RoPE, SDPA attention (optional GQA), SwiGLU, KV cache.

Dimension legend:
    B  batch
    N  new tokens in this call
    S  key columns attended to (cache columns filled so far + N)
    C  model dim (cfg.dim)
    H  query heads, Hkv key/value heads (H % Hkv == 0), Dh head dim = C // H
    F  SwiGLU hidden size

Ragged batches are right-padded; ``valid`` [B, N] marks real tokens. A padding token is never attended to as a
key (except by itself, so no query row is ever fully masked and SDPA never yields NaN). Default RoPE positions
count valid tokens only, so a padded row gets the positions it would get unpadded. With a ``KVCache`` the
N new tokens fill columns [cache.length, cache.length + N) and positions continue from ``cache.n_valid`` per
row; this lets a batch prefill prompts of different lengths and then decode one token per step for all rows,
with the padding holes staying masked forever.

The trunk has no embedding table: it maps input embeddings [B, N, C] to hidden states [B, N, C] (after the
final RMSNorm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlm.linear import DecodeLinear


@dataclass
class TransformerConfig:
    dim: int = 256  # C
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = (
        None  # grouped-query attention when < n_heads (must divide n_heads); None = n_heads
    )
    ffn_hidden: int | None = None  # SwiGLU hidden size; None = round_up(8/3 * dim, 64)
    rope_theta: float = 10000.0
    max_seq_len: int = 4096
    norm_eps: float = 1e-6
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("dim", "n_layers", "n_heads", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransformerConfig.{name} must be positive, got {getattr(self, name)}")
        if self.dim % self.n_heads:
            raise ValueError(f"TransformerConfig: dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"TransformerConfig: head dim {self.dim // self.n_heads} must be even for RoPE")
        kv = self.n_kv_heads
        if kv is not None and (kv <= 0 or self.n_heads % kv):
            raise ValueError(
                f"TransformerConfig: n_kv_heads={kv} must be a positive divisor of n_heads={self.n_heads}"
            )
        if self.ffn_hidden is not None and self.ffn_hidden <= 0:
            raise ValueError(f"TransformerConfig.ffn_hidden must be positive, got {self.ffn_hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn_dim(self) -> int:
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        return 64 * math.ceil(8 * self.dim / 3 / 64)


class RMSNorm(nn.Module):
    """y = x / rms(x) * weight, computed in float32 and cast back to the input dtype. No bias."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            if x.numel() <= _SMALL and not (torch.is_grad_enabled() and (x.requires_grad or self.training)):
                # decode steps: the mean square by a matmul with a 1/C column measured faster on CPU
                ms = torch.matmul(x * x, _mean_column(x.shape[-1], x.device))  # [..., 1]
                return (x * ms.add_(self.eps).rsqrt_()).mul_(self.weight)
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return rms_normalize(x, self.eps) * self.weight.to(x.dtype)


_SMALL = 1 << 14  # elements: a few rows of one decode step
_MEAN_COLUMNS: dict[tuple[int, torch.device], Tensor] = {}


def _mean_column(dim: int, device: torch.device) -> Tensor:
    """[dim, 1] float32 filled with 1/dim (cached per device)."""
    key = (dim, device)
    if key not in _MEAN_COLUMNS:
        _MEAN_COLUMNS[key] = torch.full((dim, 1), 1.0 / dim, device=device)
    return _MEAN_COLUMNS[key]


def rms_normalize(x: Tensor, eps: float) -> Tensor:
    """x / rms(x) over the last dim (no weight), computed in float32 and cast back to x's dtype."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), None, eps)
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


@dataclass
class KVCache:
    """Per-layer K/V buffers [B, H_kv, S_max, Dh], key_valid Bool[B, S_max], `length` (columns filled),
    and n_valid Long[B] (valid tokens seen per sequence, which is the next RoPE position)."""

    k: list[Tensor]  # n_layers x [B, Hkv, S_max, Dh]
    v: list[Tensor]  # n_layers x [B, Hkv, S_max, Dh]
    key_valid: Tensor  # [B, S_max] bool
    n_valid: Tensor  # [B] long
    length: int = 0

    @classmethod
    def empty(
        cls, cfg: TransformerConfig, batch_size: int, max_len: int, device, dtype: torch.dtype
    ) -> KVCache:
        if batch_size <= 0 or max_len <= 0:
            raise ValueError(
                f"KVCache.empty: batch_size and max_len must be positive, got {batch_size}, {max_len}"
            )
        shape = (batch_size, cfg.kv_heads, max_len, cfg.head_dim)
        return cls(
            k=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)],
            v=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)],
            key_valid=torch.zeros(batch_size, max_len, device=device, dtype=torch.bool),
            n_valid=torch.zeros(batch_size, device=device, dtype=torch.long),
        )

    @property
    def batch_size(self) -> int:
        return self.key_valid.shape[0]

    @property
    def max_len(self) -> int:
        return self.key_valid.shape[1]

    def select(self, index: Tensor) -> KVCache:
        """A new cache holding only batch rows ``index`` (Long[B'] or Bool[B]), e.g. to drop finished rows."""
        index = torch.as_tensor(index, device=self.key_valid.device)
        if index.dtype == torch.bool:
            if index.shape != (self.batch_size,):
                raise ValueError(f"KVCache.select: bool mask must have shape ({self.batch_size},)")
            index = index.nonzero().squeeze(1)
        if index.dim() != 1:
            raise ValueError(f"KVCache.select: index must be 1-D, got shape {tuple(index.shape)}")
        return KVCache(
            k=[t.index_select(0, index) for t in self.k],
            v=[t.index_select(0, index) for t in self.v],
            key_valid=self.key_valid.index_select(0, index),
            n_valid=self.n_valid.index_select(0, index),
            length=self.length,
        )


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """positions [B, N] -> cos, sin [B, 1, N, Dh] in float32 (rotate-half layout)."""
    inv_freq = 1.0 / theta ** (
        torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )  # [Dh/2]
    freqs = positions.float()[..., None] * inv_freq  # [B, N, Dh/2]
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]  # [B, 1, N, Dh]
    return emb.cos(), emb.sin()


class RopeTable:
    """cos and sign-folded sin of every position in [0, max_seq_len), per device, built on first use.

    ``lookup(positions [B, N])`` -> cos, sin_signed [B, N, 1, Dh] float32 (heads broadcast after N) with
    sin_signed = cat(-sin_half, sin_half), so x * cos + rotate_half(x) * sin == x * cos + swap_halves(x) *
    sin_signed: the same products as the rotate-half formula with ``rope_cos_sin`` (negation is exact; tested against
    it in tests/test_transformer.py), gathered instead of
    recomputed every call."""

    def __init__(self, head_dim: int, theta: float, max_len: int):
        self.head_dim, self.theta, self.max_len = head_dim, theta, max_len
        self._tables: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def lookup(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        dev = positions.device
        if positions.dtype.is_floating_point:  # fractional positions: no table row, compute them
            cos, sin = (t.transpose(1, 2) for t in rope_cos_sin(positions, self.head_dim, self.theta))
            half = self.head_dim // 2
            return cos, torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)  # [B, N, 1, Dh]
        if dev not in self._tables:
            pos = torch.arange(self.max_len, device=dev)[None]  # [1, L]
            cos, sin = rope_cos_sin(pos, self.head_dim, self.theta)  # [1, 1, L, Dh]
            half = self.head_dim // 2
            sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
            self._tables[dev] = (cos[0, 0], sin[0, 0])  # [L, Dh] each
        cos, sin = self._tables[dev]
        B, N = positions.shape
        return cos[positions].view(B, N, 1, -1), sin[positions].view(B, N, 1, -1)  # [B, N, 1, Dh]


def apply_rope_swapped(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """x [..., Dh] with the ``RopeTable`` layout: x * cos + swap_halves(x) * sin_signed, float32 math."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return torch.addcmul(xf * cos, torch.cat([x2, x1], dim=-1), sin_signed).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.qkv = DecodeLinear(cfg.dim, (cfg.n_heads + 2 * cfg.kv_heads) * cfg.head_dim, bias=False)
        self.out = DecodeLinear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.dropout = cfg.dropout
        # Training aids (e.g. a guided-attention loss) set ``keep_probs`` = k > 0 to keep the softmax attention
        # of the first k query heads of the last call in ``probs`` [B, k, N, S] (with gradient); 0 = off.
        self.keep_probs = 0
        self.probs: Tensor | None = None

    def forward(
        self,
        x: Tensor,  # [B, N, C]
        cos: Tensor,  # [B, N, 1, Dh] (``RopeTable`` layout)
        sin: Tensor,  # [B, N, 1, Dh], sign-folded
        mask: Tensor | None,  # [B, 1, N, S] bool (True = attend) or additive float; None = plain causal
        kv_buffers: tuple[Tensor, Tensor] | None = None,  # 2 x [B, Hkv, S_max, Dh]
        start: int = 0,  # first cache column of the new tokens
    ) -> Tensor:
        B, N, _ = x.shape
        H, Hkv, Dh = self.n_heads, self.n_kv, self.head_dim
        qkv = self.qkv(x)  # [B, N, (H + 2 Hkv) Dh]
        qk = apply_rope_swapped(
            qkv[..., : (H + Hkv) * Dh].view(B, N, H + Hkv, Dh), cos, sin
        )  # q and k at once
        q = qk[:, :, :H].transpose(1, 2)  # [B, H, N, Dh]
        k = qk[:, :, H:].transpose(1, 2)  # [B, Hkv, N, Dh]
        v = qkv[..., (H + Hkv) * Dh :].view(B, N, Hkv, Dh).transpose(1, 2)  # [B, Hkv, N, Dh]
        if kv_buffers is not None:
            k_buf, v_buf = kv_buffers
            k_buf[:, :, start : start + N] = k
            v_buf[:, :, start : start + N] = v
            k = k_buf[:, :, : start + N].to(q.dtype)  # [B, Hkv, S, Dh]
            v = v_buf[:, :, : start + N].to(q.dtype)
        if self.keep_probs:
            self.probs = attention_probs(q[:, : self.keep_probs], k, mask, H // Hkv)
        gqa = Hkv != H
        if gqa and x.device.type != "cpu":  # SDPA's enable_gqa is exact on CPU; elsewhere keep the copies
            k = k.repeat_interleave(H // Hkv, dim=1)  # [B, H, S, Dh]; query head h reads kv head h // rep
            v = v.repeat_interleave(H // Hkv, dim=1)
            gqa = False
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None, enable_gqa=gqa
        )  # [B, H, N, Dh]
        y = y.transpose(1, 2).reshape(B, N, H * Dh)  # [B, N, C]
        return self.out(y)


def attention_probs(q: Tensor, k: Tensor, mask: Tensor | None, rep: int) -> Tensor:
    """softmax(q k^T / sqrt(Dh)) for query heads q [B, h, N, Dh] (the first h heads) against k [B, Hkv, S, Dh]
    (query head i reads kv head i // rep) with ``mask`` [B, 1, N, S] bool (None = causal) -> [B, h, N, S] float32.
    The same numbers SDPA uses internally, materialised so a loss can shape them."""
    h, N, S = q.shape[1], q.shape[2], k.shape[2]
    if k.shape[1] != q.shape[1]:  # grouped-query attention: pick each query head's kv head
        k = k[:, torch.arange(h, device=k.device) // rep]  # [B, h, S, Dh]
    logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])  # [B, h, N, S]
    if mask is None:
        mask = torch.ones(N, S, dtype=torch.bool, device=q.device).tril(S - N)[None, None]
    if mask.dtype != torch.bool:  # additive float mask
        return (logits + mask.float()).softmax(-1)
    return logits.masked_fill(~mask, float("-inf")).softmax(-1)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = DecodeLinear(dim, 2 * hidden, bias=False)
        self.down = DecodeLinear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # [B, N, C] -> [B, N, C]
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # 2 x [B, N, F]
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.dim, cfg.ffn_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, mask, kv_buffers=None, start=0) -> Tensor:  # [B, N, C]
        if self.training and self.drop.p > 0:
            x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, mask, kv_buffers, start))
            return x + self.drop(self.mlp(self.mlp_norm(x)))
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, kv_buffers, start)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    """Pre-norm blocks + final RMSNorm: forward(x [B, N, C], valid, positions, cache) -> [B, N, C]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.rope = RopeTable(cfg.head_dim, cfg.rope_theta, cfg.max_seq_len)  # cached cos/sin, not state
        # an optional compiled step (latentlm/onnx_step.py OnnxTrunkRuntime): runs the cached calls it covers
        # (``runtime.covers(x, valid, positions, cache)``); not a module, never saved
        self.runtime = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.02) linears; residual output projections scaled by 1/sqrt(2 * n_layers) (GPT-2/nanoGPT)."""
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2:
                scaled = name.endswith("attn.out.weight") or name.endswith("mlp.down.weight")
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.cfg.n_layers) if scaled else std)
            else:
                nn.init.ones_(p)  # RMSNorm weights

    def _check_positions(self, positions: Tensor, bound: int | None) -> None:
        """Raise if any position is outside [0, max_seq_len). ``bound`` is a known upper bound (no sync)."""
        limit = self.cfg.max_seq_len
        if bound is not None and bound < limit:
            return
        lo, hi = int(positions.min()), int(positions.max())
        if lo < 0 or hi >= limit:
            raise ValueError(f"Transformer: RoPE positions must lie in [0, {limit}), got range [{lo}, {hi}]")

    def forward(
        self,
        x: Tensor,  # [B, N, C] input embeddings
        valid: Tensor | None = None,  # [B, N] bool, False = padding
        positions: Tensor | None = None,  # [B, N] long
        cache: KVCache | None = None,
    ) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"Transformer: expected x of shape [B, N, {self.cfg.dim}], got {tuple(x.shape)}")
        B, N, _ = x.shape
        if N == 0:
            raise ValueError("Transformer: got an empty sequence (N=0)")
        if valid is not None and (valid.shape != (B, N) or valid.dtype != torch.bool):
            raise ValueError(f"Transformer: valid must be a bool tensor of shape {(B, N)}, got {valid.shape}")
        if positions is not None and positions.shape != (B, N):
            raise ValueError(f"Transformer: positions must have shape {(B, N)}, got {tuple(positions.shape)}")
        if self.runtime is not None and self.runtime.covers(x, valid, positions, cache):
            return self.runtime(x, cache)
        start = 0
        if cache is not None:
            if cache.batch_size != B:
                raise ValueError(f"Transformer: cache holds {cache.batch_size} rows but x has batch size {B}")
            if cache.length + N > cache.max_len:
                raise ValueError(
                    f"Transformer: KV cache overflow: {cache.length} columns filled + {N} new > max_len "
                    f"{cache.max_len}"
                )
            start = cache.length
        dev = x.device
        fast_causal = cache is None and valid is None  # plain causal attention: is_causal=True, no mask
        valid_ = torch.ones(B, N, dtype=torch.bool, device=dev) if valid is None else valid

        # RoPE positions: count valid tokens (continuing from the cache), so padding does not shift them.
        if positions is None:
            if valid is None and cache is None:
                positions = torch.arange(N, device=dev).expand(B, N)
            else:
                positions = valid_.long().cumsum(1) - 1  # [B, N]
                if cache is not None:
                    positions = positions + cache.n_valid[:, None]
                positions = positions.clamp(min=0)
            self._check_positions(positions, start + N - 1)
        else:
            self._check_positions(positions, None)
        cos, sin = self.rope.lookup(positions)  # [B, N, 1, Dh]

        mask = None
        if not fast_causal:
            if cache is not None:
                cache.key_valid[:, start : start + N] = valid_
                key_valid = cache.key_valid[:, : start + N]  # [B, S]
            else:
                key_valid = valid_
            cols = torch.arange(start + N, device=dev)  # [S]
            qcols = cols[start:, None]  # [N, 1]
            causal = cols[None, :] <= qcols  # [N, S]
            diag = cols[None, :] == qcols  # [N, S]: every query sees itself, so no row is fully masked
            mask = (causal[None] & key_valid[:, None, :]) | diag[None]  # [B, N, S]
            mask = mask[:, None]  # [B, 1, N, S]

        h = x
        for i, layer in enumerate(self.layers):
            kv = (cache.k[i], cache.v[i]) if cache is not None else None
            h = layer(h, cos, sin, mask, kv, start)
        if cache is not None:
            cache.length += N
            cache.n_valid += valid_.sum(1)
        return self.norm(h)
