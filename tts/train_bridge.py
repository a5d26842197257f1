"""Fit a step bridge (latentlm/bridge.py) to a TTS release's own decoding and write a release with it.

    python -m tts.train_bridge RELEASE --manifest TRAIN.jsonl --out OUT_RELEASE [--jobs 400] [--per-speaker 3]
        [--train-steps 4000] [--record-temperature T] [--threads 1] [--seed 0]

1. Cross-sentence jobs of training speakers (as ``tts.distill_head``: a prompt and other utterances' texts per
   speaker, at most ``--jobs``). Use training speakers only: the dev set's speakers must stay unseen.
2. Decode them the way the release decodes by default (its one-step head, one trunk row, its plan; at its
   temperature or ``--record-temperature``) through a ``SequenceRecorder``: every item the trunk read and its
   output there. Saved to OUT/.bridge/pairs.safetensors with what made them (the release's weights, configs and
   the jobs), so a rerun skips this step; pairs from another release or job set are recorded again.
3. ``fit_bridge`` (latentlm/bridge_fit.py), then OUT = the release + ``step_bridge/``, which its decoding then
   uses wherever it follows a plan (``SynthesisOptions(bridge=False)`` turns it off per call). OUT may be the
   release itself: only its ``step_bridge/`` is (re)written. The report (held-out errors beside the no-op
   bridge's) goes into the bridge's config meta. ``--chain 2``: the decoder may bridge two latents in a row, and
   the bridge is trained on its own two-step rollouts.
Measure the result on the real-voice dev set (``recipes/demo/evaluate_real_voices.sh OUT ...``) against the
release without it before shipping it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from evaluation.whisper_base import sha256_file
from latentlm.bridge import DIRNAME, BridgeConfig, StepBridge, save_bridge
from latentlm.bridge_fit import SequenceRecorder, fit_bridge, pairs_of
from latentlm.one_step import DIRNAME as ONE_STEP_DIRNAME
from tts.distill_head import (
    copy_release,
    decode_jobs,
    distill_jobs,
    load_for_recording,
    no_jobs,
    reuse_or_record,
    states_key,
)
from tts.layout import MODALITY
from tts.model import TTS


def record_pairs(tts: TTS, jobs: list[dict], batch_size: int, seed: int, temperature: float | None,
                 max_tokens: int) -> dict[str, torch.Tensor]:
    """Decode ``jobs`` with the release's default head (unguided: a one-step head) and return bridge pairs."""
    recorder = SequenceRecorder(tts.lm)
    try:
        decode_jobs(tts, jobs, batch_size, seed, temperature, lambda: f"{len(recorder.rows)} rows", bridge=False)
    finally:
        rows = recorder.close()
    lay = tts.lm.layout
    modality = list(tts.lm.latent_dims).index(MODALITY)
    return pairs_of(rows, modality, lay.lat, lay.size, max_tokens)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fit a step bridge to a TTS release's own decoding.")
    ap.add_argument("release", help="TTS release directory (with a default one-step head)")
    ap.add_argument("--manifest", action="append", required=True, help="training manifest (JSONL), repeatable")
    ap.add_argument("--out", required=True,
                    help="output release directory (the release + step_bridge/; the release itself: in place)")
    ap.add_argument("--jobs", type=int, default=400, help="cross-sentence jobs decoded for pairs (at most)")
    ap.add_argument("--per-speaker", type=int, default=3, help="jobs per training speaker (target utterances)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--record-temperature", type=float, default=None,
                    help="decode the jobs at this temperature while recording (default: the release's)")
    ap.add_argument("--max-tokens", type=int, default=BridgeConfig.max_tokens)
    ap.add_argument("--chain", type=int, default=BridgeConfig.chain,
                    help="latents bridged in a row when decoding; > 1 trains on its own rollouts that long")
    ap.add_argument("--width", type=int, default=BridgeConfig.width)
    ap.add_argument("--depth", type=int, default=BridgeConfig.depth)
    ap.add_argument("--train-steps", type=int, default=4000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-temperature", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    src, out = Path(args.release), Path(args.out)
    counts = ("jobs", "per_speaker", "batch_size", "max_tokens", "chain", "width", "depth", "train_steps", "threads")
    problem = next((f"--{k.replace('_', '-')} must be >= 1" for k in counts if getattr(args, k) < 1), None)
    if problem is None and not args.max_temperature > 0:
        problem = "--max-temperature must be positive"
    if problem is None and args.record_temperature is not None and not args.record_temperature >= 0:
        problem = "--record-temperature must be >= 0"
    if problem is None:
        missing = [m for m in args.manifest if not Path(m).is_file()]
        problem = f"no manifest file {missing[0]}" if missing else None
    if problem is None and not (src / ONE_STEP_DIRNAME).is_dir():
        problem = f"{src} has no {ONE_STEP_DIRNAME}/: a bridge serves one-row (one-step head) decoding"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    tts = load_for_recording(src, args.threads, args.seed)
    if tts is None:
        return 2
    key = states_key(src, args.manifest, args.jobs, args.per_speaker, args.batch_size, args.seed,
                     args.record_temperature)
    key["one_step_head"] = sha256_file(src / ONE_STEP_DIRNAME / "model.safetensors")
    key["max_tokens"] = str(args.max_tokens)

    def record() -> dict[str, torch.Tensor] | None:
        jobs = distill_jobs(args.manifest, args.jobs, args.seed, args.per_speaker)
        if not jobs:
            return None
        return record_pairs(tts, jobs, args.batch_size, args.seed, args.record_temperature, args.max_tokens)

    data = reuse_or_record(out / ".bridge" / "pairs.safetensors", key, record, "pairs", "another release or job set")
    if data is None:
        no_jobs()
        return 2
    head = tts.one_step[0]
    cfg = BridgeConfig(
        dim=tts.lm.cfg.trunk.dim, latent_dim=tts.lm.latent_dims[MODALITY], vocab=tts.lm.layout.size,
        max_tokens=args.max_tokens, chain=args.chain, width=args.width, depth=args.depth, modality=MODALITY,
    )
    bridge = StepBridge(cfg)
    g = torch.Generator().manual_seed(args.seed)
    report = fit_bridge(
        bridge, head, data, train_steps=args.train_steps, lr=args.lr, max_temperature=args.max_temperature,
        generator=g, log_every=max(1, args.train_steps // 10), chain=args.chain,
    )
    print(json.dumps(asdict(report)))
    copy_release(src, out, leave=(DIRNAME, ".bridge"))  # the release as it is, without an old bridge
    meta = {"release": str(src), "jobs": args.jobs, "report": asdict(report)}
    save_bridge(out / DIRNAME, bridge, meta=meta)
    print(f"wrote {out / DIRNAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
