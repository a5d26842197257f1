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
    assert 0.3 < res.speech_seconds < 3.0  # two words, timed by the release's duration predictor
    assert np.abs(res.audio).max() <= 1.0 and np.sqrt(np.mean(res.audio**2)) > 1e-3  # speech, not silence


# The pinned outputs: "Hello there. Good day to you!" in the aew clip's voice, seed 0, the release's defaults,
# with each of its diffusion heads (the reference head; the one-step head when the release has one, alone and
# with the release's step bridge when it has one), written with
# these inputs and torch on one thread (tests/conftest.py). A refactor of tts/ must leave them as they were (to
# float rounding); a change that is meant to alter them rewrites the files.
REFERENCES = {
    "reference": REPO / "tests" / "data" / "tts_demo_reference.npz",
    "one_step": REPO / "tests" / "data" / "tts_demo_reference_one_step.npz",
    "one_step+bridge": REPO / "tests" / "data" / "tts_demo_reference_bridge.npz",
}
# what each pinned output decodes with (the one-step head alone: every frame from the trunk; with the release's
# step bridge, latentlm/bridge.py, its default when it ships one)
SETTINGS = {
    "reference": dict(head="reference"),
    "one_step": dict(head="one_step", bridge=False),
    "one_step+bridge": dict(head="one_step", bridge=True),
}


def _absent(tts, head: str) -> str | None:
    """Why the release cannot decode ``head``'s pinned output (None: it can)."""
    if head != "reference" and tts.one_step is None:
        return "the shipped release has no one-step head"
    if head == "one_step+bridge" and tts.bridge is None:
        return "the shipped release has no step bridge"
    return None
REFERENCE_TEXT = "Hello there. Good day to you!"


def _reference_inputs(real_speech_dir, real_manifest):
    [row] = [r for r in real_manifest("dev") if r["file"] == Path(PROMPT).name]
    kw = dict(prompt_text=row["transcript"], seed=0)
    return real_speech_dir / PROMPT, kw


def _speech(audio: np.ndarray, edge: int) -> np.ndarray:
    """The audio between the release's edge silences (``TTSConfig.edge_seconds``), which must be silent."""
    if edge:
        assert len(audio) > 2 * edge and not audio[:edge].any() and not audio[-edge:].any()
        audio = audio[edge:-edge]
    return audio


def _check_against_reference(audio: np.ndarray, frames: list[int], ref, edge: int) -> None:
    """The pinned speech (without the edge silences, so that a change of edge_seconds alone keeps the pins)."""
    audio = _speech(audio, edge)
    assert len(audio) == int(ref["length"]) and frames == ref["frames"].tolist()
    np.testing.assert_allclose(audio[:2000], ref["head"], atol=1e-4)
    np.testing.assert_allclose(audio[-2000:], ref["tail"], atol=1e-4)
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert (
        abs(rms - float(ref["rms"])) < 1e-4 and abs(float(np.abs(audio).max()) - float(ref["absmax"])) < 1e-4
    )


@pytest.mark.skipif(not (RELEASE / "model.safetensors").is_file(), reason="shipped release missing")
@pytest.mark.parametrize("head", sorted(REFERENCES))
def test_shipped_release_output_is_unchanged(real_speech_dir, real_manifest, head):
    """synthesize, stream and synthesize_batch of the shipped release give the stored reference audio, with
    each diffusion head it ships."""
    from tts.model import TTS

    tts = TTS.from_pretrained(RELEASE)
    why = _absent(tts, head)
    if why is not None:
        assert not REFERENCES[head].exists(), f"a pinned {head} output, but {why}"
        pytest.skip(why)
    ref = np.load(REFERENCES[head])
    prompt, kw = _reference_inputs(real_speech_dir, real_manifest)
    kw.update(SETTINGS[head])
    edge = int(tts.cfg.edge_seconds * tts.sample_rate)
    res = tts.synthesize(REFERENCE_TEXT, prompt, **kw)
    _check_against_reference(res.audio, res.info["frames"], ref, edge)
    streamed = np.concatenate(list(tts.stream(REFERENCE_TEXT, prompt, **kw)))  # less the leading edge silence
    np.testing.assert_allclose(streamed, res.audio[edge:], atol=1e-4)
    _check_against_reference(np.concatenate([np.zeros(edge, np.float32), streamed]), res.info["frames"], ref, edge)
    [batched] = tts.synthesize_batch([dict(text=REFERENCE_TEXT, prompt_audio=prompt, **kw)])
    _check_against_reference(batched.audio, batched.info["frames"], ref, edge)


def write_reference(real_speech_dir: Path) -> None:
    """Rewrite the pinned output from the release as it is now (for a change meant to alter it: a new release
    or new release defaults): ``python tests/test_shipped_release.py --write`` from the repo root."""
    import torch

    from tests.conftest import read_tsv
    from tts.model import TTS

    torch.set_num_threads(1)  # as the tests run
    tts = TTS.from_pretrained(RELEASE)
    [row] = [r for r in read_tsv(real_speech_dir / "dev" / "manifest.tsv") if r["file"] == Path(PROMPT).name]
    for head, path in REFERENCES.items():
        if _absent(tts, head) is not None:
            path.unlink(missing_ok=True)
            continue
        res = tts.synthesize(
            REFERENCE_TEXT, real_speech_dir / PROMPT, prompt_text=row["transcript"], seed=0, **SETTINGS[head]
        )
        a = _speech(res.audio, int(tts.cfg.edge_seconds * tts.sample_rate))
        np.savez(
            path,
            head=a[:2000],
            tail=a[-2000:],
            length=np.int64(len(a)),
            frames=np.asarray(res.info["frames"]),
            rms=np.float64(np.sqrt(np.mean(a.astype(np.float64) ** 2))),
            absmax=np.float64(np.abs(a).max()),
        )
        print(f"wrote {path}: {len(a)} samples, frames {res.info['frames']}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_shipped_release.py --write   (rewrites the pinned output)")
    sys.path.insert(0, str(REPO))
    write_reference(REPO / "tests" / "data" / "real_speech")
