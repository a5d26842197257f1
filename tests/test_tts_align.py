"""Guided attention (tts/align.py): the expected alignment, the loss on known attention, and that training
with it makes the guided heads attend along the diagonal."""

from __future__ import annotations

import math

import pytest
import torch

from latentlm.config import load_config
from latentlm.model import LatentLM
from tests.helpers import (
    make_tiny_corpus,
    ragged_training_batch,
    random_training_row,
    tiny_tts_config,
    write_tiny_recipe,
)
from tts.align import AlignConfig, enable, expected_phoneme, guided_attention_loss, kept_probs, positions
from tts.manifests import read_jsonl
from tts.train import TrainConfig, Trainer


def test_expected_phoneme_is_piecewise_linear_through_the_anchor():
    e = expected_phoneme(100, 50, (20, 40), "cpu")
    assert e.shape == (100,) and torch.all(e[1:] > e[:-1])
    assert e[0] < 0.5 and e[-1] > 49.5  # first frame at the first phoneme, last at the last
    assert (
        abs(float(e[39]) - 20) < 0.5 and abs(float(e[40]) - 20) < 0.5
    )  # prompt audio ends at its text's end
    assert torch.allclose(expected_phoneme(10, 5, None, "cpu"), (torch.arange(10) + 0.5) / 2)
    # an anchor outside the row falls back to one straight line
    assert torch.allclose(expected_phoneme(10, 5, (0, 3), "cpu"), expected_phoneme(10, 5, None, "cpu"))


def test_loss_is_low_on_the_diagonal_and_high_off_it():
    lm = LatentLM(tiny_tts_config(30, latent_dim=8, dim=32).model)
    P, T = 12, 24
    batch = random_training_row(lm, P, T)
    N = batch.tokens.shape[1]
    text = (batch.tokens[0] >= lm.layout.offset).nonzero().squeeze(1)
    frames = (batch.modality[0] == 0).nonzero().squeeze(1)
    assert len(text) == P and len(frames) == T

    def attention(target_of_frame):  # one-hot attention from each frame to a chosen phoneme
        p = torch.zeros(1, 1, N, N)
        p[0, 0, torch.arange(N), torch.arange(N)] = 1.0  # non-frame rows: irrelevant
        for j, f in enumerate(frames):
            p[0, 0, f] = 0
            p[0, 0, f, text[target_of_frame(j)]] = 1.0
        return p

    diag, diag_mass = guided_attention_loss([attention(lambda j: j * P // T)], batch, lm, [None], 0.1)
    anti, anti_mass = guided_attention_loss([attention(lambda j: P - 1 - j * P // T)], batch, lm, [None], 0.1)
    assert float(anti_mass) < 0.3 < 0.9 < float(diag_mass)
    assert float(diag) < 0.1 and float(anti) > 2.0
    # attending to the audio history instead of the text counts as fully off the diagonal
    p = torch.zeros(1, 1, N, N)
    p[0, 0, torch.arange(N), torch.arange(N)] = 1.0
    loss, mass = guided_attention_loss([p], batch, lm, [None], 0.1)
    assert float(mass) == 0.0 and float(loss) == pytest.approx(-math.log(1e-4))
    # a row whose phonemes were dropped (classifier-free guidance) has nothing to align: zero, with a graph
    dropped = random_training_row(lm, P, T, drop=True)
    q = torch.rand(1, 1, dropped.tokens.shape[1], dropped.tokens.shape[1], requires_grad=True)
    z, _ = guided_attention_loss([q], dropped, lm, [None], 0.1)
    assert z.requires_grad and float(z.detach()) == 0.0


def test_kept_probs_have_gradient_and_match_the_layer_output():
    lm = LatentLM(tiny_tts_config(30, latent_dim=8, dim=32).model)
    cfg = AlignConfig(weight=1.0, layers=[1], heads=1)
    enable(lm, cfg)
    batch = random_training_row(lm, 10, 20)
    lm(batch)
    (probs,) = kept_probs(lm, cfg)
    N = batch.tokens.shape[1]
    assert probs.shape == (1, 1, N, N)
    assert torch.allclose(probs.sum(-1), torch.ones(1, 1, N), atol=1e-5)
    assert torch.all(probs.triu(1) == 0)  # causal
    loss, _ = guided_attention_loss([probs], batch, lm, [None], 0.1)
    loss.backward()
    assert lm.trunk.layers[1].attn.qkv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="do not fit"):
        enable(lm, AlignConfig(weight=1.0, layers=[7]))


@pytest.fixture(scope="module")
def corpus(real_speech_dir, tmp_path_factory):
    return make_tiny_corpus(real_speech_dir, tmp_path_factory.mktemp("tts_align_corpus"))


def test_training_with_guided_attention_raises_the_band_mass(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run", dim=64)
    over = [
        "max_steps=80",
        "optim.lr=3e-3",
        "p_uncond=0.0",
        "align.weight=1.0",
        "align.layers=[1]",
        "align.sigma=0.15",
        "tts.model.loss_weights.diff_audio=0.0",
    ]  # this tiny VAE's diffusion loss is huge
    tr = Trainer(load_config(TrainConfig, recipe, over), resume=False)
    tr.setup_data(read_jsonl(corpus["manifest"]))
    logs = [tr.train_step() for _ in range(80)]
    first = {k: sum(x[k] for x in logs[:5]) / 5 for k in ("align", "align_mass")}
    last = {k: sum(x[k] for x in logs[-5:]) / 5 for k in ("align", "align_mass")}
    assert last["align_mass"] > 1.4 * first["align_mass"] and last["align"] < first["align"] - 0.3, (
        first,
        last,
    )
    assert all(layer.attn.probs is None for layer in tr.lm.trunk.layers)  # no graph kept between steps
    # the exported model does not keep attention (inference pays nothing)
    tts = tr.ema_tts()
    assert all(layer.attn.keep_probs == 0 for layer in tts.lm.trunk.layers)


def _per_row_reference(probs, batch, lm, splits, sigma, eps=1e-4):
    """The loss written row by row, as it first was (the batched version must match it)."""
    total, band_mass, rows = probs[0].new_zeros(()), probs[0].new_zeros(()), 0
    for b in range(batch.tokens.shape[0]):
        text, frames = positions(batch, lm, b)
        P, T = text.numel(), frames.numel()
        if P == 0 or T == 0:
            continue
        e = expected_phoneme(T, P, splits[b], text.device)
        n = torch.arange(P, dtype=torch.float32) + 0.5
        band = torch.exp(-(((n[None] - e[:, None]) / P) ** 2) / (2 * sigma**2))
        for p in probs:
            mass = (p[b][:, frames][:, :, text] * band).sum(-1)
            total = total - torch.log(mass + eps).mean()
            band_mass = band_mass + mass.detach().mean()
        rows += len(probs)
    return total / rows, band_mass / rows


def test_batched_loss_matches_the_per_row_loss():
    torch.manual_seed(0)
    lm = LatentLM(tiny_tts_config(30, latent_dim=8, dim=32).model)
    # ragged rows (padding), one without a prompt
    batch, kept = ragged_training_batch(lm, [7, 12, 5, 9], [4, 6, 0, 5], [10, 20, 8, 3], 0.4, 3)
    assert any(kept) and not all(kept)  # some rows lost their phonemes to condition dropout
    N = batch.tokens.shape[1]
    probs = [torch.rand(len(kept), 2, N, N).softmax(-1).requires_grad_() for _ in range(2)]
    splits = [(3, 2), None, None, (4, 5)]  # anchors; (4, 5) is degenerate for a 5-frame prompt: linear
    got = guided_attention_loss(probs, batch, lm, splits, 0.1)
    want = _per_row_reference(probs, batch, lm, splits, 0.1)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    g_got = torch.autograd.grad(got[0], probs)
    g_want = torch.autograd.grad(want[0], probs)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b)
