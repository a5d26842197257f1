"""The interleaved (ELLA-V) layout: scripts, training sequences, script-forced decoding, synthesis, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentlm.config import load_config
from tests.helpers import make_tiny_corpus, make_tiny_tts, tiny_tts_config, write_tiny_recipe
from tts.config import LMTimingConfig, TTSConfig
from tts.data import LatentStore, PromptTargetDataset, collate
from tts.frontend import Frontend
from tts.layout import MODALITY, generation_prefix, interleaved_script, training_batch
from tts.manifests import read_jsonl
from tts.model import TTS, TTSInputError
from tts.script import item_durations, target_script
from tts.script_constraint import ScriptConstraint
from tts.store_files import phoneme_cache
from tts.train import TrainConfig, Trainer


def test_target_script_keeps_what_is_left_to_say():
    ids, dur = [5, 6, 7, 8, 9], [3, 0, 2, 0, 4]  # frame ends 3, 3, 5, 5, 9
    s_ids, s_d = target_script(ids, dur, 0)
    assert s_ids.tolist() == ids and s_d.tolist() == dur
    s_ids, s_d = target_script(ids, dur, 2)  # mid symbol 5: one frame of it is left
    assert s_ids.tolist() == ids and s_d.tolist() == [1, 0, 2, 0, 4]
    s_ids, s_d = target_script(ids, dur, 3)  # at the end of symbol 5: the empty symbol 6 comes next
    assert s_ids.tolist() == [6, 7, 8, 9] and s_d.tolist() == [0, 2, 0, 4]
    s_ids, s_d = target_script(ids, dur, 6)
    assert s_ids.tolist() == [9] and s_d.tolist() == [3]
    with pytest.raises(ValueError, match="outside"):
        target_script(ids, dur, 10)


def test_item_durations_regroup_frames_and_keep_the_total():
    dur = [3, 0, 2, 1, 4]  # 10 frames -> 5 items of 2
    items = item_durations(dur, 2)
    assert sum(items) == 5 and all(d >= 0 for d in items) and len(items) == 5
    assert item_durations([1, 1, 1], 2) == [0, 1, 0]  # 3 frames -> 1 item; the middle symbol holds it
    assert item_durations(dur, 1) == dur


@pytest.fixture(scope="module")
def tts():
    torch.set_num_threads(1)
    return make_tiny_tts(seed=0, interleave=True)


def test_training_sequence_puts_each_symbol_before_its_frames(tts):
    lm, lay = tts.lm, tts.lm.layout
    D = lm.latent_dims[MODALITY]
    script = (torch.tensor([10, 11, 12]), torch.tensor([2, 0, 3]))
    collated = {
        "phonemes": torch.tensor([[3, 4, 1, 10, 11, 12]]),
        "phoneme_mask": torch.ones(1, 6, dtype=torch.bool),
        "prompt_latents": torch.randn(1, 4, D),
        "prompt_mask": torch.ones(1, 4, dtype=torch.bool),
        "target_latents": torch.randn(1, 5, D),
        "target_mask": torch.ones(1, 5, dtype=torch.bool),
        "script": [script],
    }
    b = training_batch(lm, collated, p_uncond=0.0, latent_noise_scale=0.0)
    names = [lay.name(int(t)) for t in b.tokens[0]]
    after = names[names.index("<bo_audio>") + 1 :]
    L = "<lat>"
    assert after == [L] * 4 + ["10", L, L, "11", "12", L, L, L, "<eo_audio>"]
    w = b.weight[0, names.index("<bo_audio>") + 1 :].tolist()
    assert w == [0.0] * 4 + [1.0] * 9  # the prompt is context; symbols, frames and the end are trained
    # the target latents keep their order around the tokens
    lat = b.latents[0][b.modality[0] == 0][4:]
    np.testing.assert_allclose(
        lat.numpy(), lm.normalize(MODALITY, collated["target_latents"][0]).numpy(), atol=1e-6
    )
    dropped = training_batch(lm, collated, p_uncond=1.0, latent_noise_scale=0.0)
    names = [lay.name(int(t)) for t in dropped.tokens[0]]
    assert names.count("<null>") == 4 and "10" not in names  # condition and interleaved symbols dropped
    collated["script"] = [(script[0], torch.tensor([2, 0, 2]))]
    with pytest.raises(ValueError, match="covers 4 items"):
        training_batch(lm, collated, p_uncond=0.0)


def test_voice_dropout_leaves_the_prompt_out_of_dropped_rows_only(tts):
    lm, lay = tts.lm, tts.lm.layout
    D = lm.latent_dims[MODALITY]
    script = (torch.tensor([10, 11]), torch.tensor([2, 3]))
    collated = {
        "phonemes": torch.tensor([[3, 4, 1, 10, 11]] * 2),
        "phoneme_mask": torch.ones(2, 5, dtype=torch.bool),
        "prompt_latents": torch.randn(2, 4, D),
        "prompt_mask": torch.ones(2, 4, dtype=torch.bool),
        "target_latents": torch.randn(2, 5, D),
        "target_mask": torch.ones(2, 5, dtype=torch.bool),
        "script": [script, script],
    }

    def after_bo_audio(b, row):
        names = [lay.name(int(t)) for t in b.tokens[row] if int(t) != lay.pad]
        return names[names.index("<bo_audio>") + 1 :]

    kept = training_batch(lm, collated, p_uncond=0.0, p_drop_prompt=1.0, latent_noise_scale=0.0)
    assert after_bo_audio(kept, 0)[:5] == ["<lat>"] * 4 + ["10"]  # not dropped: the voice stays
    # dropped with the voice: the target follows <bo_audio> at once, its frames unchanged; input noise still
    # reaches every target frame (none is mistaken for a prompt frame)
    gone = training_batch(
        lm, collated, p_uncond=0.999, p_drop_prompt=1.0, latent_noise_scale=0.0, input_noise=1.0
    )
    for row in range(2):
        assert after_bo_audio(gone, row) == [
            "<null>",
            "<lat>",
            "<lat>",
            "<null>",
            "<lat>",
            "<lat>",
            "<lat>",
            "<eo_audio>",
        ]
        lat = gone.modality[row] == 0
        np.testing.assert_allclose(
            gone.latents[row][lat].numpy(),
            lm.normalize(MODALITY, collated["target_latents"][row]).numpy(),
            atol=1e-6,
        )
        assert not torch.allclose(gone.inputs[row][lat], gone.latents[row][lat])
    # the same seed without voice dropout keeps the prompt in every row
    voiced = training_batch(lm, collated, p_uncond=0.999, latent_noise_scale=0.0)
    assert all(after_bo_audio(voiced, r)[:4] == ["<lat>"] * 4 for r in range(2))
    # generation: the guidance rows lose the prompt only when asked
    prompts = [torch.randn(3, D)]
    for drop_prompt, n in ((False, 3), (True, 0)):
        cond, uncond = generation_prefix(lm, [[3, 4, 1, 10]], prompts, 3.0, [[10]], drop_prompt)
        assert int((cond.modality[0] == 0).sum()) == 3 and int((uncond.modality[0] == 0).sum()) == n
    with pytest.raises(ValueError, match="p_drop_prompt"):
        TrainConfig(p_drop_prompt=1.5)


def _decode(tts, script, bias_to: int, **kw):
    lm, lay = tts.lm, tts.lm.layout
    D = lm.latent_dims[MODALITY]
    prompts = [torch.randn(3, D)]
    prefix, uncond = generation_prefix(lm, [[3, 4, 1] + script], prompts, kw.get("cfg", 1.0), [script])
    saved = lm.lm_head.weight.detach().clone()
    with torch.no_grad():  # the untrained head is made to want one token above all
        lm.lm_head.weight.zero_()
        if bias_to is not None:
            lm.lm_head.weight[bias_to] = 50.0 * torch.sign(lm(prefix)[0, -1])
    runs = {k: kw.pop(k) for k in ("max_run", "min_run", "bias") if k in kw}
    constraint = ScriptConstraint(interleaved_script(lm, [script]), lay.size, uncond_token=lay.null, **runs)
    try:
        [out] = lm.generate(
            prefix,
            uncond=uncond,
            constraint=constraint,
            steps=2,
            generator=torch.Generator().manual_seed(0),
            **kw,
        )
    finally:
        with torch.no_grad():
            lm.lm_head.weight.copy_(saved)
    return [lay.name(x) if isinstance(x, int) else "<lat>" for x in out]


def test_decoding_says_every_symbol_in_order_before_it_may_stop(tts):
    lay = tts.lm.layout
    # a model that wants to stop at once still has to emit the rest of the script first
    out = _decode(tts, [10, 11, 12], lay.end[MODALITY], max_new=20, cfg=2.0)
    assert [x for x in out if x != "<lat>"] == ["11", "12", "<eo_audio>"]
    # a model that never wants to advance is stopped by the cap, script or not
    out = _decode(tts, [10, 11, 12], lay.lat, max_new=20, max_latents=3 + 4)
    assert out == ["<lat>"] * 4 + ["<eo_audio>"]  # 3 prompt latents + 4 new = the cap
    # ... or, with a run limit, made to move on to the next symbol after that many latents on one
    out = _decode(tts, [10, 11, 12], lay.lat, max_new=9, max_run=2)
    assert out == ["<lat>", "<lat>", "11", "<lat>", "<lat>", "12", "<lat>", "<lat>", "<eo_audio>"]
    out = _decode(tts, [10, 11, 12], lay.lat, max_new=12, max_run=[[1, 3, 2]])  # per symbol
    assert out == ["<lat>", "11", "<lat>", "<lat>", "<lat>", "12", "<lat>", "<lat>", "<eo_audio>"]
    # an undecided head (all logits equal) stays on a symbol under greedy decoding; a bias moves it on
    assert _decode(tts, [10, 11, 12], None, max_new=4, token_temperature=0.0) == ["<lat>"] * 4
    out = _decode(tts, [10, 11, 12], None, max_new=4, token_temperature=0.0, bias=0.5)
    assert out == ["11", "12", "<lat>", "<lat>"]


def test_decoding_forces_given_durations(tts):
    lay = tts.lm.layout
    want = ["<lat>", "<lat>", "11", "12", "<lat>", "<lat>", "<lat>", "<eo_audio>"]
    for head_wants in (lay.end[MODALITY], lay.lat, None):  # whatever the LM head prefers
        out = _decode(tts, [10, 11, 12], head_wants, max_new=12, min_run=[[2, 0, 3]], max_run=[[2, 0, 3]])
        assert out == want
    # a minimum alone delays the next symbol; the cap still ends the span
    out = _decode(tts, [10, 11, 12], lay.end[MODALITY], max_new=12, min_run=2)
    assert out == ["<lat>", "<lat>", "11", "<lat>", "<lat>", "12", "<lat>", "<lat>", "<eo_audio>"]
    out = _decode(tts, [10, 11, 12], lay.lat, max_new=12, min_run=5, max_latents=3 + 4)
    assert out == ["<lat>"] * 4 + ["<eo_audio>"]
    with pytest.raises(ValueError, match="must not exceed"):
        _decode(tts, [10, 11, 12], None, max_new=4, min_run=[[3, 0, 3]], max_run=[[2, 0, 3]])


@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_forced_tokens_ride_with_the_latents(tts, monkeypatch, cfg):
    """Given durations force every script token: fed in the same trunk call as the latents around it, the rows
    (of different rhythms, in one batch, with guidance rows reading <null>) decode the same items and latents
    as with one call per item, in fewer calls."""
    import latentlm.decoding as decoding

    lm, lay = tts.lm, tts.lm.layout
    D = lm.latent_dims[MODALITY]
    g = torch.Generator().manual_seed(3)
    scripts = [[10, 11, 12], [10, 13, 11, 12]]
    prompts = [torch.randn(3, D, generator=g), torch.randn(5, D, generator=g)]
    runs = [[2, 0, 3], [1, 2, 0, 2]]

    def decode(fuse: bool, rows: list[int], plan: bool = False):
        monkeypatch.setattr(decoding, "FUSE_FORCED_TOKENS", fuse)
        monkeypatch.setattr(decoding, "PLAN_FORCED_SCRIPTS", plan)
        sc = [scripts[r] for r in rows]
        prefix, uncond = generation_prefix(
            lm, [[3, 4, 1] + s for s in sc], [prompts[r] for r in rows], cfg, sc
        )
        calls, real = [], lm.forward
        monkeypatch.setattr(lm, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
        rr = [runs[r] for r in rows]
        constraint = ScriptConstraint(
            interleaved_script(lm, sc), lay.size, uncond_token=lay.null, max_run=rr, min_run=rr
        )
        if plan:  # followed from the plan: the grammar is never asked
            constraint.restrict = None
        out = lm.generate(
            prefix,
            uncond=uncond,
            cfg=cfg,
            constraint=constraint,
            min_latents=[len(prompts[r]) for r in rows],
            steps=2,
            max_new=16,
            token_temperature=0.0,
            generator=[torch.Generator().manual_seed(r) for r in rows],
        )
        monkeypatch.setattr(lm, "forward", real)
        return out, len(calls)

    def same(a_rows, b_rows) -> None:
        for a_row, b_row in zip(a_rows, b_rows, strict=True):
            assert len(a_row) == len(b_row)
            for a, b in zip(a_row, b_row):
                if isinstance(b, int):
                    assert a == b
                else:
                    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    (fused, _), (plain, _) = decode(True, [0, 1]), decode(False, [0, 1])
    names = [[lay.name(x) if isinstance(x, int) else "<lat>" for x in row] for row in plain]
    L = "<lat>"
    assert names == [
        [L, L, "11", "12", L, L, L, "<eo_audio>"],
        [L, "13", L, L, "11", "12", L, L, "<eo_audio>"],
    ]
    same(fused, plain)  # rows out of step: the fused tokens wait in their rows, nothing changes
    # given durations are a plan: followed without the grammar, the same items, latents and draws
    (planned, _), (fused, _) = decode(True, [0, 1], plan=True), decode(True, [0, 1])
    for a_row, b_row in zip(planned, fused, strict=True):
        assert len(a_row) == len(b_row)
        for a, b in zip(a_row, b_row):
            assert a == b if isinstance(b, int) else torch.equal(a, b)
    for r in (0, 1):  # one row: one call per latent (the forced tokens ride along)
        (fused, n_fused), (plain, n_plain) = decode(True, [r]), decode(False, [r])
        same(fused, plain)
        planned, n_planned = decode(True, [r], plan=True)
        same(planned, plain)
        assert n_planned == n_fused
        n_latents = sum(not isinstance(x, int) for x in plain[0])
        # one call per item: the prefill and every item but the last; fused: the prefill (the first latent reads
        # it) and one call before each later latent
        assert n_plain == len(plain[0]) and n_fused == n_latents, (n_fused, n_plain, n_latents)


def test_synthesis_with_the_interleaved_layout(tts, real_speech_dir):
    wav = real_speech_dir / "dev" / "coqui__LJ001-0001.wav"
    kw = dict(prompt_text="Printing, in the only sense", max_seconds=0.8, seed=1, steps=2)
    res = tts.synthesize("Hello there.", wav, **kw)
    assert 0 < res.info["frames"][0] <= 0.8 * 25 + 1 and len(res.audio) == res.info["frames"][0] * tts.vae.hop
    chunks = list(tts.stream("Hello there.", wav, **kw))
    np.testing.assert_allclose(np.concatenate(chunks), res.audio, atol=1e-5)
    [batched] = tts.synthesize_batch([dict(text="Hello there.", prompt_audio=wav, **kw)])
    np.testing.assert_allclose(batched.audio, res.audio, atol=1e-4)
    with pytest.raises(TTSInputError, match="continuation"):
        tts.synthesize("Printing, in the only sense", wav, continuation=True)


def test_voice_guidance_decodes_its_guidance_rows_without_the_prompt(tts, real_speech_dir, monkeypatch):
    wav = real_speech_dir / "dev" / "coqui__LJ001-0001.wav"
    kw = dict(
        prompt_text="Printing, in the only sense", max_seconds=0.6, seed=1, steps=2, cfg=3.0, head="reference"
    )
    seen = []
    real_generate = tts.lm.generate_stream

    def spy(prefix, *a, uncond=None, **k):
        seen.append((int((prefix.modality == 0).sum()), int((uncond.modality == 0).sum())))
        return real_generate(prefix, *a, uncond=uncond, **k)

    monkeypatch.setattr(tts.lm, "generate_stream", spy)
    text = tts.synthesize("Hello there.", wav, **kw)
    monkeypatch.setattr(tts.cfg, "guidance", "text+voice")
    voice = tts.synthesize("Hello there.", wav, **kw)
    (p_text, u_text), (p_voice, u_voice) = seen
    assert p_text == u_text == p_voice > 0 and u_voice == 0  # only the voice-guided rows drop the prompt
    assert np.isfinite(voice.audio).all() and len(voice.audio) == len(text.audio)
    with pytest.raises(ValueError, match="guidance"):
        TTSConfig(guidance="voice")


def test_run_limits_tell_phones_word_gaps_and_pauses_apart(tts):
    v = tts.frontend.vocab
    ids = v.encode("hi, yo du.")  # h i , _ y o _ d u .
    lim = tts._run_limits(ids)
    phone, gap, pause = 4, 2, 15  # 0.16 s, 0.08 s, 0.6 s at 25 Hz
    assert lim == [phone, phone, pause, pause, phone, phone, gap, phone, phone, pause]
    for key in ("max_phone_seconds", "max_gap_seconds", "max_pause_seconds"):
        with pytest.raises(ValueError, match="run limits"):
            tiny_tts_config(len(v), lm_timing=LMTimingConfig(**{key: 0.0}))


@pytest.fixture(scope="module")
def corpus(real_speech_dir, tmp_path_factory):
    c = make_tiny_corpus(real_speech_dir, tmp_path_factory.mktemp("tts_interleave_corpus"), n=4)
    c["phonemes"] = phoneme_cache(read_jsonl(c["manifest"]), c["latents"], Frontend("en-us"), 0)
    return c


def _even_durations(corpus, phonemes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Frames spread evenly over the symbols (plumbing only: tts.durations measures real ones)."""
    store = LatentStore(corpus["latents"])
    out = {}
    for uid, ids in phonemes.items():
        T, S = store.frames(uid), len(ids)
        ends = [round((i + 1) * T / S) for i in range(S)]
        out[uid] = [e - s for s, e in zip([0] + ends[:-1], ends)]
    return out


def test_training_with_the_interleaved_layout_runs_and_exports(corpus, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    cfg = load_config(
        TrainConfig, recipe, ["tts.interleave=true", "max_steps=2", "align.weight=0.5", "align.layers=[1]"]
    )
    tr = Trainer(cfg, resume=False)
    rows = read_jsonl(corpus["manifest"])
    with pytest.raises(ValueError, match="tts.durations"):
        tr.setup_data(rows)
    phonemes = corpus["phonemes"]
    (corpus["latents"] / "durations.json").write_text(json.dumps(_even_durations(corpus, phonemes)))
    tr.setup_data(rows)
    items = [tr.ds[i] for i in range(len(tr.ds))]
    for it in items:
        ids, n = it["script"]
        assert int(n.sum()) == it["target_latents"].shape[0]
    assert "script" in collate(items)
    logs = [tr.train_step() for _ in range(2)]
    assert all(np.isfinite(x["diff_audio"]) and np.isfinite(x["lm"]) for x in logs)
    rel = TTS.from_pretrained(tr.ema_tts().save_pretrained(tmp_path / "release"))
    assert rel.cfg.interleave


def test_durations_that_do_not_fit_are_refused(corpus):
    store = LatentStore(corpus["latents"])
    phonemes = corpus["phonemes"]
    rows = read_jsonl(corpus["manifest"])
    bad = _even_durations(corpus, phonemes)
    uid = next(iter(bad))
    bad[uid] = bad[uid][:-1]
    with pytest.raises(ValueError, match="durations for"):
        PromptTargetDataset(rows, store, phonemes, durations=bad)
