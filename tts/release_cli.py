"""The command line shared by the tools that derive a new release from a trained one (tts.grow, tts.repatch):
``RELEASE --OPTION N --out OUT``, an existing non-empty OUT refused, a refused derivation exits 2 with one line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tts.model import TTS


def derive_release(
    argv: list[str] | None, name: str, doc: str, option: str, help: str, make: Callable[[str, int, str], TTS]
) -> tuple[argparse.Namespace, TTS]:
    """Parse ``RELEASE --option N --out OUT`` and return (the arguments, ``make(RELEASE, N, OUT)``)."""
    ap = argparse.ArgumentParser(
        prog=f"python -m {name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("release", help="a tts.model.TTS release folder")
    ap.add_argument(f"--{option}", type=int, required=True, help=help)
    ap.add_argument("--out", required=True, help="folder for the new release")
    a = ap.parse_args(argv)
    if Path(a.out).exists() and any(Path(a.out).iterdir()):
        ap.error(f"{a.out} exists and is not empty: choose another --out")
    try:
        made = make(a.release, getattr(a, option), a.out)
    except ValueError as e:
        ap.exit(2, f"{name}: {e}\n")
    return a, made
