"""Report: a markdown table over one or more results folders and histograms of per-utterance WER and SIM.

python -m evaluation.run report results/gt results/vae results/model --out report/
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from evaluation.score import ROWS, SUMMARY, read_rows


def load_summary(results_dir: str | Path) -> dict:
    path = Path(results_dir) / SUMMARY
    if not path.is_file():
        raise ValueError(
            f"{path} not found; run `python -m evaluation.run score ... --out {results_dir}` first"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _fmt(x: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * scale:.{digits}f}"


def markdown_table(summaries: list[dict]) -> str:
    """One row per system: corpus WER %, mean per-utterance WER %, mean SIM, scored/error counts, backends."""
    lines = [
        "| system | WER % (corpus) | WER % (mean per utt.) | CER % (corpus) | words heard % | SIM (mean) "
        "| scored | errors | ASR | SIM model |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        wer, cer, sim = s.get("wer") or {}, s.get("cer") or {}, s.get("sim") or {}
        asr_id = (s.get("asr_backend") or {}).get("model_id", "-")
        sim_id = (s.get("sim_backend") or {}).get("model_id", "-")
        cells = [
            s["system"],
            _fmt(wer.get("corpus_wer"), 100),
            _fmt(wer.get("mean_utterance_wer"), 100),
            _fmt(cer.get("corpus_cer"), 100),
            _fmt(wer.get("word_recall"), 100, 1),
            _fmt(sim.get("mean"), 1, 3),
            str(s["n_scored"]),
            str(s["n_errors"]),
            asr_id,
            sim_id,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "WER % (corpus) = total word errors / total reference words; WER % (mean per utt.) = mean of each "
        "utterance's WER (F5-TTS); CER % = total character edits / total reference characters; words heard % = "
        "reference words Whisper recognised, (N - S - D) / N, blind to insertions; SIM = mean cosine between output and prompt embeddings. Text normalised "
        "with Whisper's EnglishTextNormalizer. Error rows are excluded."
    )
    return "\n".join(lines) + "\n"


def plot_histograms(results_dirs: list[str | Path], out_dir: str | Path) -> list[Path]:
    """wer_hist.png and sim_hist.png, one overlaid histogram per system. Returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = []
    for d in results_dirs:
        rows = [r for r in read_rows(Path(d) / ROWS) if r.get("error") is None]
        data.append((load_summary(d)["system"], rows))
    written = []
    for key, label, fname, scale in (
        ("wer", "per-utterance WER (%)", "wer_hist.png", 100.0),
        ("sim", "speaker similarity (cosine)", "sim_hist.png", 1.0),
    ):
        series = [(name, [r[key] * scale for r in rows if r.get(key) is not None]) for name, rows in data]
        series = [(n, v) for n, v in series if v]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, values in series:
            ax.hist(values, bins=30, alpha=0.5, label=f"{name} (n={len(values)})")
        ax.set_xlabel(label)
        ax.set_ylabel("utterances")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname, dpi=100)
        plt.close(fig)
        written.append(out / fname)
    return written


def write_report(results_dirs: list[str | Path], out_dir: str | Path) -> Path:
    """report.md (table + linked histograms) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table([load_summary(d) for d in results_dirs])
    pngs = plot_histograms(results_dirs, out)
    body = "# Evaluation report\n\n" + table + "".join(f"\n![{p.stem}]({p.name})\n" for p in pngs)
    (out / "report.md").write_text(body, encoding="utf-8")
    return out / "report.md"
