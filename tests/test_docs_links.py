"""The docs' links resolve: relative markdown links (and their #anchors) in README.md, docs/, model cards and
recipe READMEs, every ``docs/....md`` path named anywhere in the code, recipes, tests or docs, and the section
a name quotes after it (docs/TTS.md "Streaming") is a heading of that page."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOC_PATH = re.compile(r"\bdocs/[\w./-]*\w\.md\b")
DOC_SECTION = re.compile(r"\b(docs/[\w./-]*\w\.md)[ ,(]*\"([^\"]+)\"")


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({ROOT / line for line in out.splitlines() if (ROOT / line).is_file()})


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


MARKDOWN = _tracked(
    "README.md", "docs/*.md", "docs/**/*.md", "checkpoints/*/README.md", "recipes/**/README.md"
)


def test_there_are_docs_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in MARKDOWN}
    assert {"README.md", "docs/TTS.md", "docs/experiments/README.md"} <= names


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(md: Path):
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            bad.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(target)
    assert not bad, f"{md.relative_to(ROOT)}: links that do not resolve: {bad}"


def test_named_doc_paths_exist():
    files = _tracked("*.py", "*.md", "*.yaml", "*.sh", "*.toml")
    bad = set()
    for f in files:
        for name in DOC_PATH.findall(f.read_text(encoding="utf-8", errors="replace")):
            if not (ROOT / name).is_file() and not (f.parent / name).is_file():
                bad.add(f"{f.relative_to(ROOT)}: {name}")
    assert not bad, "docs named that do not exist:\n" + "\n".join(sorted(bad))


def test_quoted_sections_exist():
    files = _tracked("*.py", "*.md", "*.yaml", "*.sh")
    bad = set()
    for f in files:
        if f.name == Path(__file__).name:
            continue
        for name, section in DOC_SECTION.findall(f.read_text(encoding="utf-8", errors="replace")):
            page = ROOT / name
            if not page.is_file():
                continue  # test_named_doc_paths_exist reports it
            text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
            headings = [h.strip() for h in re.findall(r"^#+ (.+)$", text, flags=re.M)]
            if not any(h.startswith(section) for h in headings):
                bad.add(f'{f.relative_to(ROOT)}: {name} "{section}"')
    assert not bad, "sections named that are not headings of their page:\n" + "\n".join(sorted(bad))
