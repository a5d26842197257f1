"""python -m latentlm.text.train [RECIPE.yaml] [key=value ...]: BPE tokenizer + text LM on offline text.

Writes ``out_dir/`` = the LatentLM release (model.safetensors + config.json), ``tokenizer.json`` beside it, and
``report.json`` (held-out perplexity, unigram baseline, corpus source). Without a recipe the ``TextLMConfig``
defaults apply (KJV via Debian's ``bible`` command, else the LibriSpeech transcripts).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from latentlm.config import load_config, save_config
from latentlm.text.corpus import load_corpus
from latentlm.text.lm import TextLMConfig, train_text_lm


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("args", nargs="*", help="optional recipe YAML first, then dotted key=value overrides")
    a = ap.parse_args(argv).args
    recipe = a[0] if a and "=" not in a[0] else None
    cfg = load_config(TextLMConfig, recipe, a[1:] if recipe else a)
    torch.set_num_threads(cfg.threads)
    lines, source = load_corpus(cfg.corpus, cfg.max_lines, cfg.corpus_path, cfg.real_speech)
    t0 = time.perf_counter()
    model, tok, report = train_text_lm(cfg, lines)
    report.update({"corpus": source, "lines": len(lines), "train_s": time.perf_counter() - t0})
    out = Path(cfg.out_dir)
    model.save_pretrained(out, meta={"tokenizer": "tokenizer.json", "task": "text LM", "corpus": source})
    tok.save(out)
    save_config(cfg, out / "train_config.yaml")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
