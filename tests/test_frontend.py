"""Text front end: normalisation, espeak-ng phonemes, vocabulary round trips, errors, sentence splitting."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import subprocess
import sys

import pytest

from tts.frontend import PUNCTUATION, VOCAB_VERSION, Frontend, Vocab, normalize_text, split_sentences


@pytest.fixture(scope="module")
def fe() -> Frontend:
    return Frontend("en-us")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Dr. Smith paid $3.50.", "Doctor Smith paid three dollars and fifty cents."),
        ("It was 1999, or was it 2005?", "It was nineteen ninety nine, or was it two thousand and five?"),
        ("the 21st and 3rd times", "the twenty first and third times"),
        ("50% of 1,000 men", "fifty percent of one thousand men"),
        ("pi is 3.14", "pi is three point one four"),
        ("£5 and €1", "five pounds and one euro"),
        ("at 10:30 or 7:00", "at ten thirty or seven o'clock"),
        ("Mr. and Mrs. Jones, Prof. Lee etc.", "Mister and Missus Jones, Professor Lee et cetera"),
        ("St. Paul lives on Baker St. Then he left.", "Saint Paul lives on Baker Street. Then he left."),
        ("\u201cQuoted\u201d \u2014 it\u2019s caf\u00e9\u2026", "Quoted, it's cafe..."),
        ("a well-known fact", "a well known fact"),
        ("-5 degrees", "minus five degrees"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalized_text_is_ascii_words_and_kept_punctuation() -> None:
    out = normalize_text("“Wait—what?!” (she said) £3.20 & 4th… [ok] #1")
    assert out.isascii()
    assert set(out) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ '" + PUNCTUATION)
    assert not any(ch.isdigit() for ch in out)


def test_unknown_characters_dropped_with_warning(fe: Frontend) -> None:
    with pytest.warns(UserWarning, match="dropping characters"):
        assert normalize_text("hello 🎉 world 中") == "hello world"


@pytest.mark.filterwarnings("ignore:dropping characters")
@pytest.mark.parametrize("bad", ["", "   ", "!!!", "...?", "🎉", "\n\t"])
def test_unspeakable_input_raises(fe: Frontend, bad: str) -> None:
    with pytest.raises(ValueError, match="nothing to speak"):
        fe.encode(bad)


def test_non_string_raises(fe: Frontend) -> None:
    with pytest.raises(ValueError, match="must be a str"):
        fe.normalize(42)  # type: ignore[arg-type]


def test_phonemize_keeps_punctuation_stress_and_word_boundaries(fe: Frontend) -> None:
    ph = fe.phonemize("Hello, world! How are you?")
    assert ph.count(" ") == 4  # five words, one space between each
    assert ph.index(",") < ph.index("!") < ph.index("?")
    assert "ˈ" in ph
    assert ph.startswith("h") and ph.endswith("?")


def test_phonemes_differ_for_different_words(fe: Frontend) -> None:
    a, b, c = fe.phonemize(["cat", "bat", "cat"])
    assert a == c and a != b


def test_batch_matches_single(fe: Frontend) -> None:
    texts = ["The first sentence.", "Number 42 is here!", "A third, shorter one?"]
    assert fe.phonemize(texts) == [fe.phonemize(t) for t in texts]
    assert fe.encode_batch(texts) == [fe.encode(t) for t in texts]


def test_batch_error_names_item(fe: Frontend) -> None:
    with pytest.raises(ValueError, match=r"item 1"):
        fe.phonemize(["fine", "?!", "fine"])


def test_real_transcripts_encode_without_unknowns(fe: Frontend, real_transcripts) -> None:
    """All real transcripts (LibriSpeech + dev) must map onto the v1 vocabulary without <unk>."""
    texts = [r["transcript"] for r in real_transcripts]
    assert len(texts) == 297
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an <unk> would warn
        ids = fe.encode_batch(texts)
    assert all(0 < min(x) and max(x) < len(fe.vocab) for x in ids)
    assert all(fe.decode(x) == p for x, p in zip(ids[:20], fe.phonemize(texts[:20])))


def test_capitalised_text_is_read_as_words(fe: Frontend, real_transcripts) -> None:
    """LibriSpeech transcripts are in capitals; espeak spells short capitalised words ("IT", "US") letter by
    letter and stresses function words ("TO"). Text without a lower-case letter reads as its lower-case form (the
    pronoun I kept); a short capitalised text and acronyms inside ordinary text stay acronyms."""
    rows = [r for r in real_transcripts if r["subset"] == "librispeech_train-clean-100"]
    caps = [r["transcript"] for r in rows[:40]]
    assert all(t == t.upper() for t in caps)
    lower = [
        " ".join("I" + w[1:] if w in ("i", "i'm", "i'll", "i've", "i'd") else w for w in t.lower().split())
        for t in caps
    ]
    assert fe.encode_batch(caps) == fe.encode_batch(lower)
    assert fe.encode("I SAW IT AND US") == fe.encode("I saw it and us")
    assert fe.encode("I'M SURE I'LL GO") == fe.encode("I'm sure I'll go")
    assert fe.encode("We saw the US army.") != fe.encode("We saw the us army.")  # mixed case: an acronym
    assert normalize_text("NASA") == "NASA" and normalize_text("NASA IS BIG") == "nasa is big"


def test_vocab_round_trip_and_versioning(fe: Frontend) -> None:
    v = fe.vocab
    assert v.version == VOCAB_VERSION and v.symbols[0] == "<unk>" and v.unk_id == 0
    v2 = Vocab.from_dict(v.to_dict())
    assert v2.symbols == v.symbols and len(v2) == len(v)
    d = fe.to_dict()
    assert d["espeak_version"].count(".") == 2 and d["vocab"]["version"] == VOCAB_VERSION
    fe2 = Frontend.from_dict(d)
    assert fe2.encode("Same ids, please.") == fe.encode("Same ids, please.")
    # another espeak-ng: loading stays silent (it may be missing where a model only trains on cached phonemes);
    # the first phonemization warns, also after pickling
    old = Frontend.from_dict({**d, "espeak_version": "1.0.0"})
    assert old._backend is None
    with pytest.warns(UserWarning, match="trained with espeak-ng 1.0.0"):
        old.encode("Warned once.")
    with pytest.warns(UserWarning, match="trained with espeak-ng 1.0.0"):
        pickle.loads(pickle.dumps(Frontend.from_dict({**d, "espeak_version": "1.0.0"}))).encode("Again.")


def test_vocab_unknown_symbol_maps_to_unk() -> None:
    v = Vocab()
    with pytest.warns(UserWarning, match="not in vocab"):
        ids = v.encode("hɑ̃\u02a4")
    assert ids[0] == v.symbols.index("h") and ids.count(v.unk_id) == 2
    with pytest.raises(ValueError, match="out of range"):
        v.decode([len(v)])
    with pytest.raises(ValueError, match="unique"):
        Vocab(symbols=["<unk>", "a", "a"])


def test_frontend_pickles_and_works_in_worker_processes(fe: Frontend) -> None:
    fe2 = pickle.loads(pickle.dumps(fe))
    assert fe2.encode("pickled") == fe.encode("pickled")
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.map(_encode_in_worker, [(fe, "worker process")])
    assert got == [fe.encode("worker process")]


def _encode_in_worker(args):
    fe, text = args
    assert "PHONEMIZER_ESPEAK_LIBRARY" in os.environ
    return fe.encode(text)


def test_env_vars_reach_subprocesses() -> None:
    import tts.frontend  # noqa: F401

    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ['PHONEMIZER_ESPEAK_DATA_PATH'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert os.path.isdir(out.stdout.strip())


def test_split_sentences() -> None:
    text = "Mr. Smith went to Washington. He said: \u201cHello!\u201d Then he left? Yes. "
    text += "Dr. Who came at 5 p.m. too."
    out = split_sentences(text)
    assert out == [
        "Mr. Smith went to Washington.",
        'He said: "Hello!"',
        "Then he left?",
        "Yes.",
        "Dr. Who came at 5 p.m. too.",
    ]


def test_split_sentences_respects_max_chars() -> None:
    long = ", ".join(f"clause number {i} goes here" for i in range(30)) + "."
    out = split_sentences(long, max_chars=80)
    assert len(out) > 5 and all(len(p) <= 80 for p in out)
    assert " ".join(out).replace(" ", "") == long.replace(" ", "")
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("x", max_chars=5)
