"""Audio VAE speed and memory on this machine's CPU (small config, random weights: speed does not depend on them).

    python -m benchmarks.bench_vae [--recipe recipes/demo/vae_small.yaml] [--seconds 10] [--threads 1]

Prints encode / decode / streaming-decode speed as times real time (audio seconds per wall second) and the
peak resident memory of the process (resource.getrusage) plus the peak Python-side allocation (tracemalloc).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import torch

from latentlm.config import load_config
from vocoder_vae.model import AudioVAE
from vocoder_vae.train import TrainConfig


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/demo/vae_small.yaml")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk-frames", type=int, default=5, help="frames per decode_stream chunk")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(TrainConfig, args.recipe).model
    torch.manual_seed(0)
    vae = AudioVAE(cfg).eval()
    n_params = sum(p.numel() for p in vae.parameters())
    wav = 0.1 * torch.randn(int(args.seconds * cfg.sample_rate), generator=torch.Generator().manual_seed(0))
    tracemalloc.start()
    t_enc = timed(lambda: vae.encode(wav, cfg.sample_rate), args.repeats)
    z = vae.encode(wav, cfg.sample_rate)
    t_dec = timed(lambda: vae.decode(z), args.repeats)
    chunks = list(z.split(args.chunk_frames))
    t_stream = timed(lambda: list(vae.decode_stream(chunks)), args.repeats)
    first = time.perf_counter()
    next(iter(vae.decode_stream(chunks)))
    first = time.perf_counter() - first
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"recipe {args.recipe}: {n_params / 1e6:.2f}M params, {cfg.sample_rate} Hz, hop {cfg.hop} "
        f"({cfg.frame_rate:g} Hz x {cfg.bottleneck.latent_dim}), {args.seconds:g} s of audio, {args.threads} thread(s)"
    )
    print(f"encode          {args.seconds / t_enc:8.1f} x real time ({t_enc * 1000:.0f} ms)")
    print(f"decode          {args.seconds / t_dec:8.1f} x real time ({t_dec * 1000:.0f} ms)")
    print(
        f"decode_stream   {args.seconds / t_stream:8.1f} x real time ({args.chunk_frames}-frame chunks; "
        f"first chunk {first * 1000:.1f} ms = {args.chunk_frames / cfg.frame_rate * 1000:.0f} ms of audio)"
    )
    print(
        f"peak memory     {rss_mb:8.1f} MB resident (process), {py_peak / 2**20:.1f} MB traced Python allocations"
    )


if __name__ == "__main__":
    main()
