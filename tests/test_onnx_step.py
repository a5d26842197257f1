"""The ONNX Runtime decode path (latentlm/onnx_step.py): the exported trunk step and one-step head compute what the
eager modules compute, the runtime covers exactly the calls it can, and the shipped release synthesizes the same
speech through it (real prompt audio, the real release)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentlm.diffusion import DiffusionConfig
from latentlm.distill import one_step
from latentlm.head import DiffusionHead, HeadConfig
from latentlm.onnx_step import WIDE_ITEMS, OnnxHeadRuntime, OnnxTrunkRuntime
from latentlm.transformer import KVCache, Transformer, TransformerConfig
from tts.model import TTS, TTSInputError

pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "checkpoints" / "tts_demo"


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_trunk_runtime_equals_the_eager_trunk_step_by_step(kv_heads):
    torch.manual_seed(0)
    trunk = Transformer(TransformerConfig(dim=64, n_layers=3, n_heads=4, n_kv_heads=kv_heads, max_seq_len=64)).eval()
    rt = OnnxTrunkRuntime(trunk, threads=1)
    eager, onnx = (KVCache.empty(trunk.cfg, 1, 40, "cpu", torch.float32) for _ in range(2))
    with torch.no_grad():
        prompt = torch.randn(1, WIDE_ITEMS + 3, 64)  # a prefill: the runtime's two-thread session
        torch.testing.assert_close(rt(prompt, onnx), trunk(prompt, cache=eager), atol=2e-5, rtol=1e-4)
        # several new items in one call, as lazy feeding does; one call eager on the runtime's cache too (the
        # runtime then reads what the eager call wrote into the buffers it has bound)
        for n, eager_too in ((1, False), (3, False), (1, True), (2, False), (1, False)):
            x = torch.randn(1, n, 64)
            a = trunk(x, cache=eager)
            b = trunk(x, cache=onnx) if eager_too else rt(x, onnx)
            torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-4)
            assert onnx.length == eager.length and torch.equal(onnx.n_valid, eager.n_valid)
            for ke, ko in zip(eager.k + eager.v, onnx.k + onnx.v):
                torch.testing.assert_close(ko[:, :, : eager.length], ke[:, :, : eager.length], atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="overflow"):
        rt(torch.randn(1, 40, 64), onnx)


def test_trunk_runtime_refuses_a_head_dim_its_attention_kernel_does_not_take():
    trunk = Transformer(TransformerConfig(dim=48, n_layers=1, n_heads=2, max_seq_len=32)).eval()  # head dim 24
    with pytest.raises(ValueError, match="multiple of 16.*PyTorch backend"):
        OnnxTrunkRuntime(trunk)


def test_one_runtime_serves_several_caches_in_turn():
    """Decodes running at once (the server's workers) share the runtime, each with its own cache."""
    torch.manual_seed(1)
    trunk = Transformer(TransformerConfig(dim=32, n_layers=2, n_heads=2, max_seq_len=32)).eval()
    rt = OnnxTrunkRuntime(trunk)
    pairs = [tuple(KVCache.empty(trunk.cfg, 1, 16, "cpu", torch.float32) for _ in range(2)) for _ in range(2)]
    with torch.no_grad():
        for step in range(4):
            for eager, onnx in pairs:  # alternate between the two decodes
                x = torch.randn(1, 1 + step % 2, 32)
                torch.testing.assert_close(rt(x, onnx), trunk(x, cache=eager), atol=2e-5, rtol=1e-4)


def test_trunk_runtime_covers_only_one_valid_row_with_a_cache():
    torch.manual_seed(0)
    trunk = Transformer(TransformerConfig(dim=32, n_layers=1, n_heads=2, max_seq_len=32)).eval()
    rt = OnnxTrunkRuntime(trunk, threads=1)
    cache1 = KVCache.empty(trunk.cfg, 1, 16, "cpu", torch.float32)
    cache2 = KVCache.empty(trunk.cfg, 2, 16, "cpu", torch.float32)
    x1, x2 = torch.randn(1, 1, 32), torch.randn(2, 1, 32)
    with torch.no_grad():
        assert rt.covers(x1, None, None, cache1)
        assert not rt.covers(x1, None, None, None)  # no cache: a training or scoring forward
        assert not rt.covers(x2, None, None, cache2)  # several rows (guidance, batches) stay eager
        assert not rt.covers(x1, torch.zeros(1, 1, dtype=torch.bool), None, cache1)  # padding
        assert not rt.covers(x1, None, torch.zeros(1, 1, dtype=torch.long), cache1)  # explicit positions
        trunk(torch.randn(1, 3, 32), valid=torch.tensor([[True, False, True]]), cache=cache1)
        assert not rt.covers(x1, None, None, cache1)  # a padding hole in the cache
    assert rt.covers(x1, None, None, KVCache.empty(trunk.cfg, 1, 16, "cpu", torch.float32)) is False  # grad on


@pytest.fixture(scope="module")
def release():
    if not (RELEASE / "one_step_head").is_dir():
        pytest.skip("checkpoints/tts_demo with its one-step head is not in this checkout")
    return TTS.from_pretrained(RELEASE)


def test_head_runtime_equals_the_one_step_sample(release):
    head = release.one_step[0]
    rt = OnnxHeadRuntime(head, threads=1)
    cond = torch.randn(3, head.cfg.cond_dim)
    g = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    with torch.no_grad():
        ref = head.sample(cond, steps=1, temperature=0.3, generator=g)
        head.runtime = rt
        try:
            g = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]  # the same draws
            fast = head.sample(cond, steps=1, temperature=0.3, generator=g)
            ten = head.sample(cond, steps=2, temperature=0.3)  # not one step: the eager sampler
        finally:
            head.runtime = None
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
    assert ten.shape == ref.shape


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_head_graph_equals_one_step_for_any_head(prediction):
    """The hand-written graph (latentlm/onnx_head.py) on a head with every modulation non-zero (a trained head's
    are; a new head's start at zero), for both output parameterisations."""
    torch.manual_seed(0)
    head = DiffusionHead(HeadConfig(latent_dim=8, cond_dim=24, width=32, depth=2,
                                    diffusion=DiffusionConfig(prediction=prediction))).eval()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        x, cond = torch.randn(5, 8), torch.randn(5, 24)
        ref = one_step(head, x, cond)
    torch.testing.assert_close(OnnxHeadRuntime(head, threads=1)(x, cond), ref, atol=2e-5, rtol=1e-4)


def test_release_synthesizes_the_same_speech_through_onnx_runtime(release, real_speech_dir):
    prompt = real_speech_dir / "dev" / "coqui__LJ001-0001.wav"
    kw = dict(prompt_text="Printing, in the only sense with which we are", seed=3, head="one_step")
    text = "The boat sailed across the calm water."
    ref = release.synthesize(text, prompt, **kw)
    fast = TTS.from_pretrained(RELEASE, backend="onnx")
    assert fast.lm.trunk.runtime is not None and fast.one_step[0].runtime is not None
    out = fast.synthesize(text, prompt, **kw)
    # the same frames to float rounding: the same length (the stop is decided by the same scores) and audio
    # that matches sample by sample (errors compound slowly through the autoregression)
    assert out.info["frames"] == ref.info["frames"]
    err = np.abs(out.audio - ref.audio).max() / np.abs(ref.audio).max()
    assert err < 0.05, err
    # streaming and the reference head (two rows with guidance: eager) also run with the runtime installed
    streamed = np.concatenate(list(fast.stream(text, prompt, **kw)))  # less the leading edge silence
    np.testing.assert_allclose(streamed, out.audio[int(fast.cfg.edge_seconds * fast.sample_rate) :], atol=1e-4)
    slow = fast.synthesize(text, prompt, **{**kw, "head": "reference", "max_seconds": 0.8})
    assert slow.duration > 0


def test_backend_is_checked():
    with pytest.raises(TTSInputError, match="backend must be one of"):
        TTS.from_pretrained(RELEASE, backend="tensorrt")
    with pytest.raises(TTSInputError, match="CPU only"):
        TTS.from_pretrained(RELEASE, backend="onnx", device="meta")


def test_int8_graphs_stay_close_to_float32(release):
    """ONNX Runtime's int8 trunk step and head: the same hidden states and samples to quantisation error."""
    torch.manual_seed(0)
    trunk, head = release.lm.trunk, release.one_step[0]
    f32, i8 = OnnxTrunkRuntime(trunk, 1), OnnxTrunkRuntime(trunk, 1, int8=True)
    caches = [KVCache.empty(trunk.cfg, 1, 64, "cpu", torch.float32) for _ in range(2)]
    x = torch.randn(1, 20, trunk.cfg.dim) * 0.1
    with torch.no_grad():
        for c in caches:
            trunk(x, cache=c)
        step = torch.randn(1, 1, trunk.cfg.dim) * 0.1
        a, b = f32(step, caches[0]), i8(step, caches[1])
    rel = float((a - b).norm() / a.norm())
    assert 0 < rel < 0.1, rel  # quantised (not bit-equal), and close
    cond, noise = torch.randn(4, head.cfg.cond_dim), torch.randn(4, head.cfg.latent_dim)
    za, zb = OnnxHeadRuntime(head, 1)(noise, cond), OnnxHeadRuntime(head, 1, int8=True)(noise, cond)
    rel = float((za - zb).norm() / za.norm())
    assert 0 < rel < 0.1, rel


def test_concurrent_decodes_share_one_onnx_release(real_speech_dir):
    """The server's workers decode at once through one loaded release (the server's default backend, int8 ONNX
    Runtime): each decode binds its own KV cache, so two threads get exactly what each gets alone."""
    import threading

    fast = TTS.from_pretrained(RELEASE, backend="onnx", quantize="int8")
    prompt = real_speech_dir / "dev" / "coqui__LJ001-0001.wav"
    kw = dict(prompt_text="Printing, in the only sense with which we are", head="one_step")
    jobs = [("The boat sailed across the calm water.", 0), ("A small bird sang in the old tree.", 1)]
    alone = [fast.synthesize(text, prompt, seed=seed, **kw).audio for text, seed in jobs]
    together: list = [None, None]

    def run(i: int) -> None:
        for _ in range(3):  # several decodes each, so the two overlap
            together[i] = fast.synthesize(jobs[i][0], prompt, seed=jobs[i][1], **kw).audio

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for a, b in zip(alone, together):
        assert b is not None and np.array_equal(a, b)
