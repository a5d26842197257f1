"""Phoneme CTC on the hidden states (tts/ctc.py): what it reads, which rows count, and that training with it
teaches the hidden states to spell the phonemes of real speech."""

from __future__ import annotations

import pytest
import torch

from evaluation.normalize import word_errors
from latentlm.config import load_config
from latentlm.model import LatentLM
from tests.helpers import (
    make_tiny_corpus,
    ragged_training_batch,
    random_training_row,
    tiny_tts_config,
    write_tiny_recipe,
)
from tts import ctc
from tts.manifests import read_jsonl
from tts.train import TrainConfig, Trainer


def test_greedy_decode_and_edit_distance():
    blank, a, b = 0, 1, 2
    lp = torch.full((6, 3), -10.0)
    for t, k in enumerate([a, a, blank, a, b, b]):
        lp[t, k] = 0.0
    assert ctc.greedy_decode(lp) == [a, a, b]  # repeats merge, a blank separates a real repeat
    assert word_errors(ctc._ids([1, 2, 3]), ctc._ids([1, 3])).errors == 1  # the edits ctc_per counts
    assert word_errors(ctc._ids([4, 5]), ctc._ids([])).errors == 2


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
    over = ["max_steps=60", "optim.lr=3e-3", "p_uncond=0.0", "ctc_weight=1.0"]
    over.append("tts.model.loss_weights.diff_audio=0.0")  # this tiny VAE's diffusion loss is huge
    tr = Trainer(load_config(TrainConfig, recipe, over), resume=False)
    tr.setup_data(read_jsonl(corpus["manifest"]))
    logs = [tr.train_step() for _ in range(60)]
    first = sum(x["ctc"] for x in logs[:5]) / 5
    last = sum(x["ctc"] for x in logs[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert "ctc_per" in logs[-1]


def test_blind_rows_read_pure_noise_and_are_scored_on_their_target_only():
    from tts.layout import training_batch

    torch.manual_seed(0)
    lm = LatentLM(tiny_tts_config(30, latent_dim=8, dim=32).model)
    g = torch.Generator().manual_seed(0)
    P_prompt, P, Tp, Tt = 5, 12, 4, 16
    collated = {
        "mode": ["speaker", "prefix"],
        "align_split": [(P_prompt + 1, Tp), None],
        "phonemes": torch.randint(2, 20, (2, P), generator=g),
        "phoneme_mask": torch.ones(2, P, dtype=torch.bool),
        "prompt_latents": torch.randn(2, Tp, 8, generator=g),
        "prompt_mask": torch.ones(2, Tp, dtype=torch.bool),
        "target_latents": torch.randn(2, Tt, 8, generator=g),
        "target_mask": torch.ones(2, Tt, dtype=torch.bool),
    }
    flags, spans = ctc.blind_spans(collated, 1.0, torch.Generator().manual_seed(0))
    assert flags == [True, False] and spans == [(P_prompt + 1, Tp), None]  # a prefix row's split is unknown
    kw = dict(p_uncond=0.0, latent_noise_scale=0.0)
    b = training_batch(lm, collated, blind=flags, generator=torch.Generator().manual_seed(1), **kw)
    lat = b.modality >= 0
    prompt = lat & (lat.cumsum(1) <= Tp)
    target = lat & ~prompt
    same = (b.inputs == b.latents).all(-1)  # [B, N]
    assert same[prompt].all() and same[1].all()  # prompts and the other row are read as they are
    assert not same[0][target[0]].any()  # the blind row's target audio is replaced
    corr = torch.corrcoef(torch.stack([b.inputs[0][target[0]].flatten(), b.latents[0][target[0]].flatten()]))
    assert abs(float(corr[0, 1])) < 0.2  # ... by noise that carries nothing of it
    loss, _ = ctc.phoneme_ctc_loss(lm(b), b, lm, spans)
    assert loss.item() > 0
    none, _ = ctc.phoneme_ctc_loss(lm(b), b, lm, [None, None])
    assert none.item() == 0.0
    with pytest.raises(ValueError, match="one flag per row"):
        training_batch(lm, collated, blind=[True], **kw)


def test_bad_ctc_settings_are_refused(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run", dim=64)
    for over, msg in (
        (["ctc_weight=-1"], "ctc_weight >= 0"),
        (["ctc_weight=0.1", "ctc_blind=1.5"], "ctc_blind in"),
        (["ctc_blind=0.3"], "needs ctc_weight"),
    ):
        with pytest.raises(ValueError, match=msg):
            load_config(TrainConfig, recipe, over)


def _per_row_reference(hidden, batch, lm, spans=None):
    """The CTC loss written row by row, as it first was (the batched version must match it)."""
    import torch.nn.functional as F

    from tts.align import positions

    logps, targets, in_lens, tgt_lens = [], [], [], []
    for b in range(batch.tokens.shape[0]):
        if spans is not None and spans[b] is None:
            continue
        text, frames = positions(batch, lm, b)
        if spans is not None:
            text, frames = text[spans[b][0] :], frames[spans[b][1] :]
        if text.numel() == 0 or frames.numel() == 0:
            continue
        logps.append(ctc.readout(lm, hidden[b, frames - 1]))
        targets.append(batch.tokens[b, text] - lm.layout.offset + 1)
        in_lens.append(frames.numel())
        tgt_lens.append(text.numel())
    T = max(in_lens)
    lp = torch.stack([F.pad(x, (0, 0, 0, T - x.shape[0])) for x in logps], dim=1)
    loss = F.ctc_loss(
        lp, torch.cat(targets), torch.tensor(in_lens), torch.tensor(tgt_lens), zero_infinity=True
    )
    per = word_errors(ctc._ids(targets[0].tolist()), ctc._ids(ctc.greedy_decode(logps[0]))).wer
    return loss, per


def test_batched_loss_matches_the_per_row_loss():
    torch.manual_seed(0)
    lm = LatentLM(tiny_tts_config(30, latent_dim=8, dim=32).model)
    # ragged rows (padding), one without a prompt
    batch, kept = ragged_training_batch(lm, [7, 12, 5, 9, 6], [4, 6, 0, 5, 3], [10, 20, 8, 14, 2], 0.3, 3)
    assert any(kept) and not all(kept)  # some rows lost their phonemes to condition dropout
    hidden = lm(batch)
    for spans in (None, [(3, 2), None, (0, 0), (4, 5), (2, 1)]):  # whole rows; target spans, one row skipped
        got, got_per = ctc.phoneme_ctc_loss(hidden, batch, lm, spans)
        want, want_per = _per_row_reference(hidden, batch, lm, spans)
        torch.testing.assert_close(got, want)
        assert float(got_per) == pytest.approx(want_per)
        g_got = torch.autograd.grad(got, hidden, retain_graph=True)[0]
        g_want = torch.autograd.grad(want, hidden, retain_graph=True)[0]
        torch.testing.assert_close(g_got, g_want)
