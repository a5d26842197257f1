"""``TTSConfig.edge_seconds``: silence before and after the speech of every output, on a tiny untrained release
(saved with the setting, so it travels in config.json) against the same weights without it, with real prompts."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_tiny_release, tiny_tts_config
from tts.model import TTS


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("edges")
    plain = TTS.from_pretrained(make_tiny_release(d / "plain", seed=3))
    edged = TTS.from_pretrained(make_tiny_release(d / "edged", seed=3, edge_seconds=0.25))
    return plain, edged


@pytest.fixture(scope="module")
def dev(real_speech_dir):
    d = real_speech_dir / "dev"
    return {"wav": d / "coqui__LJ001-0001.wav", "text": "Printing, in the only sense with which we are at present concerned,"}


def test_edges_surround_the_same_speech(pair, dev):
    plain, edged = pair
    assert edged.cfg.edge_seconds == 0.25 and plain.cfg.edge_seconds == 0.0  # read back from config.json
    kw = dict(prompt_text=dev["text"], max_seconds=0.6, seed=5)
    text = "One two. Three four."
    raw = plain.synthesize(text, dev["wav"], **kw)
    res = edged.synthesize(text, dev["wav"], **kw)
    n = int(0.25 * edged.sample_rate)
    assert len(raw.audio) > 0 and len(res.audio) == len(raw.audio) + 2 * n
    assert np.all(res.audio[:n] == 0) and np.all(res.audio[-n:] == 0)
    np.testing.assert_allclose(res.audio[n:-n], raw.audio, atol=1e-6)  # the speech (and its pause) unchanged
    assert res.info["edges_s"] == pytest.approx(0.5) and raw.info["edges_s"] == 0.0
    assert res.speech_seconds == pytest.approx(raw.duration)  # what an RTF divides by
    assert res.info["rtf"] == pytest.approx(res.info["timings"]["total_s"] / raw.duration)


def test_stream_leaves_out_the_lead_in_and_ends_with_the_tail(pair, dev):
    _, edged = pair
    kw = dict(prompt_text=dev["text"], max_seconds=0.5, seed=7)
    text = "First part. Second part."
    chunks = list(edged.stream(text, dev["wav"], chunk_frames=3, first_chunk_frames=1, **kw))
    full = edged.synthesize(text, dev["wav"], **kw).audio
    n = int(0.25 * edged.sample_rate)
    assert len(chunks[0]) == edged.vae.hop  # first audio is the first frame's speech: no silence to wait through
    assert len(chunks[-1]) == n and np.all(chunks[-1] == 0)
    np.testing.assert_allclose(np.concatenate(chunks), full[n:], atol=1e-5)


def test_batch_and_continuation(pair, dev):
    plain, edged = pair
    job = dict(text="Short one.", prompt_audio=dev["wav"], prompt_text=dev["text"], max_seconds=0.6, seed=2)
    (one,) = edged.synthesize_batch([job])
    assert one.audio.tobytes() == edged.synthesize(**job).audio.tobytes()
    # continuation mode: the output starts with the prompt's own audio, so only the trailing silence is added
    prompt = edged.load_prompt(dev["wav"])[: 3 * edged.sample_rate]
    kw = dict(continuation=True, max_seconds=1.0, steps=2, seed=1)
    raw = plain.synthesize(dev["text"], prompt, **kw)
    res = edged.synthesize(dev["text"], prompt, **kw)
    n = int(0.25 * edged.sample_rate)
    assert len(res.audio) == len(raw.audio) + n and res.info["edges_s"] == pytest.approx(0.25)
    np.testing.assert_allclose(res.audio[:-n], raw.audio, atol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 6.0])
def test_edge_seconds_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="edge_seconds"):
        tiny_tts_config(40, edge_seconds=bad)
