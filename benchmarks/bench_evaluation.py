"""Scoring speed of evaluation/: WER (Whisper base, CTranslate2 CPU int8) and SIM (resemblyzer) on real clips.

    python -m benchmarks.bench_evaluation [--n 10] [--threads 1] [--real-speech DIR]

Prints utterances per second and times real time (audio seconds / wall seconds) for each backend, plus the
ground-truth corpus WER of the clips it transcribed. Clips: the first N LibriSpeech train-clean-100 clips
of 4-10 s of a real speech folder (manifest order; default $LATENTLM_REAL_SPEECH, else the repo's
tests/data/real_speech, whose first 10 are those of the team's full folder).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _clips(n: int, real_speech: Path) -> list[tuple[Path, str]]:
    d = real_speech / "librispeech_train-clean-100"
    with open(d / "manifest.tsv", encoding="utf-8") as f:
        rows = [
            r
            for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if 4 <= float(r["duration_s"]) <= 10
        ]
    return [(d / r["file"], r["transcript"]) for r in rows[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="CTranslate2 and torch CPU threads")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument(
        "--real-speech",
        type=Path,
        default=Path(os.environ.get("LATENTLM_REAL_SPEECH") or REPO / "tests" / "data" / "real_speech"),
        help="real speech folder (librispeech_train-clean-100/manifest.tsv inside)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from evaluation.asr import WhisperASR, WhisperConfig
    from evaluation.audio import load_audio
    from evaluation.normalize import aggregate_wer, normalize_text, word_errors
    from evaluation.speaker import ResemblyzerConfig, ResemblyzerSIM

    clips = _clips(args.n, args.real_speech)
    wavs = [load_audio(p, 16000)[0] for p, _ in clips]
    audio_s = sum(len(w) for w in wavs) / 16000
    print(f"{len(clips)} clips, {audio_s:.1f} s of audio, {args.threads} thread(s), {os.cpu_count()} CPUs")

    t = time.perf_counter()
    asr = WhisperASR(WhisperConfig(cpu_threads=args.threads, beam_size=args.beam_size))
    load_s = time.perf_counter() - t
    asr.transcribe(wavs[:1], sample_rate=16000)  # warm-up
    t = time.perf_counter()
    hyps = asr.transcribe(wavs, sample_rate=16000)
    dt = time.perf_counter() - t
    wer = aggregate_wer([word_errors(normalize_text(r), normalize_text(h)) for (_, r), h in zip(clips, hyps)])
    print(
        f"WER  whisper base ({asr.compute_type}, beam {args.beam_size}): load {load_s:.2f} s; "
        f"{len(wavs) / dt:.2f} utt/s, {audio_s / dt:.1f}x real time; ground-truth corpus WER "
        f"{100 * wer['corpus_wer']:.2f}% (mean per-utt {100 * wer['mean_utterance_wer']:.2f}%)"
    )

    t = time.perf_counter()
    sim = ResemblyzerSIM(ResemblyzerConfig(threads=args.threads))
    load_s = time.perf_counter() - t
    sim.embed(wavs[:1], sample_rate=16000)  # warm-up (librosa/numba first call)
    t = time.perf_counter()
    sim.embed(wavs, sample_rate=16000)
    dt = time.perf_counter() - t
    print(
        f"SIM  resemblyzer: load {load_s:.2f} s; {len(wavs) / dt:.2f} utt/s embedded, "
        f"{audio_s / dt:.1f}x real time (a scored pair embeds output + prompt: half that rate)"
    )


if __name__ == "__main__":
    main()
