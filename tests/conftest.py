"""Shared test setup: CPU by default, deliberate thread count, clean skips for gpu/browser tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

# On a busy 2-core machine more than one intra-op thread per process thrashes (measured 5-10x slower).
torch.set_num_threads(int(os.environ.get("LATENTLM_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    """The team's shared folder: $LATENTLM_SHARED, else ../shared beside the checkout, else /work/shared."""
    for cand in (os.environ.get("LATENTLM_SHARED"), REPO.parent / "shared", "/work/shared"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return REPO.parent / "shared"


REAL_SPEECH = _shared_dir() / "data" / "real_speech"


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
    if not REAL_SPEECH.is_dir():
        pytest.skip(f"real speech data not found at {REAL_SPEECH}")
    return REAL_SPEECH
