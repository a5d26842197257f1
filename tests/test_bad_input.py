"""Bad input to the TTS API, the VAE and evaluation (issue 22): refused early, with a message that says what to
do, and good work is never lost. Tiny untrained models, real prompt audio from examples/. docs/BAD_INPUT.md
lists the behaviour these tests pin."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evaluation.audio import AudioError
from evaluation.audio import load_audio as eval_load_audio
from latentlm.model import LatentLM
from tests.helpers import make_tiny_release, make_tiny_tts
from tts.model import TTS, SynthesisResult, TTSInputError
from tts.options import SynthesisOptions
from tts.prepare import prepare_job

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AEW, AXB = EXAMPLES / "arctic_aew_a0003.wav", EXAMPLES / "arctic_axb_a0006.wav"  # 16 kHz, 3.5 s each
AEW_TEXT = "For the twentieth time that evening the two men shook hands."
AXB_TEXT = "God bless 'em, I hope I'll go on seeing them forever."
# one 226-character sentence (inside the documented 250)
LONG_SENTENCE = (
    "A small boat drifted slowly across the quiet harbour at dawn while the fishermen who had waited all "
    "night on the old stone pier watched the grey water turn silver and then gold as the sun rose over the "
    "distant hills"
)


@pytest.fixture(scope="module")
def tts():
    return make_tiny_tts(seed=0)


def _refuse_work(monkeypatch, model: TTS) -> None:
    """Any prompt reading, encoding or generation from here on fails the test."""

    def boom(*a, **k):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(model, "load_prompt", boom)
    monkeypatch.setattr(model.vae, "encode", boom)
    monkeypatch.setattr(model.lm, "generate_stream", boom)


def _long_prompt() -> tuple[tuple[int, np.ndarray], str]:
    """About 28 s of real speech (the two arctic clips, four times) and its transcript."""
    a, sr = sf.read(AEW, dtype="float32")
    b, _ = sf.read(AXB, dtype="float32")
    return (sr, np.concatenate([a, b] * 4)), " ".join([AEW_TEXT, AXB_TEXT] * 4)


def _positions(model: TTS, n: int) -> TTS:
    """The same model with ``n`` positions (tts_demo has 2048; the tiny test model 4096)."""
    trunk = dataclasses.replace(model.cfg.model.trunk, max_seq_len=n)
    cfg = dataclasses.replace(model.cfg, model=dataclasses.replace(model.cfg.model, trunk=trunk))
    lm = LatentLM(cfg.model)
    lm.load_state_dict(model.lm.state_dict())
    return TTS(cfg, lm.eval(), model.vae, model.frontend, model.duration, model.aligner)


# ------------------------------------------------------------------ 5, 7: options, checked before any work
@pytest.mark.parametrize(
    "settings, needle",
    [
        (dict(cfg=float("nan")), "cfg must be a finite number"),
        (dict(cfg=float("inf")), "cfg must be a finite number"),
        (dict(temperature=float("nan")), "temperature must be a finite number"),
        (dict(max_seconds=float("nan")), "max_seconds must be a finite number"),
        (dict(max_seconds=float("inf")), "max_seconds must be a finite number"),
        (dict(seed=2**70), "seed must be in"),
        (dict(seed=-1), "seed must be in"),
        (dict(seed=1.5), "seed must be a whole number"),
        (dict(steps=float("nan")), "steps must be a whole number"),
        (dict(speed=float("nan")), "speed must be a finite number"),
    ],
)
def test_bad_options_are_refused_before_any_work(tts, monkeypatch, settings, needle):
    _refuse_work(monkeypatch, tts)
    with pytest.raises(TTSInputError, match=needle):
        tts.synthesize("Hello.", AEW, prompt_text=AEW_TEXT, **settings)
    with pytest.raises(TTSInputError, match=needle):
        next(tts.stream("Hello.", AEW, prompt_text=AEW_TEXT, **settings))
    with pytest.raises(TTSInputError, match=needle):
        SynthesisOptions(**settings)


def test_options_object_and_keywords_give_the_same_audio(tts):
    kw = dict(steps=2, cfg=1.5, temperature=0.7, seed=3, max_seconds=0.2)
    a = tts.synthesize("Hello.", AEW, prompt_text=AEW_TEXT, **kw)
    b = tts.synthesize("Hello.", AEW, prompt_text=AEW_TEXT, options=SynthesisOptions(**kw))
    assert np.array_equal(a.audio, b.audio)
    with pytest.raises(TTSInputError, match="either in options= or as keywords"):
        tts.synthesize("Hello.", AEW, prompt_text=AEW_TEXT, seed=4, options=SynthesisOptions(**kw))
    parsed = SynthesisOptions.from_mapping({"seed": "7", "speed": "1.0", "id": "x"})
    assert parsed.seed == 7 and parsed.speed == 1.0


def test_batch_returns_option_errors_and_keeps_the_good_jobs(tts):
    good = dict(text="Fine.", prompt_audio=AEW, prompt_text=AEW_TEXT, max_seconds=0.2, steps=2)
    jobs = [good, {**good, "cfg": float("nan")}, {**good, "seed": 2**70}, {**good, "seed": 1}]
    out = tts.synthesize_batch(jobs, on_error="return")
    assert isinstance(out[0], SynthesisResult) and isinstance(out[3], SynthesisResult)
    assert isinstance(out[1], TTSInputError) and "cfg must be a finite number" in str(out[1])
    assert isinstance(out[2], TTSInputError) and "seed must be in" in str(out[2])
    assert np.array_equal(out[0].audio, tts.synthesize(**good).audio)  # the good jobs are what they were
    with pytest.raises(TTSInputError, match="job 1: cfg"):
        tts.synthesize_batch(jobs)


# ------------------------------------------------------------------ 3: the model's positions
def test_long_inputs_inside_the_limits_are_split_to_fit_the_positions(monkeypatch):
    """A 28 s prompt with its transcript, a 226-character sentence, speed 0.5, a 2048-position predictor-timed
    model: the sentence is split at a word boundary so every row fits (before: a raw RoPE error mid-way)."""
    model = _positions(make_tiny_tts(seed=0, interleave=True, timing="predictor"), 2048)
    # a trained predictor's pace (~3 frames a symbol; the untrained one says 0-4), slowed by speed
    monkeypatch.setattr(model.duration, "predict", lambda ids, rate, tempo=1.0: [round(3 / tempo)] * len(ids))
    prompt, text = _long_prompt()
    job = prepare_job(model, LONG_SENTENCE, prompt, text, None, speed=0.5)
    assert len(job.sentences) > 1 and " ".join(job.sentences) == LONG_SENTENCE
    for r in job.rows:
        used = 1 + len(r.phonemes) + 1 + int(job.prompt.shape[0]) + len(r.script) + sum(r.durations) + 1
        assert used <= 2048, used  # <bos> phonemes <bo_audio> prompt script frames <eo_audio>
    res = model.synthesize(LONG_SENTENCE, prompt, prompt_text=text, speed=0.5, steps=1)
    assert res.info["frames"] == [sum(r.durations) for r in job.rows] and np.isfinite(res.audio).all()


def test_an_lm_timed_model_stops_at_its_last_position(tts):
    """LM timing: the length cap is lowered to the positions left (the untrained model never stops)."""
    model = _positions(tts, 2048)
    prompt, text = _long_prompt()
    res = model.synthesize(LONG_SENTENCE, prompt, prompt_text=text, steps=1)
    assert res.info["stop"] == ["cap"] and res.duration > 5


def test_a_prompt_that_fills_the_positions_is_refused_before_any_work(monkeypatch):
    model = _positions(make_tiny_tts(seed=0, interleave=True, timing="predictor"), 2048)
    prompt, text = _long_prompt()
    monkeypatch.setattr(model.vae, "encode", lambda *a, **k: pytest.fail("encoded before the check"))
    monkeypatch.setattr(model.lm, "generate_stream", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(TTSInputError, match="leaves no room for the text.*shorter prompt"):
        model.synthesize("Hello there.", prompt, prompt_text=" ".join([text] * 4))


# ------------------------------------------------------------------ 6, 10: audio headers, empty audio
def _relabel(src: Path, dst: Path, rate: int, samples: int) -> Path:
    """The first ``samples`` of a real clip, in a WAV whose header claims ``rate`` Hz."""
    wav, _ = sf.read(src, dtype="int16")
    sf.write(dst, wav[:samples], 8000, subtype="PCM_16")
    raw = bytearray(dst.read_bytes())
    assert raw[24:28] == (8000).to_bytes(4, "little")  # the fmt chunk's rate, then bytes per second
    raw[24:28], raw[28:32] = rate.to_bytes(4, "little"), (rate * 2).to_bytes(4, "little")
    dst.write_bytes(bytes(raw))
    assert sf.info(dst).samplerate == rate
    return dst


def test_absurd_sample_rates_are_refused_before_resampling(tts, tmp_path, monkeypatch):
    one_hz = _relabel(AEW, tmp_path / "one_hz.wav", 1, 1000)  # "1000 s": 16M samples once resampled
    import evaluation.audio
    import vocoder_vae.audio

    for module in (vocoder_vae.audio, evaluation.audio):
        monkeypatch.setattr(module, "resample_poly", lambda *a, **k: pytest.fail("resampled"))
    with pytest.raises(TTSInputError, match="sample rate 1 Hz is outside"):
        tts.load_prompt(one_hz)
    with pytest.raises(TTSInputError, match="sample rate 1 Hz is outside"):
        tts.load_prompt((1, sf.read(AEW, dtype="float32")[0][:1000]))
    with pytest.raises(ValueError, match="sample rate 1 Hz is outside"):
        tts.vae.encode(sf.read(AEW, dtype="float32")[0][:1000], 1)
    with pytest.raises(AudioError, match="sample rate 1 Hz is outside"):
        eval_load_audio(one_hz, 16000)


def test_a_too_long_prompt_is_refused_from_its_header(tts, tmp_path, monkeypatch):
    wav, sr = sf.read(AEW, dtype="float32")
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(wav, 10), sr)  # 35 s
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("the samples were read"))
    with pytest.raises(TTSInputError, match="too long: 35.4 s; the limit is 30 s"):
        tts.load_prompt(long)


def test_a_header_only_wav_is_empty_audio(tts, tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(TTSInputError, match="empty audio"):
        tts.synthesize("Hello.", empty, prompt_text=AEW_TEXT)
    with pytest.raises(ValueError, match="empty audio"):
        tts.vae.encode(np.zeros((0, 1), np.float32), 16000)  # was one NaN sample: "NaN or infinite"
    with pytest.raises(TTSInputError, match="empty audio"):
        tts.load_prompt((16000, np.zeros((0, 2), np.float32)))


# ------------------------------------------------------------------ 4, 10: release files
@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_tiny_release(tmp_path_factory.mktemp("tts") / "tiny")


def _copy(release: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(release, tmp_path / "copy"))


def test_truncated_or_garbage_weights_are_a_clear_error(release, tmp_path):
    bad = _copy(release, tmp_path)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(TTSInputError, match="not a readable safetensors file.*truncated or corrupt"):
        TTS.from_pretrained(bad)
    weights.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(TTSInputError, match="download or export the release again"):
        TTS.from_pretrained(bad)


def test_a_string_format_version_is_a_clear_error(release, tmp_path):
    bad = _copy(release, tmp_path)
    doc = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**doc, "format_version": "1"}))
    with pytest.raises(TTSInputError, match="format_version must be an integer"):
        TTS.from_pretrained(bad)


def test_seeds_of_the_whole_range_work(tts):
    res = tts.synthesize("Hi.", AEW, prompt_text=AEW_TEXT, seed=2**32 - 1, max_seconds=0.1, steps=1)
    assert math.isfinite(float(np.abs(res.audio).max()))
