"""Fitting a job into the model's positions (``TransformerConfig.max_seq_len``; 2048 for tts_demo).

One generated row holds (tts/layout.py):

    <bos> phonemes(prompt + " " + sentence) <bo_audio> prompt items [ph_1] items (ph_k items)... <eo_audio>

so a long prompt, a long prompt transcript, a long sentence or a slow ``speed`` can overflow the positions even
inside the documented limits (30 s prompts, 250-character sentences, speed 0.5). ``tts.prepare`` counts the
positions of every sentence BEFORE any audio is encoded or generated: a sentence that does not fit is split in
two at the word boundary nearest its middle (repeatedly); where even one word does not fit beside the prompt the
job is refused, with the numbers and what to change. For LM-timed releases a sentence's length cap is lowered
to the positions left (generation that reached past them would have failed), but a sentence is split rather
than given less than ``MIN_ROOM_SECONDS`` per phoneme symbol.
"""

from __future__ import annotations

import re

MIN_ROOM_SECONDS = 0.08  # speech time a phoneme symbol needs at least (natural speech: ~2 frames at 25 Hz)


def items_left(max_seq_len: int, prefix_tokens: int, prompt_items: int, script: int, interleave: bool) -> int:
    """Items (latent positions) a row can still generate. prefix_tokens: phonemes of prompt + " " + sentence;
    script: the sentence's phoneme symbols (the interleaved layout writes each before its frames)."""
    used = 1 + prefix_tokens + 1 + prompt_items  # <bos> phonemes <bo_audio> prompt
    used += script if interleave else 0  # ph_1 ... ph_S between the generated items
    used += 1  # <eo_audio>
    return max_seq_len - used


def split_in_two(sentence: str) -> list[str] | None:
    """Two halves of a sentence at the word boundary nearest its middle (after , ; : where one is near); None
    for a single word."""
    spaces = [m.start() for m in re.finditer(r" ", sentence)]
    if not spaces:
        return None
    mid = len(sentence) / 2
    marks = [i for i in spaces if sentence[i - 1] in ",;:" and abs(i - mid) < len(sentence) / 4]
    cut = min(marks or spaces, key=lambda i: abs(i - mid))
    return [sentence[:cut].strip(), sentence[cut + 1 :].strip()]


def prompt_too_long(
    max_seq_len: int, prompt_seconds: float, prompt_symbols: int, prompt_items: int, items_per_second: float
) -> str:
    """The refusal when the prompt (audio + transcript) leaves no room for even one word."""
    per_second = items_per_second + prompt_symbols / max(prompt_seconds, 1e-9)  # positions per prompt second
    fits = max(0.0, (max_seq_len * 0.6) / per_second)  # leaves ~40% of the positions to the text
    return (
        f"the prompt ({prompt_seconds:.1f} s of audio = {prompt_items} positions, and a transcript of "
        f"{prompt_symbols} phoneme symbols) leaves no room for the text in the model's {max_seq_len} positions; "
        f"use a shorter prompt (about {fits:.0f} s or less) with its own transcript"
    )
