"""Does the model's next frame come from the text or from the audio it has heard? (teacher-forced sampling)

    python recipes/lab/teacher_forced.py RELEASE --jobs eval/memorise/jobs.jsonl --latents data/latents \\
        --out-dir eval/tf/right [--wrong-text] [--items 12]
    python -m evaluation.run score --jobs eval/tf/right/jobs.jsonl --audio-dir eval/tf/right --sim none \\
        --out eval/tf/right_score

For each job (cross-sentence, the target's latents in the store under its id): the model reads the prompt and
the target's GROUND-TRUTH latents, and every target frame is sampled by the diffusion head from the hidden state
before it (no CFG), then decoded; so each frame is predicted from the true history. ``--wrong-text`` gives every
job the phonemes of the next job's sentence instead of its own. Whisper then says what the frames say: if the
target sentence is heard as well with the wrong text as with the right one, the model predicts the next frame
from the audio history alone and ignores the text (at 25 Hz, repeating the last frame already says the
sentence, 40 ms late). Writes each job's ``out`` wav into --out-dir, the jobs done (``jobs.jsonl``, to score)
and ``teacher_forced.jsonl`` (per job: the text used, the sampled latents' MSE to the ground truth).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tts.data import LatentStore  # noqa: E402
from tts.layout import MODALITY, SPACE_ID, generation_prefix  # noqa: E402
from tts.model import TTS  # noqa: E402


@torch.no_grad()
def teacher_forced(tts: TTS, store, job: dict, text: str, seed: int) -> tuple[torch.Tensor, float]:
    """-> (sampled target items [Tt, D] normalised, their MSE to the ground truth)."""
    lm = tts.lm
    ph = tts.frontend.encode(job["prompt_text"]) + [SPACE_ID] + tts.frontend.encode(text)
    prompt = tts.encode_prompt(tts.load_prompt(job["prompt_audio"]))  # [Tp, D]
    target = lm.normalize(MODALITY, store.get(job["id"]).to(prompt))  # [Tt, D]
    batch, _ = generation_prefix(lm, [ph], [torch.cat([prompt, target])], 1.0)
    hidden = lm(batch)[0]  # [N, C]; the state after item k predicts item k + 1
    n, tt = int(batch.lengths[0]), target.shape[0]
    cond = hidden[n - tt - 1 : n - 1]  # [Tt, C]: predicts target items 0 .. Tt-1
    g = torch.Generator().manual_seed(seed)
    z = lm.heads[MODALITY].sample(cond, steps=10, cfg=1.0, temperature=1.0, generator=g)
    return z, float(((z - target) ** 2).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("release")
    ap.add_argument("--jobs", required=True)
    ap.add_argument("--latents", default="data/latents")
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--wrong-text", action="store_true", help="phonemes of the next job's sentence")
    ap.add_argument("--items", type=int, default=0, help="first N jobs (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tts = TTS.from_pretrained(args.release)
    if tts.cfg.interleave:  # its sequences carry each target symbol's token before its frames
        raise SystemExit(
            f"{args.release}: an interleaved-layout model; this script builds prefix-layout sequences"
        )
    store = LatentStore(args.latents, patch=tts.cfg.patch)
    jobs = [json.loads(x) for x in Path(args.jobs).read_text().splitlines() if x.strip()]
    jobs = jobs[: args.items] if args.items else jobs
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))  # the jobs scored
    with open(args.out_dir / "teacher_forced.jsonl", "w") as log:
        for i, job in enumerate(jobs):
            text = jobs[(i + 1) % len(jobs)]["text"] if args.wrong_text else job["text"]
            z, mse = teacher_forced(tts, store, job, text, args.seed)
            sf.write(args.out_dir / job["out"], tts._decode_audio(list(z)), tts.sample_rate)
            log.write(json.dumps({"id": job["id"], "text_used": text, "mse": mse}) + "\n")
            print(f"{job['id']}: mse {mse:.3f}", flush=True)


if __name__ == "__main__":
    main()
