"""Batched, resumable scoring of a job list: per-utterance JSONL rows plus summary.json.

    score_jobs(jobs, out_dir, asr=WhisperASR(), sim=ResemblyzerSIM(), audio_dir="outputs/")

Each job's audio is ``audio_dir/job["out"]`` (a system's output) or, with ``ground_truth=True``, the job's
``ref_audio``. Rows are appended to ``out_dir/utterances.jsonl`` as each batch finishes; a rerun keeps the
rows that scored without error with the same backends and scores the rest. A file that cannot be scored (missing, corrupt, empty,
silent) becomes a row with ``"error"`` set, never a crash of the whole run.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluation.asr import ASR_SR, ASRBackend
from evaluation.audio import load_audio
from evaluation.normalize import (
    NORMALIZER_ID,
    WordErrors,
    aggregate_cer,
    aggregate_wer,
    normalize_text,
    word_errors,
)
from evaluation.speaker import SIM_SR, SpeakerBackend, cosine

ROWS = "utterances.jsonl"
SUMMARY = "summary.json"


@dataclass
class ScoreConfig:
    batch_size: int = 8
    ground_truth: bool = False  # score each job's ref_audio instead of audio_dir/out
    system: str = "system"  # label written into rows and summary (e.g. "ground truth", "vae resynthesis")
    progress: bool = True


def _audio_path(job: dict, audio_dir: Path | None, ground_truth: bool) -> Path:
    if ground_truth:
        if not job.get("ref_audio"):
            raise ValueError(f"job {job['id']!r} has no ref_audio; cannot score ground truth")
        return Path(job["ref_audio"])
    if audio_dir is None:
        raise ValueError("audio_dir is required unless ground_truth=True")
    return audio_dir / job["out"]


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a row cut short by a crash: rescored
                continue
    return rows


def _score_one(job: dict, path: Path, wav: np.ndarray, hyp: str, sim_value: float | None) -> dict:
    ref_norm, hyp_norm = normalize_text(job["text"]), normalize_text(hyp)
    c = word_errors(ref_norm, hyp_norm)
    return {
        "wer": c.wer,
        "wer_counts": {
            "sub": c.substitutions,
            "del": c.deletions,
            "ins": c.insertions,
            "ref_words": c.ref_words,
        },
        "hyp": hyp,
        "ref_norm": ref_norm,
        "hyp_norm": hyp_norm,
        "sim": sim_value,
        "duration_s": round(len(wav) / ASR_SR, 4),
    }


def _score_batch(
    batch: list[dict],
    audio_dir: Path | None,
    cfg: ScoreConfig,
    asr: ASRBackend | None,
    sim: SpeakerBackend | None,
) -> list[dict]:
    rows, ok = [], []
    for job in batch:
        row = {"id": job["id"], "system": cfg.system, "ref": job["text"], "audio": None, "error": None}
        row["backends"] = _backend_ids(asr, sim)
        try:
            path = _audio_path(job, audio_dir, cfg.ground_truth)
            row["audio"] = str(path)
            wav, _ = load_audio(path, ASR_SR)
            ok.append((job, row, path, wav))
        except ValueError as e:
            row["error"] = str(e)
        rows.append(row)
    for job, row, path, wav in ok:  # one utterance at a time inside the batch, so one failure stays one row
        try:
            hyp = asr.transcribe([wav], sample_rate=ASR_SR)[0] if asr is not None else None
            sim_value = None
            if sim is not None:
                if not job.get("prompt_audio"):
                    raise ValueError("job has no prompt_audio to compare speakers with")
                prompt = load_audio(job["prompt_audio"], SIM_SR)[0]
                emb = sim.embed([wav, prompt], sample_rate=SIM_SR)  # (2, E)
                sim_value = cosine(emb[0], emb[1])
                row["prompt_audio"] = job["prompt_audio"]
            if hyp is not None:
                row.update(_score_one(job, path, wav, hyp, sim_value))
            else:
                row.update({"sim": sim_value, "duration_s": round(len(wav) / ASR_SR, 4)})
        except ValueError as e:
            row["error"] = str(e)
    return rows


def score_jobs(
    jobs: list[dict],
    out_dir: str | Path,
    asr: ASRBackend | None,
    sim: SpeakerBackend | None,
    audio_dir: str | Path | None = None,
    cfg: ScoreConfig | None = None,
) -> dict:
    """Score every job (resuming), write utterances.jsonl + summary.json, return the summary."""
    cfg = cfg or ScoreConfig()
    if asr is None and sim is None:
        raise ValueError("nothing to score: pass an ASR backend, a SIM backend, or both")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / ROWS
    job_ids = {j["id"] for j in jobs}
    ids = _backend_ids(asr, sim)  # rows scored by other models are rescored, never mixed in
    kept = [
        r
        for r in read_rows(rows_path)
        if r.get("error") is None and r.get("id") in job_ids and r.get("backends") == ids
    ]
    done = {r["id"] for r in kept}
    tmp = rows_path.with_suffix(".jsonl.tmp")  # rewrite without error rows / stale ids, atomically
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, rows_path)
    todo = [j for j in jobs if j["id"] not in done]
    d = Path(audio_dir) if audio_dir is not None else None
    t0 = time.perf_counter()
    with (
        open(rows_path, "a", encoding="utf-8") as f,
        tqdm(total=len(todo), desc=f"scoring {cfg.system}", unit="utt", disable=not cfg.progress) as bar,
    ):
        for i in range(0, len(todo), cfg.batch_size):
            for row in _score_batch(todo[i : i + cfg.batch_size], d, cfg, asr, sim):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            bar.update(len(todo[i : i + cfg.batch_size]))
    elapsed = time.perf_counter() - t0
    summary = summarize(read_rows(rows_path), cfg.system, asr, sim)
    summary.update({"n_jobs": len(jobs), "resumed_rows": len(done), "scored_this_run": len(todo)})
    summary["seconds_this_run"] = round(elapsed, 2)
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def summarize(rows: list[dict], system: str, asr: ASRBackend | None, sim: SpeakerBackend | None) -> dict:
    """Aggregate rows; the dict says how every number was computed."""
    good = [r for r in rows if r.get("error") is None]
    counts = [
        WordErrors(
            r["wer_counts"]["sub"],
            r["wer_counts"]["del"],
            r["wer_counts"]["ins"],
            r["wer_counts"]["ref_words"],
        )
        for r in good
        if "wer_counts" in r
    ]
    sims = [r["sim"] for r in good if r.get("sim") is not None]
    return {
        "system": system,
        "n_rows": len(rows),
        "n_scored": len(good),
        "n_errors": len(rows) - len(good),
        "errors": {r["id"]: r["error"] for r in rows if r.get("error") is not None},
        "wer": aggregate_wer(counts) if asr is not None else None,
        "cer": aggregate_cer([(r["ref_norm"], r["hyp_norm"]) for r in good if "ref_norm" in r])
        if asr is not None
        else None,
        "sim": {
            "n": len(sims),
            "mean": float(np.mean(sims)) if sims else math.nan,
            "std": float(np.std(sims)) if sims else math.nan,
            "definition": "mean over utterances of cosine(embedding(output), embedding(prompt_audio))",
        }
        if sim is not None
        else None,
        "audio_seconds": round(sum(r.get("duration_s", 0.0) for r in good), 2),
        "asr_backend": None
        if asr is None
        else {"name": asr.name, "model_id": asr.model_id, **_asr_extra(asr)},
        "sim_backend": None if sim is None else {"name": sim.name, "model_id": sim.model_id},
        "text_normalizer": NORMALIZER_ID,
        "error_rows": "excluded from every mean; listed under 'errors'",
    }


def _backend_ids(asr: ASRBackend | None, sim: SpeakerBackend | None) -> dict:
    return {"asr": None if asr is None else asr.model_id, "sim": None if sim is None else sim.model_id}


def _asr_extra(asr: ASRBackend) -> dict:
    cfg = getattr(asr, "cfg", None)
    extra = {}
    for k in ("beam_size", "language", "device"):
        if cfg is not None and hasattr(cfg, k):
            extra[k] = getattr(cfg, k)
    if hasattr(asr, "compute_type"):
        extra["compute_type"] = asr.compute_type
    return extra
