"""The take verifier (tts/verifier.py, tts/verifier_train.py) and best-of-N synthesis (``takes``): phone targets,
a trainer that learns, resumes and refuses held-out speakers, a verifier that prefers the true transcript, and a
TTS that keeps the take its verifier scores best, the same through synthesize and synthesize_batch, refused where
it cannot work. Real clips, tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import make_tiny_corpus, make_tiny_tts
from tts.frontend import Frontend
from tts.model import TTS, TTSInputError
from tts.phone_hmm import SYMBOLS
from tts.verifier import DIRNAME, PhoneVerifier, VerifierConfig, load_verifier, phone_targets
from tts.verifier_train import main as train_main


def test_phone_targets_keep_one_base_phone_per_unit():
    fe = Frontend("en-us")
    ids = fe.encode("Hello, world!")  # həlˈoʊ, wˈɜːld!
    t = [SYMBOLS[i] for i in phone_targets(ids)]
    assert t == ["h", "ə", "l", "o", "ʊ", "w", "ɜ", "l", "d"]  # stress, length marks and pauses are not targets


@pytest.fixture(scope="module")
def corpus(real_speech_dir, tmp_path_factory):
    return make_tiny_corpus(real_speech_dir, tmp_path_factory.mktemp("vcorpus"), n=6)


def _train(corpus, run, out, *extra):
    train_main([
        "--latents", str(corpus["latents"]), "--manifest", str(corpus["manifest"]), "--run", str(run),
        "--out", str(out), "--batch-frames", "2000", "--channels", "64", "--layers", "2", "--threads", "1",
        "--noise", "0", "--mask-frames", "1", *extra,
    ])


def test_the_trainer_learns_resumes_and_refuses_held_out_speakers(corpus, tmp_path, capsys):
    rows = [json.loads(line) for line in corpus["manifest"].read_text().splitlines()]
    (tmp_path / "heldout.txt").write_text(rows[0]["speaker"] + "\n")
    with pytest.raises(SystemExit, match="held-out speakers"):
        _train(corpus, tmp_path / "run0", tmp_path / "rel0", "--heldout", str(tmp_path / "heldout.txt"))
    _train(corpus, tmp_path / "run", tmp_path / "rel", "--max-steps", "4", "--lr", "0.003")
    first = load_verifier(tmp_path / "rel")
    _train(corpus, tmp_path / "run", tmp_path / "rel", "--max-steps", "300", "--lr", "0.003",
           "--dev", str(corpus["manifest"]))
    assert "resuming at step 4" in capsys.readouterr().out
    meta = json.loads((tmp_path / "rel" / "config.json").read_text())["meta"]
    assert meta["steps"] == 300
    trained = load_verifier(tmp_path / "rel")
    # on its own training clips: the CTC loss falls far below the 4-step model's, and the true transcript
    # scores better than another clip's
    from tts.data import LatentStore

    store = LatentStore(corpus["latents"])
    fe = Frontend("en-us")
    zs = [store.get(r["id"]) for r in rows]
    ids = [fe.encode(r["text"]) for r in rows]
    assert trained.score(zs, ids).mean() < 0.5 * first.score(zs, ids).mean()
    true = trained.score(zs, ids)
    wrong = trained.score(zs, ids[1:] + ids[:1])
    assert (true < wrong).float().mean() >= 5 / 6
    assert meta["dev"]["per"] < 0.5


class _Ranked(PhoneVerifier):
    """A verifier whose scores are given: take k scores ``order[k]`` (k = position in the list it is asked)."""

    def __init__(self, order: list[float]):
        super().__init__(VerifierConfig(latent_dim=8, channels=8, layers=1))
        self.order, self.asked = order, []

    def score(self, latents, ids):
        self.asked.append(([z.shape for z in latents], [list(i) for i in ids]))
        return torch.tensor(self.order[: len(latents)])


def _with_verifier(order):
    t = make_tiny_tts(seed=0)
    return TTS(t.cfg, t.lm, t.vae, t.frontend, t.duration, t.aligner, None, _Ranked(order))


@pytest.fixture(scope="module")
def prompt(real_speech_dir):
    return real_speech_dir / "dev" / "coqui__LJ001-0001.wav", "Printing, in the only sense with which we are"


def test_takes_keep_the_take_the_verifier_scores_best(prompt):
    kw = dict(prompt_text=prompt[1], max_seconds=0.6, seed=3)
    one = make_tiny_tts(seed=0).synthesize("Hello there.", prompt[0], **kw)
    assert "takes" not in one.info
    first = _with_verifier([0.5, 2.0, 1.0])
    res = first.synthesize("Hello there.", prompt[0], takes=3, **kw)
    assert res.info["takes"] == [{"kept": 0, "scores": [0.5, 2.0, 1.0]}]
    np.testing.assert_allclose(res.audio, one.audio, atol=1e-5)  # take 0 is the sentence's usual stream
    [(shapes, ids)] = first.verifier.asked
    assert len(shapes) == 3 and ids == [first.frontend.encode("Hello there.")] * 3  # the sentence, not the prompt
    last = _with_verifier([2.0, 1.0, 0.5])
    res2 = last.synthesize("Hello there.", prompt[0], takes=3, **kw)
    assert res2.info["takes"][0]["kept"] == 2
    assert not np.allclose(res2.audio[: len(one.audio)], one.audio[: len(res2.audio)], atol=1e-3)
    [batched] = last.synthesize_batch([dict(text="Hello there.", prompt_audio=prompt[0], takes=3, **kw)])
    np.testing.assert_allclose(batched.audio, res2.audio, atol=1e-4)
    assert batched.info["takes"] == res2.info["takes"]


def test_takes_are_refused_where_they_cannot_work(prompt, tmp_path):
    kw = dict(prompt_text=prompt[1], max_seconds=0.4)
    plain = make_tiny_tts(seed=0)
    with pytest.raises(TTSInputError, match="no verifier"):
        plain.synthesize("Hi.", prompt[0], takes=2, **kw)
    [err] = plain.synthesize_batch([dict(text="Hi.", prompt_audio=prompt[0], takes=2)], on_error="return")
    assert isinstance(err, TTSInputError) and "no verifier" in str(err)
    with pytest.raises(TTSInputError, match="takes must be in"):
        plain.synthesize("Hi.", prompt[0], takes=0, **kw)
    ranked = _with_verifier([0.0, 1.0])
    with pytest.raises(TTSInputError, match="cannot stream"):
        next(ranked.stream("Hi.", prompt[0], takes=2, **kw))
    t = make_tiny_tts(seed=0)
    wrong = PhoneVerifier(VerifierConfig(latent_dim=16, channels=8, layers=1))
    with pytest.raises(TTSInputError, match="the verifier reads 16-d latents"):
        TTS(t.cfg, t.lm, t.vae, t.frontend, t.duration, t.aligner, None, wrong)


def test_a_release_keeps_its_verifier(prompt, tmp_path):
    t = make_tiny_tts(seed=0)
    torch.manual_seed(0)
    v = PhoneVerifier(VerifierConfig(latent_dim=8, channels=16, layers=1))
    out = TTS(t.cfg, t.lm, t.vae, t.frontend, t.duration, t.aligner, None, v).save_pretrained(tmp_path / "rel")
    assert (out / DIRNAME / "model.safetensors").is_file()
    back = TTS.from_pretrained(out)
    for a, b in zip(v.state_dict().values(), back.verifier.state_dict().values()):
        assert torch.equal(a, b)
    res = back.synthesize("Hi.", prompt[0], prompt_text=prompt[1], max_seconds=0.4, takes=2)
    scores = res.info["takes"][0]["scores"]
    assert len(scores) == 2 and res.info["takes"][0]["kept"] == int(np.argmin(scores))
