"""How much best-of-N synthesis (``takes``) can buy, and how much of it a judge finds (docs/experiments/real-voices.md,
session 18). Three steps:

    # 1. every take of every job (seed S), each take's audio in OUT/take{k}/, the takes' latents in OUT/takes.pt
    python recipes/lab/takes_study.py decode --release checkpoints/tts_demo --jobs data/real_voices/dev_jobs.jsonl \
        --takes 6 --seed 0 --out runs/takes_study
    # 2. Whisper + SIM on each take's folder (the evaluation's own scorer)
    for k in 0 1 2 3 4 5; do python -m evaluation.run score --jobs data/real_voices/dev_jobs.jsonl \
        --audio-dir runs/takes_study/take$k --out runs/takes_study/score$k; done
    # 3. words heard when the best of n takes is kept (mean over every n-subset of the takes), per judge
    python recipes/lab/takes_study.py curves --release checkpoints/tts_demo --out runs/takes_study

Judges: ``direct`` (the aligner on the generated latents), ``heard`` (on the latents of the decoded audio, what
``TTS._best_take`` does), and ``oracle`` (Whisper itself: the ceiling, never a judge, since Whisper scores).

    # rescoring earlier evaluations (OUT/seed*/tts/utterances.jsonl, one take per seed) with the aligner
    python recipes/lab/takes_study.py rescore --release checkpoints/tts_demo eval/real_voices/NAME ...
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tts.model import TTS


def heard_words(u: dict) -> int:
    c = u["wer_counts"]
    return c["ref_words"] - c["sub"] - c["del"]


def decode(args) -> None:
    tts = TTS.from_pretrained(args.release)
    jobs = [json.loads(line) for line in open(args.jobs)]
    seen: list[tuple[list, list[int]]] = []

    def record(takes, row):  # keep every take, let the first one through
        seen.append(([tts._vae_frames(t) if t else None for t in takes], list(row.script)))
        return 0, [0.0] * len(takes)

    tts._best_take = record
    out, store = Path(args.out), {}
    pause = np.zeros(int(tts.cfg.pause_seconds * tts.sample_rate), np.float32)
    for a in range(0, len(jobs), 4):
        part = jobs[a : a + 4]
        seen.clear()
        reqs = [dict(text=j["text"], prompt_audio=j["prompt_audio"], prompt_text=j.get("prompt_text"),
                     seed=args.seed, takes=args.takes) for j in part]
        results = tts.synthesize_batch(reqs, batch_size=4 * args.takes)
        i = 0
        for j, r in zip(part, results):
            sents = seen[i : i + len(r.info["frames"])]
            i += len(sents)
            store[j["id"]] = sents
            for k in range(args.takes):
                pieces = []
                for s, (frames, _) in enumerate(sents):
                    pieces += [pause] * bool(s) + [tts.vae.decode(frames[k]).cpu().numpy().astype(np.float32)]
                os.makedirs(out / f"take{k}", exist_ok=True)
                sf.write(out / f"take{k}" / j["out"], np.concatenate(pieces), tts.sample_rate, subtype="PCM_16")
    torch.save(store, out / "takes.pt")


def curves(args) -> None:
    tts = TTS.from_pretrained(args.release)
    out = Path(args.out)
    store = torch.load(out / "takes.pt", weights_only=False)  # our own file, written by decode
    n_takes = len(next(iter(store.values()))[0][0])
    utt = [{json.loads(x)["id"]: json.loads(x) for x in open(out / f"score{k}" / "utterances.jsonl")}
           for k in range(n_takes)]
    judges: dict[str, dict] = {"direct": {}, "heard": {}}
    for jid, sents in store.items():
        for k in range(n_takes):
            for name, view in (("direct", lambda z: z), ("heard", lambda z: tts.vae.encode(tts.vae.decode(z), tts.sample_rate))):
                zs = [view(fr[k]) for fr, _ in sents]
                judges[name][(jid, k)] = sum(tts.aligner.loglik(z, sc) * len(z) for z, (_, sc) in zip(zs, sents)) / sum(
                    len(z) for z in zs)
    ids = list(store)
    n_ref = sum(utt[0][j]["wer_counts"]["ref_words"] for j in ids)
    print("words heard per take:", [round(100 * sum(heard_words(utt[k][j]) for j in ids) / n_ref, 1) for k in range(n_takes)])
    print("| takes | " + " | ".join([*judges, "oracle (Whisper)"]) + " |\n|---|" + "---|" * (len(judges) + 1))
    for n in range(1, n_takes + 1):
        row = []
        for name in [*judges, "oracle"]:
            vals = []
            for sub in itertools.combinations(range(n_takes), n):
                if name == "oracle":
                    picks = {j: max(sub, key=lambda k: heard_words(utt[k][j])) for j in ids}
                else:
                    picks = {j: max(sub, key=lambda k: judges[name][(j, k)]) for j in ids}
                vals.append(100 * sum(heard_words(utt[picks[j]][j]) for j in ids) / n_ref)
            row.append(f"{np.mean(vals):.1f}")
        print(f"| {n} | " + " | ".join(row) + " |")


def rescore(args) -> None:
    tts = TTS.from_pretrained(args.release)
    for system in args.systems:
        by: dict[str, list] = {}
        for f in sorted(glob.glob(f"{system}/**/seed*/tts/utterances.jsonl", recursive=True)):
            for line in open(f):
                u = json.loads(line)
                if not u.get("error"):
                    by.setdefault(u["id"], []).append(u)
        jobs = [us for us in by.values() if len(us) == len(max(by.values(), key=len))]
        n_ref = sum(us[0]["wer_counts"]["ref_words"] for us in jobs)
        mean = np.mean([sum(heard_words(us[s]) for us in jobs) for s in range(len(jobs[0]))]) / n_ref * 100
        picked = oracle = 0
        for us in jobs:
            scores = []
            for u in us:
                w, sr = sf.read(u["audio"], dtype="float32")
                scores.append(tts.aligner.loglik(tts.vae.encode(torch.from_numpy(w), sr), tts.frontend.encode(u["ref"])))
            picked += heard_words(us[int(np.argmax(scores))])
            oracle += max(heard_words(u) for u in us)
        print(f"{system}: seeds' mean {mean:.1f}, aligner's pick {100 * picked / n_ref:.1f}, "
              f"Whisper's pick (ceiling) {100 * oracle / n_ref:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decode")
    d.add_argument("--release", default="checkpoints/tts_demo")
    d.add_argument("--jobs", required=True)
    d.add_argument("--takes", type=int, default=6)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", required=True)
    c = sub.add_parser("curves")
    c.add_argument("--release", default="checkpoints/tts_demo")
    c.add_argument("--out", required=True)
    r = sub.add_parser("rescore")
    r.add_argument("--release", default="checkpoints/tts_demo")
    r.add_argument("systems", nargs="+", help="evaluation folders with seed*/tts/utterances.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    {"decode": decode, "curves": curves, "rescore": rescore}[args.cmd](args)


if __name__ == "__main__":
    main()
