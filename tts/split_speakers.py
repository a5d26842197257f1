"""Cut the clips of one-clip speakers into several utterances at word gaps, so they can prompt each other.

    python -m tts.split_speakers --manifest data/corpus/train.jsonl --latents data/latents \
        --out data/corpus_split [--max-seconds 5 --min-seconds 1.5]

Zero-shot training pairs a target with ANOTHER utterance of its speaker as the prompt (tts.data). A speaker with
one clip (each real LibriSpeech speaker of the demo corpus) only ever trains in prefix mode, so the model never
learns to clone a real voice from a separate prompt, the task users bring. This tool cuts such a clip into pieces
of at most ``--max-seconds`` (the longest prompt training takes whole, ``data.max_prompt_frames``) at word gaps
found by the phoneme aligner (``LATENTS/aligner.json``, from ``python -m tts.durations``), in the middle of the
gap's frames. Each piece gets the written words of its span: only gaps where the phonemes of the words before
them are exactly the clip's phonemes up to the gap qualify (``word_gaps``).

Writes ``OUT/train.jsonl`` (the manifest with every cut clip replaced by its pieces, ids ``ID-p0``, ``ID-p1``,
...) and the pieces as 16-bit WAV under ``OUT/audio/``; the other rows keep their audio paths. Then, as for any
manifest: ``python -m tts.extract`` (only the pieces are new), ``python -m tts.durations --manifest OUT/train.jsonl``.
Rerunning rewrites the same files.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from tts.data import LatentStore, load_audio
from tts.duration_predictor import load_aligner
from tts.manifests import Utterance, read_jsonl, write_jsonl
from tts.phone_hmm import SYMBOLS, PhoneAligner

SPACE = SYMBOLS.index(" ")


def word_cuts(
    aligner: PhoneAligner, latents, ids: list[int], words_at: dict[int, int], max_frames: int, min_frames: int
) -> list[tuple[int, int]] | None:
    """Where to cut one utterance (latents [T, D], phoneme ids [N]) into pieces of at most ``max_frames``
    frames, only at the word gaps ``words_at`` ({index of a " " symbol in ids: index of the written word that
    follows it}): a list of (frame, word index) cut points, each in the middle of the gap's frames, greedy from
    the start (every piece as long as fits); a last piece shorter than ``min_frames`` joins the one before. []
    when the utterance fits whole; None when no allowed gap makes a piece short enough."""
    T = len(latents)
    if T <= max_frames:
        return []
    dur = aligner.align(latents, ids)  # frames per symbol [N], summing to T
    first = np.cumsum(dur) - dur
    gaps = sorted((int(first[i] + dur[i] // 2), w) for i, w in words_at.items())  # (cut frame, word)
    cuts: list[tuple[int, int]] = []
    start = 0
    while T - start > max_frames:
        fits = [g for g in gaps if start < g[0] <= start + max_frames]
        if not fits:
            return None
        cuts.append(fits[-1])
        start = fits[-1][0]
    if cuts and T - start < min_frames:
        cuts.pop()
    return cuts


def word_gaps(words: list[str], ids: list[int], encode_batch) -> dict[int, int]:
    """{index of a " " symbol in ids: index of the written word after it} for the gaps where the text can be
    cut: the phonemes of the first w words are exactly ids up to that space (espeak joins some words, "of the" ->
    one phoneme word, and stresses a phrase's last word differently, so not every gap qualifies)."""
    if len(words) < 2:
        return {}
    out = {}
    for w, pre in enumerate(encode_batch([" ".join(words[:w]) for w in range(1, len(words))]), start=1):
        n = len(pre)
        if n < len(ids) and ids[n] == SPACE and ids[:n] == pre:
            out[n] = w
    return out


def split_rows(
    rows: list[Utterance],
    store: LatentStore,
    aligner: PhoneAligner,
    phonemes: dict[str, list[int]],
    encode_batch,
    out_dir: Path,
    frame_rate: float,
    max_seconds: float,
    min_seconds: float,
) -> tuple[list[Utterance], Counter]:
    """The manifest with the clips of one-clip speakers cut (see the module docstring) -> (rows, counts)."""
    per_speaker = Counter(r.speaker for r in rows)
    max_frames, min_frames = round(max_seconds * frame_rate), round(min_seconds * frame_rate)
    out: list[Utterance] = []
    counts: Counter = Counter()
    for r in rows:
        if per_speaker[r.speaker] > 1 or r.id not in store or r.id not in phonemes:
            out.append(r)
            continue
        z, ids, words = store.get(r.id), phonemes[r.id], r.text.split()
        cuts = (
            []
            if len(z) <= max_frames
            else word_cuts(aligner, z, ids, word_gaps(words, ids, encode_batch), max_frames, min_frames)
        )
        if not cuts:
            counts["kept whole: fits" if cuts == [] else "kept whole: no word gap to cut at"] += 1
            out.append(r)
            continue
        wav, sr = load_audio(r)
        hop = sr / frame_rate
        bounds = [(0, 0)] + cuts + [(len(z), len(words))]
        for p, ((f0, w0), (f1, w1)) in enumerate(zip(bounds, bounds[1:])):
            end = round(f1 * hop) if p < len(cuts) else None  # the last piece keeps the tail
            piece = wav[round(f0 * hop) : end]
            path = out_dir / "audio" / f"{r.id}-p{p}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, piece, sr, subtype="PCM_16")
            out.append(
                Utterance(
                    id=f"{r.id}-p{p}",
                    audio=str(path.resolve()),
                    text=" ".join(words[w0:w1]),
                    speaker=r.speaker,
                    duration=len(piece) / sr,
                    sample_rate=sr,
                    source=r.source,
                    transcript_source=r.transcript_source,
                    meta={
                        **r.meta,
                        "piece_of": r.id,
                        "seconds": [round(f0 / frame_rate, 3), round(f1 / frame_rate, 3)],
                    },
                )
            )
        counts["cut"] += 1
        counts["pieces"] += len(bounds) - 1
    return out, counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, help="JSONL manifest")
    ap.add_argument(
        "--latents", required=True, help="latent store with aligner.json (python -m tts.durations)"
    )
    ap.add_argument("--out", required=True, help="folder for train.jsonl and audio/")
    ap.add_argument("--max-seconds", type=float, default=5.0, help="longest piece")
    ap.add_argument(
        "--min-seconds", type=float, default=1.5, help="a shorter last piece joins the one before"
    )
    ap.add_argument("--language", default="en-us")
    args = ap.parse_args(argv)
    if args.min_seconds >= args.max_seconds:
        sys.exit("split_speakers: --min-seconds must be below --max-seconds")
    lat = Path(args.latents)
    aligner = load_aligner(lat)  # the aligner tts.durations saved beside the durations
    if aligner is None:
        sys.exit(f"split_speakers: {lat}/aligner.json missing: run python -m tts.durations first")
    store = LatentStore(lat)
    if not store.frame_rate:
        sys.exit(f"split_speakers: {lat}/meta.json has no frame_rate (made by tts.extract?)")
    from tts.frontend import Frontend
    from tts.store_files import phoneme_cache

    fe = Frontend(args.language)
    rows = read_jsonl(args.manifest)
    phonemes = phoneme_cache(rows, lat, fe)  # what training reads (and refuses when stale)
    out = Path(args.out)
    new, counts = split_rows(
        rows,
        store,
        aligner,
        phonemes,
        fe.encode_batch,
        out,
        float(store.frame_rate),
        args.max_seconds,
        args.min_seconds,
    )
    write_jsonl(new, out / "train.jsonl")
    print(f"split_speakers: {len(rows)} rows -> {len(new)} in {out / 'train.jsonl'}; {dict(counts)}")


if __name__ == "__main__":
    main()
