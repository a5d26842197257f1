"""Text path: byte-level BPE tokenizer (exact round trip, JSON save/load), offline corpus, and a text LM on the
LatentLM trunk whose held-out perplexity falls well below the unigram baseline after a short CPU training."""

from __future__ import annotations

import shutil

import pytest
import torch

from latentlm.config import load_config
from latentlm.model import LatentLM
from latentlm.text.corpus import kjv_lines, librispeech_lines, load_corpus
from latentlm.text.lm import TextLMConfig, token_stream, train_text_lm, unigram_perplexity, windows
from latentlm.text.tokenizer import TextTokenizer

TEXT = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
] * 20


def test_tokenizer_roundtrip_and_save(tmp_path):
    tok = TextTokenizer.train(TEXT, vocab_size=300)
    assert 257 <= tok.vocab_size <= 300
    for s in ["And the earth", "Ünïcödé ✓ never seen 123", ""]:
        assert tok.decode(tok.encode(s)) == s
    ids = tok.encode("and the earth was")
    assert len(ids) < len("and the earth was")  # merges learned
    tok.save(tmp_path)
    back = TextTokenizer.load(tmp_path)
    assert back.encode("darkness upon the deep") == tok.encode("darkness upon the deep")
    with pytest.raises(ValueError, match="vocab_size"):
        TextTokenizer.train(TEXT, vocab_size=100)
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(FileNotFoundError):
        TextTokenizer.load(tmp_path / "nothing")


@pytest.mark.skipif(shutil.which("bible") is None, reason="Debian bible-kjv not installed")
def test_kjv_corpus_lines():
    lines = kjv_lines(max_lines=3)
    assert lines[0] == "In the beginning God created the heaven and the earth."
    assert len(lines) == 3 and not any(":" in ln.split()[0] for ln in lines)


def test_librispeech_transcripts(real_speech_dir, real_manifest):
    lines = librispeech_lines(real_speech_dir)
    n = sum(len(real_manifest(m.parent.name)) for m in real_speech_dir.glob("*/manifest.tsv"))
    assert len(lines) == n and all(ln.strip() for ln in lines)
    with pytest.raises(ValueError, match="unknown corpus source"):
        load_corpus("nope")


def test_librispeech_source_takes_its_folder(real_speech_dir, monkeypatch):
    monkeypatch.delenv("LATENTLM_REAL_SPEECH", raising=False)
    with pytest.raises(ValueError, match="real_speech_dir .* or set LATENTLM_REAL_SPEECH"):
        load_corpus("librispeech")
    lines, source = load_corpus("librispeech", max_lines=5, real_speech_dir=str(real_speech_dir))
    assert source == "librispeech" and lines == librispeech_lines(real_speech_dir)[:5]
    monkeypatch.setenv("LATENTLM_REAL_SPEECH", str(real_speech_dir))
    assert load_corpus("librispeech", max_lines=5) == (lines, "librispeech")


def test_windows_and_unigram_baseline():
    tok = TextTokenizer.train(TEXT, vocab_size=300)
    cfg = load_config(TextLMConfig, None, ["lm.vocab_size=" + str(tok.vocab_size), "lm.trunk.dim=32"])
    model = LatentLM(cfg.lm)
    s = token_stream(model, tok, TEXT[:2])
    assert (s == model.layout.eos).sum() == 2 and s.min() >= model.layout.eos
    b = windows(model, s, torch.tensor([0, 5]), 8)
    assert b.tokens.shape == (2, 9) and (b.tokens[:, 0] == model.layout.bos).all()
    assert torch.equal(b.tokens[1, 1:], s[5:13]) and b.weight[:, 0].eq(0).all()
    with pytest.raises(ValueError):
        windows(model, s, torch.tensor([len(s) - 3]), 8)
    # a stream of one repeated token: unigram perplexity close to 1
    rep = torch.full((1000,), 10)
    assert unigram_perplexity(rep, rep, 20, 8) < 1.05


@pytest.mark.slow
def test_short_training_beats_unigram_perplexity(real_speech_dir):
    # Debian's bible-kjv when installed (scripts/setup.sh --system), else the transcripts of the real clips
    lines, source = load_corpus("auto", max_lines=6000, real_speech_dir=str(real_speech_dir))
    cfg = load_config(
        TextLMConfig,
        None,
        [
            "tokenizer_vocab=512",
            "lm.trunk.dim=64",
            "lm.trunk.n_layers=2",
            "context=32",
            "lm.trunk.max_seq_len=64",
            "steps=150",
            "batch=16",
            "log_every=0",
        ],  # fmt: skip
    )
    tok = TextTokenizer.train(lines, cfg.tokenizer_vocab)
    cfg.lm.vocab_size = tok.vocab_size
    model, _, rep = train_text_lm(cfg, lines, tok)
    assert rep["initial_ppl"] > rep["unigram_ppl"]  # untrained: worse than unigram
    assert rep["heldout_ppl"] < 0.6 * rep["unigram_ppl"], (source, rep)
