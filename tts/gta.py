"""Ground-truth-aligned (GTA) latents: what a release's LM predicts for every frame of real utterances when it reads
the true history, paired with the audio of those frames, for fine-tuning the VAE's decoder on them.

The decoder was trained on the encoder's latents; at synthesis it renders the LM's samples, which are smoother
(a low diffusion temperature) and carry the LM's systematic errors. Tacotron 2 / HiFi-GAN fine-tune their vocoder
on teacher-forced predictions so it learns to render what the acoustic model actually emits; this is the same
step for LatentLM: one teacher-forced forward per utterance (the training layout: a cross-sentence prompt of the
same speaker, the interleaved script from the utterance's durations), then the release's diffusion head samples
every target frame from the hidden state before it, as decoding would (``head``, ``temperature``; the one-step
head carries the release's guidance, the reference head here runs its default steps without guidance).

    python -m tts.gta checkpoints/tts_demo --manifest data/real_voices/train.jsonl --latents data/latents_real \\
        --out data/gta_real.safetensors [--head one_step] [--temperature 0.3] [--seed 0]

Output (safetensors): per utterance ``z/<id>`` [T, D] predicted latents in the VAE's space and ``wav/<id>``
[T * hop] float32 audio at the VAE's rate (zero-padded to whole frames); the metadata names the release, head,
temperature and counts. ``vocoder_vae.train data.gta=FILE`` reads it. Only training rows: held-out speakers
never enter (the manifest is the training manifest).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tts.data import LatentStore, PromptTargetDataset, collate, load_audio
from tts.layout import MODALITY, training_batch
from tts.manifests import read_jsonl
from tts.model import TTS, TTSInputError
from tts.options import SynthesisOptions
from tts.store_files import phoneme_cache
from tts.train_batches import LayoutView
from vocoder_vae.audio import prepare


@torch.no_grad()
def predicted_latents(tts: TTS, item: dict, head: str, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """One ``PromptTargetDataset`` item -> the LM's sample for each of its target frames [Tt, D] (VAE space),
    each from the hidden state of the true history before it."""
    lm = tts.lm
    batch = training_batch(
        LayoutView(lm), collate([item]), p_uncond=0.0, latent_noise_scale=0.0, input_noise=0.0
    )
    hidden = lm(batch)[0, :-1]  # [N-1, C]: position i conditions item i+1
    lat = batch.modality[0, 1:] >= 0  # [N-1] the next item is a latent
    n_prompt = item["prompt_latents"].shape[0]
    target = lat & (lat.cumsum(0) > n_prompt)  # latents after the prompt's
    cond = hidden[target]  # [Tt, C]
    if cond.shape[0] != item["target_latents"].shape[0]:
        raise ValueError(f"{item['id']}: {cond.shape[0]} target positions for {item['target_latents'].shape[0]} frames")
    if head == "one_step":
        z = tts.one_step[0].sample(cond, steps=1, temperature=temperature, generator=generator)
    else:
        steps = SynthesisOptions().steps  # the reference head's default
        z = lm.heads[MODALITY].sample(cond, steps=steps, temperature=temperature, generator=generator)
    return lm.denormalize(MODALITY, z.float())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("release")
    ap.add_argument("--manifest", required=True, help="training manifest (JSONL) whose latents are in --latents")
    ap.add_argument("--latents", required=True, help="the latent store (tts.extract) with durations.json")
    ap.add_argument("--out", required=True, help="output .safetensors")
    ap.add_argument("--head", choices=["one_step", "reference"], default="one_step")
    ap.add_argument("--temperature", type=float, default=None, help="default: the release's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="first N rows only (0 = all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        print(f"error: --out must end in .safetensors, got {out}", file=sys.stderr)
        return 2
    try:
        rows = read_jsonl(args.manifest)
        tts = TTS.from_pretrained(args.release)
        if args.head == "one_step" and tts.one_step is None:
            raise TTSInputError(f"{args.release} has no one-step head; use --head reference")
        store = LatentStore(args.latents)
        dur_path = Path(args.latents) / "durations.json"
        if tts.cfg.interleave and not dur_path.is_file():
            raise ValueError(f"{args.release} is interleaved: it needs {dur_path} (python -m tts.durations)")
        durations = json.loads(dur_path.read_text()) if tts.cfg.interleave else None
        ph = phoneme_cache(rows, Path(args.latents), tts.frontend)
        ds = PromptTargetDataset(rows, store, ph, p_prefix=0.0, seed=args.seed, durations=durations)
    except (TTSInputError, ValueError, OSError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    temperature = tts.cfg.temperature if args.temperature is None else args.temperature
    by_id = {r.id: r for r in rows}
    hop, sr = tts.vae.hop, tts.vae.sample_rate
    tensors: dict[str, torch.Tensor] = {}
    g = torch.Generator().manual_seed(args.seed)
    n = len(ds) if not args.limit else min(args.limit, len(ds))
    for i in range(n):
        item = ds[i]
        start = item["prompt_latents"].shape[0] if item["mode"] == "prefix" else 0  # prefix prompts: the rest
        z = predicted_latents(tts, item, args.head, temperature, g)  # [Tt, D]
        wav, wav_sr = load_audio(by_id[item["id"]])
        x = prepare(wav, wav_sr, sr).numpy()[start * hop : (start + z.shape[0]) * hop]
        x = np.pad(x, (0, z.shape[0] * hop - len(x)))
        tensors[f"z/{item['id']}"] = z.contiguous()
        tensors[f"wav/{item['id']}"] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{n}", flush=True)
    meta = dict(
        release=str(args.release), head=args.head, temperature=str(temperature), seed=str(args.seed),
        utterances=str(n), hop=str(hop), sample_rate=str(sr),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(out)
    frames = sum(t.shape[0] for k, t in tensors.items() if k.startswith("z/"))
    print(f"{out}: {n} utterances, {frames} frames ({frames / tts.cfg.frame_rate / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
