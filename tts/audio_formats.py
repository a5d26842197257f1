"""Audio response formats of the HTTP server: float chunks as they are generated -> bytes as they can be sent.

    check_format("mp3")                                     # FormatError (a ValueError) when it cannot be served
    for data in encode_stream(tts.stream(...), "wav", tts.sample_rate): send(data)

| format | media type | streamed | needs |
|---|---|---|---|
| ``wav`` | audio/wav | yes: 16-bit PCM after a header whose sizes say "unknown" (0xFFFFFFFF), as OpenAI's streamed WAV | - |
| ``pcm`` | audio/pcm | yes: raw 16-bit signed little-endian mono at 24 kHz as OpenAI's (``StreamResampler``) | - |
| ``flac`` | audio/flac | no: encoded by soundfile once the audio is complete | - |
| ``mp3`` | audio/mpeg | yes, through an ``ffmpeg`` pipe | ffmpeg |
| ``opus`` | audio/ogg | yes, Ogg Opus through an ``ffmpeg`` pipe | ffmpeg |

``encode_stream`` pulls the first audio chunk before it yields anything, so a request the model refuses (bad text,
options) fails before any byte (the HTTP status) is sent.
"""

from __future__ import annotations

import io
import itertools
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator

import numpy as np
import soundfile as sf

from tts.resample import StreamResampler

MEDIA_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
}
FFMPEG_ARGS = {  # output options per format that ffmpeg encodes
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "32k", "-page_duration", "20000", "-f", "ogg"],
}
UNKNOWN_SIZE = 0xFFFFFFFF  # RIFF / data chunk sizes of a streamed WAV
PCM_RATE = 24000  # OpenAI's raw pcm is 24 kHz: programs play it at that rate, so it is resampled to it


class FormatError(ValueError):
    """A response format this server cannot produce (unknown, or its encoder is not installed)."""


def check_format(fmt: str) -> str:
    if fmt not in MEDIA_TYPES:
        supported = ", ".join(MEDIA_TYPES)
        raise FormatError(f"response_format {fmt!r} is not supported; use one of: {supported}")
    if fmt in FFMPEG_ARGS and shutil.which("ffmpeg") is None:
        raise FormatError(
            f"response_format {fmt!r} needs ffmpeg, which is not installed on this server; "
            "use wav, flac or pcm (or install ffmpeg)"
        )
    return fmt


def output_rate(fmt: str, sample_rate: int) -> int:
    """The sample rate of ``fmt``'s audio for a model at ``sample_rate``."""
    return PCM_RATE if fmt == "pcm" else sample_rate


def to_pcm16(audio: np.ndarray) -> bytes:
    """float [-1, 1] [L] -> 16-bit signed little-endian bytes (clipped)."""
    x = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return (x * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int = UNKNOWN_SIZE) -> bytes:
    """A mono 16-bit PCM WAV header; the default sizes say "read to the end" (a streamed file)."""
    riff = UNKNOWN_SIZE if data_bytes == UNKNOWN_SIZE else 36 + data_bytes
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack("<I", data_bytes)
    )


class _FFmpegPipe:
    """16-bit PCM in, an encoded stream out; a thread drains ffmpeg's stdout so neither side blocks."""

    def __init__(self, fmt: str, sample_rate: int):
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-probesize", "32", "-analyzeduration", "0"]
        cmd += ["-f", "s16le", "-ar", str(sample_rate)]
        cmd += ["-ac", "1", "-i", "pipe:0", *FFMPEG_ARGS[fmt], "-flush_packets", "1", "pipe:1"]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._out: list[bytes] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while chunk := self.proc.stdout.read1(65536):
            with self._lock:
                self._out.append(chunk)

    def _take(self) -> bytes:
        with self._lock:
            data, self._out = b"".join(self._out), []
        return data

    def feed(self, pcm: bytes) -> bytes:
        self.proc.stdin.write(pcm)
        self.proc.stdin.flush()
        return self._take()

    def finish(self) -> bytes:
        self.proc.stdin.close()
        self._reader.join()
        err = self.proc.stderr.read().decode(errors="replace").strip()
        if self.proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed: {err}")
        return self._take()

    def kill(self) -> None:
        """Stop ffmpeg (if it still runs) and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:  # stdin of a killed process: the buffered bytes cannot be flushed
                pass


def encode_stream(chunks: Iterator[np.ndarray], fmt: str, sample_rate: int) -> Iterator[bytes]:
    """float32 audio chunks -> the bytes of one ``fmt`` file, as early as the format allows (non-empty pieces).
    Closing this generator closes ``chunks`` (and stops ffmpeg)."""
    check_format(fmt)
    chunks = iter(chunks)
    pipe = _FFmpegPipe(fmt, sample_rate) if fmt in FFMPEG_ARGS else None  # starts while the model prepares
    try:
        first = next(chunks, None)  # the model's checks run here, before any byte
        audio = [] if first is None else [first]
        if fmt == "wav":
            yield wav_header(sample_rate) + (to_pcm16(first) if first is not None else b"")
            for c in chunks:
                if c.size:
                    yield to_pcm16(c)
        elif fmt == "pcm":
            rs = StreamResampler(sample_rate, PCM_RATE)
            for c in itertools.chain(audio, chunks):
                if (y := rs.feed(c)).size:
                    yield to_pcm16(y)
            if (y := rs.flush()).size:
                yield to_pcm16(y)
        elif fmt == "flac":
            audio += list(chunks)
            buf = io.BytesIO()
            sf.write(
                buf, np.concatenate(audio) if audio else np.zeros(0, np.float32), sample_rate, format="FLAC"
            )
            yield buf.getvalue()
        else:
            for c in audio:
                if data := pipe.feed(to_pcm16(c)):
                    yield data
            for c in chunks:
                if data := pipe.feed(to_pcm16(c)):
                    yield data
            if data := pipe.finish():
                yield data
    finally:
        if pipe is not None:
            pipe.kill()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
