"""The LibriSpeech test-clean zero-shot TTS protocol: the 4-10 s subset, cross-sentence and continuation jobs.

Reads a local LibriSpeech root in the official layout
``ROOT/test-clean/SPK/CHAP/SPK-CHAP-UTT.flac`` + ``ROOT/test-clean/SPK/CHAP/SPK-CHAP.trans.txt`` and writes a
JSONL job list, one row per utterance to synthesise:

    {"id", "text", "prompt_audio", "prompt_text", "out", "ref_audio", "protocol"}

``out`` is a wav path relative to the folder a system writes into; ``ref_audio`` is the ground-truth
recording (scored as the reference row). SIM compares ``out`` with ``prompt_audio``.

- Subset: utterances whose length is within [min_s, max_s] *inclusive*, decided on integer sample counts
  (``round(min_s * sr) <= frames <= round(max_s * sr)``); VALL-E's 4-10 s subset of test-clean.
- cross: the prompt is another utterance of the same speaker (whole utterance, any length, drawn from all
  of that speaker's utterances in the subset folder), chosen with ``random.Random(seed)`` in sorted-id order,
  so the list is deterministic. Targets whose speaker has no other utterance are skipped (and counted).
- continuation: the prompt is the first ``prompt_s`` seconds of the target itself, written to
  ``DIR/prompts/ID.wav`` as exactly ``round(prompt_s * sr)`` samples at the source rate with the source
  sample format; the text is the whole transcript, ``prompt_text`` is null (its words are not aligned),
  and the system's output must hold the whole utterance (prompt + continuation), which is what is scored.
- F5-TTS LibriSpeech-PC list: lines
  ``prompt_id \\t prompt_dur \\t prompt_text \\t target_id \\t target_dur \\t target_text``
  (SWivid/F5-TTS ``data/librispeech_pc_test_clean_cross_sentence.lst``, read as its ``get_librispeech_test``
  reads it); audio paths resolve inside the test-clean folder.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

PROTOCOLS = ("cross", "continuation")


@dataclass(frozen=True)
class Utterance:
    id: str  # SPK-CHAP-UTT
    speaker: str
    path: Path
    text: str
    frames: int
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _subset_dir(root: str | Path, subset: str) -> Path:
    root = Path(root)
    for cand in (root / subset, root / "LibriSpeech" / subset, root):
        if cand.is_dir() and cand.name == subset:
            return cand
    raise ValueError(f"no {subset!r} folder under {root} (expected ROOT/{subset}/SPK/CHAP/*.flac)")


def scan(root: str | Path, subset: str = "test-clean") -> list[Utterance]:
    """All utterances of ``subset`` with their official transcripts, sorted by id."""
    folder = _subset_dir(root, subset)
    utts = []
    for trans in sorted(folder.glob("*/*/*.trans.txt")):
        for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            if not text:
                raise ValueError(f"{trans}:{n}: expected 'ID TRANSCRIPT', got {line!r}")
            audio = trans.parent / f"{uid}.flac"
            if not audio.is_file():
                raise ValueError(f"{trans}:{n}: audio {audio} is missing")
            info = sf.info(str(audio))
            utts.append(Utterance(uid, uid.split("-")[0], audio, text.strip(), info.frames, info.samplerate))
    if not utts:
        raise ValueError(f"no SPK-CHAP.trans.txt files found under {folder}")
    return sorted(utts, key=lambda u: u.id)


def filter_duration(utts: list[Utterance], min_s: float = 4.0, max_s: float = 10.0) -> list[Utterance]:
    """Utterances with ``round(min_s*sr) <= frames <= round(max_s*sr)`` (both bounds inclusive)."""
    if min_s > max_s:
        raise ValueError(f"min_s {min_s} > max_s {max_s}")
    return [u for u in utts if round(min_s * u.sample_rate) <= u.frames <= round(max_s * u.sample_rate)]


def cross_sentence_jobs(
    utts: list[Utterance], pool: list[Utterance], seed: int = 0
) -> tuple[list[dict], int]:
    """(jobs, number of skipped targets): prompt = another utterance of the same speaker from ``pool``."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(pool, key=lambda u: u.id):
        by_speaker[u.speaker].append(u)
    rng = random.Random(seed)
    jobs, skipped = [], 0
    for u in sorted(utts, key=lambda u: u.id):
        candidates = [p for p in by_speaker[u.speaker] if p.id != u.id]
        if not candidates:
            skipped += 1
            continue
        p = rng.choice(candidates)
        jobs.append(_job(u, str(p.path.resolve()), p.text, "cross", prompt_id=p.id))
    return jobs, skipped


def continuation_jobs(utts: list[Utterance], out_dir: str | Path, prompt_s: float = 3.0) -> list[dict]:
    """Write each target's first ``prompt_s`` seconds to ``out_dir/prompts/ID.wav``; one job per target."""
    prompt_dir = Path(out_dir) / "prompts"
    prompt_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for u in sorted(utts, key=lambda u: u.id):
        n = round(prompt_s * u.sample_rate)
        if u.frames < n:
            raise ValueError(f"{u.id} is {u.duration:.3f} s, shorter than the {prompt_s} s prompt")
        info = sf.info(str(u.path))
        int16 = info.subtype == "PCM_16"
        wav, sr = sf.read(str(u.path), frames=n, dtype="int16" if int16 else "float32")
        dest = prompt_dir / f"{u.id}.wav"
        sf.write(str(dest), wav, sr, subtype="PCM_16" if int16 else "FLOAT")
        jobs.append(_job(u, str(dest.resolve()), None, "continuation", prompt_id=u.id))
    return jobs


def _job(u: Utterance, prompt_audio: str, prompt_text: str | None, protocol: str, prompt_id: str) -> dict:
    return {
        "id": u.id,
        "text": u.text,
        "prompt_audio": prompt_audio,
        "prompt_text": prompt_text,
        "out": f"{u.id}.wav",
        "ref_audio": str(u.path.resolve()),
        "protocol": protocol,
        "prompt_id": prompt_id,
        "duration_s": round(u.duration, 4),
    }


def read_f5_list(list_path: str | Path, test_clean: str | Path) -> list[dict]:
    """Jobs from F5-TTS's LibriSpeech-PC cross-sentence list (6 tab-separated fields per line)."""
    folder = _subset_dir(test_clean, "test-clean")
    jobs = []
    for n, line in enumerate(Path(list_path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 6:
            raise ValueError(f"{list_path}:{n}: expected 6 tab-separated fields, got {len(fields)}")
        p_id, p_dur, p_text, t_id, t_dur, t_text = fields

        def audio(uid: str) -> Path:
            spk, chap, _ = uid.split("-")
            return folder / spk / chap / f"{uid}.flac"

        jobs.append(
            {
                "id": t_id,
                "text": t_text.strip(),
                "prompt_audio": str(audio(p_id).resolve()),
                "prompt_text": p_text.strip(),
                "out": f"{t_id}.wav",
                "ref_audio": str(audio(t_id).resolve()),
                "protocol": "f5-cross",
                "prompt_id": p_id,
                "duration_s": float(t_dur),
            }
        )
    return jobs


def prepare(
    root: str | Path,
    protocol: str,
    out_dir: str | Path,
    subset: str = "test-clean",
    min_s: float = 4.0,
    max_s: float = 10.0,
    seed: int = 0,
    prompt_s: float = 3.0,
) -> tuple[Path, dict]:
    """Write ``out_dir/jobs.jsonl`` for ``protocol``; returns (path, stats)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    all_utts = scan(root, subset)
    targets = filter_duration(all_utts, min_s, max_s)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    skipped = 0
    if protocol == "cross":
        jobs, skipped = cross_sentence_jobs(targets, all_utts, seed)
    else:
        jobs = continuation_jobs(targets, out, prompt_s)
    path = write_jobs(jobs, out / "jobs.jsonl")
    stats = {
        "scanned": len(all_utts),
        "in_range": len(targets),
        "jobs": len(jobs),
        "skipped_no_prompt": skipped,
    }
    return path, stats


def write_jobs(jobs: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(j, ensure_ascii=False) + "\n" for j in jobs), encoding="utf-8")
    return path


def read_jobs(path: str | Path) -> list[dict]:
    """A JSONL job list; every row needs id, text, out (prompt_audio for SIM, ref_audio for ground truth)."""
    jobs, seen = [], set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(job, dict):
            raise ValueError(
                f'{path}:{n}: a job must be a JSON object ({{"id": ..., "text": ..., "out": ...}}), '
                f"got a {type(job).__name__}"
            )
        missing = [k for k in ("id", "text", "out") if k not in job]
        if missing:
            raise ValueError(f"{path}:{n}: job lacks {missing}")
        if job["id"] in seen:
            raise ValueError(f"{path}:{n}: duplicate id {job['id']!r}")
        seen.add(job["id"])
        jobs.append(job)
    return jobs
