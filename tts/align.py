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
    pa, ta = split if split is not None else (0, 0)
    return expected_phoneme_batched(j, *(torch.tensor(float(x), device=device) for x in (P, T, pa, ta)))


def token_masks(batch: Batch, lm: LatentLM) -> tuple[Tensor, Tensor]:
    """([B, N] phoneme positions, [B, N] audio latent positions) of every row. Phoneme positions are those of
    the condition before ``<bo_audio>`` (the interleaved layout's tokens inside the audio span are not)."""
    before_audio = (batch.tokens == lm.layout.begin["audio"]).cumsum(1) == 0
    text = batch.valid & (batch.tokens >= lm.layout.offset) & before_audio
    frame = batch.valid & (batch.modality == lm.layout.modalities.index("audio"))
    return text, frame


def positions(batch: Batch, lm: LatentLM, b: int) -> tuple[Tensor, Tensor]:
    """Row b's phoneme positions [P] and audio latent positions [T] (indices into the sequence)."""
    text, frame = token_masks(batch, lm)
    return text[b].nonzero().squeeze(1), frame[b].nonzero().squeeze(1)


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
    hundreds of keys); the band mass (no gradient, in [0, 1]) is the number to watch.

    Batched over rows: one band tensor [B, N, K] (K up to the last phoneme key) and three host syncs. The
    per-row loop it replaced made ~14,000 operator calls per 64-row step (~340 now), each a kernel launch on a
    GPU, where an H200 ran the demo recipe at ~4 steps/s with 27 % utilisation (``benchmarks/bench_tts_train``)."""
    dev = probs[0].device
    text, frame = token_masks(batch, lm)  # [B, N] each
    P, T = text.sum(1), frame.sum(1)  # [B]
    rows = (P > 0) & (T > 0)  # rows whose condition was dropped have no phonemes: skipped
    if not bool(rows.any()):  # every row dropped its condition: a zero that keeps the graph
        zero = sum(p.sum() for p in probs) * 0.0
        return zero, zero.detach()
    # phonemes lead every row ([bos] phonemes <boa> latents ...): keys past the last one never carry band mass
    K = int((text * torch.arange(1, text.shape[1] + 1, device=dev)).max())
    text, probs = text[:, :K], [p[..., :K] for p in probs]
    n = text.cumsum(1).float() - 0.5  # [B, K] phoneme index + 0.5 at phoneme keys
    j = frame.cumsum(1).float() - 0.5  # [B, N] frame index + 0.5 at frame queries
    anchor = [s if s is not None else (0, 0) for s in splits]
    pa, ta = torch.tensor(anchor, device=dev, dtype=torch.float32).T  # [B] each
    Pf, Tf = P.float().clamp(min=1), T.float().clamp(min=1)
    e = expected_phoneme_batched(j, Pf[:, None], Tf[:, None], pa[:, None], ta[:, None])  # [B, N]
    band = torch.exp(
        -(((n[:, None, :] - e[:, :, None]) / Pf[:, None, None]) ** 2) / (2 * sigma**2)
    )  # [B, N, K]
    band = band * (frame[:, :, None] & text[:, None, :])  # frame queries x phoneme keys only
    w = (frame & rows[:, None]).float() / (Tf[:, None] * len(probs) * int(rows.sum()))  # [B, N] frame weights
    total, band_mass = probs[0].new_zeros(()), probs[0].new_zeros(())
    for p in probs:
        mass = (p * band[:, None]).sum(-1)  # [B, h, N] attention inside the band (zero off the frames)
        weight = w[:, None, :] / p.shape[1]  # [B, 1, N], and the mean over the kept heads
        total = total - (torch.log(mass + eps) * weight).sum()
        band_mass = band_mass + (mass.detach() * weight).sum()
    return total, band_mass


def expected_phoneme_batched(j: Tensor, P: Tensor, T: Tensor, pa: Tensor, ta: Tensor) -> Tensor:
    """``expected_phoneme`` for broadcastable tensors: frame index + 0.5 ``j``, phoneme and frame counts P, T,
    anchor (pa, ta) used where 0 < pa < P and 0 < ta < T."""
    piecewise = (pa > 0) & (pa < P) & (ta > 0) & (ta < T)
    first = j / ta.clamp(min=1) * pa
    second = pa + (j - ta) / (T - ta).clamp(min=1) * (P - pa)
    return torch.where(piecewise, torch.where(j < ta, first, second), j / T * P)
