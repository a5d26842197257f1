"""Interleaved phoneme scripts: which phoneme symbols a target span says, and for how many sequence items each.

Dimension legend: S symbols of an utterance's phoneme string, T its latent frames (VAE frames), T' items.

With ``TTSConfig.interleave`` the target audio of a training sequence is written as each phoneme symbol's token
followed by the frames that say it (ELLA-V, arXiv 2401.07333; durations from ``tts.durations``):

    ... <bo_audio> prompt latents  ph_1 f f f  ph_2 ph_3 f f  ...  ph_S f f <eo_audio>

A symbol may own zero frames (stress marks, the space between words, punctuation without a pause): its token is
followed directly by the next one. Durations are counted in VAE frames (sum == T); ``item_durations`` regroups
them into items of ``patch`` frames (tts/patch.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_durations(uid: str, ids: Sequence[int], durations: Sequence[int], frames: int) -> None:
    """ValueError unless ``durations`` has one non-negative count per symbol and sums to ``frames``."""
    if len(durations) != len(ids):
        raise ValueError(f"{uid}: {len(durations)} durations for {len(ids)} phoneme symbols")
    if any(d < 0 for d in durations) or sum(durations) != frames:
        raise ValueError(
            f"{uid}: durations must be >= 0 and sum to the utterance's {frames} frames, got sum {sum(durations)}"
        )


def item_durations(durations: Sequence[int], patch: int) -> list[int]:
    """VAE-frame durations (sum T) -> item durations (sum T // patch): each symbol ends at the item holding its
    last frame's end, rounded to the nearest item boundary."""
    if patch == 1:
        return [int(d) for d in durations]
    total = sum(durations) // patch
    out, prev, end = [], 0, 0
    for d in durations:
        end += int(d)
        e = min(total, int(round(end / patch)))
        out.append(max(e, prev) - prev)
        prev = max(e, prev)
    out[-1] += total - prev
    return out


def target_script(ids: Sequence[int], durations: Sequence[int], start: int = 0) -> tuple[Tensor, Tensor]:
    """The symbols still (partly) to be said from item ``start`` on, with their remaining items:
    (ids [S'], durations [S']) with durations summing to sum(durations) - start. A zero-length symbol exactly at
    ``start`` (e.g. the space after the last word of a prompt prefix) is kept: it is said next."""
    if not 0 <= start <= sum(durations):
        raise ValueError(f"start {start} outside the utterance's {sum(durations)} items")
    keep_ids, keep_d, end = [], [], 0
    for i, d in zip(ids, durations):
        begin, end = end, end + int(d)
        if end > start or (d == 0 and end == start):
            keep_ids.append(int(i))
            keep_d.append(end - max(begin, start))
    return torch.tensor(keep_ids, dtype=torch.long), torch.tensor(keep_d, dtype=torch.long)
