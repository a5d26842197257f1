"""Can the model learn to say sentences it is trained on? A subset of the training corpus and its job list.

    python recipes/lab/memorise.py --corpus data/corpus --speakers espeak_0001 flite_slt_0024 festival_ked_0136 \\
        --out runs/memorise

Writes ``OUT/train.jsonl`` (every training utterance of those speakers, audio paths made absolute) and
``OUT/jobs.jsonl`` in evaluation/'s format: each of those utterances is a target once, prompted by another
utterance of the same speaker (cross-sentence, deterministic with --seed). Training a release on the subset
for a few hundred epochs and scoring it on these jobs (recipes/lab/memorise.sh) asks the most basic question
of a TTS model: given unlimited exposure, does it render the phonemes it reads? If it cannot say its own
training sentences, more data or compute will not make it speak held-out ones.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
from make_eval_jobs import corpus_audio, eval_job  # noqa: E402  (recipes/demo: the demo's job format)


def subset(corpus: Path, speakers: list[str]) -> list[dict]:
    rows = []
    for line in (corpus / "train.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["speaker"] in speakers:
            r["audio"] = corpus_audio(corpus, r["audio"])
            rows.append(r)
    missing = sorted(set(speakers) - {r["speaker"] for r in rows})
    if missing:
        raise SystemExit(f"speakers not in {corpus / 'train.jsonl'}: {', '.join(missing)}")
    few = sorted(s for s in speakers if sum(r["speaker"] == s for r in rows) < 2)
    if few:
        raise SystemExit(f"need >= 2 utterances per speaker for cross-sentence prompts: {', '.join(few)}")
    return rows


def jobs(rows: list[dict], seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for r in rows:
        others = sorted(
            (o for o in rows if o["speaker"] == r["speaker"] and o["id"] != r["id"]), key=lambda o: o["id"]
        )
        out.append(eval_job(r, rng.choice(others)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--speakers", nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = subset(args.corpus, args.speakers)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (args.out / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs(rows, args.seed)))
    print(
        f"{args.out}: {len(rows)} utterances of {len(args.speakers)} speakers "
        f"({sum(r['duration'] for r in rows) / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
