"""Speed of the causal Transformer trunk: training throughput and KV-cache decoding vs full recomputation.

    python -m benchmarks.bench_transformer                      # CPU, 2 threads, dim 256 / 4 layers / 4 heads
    python -m benchmarks.bench_transformer --device cuda --amp  # GPU, bf16 autocast

Prints training tokens/s (forward + backward + AdamW step on a [batch, seq] batch of random embeddings) and,
for several context lengths L, the latency of one incremental decoding step with the KV cache (1 new token
attending to L cached ones) versus recomputing the whole L+1 prefix without a cache, plus the speed-up.
On a GPU, batch-1 decoding of a small model is bound by kernel launches: both columns come out about equal.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from latentlm.transformer import KVCache, Transformer, TransformerConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds per call of fn() over `repeats` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_training(model, cfg, args, device, amp) -> float:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.seq, cfg.dim, generator=g).to(device)
    target = torch.randn(args.batch, args.seq, cfg.dim, generator=g).to(device)
    valid = torch.ones(args.batch, args.seq, dtype=torch.bool, device=device)
    valid[: args.batch // 2, args.seq * 3 // 4 :] = False  # a ragged batch, like real TTS batches

    def step():
        with amp():
            loss = (model(x, valid) - target)[valid].pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sec = _timed(step, device, args.train_steps)
    return args.batch * args.seq / sec


@torch.inference_mode()
def bench_decoding(model, cfg, args, device, amp, length: int) -> tuple[float, float]:
    """(seconds per cached decode step, seconds per full recomputation) at context length `length`."""
    model.eval()
    g = torch.Generator().manual_seed(1)
    B = args.decode_batch
    xs = torch.randn(B, length + args.decode_steps + 1, cfg.dim, generator=g).to(device)
    cache_dtype = torch.bfloat16 if args.amp else torch.float32

    def cached_steps() -> None:
        cache = KVCache.empty(cfg, B, length + args.decode_steps, device, cache_dtype)
        with amp():
            model(xs[:, :length], cache=cache)  # prefill (not timed below: measured separately and removed)
            for i in range(args.decode_steps):
                model(xs[:, length + i : length + i + 1], cache=cache)

    def prefill_only() -> None:
        cache = KVCache.empty(cfg, B, length + args.decode_steps, device, cache_dtype)
        with amp():
            model(xs[:, :length], cache=cache)

    def full_recompute() -> None:
        with amp():
            model(xs[:, : length + 1])

    t_all = _timed(cached_steps, device, args.repeats)
    t_prefill = _timed(prefill_only, device, args.repeats)
    t_cached = max(t_all - t_prefill, 0.0) / args.decode_steps
    t_full = _timed(full_recompute, device, args.repeats)
    return t_cached, t_full


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--train-steps", type=int, default=3, help="timed training steps (after 1 warm-up)")
    p.add_argument("--lengths", default="64,256,512", help="comma-separated decoding context lengths")
    p.add_argument("--decode-batch", type=int, default=1)
    p.add_argument("--decode-steps", type=int, default=16, help="cached decode steps per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per decoding measurement")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (and a bf16 KV cache)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lengths = [int(s) for s in args.lengths.split(",")]
    cfg = TransformerConfig(
        dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        n_kv_heads=args.kv_heads,
        max_seq_len=max(max(lengths) + args.decode_steps + 1, args.seq),
    )
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.amp else contextlib.nullcontext
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"device: {name}; torch {torch.__version__}; amp bf16: {args.amp}")
    print(
        f"config: dim {cfg.dim}, layers {cfg.n_layers}, heads {cfg.n_heads}, kv heads {cfg.kv_heads}, "
        f"ffn {cfg.ffn_dim}; {n_params / 1e6:.2f} M parameters"
    )

    tps = bench_training(model, cfg, args, device, amp)
    print(f"training (fwd+bwd+AdamW, batch {args.batch}x{args.seq}, ragged): {tps:,.0f} tokens/s")

    print(f"decoding, batch {args.decode_batch}, one new token per step:")
    print(f"{'context L':>10} {'KV cache ms/step':>17} {'full recompute ms':>18} {'speed-up':>9}")
    for L in lengths:
        t_cached, t_full = bench_decoding(model, cfg, args, device, amp, L)
        ratio = t_full / t_cached if t_cached > 0 else float("inf")
        print(f"{L:>10} {t_cached * 1e3:>17.2f} {t_full * 1e3:>18.2f} {ratio:>8.1f}x")


if __name__ == "__main__":
    main()
