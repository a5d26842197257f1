"""The decoder's rows: what one synthesis job asks the model to say, and how long each row may run.

    job = prepare_job(tts, "Hello there. Good day!", "prompt.wav", None, max_seconds=None)  # tts/prepare.py
    for row in job.rows:  # one per sentence (or part of one): built once, read by synthesize/stream/batch
        row.phonemes, row.script, row.cap, row.floor, row.durations

Length rules (all in items of ``patch`` VAE frames): the cap is ``ceil(phonemes * max_frames_per_phoneme +
min_cap_seconds * frame_rate)`` frames, at most ``max_output_seconds`` (and the call's ``max_seconds``); the floor
(``<eo_audio>`` refused before it) is ``lm_timing.min_frames_per_phoneme`` frames per phoneme; a row must fit the trunk's
positions beside the prompt (tts/positions.py). A duration predictor is given the prompt's tempo in frames per
phone unit, clamped to ``PHONE_SECONDS``.

Dimension legend: Tp prompt items, D item dim (patch x the VAE's latent dim), L samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from tts.config import TTSConfig
from tts.frontend import Frontend
from tts.options import TTSInputError
from tts.positions import MIN_ROOM_SECONDS, items_left, prompt_too_long

if TYPE_CHECKING:
    from tts.model import TTS

# the prompt tempo a duration predictor is given, in seconds per phone unit, is clamped to this range (the
# training clips: 0.06-0.21 s), so a transcript that does not fit its clip cannot ask for minutes of audio
PHONE_SECONDS = (0.05, 0.24)


@dataclass(frozen=True)
class Row:
    """One row of a decode: a sentence said after the prompt."""

    sentence: str
    phonemes: list[int]  # the prefix: prompt phonemes + " " + sentence phonemes (continuation: the text's)
    script: list[int]  # what the row says: the sentence's phonemes (interleaved layout: forced in order)
    cap: int  # generated items at most
    floor: int  # generated items before <eo_audio> is accepted
    durations: list[int] | None = None  # items per script symbol, forced exactly (timing "predictor")


@dataclass
class SynthesisJob:
    """One call's text and prompt, prepared: the prompt's latents and the rows that follow it."""

    prompt: Tensor  # [Tp, D] normalised prompt latents
    prompt_text: str
    rows: list[Row]
    timings: dict = field(default_factory=dict)
    continuation_audio: np.ndarray | None = None  # continuation mode: the prompt audio that starts the output

    @property
    def sentences(self) -> list[str]:
        return [r.sentence for r in self.rows]


def encode_text(frontend: Frontend, text: str, what: str) -> list[int]:
    """Phoneme ids of ``text``; a text the front end refuses is a TTSInputError naming ``what`` it was."""
    try:
        return frontend.encode(text)
    except ValueError as e:
        raise TTSInputError(f"{what}: {e}") from e


def frame_cap(cfg: TTSConfig, n_phonemes: int, max_seconds: float | None = None) -> int:
    """Items a row of ``n_phonemes`` may generate (the length cap of the module docstring)."""
    cap = math.ceil(n_phonemes * cfg.max_frames_per_phoneme + cfg.min_cap_seconds * cfg.frame_rate)
    limit = cfg.max_output_seconds if max_seconds is None else min(max_seconds, cfg.max_output_seconds)
    if limit <= 0:
        raise TTSInputError(f"max_seconds must be positive, got {max_seconds}")
    return max(1, math.ceil(min(cap, int(limit * cfg.frame_rate)) / cfg.patch))  # in items of patch frames


def frame_floor(cfg: TTSConfig, n_phonemes: int, cap: int) -> int:
    """Items generated before ``<eo_audio>`` is accepted: lm_timing.min_frames_per_phoneme frames per phoneme, at most
    cap (items of ``patch`` frames)."""
    return min(cap, int(n_phonemes * cfg.lm_timing.min_frames_per_phoneme / cfg.patch))


def tempo(cfg: TTSConfig, frames: int, phones: int) -> float:
    """A prompt's VAE frames per phone unit (tts.duration_predictor.speaking_rate), clamped to ``PHONE_SECONDS``."""
    fps = cfg.frame_rate
    return min(max(frames / max(1, phones), PHONE_SECONDS[0] * fps), PHONE_SECONDS[1] * fps)


def prompt_items(tts: TTS, wav: Tensor) -> int:
    """Items the prompt waveform [L] (model rate) becomes, without encoding it (ceil(L / hop) frames // patch)."""
    return math.ceil(wav.numel() / tts.vae.hop) // tts.cfg.patch


def room(cfg: TTSConfig, prefix_tokens: int, n_prompt: int, script: int) -> int:
    """tts.positions.items_left for this release: items a row may still generate."""
    return items_left(cfg.model.trunk.max_seq_len, prefix_tokens, n_prompt, script, cfg.interleave)


def check_prompt_room(tts: TTS, wav: Tensor, prompt_symbols: int) -> None:
    """Refuse a prompt that leaves no room for even a short word (before any transcription or encoding)."""
    cfg, n = tts.cfg, prompt_items(tts, wav)
    if room(cfg, prompt_symbols + 1 + 8, n, 8) < 8 * MIN_ROOM_SECONDS * cfg.frame_rate:
        raise TTSInputError(
            prompt_too_long(
                cfg.model.trunk.max_seq_len,
                wav.numel() / tts.sample_rate,
                prompt_symbols,
                n,
                cfg.frame_rate / cfg.patch,
            )
        )
