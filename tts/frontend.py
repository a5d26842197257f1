"""Text front end: English normalisation -> espeak-ng phonemes (via phonemizer) -> ids in a fixed vocabulary.

    fe = Frontend("en-us")
    fe.normalize("Dr. Smith paid $3.50 on May 1st, 1999.")
    # 'Doctor Smith paid three dollars and fifty cents on May first, nineteen ninety-nine.'
    fe.phonemize("Hello, world!")          # 'həlˈoʊ, wˈɜːld!'
    ids = fe.encode("Hello, world!")       # list[int], ids in [0, len(fe.vocab))
    fe.split_sentences(long_text, max_chars=200)

Handling of odd input (documented behaviour, tested):
- Empty or unspeakable input ("", "   ", "!!!") raises ValueError.
- Input characters that survive unicode folding (NFKC, accents stripped, curly quotes/dashes -> ASCII) but are
  not letters, digits, whitespace or known punctuation (emoji, CJK, ...) are DROPPED with a warning.
- Phoneme symbols that espeak-ng emits but the vocabulary lacks map to ``<unk>`` (id 0) with a warning.
- Numbers, money, times and dates are read as people say them (tts/numbers.py: "3pm" -> "three PM",
  "12/05/2024" -> "December fifth, twenty twenty four", "¥100" -> "one hundred yen"; a number too long to be an
  amount is read digit by digit). HTML / SSML tags are never read: ``<break>`` and paragraph tags become pauses,
  every other tag is removed (tts/markup.py).

The espeak-ng library is the PyPI ``espeakng-loader`` build. Its paths are put into ``os.environ`` as
PHONEMIZER_ESPEAK_LIBRARY / PHONEMIZER_ESPEAK_DATA_PATH at import, so worker processes inherit them.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import unicodedata
import warnings
from dataclasses import dataclass, field

from tts.markup import strip_markup
from tts.numbers import clock_times, expand_numbers


def _configure_espeak_env() -> None:
    """Point phonemizer at the wheel-bundled espeak-ng unless the user already chose one."""
    try:
        import espeakng_loader
    except ImportError:  # fall back to a system espeak-ng, if phonemizer can find one
        return
    os.environ.setdefault("PHONEMIZER_ESPEAK_LIBRARY", str(espeakng_loader.get_library_path()))
    os.environ.setdefault("PHONEMIZER_ESPEAK_DATA_PATH", str(espeakng_loader.get_data_path()))


_configure_espeak_env()

# --- vocabulary

PUNCTUATION = ",.!?;:"  # kept by phonemizer (preserve_punctuation=True); everything else is folded away
VOCAB_VERSION = "en-ipa-v1"
# Bumped whenever normalize_text changes what a text phonemizes to, so caches of phoneme ids (tts.train's
# LATENTS/phonemes.json) made by an older front end are caught. 2: capitalised text is read as words, not letters.
# (Not bumped for markup, am/pm, dates, ¥/₹/₩/¢ and over-long numbers: plain text reads exactly as before; only
# inputs that were read wrongly or crashed changed.)
TEXT_NORM_VERSION = 2
# espeak-ng (through phonemizer) is one process-wide C state: two threads phonemizing at once get each other's
# phonemes (measured: 54 of 540 calls wrong with 3 threads). Every use goes through this lock.
ESPEAK_LOCK = threading.RLock()
_SYMBOLS_V1 = (
    ["<unk>", " "]
    + list(PUNCTUATION)
    + ["ˈ", "ˌ", "ː", "\u0329"]  # primary/secondary stress, length, syllabic mark (n̩, l̩)
    + list("abdefhijklmnoprstuvwxz")
    + list("æçðŋɐɑɒɔəɚɛɜɝɡɪɫɬɹɾʃʊʌʍʒʔθᵻ")
    + ["ʲ", "ʰ", "ɕ", "ɟ", "ɲ", "ʎ", "ʁ", "ɣ", "β", "ø", "œ", "y", "ɯ", "ɨ", "ɵ", "c", "q", "g"]
)


@dataclass
class Vocab:
    """A fixed list of phoneme symbols; a symbol's id is its index. Saved with every model via to_dict()."""

    symbols: list[str] = field(default_factory=lambda: list(_SYMBOLS_V1))
    version: str = VOCAB_VERSION
    unk: str = "<unk>"

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("Vocab symbols must be unique")
        if self.unk not in self.symbols:
            raise ValueError(f"Vocab must contain the unknown symbol {self.unk!r}")
        self._index = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def unk_id(self) -> int:
        return self._index[self.unk]

    def encode(self, phonemes: str) -> list[int]:
        """One id per unicode code point; unknown symbols -> unk_id (with a warning)."""
        ids, unknown = [], set()
        for ch in phonemes:
            i = self._index.get(ch)
            if i is None:
                unknown.add(ch)
                i = self.unk_id
            ids.append(i)
        if unknown:
            warnings.warn(
                f"phoneme symbols not in vocab {self.version}: {sorted(unknown)} -> {self.unk}", stacklevel=2
            )
        return ids

    def decode(self, ids: list[int]) -> str:
        n = len(self.symbols)
        bad = [i for i in ids if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"ids out of range for a vocab of {n}: {bad[:5]}")
        return "".join(self.symbols[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"symbols": list(self.symbols), "version": self.version, "unk": self.unk}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(symbols=list(d["symbols"]), version=d["version"], unk=d.get("unk", "<unk>"))


# --- normalisation

_UNICODE_MAP = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "`": "'",
    "\u00b4": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2033": '"',
    "\u2013": " - ",
    "\u2014": ", ",
    "\u2015": ", ",
    "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u00a3": "£",
    "\u20ac": "€",
    "\u00d7": " times ",
    "\u00b0": " degrees ",
    "[": "(",
    "]": ")",
    "{": "(",
    "}": ")",
}
_ABBREVIATIONS = {
    "mr": "Mister",
    "mrs": "Missus",
    "ms": "Miz",
    "dr": "Doctor",
    "prof": "Professor",
    "capt": "Captain",
    "gen": "General",
    "lt": "Lieutenant",
    "col": "Colonel",
    "sgt": "Sergeant",
    "rev": "Reverend",
    "hon": "Honorable",
    "jr": "Junior",
    "sr": "Senior",
    "mt": "Mount",
    "ft": "Fort",
    "gov": "Governor",
    "messrs": "Messieurs",
    "vs": "versus",
    "etc": "et cetera",
    "approx": "approximately",
    "dept": "department",
    "co": "Company",
    "corp": "Corporation",
    "inc": "Incorporated",
    "ltd": "Limited",
    "ave": "Avenue",
}
_SYMBOL_WORDS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "%": " percent ", "#": " number "}
_ALLOWED = re.compile(r"[^A-Za-z0-9\s" + re.escape(PUNCTUATION) + r"'\"()\-]")
_RE_ABBR = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", re.IGNORECASE)
_RE_ST = re.compile(r"\bSt\.")  # St. Paul -> Saint Paul; Baker St. -> Baker Street
_RE_NO = re.compile(r"\bNo\.\s?(?=\d)")
_RE_ACRONYM_DOTS = re.compile(r"\b(?:[A-Za-z]\.){2,}")  # e.g. i.e. U.S.A.


def _fold_unicode(text: str) -> str:
    text = "".join(_UNICODE_MAP.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))  # café -> cafe
    return unicodedata.normalize("NFKC", text)


def normalize_text(text: str) -> str:
    """English read-speech normalisation. Returns ASCII text with words, spaces and PUNCTUATION only."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    text = _fold_unicode(strip_markup(text))  # tts/markup.py: tags are never read aloud
    # a shouted sentence or a LibriSpeech transcript is words, not a run of acronyms ("IT" = "it")
    if _is_all_caps(text):
        text = re.sub(r"\bi\b", "I", text.lower())  # the pronoun keeps its capital (else the letter "i")
    text = clock_times(text)  # "3 p.m." before "p.m." is read as an acronym
    text = re.sub(r"\be\.g\.", "for example", text, flags=re.IGNORECASE)
    text = re.sub(r"\bi\.e\.", "that is", text, flags=re.IGNORECASE)
    text = _RE_ACRONYM_DOTS.sub(lambda m: " ".join(m.group(0).replace(".", "").upper()), text)
    text = _RE_ST.sub(lambda m: "Saint" if _is_saint(m.string, m) else _street(m.string, m), text)
    text = _RE_NO.sub("number ", text)
    text = _RE_ABBR.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)
    text = expand_numbers(text)  # tts/numbers.py: dates, times, money, percentages, ordinals, numbers
    for sym, word in _SYMBOL_WORDS.items():
        text = text.replace(sym, word)
    dropped = sorted(set(_ALLOWED.findall(text)))
    if dropped:
        warnings.warn(f"dropping characters the front end cannot speak: {dropped}", stacklevel=2)
        text = _ALLOWED.sub(" ", text)
    text = re.sub(r"[()\"]", " ", text)  # brackets and quotes carry no sound
    text = re.sub(r"(?<=\w)-(?=\w)", " ", text)  # hyphenated words -> words
    text = re.sub(r"\s-+\s|--+", ", ", text)  # spaced dashes -> pause
    text = text.replace("-", " ")
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)  # no space before punctuation
    text = re.sub(r"([,;:])[,;:]+", r"\1", text)
    return re.sub(r"\s+", " ", text).strip(" ,;:")


def _is_all_caps(text: str) -> bool:
    """No lower-case letter and at least three words of letters: text written in capitals (espeak would spell
    out capitalised short words such as "IT" or "US" letter by letter). A short capitalised text ("NASA", "OK")
    stays as it is."""
    return not re.search(r"[a-z]", text) and len(re.findall(r"[A-Z]+(?:'[A-Z]+)?", text)) >= 3


def _is_saint(text: str, m: re.Match) -> bool:
    rest = text[m.end() :].lstrip()
    before = text[: m.start()].rstrip()
    # "Baker St. Then..." is ambiguous; a preceding capitalised word (a street name) means Street.
    prev_is_name = bool(re.search(r"[A-Z][a-z]+$", before))
    return bool(rest[:1].isupper()) and not prev_is_name


def _street(text: str, m: re.Match) -> str:
    """Keep the sentence-ending period when "St." ends a sentence ("... Baker St. They ...")."""
    return "Street." if re.match(r"\s+[A-Z]", text[m.end() :]) or not text[m.end() :].strip() else "Street"


def is_speakable(normalized: str) -> bool:
    return bool(re.search(r"[A-Za-z]", normalized))


# --- sentences

_RE_SENT_END = re.compile(r"(?<=[.!?])(?P<close>[\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")
_NO_SPLIT_BEFORE = re.compile(
    r"\b(?:" + "|".join(list(_ABBREVIATIONS) + ["st", "no", "[a-z]"]) + r")\.$", re.I
)


def split_sentences(text: str, max_chars: int = 250) -> list[str]:
    """Split raw text into sentences (abbreviation-aware); pieces longer than max_chars are cut at , ; :
    and then at word boundaries. Never returns empty pieces."""
    if max_chars < 20:
        raise ValueError(f"max_chars must be >= 20, got {max_chars}")
    text = re.sub(r"\s+", " ", _fold_unicode(strip_markup(text))).strip()
    pieces, start = [], 0
    for m in _RE_SENT_END.finditer(text):
        if _NO_SPLIT_BEFORE.search(text[start : m.start()]):
            continue
        pieces.append(text[start : m.end("close")].strip())
        start = m.end()
    pieces.append(text[start:].strip())
    out: list[str] = []
    for p in pieces:
        out.extend(_cut(p, max_chars))
    return [p for p in out if p]


def _cut(p: str, max_chars: int) -> list[str]:
    if len(p) <= max_chars:
        return [p]
    parts = re.split(r"(?<=[,;:])\s+", p)
    if len(parts) == 1:
        parts = p.split(" ")
    out, cur = [], ""
    for part in parts:
        if cur and len(cur) + 1 + len(part) > max_chars:
            out.append(cur)
            cur = part
        else:
            cur = f"{cur} {part}" if cur else part
    out.append(cur)
    # a single word longer than max_chars stays whole; recurse only where the split made progress
    return [
        q
        for piece in out
        for q in (
            _cut(piece, max_chars) if len(piece) > max_chars and " " in piece and piece != p else [piece]
        )
    ]


# --- front end


class Frontend:
    """Normalise -> phonemize (espeak-ng, stress marks, punctuation kept) -> ids. Picklable (the espeak
    backend is rebuilt lazily in each process)."""

    def __init__(
        self, language: str = "en-us", vocab: Vocab | None = None, trained_espeak: str | None = None
    ):
        self.language = language
        self.vocab = vocab or Vocab()
        self.trained_espeak = trained_espeak  # the espeak-ng version a loaded model was trained with
        self._backend = None

    def __getstate__(self) -> dict:
        return {
            "language": self.language,
            "vocab": self.vocab.to_dict(),
            "trained_espeak": self.trained_espeak,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["language"], Vocab.from_dict(state["vocab"]), state.get("trained_espeak"))

    @property
    def backend(self):
        with ESPEAK_LOCK:
            return self._make_backend()

    def _make_backend(self):
        if self._backend is None:
            from phonemizer.backend import EspeakBackend

            quiet = logging.getLogger("phonemizer.frontend")
            quiet.setLevel(logging.ERROR)
            self._backend = EspeakBackend(
                self.language,
                preserve_punctuation=True,
                punctuation_marks=PUNCTUATION,
                with_stress=True,
                language_switch="remove-flags",
                logger=quiet,
            )
            want = self.trained_espeak
            if want and want != self.espeak_version:
                warnings.warn(
                    f"model was trained with espeak-ng {want}, this is {self.espeak_version}", stacklevel=2
                )
        return self._backend

    @property
    def espeak_version(self) -> str:
        return ".".join(str(v) for v in self.backend.version())

    def to_dict(self) -> dict:
        """Everything a model must store to reproduce its input ids."""
        return {
            "language": self.language,
            "vocab": self.vocab.to_dict(),
            "espeak_version": self.espeak_version,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Frontend:
        # the version check waits for the first phonemization: a model can be loaded (e.g. to continue training
        # on cached phonemes) where espeak-ng is missing
        return cls(d["language"], Vocab.from_dict(d["vocab"]), d.get("espeak_version"))

    def normalize(self, text: str) -> str:
        return normalize_text(text)

    def split_sentences(self, text: str, max_chars: int = 250) -> list[str]:
        return split_sentences(text, max_chars)

    def phonemize(self, text: str | list[str]) -> str | list[str]:
        """One string -> one phoneme string; a list -> a list (one espeak pass for the whole batch)."""
        from phonemizer.separator import Separator

        single = isinstance(text, str)
        texts = [text] if single else list(text)
        norm = []
        for i, t in enumerate(texts):
            n = normalize_text(t)
            if not is_speakable(n):
                where = "" if single else f" (item {i})"
                raise ValueError(
                    f"nothing to speak in {t!r}{where}: no letters or numbers after normalisation"
                )
            norm.append(n)
        with ESPEAK_LOCK:  # espeak-ng keeps global state: concurrent calls mix up their outputs
            out = self.backend.phonemize(
                norm, separator=Separator(phone=None, word=" ", syllable=None), strip=True
            )
        out = [re.sub(r"\s+", " ", o).strip() for o in out]
        for i, o in enumerate(out):
            if not re.search(r"[^\s" + re.escape(PUNCTUATION) + "]", o):
                raise ValueError(f"espeak-ng produced no phonemes for {texts[i]!r}")
        return out[0] if single else out

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.phonemize(text))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.vocab.encode(p) for p in self.phonemize(list(texts))]

    def decode(self, ids: list[int]) -> str:
        return self.vocab.decode(ids)
