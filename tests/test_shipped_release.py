"""Smoke test of the shipped release: checkpoints/tts_demo loads and says a short sentence in a real voice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "checkpoints" / "tts_demo"
PROMPT = "dev/pyroomacoustics__cmu_arctic_us_aew_a0003.wav"  # CMU ARCTIC aew, 3.5 s, 16 kHz


@pytest.mark.skipif(not (RELEASE / "model.safetensors").is_file(), reason="shipped release missing")
def test_shipped_release_synthesises_a_sentence(real_speech_dir, real_manifest):
    from tts.model import TTS

    tts = TTS.from_pretrained(RELEASE)
    [row] = [r for r in real_manifest("dev") if r["file"] == Path(PROMPT).name]
    res = tts.synthesize("Hello there.", real_speech_dir / PROMPT, prompt_text=row["transcript"], seed=0)
    assert res.sample_rate == tts.sample_rate == tts.vae.sample_rate == 16000
    assert res.audio.dtype == np.float32 and res.audio.ndim == 1 and np.isfinite(res.audio).all()
    assert 0.3 < res.duration < 3.0  # two words, timed by the release's duration predictor
    assert np.abs(res.audio).max() <= 1.0 and np.sqrt(np.mean(res.audio**2)) > 1e-3  # speech, not silence
