"""The step bridge (latentlm/bridge.py): which latents it takes, the pairs it learns from, what a decode with it
computes (every bridged latent is the head's sample from the bridge's state, every other from the trunk's, with
half the trunk calls), the same rows alone or in a batch, through the ONNX runtime, kept by save/load, and its
training CLI. Tiny untrained models, real prompt audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentlm.bridge import (
    DIRNAME,
    BridgeConfig,
    StepBridge,
    bridge_pairs,
    bridge_plan,
    load_bridge,
    save_bridge,
)
from latentlm.bridge_fit import SequenceRecorder, fit_bridge, pairs_of
from latentlm.one_step import OneStepConfig, student_from
from tests.helpers import make_tiny_tts
from tts.layout import MODALITY
from tts.model import TTS, TTSInputError
from tts.options import SynthesisOptions

L, E = 99, 50  # a latent's and an empty slot's ids in the plan tests


def test_bridge_plan_alternates_and_respects_the_token_slots():
    #          0  1  2  3  4  5  6  7  8  9 10 11 12
    plan = [7, L, L, 8, L, L, 9, 10, 11, L, L, L, 3]
    bridged, slots = bridge_plan(plan, L, E, max_tokens=2)
    # latent 1 from the trunk, 2 bridged (no token between), 4 from the trunk, 5 bridged after it; 9 from the
    # trunk (after 5 was bridged), 10 bridged, 11 from the trunk
    assert [t for t, b in enumerate(bridged) if b] == [2, 5, 10]
    assert slots[2] == [E, E] and slots[5] == [E, E] and slots[10] == [E, E]
    bridged, slots = bridge_plan([L, 4, L, 5, 6, 7, L, L], L, E, max_tokens=2)
    # 0 trunk; 2 bridged reading token 4; 6 has three tokens since 2... but 2 was bridged: 6 from the trunk; 7 bridged
    assert [t for t, b in enumerate(bridged) if b] == [2, 7] and slots[2] == [4, E]
    bridged, _ = bridge_plan([L, 4, 5, 6, L, L], L, E, max_tokens=2)
    assert bridged == [False] * 5 + [True]  # three tokens between 0 and 4: 4 runs the trunk, 5 is bridged
    bridged, _ = bridge_plan([L, L, L, L, 4, L, L, L], L, E, max_tokens=2, chain=2)
    assert bridged == [False, True, True, False, False, True, True, False]  # two of every three


def test_bridge_pairs_read_the_state_before_each_latent():
    tokens = torch.tensor([1, 2, L, 5, L, L, 6, 7, 8, L])
    is_lat = tokens == L
    latents = torch.arange(10).float()[:, None].repeat(1, 3)  # [N, D]: item i's latent is i
    hidden = torch.arange(10).float()[:, None].repeat(1, 4) + 100  # [N, C]: item i's state is 100 + i
    h, z, slots, target = bridge_pairs(tokens, latents, is_lat, hidden, L, E, max_tokens=2)
    # pairs (2 -> 4 via token 5), (4 -> 5); (5 -> 9) has three tokens between: left out
    assert h[:, 0].tolist() == [101, 103] and z[:, 0].tolist() == [2, 4] and target[:, 0].tolist() == [103, 104]
    assert slots.tolist() == [[5, E], [E, E]]


def test_a_new_bridge_is_the_no_op_and_shapes_are_checked(tmp_path):
    cfg = BridgeConfig(dim=16, latent_dim=4, vocab=10, max_tokens=2, width=8)
    br = StepBridge(cfg).eval()
    h, z = torch.randn(3, 16), torch.randn(3, 4)
    tok = torch.tensor([[1, 10], [10, 10], [3, 4]])
    torch.testing.assert_close(br(h, z, tok), h)
    with pytest.raises(ValueError, match="expected h"):
        br(h, z, tok[:, :1])
    with pytest.raises(ValueError, match="max_tokens"):
        BridgeConfig(max_tokens=0)
    torch.nn.init.normal_(br.out.weight)
    save_bridge(tmp_path / DIRNAME, br)
    back = load_bridge(tmp_path / DIRNAME)
    assert back.cfg == cfg
    torch.testing.assert_close(back(h, z, tok), br(h, z, tok))


def _with_bridge(seed: int = 0) -> TTS:
    """A tiny predictor-timed release with a one-step head (its default) and a random (not no-op) bridge."""
    tts = make_tiny_tts(seed=seed, interleave=True, timing="predictor", cfg_scale=2.0)
    head = student_from(tts.lm.heads[MODALITY])
    torch.manual_seed(seed + 2)
    with torch.no_grad():  # untrained heads start with zeroed output layers: make its sample depend on the state
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    oc = OneStepConfig(head=head.cfg, modality=MODALITY, cfg_scale=2.0, max_temperature=1.0, default=True)
    cfg = BridgeConfig(
        dim=tts.lm.cfg.trunk.dim, latent_dim=tts.lm.latent_dims[MODALITY], vocab=tts.lm.layout.size, width=16
    )
    torch.manual_seed(seed + 1)
    bridge = StepBridge(cfg)
    torch.nn.init.normal_(bridge.out.weight, std=0.05)
    return TTS(tts.cfg, tts.lm, tts.vae, tts.frontend, tts.duration, tts.aligner, (head, oc), bridge)


@pytest.fixture(scope="module")
def prompt(real_speech_dir):
    return real_speech_dir / "dev" / "coqui__LJ001-0001.wav", "Printing, in the only sense with which we are"


def _trunk_calls(tts: TTS) -> list[int]:
    """Items fed per trunk call (after the prefill) from now on."""
    calls: list[int] = []
    tts.lm.register_forward_hook(lambda m, a, kw, out: calls.append(a[0].tokens.shape[1]), with_kwargs=True)
    return calls


@pytest.mark.parametrize("chain", [1, 2])
def test_a_bridged_decode_samples_each_latent_from_the_state_it_names(prompt, chain):
    """Temperature 0 makes the one-step head a function of its condition: each latent of a bridged decode must be
    the head's sample from the trunk's recorded state before it, or, where ``bridge_plan`` marks it, from the
    bridge's prediction out of the previous latent's state (the trunk's, or with ``chain`` 2 the bridge's own),
    that latent and the tokens between."""
    tts = _with_bridge()
    tts.bridge.cfg.chain = chain
    head, bridge, lay = tts.one_step[0], tts.bridge, tts.lm.layout
    recorder = SequenceRecorder(tts.lm)
    kw = dict(prompt_text=prompt[1], temperature=0.0, seed=1)
    tts.synthesize("A short test sentence.", prompt[0], **kw)
    [row] = recorder.close()
    tokens, latents, hidden = row["tokens"], row["latents"], row["hidden"]
    plan_start = row["prefill"]
    plan = tokens[plan_start:].tolist()
    marks, slots = bridge_plan(plan, lay.lat, bridge.cfg.vocab, bridge.cfg.max_tokens, chain)
    runs = "".join("b" if m else "t" for tok, m in zip(plan, marks) if tok == lay.lat)
    assert ("bb" in runs) == (chain == 2) and "bbb" not in runs and runs.startswith("t")
    with torch.no_grad():  # and the test can fail: the head tells the bridge's state from the trunk's
        a = head.sample(hidden[-2:-1], steps=1, temperature=0.0)
        b = head.sample(bridge(hidden[-3:-2], latents[-2:-1], torch.tensor([slots[-1] or [bridge.cfg.vocab] * 4])),
                        steps=1, temperature=0.0)
    assert (a - b).abs().max() > 1e-3
    src_cond = src_z = None  # the previous latent's state and value
    for i, (tok, mark) in enumerate(zip(plan, marks)):
        if tok != lay.lat:
            continue
        p = plan_start + i
        with torch.no_grad():
            if mark:
                cond = bridge(src_cond, src_z, torch.tensor([slots[i]]))
            else:
                cond = hidden[p - 1][None]
            want = head.sample(cond, steps=1, temperature=0.0)
        torch.testing.assert_close(latents[p][None, : want.shape[1]], want, atol=1e-4, rtol=1e-4)
        src_cond, src_z = cond, latents[p][None]


def test_bridge_halves_trunk_calls_and_rows_decode_the_same_alone_or_batched(prompt):
    tts = _with_bridge()
    kw = dict(prompt_text=prompt[1], seed=4)
    calls = _trunk_calls(tts)
    alone = tts.synthesize("The boat sailed across the water.", prompt[0], **kw)
    with_bridge = len(calls) - 1
    calls.clear()
    plain = tts.synthesize("The boat sailed across the water.", prompt[0], bridge=False, **kw)
    without = len(calls) - 1
    frames = sum(alone.info["frames"])
    assert alone.info["frames"] == plain.info["frames"] and frames > 10
    assert without >= frames - 1 and with_bridge <= without // 2 + 2, (with_bridge, without, frames)
    assert not np.allclose(alone.audio, plain.audio)  # the bridge's states are not the trunk's
    jobs = [
        dict(text="A different, longer sentence to batch with.", prompt_audio=prompt[0], **kw),
        dict(text="The boat sailed across the water.", prompt_audio=prompt[0], **kw),
    ]
    batched = tts.synthesize_batch(jobs, batch_size=2)
    np.testing.assert_allclose(batched[1].audio, alone.audio, atol=1e-4)
    streamed = np.concatenate(list(tts.stream("The boat sailed across the water.", prompt[0], **kw)))
    edge = int(tts.cfg.edge_seconds * tts.sample_rate)
    np.testing.assert_allclose(streamed, alone.audio[edge:] if edge else alone.audio, atol=1e-4)


def test_bridge_is_kept_by_save_and_load_and_refused_when_it_does_not_fit(tmp_path, prompt):
    tts = _with_bridge()
    out = tts.save_pretrained(tmp_path / "rel")
    back = TTS.from_pretrained(out)
    assert back.bridge is not None and back.bridge.cfg == tts.bridge.cfg
    kw = dict(prompt_text=prompt[1], seed=0, max_seconds=0.6)
    np.testing.assert_allclose(
        back.synthesize("Hi there.", prompt[0], **kw).audio, tts.synthesize("Hi there.", prompt[0], **kw).audio,
        atol=1e-5,
    )
    wrong = StepBridge(BridgeConfig(dim=8, latent_dim=tts.bridge.cfg.latent_dim, vocab=tts.bridge.cfg.vocab))
    with pytest.raises(TTSInputError, match="step bridge does not match"):
        TTS(tts.cfg, tts.lm, tts.vae, tts.frontend, tts.duration, tts.aligner, tts.one_step, wrong)
    with pytest.raises(TTSInputError, match="bridge must be true or false"):
        SynthesisOptions(bridge="maybe")
    assert SynthesisOptions.from_mapping({"bridge": "false"}).bridge is False


def test_onnx_bridge_runtime_equals_the_eager_bridge():
    pytest.importorskip("onnxruntime")
    from latentlm.onnx_step import OnnxBridgeRuntime

    torch.manual_seed(0)
    br = StepBridge(BridgeConfig(dim=32, latent_dim=8, vocab=20, max_tokens=3, width=16)).eval()
    torch.nn.init.normal_(br.out.weight, std=0.1)
    h, z = torch.randn(2, 32), torch.randn(2, 8)
    tok = torch.tensor([[1, 20, 20], [4, 5, 20]])
    with torch.no_grad():
        ref = br(h, z, tok)
        br.runtime = OnnxBridgeRuntime(br)
        torch.testing.assert_close(br(h, z, tok), ref, atol=1e-5, rtol=1e-4)
        br.runtime = OnnxBridgeRuntime(br, int8=True)
        assert (br(h, z, tok) - ref).abs().max() < 0.05


def test_fit_bridge_learns_a_state_it_can_predict():
    """On pairs whose next state is a fixed function of (h, z, tokens), the fitted bridge beats the no-op on
    held-out rows, and the report says so."""
    torch.manual_seed(0)
    head = make_tiny_tts(seed=0).lm.heads[MODALITY]
    with torch.no_grad():  # an untrained head's output layer is zero: make its frames depend on the state
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    c, d = head.cfg.cond_dim, head.cfg.latent_dim
    cfg = BridgeConfig(dim=c, latent_dim=d, vocab=6, max_tokens=1, width=32)
    n = 3000
    h, z = torch.randn(n, c), torch.randn(n, d)
    slots = torch.randint(0, 7, (n, 1))
    w = torch.randn(d, c) * 0.5
    target = h * 0.5 + z @ w + torch.nn.functional.one_hot(slots[:, 0], c).float()
    data = {"h": h, "z": z, "slots": slots, "target": target, "row": torch.arange(n) // 10}
    bridge = StepBridge(cfg)
    g = torch.Generator().manual_seed(0)
    report = fit_bridge(bridge, head, data, train_steps=300, batch=128, lr=3e-3, generator=g, log_every=100)
    assert report.heldout_hidden_rel_mse < 0.3 * report.noop_hidden_rel_mse, report
    assert report.heldout_frame_mse < 0.5 * report.noop_frame_mse, report
    assert report.heldout_pairs > 0 and report.pairs + report.heldout_pairs == n


def test_pairs_are_recorded_from_the_releases_own_decoding(prompt):
    """tts.train_bridge's recording: a job decoded unbridged with the one-step head gives one pair per latent
    that follows a latent (at most max_tokens tokens between), each target the trunk's state before it."""
    from tts.train_bridge import record_pairs

    torch.set_num_threads(1)
    tts = _with_bridge()
    job = [{"text": "A short test.", "prompt_audio": str(prompt[0]), "prompt_text": prompt[1]}]
    data = record_pairs(tts, job, 1, 0, None, max_tokens=4)
    c, d = tts.lm.cfg.trunk.dim, tts.lm.latent_dims[MODALITY]
    n = data["h"].shape[0]
    assert n > 20 and data["h"].shape == (n, c) and data["z"].shape == (n, d) and data["slots"].shape == (n, 4)
    assert not torch.equal(data["h"], data["target"]) and (data["row"] == 0).all()


def test_train_bridge_cli_refuses_bad_input_and_resumes_from_recorded_pairs(tmp_path, capsys):
    from safetensors.torch import save_file

    from tts.train_bridge import main

    tts = _with_bridge()
    tts.bridge = None
    release = tts.save_pretrained(tmp_path / "rel")
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("")
    out = tmp_path / "out"
    base = [str(release), "--manifest", str(manifest), "--out", str(out)]
    for argv, says in [
        (base + ["--max-tokens", "0"], "--max-tokens must be >= 1"),
        (base + ["--max-temperature", "0"], "--max-temperature must be positive"),
        ([str(release), "--manifest", str(tmp_path / "nope.jsonl"), "--out", str(out)], "no manifest"),
    ]:
        assert main(argv) == 2
        assert says in capsys.readouterr().err
    assert not out.exists()
    assert main(base) == 2 and "no cross-sentence jobs" in capsys.readouterr().err
    # an interrupted run's pairs: reused when they are this release's and job set's, never otherwise
    from evaluation.whisper_base import sha256_file
    from tts.distill_head import states_key

    key = states_key(release, [str(manifest)], 400, 3, 4, 0)
    key.update(one_step_head=sha256_file(release / "one_step_head" / "model.safetensors"), max_tokens="4")
    c, d = tts.lm.cfg.trunk.dim, tts.lm.latent_dims[MODALITY]
    g = torch.Generator().manual_seed(0)
    pairs = {"h": torch.randn(200, c, generator=g), "z": torch.randn(200, d, generator=g),
             "slots": torch.full((200, 4), tts.lm.layout.size), "target": torch.randn(200, c, generator=g),
             "row": torch.arange(200) // 10}
    (out / ".bridge").mkdir(parents=True)
    save_file(pairs, str(out / ".bridge" / "pairs.safetensors"), metadata={**key, "max_tokens": "3"})
    assert main(base) == 2 and "from another release or job set" in capsys.readouterr().out
    save_file(pairs, str(out / ".bridge" / "pairs.safetensors"), metadata=key)
    torch.set_num_threads(1)
    assert main(base + ["--train-steps", "4", "--width", "16"]) == 0
    assert "pairs: 200 from" in capsys.readouterr().out
    back = TTS.from_pretrained(out)
    assert back.bridge is not None and back.bridge.cfg.width == 16 and back.one_step is not None


def test_chained_links_the_pairs_that_continue_each_other():
    """Pairs (a -> b) and (b -> c) of a row are linked for rollout training; a pair left out (too many tokens)
    breaks the chain, and rows never link."""
    from latentlm.bridge_fit import chained

    row_a = {"tokens": torch.tensor([1, L, L, 5, L, 6, 7, 8, L, L]), "modality": None}
    row_a["modality"] = torch.where(row_a["tokens"] == L, 0, -1)
    row_a["latents"] = torch.arange(10).float()[:, None].repeat(1, 2)
    row_a["hidden"] = torch.arange(10).float()[:, None].repeat(1, 3) + 100
    row_b = {k: v.clone() for k, v in row_a.items()}
    row_b["hidden"] = row_b["hidden"] + 50
    data = pairs_of([row_a, row_b], 0, L, E, max_tokens=2)
    # row a's pairs: (1 -> 2), (2 -> 4), (8 -> 9); (4 -> 8) has three tokens between: left out
    assert data["z"][:, 0].tolist() == [1, 2, 8, 1, 2, 8]
    assert chained(data).tolist() == [1, -1, -1, 4, -1, -1]


def _spy_row_loop(monkeypatch) -> list[int]:
    """One entry per decode that goes through latentlm/row_loop.py from now on."""
    import latentlm.row_loop as rl

    used: list[int] = []
    real = rl.row_loop

    def spy(*a, **k):
        used.append(1)
        yield from real(*a, **k)

    monkeypatch.setattr(rl, "row_loop", spy)
    return used


@pytest.mark.parametrize("bridge", [True, False])
def test_the_one_row_onnx_loop_gives_the_general_loops_frames(prompt, bridge, monkeypatch):
    """latentlm/row_loop.py: one unguided row with every network in ONNX Runtime decodes through the lean loop,
    to the same frames as the general loop; calls of several rows or with guidance never take it."""
    pytest.importorskip("onnxruntime")
    import latentlm.row_loop as rl

    tts = _with_bridge()
    tts.use_onnx()
    used = _spy_row_loop(monkeypatch)
    kw = dict(prompt_text=prompt[1], seed=5, bridge=bridge)
    fast = tts.synthesize("The boat sailed across the water.", prompt[0], **kw)
    assert used == [1]
    monkeypatch.setattr(rl, "FAST_ROW", False)
    general = tts.synthesize("The boat sailed across the water.", prompt[0], **kw)
    assert used == [1] and fast.info["frames"] == general.info["frames"]
    np.testing.assert_allclose(fast.audio, general.audio, atol=1e-5)
    monkeypatch.setattr(rl, "FAST_ROW", True)
    jobs = [dict(text="The boat sailed across the water.", prompt_audio=prompt[0], **kw)] * 2
    batched = tts.synthesize_batch(jobs, batch_size=2)  # one row at a time on this path (TTS._rows_per_pass)
    assert used == [1, 1, 1]
    np.testing.assert_allclose(batched[1].audio, fast.audio, atol=1e-5)
    head = {MODALITY: tts.one_step[0]}
    assert rl.covers(tts.lm, head, MODALITY, tts.bridge, 1.0, 1, "dpm++2m", 0.0, 1, None)
    assert not rl.covers(tts.lm, head, MODALITY, tts.bridge, 1.0, 1, "dpm++2m", 0.0, 2, None)  # two rows
    assert not rl.covers(tts.lm, head, MODALITY, tts.bridge, 2.0, 1, "dpm++2m", 0.0, 1, None)  # guided


def test_sentences_decode_one_at_a_time_on_the_onnx_one_step_path(prompt, monkeypatch):
    """With one-row steps in ONNX Runtime, ``synthesize`` decodes a text's sentences one at a time (each through
    the one-row loop) instead of as one eager batch, and ``synthesize_batch`` its jobs; elsewhere together."""
    pytest.importorskip("onnxruntime")

    tts = _with_bridge()
    one_step = tts._decoding(SynthesisOptions())
    assert one_step.head == "one_step" and tts._rows_per_pass(one_step) == TTS.SENTENCE_ROWS
    tts.use_onnx()
    assert tts._rows_per_pass(one_step) == 1
    assert tts._rows_per_pass(tts._decoding(SynthesisOptions(head="reference"))) == TTS.SENTENCE_ROWS
    used = _spy_row_loop(monkeypatch)
    res = tts.synthesize("The boat sailed. It came back at noon.", prompt[0], prompt_text=prompt[1], seed=0)
    assert len(res.info["frames"]) == 2 and used == [1, 1]
    jobs = [dict(text="The boat sailed.", prompt_audio=prompt[0], prompt_text=prompt[1], seed=s) for s in (0, 1)]
    tts.synthesize_batch(jobs, batch_size=8)  # and so does a batch of jobs
    assert used == [1] * 4
