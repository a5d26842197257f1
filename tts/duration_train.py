"""Train the phoneme duration predictor (tts/duration_predictor.py) on a latent store's aligned durations.

    python -m tts.duration_train --latents data/latents --manifest data/corpus/train.jsonl --out runs/duration
    python -m tts.export RUN RELEASE --duration runs/duration    # ships it in the TTS release (duration/)

Reads LATENTS/durations.json and LATENTS/phonemes.json (``python -m tts.durations`` makes both) and the
manifest's speaker of each utterance. Each utterance's tempo input is measured on ANOTHER utterance of the same
speaker, drawn anew every epoch, as synthesis measures it on the prompt. LATENTS/aligner.json (the aligner that
made the durations) is saved beside the predictor: continuation prompts are aligned with it. ``--holdout`` speakers are kept out of
training and scored at the end (mean absolute error per phone unit in frames, and sentence length error); the
release's config.json keeps those numbers. A few minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from tts.duration_predictor import (
    DurationConfig,
    DurationPredictor,
    load_aligner,
    save_predictor,
    speaking_rate,
    unit_targets,
)


def load_items(latents: Path, manifests: list[str]) -> list[dict]:
    """[{id, speaker, ids, durations}] of every utterance with durations, phonemes and a manifest row."""
    from tts.manifests import read_jsonl

    for name in ("durations.json", "phonemes.json"):
        if not (latents / name).is_file():
            sys.exit(f"duration_train: no {latents / name}; run python -m tts.durations --manifest ... first")
    durations = json.loads((latents / "durations.json").read_text())
    phonemes = json.loads((latents / "phonemes.json").read_text())
    speakers = {r.id: r.speaker for m in manifests for r in read_jsonl(m)}
    items = [
        {"id": u, "speaker": speakers[u], "ids": phonemes[u], "durations": d}
        for u, d in sorted(durations.items())
        if u in phonemes and u in speakers and len(phonemes[u]) == len(d)
    ]
    if not items:
        sys.exit("duration_train: no utterance has durations, phonemes and a manifest row")
    return items


def _rates(items: list[dict]) -> dict[str, list[float]]:
    by: dict[str, list[float]] = {}
    for it in items:
        it["rate"] = speaking_rate(sum(it["durations"]), it["ids"])
        by.setdefault(it["speaker"], []).append(it["rate"])
    return by


def _tempo(it: dict, rates: dict[str, list[float]], rng: random.Random | None = None) -> float:
    """An utterance's tempo input, measured on ANOTHER utterance of its speaker as a prompt would be: a random
    one (training), or their mean (rng None: scoring). A speaker with one utterance: its own."""
    own = rates[it["speaker"]]
    others = list(own)
    others.remove(it["rate"])
    others = others or own
    return rng.choice(others) if rng is not None else sum(others) / len(others)


def _batch(items: list[dict], rates: dict[str, list[float]], rng: random.Random | None) -> tuple[Tensor, ...]:
    """-> ids [B, N], mask [B, N], log_rate [B], flags [B, N, 2], target log(1 + d) [B, N], unit-end mask [B, N].
    rng None: the tempo is the speaker's mean over their other utterances (deterministic, for scoring)."""
    n = max(len(it["ids"]) for it in items)
    B = len(items)
    ids = torch.zeros(B, n, dtype=torch.long)
    mask = torch.zeros(B, n, dtype=torch.bool)
    ends = torch.zeros(B, n, dtype=torch.bool)
    flags = torch.zeros(B, n, 2)
    target = torch.zeros(B, n)
    log_rate = torch.zeros(B)
    for b, it in enumerate(items):
        k = len(it["ids"])
        ids[b, :k] = torch.tensor(it["ids"])
        mask[b, :k] = True
        last, _, fl = unit_targets(it["ids"])
        ends[b, :k], flags[b, :k] = last, fl
        target[b, :k] = torch.log1p(torch.tensor(it["durations"], dtype=torch.float))
        log_rate[b] = math.log(_tempo(it, rates, rng))
    return ids, mask, log_rate, flags, target, ends


def evaluate(model: DurationPredictor, items: list[dict], rates: dict[str, list[float]]) -> dict:
    """Mean absolute error per unit (frames) and mean |predicted - true| / true sentence length."""
    err, n, rel = 0.0, 0, []
    for it in items:
        pred = model.predict(it["ids"], _tempo(it, rates))
        last, _, _ = unit_targets(it["ids"])
        d = it["durations"]
        err += sum(abs(p - t) for p, t, e in zip(pred, d, last.tolist()) if e)
        n += int(last.sum())
        rel.append(abs(sum(pred) - sum(d)) / max(1, sum(d)))
    return {
        "unit_mae_frames": err / max(1, n),
        "length_error": sum(rel) / max(1, len(rel)),
        "utterances": len(items),
    }


def train(
    items: list[dict],
    cfg: DurationConfig,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 2e-3,
    holdout: float = 0.1,
    seed: int = 0,
    log=print,
) -> tuple[DurationPredictor, dict]:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    speakers = sorted({it["speaker"] for it in items})
    rng.shuffle(speakers)
    held = set(speakers[: int(round(holdout * len(speakers)))])
    tr = [it for it in items if it["speaker"] not in held]
    va = [it for it in items if it["speaker"] in held]
    rates = _rates(items)
    model = DurationPredictor(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(tr) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    by_len = sorted(tr, key=lambda it: len(it["ids"]))  # batches of similar lengths: little padding
    chunks = [by_len[i : i + batch_size] for i in range(0, len(by_len), batch_size)]
    for ep in range(epochs):
        model.train()
        rng.shuffle(chunks)
        tot, cnt = 0.0, 0
        for chunk in chunks:
            ids, mask, log_rate, flags, target, ends = _batch(chunk, rates, rng)
            pred = model(ids, mask, log_rate, flags)
            loss = ((pred - target) ** 2 * ends).sum() / ends.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot, cnt = tot + loss.item(), cnt + 1
        if ep % 10 == 9 or ep == epochs - 1:
            log(f"duration_train: epoch {ep + 1}/{epochs} loss {tot / max(1, cnt):.4f}")
    model.eval()
    metrics = {"train": evaluate(model, tr[:300], rates), "train_utterances": len(tr)}
    if va:
        metrics["holdout"] = evaluate(model, va, rates)
        metrics["holdout_speakers"] = len(held)
    return model, metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", required=True, help="latent store with durations.json + phonemes.json")
    ap.add_argument(
        "--manifest", action="append", required=True, help="manifest(s) naming each utterance's speaker"
    )
    ap.add_argument("--out", required=True, help="release folder to write (model.safetensors + config.json)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--holdout", type=float, default=0.1, help="fraction of speakers kept out and scored")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if not 0.0 <= args.holdout < 1.0:
        sys.exit("duration_train: --holdout must be in [0, 1)")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    items = load_items(Path(args.latents), args.manifest)
    model, metrics = train(items, DurationConfig(), epochs=args.epochs, holdout=args.holdout, seed=args.seed)
    aligner = load_aligner(args.latents)  # LATENTS/aligner.json (tts.durations): continuation prompts need it
    out = save_predictor(model, args.out, meta={"metrics": metrics}, aligner=aligner)
    print(f"duration_train: {json.dumps(metrics)}")
    print(f"duration_train: wrote {out} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
