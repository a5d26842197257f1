"""TTS layout and public API on a tiny untrained release with real prompt audio."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from latentlm.sequence import pack
from tests.helpers import make_tiny_release, make_tiny_tts
from tts.layout import MODALITY, training_batch, training_spans
from tts.model import TTS, SynthesisResult, TTSInputError
from tts.rows import frame_cap


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_tiny_release(tmp_path_factory.mktemp("tts") / "tiny")


@pytest.fixture(scope="module")
def tts(release):
    return TTS.from_pretrained(release)


@pytest.fixture(scope="module")
def dev(real_speech_dir):
    d = real_speech_dir / "dev"
    return {
        "lj1": d / "coqui__LJ001-0001.wav",
        "lj2": d / "coqui__LJ001-0002.wav",
        "lj1_text": "Printing, in the only sense with which we are at present concerned,",
        "lj2_text": "in being comparatively modern.",
    }


# ---------------------------------------------------------------- layout


def test_training_sequence_layout_and_loss_weights():
    lm = make_tiny_tts().lm
    lay = lm.layout
    ph = torch.tensor([5, 1, 7, 9])
    zp, zt = torch.randn(3, 8), torch.randn(4, 8)
    b = pack([training_spans(lm, ph, zp, zt, prompt_loss_weight=0.25)], lay, lm.latent_dims)
    lat, bo, eo = lay.lat, lay.begin[MODALITY], lay.end[MODALITY]
    want = [lay.bos, *(ph + lay.offset).tolist(), bo, lat, lat, lat, lat, lat, lat, lat, eo]
    assert b.tokens[0].tolist() == want
    assert b.weight[0].tolist() == [0.0] * 6 + [0.25] * 3 + [1.0] * 5
    torch.testing.assert_close(b.latents[0, 6:9], zp)
    torch.testing.assert_close(b.latents[0, 9:13], zt)
    assert (b.modality[0] == 0).sum() == 7


def _collated(b: int, n: int = 6, tp: int = 5, tt: int = 7, d: int = 8) -> dict:
    return {
        "phonemes": torch.randint(2, 60, (b, n)),
        "phoneme_mask": torch.ones(b, n, dtype=torch.bool),
        "prompt_latents": torch.randn(b, tp, d),
        "prompt_mask": torch.ones(b, tp, dtype=torch.bool),
        "target_latents": torch.randn(b, tt, d),
        "target_mask": torch.ones(b, tt, dtype=torch.bool),
    }


def test_condition_dropout_replaces_phonemes_by_null_and_keeps_prompt():
    lm = make_tiny_tts().lm
    col = _collated(300)
    g = torch.Generator().manual_seed(0)
    b = training_batch(lm, col, p_uncond=0.1, latent_noise_scale=0.0, generator=g)
    dropped = b.tokens[:, 1] == lm.layout.null
    assert 0.05 < dropped.float().mean() < 0.16  # about p_uncond
    row = int(dropped.nonzero()[0])
    assert b.tokens[row, 2] == lm.layout.begin[MODALITY]  # a single <null> stands for all phonemes
    torch.testing.assert_close(b.latents[row, 3:8], lm.normalize(MODALITY, col["prompt_latents"][row]))
    keep = training_batch(lm, col, p_uncond=0.0, latent_noise_scale=0.0, generator=g)
    assert not (keep.tokens == lm.layout.null).any()


def test_sigma_noise_is_one_sigma_per_sequence():
    lm = make_tiny_tts().lm
    col = _collated(64, tp=40, tt=60)
    col["prompt_latents"].zero_()
    col["target_latents"].zero_()
    b = training_batch(
        lm, col, p_uncond=0.0, latent_noise_scale=0.5, generator=torch.Generator().manual_seed(1)
    )
    z = lm.denormalize(MODALITY, b.latents[:, 8:108, :8])  # [B, 100, D] = sigma * eps per row
    s_prompt, s_target = z[:, :40].std(dim=(1, 2)), z[:, 40:].std(dim=(1, 2))
    torch.testing.assert_close(s_prompt, s_target, rtol=0.2, atol=0.02)  # shared within a sequence
    assert s_target.max() > 3 * s_target.min()  # but varies across sequences
    assert abs(s_target.mean().item() - 0.5) < 0.12  # E|N(0, (s/0.8)^2)| ~= s


def test_input_noise_corrupts_only_the_target_latents_the_model_reads():
    lm = make_tiny_tts().lm
    col = _collated(64, tp=5, tt=7)
    kw = dict(p_uncond=0.0, latent_noise_scale=0.0)
    clean = training_batch(lm, col, generator=torch.Generator().manual_seed(2), **kw)
    b = training_batch(lm, col, input_noise=0.5, generator=torch.Generator().manual_seed(2), **kw)
    assert clean.inputs is None
    torch.testing.assert_close(b.latents, clean.latents)  # the predicted targets are untouched
    diff = (b.inputs - b.latents).abs().sum(-1)  # [B, N]
    target = (b.modality >= 0) & (b.weight > 0)
    assert (diff[~target] == 0).all() and (diff[target] > 0).all()  # prompt and tokens stay clean
    std = (b.inputs - b.latents)[:, 13:20].std(dim=(1, 2))  # the 7 target latents per row: ~ U(0, 1)
    assert std.min() < 0.2 and std.max() > 0.8
    # a prompt that is trained on (prompt_loss_weight > 0) is still read clean
    w = training_batch(
        lm, col, input_noise=0.5, prompt_loss_weight=1.0, generator=torch.Generator().manual_seed(2), **kw
    )
    assert ((w.modality >= 0) & (w.weight > 0) & ~target).any()
    torch.testing.assert_close(w.inputs, b.inputs)
    lm.eval()
    with torch.no_grad():  # the model reads the corrupted copy
        assert not torch.allclose(lm(b), lm(clean))
        assert torch.allclose(lm(clean), lm(dataclasses.replace(b, inputs=None)))


# ---------------------------------------------------------------- synthesis


def test_synthesize_respects_the_length_cap(tts, dev):
    res = tts.synthesize("Hello world.", dev["lj1"], prompt_text=dev["lj1_text"], max_seconds=1.2)
    assert isinstance(res, SynthesisResult)
    assert res.sample_rate == tts.sample_rate == 16000
    assert res.audio.dtype == np.float32 and res.audio.ndim == 1
    assert res.info["frames"] == [30] and res.info["stop"] == ["cap"]  # 1.2 s x 25 Hz; never stops itself
    assert len(res.audio) == 30 * tts.vae.hop
    assert np.isfinite(res.audio).all() and np.abs(res.audio).max() > 0
    # without max_seconds the cap comes from the phoneme count
    n_ph = len(tts.frontend.encode("Hi."))
    assert frame_cap(tts.cfg, n_ph) == int(np.ceil(n_ph * 6.0 + 2.0 * 25))


def test_a_model_that_stops_at_once_still_speaks_the_minimum(dev):
    """An (under-trained) model whose LM head always says <eo_audio> gets at least min_frames_per_phoneme frames
    per phoneme instead of an empty file; with the floor at 0 it would stop at frame 0."""
    eager = make_tiny_tts(seed=3)
    old = eager.lm.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[eager.lm.layout.end[MODALITY]] = 1e4  # <eo_audio> always the most likely token
    eager.lm.lm_head = head
    text = "Hello world, this is a test."
    n_ph = len(eager.frontend.encode(text))
    res = eager.synthesize(text, dev["lj1"], prompt_text=dev["lj1_text"])
    assert res.info["stop"] == ["eos"] and res.info["frames"] == [int(n_ph * 0.5)]
    assert len(res.audio) == int(n_ph * 0.5) * eager.vae.hop
    eager.cfg.lm_timing.min_frames_per_phoneme = 0.0
    res0 = eager.synthesize(text, dev["lj1"], prompt_text=dev["lj1_text"])
    assert res0.info["frames"] == [0] and len(res0.audio) == 0


def test_long_text_is_split_into_sentences_with_pauses(tts, dev):
    res = tts.synthesize("One two. Three four.", dev["lj1"], prompt_text=dev["lj1_text"], max_seconds=0.4)
    assert res.info["sentences"] == ["One two.", "Three four."]
    pause = int(tts.cfg.pause_seconds * tts.sample_rate)
    assert len(res.audio) == 2 * 10 * tts.vae.hop + pause
    mid = res.audio[10 * tts.vae.hop : 10 * tts.vae.hop + pause]
    assert np.all(mid == 0)


def test_same_seed_same_audio_and_seed_matters(tts, dev):
    kw = dict(prompt_text=dev["lj1_text"], max_seconds=0.6)
    a = tts.synthesize("Same seed.", dev["lj1"], seed=3, **kw).audio
    b = tts.synthesize("Same seed.", dev["lj1"], seed=3, **kw).audio
    c = tts.synthesize("Same seed.", dev["lj1"], seed=4, **kw).audio
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_stream_concatenates_to_synthesize(tts, dev):
    kw = dict(prompt_text=dev["lj1_text"], max_seconds=0.5, seed=7, cfg=1.3)
    text = "First part. Second part."
    chunks = list(tts.stream(text, dev["lj1"], chunk_frames=3, first_chunk_frames=1, **kw))
    full = tts.synthesize(text, dev["lj1"], **kw).audio
    assert len(chunks) > 4 and len(chunks[0]) == tts.vae.hop  # first audio after one frame
    np.testing.assert_allclose(np.concatenate(chunks), full, atol=1e-5)


def test_batch_equals_individual(tts, dev):
    jobs = [
        dict(text="Short one.", prompt_audio=dev["lj1"], prompt_text=dev["lj1_text"], max_seconds=0.6),
        dict(
            text="A rather longer sentence here.",
            prompt_audio=dev["lj2"],
            prompt_text=dev["lj2_text"],
            max_seconds=1.0,
        ),
    ]
    # Full-temperature sampling with a different seed per job: every row has its own random stream, so each
    # batched result reproduces the single call with the same seed.
    for seed, j in enumerate(jobs):
        j.update(temperature=1.0, cfg=1.5, steps=5, seed=seed + 3)
    batch = tts.synthesize_batch(jobs)
    for j, r in zip(jobs, batch):
        one = tts.synthesize(**j)
        assert r.info["frames"] == one.info["frames"]
        np.testing.assert_allclose(r.audio, one.audio, atol=1e-4)
    assert batch[0].info["frames"] != batch[1].info["frames"]  # rows of different lengths were padded
    other = tts.synthesize(**{**jobs[0], "seed": 99})
    assert not np.allclose(other.audio, batch[0].audio, atol=1e-3)  # the seed matters


def test_prompt_formats_stereo_and_any_rate(tts, dev):
    wav, sr = sf.read(dev["lj1"], dtype="float32")  # 22.05 kHz mono
    stereo = np.stack([wav, wav], axis=1)
    kw = dict(prompt_text=dev["lj1_text"], max_seconds=0.2, temperature=0.0)
    a = tts.synthesize("Hi.", dev["lj1"], **kw).audio
    b = tts.synthesize("Hi.", (sr, stereo), **kw).audio
    c = tts.synthesize("Hi.", (sr, (wav * 32767).astype(np.int16)), **kw).audio
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=2e-3)


# ---------------------------------------------------------------- bad input


def test_bad_inputs_give_clear_errors(tts, dev, tmp_path):
    ok = dict(prompt_text=dev["lj1_text"], max_seconds=0.2)
    sr = 16000
    cases = {
        "text is empty": lambda: tts.synthesize("   ", dev["lj1"], **ok),
        "nothing to speak": lambda: tts.synthesize("!!! ...", dev["lj1"], **ok),
        "silent": lambda: tts.synthesize("Hi.", (sr, np.zeros(3 * sr, np.float32)), **ok),
        "too short": lambda: tts.synthesize("Hi.", (sr, sf.read(dev["lj1"])[0][: sr // 2]), **ok),
        "too long": lambda: tts.synthesize("Hi.", (22050, np.tile(sf.read(dev["lj1"])[0], 6)), **ok),
        "not found": lambda: tts.synthesize("Hi.", tmp_path / "nope.wav", **ok),
        "corrupt": lambda: tts.synthesize("Hi.", _corrupt(tmp_path), **ok),
        "prompt_text is empty": lambda: tts.synthesize("Hi.", dev["lj1"], prompt_text=""),
        "prompt_audio must be": lambda: tts.synthesize("Hi.", 42, **ok),
        "steps must be": lambda: tts.synthesize("Hi.", dev["lj1"], steps=0, **ok),
    }
    for needle, call in cases.items():
        with pytest.raises(TTSInputError, match=needle):
            call()
    assert issubclass(TTSInputError, ValueError)


def _corrupt(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(100))
    return p


def test_batch_returns_errors_in_place(tts, dev):
    jobs = [
        dict(text="Fine.", prompt_audio=dev["lj1"], prompt_text=dev["lj1_text"], max_seconds=0.2),
        dict(text="", prompt_audio=dev["lj1"], prompt_text=dev["lj1_text"]),
    ]
    out = tts.synthesize_batch(jobs, on_error="return")
    assert isinstance(out[0], SynthesisResult) and isinstance(out[1], TTSInputError)
    with pytest.raises(TTSInputError, match="job 1: text is empty"):
        tts.synthesize_batch(jobs)


def test_mismatched_or_incomplete_checkpoints(release, tmp_path):
    bad = tmp_path / "vocab"
    shutil.copytree(release, bad)
    doc = json.loads((bad / "config.json").read_text())
    doc["config"]["model"]["vocab_size"] += 1
    (bad / "config.json").write_text(json.dumps(doc))
    with pytest.raises(TTSInputError, match="does not match|vocabulary"):
        TTS.from_pretrained(bad)
    novae = tmp_path / "novae"
    shutil.copytree(release, novae)
    shutil.rmtree(novae / "vae")
    with pytest.raises(TTSInputError, match="vae/"):
        TTS.from_pretrained(novae)
    with pytest.raises(TTSInputError, match="missing model.safetensors"):
        TTS.from_pretrained(tmp_path)
    wrong = tmp_path / "weights"
    shutil.copytree(release, wrong)
    make_tiny_tts().vae.save_pretrained(wrong / "vae")  # fine: same VAE shapes
    from latentlm.checkpoint import load_release, save_release

    sd, cfg, meta = load_release(release, kind="tts")
    sd.pop("lm_head.weight")
    save_release(wrong, sd, cfg, meta=meta, kind="tts")
    with pytest.raises(TTSInputError, match="missing.*lm_head.weight"):
        TTS.from_pretrained(wrong)


@pytest.mark.slow
def test_prompt_is_transcribed_without_prompt_text(tts, dev):
    res = tts.synthesize("Hello.", dev["lj2"], max_seconds=0.2)
    words = set(res.prompt_text.lower().replace(".", "").split())
    assert {"comparatively", "modern"} & words, res.prompt_text


def test_continuation_mode_keeps_the_prompt_and_continues(tts, dev):
    """VALL-E continuation: the prompt is the start of the utterance; the output is prompt + continuation."""
    prompt = tts.load_prompt(dev["lj1"])[: 2 * tts.sample_rate]  # first 2 s at the model rate
    res = tts.synthesize(dev["lj1_text"], prompt, continuation=True, max_seconds=3.0, steps=3)
    np.testing.assert_array_equal(res.audio[: len(prompt)], prompt)
    assert len(res.audio) > len(prompt) and res.info["frames"][0] > 0
    [batched] = tts.synthesize_batch(
        [dict(text=dev["lj1_text"], prompt_audio=prompt, continuation=True, max_seconds=3.0, steps=3)]
    )
    np.testing.assert_allclose(batched.audio, res.audio, atol=1e-4)
    with pytest.raises(TTSInputError, match="continuation mode"):
        tts.synthesize("x y z.", prompt, prompt_text="the start", continuation=True)


def _spy_on_decoding(tts: TTS, setting: str) -> list:
    """The list that collects ``setting`` of every decoding call tts makes from now on."""
    seen, real_stream = [], tts.lm.generate_stream

    def spy(prefix, **kwargs):
        seen.append(kwargs[setting])
        return real_stream(prefix, **kwargs)

    tts.lm.generate_stream = spy
    return seen


def test_the_release_sets_the_default_guidance(dev):
    kw = dict(prompt_text=dev["lj1_text"], max_seconds=0.4, seed=3, steps=2)
    strong = make_tiny_tts(seed=0, cfg_scale=3.0)
    seen = _spy_on_decoding(strong, "cfg")
    strong.synthesize("Hello.", dev["lj1"], **kw)
    strong.synthesize("Hello.", dev["lj1"], cfg=1.5, **kw)
    strong.synthesize_batch([dict(text="Hello.", prompt_audio=dev["lj1"], **kw)])
    list(strong.stream("Hello.", dev["lj1"], **kw))
    assert seen == [3.0, 1.5, 3.0, 3.0]
    with pytest.raises(ValueError, match="cfg_scale"):
        make_tiny_tts(seed=0, cfg_scale=-1.0)


def test_the_release_sets_the_default_temperature(dev, tmp_path):
    """temperature=None (every front end's default) is the release's TTSConfig.temperature; it travels in the
    release's config.json; a call's own temperature wins."""
    kw = dict(prompt_text=dev["lj1_text"], max_seconds=0.4, seed=3, steps=2)
    cool = TTS.from_pretrained(make_tiny_release(tmp_path / "rel", seed=0, temperature=0.7))
    assert cool.cfg.temperature == 0.7
    seen = _spy_on_decoding(cool, "temperature")
    a = cool.synthesize("Hello.", dev["lj1"], **kw)
    b = cool.synthesize("Hello.", dev["lj1"], temperature=0.7, **kw)
    cool.synthesize("Hello.", dev["lj1"], temperature=1.0, **kw)
    cool.synthesize_batch([dict(text="Hello.", prompt_audio=dev["lj1"], **kw)])
    list(cool.stream("Hello.", dev["lj1"], **kw))
    assert seen == [0.7, 0.7, 1.0, 0.7, 0.7]
    np.testing.assert_array_equal(a.audio, b.audio)
    with pytest.raises(ValueError, match="temperature"):
        make_tiny_tts(seed=0, temperature=-0.5)
