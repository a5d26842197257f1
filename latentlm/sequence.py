"""Multimodal sequences: discrete spans and continuous (latent) spans packed into one token stream.

Dimension legend: B batch, N sequence positions, D latent dim (per modality), Dmax the widest latent dim.

Every position holds one *item*: a discrete token, or a latent vector of some modality. The model at position i
predicts item i+1: a discrete token through the LM head, always (for a latent item the target token is the
reserved ``<lat>``, "a latent comes next"), and additionally, when item i+1 is a latent, the latent itself through
that modality's diffusion head. Boundary tokens open and close each continuous span, e.g. for speech
``<boa> latents... <eoa>``; the LM head decides when the span ends by predicting ``<eoa>`` instead of ``<lat>``.

Token ids (``TokenLayout``): ``<pad> <bos> <eos> <lat> <null>``, then ``<bo_m> <eo_m>`` for each modality m in
the configured order, then the discrete vocabulary (text / phoneme ids, shifted by ``layout.offset``).
``<null>`` stands in for a dropped condition (classifier-free guidance).

Loss weights live on the *target* item: span weight 0 makes a span pure context (e.g. the phoneme condition or
the speaker prompt), 1 makes it trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<lat>", "<null>")


class TokenLayout:
    """Maps special tokens, per-modality boundary tokens and the discrete vocabulary onto one id space."""

    def __init__(self, vocab_size: int, modalities: Sequence[str]):
        if vocab_size < 0:
            raise ValueError(f"vocab_size must be >= 0, got {vocab_size}")
        self.modalities = list(modalities)
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"duplicate modality names in {self.modalities}")
        self.pad, self.bos, self.eos, self.lat, self.null = range(len(SPECIAL_TOKENS))
        base = len(SPECIAL_TOKENS)
        self.begin = {m: base + 2 * i for i, m in enumerate(self.modalities)}
        self.end = {m: base + 2 * i + 1 for i, m in enumerate(self.modalities)}
        self.offset = base + 2 * len(self.modalities)
        self.vocab_size = vocab_size
        self.size = self.offset + vocab_size
        self.modality_of_begin = {v: m for m, v in self.begin.items()}
        self.modality_of_end = {v: m for m, v in self.end.items()}

    def text(self, ids: Sequence[int] | Tensor) -> Tensor:
        """Discrete vocabulary ids -> layout ids."""
        t = torch.as_tensor(ids, dtype=torch.long)
        if t.numel() and (t.min() < 0 or t.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got range [{t.min()}, {t.max()}]")
        return t + self.offset

    def untext(self, ids: Tensor) -> Tensor:
        """Layout ids -> discrete vocabulary ids (-1 for special tokens)."""
        return torch.where(ids >= self.offset, ids - self.offset, torch.full_like(ids, -1))

    def name(self, token: int) -> str:
        if token < len(SPECIAL_TOKENS):
            return SPECIAL_TOKENS[token]
        if token in self.modality_of_begin:
            return f"<bo_{self.modality_of_begin[token]}>"
        if token in self.modality_of_end:
            return f"<eo_{self.modality_of_end[token]}>"
        return str(token - self.offset)


@dataclass
class Tokens:
    """A discrete span: layout ids [n]; ``weight`` is the loss weight of predicting these tokens."""

    ids: Tensor
    weight: float = 1.0


@dataclass
class Latents:
    """A continuous span of one modality: [n, D]; ``weight`` is the loss weight of predicting them."""

    modality: str
    values: Tensor
    weight: float = 1.0


Span = Tokens | Latents


@dataclass
class Batch:
    """A packed, right-padded batch. Item n of row b is a token (modality -1) or a latent (modality >= 0)."""

    tokens: Tensor  # [B, N] long; <lat> at latent positions, <pad> at padding
    latents: Tensor  # [B, N, Dmax] float; zeros at discrete positions and padding
    modality: Tensor  # [B, N] long; -1 discrete / padding, else index into layout.modalities
    valid: Tensor  # [B, N] bool; False = padding
    weight: Tensor  # [B, N] float; loss weight of predicting this item (from the previous position)
    # [B, N, Dmax] latents the model READS where they differ from the targets in ``latents`` (training only,
    # e.g. a corrupted history); None = read ``latents``
    inputs: Tensor | None = None

    @property
    def lengths(self) -> Tensor:  # [B]
        return self.valid.sum(1)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            *(getattr(self, f).to(device) for f in ("tokens", "latents", "modality", "valid", "weight")),
            inputs=None if self.inputs is None else self.inputs.to(device),
        )


def pack(
    sequences: Sequence[Sequence[Span]], layout: TokenLayout, latent_dims: dict[str, int], dtype=torch.float32
) -> Batch:
    """Pack lists of spans into a right-padded ``Batch``. Shapes and modalities are validated."""
    if not sequences:
        raise ValueError("pack() needs at least one sequence")
    dmax = max(latent_dims.values(), default=1)
    rows = []
    for si, spans in enumerate(sequences):
        toks, lats, mods, wts = [], [], [], []
        for span in spans:
            if isinstance(span, Tokens):
                ids = torch.as_tensor(span.ids, dtype=torch.long).reshape(-1)
                if ids.numel() and (ids.min() < 0 or ids.max() >= layout.size):
                    raise ValueError(f"sequence {si}: token id out of range [0, {layout.size})")
                n = ids.numel()
                toks.append(ids)
                lats.append(torch.zeros(n, dmax, dtype=dtype))
                mods.append(torch.full((n,), -1, dtype=torch.long))
            elif isinstance(span, Latents):
                if span.modality not in latent_dims:
                    raise ValueError(
                        f"sequence {si}: unknown modality {span.modality!r}; have {list(latent_dims)}"
                    )
                v = torch.as_tensor(span.values, dtype=dtype)
                d = latent_dims[span.modality]
                if v.dim() != 2 or v.shape[1] != d:
                    raise ValueError(
                        f"sequence {si}: {span.modality} latents must be [n, {d}], got {tuple(v.shape)}"
                    )
                n = v.shape[0]
                toks.append(torch.full((n,), layout.lat, dtype=torch.long))
                lats.append(torch.nn.functional.pad(v, (0, dmax - d)))  # [n, Dmax]
                mods.append(torch.full((n,), layout.modalities.index(span.modality), dtype=torch.long))
            else:
                raise TypeError(f"sequence {si}: spans must be Tokens or Latents, got {type(span).__name__}")
            wts.append(torch.full((n,), float(span.weight)))
        if not toks or sum(t.numel() for t in toks) == 0:
            raise ValueError(f"sequence {si} is empty")
        rows.append((torch.cat(toks), torch.cat(lats), torch.cat(mods), torch.cat(wts)))
    n_max = max(r[0].numel() for r in rows)
    b = len(rows)
    out = Batch(
        tokens=torch.full((b, n_max), layout.pad, dtype=torch.long),
        latents=torch.zeros(b, n_max, dmax, dtype=dtype),
        modality=torch.full((b, n_max), -1, dtype=torch.long),
        valid=torch.zeros(b, n_max, dtype=torch.bool),
        weight=torch.zeros(b, n_max),
    )
    for i, (t, lat, m, w) in enumerate(rows):
        n = t.numel()
        out.tokens[i, :n], out.latents[i, :n], out.modality[i, :n], out.weight[i, :n] = t, lat, m, w
        out.valid[i, :n] = True
    return out
