"""English text normalisation (Whisper's EnglishTextNormalizer) and word-error counts (jiwer).

Both reference and hypothesis go through the same normaliser before counting, as in Whisper's and F5-TTS's
evaluations: lower case, punctuation removed, spellings standardised (colour -> color), spoken numbers turned
into digits ("twenty dollars" -> "$20"), "mr" -> "mister" and so on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version

import jiwer

NORMALIZER_ID = (
    f"whisper_normalizer.english.EnglishTextNormalizer (whisper-normalizer {version('whisper-normalizer')})"
)


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_text(text: str) -> str:
    """Whisper's English normalisation, with whitespace collapsed to single spaces."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return " ".join(_normalizer()(text).split())


@dataclass(frozen=True)
class WordErrors:
    """Word-level edit counts of one utterance (after normalisation)."""

    substitutions: int
    deletions: int
    insertions: int
    ref_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.errors / self.ref_words


def word_errors(ref_norm: str, hyp_norm: str) -> WordErrors:
    """Counts for already-normalised texts. An empty reference is an error (its WER is undefined)."""
    if not ref_norm.split():
        raise ValueError("reference text is empty after normalisation; WER is undefined")
    if not hyp_norm.split():  # jiwer needs a non-empty hypothesis: everything is a deletion
        return WordErrors(0, len(ref_norm.split()), 0, len(ref_norm.split()))
    o = jiwer.process_words(ref_norm, hyp_norm)
    return WordErrors(o.substitutions, o.deletions, o.insertions, o.substitutions + o.deletions + o.hits)


def aggregate_wer(counts: list[WordErrors]) -> dict[str, float | int | str]:
    """Corpus WER (sum of errors / sum of reference words) and mean per-utterance WER, both labelled."""
    if not counts:
        return {"n": 0, "corpus_wer": float("nan"), "mean_utterance_wer": float("nan")}
    errors = sum(c.errors for c in counts)
    words = sum(c.ref_words for c in counts)
    return {
        "n": len(counts),
        "corpus_wer": errors / words,
        "corpus_wer_definition": "sum of (S+D+I) over utterances / sum of reference words (VALL-E/LatentLM)",
        "mean_utterance_wer": sum(c.wer for c in counts) / len(counts),
        "mean_utterance_wer_definition": "mean over utterances of (S+D+I)/N (F5-TTS protocol)",
        "substitutions": sum(c.substitutions for c in counts),
        "deletions": sum(c.deletions for c in counts),
        "insertions": sum(c.insertions for c in counts),
        "ref_words": words,
        "word_recall": (words - sum(c.substitutions + c.deletions for c in counts)) / words,
        "word_recall_definition": "reference words recognised (N - S - D) / N: blind to insertions",
    }


def char_errors(ref_norm: str, hyp_norm: str) -> tuple[int, int]:
    """(character edits, reference characters) of already-normalised texts, spaces included."""
    if not ref_norm:
        raise ValueError("reference text is empty after normalisation; CER is undefined")
    if not hyp_norm:
        return len(ref_norm), len(ref_norm)
    o = jiwer.process_characters(ref_norm, hyp_norm)
    return o.substitutions + o.deletions + o.insertions, o.substitutions + o.deletions + o.hits


def aggregate_cer(pairs: list[tuple[str, str]]) -> dict[str, float | int | str]:
    """Corpus CER over (ref_norm, hyp_norm) pairs: finer than WER while a model says few words right."""
    counts = [char_errors(r, h) for r, h in pairs]
    chars = sum(n for _, n in counts)
    return {
        "n": len(counts),
        "corpus_cer": sum(e for e, _ in counts) / chars if chars else float("nan"),
        "corpus_cer_definition": "sum of character edits / sum of reference characters (normalised text)",
        "ref_chars": chars,
    }
