"""Reconstruction quality of a VAE release on held-out audio:

    python -m vocoder_vae.evaluate --release DIR --audio SOURCES [--noise 0,0.1,0.5] [--out OUT]
        [--asr whisper-base] [--sim resemblyzer]

SOURCES: manifests/dirs/files, e.g. the team's real dev set (real_speech/dev/manifest.tsv, never trained on). Each
clip is loaded at the model rate, encoded to latent means, optionally perturbed with Gaussian noise of std
``noise * latent_std`` per dim (decoder robustness), decoded, and scored against the original: mel distance,
STOI, SI-SDR, PESQ. With ``--asr`` the original and the reconstruction are both transcribed and scored against
the manifest transcript (evaluation's Whisper normaliser and word counts), so the reconstruction's WER is
compared with the original recording's WER on the same clips; with ``--sim`` the speaker similarity between
reconstruction and original is measured. Prints a summary per noise level. ``--out`` ending in ``.jsonl``
writes per-clip rows there and ``.summary.json`` beside it; any other ``--out`` is a directory that receives
``clips.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from evaluation.normalize import NORMALIZER_ID, WordErrors, aggregate_wer, normalize_text, word_errors
from evaluation.speaker import cosine
from vocoder_vae.audio import load_audio
from vocoder_vae.data import list_audio
from vocoder_vae.metrics import all_metrics
from vocoder_vae.model import AudioVAE

# Issue 3's targets for the shipped small VAE on the real dev set.
TARGETS = {"stoi_min": 0.85, "sim_min": 0.85, "wer_gap_max": 0.03}
TEXT_KEYS = ("transcript", "text")


def read_transcripts(spec: str) -> dict[Path, str]:
    """Transcripts of the manifests in a comma-separated source list, keyed like ``list_audio`` paths.

    TSV manifests need a ``file``/``audio`` column and a ``transcript``/``text`` column; JSONL rows need
    ``audio`` and ``text``/``transcript``. Directories and bare audio files contribute nothing.
    """
    out: dict[Path, str] = {}
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        p = Path(item)
        if p.suffix == ".tsv" and p.is_file():
            with open(p, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
            header = rows[0] if rows else []
            a = next((header.index(c) for c in ("audio", "file", "path") if c in header), None)
            t = next((header.index(c) for c in TEXT_KEYS if c in header), None)
            if a is not None and t is not None:
                out.update({p.parent / r[a]: r[t] for r in rows[1:] if r})
        elif p.suffix == ".jsonl" and p.is_file():
            for line in p.read_text(encoding="utf-8").splitlines():
                row = json.loads(line) if line.strip() else {}
                text = next((row[k] for k in TEXT_KEYS if k in row), None)
                if "audio" in row and text is not None:
                    out[p.parent / row["audio"]] = text
    return out


def _wer_fields(ref_norm: str, hyp: str, prefix: str) -> tuple[dict, WordErrors]:
    hyp_norm = normalize_text(hyp)
    c = word_errors(ref_norm, hyp_norm)
    counts = {"sub": c.substitutions, "del": c.deletions, "ins": c.insertions, "ref_words": c.ref_words}
    return {f"{prefix}wer": c.wer, f"{prefix}wer_counts": counts, f"{prefix}hyp": hyp}, c


@torch.no_grad()
def evaluate(
    vae: AudioVAE,
    files: list[Path],
    noise_levels=(0.0,),
    seed: int = 0,
    asr=None,
    sim=None,
    transcripts: dict[Path, str] | None = None,
) -> list[dict]:
    """One row per (clip, noise level). ``asr`` (an evaluation ASRBackend) needs ``transcripts[file]``;
    ``sim`` (an evaluation SpeakerBackend) compares reconstruction and original. A clip whose reconstruction
    cannot be transcribed or embedded (e.g. silent output) gets ``error`` set instead of those fields."""
    if asr is not None:
        missing = [str(f) for f in files if f not in (transcripts or {})]
        if missing:
            raise ValueError(
                f"--asr needs a transcript for every clip; none for {len(missing)}: {missing[:3]}"
            )
    sr = vae.sample_rate
    rows = []
    g = torch.Generator(vae.device).manual_seed(seed)
    for f in files:
        wav = load_audio(f, sr)
        z = vae.encode(wav, sr)  # [T, D]
        post_var = float(z.var(0).mean())
        orig: dict = {}
        if asr is not None:
            ref_norm = normalize_text(transcripts[f])
            orig, _ = _wer_fields(ref_norm, asr.transcribe([wav.numpy()], sample_rate=sr)[0], "orig_")
            orig["ref_norm"] = ref_norm
        emb_orig = sim.embed([wav.numpy()], sample_rate=sr)[0] if sim is not None else None
        for lvl in noise_levels:
            zn = z + lvl * vae.latent_std * torch.randn(z.shape, generator=g, device=z.device)
            y = vae.decode(zn)[: len(wav)].cpu()
            row = {"file": str(f), "noise": lvl, "latent_var": post_var, **all_metrics(wav, y, sr)}
            try:
                if asr is not None:
                    row.update(orig)
                    row.update(
                        _wer_fields(orig["ref_norm"], asr.transcribe([y.numpy()], sample_rate=sr)[0], "")[0]
                    )
                if sim is not None:
                    row["sim"] = cosine(sim.embed([y.numpy()], sample_rate=sr)[0], emb_orig)
            except ValueError as e:  # silent / too-short reconstruction: recorded, not fatal
                row["error"] = str(e)
            rows.append(row)
    return rows


def _counts(rows: list[dict], key: str) -> list[WordErrors]:
    return [
        WordErrors(r[key]["sub"], r[key]["del"], r[key]["ins"], r[key]["ref_words"]) for r in rows if key in r
    ]


def summarize(rows: list[dict]) -> dict:
    """Per noise level: mean of each numeric metric over clips, corpus WER of originals and reconstructions
    (evaluation.normalize.aggregate_wer), their gap, and the issue's targets where measured."""
    out = {}
    for lvl in sorted({r["noise"] for r in rows}):
        sel = [r for r in rows if r["noise"] == lvl]
        keys = [k for k in sel[0] if isinstance(sel[0][k], float) and k not in ("noise", "wer", "orig_wer")]
        s: dict = {k: float(np.mean([r[k] for r in sel if k in r])) for k in keys}
        s["clips"] = len(sel)
        s["errors"] = sum(1 for r in sel if r.get("error"))
        sims = [r["sim"] for r in sel if r.get("sim") is not None]
        if sims:
            s["sim"] = float(np.mean(sims))
            s["sim_min"] = float(np.min(sims))
        if any("wer_counts" in r for r in sel):
            s["wer_reconstruction"] = aggregate_wer(_counts(sel, "wer_counts"))
            s["wer_original"] = aggregate_wer(_counts(sel, "orig_wer_counts"))
            s["wer_gap"] = s["wer_reconstruction"]["corpus_wer"] - s["wer_original"]["corpus_wer"]
        targets = {"stoi >= 0.85": bool(s["stoi"] >= TARGETS["stoi_min"])}
        if "sim" in s:
            targets["sim >= 0.85"] = bool(s["sim"] >= TARGETS["sim_min"])
        if "wer_gap" in s:
            targets["wer gap <= 3 points"] = bool(s["wer_gap"] <= TARGETS["wer_gap_max"])
        s["targets_met"] = targets
        out[str(lvl)] = s
    return out


def _fmt(v) -> str:
    if isinstance(v, dict):
        return f"{v.get('corpus_wer', math.nan):.4g}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Reconstruction metrics of an audio VAE release.")
    ap.add_argument("--release", required=True)
    ap.add_argument(
        "--audio",
        required=True,
        help="manifests/dirs/files, comma-separated (e.g. real_speech/dev/manifest.tsv)",
    )
    ap.add_argument("--max-files", type=int, default=0)
    ap.add_argument("--noise", default="0", help="comma-separated latent noise levels (x latent std)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--asr", default=None, help="ASR backend for reconstruction WER, e.g. whisper-base")
    ap.add_argument("--sim", default=None, help="speaker-similarity backend, e.g. resemblyzer")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument(
        "--out", default=None, help="X.jsonl (+ X.summary.json), or a directory (clips.jsonl, summary.json)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    vae = AudioVAE.from_pretrained(args.release, device=args.device)
    files = list_audio(args.audio)
    if args.max_files:
        files = files[: args.max_files]
    asr = sim = None
    if args.asr:
        from evaluation.asr import build_asr

        asr = build_asr(args.asr, device=args.device)
    if args.sim:
        from evaluation.speaker import build_sim

        sim = build_sim(args.sim)
    transcripts = read_transcripts(args.audio) if asr is not None else None
    rows = evaluate(
        vae, files, [float(x) for x in args.noise.split(",")], asr=asr, sim=sim, transcripts=transcripts
    )
    summary = summarize(rows)
    for lvl, s in summary.items():
        print(f"noise {lvl}: " + "  ".join(f"{k} {_fmt(v)}" for k, v in s.items() if k != "targets_met"))
        print(f"  targets: {s['targets_met']}", flush=True)
    if args.out:
        out = Path(args.out)
        if out.suffix == ".jsonl":
            rows_path, summary_path = out, out.with_suffix(".summary.json")
        else:
            rows_path, summary_path = out / "clips.jsonl", out / "summary.json"
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        doc = {
            "aggregation": "mean over clips per noise level; WER is corpus WER (sum of errors / sum of words)",
            "release": args.release,
            "audio": args.audio,
            "asr": getattr(asr, "model_id", None),
            "sim": getattr(sim, "model_id", None),
            "sim_definition": "cosine(embedding(reconstruction), embedding(original)), mean over clips",
            "normalizer": NORMALIZER_ID if asr is not None else None,
            "targets": TARGETS,
            "summary": summary,
        }
        summary_path.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
