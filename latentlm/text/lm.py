"""Text LM on the shared LatentLM trunk (no modalities: the LM head only), perplexity and a unigram baseline.

Dimension legend: B windows, N = context + 1 positions (``<bos>`` then ``context`` tokens), V layout vocab.

Data: every line is tokenized and followed by ``<eos>``; the lines are concatenated into one stream (layout ids)
and cut into windows ``<bos> t_1 ... t_context``. The loss and the perplexity cover every token after ``<bos>``.
Held-out lines are a fixed tail/random split of the corpus. The unigram baseline (add-one smoothed counts of the
training stream) scores exactly the same held-out targets, so the two perplexities are comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from latentlm.model import LatentLM, LatentLMConfig
from latentlm.sequence import Batch
from latentlm.text.tokenizer import TextTokenizer
from latentlm.training import optimizer_step
from latentlm.transformer import TransformerConfig


@dataclass
class TextLMConfig:
    corpus: str = "auto"  # auto | kjv | librispeech | file (see latentlm/text/corpus.py)
    corpus_path: str = ""  # file: the text file
    real_speech: str = ""  # librispeech: the real speech folder (default $LATENTLM_REAL_SPEECH)
    max_lines: int | None = None
    heldout_fraction: float = 0.05
    tokenizer_vocab: int = 1024
    context: int = 64
    lm: LatentLMConfig = field(
        default_factory=lambda: LatentLMConfig(
            vocab_size=1024, trunk=TransformerConfig(dim=128, n_layers=4, n_heads=4, max_seq_len=128)
        )
    )
    steps: int = 2000
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1
    log_every: int = 100
    out_dir: str = "runs/text_kjv"


def token_stream(model: LatentLM, tok: TextTokenizer, lines: list[str]) -> Tensor:
    """Lines -> one stream of layout ids [S]: tokens of each line followed by ``<eos>``."""
    lay = model.layout
    ids: list[int] = []
    for enc in tok.encode_batch(lines):
        ids += [i + lay.offset for i in enc] + [lay.eos]
    return torch.tensor(ids, dtype=torch.long)


def windows(model: LatentLM, stream: Tensor, starts: Tensor, context: int) -> Batch:
    """Windows ``<bos> stream[s : s + context]`` for each start s -> Batch [B, context + 1]."""
    lay = model.layout
    if (starts < 0).any() or (starts + context > len(stream)).any():
        raise ValueError(f"window starts must be in [0, {len(stream) - context}]")
    idx = starts[:, None] + torch.arange(context)[None]  # [B, context]
    toks = torch.cat([torch.full((len(starts), 1), lay.bos), stream[idx]], 1)  # [B, N]
    b, n = toks.shape
    weight = torch.ones(b, n)
    weight[:, 0] = 0.0
    return Batch(
        tokens=toks,
        latents=torch.zeros(b, n, 1),
        modality=torch.full((b, n), -1, dtype=torch.long),
        valid=torch.ones(b, n, dtype=torch.bool),
        weight=weight,
    )


@torch.no_grad()
def perplexity(model: LatentLM, stream: Tensor, context: int, batch: int = 32) -> float:
    """exp(mean next-token cross-entropy) over non-overlapping windows covering the held-out stream."""
    was = model.training
    model.eval()
    starts = torch.arange(0, len(stream) - context + 1, context)
    if len(starts) == 0:
        raise ValueError(f"held-out stream ({len(stream)} tokens) is shorter than the context ({context})")
    total, count = 0.0, 0
    dev = next(model.parameters()).device
    for i in range(0, len(starts), batch):
        b = windows(model, stream, starts[i : i + batch], context).to(dev)
        logits = model.logits(model(b)[:, :-1]).float()  # [B, N-1, V]
        ce = F.cross_entropy(logits.transpose(1, 2), b.tokens[:, 1:], reduction="sum")
        total += float(ce)
        count += b.tokens[:, 1:].numel()
    model.train(was)
    return math.exp(total / count)


def unigram_perplexity(train_stream: Tensor, heldout: Tensor, vocab: int, context: int) -> float:
    """Add-one unigram model of the training stream, scored on the same held-out targets as ``perplexity``."""
    counts = torch.bincount(train_stream, minlength=vocab).double() + 1.0
    logp = (counts / counts.sum()).log()
    n = (len(heldout) // context) * context
    return math.exp(float(-logp[heldout[:n]].mean()))


def split_lines(lines: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Random (seeded) line split -> (train, held-out)."""
    if not 0 < fraction < 1:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {fraction}")
    perm = torch.randperm(len(lines), generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, int(len(lines) * fraction))
    return [lines[i] for i in perm[k:]], [lines[i] for i in perm[:k]]


def train_text_lm(
    cfg: TextLMConfig, lines: list[str], tok: TextTokenizer | None = None
) -> tuple[LatentLM, TextTokenizer, dict]:
    """Train tokenizer (unless given) and LM; -> (model, tokenizer, report with perplexities)."""
    if cfg.lm.modalities:
        raise ValueError("the text LM has no modalities: set lm.modalities={}")
    train_lines, held_lines = split_lines(lines, cfg.heldout_fraction, cfg.seed)
    tok = tok or TextTokenizer.train(train_lines, cfg.tokenizer_vocab)
    if cfg.lm.vocab_size != tok.vocab_size:
        raise ValueError(f"lm.vocab_size ({cfg.lm.vocab_size}) must equal the tokenizer's ({tok.vocab_size})")
    if cfg.lm.trunk.max_seq_len < cfg.context + 1:
        raise ValueError(f"lm.trunk.max_seq_len must be >= context + 1 = {cfg.context + 1}")
    torch.manual_seed(cfg.seed)
    model = LatentLM(cfg.lm)
    train_s, held_s = token_stream(model, tok, train_lines), token_stream(model, tok, held_lines)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    report: dict = {
        "train_tokens": len(train_s),
        "heldout_tokens": len(held_s),
        "unigram_ppl": unigram_perplexity(train_s, held_s, model.layout.size, cfg.context),
        "initial_ppl": perplexity(model, held_s, cfg.context),
    }
    model.train()
    for step in range(cfg.steps):
        starts = torch.randint(0, len(train_s) - cfg.context, (cfg.batch,), generator=g)
        terms = model.losses(windows(model, train_s, starts, cfg.context))
        optimizer_step(model, opt, sched, terms)
        if cfg.log_every and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            print(
                f"text step {step:5d}  lm {terms['lm'].item():.4f}  acc {terms['lm_acc'].item():.3f}",
                flush=True,
            )
    model.eval()
    report["heldout_ppl"] = perplexity(model, held_s, cfg.context)
    return model, tok, report
