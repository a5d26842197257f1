"""The decode paths of one release side by side in one process: PyTorch, ONNX Runtime (float32) and ONNX Runtime
with int8 weights (``TTS.use_onnx(int8=True)``), runs alternating so machine noise hits every path alike.

    python -m benchmarks.bench_decode_paths [--checkpoint checkpoints/tts_demo] [--runs 5] [--threads 2]
        [--paths torch onnx onnx-int8]

Prints the median RTF of each path (the benchmark sentence of benchmarks/bench_tts.py, seed 0, the release's
default head) and its speed-up over the first path. On a shared machine (CPU steal) single runs swing by tens of
percent; the medians of alternated runs and their ratios are what to compare. The float32 paths give the same
audio to float rounding (tests/test_onnx_step.py); the int8 path's weights are quantised, so its speech differs
and its quality is measured separately (docs/experiments/one-step-head.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.bench_tts import PROMPT, PROMPT_TEXT, REPO, TEXT
from tts.model import TTS

PATHS = ("torch", "onnx", "onnx-int8")


def runtimes(tts: TTS, paths: list[str]) -> dict[str, tuple]:
    """path -> (trunk runtime, head runtime) to install on ``tts`` (None: eager PyTorch)."""
    head = tts.one_step[0] if tts.one_step is not None else None
    out: dict[str, tuple] = {}
    for p in paths:
        if p == "torch":
            out[p] = (None, None)
        else:
            tts.use_onnx(threads=1, int8=p == "onnx-int8")
            out[p] = (tts.lm.trunk.runtime, head.runtime if head is not None else None)
    return out


def use(tts: TTS, pair: tuple) -> None:
    tts.lm.trunk.runtime = pair[0]
    if tts.one_step is not None:
        tts.one_step[0].runtime = pair[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "tts_demo"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (ONNX Runtime runs on one)")
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    torch.set_num_threads(args.threads)
    tts = TTS.from_pretrained(args.checkpoint)
    paths = list(dict.fromkeys(args.paths))
    rts = runtimes(tts, paths)
    kw = dict(prompt_audio=PROMPT, prompt_text=PROMPT_TEXT, seed=0)
    for p in paths:  # warm-up: first calls allocate
        use(tts, rts[p])
        tts.synthesize("Warm up.", **kw)
    rtf: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(args.runs):
        for p in paths:
            use(tts, rts[p])
            t = time.perf_counter()
            res = tts.synthesize(TEXT, **kw)
            rtf[p].append((time.perf_counter() - t) / res.duration)
    base = statistics.median(rtf[paths[0]])
    print(f"{args.checkpoint}, torch threads {args.threads}, {args.runs} alternated runs per path")
    for p in paths:
        med = statistics.median(rtf[p])
        runs = ", ".join(f"{x:.3f}" for x in rtf[p])
        print(f"{p:10s} median RTF {med:.3f} ({runs}); {base / med:.2f}x {paths[0]}")


if __name__ == "__main__":
    main()
