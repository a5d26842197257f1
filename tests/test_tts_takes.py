"""Best-of-N synthesis (``takes``): every sentence decoded N times on its own seeded streams (take 0 the usual one),
the take the release's HMM aligner finds most likely to say the sentence kept; the same through synthesize and
synthesize_batch, kept by a saved release, refused where it cannot work. Real prompt audio, tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_tiny_tts
from tts.model import TTS, TTSInputError


class _Ranked:
    """An aligner whose judgement is given: the k-th take it is asked about scores ``order[k]``."""

    def __init__(self, order: list[float]):
        self.order, self.asked = order, []

    def loglik(self, latents, ids) -> float:
        self.asked.append((tuple(latents.shape), list(ids)))
        return self.order[len(self.asked) - 1]


def _judged(order):
    t = make_tiny_tts(seed=0)
    t.aligner = _Ranked(order)
    return t


@pytest.fixture(scope="module")
def prompt(real_speech_dir):
    return real_speech_dir / "dev" / "coqui__LJ001-0001.wav", "Printing, in the only sense with which we are"


def test_takes_keep_the_take_the_aligner_finds_most_likely(prompt):
    kw = dict(prompt_text=prompt[1], max_seconds=0.6, seed=3)
    one = make_tiny_tts(seed=0).synthesize("Hello there.", prompt[0], **kw)
    assert "takes" not in one.info
    first = _judged([-1.0, -3.0, -2.0])
    res = first.synthesize("Hello there.", prompt[0], takes=3, **kw)
    assert res.info["takes"] == [{"kept": 0, "scores": [-1.0, -3.0, -2.0]}]
    np.testing.assert_allclose(res.audio, one.audio, atol=1e-5)  # take 0 is the sentence's usual stream
    script = first.frontend.encode("Hello there.")
    assert [ids for _, ids in first.aligner.asked] == [script] * 3  # judged on the sentence, not the prompt
    assert all(shape[1] == first.vae.latent_dim for shape, _ in first.aligner.asked)  # the VAE's frames
    last = _judged([-3.0, -2.0, -1.0])
    res2 = last.synthesize("Hello there.", prompt[0], takes=3, **kw)
    assert res2.info["takes"][0]["kept"] == 2
    n = min(len(one.audio), len(res2.audio))
    assert not np.allclose(res2.audio[:n], one.audio[:n], atol=1e-3)  # another take: other noise
    batch_judge = _judged([-3.0, -2.0, -1.0])
    [batched] = batch_judge.synthesize_batch([dict(text="Hello there.", prompt_audio=prompt[0], takes=3, **kw)])
    np.testing.assert_allclose(batched.audio, res2.audio, atol=1e-4)
    assert batched.info["takes"] == res2.info["takes"]


def test_takes_of_several_sentences_are_judged_per_sentence(prompt):
    t = _judged([-2.0, -1.0, -1.0, -2.0])  # sentence 0: take 1; sentence 1: take 0
    res = t.synthesize("Hello there. Good day.", prompt[0], prompt_text=prompt[1], max_seconds=0.4, takes=2)
    assert [x["kept"] for x in res.info["takes"]] == [1, 0]
    fe = t.frontend
    assert [ids for _, ids in t.aligner.asked] == [fe.encode("Hello there.")] * 2 + [fe.encode("Good day.")] * 2


def test_takes_are_refused_where_they_cannot_work(prompt):
    kw = dict(prompt_text=prompt[1], max_seconds=0.4)
    plain = make_tiny_tts(seed=0)
    assert plain.aligner is None
    with pytest.raises(TTSInputError, match="no phoneme aligner"):
        plain.synthesize("Hi.", prompt[0], takes=2, **kw)
    [err] = plain.synthesize_batch([dict(text="Hi.", prompt_audio=prompt[0], takes=2)], on_error="return")
    assert isinstance(err, TTSInputError) and "no phoneme aligner" in str(err)
    with pytest.raises(TTSInputError, match="takes must be in"):
        plain.synthesize("Hi.", prompt[0], takes=0, **kw)
    with pytest.raises(TTSInputError, match="cannot stream"):
        next(_judged([0.0, 1.0]).stream("Hi.", prompt[0], takes=2, **kw))


@pytest.fixture(scope="module")
def judged_release(real_speech_dir, tmp_path_factory):
    """A tiny predictor-timed release whose aligner is fitted on six real clips (its tiny VAE's latents)."""
    from tts.data import load_audio
    from tts.manifests import real_speech
    from tts.phone_hmm import PhoneAligner

    torch.manual_seed(0)
    tts = make_tiny_tts(seed=0, interleave=True, timing="predictor")
    pairs = []
    for r in real_speech(real_speech_dir, subsets=("dev",))[:6]:
        wav, sr = load_audio(r)
        pairs.append((tts.vae.encode(torch.from_numpy(wav), sr), tts.frontend.encode(r.text)))
    tts.aligner = PhoneAligner()
    tts.aligner.fit(pairs, iterations=1, progress=False)
    return tts.save_pretrained(tmp_path_factory.mktemp("judged") / "rel")


def test_a_saved_release_judges_with_its_fitted_aligner(judged_release, prompt):
    rel = TTS.from_pretrained(judged_release)
    res = rel.synthesize("Hello there.", prompt[0], prompt_text=prompt[1], steps=2, takes=3, seed=1)
    [judged] = res.info["takes"]
    assert len(judged["scores"]) == 3 and all(np.isfinite(judged["scores"]))
    assert judged["kept"] == int(np.argmax(judged["scores"]))
    assert len(set(judged["scores"])) == 3  # three different takes, told apart


def test_the_clis_take_takes_and_report_the_kept_one(judged_release, prompt, tmp_path, capsys):
    import json

    from tts import batch as batch_cli
    from tts import synthesize as synth_cli

    args = ["--checkpoint", str(judged_release), "--prompt", str(prompt[0]), "--prompt-text", prompt[1]]
    rc = synth_cli.main(args + ["--text", "Hello.", "--out", str(tmp_path / "one.wav"), "--steps", "2", "--takes", "2"])
    assert rc == 0 and '"takes": [{"kept": ' in capsys.readouterr().out
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "text": "Hi there.", "prompt_audio": str(prompt[0]),
                                "prompt_text": prompt[1]}) + "\n")
    rc = batch_cli.main([str(jobs), "--checkpoint", str(judged_release), "--out-dir", str(tmp_path / "out"),
                         "--steps", "2", "--takes", "3", "--no-progress"])
    [info] = [json.loads(x) for x in (tmp_path / "out" / "info.jsonl").read_text().splitlines()]
    assert rc == 0 and len(info["takes"][0]["scores"]) == 3
    assert info["takes"][0]["kept"] == int(np.argmax(info["takes"][0]["scores"]))
