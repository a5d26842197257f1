"""Where the CLIs may write audio: every output path is checked before any synthesis.

    out = check_out_file("out.wav")                     # tts.synthesize --out
    paths = plan_outputs(jobs, Path("outs"))            # tts.batch: {job id: path inside outs/}

``tts.synthesize``: ``--out`` must name a file (not a folder) with an extension soundfile writes (WAV, FLAC, OGG);
its folder is created up front, so a path that cannot be made fails before the model runs.

``tts.batch``: every job's output (``out``, default ``ID.wav``) must stay inside ``--out-dir`` (no absolute paths,
no ``..`` that leaves it, no symlink out of it), end in ``.wav``, not be one of the batch's own files
(``summary.json``, ``failures.jsonl``, ``info.jsonl``) and not be shared with another job. The whole list is
checked first and every problem is reported at once; nothing is synthesized while one remains.
"""

from __future__ import annotations

import os
from pathlib import Path

import soundfile as sf

WRITABLE = (".wav", ".flac", ".ogg")  # what sf.write writes from a float array on every libsndfile build
BATCH_FILES = ("summary.json", "failures.jsonl", "info.jsonl")  # tts.batch's own files in --out-dir


def check_out_file(out: str | Path) -> Path:
    """A CLI's ``--out`` file: a supported extension, not a folder, its folder created now. ValueError else."""
    p = Path(out)
    if str(out).endswith(("/", os.sep)) or p.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {p / 'out.wav'}")
    ext = p.suffix.lower()
    if ext not in WRITABLE or ext[1:].upper() not in sf.available_formats():
        raise ValueError(
            f"--out {out}: unsupported extension {p.suffix or '(none)'!r}; use one of {', '.join(WRITABLE)}"
        )
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot create its folder {p.parent} ({e.strerror})") from None
    if not os.access(p.parent, os.W_OK):
        raise ValueError(f"--out {out}: the folder {p.parent} is not writable")
    return p


def plan_outputs(jobs: list[dict], out_dir: Path) -> dict[str, Path]:
    """{job id: output path} for a batch, every path checked (module docstring). ValueError listing every bad
    job (id, its ``out`` and what to change) when any is."""
    root = out_dir.resolve()
    problems: list[str] = []
    paths: dict[str, Path] = {}
    owner: dict[Path, str] = {}
    for j in jobs:
        jid = j["id"]
        rel = j.get("out") or f"{jid}.wav"
        where = f"job {jid!r} (out {rel!r})" if j.get("out") else f"job {jid!r} (out = id + .wav = {rel!r})"
        if not isinstance(rel, str):
            problems.append(f"{where}: out must be a string path relative to --out-dir")
            continue
        if Path(rel).is_absolute():
            problems.append(f"{where}: an absolute path; give a path relative to --out-dir")
            continue
        full = (root / rel).resolve()
        if root not in full.parents:
            problems.append(f"{where}: leaves --out-dir {out_dir}; outputs must stay inside it (no '..')")
        elif full.parent == root and full.name in BATCH_FILES:
            problems.append(f"{where}: {full.name} is the batch's own file; choose another name")
        elif full.suffix.lower() != ".wav":
            problems.append(f"{where}: outputs are WAV files; end the name in .wav")
        elif full in owner:
            problems.append(f"{where}: the same file as job {owner[full]!r}; every job needs its own out")
        elif full.is_dir():
            problems.append(f"{where}: is a folder; give a file name")
        else:
            owner[full] = jid
            paths[jid] = full
    if problems:
        raise ValueError(
            f"{len(problems)} job(s) have a bad output path (nothing was synthesized):\n  "
            + "\n  ".join(problems)
        )
    return paths
