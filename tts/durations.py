"""Per-symbol durations for a whole latent store (tts/phone_hmm.py's aligner), for the interleaved layout.

    python -m tts.durations --latents data/latents --manifest data/corpus/train.jsonl [--iterations 8]

Fits the flat-start aligner on every utterance with latents and phonemes and writes ``LATENTS/durations.json``
({utterance id: frames per phoneme symbol}, summing to the utterance's frames) and ``aligner.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tts.data import LatentStore, _atomic_json
from tts.frontend import Vocab
from tts.phone_hmm import SYMBOLS, PhoneAligner, units

# --- a latent store


def align_store(
    latent_dir: str | Path,
    phonemes: dict[str, list[int]],
    symbols: Sequence[str] = SYMBOLS,
    iterations: int = 8,
    workers: int = 1,
    progress: bool = True,
    aligner: PhoneAligner | None = None,
) -> tuple[dict[str, list[int]], PhoneAligner]:
    """Fit an aligner on every utterance with both latents (tts.data.LatentStore) and phonemes, then align
    them all; with ``aligner`` given (e.g. a release's duration/aligner.json, so new data is timed as the
    release's predictor was trained) align with it instead of fitting. Returns ({utterance id: frames per
    symbol}, the aligner)."""
    store = LatentStore(latent_dir)
    uids = sorted(u for u in phonemes if u in store)
    if not uids:
        raise ValueError(
            f"durations: no utterance of the {len(phonemes)} phoneme rows has latents in {latent_dir}"
        )
    pairs = [(store.get(u), phonemes[u]) for u in uids]
    if aligner is None:
        aligner = PhoneAligner(symbols)
        aligner.fit(pairs, iterations=iterations, progress=progress, workers=workers)
    durations = aligner.align_many(pairs, workers=workers)
    return {u: d.tolist() for u, d in zip(uids, durations)}, aligner


def summarize(
    durations: dict[str, list[int]], phonemes: dict[str, list[int]], symbols: Sequence[str] = SYMBOLS
) -> dict:
    """Utterances (and how many had fewer frames than phone units), phone units and their mean frames, pause
    units and the fraction that got frames."""
    phone, pause, fallback = [], [], 0
    for uid, dur in durations.items():
        us = units(phonemes[uid], symbols)
        fallback += sum(not u.pause for u in us) > sum(dur)
        for u in us:
            (pause if u.pause else phone).append(dur[u.last])
    return {
        "utterances": len(durations),
        "fallback": fallback,
        "frames": int(sum(sum(d) for d in durations.values())),
        "phone_units": len(phone),
        "frames_per_phone": float(np.mean(phone)) if phone else 0.0,
        "pause_units": len(pause),
        "pauses_with_frames": float(np.mean([p > 0 for p in pause])) if pause else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", required=True, help="latent store folder (tts.data.LatentStore)")
    ap.add_argument("--phonemes", help="{utterance id: [phoneme ids]} JSON (default: LATENTS/phonemes.json)")
    ap.add_argument(
        "--manifest",
        action="append",
        default=[],
        help="phonemize these manifests' texts into LATENTS/phonemes.json first (the cache tts.train reads)",
    )
    ap.add_argument("--language", default="en-us", help="espeak-ng voice for --manifest (the model's)")
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--out", help="durations JSON (default: LATENTS/durations.json); aligner.json beside it")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--aligner",
        help="align with this aligner (a folder with aligner.json, e.g. RELEASE/duration) instead of fitting one",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(args.latents)
    if args.manifest:
        from tts.frontend import Frontend
        from tts.manifests import read_jsonl
        from tts.store_files import phoneme_cache

        rows = [r for m in args.manifest for r in read_jsonl(m)]
        phoneme_cache(rows, root, Frontend(args.language))
    ph_path = Path(args.phonemes or root / "phonemes.json")
    if not ph_path.exists():
        sys.exit(f"durations: no {ph_path}; pass --manifest TRAIN.jsonl to phonemize the texts")
    phonemes = json.loads(ph_path.read_text())
    out = Path(args.out or root / "durations.json")
    symbols = Vocab().symbols
    t0 = time.time()
    given = None
    if args.aligner:
        from tts.duration_predictor import load_aligner

        given = load_aligner(args.aligner)
        if given is None:
            sys.exit(f"durations: no aligner.json in {args.aligner}")
    durations, aligner = align_store(root, phonemes, symbols, args.iterations, args.workers, aligner=given)
    _atomic_json(durations, out)
    _atomic_json(aligner.to_dict(), out.with_name("aligner.json"))
    s = summarize(durations, phonemes, symbols)
    print(
        f"durations: {s['utterances']} utterances ({len(phonemes) - s['utterances']} without latents skipped), "
        f"{s['frames']} frames; {s['phone_units']} phone units, {s['frames_per_phone']:.2f} frames each; "
        f"{s['pause_units']} pause units, {100 * s['pauses_with_frames']:.1f}% with frames; "
        f"{s['fallback']} utterances had fewer frames than phone units"
    )
    print(
        "durations: log-likelihood per frame, flat start then each iteration: "
        + " ".join(f"{h:.3f}" for h in aligner.history)
    )
    print(f"durations: wrote {out} and {out.with_name('aligner.json')} in {time.time() - t0:.0f} s")
    if any(b < a - 1e-6 for a, b in zip(aligner.history, aligner.history[1:])):
        sys.exit("durations: the log-likelihood fell during training (a bug)")


if __name__ == "__main__":
    main()
