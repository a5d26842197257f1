"""Where one TTS training step spends its time, stage by stage, on a GPU-sized batch (this CPU).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_tts_train [--max-frames 16000] [--steps 3] [--ctc]
Needs a latent store (python -m tts.extract) and its manifest: --manifest / --latents (default
data/corpus/train.jsonl, data/latents). Prints, per stage, milliseconds per step and the number of operator
calls (each is a kernel launch on a GPU, where launches and host syncs, not FLOPs, bound a model this small: an
H200 ran the demo recipe at ~4 it/s with 27 % utilisation). CPU only.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from latentlm.config import load_config
from tts import align, ctc
from tts.manifests import read_jsonl
from tts.train import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/demo/tts_small.yaml")
    ap.add_argument("--manifest", default="data/corpus/train.jsonl")
    ap.add_argument("--latents", default="data/latents")
    ap.add_argument("--max-frames", type=int, default=16000)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctc", action="store_true", help="add ctc_weight=0.1 ctc_blind=0.3")
    a = ap.parse_args()
    over = [f"data.manifest={a.manifest}", f"data.latents={a.latents}", f"data.max_frames={a.max_frames}"]
    over += [f"threads={a.threads}", "out_dir=/tmp/bench_tts_train", "device=cpu"]
    over += ["ctc_weight=0.1", "ctc_blind=0.3"] if a.ctc else []
    cfg = load_config(TrainConfig, a.recipe, over)
    tr = Trainer(cfg, resume=False)
    tr.setup_data(read_jsonl(cfg.data.manifest))
    lm = tr.lm
    ms, ops, rows = defaultdict(float), defaultdict(int), []

    @contextlib.contextmanager
    def stage(name):
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as p:
            yield
        ms[name] += (time.perf_counter() - t0) * 1000
        ops[name] += sum(e.count for e in p.key_averages() if e.key.startswith("aten::"))

    for s in range(a.steps + 1):
        if s == 1:  # the first step warms caches up: not counted
            ms.clear(), ops.clear()
        with stage("lay out micro-batch"):  # collate + blind rows + training_batch (host work)
            batch, job, splits, spans = tr.next_micro_batch()
        rows.append(len(job.idx))
        g = torch.Generator().manual_seed(s)
        with stage("trunk forward"):
            hidden = lm(batch)
        with stage("lm + diffusion losses"):
            terms = lm.losses(batch, generator=g, hidden=hidden)
        if a.ctc:
            with stage("ctc loss"):
                terms["ctc"], _ = ctc.phoneme_ctc_loss(hidden, batch, lm, spans)
        probs = align.kept_probs(lm, cfg.align)
        with stage("align loss"):
            terms["align"], _ = align.guided_attention_loss(probs, batch, lm, splits, cfg.align.sigma)
        loss = lm.total_loss(terms) + cfg.align.weight * terms["align"] + cfg.ctc_weight * terms.get("ctc", 0)
        with stage("backward"):
            loss.backward()
        with stage("optimizer"):
            tr.opt.step()
            tr.opt.zero_grad(set_to_none=True)
        for i in cfg.align.layers:
            lm.trunk.layers[i].attn.probs = None
    n = a.steps
    total = sum(ms.values()) / n
    print(f"batch: {sum(rows[1:]) / n:.0f} rows, max_frames {a.max_frames}, {a.threads} threads, {n} steps")
    for k in ms:
        print(f"{k:24s} {ms[k] / n:8.1f} ms  {100 * ms[k] / n / total:5.1f} %  {ops[k] / n:7.0f} aten calls")
    print(f"{'total':24s} {total:8.1f} ms")


if __name__ == "__main__":
    main()
