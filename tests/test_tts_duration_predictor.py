"""The phoneme duration predictor (tts/duration_predictor.py, tts/duration_train.py) and forced-duration synthesis."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import make_tiny_corpus, make_tiny_release, make_tiny_tts
from tts.duration_predictor import (
    DurationConfig,
    DurationPredictor,
    load_predictor,
    phone_units,
    speaking_rate,
    unit_targets,
)
from tts.duration_train import evaluate, main, train
from tts.frontend import Frontend
from tts.model import TTS, TTSInputError
from tts.phone_hmm import units
from tts.prepare import prepare_job

TEXTS = [
    "Printing, in the only sense with which we are at present concerned.",
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore, and he sells rope.",
    "A stitch in time saves nine.",
    "Where are you going? Home, I think.",
    "Nothing is so painful to the human mind as a great and sudden change.",
    "It was the best of times, it was the worst of times.",
    "Call me Ishmael.",
]


@pytest.fixture(scope="module")
def phonemes() -> list[list[int]]:
    return Frontend("en-us").encode_batch(TEXTS)


def _rule(ids: list[int], rate: int) -> list[int]:
    """Durations a speaker of tempo ``rate`` would have: ``rate`` frames per phone unit, 2 per punctuation."""
    d = [0] * len(ids)
    for u in units(ids):
        d[u.last] = rate if not u.pause else (2 if u.first < u.last or u.last == len(ids) - 1 else 0)
    return d


def test_predictions_follow_the_unit_structure(phonemes):
    torch.manual_seed(0)
    pred = DurationPredictor(DurationConfig(channels=16, layers=1))
    for ids in phonemes:
        d = pred.predict(ids, rate=3.0)
        last, phone, _ = unit_targets(ids)
        assert len(d) == len(ids) and all(x >= 0 for x in d)
        assert all(x == 0 for x, e in zip(d, last.tolist()) if not e)  # stress marks etc. own no frames
        assert all(x >= 1 for x, p in zip(d, phone.tolist()) if p)  # every phone is heard
        assert sum(pred.predict(ids, 3.0, tempo=4.0)) <= sum(d)
    with pytest.raises(ValueError, match="empty"):
        pred.predict([], 3.0)
    with pytest.raises(ValueError, match="rate and tempo"):
        pred.predict(phonemes[0], 0.0)
    with pytest.raises(ValueError, match="out of range"):
        pred.predict([10_000], 3.0)
    assert speaking_rate(30, phonemes[3]) == pytest.approx(30 / phone_units(phonemes[3]))


def test_training_learns_durations_and_the_speakers_tempo(phonemes):
    torch.manual_seed(0)
    items = []
    for spk, rate in (("slow", 5), ("fast", 2), ("mid", 3)):
        for k, ids in enumerate(phonemes):
            items.append({"id": f"{spk}{k}", "speaker": spk, "ids": ids, "durations": _rule(ids, rate)})
    cfg = DurationConfig(channels=32, layers=2, dropout=0.0)
    model, metrics = train(items, cfg, epochs=60, batch_size=8, lr=5e-3, holdout=0.0, log=lambda *_: None)
    assert metrics["train"]["unit_mae_frames"] < 0.5, metrics
    ids = phonemes[5]
    slow, fast = (sum(model.predict(ids, speaking_rate(sum(_rule(ids, r)), ids))) for r in (5, 2))
    assert slow > 1.8 * fast, (slow, fast)  # the tempo input drives the length
    untrained = DurationPredictor(cfg)
    rates = {"slow": [5.0], "fast": [2.0], "mid": [3.0]}
    for it in items:
        it["rate"] = rates[it["speaker"]][0]
    assert evaluate(untrained, items, rates)["unit_mae_frames"] > metrics["train"]["unit_mae_frames"]


def test_synthesis_with_predicted_durations(real_speech_dir, tmp_path):
    torch.manual_seed(0)
    wav = real_speech_dir / "dev" / "coqui__LJ001-0001.wav"
    rel = make_tiny_release(tmp_path / "rel", interleave=True, timing="predictor")
    assert (rel / "duration" / "model.safetensors").is_file()
    tts = TTS.from_pretrained(rel)
    with torch.no_grad():  # the untrained predictor would give every phone its minimum: ~4 frames instead
        tts.duration.out.bias.fill_(1.6)
    kw = dict(prompt_text="Printing, in the only sense", seed=1, steps=2)
    res = tts.synthesize("Hello there. Good day!", wav, **kw)
    job = prepare_job(tts, "Hello there. Good day!", wav, kw["prompt_text"], None)
    assert res.info["frames"] == [sum(r.durations) for r in job.rows]  # exactly the predicted lengths
    assert res.info["stop"] == ["eos", "eos"]
    [batched] = tts.synthesize_batch([dict(text="Hello there. Good day!", prompt_audio=wav, **kw)])
    assert batched.info["frames"] == res.info["frames"]
    # speed divides every predicted duration (phones keep at least one frame each)
    fast = tts.synthesize("Hello there. Good day!", wav, speed=2.0, **kw)
    fast_job = prepare_job(tts, "Hello there. Good day!", wav, kw["prompt_text"], None, speed=2.0)
    assert fast.info["frames"] == [sum(r.durations) for r in fast_job.rows] and sum(
        fast.info["frames"]
    ) < sum(res.info["frames"])
    [fast_b] = tts.synthesize_batch([dict(text="Hello there. Good day!", prompt_audio=wav, speed=2.0, **kw)])
    assert fast_b.info["frames"] == fast.info["frames"]
    with pytest.raises(TTSInputError, match="speed must be"):
        tts.synthesize("Hello there.", wav, speed=3.0, **kw)
    [bad] = tts.synthesize_batch([dict(text="Hi.", prompt_audio=wav, speed="fast", **kw)], on_error="return")
    assert isinstance(bad, TTSInputError) and "speed must be a number" in str(bad)
    lm_timed = make_tiny_tts(seed=0, interleave=True)
    assert (
        lm_timed.duration is None
        and prepare_job(lm_timed, "Hello.", wav, kw["prompt_text"], None).rows[0].durations is None
    )
    with pytest.raises(TTSInputError, match="duration predictor"):
        lm_timed.synthesize("Hello.", wav, speed=1.5, **kw)
    # a release that asks for the predictor but has none
    import shutil

    shutil.rmtree(rel / "duration")
    with pytest.raises(TTSInputError, match="duration predictor"):
        TTS.from_pretrained(rel)
    with pytest.raises(ValueError, match="interleaved"):
        make_tiny_tts(seed=0, timing="predictor")


def _corpus_with_durations(real_speech_dir, root):
    """A tiny real-speech corpus whose latent store has phonemes and (rule-made) durations: 1 frame per phone,
    the rest of each utterance on its last symbol."""
    from tts.data import LatentStore
    from tts.manifests import read_jsonl
    from tts.store_files import phoneme_cache

    c = make_tiny_corpus(real_speech_dir, root, n=4)
    c["phonemes"] = phoneme_cache(read_jsonl(c["manifest"]), c["latents"], Frontend("en-us"), 0)
    store = LatentStore(c["latents"])
    dur = {u: _rule(ids, 1) for u, ids in c["phonemes"].items()}
    for u, d in dur.items():
        d[-1] += store.frames(u) - sum(d)
        assert d[-1] >= 0
    (c["latents"] / "durations.json").write_text(json.dumps(dur))
    return c


def _train_cli(c, out, epochs: int = 1) -> None:
    args = ["--latents", str(c["latents"]), "--manifest", str(c["manifest"]), "--out", str(out)]
    main([*args, "--epochs", str(epochs), "--holdout", "0"])


def test_duration_train_cli_writes_a_loadable_release(real_speech_dir, tmp_path, capsys):
    c = _corpus_with_durations(real_speech_dir, tmp_path / "corpus")
    out = tmp_path / "dur"
    _train_cli(c, out, epochs=2)
    assert "wrote" in capsys.readouterr().out
    model = load_predictor(out)
    assert sum(model.predict(next(iter(c["phonemes"].values())), 2.0)) > 0
    assert "metrics" in json.loads((out / "config.json").read_text())["meta"]
    (c["latents"] / "durations.json").unlink()
    with pytest.raises(SystemExit, match="tts.durations"):
        main(["--latents", str(c["latents"]), "--manifest", str(c["manifest"]), "--out", str(out)])


def test_a_run_timed_by_the_predictor_ships_it(real_speech_dir, tmp_path):
    from latentlm.config import load_config, save_config
    from tests.helpers import write_tiny_recipe
    from tts.export import export
    from tts.manifests import read_jsonl
    from tts.train import TrainConfig, Trainer

    c = _corpus_with_durations(real_speech_dir, tmp_path / "corpus")
    recipe = write_tiny_recipe(tmp_path / "r.yaml", c, tmp_path / "run")
    over = ["tts.interleave=true", "tts.timing=predictor", "max_steps=1"]
    with pytest.raises(ValueError, match="duration_train"):
        Trainer(load_config(TrainConfig, recipe, over), resume=False)
    _train_cli(c, c["latents"] / "duration_model")
    tr = Trainer(load_config(TrainConfig, recipe, over), resume=False)
    tr.setup_data(read_jsonl(c["manifest"]))
    tr.train_step()
    tr.save()
    save_config(tr.cfg, tmp_path / "run" / "config.yaml")  # what a tts.train run writes
    rel = TTS.from_pretrained(tr.ema_tts().save_pretrained(tmp_path / "release"))
    assert rel.cfg.timing == "predictor" and rel.duration is not None
    # tts.export: the run's own predictor ...
    assert TTS.from_pretrained(export(tmp_path / "run", tmp_path / "exp")).duration is not None
    # ... or, with --duration, one for a run that was timed by its LM head
    cfg = load_config(TrainConfig, tmp_path / "run" / "config.yaml", ["tts.timing=lm"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert TTS.from_pretrained(export(tmp_path / "run", tmp_path / "exp2")).duration is None
    timed = TTS.from_pretrained(
        export(tmp_path / "run", tmp_path / "exp3", duration=str(c["latents"] / "duration_model"))
    )
    assert timed.cfg.timing == "predictor" and timed.duration is not None


def test_a_transcript_that_does_not_fit_its_prompt_cannot_ask_for_minutes(real_speech_dir, tmp_path):
    wav = real_speech_dir / "dev" / "coqui__LJ001-0002.wav"  # 1.9 s: "in being comparatively modern."
    tts = make_tiny_tts(seed=0, interleave=True, timing="predictor")
    with torch.no_grad():  # a predictor that says log(1 + d) = log(tempo): d = frames per phone - 1
        for p in tts.duration.parameters():
            p.zero_()
        tts.duration.cond.weight[0, 0] = 1.0
        tts.duration.out.weight[0, 0] = 1.0
    one_word = prepare_job(tts, "Hello there.", wav, "in", None).rows[
        0
    ]  # a one-word "transcript" of the clip
    fitting = prepare_job(tts, "Hello there.", wav, "in being comparatively modern.", None).rows[0]
    n = len(one_word.durations)
    assert sum(one_word.durations) <= 6 * n  # the clamped tempo (<= 0.24 s = 6 frames per phone)
    assert sum(one_word.durations) > sum(fitting.durations)


def test_continuation_with_an_interleaved_release(real_speech_dir, tmp_path):
    """Continuation mode (the LibriSpeech benchmark's 3-s protocol) for a predictor-timed interleaved release:
    the aligner shipped in duration/ finds where the prompt stops in the text, the rest is scripted and timed."""
    import soundfile as sf

    from tts.data import load_audio
    from tts.manifests import real_speech
    from tts.phone_hmm import PhoneAligner

    torch.manual_seed(0)
    tts = make_tiny_tts(seed=0, interleave=True, timing="predictor")
    rows = real_speech(real_speech_dir, subsets=("dev",))[:6]
    pairs = []
    for r in rows:
        wav, sr = load_audio(r)
        pairs.append((tts.vae.encode(torch.from_numpy(wav), sr), tts.frontend.encode(r.text)))
    tts.aligner = PhoneAligner()
    tts.aligner.fit(pairs, iterations=1, progress=False)
    rel = TTS.from_pretrained(tts.save_pretrained(tmp_path / "rel"))
    assert rel.aligner is not None and (tmp_path / "rel" / "duration" / "aligner.json").is_file()
    r = rows[0]  # LJ001-0001, 9.7 s: its first 3 s are the prompt, its whole transcript the text
    wav, sr = sf.read(r.audio, dtype="float32")
    prompt = (sr, wav[: 3 * sr])
    job = prepare_job(rel, r.text, prompt, None, None, continuation=True)
    ph, script = job.rows[0].phonemes, job.rows[0].script
    assert 0 < len(script) < len(ph) and ph[-len(script) :] == script  # the rest of the text
    res = rel.synthesize(r.text, prompt, continuation=True, steps=2, seed=0)
    n_prompt = len(job.continuation_audio)
    assert res.info["frames"] == [sum(job.rows[0].durations)]  # exactly the predicted rest
    assert len(res.audio) == n_prompt + sum(job.rows[0].durations) * rel.vae.hop
    np.testing.assert_allclose(
        res.audio[:n_prompt], job.continuation_audio, atol=1e-6
    )  # prompt + continuation
    rel.aligner = None
    with pytest.raises(TTSInputError, match="aligner"):
        rel.synthesize(r.text, prompt, continuation=True, steps=2)
