"""Words heard, WER and SIM of scored result folders (evaluation.run score --out DIR), one row each, then the
mean of the rows whose system label ends in "seed N" (a release measured over several seeds).

    python recipes/demo/seeds_table.py eval/real_voices/gt eval/real_voices/seed0/tts ...
    python recipes/demo/seeds_table.py --by-source data/real_voices/dev_jobs.jsonl DIR ...   # per corpus too
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from evaluation.normalize import WordErrors, aggregate_wer
from evaluation.report import load_summary


def figures(s: dict) -> tuple[float, float, float]:
    """(words heard %, corpus WER %, mean SIM) of one summary.json."""
    wer, sim = s.get("wer") or {}, s.get("sim") or {}
    heard, corpus_wer = wer.get("word_recall", float("nan")), wer.get("corpus_wer", float("nan"))
    return 100 * heard, 100 * corpus_wer, sim.get("mean", float("nan"))


def by_source(result_dir: str, source_of: dict[str, str]) -> dict[str, tuple[float, float, float]]:
    """{job source: (words heard %, corpus WER %, mean SIM)} from a result folder's utterances.jsonl, aggregated as
    evaluation.score aggregates a whole folder (evaluation.normalize.aggregate_wer)."""
    counts: dict[str, list[WordErrors]] = defaultdict(list)
    sims: dict[str, list[float]] = defaultdict(list)
    for line in (Path(result_dir) / "utterances.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("error") is not None or "wer_counts" not in r:
            continue
        src, c = source_of.get(r["id"], "?"), r["wer_counts"]
        counts[src].append(WordErrors(c["sub"], c["del"], c["ins"], c["ref_words"]))
        if r.get("sim") is not None:
            sims[src].append(r["sim"])
    out = {}
    for src, cs in counts.items():
        sim = {"mean": sum(sims[src]) / len(sims[src])} if sims[src] else {}
        out[src] = figures({"wer": aggregate_wer(cs), "sim": sim})
    return out


def _row(label: str, f: tuple[float, float, float], extra: str = "") -> str:
    return f"| {label} | {f[0]:.1f} | {f[1]:.1f} | {f[2]:.3f} |{extra}"


def _mean(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return tuple(sum(x[i] for x in rows) / len(rows) for i in range(3))  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="result folders of evaluation.run score")
    ap.add_argument("--by-source", metavar="JOBS", help="job list whose 'source' field groups the rows")
    a = ap.parse_args(argv)
    print("| system | words heard % | WER % | SIM | scored | errors |")
    print("|---|---|---|---|---|---|")
    seeded: list[tuple[float, float, float]] = []
    labels = []
    for d in a.dirs:
        s = load_summary(d)
        f = figures(s)
        labels.append(s["system"])
        print(_row(s["system"], f, f" {s['n_scored']} | {s['n_errors']} |"))
        if re.search(r"seed \d+$", s["system"]):
            seeded.append(f)
    if seeded:
        m = _mean(seeded)
        print(f"| **mean of {len(seeded)} seeds** | **{m[0]:.1f}** | **{m[1]:.1f}** | **{m[2]:.3f}** | | |")
    if a.by_source:
        jobs = [json.loads(x) for x in Path(a.by_source).read_text().splitlines() if x.strip()]
        source_of = {j["id"]: j.get("source", "?") for j in jobs}
        print("\n| system | source | words heard % | WER % | SIM |\n|---|---|---|---|---|")
        per: dict[str, list] = defaultdict(list)
        for d, label in zip(a.dirs, labels):
            for src, f in sorted(by_source(d, source_of).items()):
                print(_row(f"{label} | {src}", f))
                if re.search(r"seed \d+$", label):
                    per[src].append(f)
        for src, fs in sorted(per.items()):
            m = _mean(fs)
            print(
                f"| **mean of {len(fs)} seeds** | {src} | **{m[0]:.1f}** | **{m[1]:.1f}** | **{m[2]:.3f}** |"
            )


if __name__ == "__main__":
    main()
