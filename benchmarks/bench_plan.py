"""Decoding along a forced plan against deciding every step by the grammar (latentlm/decoding.py
``PLAN_FORCED_SCRIPTS``), on the same release in one process, runs alternating so machine noise hits both alike.

    python -m benchmarks.bench_plan [--checkpoint checkpoints/tts_demo] [--backend torch|onnx] [--runs 6]
        [--threads 1]

Prints the median RTF of each (the benchmark sentence of benchmarks/bench_tts.py, seed 0, the release's default
head) and their ratio. Both paths give the same audio (tests/test_tts_interleave.py); only the time differs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import latentlm.decoding as decoding
from benchmarks.bench_tts import PROMPT, PROMPT_TEXT, REPO, TEXT
from tts.model import TTS


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "tts_demo"))
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tts = TTS.from_pretrained(args.checkpoint, backend=args.backend)
    kw = dict(prompt_audio=PROMPT, prompt_text=PROMPT_TEXT, seed=0)
    tts.synthesize(TEXT, **kw)  # warm-up (and the ONNX export)
    rtf: dict[bool, list[float]] = {False: [], True: []}
    was = decoding.PLAN_FORCED_SCRIPTS
    try:
        for _ in range(args.runs):
            for plan in (False, True):
                decoding.PLAN_FORCED_SCRIPTS = plan
                t = time.perf_counter()
                res = tts.synthesize(TEXT, **kw)
                rtf[plan].append((time.perf_counter() - t) / res.speech_seconds)
    finally:
        decoding.PLAN_FORCED_SCRIPTS = was
    grammar, plan = statistics.median(rtf[False]), statistics.median(rtf[True])
    print(f"{args.checkpoint}, backend {args.backend}, {args.threads} thread(s), {args.runs} runs each")
    print(f"grammar every step: median RTF {grammar:.3f} ({', '.join(f'{x:.3f}' for x in rtf[False])})")
    print(f"forced plan:        median RTF {plan:.3f} ({', '.join(f'{x:.3f}' for x in rtf[True])})")
    print(f"speed-up: {grammar / plan:.2f}x")


if __name__ == "__main__":
    main()
