"""Numbers, times, dates, money and markup read as people say them (issue 22, case 8): tts/numbers.py and
tts/markup.py, through the front end and through synthesis with a real prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_tiny_tts
from tts.frontend import Frontend, normalize_text, split_sentences

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AEW = EXAMPLES / "arctic_aew_a0003.wav"
AEW_TEXT = "For the twentieth time that evening the two men shook hands."


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Come at 3pm.", "Come at three PM."),
        ("at 10:30am and 7:00", "at ten thirty AM and seven o'clock"),
        ("We met at 3 p.m. Then we left.", "We met at three PM. Then we left."),
        ("at 3 p.m. on Monday", "at three PM on Monday"),
        ("On 12/05/2024 we met.", "On December fifth, twenty twenty four we met."),
        ("On 25/12/2024 we met.", "On December twenty fifth, twenty twenty four we met."),
        ("Due 2024-05-12.", "Due May twelfth, twenty twenty four."),
        ("It costs ¥100.", "It costs one hundred yen."),
        (
            "It costs 100€ or $3.50 or £5 or 50¢.",
            "It costs one hundred euros or three dollars and fifty cents or five pounds or fifty cents.",
        ),  # fmt: skip
        ("a 10km run", "a ten km run"),
        ("card 4111111111111111", "card four one one one one one one one one one one one one one one one"),
    ],
)
def test_read_as_people_say_it(raw, expected):
    assert normalize_text(raw) == expected


def test_a_400_digit_number_is_read_digit_by_digit():
    out = normalize_text("The code is " + "7" * 400 + ".")
    assert out == "The code is " + " ".join(["seven"] * 400) + "."
    assert normalize_text("$" + "9" * 40).endswith("nine dollars")
    assert normalize_text("the " + "1" * 30 + "th") == "the " + " ".join(["one"] * 30) + " th"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("<b>Hello</b> <i>world</i>.", "Hello world."),
        ('<speak>Hello <break time="700ms"/> world &amp; you.</speak>', "Hello. world and you."),
        ('Wait <break time="200ms"/> here.', "Wait, here."),
        ('<prosody rate="slow">Slowly now.</prosody>', "Slowly now."),
        ("<p>One.</p><p>Two</p>", "One. Two."),
        ("<script>alert(1)</script>Safe <!-- hidden --> text", "Safe text"),
        ("Tom &amp; Jerry&#39;s show", "Tom and Jerry's show"),
        ("a < b and c > d", "a b and c d"),  # not tags: the signs dropped as before
        ("if a<b and c>d then", "if a b and c d then"),
    ],
)
def test_markup_is_never_read_aloud(raw, expected):
    assert normalize_text(raw) == expected


def test_sentences_are_split_after_the_markup_is_gone():
    text = '<prosody rate="slow">Hello there. How are you?</prosody> <break time="1s"/> Fine.'
    assert split_sentences(text) == ["Hello there.", "How are you?", "Fine."]


def test_plain_text_reads_as_before():
    """The rules only touch what was misread; plain text (and so phoneme caches) is unchanged."""
    for raw, expected in [
        ("Dr. Smith paid $3.50.", "Doctor Smith paid three dollars and fifty cents."),
        ("It was 1999, or was it 2005?", "It was nineteen ninety nine, or was it two thousand and five?"),
        ("at 10:30 or 7:00", "at ten thirty or seven o'clock"),
        ("pi is 3.14 and 1.2.3", "pi is three point one four and one point two.three"),
        ("Meet me by the old mill, then walk home.", "Meet me by the old mill, then walk home."),
    ]:
        assert normalize_text(raw) == expected


def test_markup_and_long_numbers_synthesize_with_a_real_prompt():
    tts = make_tiny_tts(seed=0)
    fe = Frontend("en-us")
    assert "<" not in fe.phonemize("<b>Hi</b>") and fe.phonemize("<b>Hi</b>") == fe.phonemize("Hi")
    text = "<p>Call me at 3pm.</p> The code is " + "7" * 400 + "."
    res = tts.synthesize(text, AEW, prompt_text=AEW_TEXT, max_seconds=0.1, steps=1)
    assert res.info["sentences"][0] == "Call me at 3pm." and len(res.info["sentences"]) >= 2
