"""Growing a trained release deeper (tts.grow): the grown model says the same thing in the same voice as the
release it came from until it trains, its new blocks are the only new parameters, and bad depths are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tts.grow import grow_depth, insertion_plan, main

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "checkpoints" / "tts_demo"
PROMPT = "dev/pyroomacoustics__cmu_arctic_us_aew_a0003.wav"  # CMU ARCTIC aew, 3.5 s

pytestmark = pytest.mark.skipif(
    not (RELEASE / "model.safetensors").is_file(), reason="shipped release missing"
)


def test_insertion_plan_spreads_new_blocks_and_refuses_bad_depths():
    assert insertion_plan(6, 9) == [(0, False), (1, False), (1, True), (2, False), (3, False), (3, True),
                                    (4, False), (5, False), (5, True)]  # fmt: skip
    assert [src for src, new in insertion_plan(6, 12) if new] == [0, 1, 2, 3, 4, 5]
    assert [src for src, new in insertion_plan(6, 7) if new] == [5]
    for bad in (6, 5, 13):
        with pytest.raises(ValueError, match="grows to between 7 and 12"):
            insertion_plan(6, bad)


def test_grown_release_speaks_as_the_release_did(real_speech_dir, real_manifest, tmp_path, capsys):
    from tts.model import TTS

    [row] = [r for r in real_manifest("dev") if r["file"] == Path(PROMPT).name]
    kw = dict(prompt_text=row["transcript"], seed=0)
    before = TTS.from_pretrained(RELEASE)
    want = before.synthesize("Hello there.", real_speech_dir / PROMPT, **kw)

    n = before.cfg.model.trunk.n_layers  # the shipped release's depth (9 since session 19), grown by 3
    main([str(RELEASE), "--layers", str(n + 3), "--out", str(tmp_path / "grown")])
    assert "grew" in capsys.readouterr().out
    grown = TTS.from_pretrained(tmp_path / "grown")
    assert grown.cfg.model.trunk.n_layers == n + 3 and len(grown.lm.trunk.layers) == n + 3
    block = sum(p.numel() for p in before.lm.trunk.layers[0].parameters())
    n_before, n_grown = (sum(p.numel() for p in t.lm.parameters()) for t in (before, grown))
    assert n_grown - n_before == 3 * block
    assert grown.one_step is not None and grown.duration is not None  # the rest of the release came along
    assert (grown.bridge is None) == (before.bridge is None)  # the same function: its step bridge still fits
    got = grown.synthesize("Hello there.", real_speech_dir / PROMPT, **kw)
    assert len(got.audio) == len(want.audio)
    np.testing.assert_allclose(got.audio, want.audio, atol=1e-4)

    # a new block is a copy of the one below with its outputs zeroed; the old blocks are unchanged
    plan = insertion_plan(n, n + 3)
    for i, (src, is_new) in enumerate(plan):
        layer, old = grown.lm.trunk.layers[i], before.lm.trunk.layers[src]
        if is_new:
            assert not layer.attn.out.weight.any() and not layer.mlp.down.weight.any()
            assert torch.equal(layer.attn.qkv.weight, old.attn.qkv.weight)
        else:
            assert torch.equal(layer.mlp.down.weight, old.mlp.down.weight)
    assert sum(is_new for _, is_new in plan) == 3

    with pytest.raises(SystemExit) as e:  # the folder is not overwritten
        main([str(RELEASE), "--layers", str(n + 3), "--out", str(tmp_path / "grown")])
    assert e.value.code == 2
    with pytest.raises(ValueError, match="grows to between"):
        grow_depth(before.lm, 20)
