"""Synthetic speakers: each one is a seeded, reproducible recipe (engine + voice parameters + sox effects).

Engines (Debian packages): espeak-ng with generated voice variants (pitch, formants, speed, breath/voicing),
flite (kal16, awb, rms, slt), festival (kal, ked, slt HTS; many utterances per festival process), then sox
perturbations (pitch shift, tempo, EQ, gain) and resampling to the corpus rate.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = {
    "kal": "voice_kal_diphone",
    "ked": "voice_ked_diphone",
    "slt": "voice_cmu_us_slt_arctic_hts",
}
ESPEAK_DATA = Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data")


@dataclass
class Speaker:
    id: str
    engine: str  # espeak | flite | festival
    seed: int
    voice: str  # espeak: variant name; flite/festival: voice name
    espeak_variant: str = ""  # the generated espeak-ng variant file (empty for other engines)
    speed: int = 160  # espeak words per minute
    sox: list[str] = field(default_factory=list)  # sox effect chain

    def to_dict(self) -> dict:
        return asdict(self)


def engines_available() -> dict[str, bool]:
    return {
        e: shutil.which(b) is not None
        for e, b in [("espeak", "espeak-ng"), ("flite", "flite"), ("festival", "festival"), ("sox", "sox")]
    }


def _espeak_variant(rng: random.Random, name: str) -> tuple[str, int]:
    female = rng.random() < 0.5
    base = rng.randint(150, 230) if female else rng.randint(70, 130)
    rng_ = rng.randint(20, 120)
    lines = [
        f"name {name}",
        "language en-us",
        f"gender {'female' if female else 'male'}",
        f"pitch {base} {base + rng_}",
    ]
    scale = rng.uniform(1.0, 1.18) if female else rng.uniform(0.85, 1.02)
    for k in range(8):  # formant k: frequency %, strength %, width %
        freq = int(100 * scale * rng.uniform(0.94, 1.06)) if k < 6 else 100
        lines.append(f"formant {k} {freq} {rng.randint(80, 120)} {rng.randint(85, 115)}")
    lines.append("breath " + " ".join(str(rng.randint(0, 4) if k < 5 else 0) for k in range(8)))
    lines.append(f"voicing {rng.randint(70, 110)}")
    lines.append(f"flutter {rng.randint(0, 25)}")
    lines.append(f"roughness {rng.randint(0, 3)}")
    return "\n".join(lines) + "\n", rng.randint(130, 200)


def _sox_chain(rng: random.Random, strength: float) -> list[str]:
    """A mild random perturbation: pitch shift (cents), tempo, a broad EQ tilt and gain."""
    if strength <= 0:
        return []
    chain = ["pitch", str(int(rng.uniform(-300, 300) * strength)), "tempo", f"{rng.uniform(0.9, 1.12):.3f}"]
    chain += [
        "equalizer",
        str(rng.choice([300, 800, 2000, 4000])),
        "1.0q",
        f"{rng.uniform(-6, 6) * strength:.1f}",
    ]
    return chain


def make_speakers(n: int, seed: int = 0) -> list[Speaker]:
    """n reproducible speakers: about 85% espeak-ng variants, the rest flite/festival voices with distinct sox
    perturbations (the first of each plain). Same (n, seed) -> the same list."""
    if n < 1:
        raise ValueError(f"need at least one speaker, got {n}")
    base = [("flite", v) for v in FLITE_VOICES] + [("festival", v) for v in FESTIVAL_VOICES]
    out = []
    for i in range(n):
        rng = random.Random(seed * 1_000_003 + i)
        if i % 7 == 3:  # about one in seven speakers is a flite/festival voice
            engine, voice = base[(i // 7) % len(base)]
            plain = i // 7 < len(base)
            out.append(
                Speaker(
                    f"{engine}_{voice}_{i:04d}", engine, i, voice, sox=_sox_chain(rng, 0.0 if plain else 1.0)
                )
            )
        else:
            name = f"llm{seed}_{i:04d}"
            variant, speed = _espeak_variant(rng, name)
            out.append(Speaker(f"espeak_{i:04d}", "espeak", i, name, variant, speed, _sox_chain(rng, 0.3)))
    return out


def espeak_data_dir(root: Path, speakers: list[Speaker]) -> Path:
    """A private espeak-ng-data tree (symlinks to the system one) whose voices/!v holds our variants.
    Returns the folder to pass as espeak-ng --path."""
    data = root / "espeak-ng-data"
    vdir = data / "voices" / "!v"
    vdir.mkdir(parents=True, exist_ok=True)
    for e in ESPEAK_DATA.iterdir():
        if e.name != "voices" and not (data / e.name).exists():
            os.symlink(e, data / e.name)
    for e in (ESPEAK_DATA / "voices").iterdir():
        if e.name != "!v" and not (data / "voices" / e.name).exists():
            os.symlink(e, data / "voices" / e.name)
    for s in speakers:
        if s.engine == "espeak":
            p = vdir / s.voice
            if not p.exists() or p.read_text() != s.espeak_variant:
                p.write_text(s.espeak_variant)
    return root


def _run(cmd: list[str], **kw) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr.strip()[:500]}")


def synthesize_raw(spk: Speaker, items: list[tuple[str, Path]], espeak_path: Path, workdir: Path) -> None:
    """Render each (text, raw_wav_path) with the speaker's engine (no sox yet). Festival renders the whole
    list in one process."""
    if spk.engine == "espeak":
        for text, out in items:
            _run(
                [
                    "espeak-ng",
                    f"--path={espeak_path}",
                    "-v",
                    f"en-us+{spk.voice}",
                    "-s",
                    str(spk.speed),
                    "-w",
                    str(out),
                    "--",
                    text,
                ]
            )
    elif spk.engine == "flite":
        for text, out in items:
            _run(["flite", "-voice", spk.voice, "-t", text, "-o", str(out)])
    elif spk.engine == "festival":
        lines = [f"({FESTIVAL_VOICES[spk.voice]})"]
        for text, out in items:
            esc = text.replace("\\", " ").replace('"', "")
            lines.append(f'(utt.save.wave (SynthText "{esc}") "{out}" \'riff)')
        script = workdir / f"{spk.id}.{os.getpid()}.scm"
        script.write_text("\n".join(lines) + "\n")
        try:
            _run(["festival", "-b", str(script)], timeout=3600)
        finally:
            script.unlink(missing_ok=True)
    else:
        raise ValueError(f"unknown engine {spk.engine!r}")


def postprocess(spk: Speaker, raw: Path, out: Path, sample_rate: int) -> None:
    """sox: trim leading/trailing silence, speaker perturbation, resample, mono 16-bit, -1 dB peak."""
    trim = ["silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse"]
    _run(
        [
            "sox",
            str(raw),
            "-b",
            "16",
            "-c",
            "1",
            str(out),
            *trim,
            *spk.sox,
            "rate",
            "-h",
            str(sample_rate),
            "pad",
            "0.1",
            "0.1",
            "gain",
            "-n",
            "-1",
        ]
    )
