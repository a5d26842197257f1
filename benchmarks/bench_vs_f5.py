"""Side-by-side synthesis speed against F5-TTS's architecture at an equal parameter count, in one run.

    pip install --target /tmp/f5pkgs --no-deps f5-tts x-transformers torchdiffeq einops loguru einx frozendict \
        torch-einops-utils rjieba pypinyin wandb xxhash accelerate ema-pytorch datasets multiprocess pyarrow dill
    PYTHONPATH=/tmp/f5pkgs python -m benchmarks.bench_vs_f5 [--checkpoint checkpoints/tts_demo] [--runs 3]
    PYTHONPATH=/tmp/f5pkgs python -m benchmarks.bench_vs_f5 --size 37m --f5-dim 512 --f5-depth 8   # ~37M each

F5-TTS (arXiv 2410.06885; its PyPI package, imported only here, never by the project) is a non-autoregressive
DiT over mel frames (24 kHz, hop 256: 93.75 frames/s) sampled by flow matching: its defaults are 32 Euler steps
(NFE) with classifier-free guidance 2 (two transformer passes per step over prompt + generated frames) and sway
sampling. Ours runs with its decode steps in PyTorch and in ONNX Runtime (``TTS.use_onnx``), without and with
its step bridge (latentlm/bridge.py: every second frame without a trunk call). Both models get
a 3-s prompt and generate exactly 10 s (ours: a long text cut at ``max_seconds=10``;
F5: the duration given). F5 runs with random weights of a DiT sized to our release's LM (``--f5-dim``,
``--f5-depth``: 256 x 6 is 6.7M beside the 7.0M demo); speed does not depend on the weights. F5's vocoder is not
timed (its mel is the output), ours is (the VAE decode is ~1-6 % of our time). Runs alternate (ours reference,
ours one-step, ours one-step in ONNX Runtime in float32 and with int8 weights, the last with the bridge too, F5
at 32 NFE, F5 at 16 NFE), so a
busy machine slows all alike; the table gives each one's median RTF and the ratios of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PROMPT = REPO / "tests" / "data" / "real_speech" / "dev" / "pyroomacoustics__cmu_arctic_us_aew_a0003.wav"  # 3.5 s
PROMPT_TEXT = "For the twentieth time that evening the two men shook hands."
TEXT = (
    "The quick brown fox jumps over the lazy dog while the children watch from the old stone bridge near the mill, "
    "and the miller opens the doors to let the morning light into the dusty rooms where the flour is kept."
)
F5_RATE = 24000 / 256  # mel frames per second


def f5_model(dim: int, depth: int):
    from f5_tts.model import CFM, DiT

    dit = DiT(dim=dim, depth=depth, heads=max(1, dim // 64), dim_head=64, ff_mult=2, text_dim=dim // 2,
              conv_layers=4, mel_dim=100, text_num_embeds=256)
    return CFM(transformer=dit, mel_spec_kwargs=dict(n_mel_channels=100, hop_length=256, win_length=1024,
                                                     n_fft=1024, target_sample_rate=24000)).eval()


def time_f5(model, prompt_s: float, gen_s: float, nfe: int) -> float:
    n_prompt, n_gen = round(prompt_s * F5_RATE), round(gen_s * F5_RATE)
    cond = torch.randn(1, n_prompt, 100)
    text = torch.randint(1, 256, (1, len(PROMPT_TEXT) + len(TEXT)))
    t = time.perf_counter()
    with torch.no_grad():
        model.sample(cond, text, n_prompt + n_gen, steps=nfe, cfg_strength=2.0, sway_sampling_coef=-1.0, seed=0)
    return (time.perf_counter() - t) / gen_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints/tts_demo"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--f5-dim", type=int, default=256)
    ap.add_argument("--f5-depth", type=int, default=6)
    ap.add_argument(
        "--size", choices=["release", "37m", "100m"], default="release",
        help="ours: the release at --checkpoint, or an UNTRAINED model of that size (benchmarks/bench_tts.py: "
        "37m = trunk 512 x 8, 36.5M, beside --f5-dim 512 --f5-depth 8; 100m = trunk 768 x 12)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from benchmarks.bench_tts import SIZES, demo_size_untrained, stand_in_bridge, stand_in_one_step
    from tts.model import TTS

    def load() -> TTS:
        if args.size == "release":
            return TTS.from_pretrained(args.checkpoint)
        torch.manual_seed(0)  # (speed does not depend on the weights; an untrained model never stops)
        return demo_size_untrained(overrides=SIZES[args.size])

    tts = load()
    label = " (undistilled copy: speed only)" if stand_in_one_step(tts, tts.cfg.cfg_scale) else ""
    fast = load()  # the same model with its decode steps in ONNX Runtime
    stand_in_one_step(fast, fast.cfg.cfg_scale)
    fast.use_onnx()  # one ONNX Runtime thread (its default; measured faster than two)
    fast8 = load()  # and with ONNX Runtime's int8 weights
    stand_in_one_step(fast8, fast8.cfg.cfg_scale)
    blabel = " (untrained bridge: speed only)" if stand_in_bridge(fast8) else ""
    fast8.use_onnx(int8=True)
    f5 = f5_model(args.f5_dim, args.f5_depth)
    n_ours = sum(p.numel() for p in tts.lm.parameters())
    n_f5 = sum(p.numel() for p in f5.transformer.parameters())
    prompt_s = 3.5
    which = args.checkpoint if args.size == "release" else f"UNTRAINED {args.size}-size model"
    print(
        f"ours: {which} LM {n_ours / 1e6:.2f}M; F5-TTS DiT {args.f5_dim}x{args.f5_depth} "
        f"{n_f5 / 1e6:.2f}M (random weights); {prompt_s:g}-s prompt, {args.seconds:g} s generated, "
        f"{torch.get_num_threads()} threads, {args.runs} alternating runs"
    )
    kw = dict(prompt_text=PROMPT_TEXT, seed=0, max_seconds=args.seconds)
    systems = {
        "ours, reference head (10 steps, cfg on 2 rows)": lambda: ours(tts, {**kw, "head": "reference"}),
        f"ours, one-step head (1 row){label}": lambda: ours(tts, {**kw, "head": "one_step", "bridge": False}),
        f"ours, one-step head, ONNX Runtime steps{label}": lambda: ours(
            fast, {**kw, "head": "one_step", "bridge": False}
        ),
        f"ours, one-step head, ONNX Runtime int8 steps, no bridge{label}": lambda: ours(
            fast8, {**kw, "head": "one_step", "bridge": False}
        ),
        f"ours, one-step head + step bridge, ONNX Runtime int8 steps{label}{blabel}": lambda: ours(
            fast8, {**kw, "head": "one_step"}
        ),
        "F5-TTS arch., 32 NFE, cfg 2 (its default)": lambda: time_f5(f5, prompt_s, args.seconds, 32),
        "F5-TTS arch., 16 NFE, cfg 2": lambda: time_f5(f5, prompt_s, args.seconds, 16),
    }
    for fn in systems.values():  # warm up
        fn()
    rtf: dict[str, list[float]] = {k: [] for k in systems}
    for _ in range(args.runs):
        for k, fn in systems.items():
            rtf[k].append(fn())
    med = {k: statistics.median(v) for k, v in rtf.items()}
    f5_default = med["F5-TTS arch., 32 NFE, cfg 2 (its default)"]
    print("\n| system | RTF (runs) | median | F5 default / this |")
    print("|---|---|---|---|")
    for k, v in rtf.items():
        print(f"| {k} | {' / '.join(f'{x:.3f}' for x in v)} | {med[k]:.3f} | {f5_default / med[k]:.1f}x |")


def ours(tts, kw: dict) -> float:
    """RTF of one synthesis of TEXT, cut at kw's max_seconds (the whole call, prompt encoding to audio)."""
    t = time.perf_counter()
    res = tts.synthesize(TEXT, PROMPT, **kw)
    wall = time.perf_counter() - t
    if res.speech_seconds < 0.95 * kw["max_seconds"]:
        raise SystemExit(f"ours stopped at {res.speech_seconds:.2f} s, before the {kw['max_seconds']:g} s asked for")
    return wall / res.speech_seconds


if __name__ == "__main__":
    main()
