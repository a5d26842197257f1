"""Phoneme CTC on the trunk's hidden states (training only): the states that condition the diffusion head must
say which phonemes the audio is speaking, in order.

Why: measured on the demo models (docs/experiments/ctc.md), shuffling the phonemes
moved the hidden state at the audio frames by only 2-5%, and the teacher-forced diffusion loss was the same with
the phonemes dropped: the guided heads looked at the right phoneme, but nothing downstream used what they read.
This loss asks for it directly, with no alignment given (CTC finds it): the hidden state at each position that
predicts an audio latent is read out through the LM head, restricted to ``<pad>`` (the CTC blank) and the
phoneme vocabulary, and CTC scores the row's phoneme sequence against those T read-outs. No new parameters: the
LM head's phoneme rows are the read-out (at these positions the LM loss only asks for ``<lat>`` vs
``<eo_audio>``, which a softmax restricted to the phonemes does not see), so a release is unchanged.

Rows: every row whose phonemes are visible (rows dropped to ``<null>`` for classifier-free guidance are
skipped: their text is unknown to the model). The row's audio (prompt + target latents) says its phonemes
(prompt text + " " + target text) in order for every pairing ``tts.data`` makes (a prefix prompt is the start of
the same utterance; a cross-sentence prompt is a whole utterance with its transcript).

Measured (docs/experiments/ctc.md): on teacher-forced rows the model satisfies this loss by recognising the audio latents it
reads, not by reading the text. ``blind_spans`` selects rows for the variant that closes that shortcut: rows whose
target latents the model reads as pure noise (``training_batch(blind=...)``), scored on the target text against
the target frames only, so the phonemes are the only source of what is being said.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from evaluation.normalize import word_errors
from latentlm.model import LatentLM
from latentlm.sequence import Batch
from tts.align import token_masks


def blind_spans(collated: dict, p_blind: float, generator: torch.Generator) -> tuple[list[bool], list]:
    """Pick blind rows (probability ``p_blind`` each, among rows whose target text is known: cross-sentence rows
    with a whole prompt, and rows without a prompt) -> (blind flag per row, ``phoneme_ctc_loss`` spans)."""
    flags, spans = [], []
    for b, split in enumerate(collated["align_split"]):
        # a cross-sentence row's split is already (target text start, target frame start); a row with no prompt
        # is all target; a prefix prompt (or a cut one) has no known text split
        span = split
        if split is None:
            span = None if collated["prompt_mask"][b].any() else (0, 0)
        pick = span is not None and bool(torch.rand((), generator=generator) < p_blind)
        flags.append(pick)
        spans.append(span if pick else None)
    return flags, spans


def readout(lm: LatentLM, hidden: Tensor) -> Tensor:
    """[..., C] hidden states -> [..., 1 + V_text] log-probabilities over (blank, phoneme ids)."""
    lay = lm.layout
    logits = lm.logits(hidden).float()  # [..., V_layout] (a module call: FSDP gathers the head's weight)
    cols = torch.cat(
        [logits[..., lay.pad : lay.pad + 1], logits[..., lay.offset : lay.offset + lay.vocab_size]], -1
    )
    return F.log_softmax(cols, dim=-1)


def phoneme_ctc_loss(
    hidden: Tensor, batch: Batch, lm: LatentLM, spans: Sequence[tuple[int, int] | None] | None = None
) -> tuple[Tensor, Tensor]:
    """(loss, greedy phoneme error) over the rows with visible phonemes. hidden: [B, N, C] (the trunk output).

    The loss is CTC (mean over rows of the per-row loss divided by its phoneme count); the second value (no
    gradient) is the greedy CTC read-out's phoneme error rate on the first such row (edits / phonemes; 0 = the
    hidden states spell the text, about 1 = they say nothing about it).
    Rows whose audio is too short for their phonemes (CTC needs T >= P plus repeats) give zero (``zero_infinity``).
    ``spans`` (per row): None skips the row; (p0, t0) scores only the row's phonemes from p0 on against its
    frames from t0 on (e.g. the target text against the target audio). Default: every row, all of it.
    Batched over rows (padded gathers, no per-row indexing): ~285 operator calls for a 64-row batch where the
    per-row loop made ~1,500, each a kernel launch on a GPU.
    """
    B, N = batch.tokens.shape
    dev = hidden.device
    text, frame = token_masks(batch, lm)  # [B, N] each
    picked = [True] * B if spans is None else [s is not None for s in spans]
    starts = [s or (0, 0) for s in (spans or [None] * B)]  # (first scored phoneme, first scored frame)
    p0, t0 = torch.tensor(starts, device=dev).T  # [B] each
    text = text & (text.cumsum(1) > p0[:, None])  # drop the first p0 phonemes / t0 frames of each row
    frame = frame & (frame.cumsum(1) > t0[:, None])
    P, T = text.sum(1), frame.sum(1)  # [B]
    rows = torch.tensor(picked, device=dev) & (P > 0) & (T > 0)
    if not bool(rows.any()):  # every row dropped its condition (or was skipped): a zero that keeps the graph
        zero = hidden.sum() * 0.0
        return zero, zero.detach()
    text, frame, P, T, hid, tokens = (
        text[rows],
        frame[rows],
        P[rows],
        T[rows],
        hidden[rows],
        batch.tokens[rows],
    )
    # each row's scored positions first, in order (stable sort on "not scored"), cut to the longest row
    order = torch.arange(N, device=dev)
    fpos = torch.sort((~frame).int() * N + order, dim=1).values[:, : int(T.max())] % N  # [R, T]
    tpos = torch.sort((~text).int() * N + order, dim=1).values[:, : int(P.max())] % N  # [R, S]
    state = (fpos - 1).clamp(min=0)  # the states that predict each latent (padding: any, masked by T)
    logps = readout(lm, torch.gather(hid, 1, state[..., None].expand(-1, -1, hid.shape[-1])))  # [R, T, 1 + V]
    targets = (
        torch.gather(tokens, 1, tpos) - lm.layout.offset + 1
    )  # [R, S] phoneme ids shifted past the blank
    loss = F.ctc_loss(
        logps.transpose(0, 1),  # [T, R, 1 + V]
        targets,
        T,
        P,
        blank=0,
        reduction="mean",
        zero_infinity=True,
    )
    with torch.no_grad():  # first row only: the phoneme error of the greedy read-out, as a metric
        n, m = int(T[0]), int(P[0])
        per = word_errors(_ids(targets[0, :m].tolist()), _ids(greedy_decode(logps[0, :n]))).wer
    return loss, torch.tensor(float(per), device=dev)


def greedy_decode(logp: Tensor) -> list[int]:
    """[T, 1 + V] -> the best path with repeats merged and blanks removed (labels 1..V)."""
    best = logp.argmax(-1).tolist()
    out, prev = [], 0
    for k in best:
        if k != prev and k != 0:
            out.append(k)
        prev = k
    return out


def _ids(labels: list[int]) -> str:
    """Label ids as space-separated words, so ``evaluation.normalize.word_errors`` counts their edits."""
    return " ".join(map(str, labels))
