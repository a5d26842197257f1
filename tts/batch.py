"""Resumable batch synthesis from a job list (calls only the public TTS API).

    python -m tts.batch JOBS.jsonl|JOBS.tsv --checkpoint DIR --out-dir DIR [--batch-size 8 --steps 10 --cfg CFG]

Job rows (the format evaluation/librispeech.py writes; extra keys are ignored): ``id``, ``text``,
``prompt_audio`` (relative paths resolve against the job file's folder), ``prompt_text`` (optional; null =
Whisper-base transcript), ``out`` (wav path relative to --out-dir; default ``ID.wav``), optional ``seed`` and ``speed``.
TSV files need a header row with those column names (tab-separated, no quoting).

- Resumable: jobs whose output exists are skipped; outputs are written to a temp file and renamed (atomic).
- Isolated failures: a job that fails is listed in ``OUT_DIR/failures.jsonl`` (id + error) and the others go on.
- Jobs with ``"protocol": "continuation"`` are synthesized in continuation mode (output = prompt + continuation).
- Per job: ``OUT_DIR/info.jsonl`` records the output length and why generation stopped (``eos`` or ``cap``), and
  with ``--takes N`` the take kept and every take's score per sentence.
- Summary: printed at the end and written to ``OUT_DIR/summary.json``. Exit status 1 when any job failed.
- Checked before any synthesis (exit 2, every problem listed): the job list (JSON objects with unique ids), the
  output paths (tts/outputs.py: inside --out-dir, ``.wav``, none shared, none named like the batch's own files)
  and the command line's settings (tts/options.py). A job whose own seed or speed is bad fails alone, unsynthesized.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

from tts.model import TTS, SynthesisResult
from tts.options import SynthesisOptions, TTSInputError, add_runtime_arguments, runtime_kwargs
from tts.outputs import plan_outputs

JOB_SETTINGS = ("seed", "speed")  # the settings a job row may give for itself (the rest come from the CLI)


def read_jobs(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"job list not found: {path}")
    if path.suffix == ".tsv":
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        for r in rows:
            if r.get("prompt_text") == "":
                r["prompt_text"] = None
            for k in JOB_SETTINGS:  # an empty cell: not given
                if r.get(k) == "":
                    del r[k]
    else:
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not JSON ({e})") from None
                if not isinstance(row, dict):
                    raise ValueError(
                        f'{path}:{n}: a job must be a JSON object ({{"id": ..., "text": ..., ...}}), '
                        f"got a {type(row).__name__}"
                    )
                rows.append(row)
    seen = set()
    for n, r in enumerate(rows, 1):
        if not r.get("id"):
            raise ValueError(f"{path}: row {n} has no id")
        if not isinstance(r["id"], (str, int)) or isinstance(r["id"], bool):
            raise ValueError(f"{path}: row {n}: id must be a string, got {r['id']!r}")
        r["id"] = str(r["id"])
        if r["id"] in seen:
            raise ValueError(f"{path}: duplicate id {r['id']!r}")
        seen.add(r["id"])
        pa = r.get("prompt_audio")
        if pa and not os.path.isabs(pa):
            r["prompt_audio"] = str(path.parent / pa)
    return rows


def write_wav_atomic(path: Path, res: SynthesisResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.wav")
    sf.write(str(tmp), res.audio, res.sample_rate, subtype="PCM_16")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Batch zero-shot TTS over a JSONL/TSV job list (resumable).")
    ap.add_argument("jobs", help="JSONL or TSV job list")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--batch-size", type=int, default=8, help="jobs decoded together")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument(
        "--cfg", type=float, default=None, help="guidance scale (default: the release's cfg_scale)"
    )
    ap.add_argument("--speed", type=float, default=1.0, help="default speed of jobs without a speed (0.5-2)")
    ap.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="diffusion noise scale (default: the release's temperature)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of jobs without their own")
    ap.add_argument(
        "--head",
        choices=["reference", "one_step"],
        default=None,
        help="diffusion head: reference (--steps evaluations) or one_step (distilled; default: the release's)",
    )
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument(
        "--no-bridge",
        dest="bridge",
        action="store_false",
        help="decode every frame from the trunk, without the release's step bridge (latentlm/bridge.py)",
    )
    ap.add_argument(
        "--takes",
        type=int,
        default=1,
        help="decode each sentence this many times and keep the take the release's aligner finds most likely (1-16)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    add_runtime_arguments(ap)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir)
    try:  # everything that can be checked is checked before the model is loaded
        if args.batch_size < 1 or args.threads < 1:
            raise ValueError(
                f"--batch-size and --threads must be >= 1, got {args.batch_size}, {args.threads}"
            )
        torch.set_num_threads(args.threads)
        defaults = SynthesisOptions.from_mapping(vars(args))
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out-dir {out_dir} is a file; give a folder")
        jobs = read_jobs(args.jobs)
        outs = plan_outputs(jobs, out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tts = TTS.from_pretrained(
            args.checkpoint, device=args.device, **runtime_kwargs(args)
        )
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    todo = [j for j in jobs if not outs[j["id"]].exists()]
    skipped = len(jobs) - len(todo)
    failures: list[dict] = []
    done, audio_s, t0 = 0, 0.0, time.perf_counter()
    settings: dict[str, SynthesisOptions] = {}
    for j in list(todo):  # a job's own settings: a bad one fails that job, before any synthesis
        try:
            settings[j["id"]] = SynthesisOptions.from_mapping(
                {k: j[k] for k in JOB_SETTINGS if k in j}, defaults
            )
        except TTSInputError as e:
            failures.append({"id": j["id"], "error": f"bad input: {e}"})
            todo.remove(j)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="tts", unit="job")

    def request(j: dict) -> dict:
        return {
            "text": j.get("text"),
            "prompt_audio": j.get("prompt_audio"),
            "prompt_text": j.get("prompt_text"),
            **settings[j["id"]].to_dict(),
            # evaluation/librispeech.py's continuation jobs: score prompt + continuation as one utterance
            "continuation": j.get("protocol") == "continuation",
        }

    for a in range(0, len(todo), args.batch_size):
        part = todo[a : a + args.batch_size]
        try:
            results = tts.synthesize_batch([request(j) for j in part], on_error="return")
        except Exception:  # something beyond bad input: retry one by one so only the culprit fails
            results = []
            for j in part:
                try:
                    results += tts.synthesize_batch([request(j)], on_error="return")
                except Exception as e:
                    results.append(e)
        for j, res in zip(part, results):
            if isinstance(res, SynthesisResult):
                try:
                    write_wav_atomic(outs[j["id"]], res)
                    done, audio_s = done + 1, audio_s + res.speech_seconds
                    info = {"id": j["id"], "seconds": round(res.duration, 3), "stop": res.info.get("stop")}
                    if "takes" in res.info:  # --takes N: the kept take and every take's score, per sentence
                        info["takes"] = res.info["takes"]
                    with open(out_dir / "info.jsonl", "a") as f:  # per-job stop reason and length
                        f.write(json.dumps(info, default=str) + "\n")
                except Exception as e:
                    failures.append({"id": j["id"], "error": f"writing {outs[j['id']]}: {e}"})
            else:
                kind = "bad input" if isinstance(res, TTSInputError) else type(res).__name__
                failures.append({"id": j["id"], "error": f"{kind}: {res}"})
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    (out_dir / "failures.jsonl").write_text("".join(json.dumps(f) + "\n" for f in failures))
    summary = {
        "jobs": len(jobs),
        "synthesized": done,
        "skipped_existing": skipped,
        "failed": len(failures),
        "audio_seconds": round(audio_s, 2),
        "wall_seconds": round(wall, 2),
        "rtf": round(wall / audio_s, 4) if audio_s else None,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    for f in failures:
        print(f"failed {f['id']}: {f['error']}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
