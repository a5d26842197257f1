"""Prompt audio: the one loader behind every front end (TTS API, CLIs, batch, demo, server).

    sr, wav = read_prompt("prompt.wav", limits)            # its own rate, mono float32 [L], checked
    x = load_prompt((44100, samples), limits, 16000)        # float32 tensor [L] at the model rate
    text = PromptTranscriber()(x, 16000)                     # its transcript, when the caller gave none

Accepted: a path (any format soundfile reads), a numpy array or torch tensor (taken to be at
``limits.array_rate``), or ``(sample_rate, array)``; stereo is averaged. Checked in this order, each with a
message that says what to do: readable; a sane sample rate; not empty; between ``min_seconds`` and
``max_seconds`` (from the header or the array's length, BEFORE the samples are read or resampled); finite;
not silent (RMS). Errors are ``TTSInputError`` (a ValueError).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tts.options import TTSInputError
from vocoder_vae.audio import UnreadableAudio, check_rate_and_length, prepare, read_audio, to_mono_float

NAME = "prompt audio"


@dataclass(frozen=True)
class PromptLimits:
    min_seconds: float = 1.0
    max_seconds: float = 30.0
    silence_rms: float = 1e-3  # quieter prompts count as silent
    array_rate: int = 16000  # the rate of a bare array / tensor (the model's)


def read_prompt(prompt_audio, limits: PromptLimits) -> tuple[int, np.ndarray]:
    """path | np.ndarray | torch.Tensor | (sample_rate, array) -> (sample_rate, mono float32 [L]), validated,
    at its own rate (nothing resampled)."""
    if isinstance(prompt_audio, (str, Path)):
        path = Path(prompt_audio)
        if not path.is_file():
            raise TTSInputError(f"prompt audio file not found: {path}")
        try:
            wav, sr = read_audio(path, limits.max_seconds, name=NAME)
        except UnreadableAudio as e:
            raise TTSInputError(
                f"Could not decode the prompt audio {path} (corrupt or unsupported format): {e}. "
                "Use a WAV, FLAC, OGG or MP3 file."
            ) from None
        except ValueError as e:
            raise TTSInputError(f"{e} ({path})") from None
    elif isinstance(prompt_audio, tuple) and len(prompt_audio) == 2:
        sr, wav = prompt_audio
        if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool):
            raise TTSInputError(f"prompt tuple must be (sample_rate, samples), got sample_rate={sr!r}")
    elif isinstance(prompt_audio, (np.ndarray, torch.Tensor)):
        wav, sr = prompt_audio, limits.array_rate
    else:
        raise TTSInputError(
            "prompt_audio must be a path, an array, a tensor or (sample_rate, array); "
            f"got {type(prompt_audio).__name__}"
        )
    try:
        check_rate_and_length(1, sr, NAME, None)
        mono = to_mono_float(wav, NAME)
        seconds = check_rate_and_length(mono.size, sr, NAME, None)
    except ValueError as e:
        raise TTSInputError(str(e)) from None
    if seconds < limits.min_seconds:
        raise TTSInputError(
            f"prompt audio is too short: {seconds:.2f} s < {limits.min_seconds:g} s; "
            "give at least that much speech (3-10 s is best)"
        )
    if seconds > limits.max_seconds:
        raise TTSInputError(
            f"prompt audio is too long: {seconds:.1f} s; the limit is {limits.max_seconds:g} s. "
            "Cut it to a few seconds (3-10 s is best)"
        )
    if not np.isfinite(mono).all():
        raise TTSInputError("prompt audio contains NaN or infinite samples; give a clean clip")
    rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
    if rms < limits.silence_rms:
        raise TTSInputError(
            f"prompt audio is (nearly) silent: RMS {rms:.1e} < {limits.silence_rms:g}; give a clip with speech"
        )
    return int(sr), mono


def load_prompt(prompt_audio, limits: PromptLimits, sample_rate: int) -> Tensor:
    """``read_prompt`` resampled to ``sample_rate``: float32 tensor [L]."""
    sr, mono = read_prompt(prompt_audio, limits)
    try:
        return prepare(mono, sr, sample_rate, name=NAME, max_seconds=limits.max_seconds)
    except ValueError as e:
        raise TTSInputError(str(e)) from None


class PromptTranscriber:
    """Offline transcript of a prompt without ``prompt_text`` (evaluation/asr.py; loaded once, on first use)."""

    def __init__(self, asr: str = "whisper-base"):
        self.asr, self._model = asr, None

    def __call__(self, wav: Tensor, sample_rate: int) -> str:
        """float32 [L] at ``sample_rate`` -> the stripped transcript ("" when no speech is found)."""
        if self._model is None:
            from evaluation.asr import build_asr

            self._model = build_asr(self.asr)
        return self._model.transcribe([wav.numpy()], sample_rate=sample_rate)[0].strip()
