"""Distil a TTS release's diffusion head into a one-step head (latentlm/one_step.py) and write a release with it.

    python -m tts.distill_head RELEASE --manifest TRAIN.jsonl --out OUT_RELEASE [--jobs 400] [--draws 8]
        [--train-steps 3000] [--record-temperature T] [--on-policy] [--default] [--threads 1] [--seed 0]

1. Cross-sentence jobs from the manifest (tts.real_voices.dev_jobs: per speaker a prompt and up to
   ``--per-speaker`` other utterances' texts; speakers with one utterance give none), at most ``--jobs`` of them,
   in a seeded order.
   Use training speakers only: the dev set's speakers must stay unseen.
2. Decode them with the release's reference head (its cfg_scale; its temperature, or ``--record-temperature``:
   the releases so far recorded at 0.7 and sample at 0.3) through a ``HeadRecorder``:
   every (cond, uncond) trunk state the head is asked to sample from is kept (on-policy states, drift included).
   ``--on-policy``: the latents are the release's one-step head's samples instead (``StudentRecorder``), so the
   states are those the student's own decoding visits (measured for the demo release in session 24: no gain over
   the teacher's states; docs/experiments/one-step-head.md).
   Saved to OUT/.distill/states.safetensors with what made them (the teacher's weights and config, the jobs'
   manifests and settings), so a rerun of the same distillation skips this step; states from another teacher or
   job set are recorded again, never reused.
3. ``teacher_targets`` + ``distill`` (latentlm/distill.py), then OUT = the release (less any ``step_bridge/``:
   fit one to the new head with ``tts.train_bridge``) + ``one_step_head/`` (the
   student and its OneStepConfig; ``--default`` makes it the release's default head). The report (held-out MSE
   against the teacher, beside the teacher's own one-step estimate) goes into the head's config meta.
Measure the result on the real-voice dev set with ``BATCH_ARGS="--head one_step"
recipes/demo/evaluate_real_voices.sh OUT ...`` before making it a release's default.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from evaluation.whisper_base import sha256_file
from latentlm.bridge import DIRNAME as BRIDGE_DIRNAME
from latentlm.checkpoint import RELEASE_CONFIG, RELEASE_WEIGHTS
from latentlm.distill import HeadRecorder, StudentRecorder, distill, teacher_targets
from latentlm.one_step import DIRNAME, OneStepConfig, save_one_step
from tts.layout import MODALITY
from tts.manifests import read_jsonl
from tts.model import TTS, TTSInputError
from tts.options import SynthesisOptions
from tts.real_voices import dev_jobs


def distill_jobs(
    manifests: list[str], n: int, seed: int, per_speaker: int = 3, max_target_seconds: float = 12.0
) -> list[dict]:
    rows = [u for m in manifests for u in read_jsonl(m)]
    jobs = dev_jobs(rows, targets_per_speaker=per_speaker, max_target_seconds=max_target_seconds)
    random.Random(seed).shuffle(jobs)
    return jobs[:n]


def states_key(
    release: Path, manifests: list[str], jobs: int, per_speaker: int, batch_size: int, seed: int,
    record_temperature: float | None = None, on_policy: bool = False,
) -> dict[str, str]:
    """What recorded states depend on, as safetensors metadata: the teacher (its weights and its config: the
    temperature and guidance it decodes with, the temperature it records at when given) and the jobs (the
    manifests' contents and the job settings)."""
    teacher = {name: sha256_file(release / name) for name in (RELEASE_WEIGHTS, RELEASE_CONFIG)}
    if record_temperature is not None:
        teacher["record_temperature"] = record_temperature
    if on_policy:  # the trajectory is the release's one-step head's (in its weights, one_step_head/)
        teacher["on_policy"] = sha256_file(release / DIRNAME / RELEASE_WEIGHTS)
    settings = {"manifests": [sha256_file(Path(m)) for m in manifests], "jobs": jobs, "per_speaker": per_speaker,
                "batch_size": batch_size, "seed": seed}
    return {"teacher": json.dumps(teacher, sort_keys=True), "jobs": json.dumps(settings, sort_keys=True)}


def load_for_recording(src: Path, threads: int, seed: int) -> TTS | None:
    """The release a recording CLI decodes with (``threads`` torch threads, seeded); None after printing why it
    cannot be loaded."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        return TTS.from_pretrained(src)
    except TTSInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def reuse_or_record(
    cache: Path, key: dict[str, str], record: Callable[[], dict[str, torch.Tensor] | None], kind: str, other: str
) -> dict[str, torch.Tensor] | None:
    """The tensors saved at ``cache`` when its metadata equals ``key`` (what made them: a rerun after an
    interruption skips the slow recording); else ``record()``'s, saved there with ``key``. None when ``record``
    gives none (nothing is saved). ``kind`` names them in the log; ``other`` says what else could have made them."""
    if cache.is_file():
        with safe_open(str(cache), "pt") as f:
            same = (f.metadata() or {}) == key
        if same:
            data = load_file(str(cache))
            print(f"{kind}: {len(next(iter(data.values())))} from {cache}")
            return data
        print(f"{kind} in {cache} are from {other}: recording again", flush=True)
    data = record()
    if data is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in data.items()}, str(cache), metadata=key)
    return data


def copy_release(src: Path, out: Path, leave: tuple[str, ...]) -> None:
    """Copy the release ``src`` into ``out`` but for the entries named in ``leave`` (nothing when they are the
    same folder)."""
    if out.resolve() == src.resolve():
        return
    out.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.name in leave:
            continue
        if p.is_dir():
            shutil.copytree(p, out / p.name, dirs_exist_ok=True)
        else:
            shutil.copy2(p, out / p.name)


def no_jobs() -> None:
    print("no cross-sentence jobs in the manifests (no speaker has two utterances)", file=sys.stderr)


def decode_jobs(
    tts: TTS, jobs: list[dict], batch_size: int, seed: int, temperature: float | None, progress: Callable[[], str],
    **settings,
) -> None:
    """Decode the cross-sentence ``jobs`` (``distill_jobs``) ``batch_size`` at a time, job i with seed ``seed`` + i,
    at ``temperature`` (None: the release's) and ``settings`` (e.g. head="reference"), failures skipped; after
    each batch print how far, with ``progress()``'s count of what was recorded (the recording CLIs' decoding)."""
    for a in range(0, len(jobs), batch_size):
        part = [
            {"text": j["text"], "prompt_audio": j["prompt_audio"], "prompt_text": j.get("prompt_text"),
             "seed": seed + a + k, **settings, **({} if temperature is None else {"temperature": temperature})}
            for k, j in enumerate(jobs[a : a + batch_size])
        ]
        tts.synthesize_batch(part, batch_size=batch_size, on_error="return")
        print(f"recorded {min(a + batch_size, len(jobs))}/{len(jobs)} jobs, {progress()}", flush=True)


def record_states(
    tts: TTS, jobs: list[dict], batch_size: int, seed: int, temperature: float | None = None,
    on_policy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``jobs`` with the reference head (at ``temperature``, default the release's) and return the
    recorded cond, uncond [N, C]. ``on_policy``: every latent is the release's one-step head's sample instead
    (``StudentRecorder``: the states its own decoding visits, with the unconditional row the teacher needs)."""
    teacher = tts.lm.heads[MODALITY]
    recorder = StudentRecorder(teacher, tts.one_step[0]) if on_policy else HeadRecorder(teacher)
    tts.lm.heads[MODALITY] = recorder
    try:
        states = lambda: f"{sum(len(c) for c in recorder.conds)} states"  # noqa: E731
        decode_jobs(tts, jobs, batch_size, seed, temperature, states, head="reference")
    finally:
        tts.lm.heads[MODALITY] = teacher
    return recorder.states()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Distil a TTS release's diffusion head into a one-step head.")
    ap.add_argument("release", help="TTS release directory (the teacher)")
    ap.add_argument("--manifest", action="append", required=True, help="training manifest (JSONL), repeatable")
    ap.add_argument("--out", required=True, help="output release directory (the release + one_step_head/)")
    ap.add_argument("--jobs", type=int, default=400, help="cross-sentence jobs decoded for states (at most)")
    ap.add_argument("--per-speaker", type=int, default=3, help="jobs per training speaker (target utterances)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--draws", type=int, default=8, help="noise draws per recorded state")
    ap.add_argument("--max-temperature", type=float, default=1.0)
    ap.add_argument(
        "--record-temperature", type=float, default=None,
        help="the teacher decodes the jobs at this temperature while its states are recorded (default: the release's)",
    )
    ap.add_argument(
        "--on-policy", action="store_true",
        help="record the states the release's own one-step head visits (DAgger-style; the release needs one)",
    )
    ap.add_argument("--train-steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--default", action="store_true", help="make the one-step head the release's default")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    src, out = Path(args.release), Path(args.out)
    counts = ("jobs", "per_speaker", "batch_size", "draws", "train_steps", "threads")
    problem = next((f"--{k.replace('_', '-')} must be >= 1" for k in counts if getattr(args, k) < 1), None)
    if problem is None and not args.max_temperature > 0:
        problem = "--max-temperature must be positive"
    if problem is None and args.record_temperature is not None and not args.record_temperature >= 0:
        problem = "--record-temperature must be >= 0"
    if problem is None and out.resolve() == src.resolve():
        problem = "--out must differ from the release (it is copied there)"
    if problem is None:
        missing = [m for m in args.manifest if not Path(m).is_file()]
        problem = f"no manifest file {missing[0]}" if missing else None
    if problem is not None:  # everything that can be checked is, before the release is loaded
        print(f"error: {problem}", file=sys.stderr)
        return 2
    tts = load_for_recording(src, args.threads, args.seed)
    if tts is None:
        return 2
    if args.on_policy and tts.one_step is None:
        print(f"error: --on-policy: {src} has no one-step head (one_step_head/) to decode with", file=sys.stderr)
        return 2
    key = states_key(
        src, args.manifest, args.jobs, args.per_speaker, args.batch_size, args.seed, args.record_temperature,
        args.on_policy,
    )

    def record() -> dict[str, torch.Tensor] | None:
        jobs = distill_jobs(args.manifest, args.jobs, args.seed, args.per_speaker)
        if not jobs:
            return None
        cond, uncond = record_states(
            tts, jobs, args.batch_size, args.seed, args.record_temperature, args.on_policy
        )
        return {"cond": cond, "uncond": uncond}

    st = reuse_or_record(out / ".distill" / "states.safetensors", key, record, "states", "another teacher or job set")
    if st is None:
        no_jobs()
        return 2
    cond, uncond = st["cond"], st["uncond"]
    g = torch.Generator().manual_seed(args.seed)
    teacher = tts.lm.heads[MODALITY]
    steps = SynthesisOptions().steps  # the reference head's default: what a user's reference decode runs
    data = teacher_targets(
        teacher, cond, uncond, cfg_scale=tts.cfg.cfg_scale, steps=steps, draws=args.draws,
        max_temperature=args.max_temperature, generator=g,
    )
    print(f"targets: {data.x0.shape[0]} pairs from {data.states} states", flush=True)
    student, report = distill(
        teacher, data, train_steps=args.train_steps, lr=args.lr, generator=g, log_every=max(1, args.train_steps // 10)
    )
    print(json.dumps(asdict(report)))
    # the release as it is, without an old one-step head or a step bridge fitted with it (tts.train_bridge)
    copy_release(src, out, leave=(DIRNAME, ".distill", BRIDGE_DIRNAME))
    cfg = OneStepConfig(
        head=teacher.cfg, modality=MODALITY, cfg_scale=tts.cfg.cfg_scale, teacher_steps=steps,
        max_temperature=args.max_temperature, default=args.default,
    )
    meta = {"teacher": str(src), "states": int(data.states), "draws": args.draws, "report": asdict(report)}
    save_one_step(out / DIRNAME, student, cfg, meta=meta)
    print(f"wrote {out / DIRNAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
