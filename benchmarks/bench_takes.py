"""What best-of-N synthesis costs: RTF with ``takes`` 1, 2, 4, ... on one release, runs alternated in one process.

    python -m benchmarks.bench_takes [--checkpoint RELEASE_WITH_VERIFIER] [--takes 1 2 4] [--runs 3] [--threads 2]

Every take of a sentence is one more row of the same decode (a batch), so on a CPU whose decode steps are bound by
per-call overhead N takes cost far less than N times one. Prints the median RTF of each setting (the benchmark
sentence of benchmarks/bench_tts.py, seed 0, the release's default head, PyTorch) and its cost against one take.
The release needs its phoneme aligner (``duration/aligner.json``, which judges the takes) for takes > 1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.bench_tts import PROMPT, PROMPT_TEXT, REPO, TEXT
from tts.model import TTS


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "tts_demo"))
    ap.add_argument("--takes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.runs < 1 or min(args.takes) < 1:
        raise SystemExit("--runs and --takes must be >= 1")
    torch.set_num_threads(args.threads)
    tts = TTS.from_pretrained(args.checkpoint)
    if max(args.takes) > 1 and tts.aligner is None:
        raise SystemExit(f"{args.checkpoint} has no duration/aligner.json: takes > 1 cannot be measured")
    tts.synthesize(TEXT, PROMPT, prompt_text=PROMPT_TEXT, seed=0)  # warm-up
    rtf: dict[int, list[float]] = {n: [] for n in args.takes}
    for _ in range(args.runs):
        for n in args.takes:
            t0 = time.perf_counter()
            res = tts.synthesize(TEXT, PROMPT, prompt_text=PROMPT_TEXT, seed=0, takes=n)
            rtf[n].append((time.perf_counter() - t0) / res.speech_seconds)
    base = statistics.median(rtf[args.takes[0]])
    print(f"{args.checkpoint}, {args.threads} threads, {args.runs} runs each, alternated")
    print("| takes | median RTF | cost against takes " f"{args.takes[0]} |\n|---|---|---|")
    for n in args.takes:
        m = statistics.median(rtf[n])
        print(f"| {n} | {m:.3f} | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
