"""Markup in a text to speak: HTML / SSML tags are never read aloud.

    strip_markup('<speak>Hello <break time="700ms"/> world &amp; you.</speak>')   # 'Hello. world & you.'

Honoured (a small SSML subset, as pauses the model already makes at punctuation):
- ``<break/>``: a pause; ``time`` >= 500 ms or ``strength`` "strong" / "x-strong" is a full stop, shorter (or
  "weak" / "medium") a comma, ``strength="none"`` nothing;
- ``<p>``, ``</p>``, ``<s>``, ``</s>``, ``<br>``: a sentence boundary (a full stop, unless one is already there).
Everything else is removed and its text kept: ``<prosody rate=...>`` (use the ``speed`` option for tempo),
``<emphasis>``, ``<say-as>``, ``<speak>``, any HTML tag; ``<!-- comments -->`` and the contents of ``<script>``
and ``<style>`` are dropped. Character entities with a semicolon (``&amp;``, ``&#39;``, ``&nbsp;``) are decoded.
A "tag" whose inside has words but no ``key=value`` (``a<b and c>d``) is text, not a tag. Text without ``<`` or
``&...;`` is returned unchanged.
"""

from __future__ import annotations

import html
import re

_RE_DROP = re.compile(r"<!--.*?-->|<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_RE_TAG = re.compile(r"</?(?P<name>[A-Za-z][\w:-]*)(?P<attrs>(?:[^<>\"']|\"[^\"]*\"|'[^']*')*)/?>")
_RE_ENTITY = re.compile(r"&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z]\w*);")
_RE_ATTR = re.compile(r"(?P<key>[\w:-]+)\s*=\s*(?:\"(?P<a>[^\"]*)\"|'(?P<b>[^']*)'|(?P<c>[^\s>]+))")
_BOUNDARY_TAGS = {"p", "s", "br"}
LONG_PAUSE_MS = 500.0  # a <break> this long or longer is a full stop, shorter a comma


def _attrs(text: str) -> dict[str, str]:
    return {
        m.group("key").lower(): m.group("a") or m.group("b") or m.group("c") or ""
        for m in _RE_ATTR.finditer(text)
    }


def _ms(value: str) -> float | None:
    m = re.fullmatch(r"\s*([\d.]+)\s*(ms|s)?\s*", value or "")
    if not m:
        return None
    try:
        x = float(m.group(1))
    except ValueError:
        return None
    return x * 1000.0 if m.group(2) == "s" else x


def _break(attrs: dict[str, str]) -> str:
    strength = attrs.get("strength", "").lower()
    if strength == "none":
        return " "
    ms = _ms(attrs.get("time", ""))
    long = strength in ("strong", "x-strong") or (ms is not None and ms >= LONG_PAUSE_MS)
    return ". " if long else ", "


def _tag(m: re.Match) -> str:
    if m.group("attrs").strip() and "=" not in m.group("attrs"):
        return m.group(0)  # "a<b and c>d" is text, not a tag: tags carry no attributes or key=value ones
    name = m.group("name").lower()
    if name == "break":
        return _break(_attrs(m.group("attrs")))
    if name in _BOUNDARY_TAGS:
        return ". "
    return " "


def strip_markup(text: str) -> str:
    """Tags out, the honoured subset as pauses, entities decoded (module docstring)."""
    if "<" not in text and not _RE_ENTITY.search(text):
        return text
    text = _RE_DROP.sub(" ", text)
    text = _RE_TAG.sub(_tag, text)
    text = _RE_ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    n = 1
    while n:  # "Hi.</p><p>" -> no doubled stops
        text, n = re.subn(
            r"([.!?,])\s*([.,])(?=\s|$)", lambda m: m.group(1) if m.group(1) in ".!?" else m.group(2), text
        )
    text = re.sub(r"^[\s.,]+", "", text)  # a boundary before any word
    return re.sub(r"[ \t]+", " ", text).strip()
