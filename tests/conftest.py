"""Shared test setup: CPU by default, deliberate thread count, clean skips for gpu/browser tests, the real clips."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
import torch

# On a busy 2-core machine more than one intra-op thread per process thrashes (measured 5-10x slower).
torch.set_num_threads(int(os.environ.get("LATENTLM_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]


# The real clips the tests read: the copy in tests/data/real_speech (95 clips, their sources and licences in its
# README), or any folder with the same layout named by $LATENTLM_REAL_SPEECH (the team's full real speech folder).
IN_REPO_REAL_SPEECH = REPO / "tests" / "data" / "real_speech"
REAL_SPEECH = Path(os.environ.get("LATENTLM_REAL_SPEECH") or IN_REPO_REAL_SPEECH)


def read_tsv(path: Path) -> list[dict]:
    """Rows of a real speech manifest (tab-separated, header row, no quoting: some transcripts hold '"')."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def pytest_collection_modifyitems(config, items):
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    no_browser = pytest.mark.skip(reason="needs /usr/bin/chromium (Debian) and the playwright package")
    have_browser = shutil.which("chromium") is not None
    try:
        import playwright  # noqa: F401
    except ImportError:
        have_browser = False
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "browser" in item.keywords and not have_browser:
            item.add_marker(no_browser)


@pytest.fixture(scope="session")
def real_speech_dir() -> Path:
    """The real speech folder (see REAL_SPEECH): sub-folders librispeech_train-clean-100/, dev/,
    librispeech_dev-clean-2/ and speechocean762/, each with a manifest.tsv."""
    if not REAL_SPEECH.is_dir():
        pytest.fail(f"LATENTLM_REAL_SPEECH={REAL_SPEECH} is not a folder")
    return REAL_SPEECH


@pytest.fixture(scope="session")
def real_manifest(real_speech_dir):
    """real_manifest("dev") -> the rows of real_speech_dir/dev/manifest.tsv (dicts of the header's columns)."""
    return lambda subset: read_tsv(real_speech_dir / subset / "manifest.tsv")


@pytest.fixture(scope="session")
def real_transcripts() -> list[dict]:
    """The transcripts (subset, utterance_id, transcript) of all 297 rows of the full train-clean-100 and dev
    manifests, shipped as text in tests/data/real_speech/transcripts.tsv."""
    return read_tsv(IN_REPO_REAL_SPEECH / "transcripts.tsv")
