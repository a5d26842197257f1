"""Phoneme CTC on the hidden states (tts/ctc.py): what it reads, which rows count, and that training with it
teaches the hidden states to spell the phonemes of real speech."""

from __future__ import annotations

import pytest
import torch

from latentlm.config import load_config
from latentlm.model import LatentLM
from tts import ctc
from tts.manifests import read_jsonl
from tts.testing import make_tiny_corpus, random_training_row, tiny_tts_config, write_tiny_recipe
from tts.train import TrainConfig, Trainer


def test_greedy_decode_and_edit_distance():
    blank, a, b = 0, 1, 2
    lp = torch.full((6, 3), -10.0)
    for t, k in enumerate([a, a, blank, a, b, b]):
        lp[t, k] = 0.0
    assert ctc.greedy_decode(lp) == [a, a, b]  # repeats merge, a blank separates a real repeat
    assert ctc._edits([1, 2, 3], [1, 3]) == 1 and ctc._edits([], [4, 5]) == 2


def test_loss_reads_the_lm_head_and_skips_dropped_rows():
    torch.manual_seed(0)
    lm = LatentLM(tiny_tts_config(30, latent_dim=8, dim=32).model)
    batch = random_training_row(lm, P=6, T=20)
    hidden = lm(batch)
    loss, per = ctc.phoneme_ctc_loss(hidden, batch, lm)
    assert loss.item() > 0 and per.item() > 0.5  # an untrained read-out spells nothing right
    loss.backward()
    assert lm.lm_head.weight.grad.abs().sum() > 0 and lm.trunk.layers[0].attn.qkv.weight.grad.abs().sum() > 0
    # the read-out never looks at <lat> / <eo_audio>: the LM loss at these positions is left alone
    lay = lm.layout
    grad_rows = lm.lm_head.weight.grad.abs().sum(1)
    assert grad_rows[lay.lat] == 0 and grad_rows[lay.end["audio"]] == 0
    dropped = random_training_row(lm, P=6, T=20, drop=True)
    zero, _ = ctc.phoneme_ctc_loss(lm(dropped), dropped, lm)
    assert zero.item() == 0.0 and zero.requires_grad


@pytest.fixture(scope="module")
def corpus(real_speech_dir, tmp_path_factory):
    return make_tiny_corpus(real_speech_dir, tmp_path_factory.mktemp("tts_ctc_corpus"))


def test_training_with_ctc_lowers_it_on_real_speech(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run", dim=64)
    over = ["max_steps=60", "optim.lr=3e-3", "tts.p_uncond=0.0", "ctc_weight=1.0"]
    over.append("tts.model.loss_weights.diff_audio=0.0")  # this tiny VAE's diffusion loss is huge
    tr = Trainer(load_config(TrainConfig, recipe, over), resume=False)
    tr.setup_data(read_jsonl(corpus["manifest"]))
    logs = [tr.train_step() for _ in range(60)]
    first = sum(x["ctc"] for x in logs[:5]) / 5
    last = sum(x["ctc"] for x in logs[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert "ctc_per" in logs[-1]
