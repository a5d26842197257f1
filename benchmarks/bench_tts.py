"""TTS speed on this machine's CPU: RTF for 10 s of speech with its breakdown, time to first audio when
streaming, and the speed-up from the KV cache.

    python -m benchmarks.bench_tts [--checkpoint checkpoints/tts_demo] [--seconds 10] [--steps 10] [--cfg CFG]
        [--head both|reference|one_step]
    python -m benchmarks.bench_tts --checkpoint none --patch 4    # untrained, 4 VAE frames per item (tts.patch)
    python -m benchmarks.bench_tts --size 100m                    # untrained, ~100M parameters
    python -m benchmarks.bench_tts --backend both --head one_step # PyTorch vs ONNX Runtime decode steps
    python -m benchmarks.bench_tts --size 100m --head one_step --backend onnx --quantize int8 --threads 2

Default release: checkpoints/tts_demo when present; otherwise an UNTRAINED model of the demo size
(recipes/demo/tts_small.yaml, with checkpoints/vae_small as its VAE when present) that is made to run to the
length cap: speed does not depend on the weights, only on how many frames are generated. The label says which.
``--patch N`` (N > 1) always measures the untrained model with N frames per sequence item.

- RTF = wall time / seconds of audio, per head (the reference head: ``steps`` evaluations per frame, x2 rows
  with CFG; the one-step head, latentlm/one_step.py: one evaluation, one row, trunk on one row too); breakdown:
  trunk forwards (prefill + one cached step per item), diffusion head, VAE decode, the rest. The one-step head
  decodes with the release's step bridge (latentlm/bridge.py: every second frame without a trunk call; an
  untrained stand-in where the release has none, speed only; ``--no-bridge``: every frame from the trunk).
- Time to first audio: from calling ``stream`` to its first chunk (prompt encoding and prefill included).
- KV cache: trunk time with the cache against re-running the whole prefix + generated frames every step
  (measured on every 25th step and integrated over the generated length).
- Paragraph: a 4-sentence text through ``synthesize``, its sentences decoded together (``TTS.SENTENCE_ROWS``)
  against one after the other (``SENTENCE_ROWS = 1``), best of 2 each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from latentlm.bridge import BridgeConfig, StepBridge
from latentlm.linear import quantize_int8
from latentlm.one_step import OneStepConfig, student_from
from latentlm.sequence import Batch
from tts.layout import MODALITY
from tts.model import TTS, TTSConfig
from tts.options import SynthesisOptions

REPO = Path(__file__).resolve().parents[1]
PROMPT = REPO / "tests" / "data" / "real_speech" / "dev" / "coqui__LJ001-0002.wav"  # LJSpeech, 1.9 s
PROMPT_TEXT = "in being comparatively modern."
TEXT = "The quick brown fox jumps over the lazy dog while the children watch from the old stone bridge near the mill"
PARAGRAPH = (
    "The old mill stood by the river for a hundred years. Every morning the miller opened the doors and let the "
    "light in. Children came to watch the great wheel turn. In winter the water froze and the wheel stood still."
)


# an untrained model of about 100M parameters (Pocket TTS's size): trunk 768 x 12 (GQA 12/4), head 512 x 4
SIZE_100M = [
    "tts.model.trunk.dim=768",
    "tts.model.trunk.n_layers=12",
    "tts.model.trunk.n_heads=12",
    "tts.model.trunk.n_kv_heads=4",
    "tts.model.modalities.audio.cond_dim=768",
    "tts.model.modalities.audio.width=512",
    "tts.model.modalities.audio.depth=4",
]
# ~37M (36.5M LM parameters, beside F5-TTS's 512 x 8 DiT at 37.3M): trunk 512 x 8 (GQA 8/4), head 512 x 4
SIZE_37M = [
    "tts.model.trunk.dim=512",
    "tts.model.trunk.n_layers=8",
    "tts.model.trunk.n_heads=8",
    "tts.model.trunk.n_kv_heads=4",
    "tts.model.modalities.audio.cond_dim=512",
    "tts.model.modalities.audio.width=512",
    "tts.model.modalities.audio.depth=4",
]
SIZES = {"37m": SIZE_37M, "100m": SIZE_100M}


def demo_size_untrained(patch: int = 1, overrides: list[str] | None = None) -> TTS:
    from latentlm.config import load_config
    from latentlm.model import LatentLM
    from tests.helpers import tiny_vae_config
    from tts.duration_predictor import DurationConfig, DurationPredictor, load_aligner, load_predictor
    from tts.frontend import Frontend
    from tts.train import TrainConfig
    from vocoder_vae.model import AudioVAE

    recipe = REPO / "recipes/demo/tts_small.yaml"
    frame_dim = load_config(TrainConfig, recipe).tts.latent_dim  # the recipe's VAE frame
    over = [f"tts.patch={patch}", f"tts.model.modalities.audio.latent_dim={frame_dim * patch}", *(overrides or [])]
    cfg: TTSConfig = load_config(TrainConfig, recipe, over).tts
    vae_dir = REPO / "checkpoints/vae_small"
    vae = AudioVAE.from_pretrained(vae_dir) if vae_dir.is_dir() else AudioVAE(tiny_vae_config(cfg.frame_dim))
    lm = LatentLM(cfg.model).eval()
    with torch.no_grad():  # never stop: every run generates exactly the capped length
        lm.lm_head.weight[[lm.layout.lat, lm.layout.end[MODALITY]]] = 0.0
    # the recipe is predictor-timed: the shipped release's duration predictor (same front end), else an
    # untrained one of the default size (the timing, not the figures, changes with its weights)
    shipped = REPO / "checkpoints/tts_demo/duration"
    if (shipped / "model.safetensors").is_file():
        duration, aligner = load_predictor(shipped), load_aligner(shipped)
    else:
        duration, aligner = DurationPredictor(DurationConfig(vocab_size=cfg.model.vocab_size)).eval(), None
    return TTS(cfg, lm, vae, Frontend(cfg.language), duration, aligner)


class Timer:
    """Wraps a module method and accumulates its wall time."""

    def __init__(self, obj, name: str):
        self.obj, self.name, self.total, self.calls = obj, name, 0.0, 0
        self.orig = getattr(obj, name)

        def wrapped(*a, **k):
            t = time.perf_counter()
            out = self.orig(*a, **k)
            self.total += time.perf_counter() - t
            self.calls += 1
            return out

        setattr(obj, name, wrapped)

    def reset(self) -> None:
        self.total, self.calls = 0.0, 0

    def remove(self) -> None:
        delattr(self.obj, self.name)


def no_cache_trunk_time(tts: TTS, frames: int, prompt: torch.Tensor, phonemes: list[int], rows: int) -> float:
    """Estimated trunk time if every step re-ran the whole sequence (no KV cache)."""
    from tts.layout import generation_prefix

    lm = tts.lm
    prefix, _ = generation_prefix(lm, [phonemes], [prompt], 1.0)
    n0 = prefix.tokens.shape[1]
    total, probe = 0.0, list(range(0, frames, 25))
    for k in probe:
        n = n0 + k
        b = Batch(
            tokens=torch.full((rows, n), lm.layout.lat),
            latents=torch.randn(rows, n, prefix.latents.shape[-1]),
            modality=torch.zeros(rows, n, dtype=torch.long),
            valid=torch.ones(rows, n, dtype=torch.bool),
            weight=torch.zeros(rows, n),
        )
        t = time.perf_counter()
        with torch.no_grad():
            lm(b)
        total += (time.perf_counter() - t) * min(25, frames - k)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument(
        "--cfg", type=float, default=None, help="guidance scale (default: the release's cfg_scale)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--head",
        choices=["reference", "one_step", "both"],
        default="both",
        help="diffusion head(s) to time (one_step on a release without one times an undistilled copy)",
    )
    ap.add_argument(
        "--patch", type=int, default=1, help="VAE frames per item of the untrained model (tts.patch)"
    )
    ap.add_argument(
        "--size", choices=["demo", "37m", "100m"], default="demo",
        help="an untrained model of ~37M (trunk 512 x 8) or ~100M (768 x 12) parameters",
    )
    ap.add_argument("--quantize", choices=["int8"], default=None, help="the trunk's linears in dynamic int8")
    ap.add_argument(
        "--no-bridge", dest="bridge", action="store_false",
        help="the one-step head without the step bridge (latentlm/bridge.py): every frame from the trunk",
    )
    ap.add_argument(
        "--backend",
        choices=["torch", "onnx", "both"],
        default="torch",
        help="what runs the one-row decode steps (onnx: ONNX Runtime, TTS.use_onnx); both: each, same run",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = Path(args.checkpoint) if args.checkpoint else REPO / "checkpoints/tts_demo"
    if ckpt.is_dir() and args.patch == 1 and args.size == "demo":
        tts, label = TTS.from_pretrained(ckpt), f"release {ckpt}"
    else:
        tts, label = (
            demo_size_untrained(args.patch, SIZES.get(args.size)),
            f"UNTRAINED {args.size}-size model (recipes/demo/tts_small.yaml"
            + {"100m": ", trunk 768 x 12, head 512 x 4)", "37m": ", trunk 512 x 8, head 512 x 4)"}.get(args.size, ")"),
        )
    n = sum(p.numel() for p in tts.lm.parameters())
    if args.quantize:  # (n counts the float32 parameters)
        label += ", in dynamic int8 (" + {"torch": "PyTorch's", "onnx": "ONNX Runtime's", "both": "each's"}[
            args.backend
        ] + ")"
    print(
        f"{label}: {n / 1e6:.2f}M LM params, {tts.cfg.frame_rate:g} Hz, {tts.cfg.patch} frame(s) per item, "
        f"torch threads {torch.get_num_threads()}"
    )
    cfg = tts.cfg.cfg_scale if args.cfg is None else args.cfg
    heads = ["reference", "one_step"] if args.head == "both" else [args.head]
    if "one_step" in heads and stand_in_one_step(tts, cfg):
        print("one_step: this release has no one-step head; timing an undistilled copy of its head (speed only)")
    if "one_step" in heads and args.bridge and stand_in_bridge(tts):
        print("one_step: this release has no step bridge; timing an untrained one (speed only)")
    if not args.bridge:
        tts.bridge = None
    kw = dict(prompt_text=PROMPT_TEXT, steps=args.steps, cfg=cfg, seed=0, max_seconds=args.seconds)
    if args.backend != "torch":  # exported from the float32 trunk, before PyTorch's int8 replaces its linears
        tts.use_onnx(int8=args.quantize == "int8")  # its default: one ONNX Runtime thread
    if args.quantize and args.backend != "onnx":
        quantize_int8(tts.lm.trunk)
    if args.backend == "both":
        compare_backends(tts, head_kw(kw, "one_step" if "one_step" in heads else heads[0]), args.steps, cfg)
        return
    label_backend = "ONNX Runtime" if args.backend == "onnx" else "PyTorch"
    print(f"decode steps: {label_backend}")
    for h in heads:
        tts.synthesize("Warm up.", PROMPT, **{**head_kw(kw, h), "max_seconds": 0.5})
    runs = {h: synthesis_breakdown(tts, head_kw(kw, h), args.steps, cfg) for h in heads}
    if len(heads) == 2:
        print(f"\none_step vs reference: {runs['reference'][2] / runs['one_step'][2]:.2f}x faster")
    for h in heads:
        t0 = time.perf_counter()
        it = tts.stream(TEXT, PROMPT, chunk_frames=4, first_chunk_frames=1, **head_kw(kw, h))
        first = next(it)
        ttfa = time.perf_counter() - t0
        it.close()
        print(
            f"\nstreaming ({h}): time to first audio {ttfa:.3f} s "
            f"(first chunk {len(first) / tts.sample_rate * 1e3:.0f} ms)"
        )
    kw = head_kw(kw, heads[0])  # the KV-cache and paragraph figures: the first head
    trunk, items, _, tm, audio_s = runs[heads[0]]
    rows = 2 if cfg != 1.0 and heads[0] == "reference" else 1

    wav = tts.load_prompt(PROMPT)
    prompt = tts.encode_prompt(wav)  # [Tp // patch, patch * D]
    ph = tts.frontend.encode(PROMPT_TEXT) + [1] + tts.frontend.encode(TEXT)
    nocache = no_cache_trunk_time(tts, items, prompt, ph, rows)
    print(
        f"\nKV cache: trunk {trunk.total:.2f} s with cache vs {nocache:.2f} s re-running the sequence each step "
        f"-> {nocache / max(trunk.total, 1e-9):.1f}x; whole synthesis RTF without cache "
        f"{(tm['total_s'] - trunk.total + nocache) / audio_s:.3f}"
    )
    paragraph(tts, kw)


def decode_runtimes(tts: TTS) -> tuple:
    """The (trunk, one-step head, bridge) runtimes installed on ``tts`` now (None: eager PyTorch, or absent)."""
    return (
        tts.lm.trunk.runtime,
        tts.one_step[0].runtime if tts.one_step is not None else None,
        tts.bridge.runtime if tts.bridge is not None else None,
    )


def install_runtimes(tts: TTS, runtimes: tuple) -> None:
    """Put back ``decode_runtimes``' triple (all None: every decode step in PyTorch)."""
    tts.lm.trunk.runtime = runtimes[0]
    if tts.one_step is not None:
        tts.one_step[0].runtime = runtimes[1]
    if tts.bridge is not None:
        tts.bridge.runtime = runtimes[2]


def compare_backends(tts: TTS, kw: dict, steps: int, cfg: float) -> None:
    """RTF of the same synthesis with the decode steps in PyTorch and in ONNX Runtime, alternated twice."""
    saved = decode_runtimes(tts)
    use = lambda onnx: install_runtimes(tts, saved if onnx else (None, None, None))  # noqa: E731

    tts.synthesize("Warm up.", PROMPT, **{**kw, "max_seconds": 0.5})
    best = {}
    for _ in range(2):
        for name in ("torch", "onnx"):
            use(name == "onnx")
            print(f"\n[{name}]", end="")
            rtf = synthesis_breakdown(tts, kw, steps, cfg)[2]
            best[name] = min(best.get(name, float("inf")), rtf)
    use(True)
    print(
        f"\nbest of 2, {kw['head']} head: RTF {best['torch']:.3f} PyTorch, {best['onnx']:.3f} ONNX Runtime "
        f"-> {best['torch'] / best['onnx']:.2f}x"
    )
    t0 = time.perf_counter()
    it = tts.stream(TEXT, PROMPT, chunk_frames=4, first_chunk_frames=1, **kw)
    next(it)
    print(f"streaming (ONNX Runtime): time to first audio {time.perf_counter() - t0:.3f} s")
    it.close()


def stand_in_one_step(tts: TTS, cfg_scale: float) -> bool:
    """Give a release without a one-step head an undistilled copy of its head in that role (speed does not
    depend on the weights); -> whether it did."""
    if tts.one_step is not None:
        return False
    student = student_from(tts.lm.heads[MODALITY]).eval()
    tts.one_step = (student, OneStepConfig(head=student.cfg, cfg_scale=cfg_scale))
    return True


def stand_in_bridge(tts: TTS) -> bool:
    """Give a release with a one-step head but no step bridge an untrained bridge of the default shape (its
    frames differ, its speed does not: latentlm/bridge.py); -> whether it did."""
    if tts.bridge is not None or tts.one_step is None or not tts.cfg.interleave or tts.cfg.timing != "predictor":
        return False
    cfg = BridgeConfig(
        dim=tts.lm.cfg.trunk.dim, latent_dim=tts.lm.latent_dims[MODALITY], vocab=tts.lm.layout.size,
        modality=MODALITY,
    )
    tts.bridge = StepBridge(cfg).eval()
    return True


def head_kw(kw: dict, head: str) -> dict:
    """The synthesis keywords for ``head`` (the one-step head decodes with the guidance it was distilled at)."""
    return {**kw, "head": head, **({"cfg": None} if head == "one_step" else {})}


def synthesis_breakdown(tts: TTS, kw: dict, steps: int, cfg: float) -> tuple:
    """Synthesize TEXT once with ``kw`` and print RTF with its breakdown;
    -> (trunk timer, items, RTF, timings, seconds of audio)."""
    one = kw["head"] == "one_step"
    # with ONNX Runtime the one-row loop (latentlm/row_loop.py) calls the runtimes directly: time those
    rt = tts.lm.trunk.runtime
    trunk = Timer(rt, "step") if rt is not None else Timer(tts.lm, "forward")
    head_module = tts.one_step[0] if one else tts.lm.heads[MODALITY]
    head = Timer(head_module.runtime.session, "run") if one and head_module.runtime else Timer(head_module, "sample")
    br = tts.bridge if one and kw.get("bridge", True) else None
    bridge = None if br is None else Timer(br.runtime.session, "run") if br.runtime else Timer(br, "forward")
    res = tts.synthesize(TEXT, PROMPT, **kw)
    for t in (trunk, head, bridge):
        if t is not None:
            t.remove()
    tm = res.info["timings"]
    audio_s = res.speech_seconds
    frames = sum(res.info["frames"])
    items = frames // tts.cfg.patch  # trunk steps
    steps, rows = (1, 1) if one else (steps, 2 if cfg != 1.0 else 1)
    print(
        f"\nsynthesis, {kw['head']} head: {audio_s:.2f} s of audio ({frames} frames, stop {res.info['stop']}), "
        f"{steps} head evaluation(s) per frame on {rows} row(s), cfg {cfg:g}"
    )
    print(f"  RTF {tm['total_s'] / audio_s:.3f}  (wall {tm['total_s']:.2f} s)")
    t_bridge = bridge.total if bridge is not None else 0.0
    other = tm["total_s"] - trunk.total - head.total - t_bridge - tm["vae_decode_s"]
    for name, t in [
        ("trunk (prefill + cached steps)", trunk.total),
        ("diffusion head", head.total),
        *([("step bridge", t_bridge)] if bridge is not None else []),
        ("VAE decode", tm["vae_decode_s"]),
        ("prompt encode, text, glue", other),
    ]:
        print(f"  {name:32s} {t:7.3f} s  RTF {t / audio_s:.3f}  ({100 * t / tm['total_s']:.0f}%)")
    print(
        f"  per frame: trunk {1e3 * trunk.total / max(frames, 1):.1f} ms ({trunk.calls} calls), head "
        f"{1e3 * head.total / max(frames, 1):.1f} ms ({1e3 * head.total / max(items * steps, 1):.2f} ms per "
        "evaluation)"
    )
    return trunk, items, tm["total_s"] / audio_s, tm, audio_s


def paragraph(tts: TTS, kw: dict) -> None:
    """RTF of a 4-sentence text: sentences decoded together (synthesize) vs one after the other."""
    walls = {}  # kw's max_seconds caps each sentence (an untrained model runs to it)
    for name, rows in (("one after the other", 1), ("together", TTS.SENTENCE_ROWS)):
        tts.SENTENCE_ROWS = rows  # instance attribute: this object only
        best = float("inf")
        for _ in range(2):
            res = tts.synthesize(PARAGRAPH, PROMPT, **kw)
            best = min(best, res.info["timings"]["total_s"])
        walls[name] = (best, res.speech_seconds, len(res.info["sentences"]))
    del tts.SENTENCE_ROWS
    (t1, d, n), (t2, _, _) = walls["one after the other"], walls["together"]
    how = "one at a time (ONNX Runtime's one-row loop)" if tts._rows_per_pass(tts._decoding(
        SynthesisOptions(head=kw["head"]))) == 1 else "decoded together"
    print(
        f"\nparagraph ({n} sentences, {d:.1f} s of audio): RTF {t2 / d:.3f} as synthesize decodes them ({how}), "
        f"{t1 / d:.3f} one after the other -> {t1 / t2:.2f}x"
    )


if __name__ == "__main__":
    main()
