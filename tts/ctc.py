"""Phoneme CTC on the trunk's hidden states (training only): the states that condition the diffusion head must
say which phonemes the audio is speaking, in order.

Why: measured on the demo models (docs/TTS.md "What the trunk knows about the text"), shuffling the phonemes
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

Measured (docs/TTS.md): on teacher-forced rows the model satisfies this loss by recognising the audio latents it
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
from tts.align import positions


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
    """
    logps, targets, in_lens, tgt_lens = [], [], [], []
    for b in range(batch.tokens.shape[0]):
        if spans is not None and spans[b] is None:
            continue
        text, frames = positions(batch, lm, b)  # [P], [T]
        if spans is not None:
            p0, t0 = spans[b]
            text, frames = text[p0:], frames[t0:]
        if text.numel() == 0 or frames.numel() == 0:
            continue
        logps.append(readout(lm, hidden[b, frames - 1]))  # the states that predict each latent: [T, 1 + V]
        targets.append(batch.tokens[b, text] - lm.layout.offset + 1)  # phoneme ids shifted past the blank
        in_lens.append(frames.numel())
        tgt_lens.append(text.numel())
    if not logps:  # every row dropped its condition: a zero that keeps the graph
        zero = hidden.sum() * 0.0
        return zero, zero.detach()
    T = max(in_lens)
    lp = torch.stack([F.pad(x, (0, 0, 0, T - x.shape[0])) for x in logps], dim=1)  # [T, R, 1 + V]
    loss = F.ctc_loss(
        lp,
        torch.cat(targets),
        torch.tensor(in_lens),
        torch.tensor(tgt_lens),
        blank=0,
        reduction="mean",
        zero_infinity=True,
    )
    with torch.no_grad():  # first row only: the phoneme error of the greedy read-out, as a metric
        per = word_errors(_ids(targets[0].tolist()), _ids(greedy_decode(logps[0]))).wer
    return loss, torch.tensor(float(per), device=hidden.device)


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
