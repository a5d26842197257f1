"""Resynthesize each job's ground-truth recording through an audio VAE (encode -> decode): the reference row
that shows how much of a TTS system's WER / SIM is lost in the tokenizer + vocoder alone.

    python -m evaluation.resynth --jobs eval/demo/real_dev.jsonl --vae checkpoints/tts_demo/vae --out-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import soundfile as sf
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", required=True)
    ap.add_argument("--vae", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from vocoder_vae.model import AudioVAE

    vae = AudioVAE.from_pretrained(args.vae)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for line in Path(args.jobs).read_text().splitlines():
        job = json.loads(line)
        dst = out_dir / job["out"]
        if dst.exists():
            continue
        wav, sr = sf.read(job["ref_audio"], dtype="float32", always_2d=True)
        with torch.inference_mode():
            y = vae.decode(vae.encode(wav, sr)).numpy()
        tmp = dst.with_name(dst.name + ".tmp.wav")
        sf.write(tmp, y, vae.sample_rate)
        os.replace(tmp, dst)
        n += 1
    print(f"resynthesized {n} recordings into {out_dir}")


if __name__ == "__main__":
    main()
