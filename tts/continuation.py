"""Continuation mode (VALL-E's continuation task, the training pairs' "prefix" mode): the prompt is the start of
the utterance whose whole text is given, the model says the rest, and the output is prompt + continuation.

    job = continuation_job(tts, text, wav, max_seconds=None, speed=1.0)  # one Row (tts/rows.py)

Prefix layout: the row's phonemes are the whole text's and its one span opens with the prompt's latents, which
already say part of the text (the floor counts them). Interleaved layout: the release's aligner
(tts/phone_hmm.py) finds where in the text the prompt stops (open-ended Viterbi), the duration predictor times
the rest in the prompt's tempo, and the script starts with the unit the prompt is still saying (its remaining
frames), as the training pairs' prefix mode cuts it (tts.script.target_script).

Dimension legend: T VAE frames, D latent dim, L samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from tts.options import TTSInputError
from tts.phone_hmm import units
from tts.rows import Row, SynthesisJob, encode_text, frame_cap, frame_floor, prompt_items, room, tempo
from tts.script import item_durations

if TYPE_CHECKING:
    from tts.model import TTS


def continuation_job(
    tts: TTS, text: str, wav: Tensor, max_seconds: float | None, speed: float
) -> SynthesisJob:
    """The prompt waveform [L] (model rate, checked) continued with the rest of ``text``."""
    if tts.cfg.interleave:
        return _interleaved(tts, text, wav, max_seconds, speed)
    cfg = tts.cfg
    ph = encode_text(tts.frontend, text, "text")
    n_prompt = prompt_items(tts, wav)
    left = room(cfg, len(ph), n_prompt, 0)
    cap = max(frame_cap(cfg, len(ph), max_seconds) - n_prompt, 1)
    if left < 1:
        raise TTSInputError(_overflow(cfg.model.trunk.max_seq_len, len(ph), n_prompt))
    cap = min(cap, left)
    prompt = tts.encode_prompt(wav)
    floor = frame_floor(cfg, len(ph), cap) - int(prompt.shape[0])  # the prompt says part of the text
    # the output starts with the prompt audio the items hold (patch > 1 drops a few tail frames)
    kept = wav[: prompt.shape[0] * cfg.patch * tts.vae.hop]
    return SynthesisJob(prompt, "", [Row(text, ph, ph, cap, max(floor, 0))], continuation_audio=kept)


def _interleaved(tts: TTS, text: str, wav: Tensor, max_seconds: float | None, speed: float) -> SynthesisJob:
    cfg = tts.cfg
    if cfg.timing != "predictor" or tts.aligner is None:
        raise TTSInputError(
            "continuation mode for an interleaved-layout model needs a release with a duration predictor and "
            "its aligner (duration/aligner.json); pass the prompt's transcript as prompt_text instead"
        )
    ph = encode_text(tts.frontend, text, "text")
    z = tts.vae.encode(wav, tts.sample_rate)  # [T, D] VAE means
    prompt = tts.encode_prompt(wav, z)  # [Tp, patch * D]
    frames = int(prompt.shape[0]) * cfg.patch  # what the items hold
    said, k = tts.aligner.align_prefix(z[:frames].cpu(), ph)
    us = units(ph, tts.frontend.vocab.symbols)
    if k >= len(us):
        raise TTSInputError("the prompt already says the whole text: nothing is left to continue")
    rate = tempo(cfg, frames, sum(not u.pause for u in us[: k + 1]))  # the phones the prompt said
    pred = tts.duration.predict(ph, rate, tempo=speed)  # frames per symbol of the whole text
    rest = pred[us[k].last] - int(said[us[k].last]) if k >= 0 else 0
    if rest > 0:  # the prompt stops inside unit k: its last symbol goes on for the predicted rest
        start, first = us[k].last, [rest]
    elif k + 1 < len(us):
        start, first = us[k + 1].first, []
    else:
        raise TTSInputError("the prompt already says the whole text: nothing is left to continue")
    script = ph[start:]
    durations = item_durations(first + pred[start + len(first) :], cfg.patch)
    left = room(cfg, len(ph), int(prompt.shape[0]), len(script))
    if sum(durations) > left:
        raise TTSInputError(_overflow(cfg.model.trunk.max_seq_len, len(ph), int(prompt.shape[0])))
    cap = min(max(frame_cap(cfg, len(script), max_seconds), 1), left)
    kept = wav[: frames * tts.vae.hop]  # the output starts with the prompt audio the items hold
    return SynthesisJob(prompt, "", [Row(text, ph, script, cap, 0, durations)], continuation_audio=kept)


def _overflow(positions: int, symbols: int, n_prompt: int) -> str:
    return (
        f"continuation: the text ({symbols} phoneme symbols) and the prompt ({n_prompt} items) do not fit the "
        f"model's {positions} positions; use a shorter prompt or text"
    )
