"""Training throughput of a TTS recipe on this CPU: steps/s, latent frames/s and seconds of speech/s, for 1 and 2
threads (the learning a CPU-hour buys, issue "Learning per CPU-hour").

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_train_throughput \
        [--manifest data/real_voices/train.jsonl --latents data/latents_real] [--steps 20] [--threads 1 2]

Needs a latent store with durations and its manifest (python -m tts.real_voices, tts.extract, tts.durations:
recipes/demo/README.md). Each thread count gets a fresh trainer from the same seed (the same batches), two
untimed warm-up steps, then ``--steps`` timed optimizer steps. Frames are the utterances' latent frames (prompt
and target alike pass through the trunk); the 2-thread line also prints its speed-up over the first. Run it on
an otherwise idle machine: other work on the two cores halves every figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from latentlm.config import load_config
from tts.manifests import read_jsonl
from tts.train import TrainConfig, Trainer


def measure(recipe: str, overrides: list[str], threads: int, steps: int) -> dict[str, float]:
    """Optimizer steps per second and latent frames per second of ``steps`` timed steps on ``threads`` threads."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            TrainConfig, recipe, overrides + [f"threads={threads}", f"out_dir={tmp}", "device=cpu"]
        )
        tr = Trainer(cfg, resume=False)
        tr.setup_data(read_jsonl(cfg.data.manifest))
        frames = [tr.ds.store.frames(r.id) for r in tr.ds.rows]
        seen: list[int] = []
        layout = tr.next_micro_batch

        def counted():
            out = layout()
            seen.append(sum(frames[i] for i in out[1].idx))
            return out

        tr.next_micro_batch = counted
        for _ in range(2):  # warm-up: caches, allocator
            tr.train_step()
        seen.clear()
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step()
        dt = time.perf_counter() - t0
    return {"steps_s": steps / dt, "frames_s": sum(seen) / dt, "frame_rate": cfg.tts.frame_rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/demo/tts_small.yaml")
    ap.add_argument("--manifest", default="data/real_voices/train.jsonl")
    ap.add_argument("--latents", default="data/latents_real")
    ap.add_argument("--duration-model", default="checkpoints/tts_demo/duration")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    over = [
        f"data.manifest={a.manifest}",
        f"data.latents={a.latents}",
        f"data.duration_model={a.duration_model}",
    ]
    over += ["sample_every=0", "progress=false"]
    base = None
    print(f"recipe {a.recipe}, {a.steps} timed steps, torch {torch.__version__}")
    for t in a.threads:
        r = measure(a.recipe, over, t, a.steps)
        speech = r["frames_s"] / r["frame_rate"]
        line = (
            f"threads {t}: {r['steps_s']:.3f} steps/s, {r['frames_s']:.0f} latent frames/s "
            f"({speech:.1f} s of speech per second: {speech:.1f} h of training audio per hour)"
        )
        if base is not None:
            line += f", {r['steps_s'] / base:.2f}x the {a.threads[0]}-thread rate"
        base = base or r["steps_s"]
        print(line, flush=True)


if __name__ == "__main__":
    main()
