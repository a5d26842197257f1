"""Job lists for measuring a TTS release on voices it never heard (cross-sentence prompts, as in VALL-E).

    python recipes/demo/make_eval_jobs.py --corpus data/corpus --real-dev REAL_SPEECH_DIR/dev \\
        --out eval/demo --per-set 24

Writes two job lists in evaluation/'s format ({"id", "text", "prompt_audio", "prompt_text", "out",
"ref_audio"}):
- ``corpus_test.jsonl``: held-out speakers of the offline corpus (its speaker-disjoint test split);
- ``real_dev.jsonl``: the real dev recordings (LJSpeech, CMU ARCTIC; never trained on).
For each target utterance the prompt is another utterance of the same speaker (deterministic with --seed);
``ref_audio`` is the target's real recording, scored as the ground-truth row.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path


def corpus_audio(corpus: Path, audio: str) -> str:
    """A manifest row's audio path, absolute (relative paths are relative to the corpus folder)."""
    path = Path(audio)
    return str(path if path.is_absolute() else (corpus / path).resolve())


def eval_job(target: dict, prompt: dict) -> dict:
    """One cross-sentence job in evaluation/'s format: ``target``'s text in the voice of ``prompt`` (manifest rows
    of the same speaker; ``ref_audio`` is the target's own recording, scored as ground truth)."""
    return {
        "id": target["id"],
        "text": target["text"],
        "prompt_audio": prompt["audio"],
        "prompt_text": prompt["text"],
        "out": f"{target['id']}.wav",
        "ref_audio": target["audio"],
        "speaker": target["speaker"],
    }


def _pairs(
    rows: list[dict], n: int, seed: int, min_prompt: float = 2.0, max_prompt: float = 12.0
) -> list[dict]:
    """rows: {id, speaker, audio, text, duration}. Picks up to n targets spread over speakers."""
    rng = random.Random(seed)
    by_spk: dict[str, list[dict]] = {}
    for r in rows:
        by_spk.setdefault(r["speaker"], []).append(r)
    speakers = sorted(s for s, rs in by_spk.items() if len(rs) >= 2)
    jobs, k = [], 0
    while len(jobs) < n and speakers:
        spk = speakers[k % len(speakers)]
        k += 1
        pool = by_spk[spk]
        if not pool:
            speakers.remove(spk)
            continue
        target = pool.pop(rng.randrange(len(pool)))
        prompts = [r for r in rows if r["speaker"] == spk and r["id"] != target["id"]]
        prompts = [r for r in prompts if min_prompt <= r["duration"] <= max_prompt] or prompts
        if not prompts:
            continue
        p = rng.choice(sorted(prompts, key=lambda r: r["id"]))
        jobs.append(eval_job(target, p))
    return jobs


def corpus_rows(corpus: Path) -> list[dict]:
    rows = []
    for line in (corpus / "test.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows.append(
            {
                "id": r["id"],
                "speaker": r["speaker"],
                "text": r["text"],
                "duration": r["duration"],
                "audio": corpus_audio(corpus, r["audio"]),
            }
        )
    return rows


def dev_rows(dev: Path) -> list[dict]:
    with open(dev / "manifest.tsv", newline="") as f:
        return [
            {
                "id": r["utterance_id"],
                "speaker": r["speaker_id"],
                "text": r["transcript"],
                "duration": float(r["duration_s"]),
                "audio": str((dev / r["file"]).resolve()),
            }
            for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--real-dev", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-set", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus_test", corpus_rows(args.corpus)), ("real_dev", dev_rows(args.real_dev))):
        jobs = _pairs(rows, args.per_set, args.seed)
        path = args.out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
        print(f"{path}: {len(jobs)} jobs from {len({j['speaker'] for j in jobs})} speakers")


if __name__ == "__main__":
    main()
