"""Where is the voice lost? SIM to the prompt of the recording, its VAE resynthesis and the LM's teacher-forced samples.

    python -m tts.durations --latents data/latents_dev --manifest data/real_voices/dev.jsonl \\
        --aligner RELEASE/duration                    # after tts.extract of dev.jsonl into data/latents_dev
    python recipes/lab/voice_sim.py RELEASE --jobs data/real_voices/dev_jobs.jsonl \\
        --manifest data/real_voices/dev.jsonl --latents data/latents_dev [--head one_step] [--temperature 0.3]

For every job's target utterance: the recording, the VAE's resynthesis of it, and the frames the release's
diffusion head samples from the hidden state of the TRUE history (tts.gta.predicted_latents: the training
layout, a cross-sentence prompt of the same speaker, the interleaved script from the utterance's durations),
decoded by the release's VAE; each scored with resemblyzer against the job's prompt recording. Free-running
synthesis (evaluation.run score) adds the drift of its own history; the teacher-forced row does not, so
teacher-forced << resynthesis says the next-frame prediction itself loses the voice, and free-running <<
teacher-forced says drift does. Prints the mean SIM of each row and the SIM of teacher-forced to resynthesis.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from evaluation.speaker import ResemblyzerSIM, cosine  # noqa: E402
from tts.data import LatentStore, PromptTargetDataset, load_audio  # noqa: E402
from tts.gta import predicted_latents  # noqa: E402
from tts.manifests import read_jsonl  # noqa: E402
from tts.model import TTS  # noqa: E402
from tts.store_files import phoneme_cache  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("release")
    ap.add_argument("--jobs", required=True, help="evaluation jobs (tts.real_voices' dev_jobs.jsonl)")
    ap.add_argument("--manifest", required=True, help="manifest holding the jobs' targets (dev.jsonl)")
    ap.add_argument("--latents", required=True, help="latent store of the manifest, with durations.json")
    ap.add_argument("--head", choices=["one_step", "reference"], default="one_step")
    ap.add_argument("--temperature", type=float, default=None, help="default: the release's")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tts = TTS.from_pretrained(args.release)
    if args.head == "one_step" and tts.one_step is None:
        sys.exit(f"{args.release} has no one-step head: use --head reference")
    temperature = tts.cfg.temperature if args.temperature is None else args.temperature
    rows = read_jsonl(args.manifest)
    store = LatentStore(args.latents)
    durations = json.loads((Path(args.latents) / "durations.json").read_text())
    ds = PromptTargetDataset(rows, store, phoneme_cache(rows, Path(args.latents), tts.frontend), p_prefix=0.0,
                             seed=args.seed, durations=durations)
    index = {r.id: i for i, r in enumerate(ds.rows)}
    by_id = {r.id: r for r in rows}
    jobs = [json.loads(line) for line in Path(args.jobs).read_text().splitlines() if line.strip()]
    sim, sr, g = ResemblyzerSIM(), tts.vae.sample_rate, torch.Generator().manual_seed(args.seed)
    scores: dict[str, list[float]] = {"recording": [], "resynthesis": [], "teacher-forced": [], "tf_vs_resynth": []}
    for job in jobs:
        if job["id"] not in index:
            sys.exit(f"job {job['id']}: no latents/durations in {args.latents}")
        x, xsr = load_audio(by_id[job["id"]])
        z = predicted_latents(tts, ds[index[job["id"]]], args.head, temperature, g)  # [Tt, D]
        audio = {
            "recording": (x, xsr),
            "resynthesis": (tts.vae.decode(tts.vae.encode(x, xsr)).numpy(), sr),
            "teacher-forced": (tts.vae.decode(z).numpy(), sr),
        }
        prompt = sim.embed([job["prompt_audio"]])[0]
        emb = {k: sim.embed([w], sample_rate=r)[0] for k, (w, r) in audio.items()}
        for k, e in emb.items():
            scores[k].append(cosine(e, prompt))
        scores["tf_vs_resynth"].append(cosine(emb["teacher-forced"], emb["resynthesis"]))
    print(f"{args.release}: {len(jobs)} jobs, head {args.head}, temperature {temperature}")
    for k, v in scores.items():
        print(f"  {k:16s} SIM {np.mean(v):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
