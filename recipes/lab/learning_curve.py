"""The issue-19 learning curve: real-voice dev words heard and SIM against the CPU-hours of LM training behind each
scored set of weights (docs/experiments/learning_curve.csv, one row per scored point, each the mean of seeds 0-2
from the doc named in its ``where`` column). Prints the table as markdown and draws docs/img/learning_curve.png.

    python recipes/lab/learning_curve.py [--csv docs/experiments/learning_curve.csv] [--png docs/img/learning_curve.png]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

RECORDINGS = {"heard": 88.2, "sim": 0.846}  # the real-voice dev recordings themselves (one-step-head.md)
TARGETS = {"heard": 85.0, "sim": 0.75}  # issue 19's done-when
VAE = {"heard": 82.1, "sim": 0.746}  # the recordings through the shipped VAE (evaluation.resynth; one-step-head.md)
MARKERS = {"release line": "o-", "fine-tune": "s", "9-block campaign": "^-"}


def read_points(path: Path) -> list[dict]:
    """Rows of the CSV with numbers parsed (empty cells -> None)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("cpu_hours", "heard", "wer", "sim", "old_heard", "old_sim"):
            r[k] = float(r[k]) if r[k] else None
    return rows


def markdown(rows: list[dict]) -> str:
    def cell(v, fmt):
        return format(v, fmt) if v is not None else ""

    out = [
        "| CPU-hours | weights | decoding | heard % | WER % | SIM | older dev heard % / SIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["cpu_hours"], r["series"] != "release line")):
        old = f"{cell(r['old_heard'], '.1f')} / {cell(r['old_sim'], '.3f')}" if r["old_heard"] is not None else ""
        out.append(
            f"| {r['cpu_hours']:g} | {r['weights']} | {r['decoding']} | {cell(r['heard'], '.1f')} | "
            f"{cell(r['wer'], '.1f')} | {cell(r['sim'], '.3f')} | {old} |"
        )
    return "\n".join(out)


def plot(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "heard", "words heard by Whisper base, %"), (axes[1], "sim", "SIM to the prompt")):
        for series, style in MARKERS.items():
            pts = sorted((r["cpu_hours"], r[key]) for r in rows if r["series"] == series and r[key] is not None)
            if pts:
                ax.plot(*zip(*pts), style, label=series, alpha=0.85)
        ax.axhline(TARGETS[key], color="g", ls="--", lw=1, label="issue-19 target")
        ax.axhline(RECORDINGS[key], color="k", ls=":", lw=1, label="the recordings")
        ax.axhline(VAE[key], color="grey", ls="-.", lw=1, label="the recordings through the VAE")
        ax.set_xlabel("CPU-hours of LM training (2-core CPU)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(50, 92)
    axes[1].set_ylim(0.6, 0.87)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("Real-voice dev set (12 unseen speakers, 36 cross-sentence jobs), mean of seeds 0-2", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", type=Path, default=Path("docs/experiments/learning_curve.csv"))
    p.add_argument("--png", type=Path, default=Path("docs/img/learning_curve.png"))
    a = p.parse_args(argv)
    rows = read_points(a.csv)
    print(markdown(rows))
    plot(rows, a.png)
    print(f"wrote {a.png}", file=sys.stderr)  # stdout is the table alone, to paste


if __name__ == "__main__":
    main()
