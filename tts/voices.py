"""Saved voices: a prompt clip checked and transcribed once, kept on disk, used by name (the HTTP server's voices).

    store = VoiceStore("voices", tts)                       # loads every saved voice's metadata
    voice = store.add("alice", "alice.wav")                 # TTS.load_prompt checks it; offline ASR transcribes
    sr, audio = store.prompt("alice")                       # -> tts.synthesize(text, (sr, audio), voice.transcript)
    store.delete("alice")

One voice is one file, ``DIR/NAME.safetensors``: the prompt as ``TTS.load_prompt`` returned it (float32 [L] at
the model's rate, checked: readable, 1-30 s, not silent) under the key ``audio``, and the voice's metadata
(transcript, where it came from, sample rate, creation time) in the safetensors header. Before it is saved, the
prompt and its transcript go once through the API up to the first audio frame, so every check a request would
meet (the transcript phonemizes, prompt + transcript leave the model room to speak) has passed. Written to a
temporary file and renamed, so a crash never leaves half a voice; no pickles. Registration does the slow work
once (reading, resampling, checking, Whisper); a request reads the prompt from memory, and the model re-checks
it (cheap) and encodes it with the VAE (about 20 ms for a 3.5 s clip on one CPU thread).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, safe_open, save_file

from tts.options import SynthesisOptions

FORMAT = "latentlm-voice/1"
SUFFIX = ".safetensors"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
NAME_RULE = "1-64 letters, digits, '-' or '_', starting with a letter or digit"
TRIAL_TEXT = "Hello."  # what a new voice says, up to its first frame, to run the API's checks once


class VoiceNotFound(LookupError):
    """No saved voice has this name."""


class VoiceInputError(ValueError):
    """A voice the store refuses; ``param`` names the input at fault: "name", "audio" or "transcript"."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class VoiceExists(ValueError):
    """A voice with this name is already saved (delete it first)."""


@dataclass(frozen=True)
class Voice:
    name: str
    transcript: str  # what the prompt says (given at registration, or the offline ASR's)
    transcript_source: str  # "given" | "asr"
    sample_rate: int  # of the stored prompt (the model's rate when it was registered)
    seconds: float
    created: int  # unix time

    def to_json(self) -> dict:
        return {"object": "voice", **asdict(self)}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise VoiceInputError(f"voice name must be {NAME_RULE}; got {name!r}", "name")
    return name


class VoiceStore:
    """The voices saved in ``directory`` (created if missing). ``tts``: the loaded ``tts.model.TTS`` whose
    ``load_prompt`` checks each clip and whose ``transcribe`` (offline Whisper base) fills in a missing
    transcript. Safe to use from several threads."""

    def __init__(self, directory: str | Path, tts):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tts = tts
        self._lock = threading.Lock()
        self._asr_lock = threading.Lock()  # one transcription at a time (Whisper is loaded on first use)
        self._voices: dict[str, Voice] = {}
        self._audio: dict[str, np.ndarray] = {}  # prompts read so far (float32 [L])
        for path in sorted(self.dir.glob(f"*{SUFFIX}")):
            voice = self._read_meta(path)
            if voice is not None:
                self._voices[voice.name] = voice

    @staticmethod
    def _read_meta(path: Path) -> Voice | None:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if meta.get("format") != FORMAT or meta.get("name") != path.stem:
                return None
            return Voice(
                name=meta["name"],
                transcript=meta["transcript"],
                transcript_source=meta["transcript_source"],
                sample_rate=int(meta["sample_rate"]),
                seconds=float(meta["seconds"]),
                created=int(meta["created"]),
            )
        except Exception:  # a foreign or damaged file in the folder is not a voice
            return None

    # ------------------------------------------------------------------ reading
    def list(self) -> list[Voice]:
        with self._lock:
            return sorted(self._voices.values(), key=lambda v: v.name)

    def get(self, name: str) -> Voice:
        with self._lock:
            if name not in self._voices:
                raise VoiceNotFound(f"no voice named {name!r}; GET /v1/voices lists the saved ones")
            return self._voices[name]

    def prompt(self, name: str) -> tuple[int, np.ndarray]:
        """(sample_rate, float32 [L]) of a saved voice: the ``prompt_audio`` the TTS API takes."""
        voice = self.get(name)
        with self._lock:
            audio = self._audio.get(name)
        if audio is None:
            audio = load_file(str(self._path(name)))["audio"].numpy()
            with self._lock:
                self._audio[name] = audio
        return voice.sample_rate, audio

    # ------------------------------------------------------------------ writing
    def _path(self, name: str) -> Path:
        return self.dir / f"{name}{SUFFIX}"

    def add(self, name: str, audio, transcript: str | None = None) -> Voice:
        """Check ``audio`` (a path, array or (sample_rate, array): whatever ``TTS.load_prompt`` takes), transcribe
        it when ``transcript`` is None or blank, and save it. Raises ``VoiceInputError`` (a bad name, clip or
        transcript: the model's own message) or ``VoiceExists``."""
        check_name(name)
        with self._lock:
            if name in self._voices:
                raise VoiceExists(f"a voice named {name!r} exists; DELETE /v1/voices/{name} first")
        try:
            wav = self.tts.load_prompt(audio)  # float32 [L] at the model rate, checked
        except ValueError as e:  # TTSInputError: unreadable, too short / long, silent
            raise VoiceInputError(str(e), "audio") from e
        source = "given"
        if transcript is None or not transcript.strip():
            with self._asr_lock:
                transcript, source = self.tts.transcribe(wav), "asr"
            if not transcript:
                raise VoiceInputError(
                    "could not transcribe the clip (no speech found); send its transcript", "transcript"
                )
        transcript = " ".join(transcript.split())
        self._trial(wav, transcript)
        voice = Voice(
            name,
            transcript,
            source,
            self.tts.sample_rate,
            wav.numel() / self.tts.sample_rate,
            int(time.time()),
        )
        meta = {"format": FORMAT, **{k: str(v) for k, v in asdict(voice).items()}}
        with self._lock:
            if name in self._voices:  # registered by another request meanwhile
                raise VoiceExists(f"a voice named {name!r} exists; DELETE /v1/voices/{name} first")
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.dir)
            os.close(fd)
            try:
                save_file({"audio": wav.detach().to(torch.float32).contiguous()}, tmp, metadata=meta)
                os.replace(tmp, self._path(name))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            self._voices[name] = voice
            self._audio[name] = wav.numpy()
        return voice

    def _trial(self, wav: torch.Tensor, transcript: str) -> None:
        """The API itself, up to its first audio frame, with this prompt and transcript: every check a request
        would meet (the transcript phonemizes; prompt + transcript leave the model room to speak) runs once here,
        so a saved voice cannot fail them later."""
        chunks = self.tts.stream(
            TRIAL_TEXT, (self.tts.sample_rate, wav), prompt_text=transcript, options=SynthesisOptions(steps=1)
        )
        try:
            next(chunks)
        except ValueError as e:  # TTSInputError
            param = "transcript" if "prompt_text" in str(e) else "audio"
            raise VoiceInputError(str(e).replace("prompt_text", "transcript"), param) from e
        finally:
            chunks.close()

    def delete(self, name: str) -> Voice:
        with self._lock:
            if name not in self._voices:
                raise VoiceNotFound(f"no voice named {name!r}; GET /v1/voices lists the saved ones")
            voice = self._voices.pop(name)
            self._audio.pop(name, None)
            self._path(name).unlink(missing_ok=True)
        return voice
