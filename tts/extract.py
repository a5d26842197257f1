"""Encode a manifest's audio into latent shards with the audio VAE (resumable, splittable across ranks).

    python -m tts.extract --manifest data/corpus/train.jsonl --vae checkpoints/vae_small --out data/latents
    torchrun --nproc_per_node 4 -m tts.extract ...      # each rank encodes every world_size-th utterance

Re-running skips utterances already in the store. The latent store (tts.data.LatentStore) merges the ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from tts.data import extract_latents
from tts.manifests import read_jsonl


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", action="append", required=True, help="JSONL manifest (repeatable)")
    ap.add_argument("--vae", required=True, help="audio VAE release folder")
    ap.add_argument("--out", required=True, help="latent store folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--rank", type=int, default=int(os.environ.get("RANK", 0)))
    ap.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", 1)))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from vocoder_vae.model import AudioVAE

    vae = AudioVAE.from_pretrained(args.vae, device=args.device)
    rows = [r for m in args.manifest for r in read_jsonl(m)]
    with torch.inference_mode():
        n = extract_latents(
            rows, vae, args.out, shard_size=args.shard_size, rank=args.rank, world_size=args.world_size
        )
    print(f"rank {args.rank}/{args.world_size}: encoded {n} new utterances into {args.out}")
    failed = json.loads((Path(args.out) / f"failures-r{args.rank:03d}.json").read_text())
    for uid, reason in failed.items():
        print(f"failed {uid}: {reason}", file=sys.stderr)
    if failed:
        sys.exit(f"{len(failed)} utterances could not be encoded (listed above); rerun to retry them")


if __name__ == "__main__":
    main()
