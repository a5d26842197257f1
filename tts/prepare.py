"""A text and a prompt -> the SynthesisJob the decoder runs (tts/rows.py), every input checked before any work.

    job = prepare_job(tts, "Hello there. Good day!", "prompt.wav", prompt_text=None, max_seconds=None)

Order: the text is not empty; ``max_seconds`` and ``speed`` are valid (tts/options.py) and speed has a duration
predictor to divide; the prompt loads (tts/prompt.py) and leaves room in the positions; without ``prompt_text``
the prompt is transcribed (``TTS.transcribe``); the text is split into sentences, each of which becomes one row,
or several where it would not fit beside the prompt (split at word boundaries, tts/positions.py); with a
duration predictor (timing "predictor") every row's durations are predicted in the prompt's tempo now.
``continuation=True`` hands over to tts/continuation.py after the prompt checks.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from tts.continuation import continuation_job
from tts.duration_predictor import phone_units
from tts.layout import SPACE_ID
from tts.options import SynthesisOptions, TTSInputError
from tts.positions import MIN_ROOM_SECONDS, split_in_two
from tts.rows import (
    Row,
    SynthesisJob,
    check_prompt_room,
    encode_text,
    frame_cap,
    frame_floor,
    prompt_items,
    room,
    tempo,
)
from tts.script import item_durations

if TYPE_CHECKING:
    from tts.model import TTS


def prepare_job(
    tts: TTS, text, prompt_audio, prompt_text, max_seconds, continuation: bool = False, speed: float = 1.0
) -> SynthesisJob:
    t0 = time.perf_counter()
    if not isinstance(text, str) or not text.strip():
        raise TTSInputError("text is empty: nothing to synthesize")
    opts = SynthesisOptions(max_seconds=max_seconds, speed=speed)  # NaN, inf, strings: refused here
    max_seconds, speed = opts.max_seconds, opts.speed
    cfg = tts.cfg
    if speed != 1.0 and cfg.timing != "predictor":
        raise TTSInputError("speed needs a release timed by a duration predictor (timing: predictor)")
    wav = tts.load_prompt(prompt_audio)
    check_prompt_room(tts, wav, 0)  # the audio alone (before transcribing or encoding it)
    timings = {}
    if continuation:
        if prompt_text is not None:
            raise TTSInputError("continuation mode takes the whole utterance as text; leave prompt_text None")
        job = continuation_job(tts, text, wav, max_seconds, speed)
        job.timings["prepare_s"] = time.perf_counter() - t0
        return job
    if prompt_text is None:
        t1 = time.perf_counter()
        prompt_text = tts.transcribe(wav)
        timings["asr_s"] = time.perf_counter() - t1
        if not prompt_text:
            raise TTSInputError("could not transcribe the prompt audio (no speech found); pass prompt_text")
    elif not isinstance(prompt_text, str) or not prompt_text.strip():
        raise TTSInputError("prompt_text is empty; pass None to transcribe the prompt automatically")
    sentences = tts.frontend.split_sentences(text, cfg.sentence_max_chars)
    prompt_ph = encode_text(tts.frontend, prompt_text, "prompt_text")
    check_prompt_room(tts, wav, len(prompt_ph))
    n_prompt = prompt_items(tts, wav)
    rate = None
    if cfg.interleave and cfg.timing == "predictor":
        rate = tempo(cfg, n_prompt * cfg.patch, phone_units(prompt_ph))
    rows = [
        r for s in sentences for r in sentence_rows(tts, s, prompt_ph, n_prompt, rate, max_seconds, speed)
    ]
    prompt = tts.encode_prompt(wav)
    timings["prepare_s"] = time.perf_counter() - t0
    return SynthesisJob(prompt, prompt_text, rows, timings)


def sentence_rows(
    tts: TTS, sentence: str, prompt_ph: list[int], n_prompt: int, rate, max_seconds, speed
) -> list[Row]:
    """One sentence -> the rows that fit the positions (tts/positions.py): split in two at a word boundary,
    repeatedly, where it does not. ``rate``: the prompt's tempo for the duration predictor (None: the LM head
    times the rows)."""
    cfg = tts.cfg
    ph = encode_text(tts.frontend, sentence, "text")
    cap = frame_cap(cfg, len(ph), max_seconds)
    durs = None
    if rate is not None:  # timing "predictor": the items are known now
        durs = item_durations(tts.duration.predict(ph, rate, tempo=speed), cfg.patch)
    left = room(cfg, len(prompt_ph) + 1 + len(ph), n_prompt, len(ph))
    need = (
        sum(durs) if durs is not None else math.ceil(len(ph) * MIN_ROOM_SECONDS * cfg.frame_rate / cfg.patch)
    )
    if need <= left:
        cap = min(cap, left)  # generation past ``left`` items would fail: it never reached there before
        return [Row(sentence, prompt_ph + [SPACE_ID] + ph, ph, cap, frame_floor(cfg, len(ph), cap), durs)]
    # a single written word can be many spoken ones (a 400-digit number): split what is said
    halves = split_in_two(sentence) or split_in_two(tts.frontend.normalize(sentence))
    if halves is None:
        raise TTSInputError(
            f"the word {sentence!r} does not fit beside this prompt in the model's "
            f"{cfg.model.trunk.max_seq_len} positions (it needs {need} frames, {max(left, 0)} are left); "
            "use a shorter prompt, or a speed closer to 1"
        )
    return [r for h in halves for r in sentence_rows(tts, h, prompt_ph, n_prompt, rate, max_seconds, speed)]
