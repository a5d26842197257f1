"""The demo in a real browser: headless Debian chromium driven by playwright (no browser download).

The screenshot lands in the test's tmp dir (printed; shown by `pytest -rA`); set LATENTLM_SCREENSHOTS=DIR to also
keep a copy there.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
from pathlib import Path

import pytest
import soundfile as sf

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROMPT = "dev/pyroomacoustics__cmu_arctic_us_aew_a0003.wav"
PROMPT_TEXT = "For the twentieth time that evening the two men shook hands."


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import app
    from tests.helpers import make_tiny_release
    from tts.model import TTS

    tts = TTS.from_pretrained(make_tiny_release(tmp_path_factory.mktemp("release")))
    demo = app.build_demo(tts, app.AppConfig())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = app.launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    yield url, tts
    demo.close()


@pytest.fixture
def page():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 1000})
        finally:
            browser.close()


def test_upload_type_generate_in_chromium(served, page, real_speech_dir, tmp_path):
    url, tts = served
    page.goto(url)
    page.wait_for_selector("#generate_btn", timeout=60_000)

    # Generate without a prompt: a readable error toast, and the page stays usable.
    page.click("#generate_btn")
    page.wait_for_selector(".toast-body", timeout=20_000)
    assert "Add a voice prompt" in page.inner_text(".toast-body")

    # Upload a real prompt, type text, generate.
    page.set_input_files("#prompt_audio input[type=file]", str(real_speech_dir / PROMPT))
    page.fill("#prompt_text textarea", PROMPT_TEXT)
    page.fill("#text_input textarea", "Hello there.")
    page.click("#generate_btn")
    audio = page.locator("#output_audio audio[src]").first
    audio.wait_for(state="attached", timeout=60_000)
    page.wait_for_selector("#spectrogram img", timeout=20_000)
    assert "real-time factor" in page.inner_text("#info")

    # The result the page offers (the audio element plays it from a blob; the download link is the served
    # file) is a real waveform at the model's rate.
    assert audio.get_attribute("src")
    href = page.locator("#output_audio a[data-testid=download-link]").first.get_attribute("href")
    body = page.request.get(href).body()
    wav, sr = sf.read(io.BytesIO(body), dtype="float32")
    assert sr == tts.sample_rate and wav.size > 0 and abs(wav).max() > 0

    # Clicking an example loads its prompt and fills the transcript and text boxes.
    page.get_by_text("arctic_axb_a0006.wav").first.click()
    page.wait_for_function(
        "document.querySelector('#prompt_text textarea').value.includes('God bless')", timeout=20_000
    )
    assert "walk by the river" in page.input_value("#text_input textarea")

    shot = tmp_path / "app_voice_cloning.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
    if os.environ.get("LATENTLM_SCREENSHOTS"):
        keep = Path(os.environ["LATENTLM_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / shot.name)
