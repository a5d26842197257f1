"""Sentences for the demo corpus: public-domain KJV verses (Debian's bible-kjv) plus generated sentences
that exercise numbers, dates, money, times and abbreviations. Deterministic for a seed; sentence-disjoint
splits."""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import subprocess

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
NAMES = [
    "Mr. Grant",
    "Dr. Hale",
    "Mrs. Porter",
    "Captain Reed",
    "Miss Avery",
    "Prof. Lang",
    "the old miller",
    "St. John",
    "the clerk",
    "young Thomas",
    "the widow",
    "Sergeant Moss",
]
THINGS = [
    "barrels of flour",
    "sheep",
    "letters",
    "soldiers",
    "bushels of wheat",
    "lamps",
    "books",
    "horses",
    "passengers",
    "acres of land",
    "gold coins",
    "wagons",
]
PLACES = [
    "Boston",
    "the harbour",
    "Oak Street",
    "the northern hills",
    "London",
    "the river bank",
    "Bristol",
    "the county fair",
    "Main St.",
    "the chapel",
]
TEMPLATES = [
    "On {month} {day}, {year}, {name} counted {n} {thing}.",
    "{name} paid ${dollars}.{cents} for {n} {thing} in {place}.",
    "By {hour}:{minute:02d} the train from {place} had carried {big} passengers.",
    "The report of {year} said that {pct}% of the {thing} were lost near {place}.",
    "It was the {ordinal} time that {name} had visited {place} since {year}.",
    "{name} walked {dec} miles to {place} on the {ordinal} of {month}.",
    "In {year} there were {big} {thing} in {place}, and only {n} remained by {year2}.",
    "Meet {name} at {place} at {hour}:{minute:02d}, and bring {n} {thing}.",
]


def kjv_sentences(min_chars: int = 25, max_chars: int = 180) -> list[str]:
    """KJV verses from the `bible` program (Debian bible-kjv + bible-kjv-text), split at ; and : when long.
    Empty list when the program is missing."""
    if shutil.which("bible") is None:
        return []
    out = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True
    ).stdout
    sents = []
    for line in out.splitlines():
        ref, _, verse = line.partition(" ")
        if not verse:
            continue
        parts = [verse] if len(verse) <= max_chars else re.split(r"(?<=[;:.])\s+", verse)
        for p in parts:
            p = p.strip().rstrip(";:,")
            if not p.endswith((".", "?", "!")):
                p += "."
            if min_chars <= len(p) <= max_chars and re.fullmatch(r"[A-Za-z0-9 ,.;:'?!()-]+", p):
                sents.append(p[0].upper() + p[1:])
    return sents


def generated_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        year = rng.randint(1620, 2030)
        out.add(
            rng.choice(TEMPLATES).format(
                month=rng.choice(MONTHS),
                day=rng.randint(1, 28),
                year=year,
                year2=year + rng.randint(1, 40),
                name=rng.choice(NAMES),
                n=rng.randint(2, 99),
                thing=rng.choice(THINGS),
                place=rng.choice(PLACES),
                dollars=rng.randint(1, 999),
                cents=rng.randint(0, 99),
                hour=rng.randint(1, 12),
                minute=rng.randint(0, 59),
                big=f"{rng.randint(100, 99999):,}",
                pct=rng.randint(2, 98),
                ordinal=_ordinal(rng.randint(1, 31)),
                dec=f"{rng.randint(1, 30)}.{rng.randint(1, 9)}",
            )
        )
    return sorted(out)


def _ordinal(k: int) -> str:
    suf = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suf}"


def split_of(sentence: str, valid_frac: float = 0.05, test_frac: float = 0.05) -> str:
    """Sentence-disjoint split by a stable hash of the lower-cased sentence."""
    h = int(hashlib.sha1(sentence.lower().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_frac else "valid" if h < test_frac + valid_frac else "train"


def sentence_pool(seed: int = 0, n_generated: int = 3000) -> dict[str, list[str]]:
    """{'train': [...], 'valid': [...], 'test': [...]}: shuffled with the seed, no sentence in two splits."""
    allsent = sorted(set(kjv_sentences()) | set(generated_sentences(n_generated, seed)))
    pool: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for s in allsent:
        pool[split_of(s)].append(s)
    rng = random.Random(seed)
    for v in pool.values():
        rng.shuffle(v)
    return pool
