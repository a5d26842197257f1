"""Train the take verifier (tts/verifier.py: a CTC phone recogniser over VAE latents) on a latent store.

    python -m tts.verifier_train --latents data/latents_mix --manifest data/real_voices_mix/train.jsonl \
        --heldout data/real_voices/heldout.txt --dev data/real_voices/dev.jsonl --run runs/verifier \
        --minutes 30 --out runs/verifier/release
    python -m tts.export ... / copy runs/verifier/release to RELEASE/verifier   (best-of-N synthesis reads it)

The latents must come from the release's own VAE (the store tts.train read). Phoneme ids come from
LATENTS/phonemes.json (computed for rows that lack them, tts.store_files.phoneme_cache). ``--heldout`` speakers are
refused in training (as tts.train does): the verifier must not have heard the dev voices either. Training adds
Gaussian noise to the normalised latents (std drawn per utterance up to ``--noise``) and masks short spans of
frames, so that it also reads the LM's samples, which are smoother than an encoder's latents. Batches hold up to
``--batch-frames`` frames of similar-length utterances. Rerunning the same command resumes RUN/last.pt exactly
(model, optimiser, step, generators); the cosine schedule runs to ``--max-steps``, the run stops at ``--minutes``
or there, and writes the release (with the dev set's phone error rate and CTC loss in its meta) to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from latentlm.checkpoint import load_training_state, rng_state, save_training_state, set_rng_state
from tts.verifier import PhoneVerifier, VerifierConfig, phone_targets, save_verifier


def load_items(latents: Path, manifests: list[str], heldout: set[str], language: str) -> list[dict]:
    """[{id, speaker, targets, frames}] of every manifest row with latents and phone targets."""
    from tts.data import LatentStore
    from tts.frontend import Frontend
    from tts.manifests import read_jsonl
    from tts.store_files import phoneme_cache

    rows = [r for m in manifests for r in read_jsonl(m)]
    bad = sorted({r.speaker for r in rows if r.speaker in heldout})
    if bad:
        sys.exit(f"verifier_train: held-out speakers in the training manifests: {bad[:5]}")
    store = LatentStore(latents)
    rows = [r for r in rows if r.id in store]
    ids = phoneme_cache(rows, latents, Frontend(language))
    items = []
    for r in rows:
        if r.id in ids and (t := phone_targets(ids[r.id])) and store.frames(r.id) * 2 >= 2 * len(t) + 1:
            items.append({"id": r.id, "speaker": r.speaker, "targets": t, "frames": store.frames(r.id)})
    return items


def batches(items: list[dict], max_frames: int, rng: random.Random) -> list[list[dict]]:
    """Length-sorted buckets of at most ``max_frames`` padded frames, shuffled."""
    order = sorted(items, key=lambda it: it["frames"] + rng.random())
    out, cur = [], []
    for it in order:
        if cur and (len(cur) + 1) * max(it["frames"], cur[-1]["frames"]) > max_frames:
            out.append(cur)
            cur = []
        cur.append(it)
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def collate(store, batch: list[dict], noise: float, mask_frames: int, gen: torch.Generator | None):
    """-> (latents [B, T, D], lengths [B], targets); noise and span masks (on the raw latents' scale per dim,
    in units of each utterance's std) only when ``gen`` is given (training)."""
    zs = []
    for it in batch:
        z = store.get(it["id"]).float()  # [T, D]
        if gen is not None:
            std = z.std(0, keepdim=True).clamp(min=1e-3)
            z = z + torch.randn(z.shape, generator=gen) * std * noise * float(torch.rand((), generator=gen))
            T = z.shape[0]
            for _ in range(T // 50):  # about one short span per 2 s
                w = int(torch.randint(1, mask_frames + 1, (), generator=gen))
                s = int(torch.randint(0, max(1, T - w), (), generator=gen))
                z[s : s + w] = z.mean(0)
        zs.append(z)
    lengths = torch.tensor([z.shape[0] for z in zs])
    return torch.nn.utils.rnn.pad_sequence(zs, batch_first=True), lengths, [it["targets"] for it in batch]


def edit_distance(a: list[int], b: list[int]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def greedy(logp: Tensor, length: int, blank: int) -> list[int]:
    """[K, V + 1] log-probs of one utterance -> its collapsed best path."""
    best = logp[:length].argmax(-1).tolist()
    return [s for i, s in enumerate(best) if s != blank and (i == 0 or s != best[i - 1])]


@torch.no_grad()
def evaluate(model: PhoneVerifier, store, items: list[dict], max_frames: int) -> dict:
    """Phone error rate of the greedy read-out and mean CTC NLL per phone over ``items``."""
    model.eval()
    errs = n = 0
    nll = []
    for b in batches(items, max_frames, random.Random(0)):
        x, lengths, targets = collate(store, b, 0.0, 0, None)
        logp = model(x, lengths)
        nll += model.ctc(x, lengths, targets).tolist()
        for k, t in enumerate(targets):
            errs += edit_distance(greedy(logp[k], int(lengths[k]) * model.cfg.upsample, model.cfg.n_symbols), t)
            n += len(t)
    model.train()
    finite = [v for v in nll if math.isfinite(v)]
    return {"per": errs / max(n, 1), "nll": sum(finite) / max(len(finite), 1), "utterances": len(items)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", required=True, help="latent store of the release's VAE (tts.extract)")
    ap.add_argument("--manifest", action="append", required=True, help="training manifest(s)")
    ap.add_argument("--heldout", help="heldout.txt of tts.real_voices: these speakers are refused")
    ap.add_argument("--dev", help="a manifest of held-out speakers, scored at the end (phone error rate)")
    ap.add_argument("--run", required=True, help="run folder (last.pt: resumable)")
    ap.add_argument("--out", required=True, help="release folder to write (model.safetensors + config.json)")
    ap.add_argument("--language", default="en-us")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--max-steps", type=int, default=4000)
    ap.add_argument("--batch-frames", type=int, default=6000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--noise", type=float, default=0.5, help="max input noise std (x the latents' std)")
    ap.add_argument("--mask-frames", type=int, default=4, help="longest masked span (frames)")
    ap.add_argument("--channels", type=int, default=VerifierConfig.channels)
    ap.add_argument("--layers", type=int, default=VerifierConfig.layers)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tts.data import LatentStore
    from tts.real_voices import read_heldout

    latents = Path(args.latents)
    heldout = read_heldout(args.heldout) if args.heldout else set()
    items = load_items(latents, args.manifest, heldout, args.language)
    if not items:
        sys.exit("verifier_train: no training utterance has latents and phonemes")
    store = LatentStore(latents)
    dim = store.get(items[0]["id"]).shape[1]
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "last.pt"
    cfg = VerifierConfig(latent_dim=dim, channels=args.channels, layers=args.layers)
    torch.manual_seed(args.seed)
    model = PhoneVerifier(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(s, args.max_steps) / args.max_steps))
    )
    step, epoch, done_in_epoch = 0, 0, 0
    gen = torch.Generator().manual_seed(args.seed)
    if ckpt.is_file():
        st = load_training_state(ckpt)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        step, epoch, done_in_epoch = st["step"], st["epoch"], st["done_in_epoch"]
        gen.set_state(st["gen"])
        set_rng_state(st["rng"])
        print(f"verifier_train: resuming at step {step}", flush=True)
    n_par = sum(p.numel() for p in model.parameters())
    print(f"verifier_train: {n_par / 1e6:.2f}M params, {len(items)} utterances, {dim}-d latents", flush=True)

    def save() -> None:
        save_training_state(ckpt, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "step": step, "epoch": epoch, "done_in_epoch": done_in_epoch, "gen": gen.get_state(), "rng": rng_state(),
        })

    t0, losses = time.time(), []
    model.train()
    while step < args.max_steps and time.time() - t0 < args.minutes * 60:
        plan = batches(items, args.batch_frames, random.Random(args.seed * 1000 + epoch))
        for b in plan[done_in_epoch:]:
            x, lengths, targets = collate(store, b, args.noise, args.mask_frames, gen)
            loss = model.ctc(x, lengths, targets)
            loss = loss[torch.isfinite(loss)].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step, done_in_epoch = step + 1, done_in_epoch + 1
            losses.append(loss.item())
            if step % 50 == 0:
                print(f"step {step} epoch {epoch} ctc {sum(losses) / len(losses):.3f} lr {sched.get_last_lr()[0]:.2e} "
                      f"({time.time() - t0:.0f} s)", flush=True)
                losses = []
            if step % 200 == 0:
                save()
            if step >= args.max_steps or time.time() - t0 >= args.minutes * 60:
                break
        else:
            epoch, done_in_epoch = epoch + 1, 0
    save()
    meta = {"steps": step, "train_utterances": len(items), "manifests": args.manifest}
    if args.dev:
        dev = load_items(latents, [args.dev], set(), args.language)
        meta["dev"] = evaluate(model, store, dev, args.batch_frames)
        print(f"verifier_train: dev {meta['dev']}", flush=True)
    save_verifier(model, args.out, meta=meta)
    print(f"verifier_train: wrote {args.out} at step {step}", flush=True)


if __name__ == "__main__":
    main()
