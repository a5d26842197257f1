"""Words heard, WER and SIM of scored result folders (evaluation.run score --out DIR), one row each, then the
mean of the rows whose system label ends in "seed N" (a release measured over several seeds).

    python recipes/demo/seeds_table.py eval/real_voices/gt eval/real_voices/seed0/tts ...
"""

from __future__ import annotations

import re
import sys

from evaluation.report import load_summary


def figures(s: dict) -> tuple[float, float, float]:
    """(words heard %, corpus WER %, mean SIM) of one summary.json."""
    wer, sim = s.get("wer") or {}, s.get("sim") or {}
    return (
        100 * wer.get("word_recall", float("nan")),
        100 * wer.get("corpus_wer", float("nan")),
        sim.get("mean", float("nan")),
    )


def main(dirs: list[str]) -> None:
    print("| system | words heard % | WER % | SIM | scored | errors |")
    print("|---|---|---|---|---|---|")
    seeded: list[tuple[float, float, float]] = []
    for d in dirs:
        s = load_summary(d)
        f = figures(s)
        print(f"| {s['system']} | {f[0]:.1f} | {f[1]:.1f} | {f[2]:.3f} | {s['n_scored']} | {s['n_errors']} |")
        if re.search(r"seed \d+$", s["system"]):
            seeded.append(f)
    if seeded:
        m = [sum(x[i] for x in seeded) / len(seeded) for i in range(3)]
        print(f"| **mean of {len(seeded)} seeds** | **{m[0]:.1f}** | **{m[1]:.1f}** | **{m[2]:.3f}** | | |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
