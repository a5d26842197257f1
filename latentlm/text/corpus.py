"""Offline public-domain text for the text path.

Source, in order of preference (``load_corpus`` reports which one it used):
1. ``kjv``: the King James Bible (1611, public domain) from Debian's ``bible-kjv`` + ``bible-kjv-text``
   packages, dumped with the ``bible`` command (``bible -f "Genesis 1:1-Revelation 22:21"``); verse references are
   stripped, one verse per line. ``books`` limits it to the first verses (by count) for quick runs.
2. ``librispeech``: the transcripts of a real speech folder (``*/manifest.tsv`` with a ``transcript`` column, as in
   the team's real speech folder or the repo's ``tests/data/real_speech``; LibriSpeech reference text from
   public-domain LibriVox books), one utterance per line. The folder is an argument or ``$LATENTLM_REAL_SPEECH``.
A plain text file (one document or line per row) can be given instead with ``path``.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

KJV_RANGE = "Genesis 1:1-Revelation 22:21"
_REF = re.compile(r"^\S+\d+:\d+\s+")


def kjv_lines(max_lines: int | None = None, timeout: float = 120.0) -> list[str]:
    """Verses of the KJV (one per line) via Debian's ``bible`` command; ValueError if it is not installed."""
    exe = shutil.which("bible")
    if exe is None:
        raise ValueError(
            "the KJV needs Debian's bible-kjv and bible-kjv-text packages (apt-get install bible-kjv)"
        )
    out = subprocess.run([exe, "-f", KJV_RANGE], capture_output=True, text=True, timeout=timeout, check=True)
    lines = []
    for raw in out.stdout.splitlines():
        line = _REF.sub("", raw.strip())
        if line:
            lines.append(line)
            if max_lines is not None and len(lines) >= max_lines:
                break
    if not lines:
        raise ValueError("the bible command printed no verses")
    return lines


def librispeech_lines(real_speech_dir: str | Path) -> list[str]:
    lines = []
    for manifest in sorted(Path(real_speech_dir).glob("*/manifest.tsv")):
        with manifest.open(encoding="utf-8") as f:
            rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            lines += [r["transcript"].strip() for r in rows if r.get("transcript", "").strip()]
    if not lines:
        raise ValueError(f"no transcripts found under {real_speech_dir}/*/manifest.tsv")
    return lines


def load_corpus(
    source: str = "auto", max_lines: int | None = None, path: str = "", real_speech_dir: str = ""
) -> tuple[list[str], str]:
    """-> (lines, name of the source used). source: auto | kjv | librispeech | file. ``path``: the text file;
    ``real_speech_dir``: the folder the librispeech source reads (default ``$LATENTLM_REAL_SPEECH``)."""
    if source == "file" or path:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"corpus file {p} not found")
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return lines[:max_lines] if max_lines else lines, f"file:{p}"
    if source in ("auto", "kjv"):
        try:
            return kjv_lines(max_lines), "kjv"
        except (ValueError, subprocess.SubprocessError, OSError):
            if source == "kjv":
                raise
    if source in ("auto", "librispeech"):
        rs = real_speech_dir or os.environ.get("LATENTLM_REAL_SPEECH", "")
        if not rs:
            why = "Debian's bible-kjv is not installed and " if source == "auto" else ""
            raise ValueError(
                f"{why}the librispeech text source needs a real speech folder (*/manifest.tsv with transcripts): "
                "pass real_speech_dir (TextLMConfig.real_speech) or set LATENTLM_REAL_SPEECH"
            )
        lines = librispeech_lines(rs)
        return lines[:max_lines] if max_lines else lines, "librispeech"
    raise ValueError(f"unknown corpus source {source!r}; use auto, kjv, librispeech or file")
