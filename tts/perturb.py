"""Speed perturbation: new (pseudo-)speakers from real ones, for a language model that has little real speech.

    python -m tts.perturb data/real_voices/train.jsonl --out data/real_voices_sp [--speeds 0.9 1.1]
        [--heldout data/real_voices/heldout.txt]

Each row is resampled by a factor (Ko et al. 2015, "Audio augmentation for speech recognition": Kaldi's 3-way
speed perturbation at 0.9 / 1.0 / 1.1): played ``speed`` times faster, so tempo, pitch and formants all move by
that factor, as a person with a shorter or longer vocal tract speaking faster or slower would sound. There is no
signal processing beyond resampling, so no phase-vocoder artefacts. Every perturbed copy of a speaker is a new
speaker (``SPEAKER_sp0.9``): cross-sentence pairs (tts.data.PromptTargetDataset) pair utterances perturbed alike,
and the dev speakers stay unseen (a row whose speaker, or whose source speaker, is in ``--heldout`` is refused).

Writes ``OUT/audio/<id>_sp<speed>.wav`` (16-bit PCM at the source's rate) and ``OUT/train.jsonl``: the input rows
followed by their perturbed copies (``meta.perturbed_from`` names the source row, speaker and speed). A rerun keeps
the audio already written (each file is written atomically), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from tts.data import load_audio
from tts.manifests import Utterance, read_jsonl, write_jsonl
from tts.real_voices import check_no_heldout, read_heldout

SPEEDS = (0.9, 1.1)


def speed_ratio(speed: float) -> Fraction:
    """``speed`` as a small fraction p/q (resampling from p to q samples plays the audio p/q times faster)."""
    if not 0.5 <= speed <= 2.0:
        raise ValueError(f"speed must be in [0.5, 2], got {speed}")
    return Fraction(speed).limit_denominator(100)


def perturb(wav: np.ndarray, speed: float) -> np.ndarray:
    """[T] float32 -> [~T / speed] float32: the same samples played ``speed`` times faster at the same rate."""
    r = speed_ratio(speed)
    if r == 1:
        return wav.astype(np.float32, copy=True)
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    y = AF.resample(x, orig_freq=r.numerator, new_freq=r.denominator)
    return np.clip(y.numpy(), -1.0, 1.0)


def suffix(speed: float) -> str:
    return f"_sp{speed:g}"


def perturbed_row(u: Utterance, speed: float, audio: Path, samples: int) -> Utterance:
    src = u.meta.get("perturbed_from")
    if src is not None:
        raise ValueError(f"{u.id} is already perturbed (from {src['id']}): perturb the original rows")
    return replace(
        u,
        id=u.id + suffix(speed),
        audio=str(audio.resolve()),
        speaker=u.speaker + suffix(speed),
        duration=samples / u.sample_rate,
        offset=0.0,
        source=f"{u.source}+speed",
        meta={**u.meta, "perturbed_from": {"id": u.id, "speaker": u.speaker, "speed": speed}},
    )


def perturb_manifest(
    rows: Sequence[Utterance],
    out: str | Path,
    speeds: Sequence[float] = SPEEDS,
    heldout: set[str] | None = None,
    progress: bool = True,
) -> list[Utterance]:
    """Write the perturbed audio of ``rows`` under OUT/audio and return rows + perturbed rows (in that order)."""
    if heldout:
        check_no_heldout(rows, heldout)
    for s in speeds:
        speed_ratio(s)  # refuse bad speeds before any work
        if s == 1:
            raise ValueError("speed 1 is the original rows themselves: leave it out of --speeds")
    audio_dir = Path(out) / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    new: list[Utterance] = []
    for i, u in enumerate(rows):
        wav = None
        for s in speeds:
            path = audio_dir / f"{u.id}{suffix(s)}.wav"
            if not path.exists():
                if wav is None:
                    wav, sr = load_audio(u)
                    if sr != u.sample_rate:
                        raise ValueError(f"{u.id}: manifest says {u.sample_rate} Hz, {u.audio} is {sr} Hz")
                y = perturb(wav, s)
                tmp = path.with_name(path.name + f".tmp{os.getpid()}.wav")
                sf.write(tmp, y, u.sample_rate, subtype="PCM_16")
                os.replace(tmp, path)
            new.append(perturbed_row(u, s, path, sf.info(path).frames))
        if progress and (i + 1) % 100 == 0:
            print(f"[perturb] {i + 1}/{len(rows)} rows", file=sys.stderr)
    return list(rows) + new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", help="training manifest (JSONL) of the rows to perturb")
    ap.add_argument("--out", required=True, help="output folder: OUT/audio/*.wav and OUT/train.jsonl")
    ap.add_argument("--speeds", type=float, nargs="+", default=list(SPEEDS), help="factors (0.5-2, not 1)")
    ap.add_argument("--heldout", help="held-out speaker list (tts.real_voices' heldout.txt): refused")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        rows = read_jsonl(args.manifest)
        heldout = read_heldout(args.heldout) if args.heldout else None
        out_rows = perturb_manifest(rows, args.out, args.speeds, heldout, progress=not args.no_progress)
    except (ValueError, OSError, sf.LibsndfileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = write_jsonl(out_rows, Path(args.out) / "train.jsonl")
    minutes = sum(r.duration for r in out_rows) / 60
    speakers = len({r.speaker for r in out_rows})
    print(f"{n} rows, {speakers} speakers, {minutes:.1f} min -> {Path(args.out) / 'train.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
