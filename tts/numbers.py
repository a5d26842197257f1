"""Numbers as people read them aloud (English): amounts, money, times, dates, percentages, ordinals.

    expand_numbers("Meet me at 3pm on 12/05/2024; it costs ¥100.")
    # 'Meet me at three PM on December fifth, twenty twenty four; it costs one hundred yen.'

Rules, in the order they run (tts/frontend.py's ``normalize_text`` calls this on unicode-folded text):
- dates with a year: ``12/05/2024`` and ``12-05-2024`` month first (US English: December fifth, twenty twenty
  four), day first when the first number cannot be a month (``25/12/2024``); ISO ``2024-05-12``;
- clock times: ``3pm``, ``3 p.m.``, ``10:30am`` -> "three PM", "ten thirty AM" (spelled by espeak-ng: "pee em";
  a lower-case "a m" would be read "uh m"); ``7:00`` -> "seven o'clock";
- money: ``$`` ``£`` ``€`` ``¥`` ``₹`` ``₩`` before the amount (``$3.50``, ``€1``, ``$3.5 million``), ``€``/``¥``
  after it (``100€``), and ``50¢``;
- percentages, ordinals (``21st``), then every other number (``1,000``, ``3.14``, ``-5``, four-digit years);
  a digit run glued to letters is spaced off (``10km`` -> "ten km").
A number too long to say as an amount (more than ``MAX_AMOUNT_DIGITS`` digits: card numbers, or a 400-digit
string that num2words cannot read) is read digit by digit.
"""

from __future__ import annotations

import re

from num2words import num2words

MAX_AMOUNT_DIGITS = 15  # up to hundreds of trillions are read as amounts; longer digit runs digit by digit
_DIGITS = "zero one two three four five six seven eight nine".split()
MONTHS = "January February March April May June July August September October November December".split()
CURRENCIES = {  # symbol: (one, many, one sub-unit, many sub-units | None)
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
    "₹": ("rupee", "rupees", "paisa", "paise"),
    "₩": ("won", "won", None, None),
}
_SYMBOLS = re.escape("".join(CURRENCIES))


def digits(s: str) -> str:
    """'4071' -> 'four zero seven one'."""
    return " ".join(_DIGITS[int(d)] for d in s if d.isdigit())


def words(n: int | float, **kw) -> str:
    """num2words without its commas and hyphens (commas would become pauses in the phonemes); a number too long
    to be an amount is read digit by digit."""
    if isinstance(n, int) and len(str(abs(n))) > MAX_AMOUNT_DIGITS:
        return ("minus " if n < 0 else "") + digits(str(abs(n)))
    try:
        return num2words(n, lang="en", **kw).replace(",", "").replace("-", " ")
    except (OverflowError, ValueError, ArithmeticError):
        return digits(str(n))


def _int(s: str) -> int | None:
    """A digit string as an int, or None when it is too long to be read as an amount."""
    return None if len(s) > MAX_AMOUNT_DIGITS else int(s)


def _money(m: re.Match) -> str:
    sym = m.group("cur") or m.group("cur2")
    whole, frac, scale = m.group("whole").replace(",", ""), m.group("frac"), m.group("scale")
    one, many, sub_one, sub_many = CURRENCIES[sym]
    if _int(whole) is None:
        return f"{digits(whole)} {many}"
    if scale:  # "$3.5 million" -> "three point five million dollars"
        num = words(float(f"{whole}.{frac}")) if frac else words(int(whole))
        return f"{num} {scale} {many}"
    n = int(whole)
    out = f"{words(n)} {one if n == 1 else many}"
    if frac:
        c = int((frac + "0")[:2])
        if c and sub_many is None:  # no spoken sub-unit (yen): "one point five yen"
            return f"{number(f'{whole}.{frac}')} {many}"
        if c:
            out = f"{out} and {words(c)} {sub_one if c == 1 else sub_many}" if n else f"{words(c)} {sub_many}"
    return out


def number(s: str) -> str:
    neg = s.startswith("-")
    s = s.lstrip("-")
    if "." in s:
        whole, frac = s.replace(",", "").split(".")
        head = digits(whole) if _int(whole) is None else words(int(whole or "0"))
        txt = f"{head} point {digits(frac)}"
    elif "," not in s and len(s) == 4 and 1100 <= int(s) <= 2099 and not (int(s) % 1000 == 0):
        txt = words(int(s), to="year")  # bare four-digit numbers read as years: 1999 -> nineteen ninety-nine
    else:
        n = _int(s.replace(",", ""))
        txt = digits(s) if n is None else words(n)
    return f"minus {txt}" if neg else txt


def _clock(h: int, mi: int, o_clock: bool) -> str:
    if mi == 0:
        return f"{words(h)} o'clock" if o_clock else words(h)
    return f"{words(h)} {'oh ' if mi < 10 else ''}{words(mi)}"


def _time(m: re.Match) -> str:
    return _clock(int(m.group(1)), int(m.group(2)), o_clock=True)


def _ampm(m: re.Match) -> str:
    """'3pm' / '3:30 p.m.' -> 'three p m' / 'three thirty p m'; a closing 'p.m.' keeps its full stop when it
    ends a sentence (followed by a capital or the end of the text)."""
    h, mi = int(m.group("h")), int(m.group("mi") or 0)
    out = f"{_clock(h, mi, o_clock=False)} {m.group('ap').upper()}M"  # "AM": espeak says "ay em" ("a m": "uh m")
    if m.group("dot") and re.match(r"\s*(?:$|[A-Z\"'(])", m.string[m.end() :]):
        out += "."
    return out


def _year(y: str) -> str:
    if len(y) == 2:
        return f"oh {words(int(y))}" if y.startswith("0") else words(int(y))
    return words(int(y), to="year")


def _date(m: re.Match) -> str:
    a, b, y = int(m.group("a")), int(m.group("b") or m.group("b2")), m.group("y") or m.group("y2")
    month, day = (a, b) if a <= 12 else (b, a)  # month first (US), unless the first cannot be a month
    return f"{MONTHS[month - 1]} {words(day, to='ordinal')}, {_year(y)}"


def _iso_date(m: re.Match) -> str:
    return f"{MONTHS[int(m.group('m')) - 1]} {words(int(m.group('d')), to='ordinal')}, {_year(m.group('y'))}"


_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)"  # 1,234,567 or 1234567 (never swallows a trailing comma)
_DAY, _MONTH = r"(?:0?[1-9]|[12]\d|3[01])", r"(?:0?[1-9]|1[0-2])"
_RE_DATE = re.compile(  # 12/05/2024, 12/05/24, 12-05-2024 (a dash needs the four-digit year)
    rf"\b(?P<a>{_DAY})(?:/(?P<b>{_DAY})/(?P<y>\d{{4}}|\d{{2}})|-(?P<b2>{_DAY})-(?P<y2>\d{{4}}))\b(?![/-]\d)"
)
_RE_ISO_DATE = re.compile(rf"\b(?P<y>\d{{4}})-(?P<m>{_MONTH})-(?P<d>{_DAY})\b(?!-\d)")
_RE_AMPM = re.compile(
    r"\b(?P<h>1[0-2]|0?[1-9])(?::(?P<mi>[0-5]\d))?\s?(?P<ap>[ap])(?:\.m(?P<dot>\.)?|m)(?!\w)",
    re.IGNORECASE,
)
_RE_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_RE_MONEY = re.compile(
    rf"(?:(?P<cur>[{_SYMBOLS}])\s?|(?=\d[\d,.]*\s?[€¥]))(?P<whole>{_NUM})(?:\.(?P<frac>\d+))?"
    r"(?:\s(?P<scale>thousand|million|billion|trillion)\b)?(?(cur)|\s?(?P<cur2>[€¥]))"
)
_RE_CENTS = re.compile(r"\b(\d{1,2})\s?¢")
_RE_PERCENT = re.compile(r"(-?" + _NUM + r"(?:\.\d+)?)\s?%")
_RE_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_RE_DIGIT_LETTER = re.compile(r"(?<=\d)(?=[A-Za-z])")
_RE_NUMBER = re.compile(r"(?<![\w.])-?" + _NUM + r"(?:\.\d+)?|\d+")


def clock_times(text: str) -> str:
    """Only the am / pm times (run before "p.m." could be read as an acronym)."""
    return _RE_AMPM.sub(_ampm, text)


def expand_numbers(text: str) -> str:
    """Every number in ``text`` as words (module docstring)."""
    text = _RE_DATE.sub(_date, text)
    text = _RE_ISO_DATE.sub(_iso_date, text)
    text = _RE_AMPM.sub(_ampm, text)
    text = _RE_TIME.sub(_time, text)
    text = _RE_MONEY.sub(_money, text)
    text = _RE_CENTS.sub(
        lambda m: f"{words(int(m.group(1)))} {'cent' if m.group(1) == '1' else 'cents'}", text
    )
    text = _RE_PERCENT.sub(lambda m: f"{number(m.group(1))} percent", text)
    text = _RE_ORDINAL.sub(lambda m: _ordinal(m.group(1)), text)
    text = _RE_DIGIT_LETTER.sub(" ", text)
    return _RE_NUMBER.sub(lambda m: number(m.group(0)), text)


def _ordinal(s: str) -> str:
    n = _int(s)
    return f"{digits(s)} th" if n is None else words(n, to="ordinal")
