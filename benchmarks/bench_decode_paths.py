"""The decode paths of one release side by side in one process: PyTorch, ONNX Runtime (float32) and ONNX Runtime
with int8 weights (``TTS.use_onnx(int8=True)``), runs alternating so machine noise hits every path alike.

    python -m benchmarks.bench_decode_paths [--checkpoint checkpoints/tts_demo [OTHER ...]] [--runs 5]
        [--threads 2] [--paths torch onnx onnx-int8] [--bridge both|on|off]

Prints the median RTF of each path (the benchmark sentence of benchmarks/bench_tts.py, seed 0, the release's
default head) and its speed-up over the first path; with several releases (e.g. a ``tts.patch=2`` one beside the
shipped one), every path of each, all alternated, against the first release's first path. On a shared machine (CPU steal) single runs swing by tens of
percent; the medians of alternated runs and their ratios are what to compare. The float32 paths give the same
audio to float rounding (tests/test_onnx_step.py); the int8 path's weights are quantised, so its speech differs
and its quality is measured separately (docs/experiments/one-step-head.md). A release with a step bridge
(latentlm/bridge.py) runs every path with it and without it (``--bridge both``, the default): a bridged
synthesis makes half the trunk calls and is a different (measured) decode, not the same audio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.bench_tts import PROMPT, PROMPT_TEXT, REPO, TEXT, decode_runtimes, install_runtimes
from tts.model import TTS

PATHS = ("torch", "onnx", "onnx-int8")


def runtimes(tts: TTS, paths: list[str]) -> dict[str, tuple]:
    """path -> (trunk runtime, head runtime, bridge runtime) to install on ``tts`` (None: eager PyTorch)."""
    out: dict[str, tuple] = {}
    for p in paths:
        if p == "torch":
            out[p] = (None, None, None)
        else:
            tts.use_onnx(threads=1, int8=p == "onnx-int8")
            out[p] = decode_runtimes(tts)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--checkpoint",
        nargs="+",
        default=[str(REPO / "checkpoints" / "tts_demo")],
        help="one release, or several to compare (e.g. a tts.patch=2 one beside the shipped one): every path of each",
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (ONNX Runtime runs on one)")
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    ap.add_argument("--bridge", choices=["both", "on", "off"], default="both",
                    help="releases with a step bridge: time every path with it, without it, or both")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    torch.set_num_threads(args.threads)
    paths = list(dict.fromkeys(args.paths))
    releases = {c: TTS.from_pretrained(c) for c in dict.fromkeys(args.checkpoint)}
    rts = {c: runtimes(tts, paths) for c, tts in releases.items()}
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.bridge]
    cases = [
        (c, p, b) for c in releases for p in paths for b in (modes if releases[c].bridge is not None else [False])
    ]
    kw = dict(prompt_audio=PROMPT, prompt_text=PROMPT_TEXT, seed=0)
    for c, p, b in cases:  # warm-up: first calls allocate
        install_runtimes(releases[c], rts[c][p])
        releases[c].synthesize("Warm up.", bridge=b, **kw)
    rtf: dict[tuple, list[float]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for c, p, b in cases:
            install_runtimes(releases[c], rts[c][p])
            t = time.perf_counter()
            res = releases[c].synthesize(TEXT, bridge=b, **kw)
            rtf[c, p, b].append((time.perf_counter() - t) / res.speech_seconds)
    base = statistics.median(rtf[cases[0]])
    print(f"torch threads {args.threads}, {args.runs} alternated runs per path; ratios against the first row")
    for c, p, b in cases:
        med = statistics.median(rtf[c, p, b])
        runs = ", ".join(f"{x:.3f}" for x in rtf[c, p, b])
        name = f"{c} ({releases[c].cfg.patch} frame(s) per item)" if len(releases) > 1 else c
        path = p + ("+bridge" if b else "")
        print(f"{name} {path:17s} median RTF {med:.3f} ({runs}); {base / med:.2f}x")


if __name__ == "__main__":
    main()
