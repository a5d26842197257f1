"""Command line: prepare a LibriSpeech job list, score a folder of wavs, write a report.

    python -m evaluation.run prepare --librispeech ROOT --protocol cross --out eval/cross
    python -m tts.batch eval/cross/jobs.jsonl --out eval/cross/wavs      # or any system that fills "out"
    python -m evaluation.run score --jobs eval/cross/jobs.jsonl --audio-dir eval/cross/wavs \\
        --out eval/cross/model
    python -m evaluation.run score --jobs eval/cross/jobs.jsonl --ground-truth --out eval/cross/gt
    python -m evaluation.run report eval/cross/gt eval/cross/model --out eval/cross/report

``end2end`` chains the three with ``--synthesize-cmd`` (a shell command with {jobs} and {audio_dir} fields).
``score`` and ``end2end`` exit 1 (and say how many) when any row failed: the summary would cover only the rows that worked.
``--sim ecapa:DIR`` loads a speechbrain model folder with speechbrain's own loader, which runs what its
hyperparams.yaml names (``!new:``/``!name:`` tags build Python objects): only pass a folder you trust as code.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import torch


def _backends(args):
    from evaluation.asr import build_asr
    from evaluation.speaker import build_sim

    asr = None if args.asr == "none" else build_asr(args.asr, device=args.device, beam_size=args.beam_size)
    sim = None if args.sim == "none" else build_sim(args.sim, device=args.device)
    return asr, sim


def _score(
    args, backends, jobs_path: Path, audio_dir: str | None, out: str, system: str, ground_truth: bool
) -> dict:
    from evaluation.librispeech import read_jobs
    from evaluation.score import ScoreConfig, score_jobs

    asr, sim = backends
    cfg = ScoreConfig(batch_size=args.batch_size, ground_truth=ground_truth, system=system)
    return score_jobs(read_jobs(jobs_path), out, asr, sim, audio_dir=audio_dir, cfg=cfg)


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--asr", default="whisper-base", help="whisper-base | whisper:<ct2 dir> | hubert:<path> | none"
    )
    p.add_argument(
        "--sim",
        default="resemblyzer",
        help="resemblyzer | ecapa:<dir> (runs the folder's hyperparams.yaml: trusted folders only) | "
        "wavlm-tdnn:<path> | none",
    )
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def _add_prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--librispeech", help="LibriSpeech root (holding test-clean/)")
    p.add_argument("--protocol", choices=["cross", "continuation"], default="cross")
    p.add_argument(
        "--f5-list", help="F5-TTS librispeech_pc_test_clean_cross_sentence.lst (instead of --protocol)"
    )
    p.add_argument("--subset", default="test-clean")
    p.add_argument("--min-s", type=float, default=4.0)
    p.add_argument("--max-s", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-s", type=float, default=3.0)


def _prepare(args, out: Path) -> Path:
    from evaluation.librispeech import prepare, read_f5_list, write_jobs

    if not args.librispeech:
        raise SystemExit("error: --librispeech ROOT is required")
    if args.f5_list:
        path = write_jobs(read_f5_list(args.f5_list, args.librispeech), out / "jobs.jsonl")
        print(f"wrote {path} (F5-TTS list)")
        return path
    path, stats = prepare(
        args.librispeech, args.protocol, out, args.subset, args.min_s, args.max_s, args.seed, args.prompt_s
    )
    print(f"wrote {path}: {json.dumps(stats)}")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evaluation.run", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write jobs.jsonl for a LibriSpeech protocol")
    _add_prepare_args(p)
    p.add_argument("--out", required=True)
    s = sub.add_parser("score", help="score wavs named by a job list")
    s.add_argument("--jobs", required=True)
    s.add_argument("--audio-dir", help="folder holding each job's 'out' wav")
    s.add_argument("--ground-truth", action="store_true", help="score each job's ref_audio (reference row)")
    s.add_argument("--system", help="label for rows and the report (default: folder name or 'ground truth')")
    s.add_argument("--out", required=True)
    _add_backend_args(s)
    r = sub.add_parser("report", help="markdown table + histograms over results folders")
    r.add_argument("results", nargs="+")
    r.add_argument("--out", required=True)
    e = sub.add_parser(
        "end2end", help="prepare, synthesize with --synthesize-cmd, score model and ground truth"
    )
    _add_prepare_args(e)
    _add_backend_args(e)
    e.add_argument("--out", required=True)
    e.add_argument(
        "--synthesize-cmd",
        required=True,
        help="shell command run once, e.g. 'python -m tts.batch {jobs} --out {audio_dir}'",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(getattr(args, "threads", 1))

    if args.cmd == "prepare":
        _prepare(args, Path(args.out))
    elif args.cmd == "score":
        if not args.ground_truth and not args.audio_dir:
            raise SystemExit("error: give --audio-dir DIR or --ground-truth")
        system = args.system or ("ground truth" if args.ground_truth else Path(args.audio_dir).name)
        summary = _score(
            args, _backends(args), Path(args.jobs), args.audio_dir, args.out, system, args.ground_truth
        )
        print(json.dumps({k: summary[k] for k in ("system", "n_scored", "n_errors", "wer", "sim")}, indent=2))
        return _failed_rows(summary, Path(args.out))
    elif args.cmd == "report":
        from evaluation.report import write_report

        print(f"wrote {write_report(args.results, args.out)}")
    else:
        from evaluation.report import write_report

        out = Path(args.out)
        jobs = _prepare(args, out)
        audio_dir = out / "wavs"
        cmd = args.synthesize_cmd.format(jobs=shlex.quote(str(jobs)), audio_dir=shlex.quote(str(audio_dir)))
        print(f"running: {cmd}")
        subprocess.run(cmd, shell=True, check=True)
        backends = _backends(args)  # loaded once for both passes
        model = _score(args, backends, jobs, str(audio_dir), str(out / "model"), "model", False)
        truth = _score(args, backends, jobs, None, str(out / "ground_truth"), "ground truth", True)
        print(f"wrote {write_report([out / 'ground_truth', out / 'model'], out / 'report')}")
        return max(_failed_rows(model, out / "model"), _failed_rows(truth, out / "ground_truth"))
    return 0


def _failed_rows(summary: dict, out: Path) -> int:
    """1 (with a message saying how many) when any row failed: a score over the rows that worked is not the
    system's score; else 0."""
    if not summary["n_errors"]:
        return 0
    total = summary["n_errors"] + summary["n_scored"]
    print(
        f"error: {summary['n_errors']} of {total} rows failed (their errors are in {out / 'utterances.jsonl'}); "
        "fix them and rerun (scored rows are kept)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
