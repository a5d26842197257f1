"""Byte-level BPE tokenizer (HuggingFace ``tokenizers``), trained offline, saved as JSON beside the model.

Byte-level: every string round-trips exactly (no unknown token). Ids are the discrete vocabulary of a LatentLM
(``LatentLMConfig.vocab_size = tokenizer.vocab_size``); the LM's own ``TokenLayout`` adds the special tokens
(``<bos>``, ``<eos>``, boundaries) on top, so the tokenizer itself has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

TOKENIZER_FILE = "tokenizer.json"


class TextTokenizer:
    def __init__(self, tok):
        self._tok = tok

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2) -> TextTokenizer:
        """Train a byte-level BPE on an iterable of strings (lines or documents)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise ValueError(f"vocab_size must be >= 257 (256 byte symbols + merges), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"encode() takes a str, got {type(text).__name__}")
        return self._tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids out of range [0, {self.vocab_size}): {bad[:5]}")
        return self._tok.decode(ids)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(path))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        """A tokenizer.json file, or a directory holding one."""
        from tokenizers import Tokenizer

        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}")
        return cls(Tokenizer.from_file(str(path)))
