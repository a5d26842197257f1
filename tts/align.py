"""Guided attention: a training-only loss that teaches chosen trunk heads the monotonic text-to-speech alignment.

Dimension legend: B batch, h kept heads, N sequence positions, T latent frames of a row (prompt + target),
P phoneme tokens of a row.

A decoder-only TTS model has to discover on its own which phoneme each latent frame says; with few training
steps it does not (the shipped model after 1,752 CPU steps speaks fluent nonsense). Tachibana et al. (DCTTS,
arXiv 1710.08969) showed that penalising attention far from the diagonal of the (text, frame) plane makes an
attention-based TTS align within a few thousand steps. Here the same penalty applies to the first ``heads``
query heads of the trunk layers ``layers``: for latent frame j, whose expected phoneme is e(j),

    mass(j) = sum_n p(j, n) exp(-((n - e(j)) / P)^2 / (2 sigma^2)),   loss = -mean_j log mass(j)

over the phoneme keys n (DCTTS penalises 1 - mass; the log gives a strong gradient while attention is still
spread over hundreds of keys), with p the head's softmax over ALL keys (mass on non-phoneme keys counts as off the
diagonal, so a guided head is an alignment head). e(j) is linear in j, piecewise when the row pairs a prompt
utterance with another target utterance (prompt text <-> prompt audio, then target text <-> target audio).
Rows whose phoneme condition was dropped (classifier-free guidance) are skipped. Inference does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from latentlm.model import LatentLM
from latentlm.sequence import Batch


@dataclass
class AlignConfig:
    weight: float = 0.0  # 0 = off
    layers: list[int] = field(default_factory=lambda: [1, 2, 3, 4])  # trunk layers with a guided head
    heads: int = 1  # the first `heads` query heads of each of those layers
    sigma: float = 0.1  # width of the diagonal band, as a fraction of the row's phoneme count

    def __post_init__(self) -> None:
        if self.weight < 0 or self.sigma <= 0 or self.heads < 1:
            raise ValueError(f"align: need weight >= 0, sigma > 0, heads >= 1; got {self}")


def enable(lm: LatentLM, cfg: AlignConfig) -> None:
    """Make the guided layers keep their attention probabilities (training only; idempotent)."""
    n_layers, n_heads = len(lm.trunk.layers), lm.cfg.trunk.n_heads
    bad = [i for i in cfg.layers if not 0 <= i < n_layers]
    if bad or cfg.heads > n_heads:
        raise ValueError(
            f"align: layers {cfg.layers} / heads {cfg.heads} do not fit a {n_layers}-layer, "
            f"{n_heads}-head trunk"
        )
    for i in cfg.layers:
        lm.trunk.layers[i].attn.keep_probs = cfg.heads


def kept_probs(lm: LatentLM, cfg: AlignConfig) -> list[Tensor]:
    """The attention kept by the last forward: one [B, h, N, N] per guided layer."""
    out = [lm.trunk.layers[i].attn.probs for i in cfg.layers]
    if any(p is None for p in out):
        raise RuntimeError("align: no attention was kept; call tts.align.enable(lm, cfg) before the forward")
    return out


def expected_phoneme(T: int, P: int, split: tuple[int, int] | None, device) -> Tensor:
    """e(j) for j in [0, T): the expected phoneme index (float) of each frame -> [T]."""
    j = torch.arange(T, device=device, dtype=torch.float32) + 0.5
    if split is not None:
        pa, ta = split
        if 0 < pa < P and 0 < ta < T:
            first = j / ta * pa
            second = pa + (j - ta) / (T - ta) * (P - pa)
            return torch.where(j < ta, first, second)
    return j / T * P


def positions(batch: Batch, lm: LatentLM, b: int) -> tuple[Tensor, Tensor]:
    """Row b's phoneme positions [P] and audio latent positions [T] (indices into the sequence)."""
    ok = batch.valid[b]
    text = (ok & (batch.tokens[b] >= lm.layout.offset)).nonzero().squeeze(1)
    frames = (ok & (batch.modality[b] == lm.layout.modalities.index("audio"))).nonzero().squeeze(1)
    return text, frames


def guided_attention_loss(
    probs: Sequence[Tensor],  # per layer [B, h, N, N]
    batch: Batch,
    lm: LatentLM,
    splits: Sequence[tuple[int, int] | None],  # per row: (prompt phonemes incl. joining space, prompt frames)
    sigma: float,
    eps: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """(loss, band mass): the loss is -log of the attention mass inside the band, averaged over frames, guided
    heads and rows with phonemes (the log keeps the gradient strong while attention is still spread over
    hundreds of keys); the band mass (no gradient, in [0, 1]) is the number to watch."""
    total, band_mass, rows = probs[0].new_zeros(()), probs[0].new_zeros(()), 0
    for b in range(batch.tokens.shape[0]):
        text, frames = positions(batch, lm, b)  # [P], [T]
        P, T = text.numel(), frames.numel()
        if P == 0 or T == 0:
            continue
        e = expected_phoneme(T, P, splits[b], text.device)  # [T]
        n = torch.arange(P, device=text.device, dtype=torch.float32) + 0.5
        band = torch.exp(-(((n[None] - e[:, None]) / P) ** 2) / (2 * sigma**2))  # [T, P]
        for p in probs:
            sub = p[b][:, frames][:, :, text]  # [h, T, P]
            mass = (sub * band).sum(-1)  # [h, T] attention inside the band
            total = total - torch.log(mass + eps).mean()
            band_mass = band_mass + mass.detach().mean()
        rows += len(probs)
    if rows == 0:  # every row dropped its condition: a zero that keeps the graph
        zero = sum(p.sum() for p in probs) * 0.0
        return zero, zero.detach()
    return total / rows, band_mass / rows
