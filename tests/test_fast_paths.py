"""The inference fast paths compute what the straightforward code computes.

Each optimised path (DiffusionHead.sample with precomputed modulation and folded norms, the indexed solvers with
cached Python-float coefficients, the trunk's cached RoPE table / SDPA GQA / small-input RMSNorm, the decoding
loop, the cached [in, out] weights of DecodeLinear) is compared with a plain reference implementation (kept in
this file, or the torch module it replaces), on small randomised models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentlm import head as head_module
from latentlm.diffusion import (
    DiffusionConfig,
    NoiseSchedule,
    ddpm_ancestral,
    dpm_solver_pp_2m,
    solver_timesteps,
)
from latentlm.head import DiffusionHead, HeadConfig
from latentlm.model import LatentLM, LatentLMConfig
from latentlm.sequence import Latents, Tokens, pack
from latentlm.transformer import KVCache, RMSNorm, Transformer, TransformerConfig

ATOL = 1e-5


# ---- references: the plain code the fast paths replace ------------------------------------------------------
def ref_dpm_solver(denoise, x_T, schedule, steps, spacing):
    """DPM-Solver++(2M) written out with per-step schedule lookups (as the original loop did)."""
    ts = solver_timesteps(schedule, steps, spacing)
    x, x0_prev, h_prev = x_T, None, 0.0
    for i, t in enumerate(ts):
        x0 = denoise(x, torch.full((x.shape[0],), t, dtype=torch.long))
        if i == len(ts) - 1:
            return x0
        t_next = ts[i + 1]
        h = float(schedule.lambda_t(t_next)) - float(schedule.lambda_t(t))
        if x0_prev is None:
            d = x0
        else:
            r = h_prev / h
            d = (1 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
        x = float(schedule.sigma_t(t_next) / schedule.sigma_t(t)) * x - float(schedule.alpha_t(t_next)) * (
            math.expm1(-h) * d
        )
        x0_prev, h_prev = x0, h
    raise AssertionError("unreachable")


def ref_ddpm(denoise, x_T, schedule, generator, steps, temperature):
    ts = solver_timesteps(schedule, steps, "time")
    ac = schedule.alphas_cumprod
    x = x_T
    for i, t in enumerate(ts):
        x0 = denoise(x, torch.full((x.shape[0],), t, dtype=torch.long))
        ac_t, ac_prev = float(ac[t]), float(ac[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        beta = 1.0 - ac_t / ac_prev
        x = (
            math.sqrt(ac_prev) * beta / (1.0 - ac_t) * x0
            + math.sqrt(1.0 - beta) * (1.0 - ac_prev) / (1.0 - ac_t) * x
        )
        var = beta * (1.0 - ac_prev) / (1.0 - ac_t)
        if var > 0:
            x = x + math.sqrt(var) * temperature * torch.randn(x.shape, generator=generator)
    return x


def ref_sample(head: DiffusionHead, cond, steps, cfg, uncond, temperature, generator, solver, spacing):
    """head.sample as its reference denoiser (forward() + cfg_combine + to_x0_eps) inside the reference solvers."""
    denoise = head.reference_denoiser(cond, cfg, uncond)
    x_T = torch.randn((cond.shape[0], head.cfg.latent_dim), generator=generator) * temperature
    if solver == "dpm++2m":
        return ref_dpm_solver(denoise, x_T, head.schedule, steps, spacing)
    return ref_ddpm(denoise, x_T, head.schedule, generator, steps, temperature)


def randomized_head(prediction: str, seed: int = 0, depth: int = 2) -> DiffusionHead:
    """A head whose zero-initialised layers hold noise, so every path shapes the output."""
    torch.manual_seed(seed)
    cfg = HeadConfig(
        latent_dim=4, cond_dim=12, width=32, depth=depth, diffusion=DiffusionConfig(prediction=prediction)
    )
    head = DiffusionHead(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.endswith("norm.weight"):  # non-trivial RMSNorm weights: they are folded into the scale
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return head


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- diffusion head + solvers ------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["v", "eps"])
@pytest.mark.parametrize(
    "solver,spacing", [("dpm++2m", "quadratic"), ("dpm++2m", "logsnr"), ("ddpm", "time")]
)
@pytest.mark.parametrize("steps", [1, 2, 10])
@pytest.mark.parametrize("cfg", [1.0, 1.5])
def test_head_sample_matches_the_reference(prediction, solver, spacing, steps, cfg):
    head = randomized_head(prediction, depth=3)
    cond, uncond = randn(5, 12, seed=1), randn(5, 12, seed=2)
    kw = dict(steps=steps, cfg=cfg, uncond=uncond if cfg != 1.0 else None, temperature=0.8)
    fast = head.sample(cond, generator=torch.Generator().manual_seed(3), solver=solver, spacing=spacing, **kw)
    with torch.no_grad():
        ref = ref_sample(
            head, cond, generator=torch.Generator().manual_seed(3), solver=solver, spacing=spacing, **kw
        )
    assert ref.abs().max() > 0.1  # a non-trivial output, not a collapsed network
    # eps-prediction amplifies the last steps' rounding by 1/alpha_t (~2e4 at t = T-1): compare relatively
    tol = ATOL if prediction == "v" else 1e-5 * max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(fast, ref, atol=tol, rtol=1e-5)


@pytest.mark.parametrize("solver,cfg", [("dpm++2m", 1.0), ("dpm++2m", 2.0), ("ddpm", 1.5)])
def test_head_sample_matches_the_reference_beside_it(solver, cfg):
    """DiffusionHead.sample_reference (forward + cfg_combine in the public solvers, in head.py) is the
    plain statement of what the fused sampler computes."""
    head = randomized_head("v", depth=3)
    cond, uncond = randn(4, 12, seed=1), randn(4, 12, seed=2)
    kw = dict(steps=6, cfg=cfg, uncond=uncond if cfg != 1.0 else None, temperature=0.9, solver=solver)
    fast = head.sample(cond, generator=torch.Generator().manual_seed(3), **kw)
    ref = head.sample_reference(cond, generator=torch.Generator().manual_seed(3), **kw)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(fast, ref, atol=ATOL, rtol=1e-5)


def test_head_sample_chunked_modulation_and_full_ddpm(monkeypatch):
    """Long grids precompute the modulation in chunks; the result does not depend on the chunking."""
    head = randomized_head("v")
    cond, uncond = randn(3, 12, seed=4), randn(3, 12, seed=5)
    kw = dict(steps=20, cfg=1.3, uncond=uncond, temperature=1.0)
    whole = head.sample(cond, generator=torch.Generator().manual_seed(6), **kw)
    monkeypatch.setattr(head_module._Modulation, "MAX_ELEMENTS", 7 * 6 * 32 * 8)  # 7-step chunks
    chunked = head.sample(cond, generator=torch.Generator().manual_seed(6), **kw)
    torch.testing.assert_close(chunked, whole, atol=ATOL, rtol=1e-5)
    fast = head.sample(cond, steps=1000, solver="ddpm", generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref = ref_sample(head, cond, 1000, 1.0, None, 1.0, torch.Generator().manual_seed(8), "ddpm", "time")
    torch.testing.assert_close(fast, ref, atol=ATOL, rtol=1e-5)


def test_public_solvers_match_the_reference_loops():
    sched = NoiseSchedule(DiffusionConfig())
    w = randn(3, 3, seed=9)

    def denoise(x, t):  # a smooth nonlinear data predictor that depends on t
        return torch.tanh(x @ w) * (1 + t.float()[:, None] / 1000)

    x_T = randn(6, 3, seed=10)
    for steps, spacing in [(1, "quadratic"), (5, "time"), (10, "logsnr"), (25, "quadratic")]:
        torch.testing.assert_close(
            dpm_solver_pp_2m(denoise, x_T, sched, steps, spacing),
            ref_dpm_solver(denoise, x_T, sched, steps, spacing),
            atol=ATOL,
            rtol=1e-6,
        )
    a = ddpm_ancestral(denoise, x_T, sched, torch.Generator().manual_seed(1), 12, 0.7)
    b = ref_ddpm(denoise, x_T, sched, torch.Generator().manual_seed(1), 12, 0.7)
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-6)


# ---- trunk -------------------------------------------------------------------------------------------------
def ref_trunk(model: Transformer, x, valid):
    """The trunk written out plainly: RoPE recomputed from positions, GQA by repeat_interleave, an explicit
    causal & key-padding mask, RMSNorm by its formula. No cache."""
    cfg = model.cfg
    B, N, _ = x.shape
    H, Hkv, Dh = cfg.n_heads, cfg.kv_heads, cfg.head_dim

    def rms(h, norm):
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight

    def rope(t, pos):  # t [B, h, N, Dh]
        inv = 1.0 / cfg.rope_theta ** (torch.arange(0, Dh, 2, dtype=torch.float32) / Dh)
        f = pos.float()[..., None] * inv
        emb = torch.cat([f, f], -1)[:, None]
        t1, t2 = t.chunk(2, -1)
        return t * emb.cos() + torch.cat([-t2, t1], -1) * emb.sin()

    pos = (valid.long().cumsum(1) - 1).clamp(min=0)
    cols = torch.arange(N)
    mask = ((cols[None, :] <= cols[:, None])[None] & valid[:, None, :]) | torch.eye(N, dtype=torch.bool)[None]
    h = x
    for layer in model.layers:
        a = layer.attn
        q, k, v = (rms(h, layer.attn_norm) @ a.qkv.weight.t()).split([H * Dh, Hkv * Dh, Hkv * Dh], -1)
        q = rope(q.view(B, N, H, Dh).transpose(1, 2), pos)
        k = rope(k.view(B, N, Hkv, Dh).transpose(1, 2), pos).repeat_interleave(H // Hkv, 1)
        v = v.view(B, N, Hkv, Dh).transpose(1, 2).repeat_interleave(H // Hkv, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
        y = torch.softmax(s.masked_fill(~mask[:, None], float("-inf")), -1) @ v  # [B, H, N, Dh]
        h = h + y.transpose(1, 2).reshape(B, N, H * Dh) @ a.out.weight.t()
        g, u = (rms(h, layer.mlp_norm) @ layer.mlp.gate_up.weight.t()).chunk(2, -1)
        h = h + (F.silu(g) * u) @ layer.mlp.down.weight.t()
    return rms(h, model.norm)


@pytest.mark.parametrize("n_kv_heads", [None, 2, 1])
def test_trunk_full_and_cached_decode_match_the_plain_reference(n_kv_heads):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads)).eval()
    with torch.no_grad():
        for layer in model.layers:
            layer.attn_norm.weight.uniform_(0.5, 1.5)
    x = randn(3, 9, 32, seed=1)
    valid = torch.ones(3, 9, dtype=torch.bool)
    valid[1, 6:] = False  # right padding
    valid[2, 3] = False  # a hole
    with torch.no_grad():
        ref = ref_trunk(model, x, valid)
        full = model(x, valid=valid)
        cache = KVCache.empty(model.cfg, 3, 9, x.device, x.dtype)
        steps = [model(x[:, :4], valid=valid[:, :4], cache=cache)]
        steps += [model(x[:, i : i + 1], valid=valid[:, i : i + 1], cache=cache) for i in range(4, 9)]
    cached = torch.cat(steps, 1)
    keep = valid[..., None]  # padding positions' outputs are unused
    torch.testing.assert_close(full * keep, ref * keep, atol=ATOL, rtol=0)
    torch.testing.assert_close(cached * keep, ref * keep, atol=ATOL, rtol=0)


def test_rmsnorm_small_inference_path_matches_the_formula():
    norm = RMSNorm(48, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = randn(2, 1, 48, seed=3) * 5
    want = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    with torch.no_grad():
        torch.testing.assert_close(norm(x), want, atol=1e-6, rtol=1e-6)  # small, no grad: matmul path
    y = norm(x.requires_grad_(True))  # autograd: fused kernel, gradients flow
    torch.testing.assert_close(y, want, atol=1e-6, rtol=1e-6)
    y.sum().backward()
    assert x.grad is not None and norm.weight.grad is not None


# ---- decoding ----------------------------------------------------------------------------------------------
def test_cfg_decoding_matches_a_recompute_loop_with_the_reference_sampler():
    """iterate() with CFG (cond + uncond rows batched, KV cache, fast head) against re-running each row's whole
    sequence every step and sampling with the reference head sampler."""
    torch.manual_seed(0)
    dim = 32
    cfg = LatentLMConfig(
        vocab_size=10,
        trunk=TransformerConfig(dim=dim, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128),
        modalities={"audio": HeadConfig(latent_dim=3, cond_dim=dim, width=32, depth=2)},
    )
    model = LatentLM(cfg).eval()
    head = model.heads["audio"]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    lay = model.layout
    begin = Tokens(torch.tensor([lay.begin["audio"]]))
    cond_prefix = [Tokens(torch.tensor([lay.bos])), Tokens(lay.text([1, 2, 3, 4])), begin]
    uncond_prefix = [Tokens(torch.tensor([lay.bos, lay.null])), begin]  # shorter: padded in the batch
    n, steps, scale = 5, 4, 1.5
    dims = model.latent_dims
    items = model.generate(
        pack([cond_prefix], lay, dims),
        uncond=pack([uncond_prefix], lay, dims),
        cfg=scale,
        max_new=n,
        steps=steps,
        min_latents=n,
        token_temperature=0.0,
        generator=torch.Generator().manual_seed(2),
    )[0]
    assert len(items) == n and all(isinstance(z, torch.Tensor) for z in items)

    g = torch.Generator().manual_seed(2)
    rows = [list(cond_prefix), list(uncond_prefix)]
    for k in range(n):
        conds = []
        for row in rows:
            batch = pack([row], lay, dims)
            with torch.no_grad():
                conds.append(model(batch)[0, -1:])  # [1, C] hidden state of the last item
        with torch.no_grad():
            z = ref_sample(head, conds[0], steps, scale, conds[1], 1.0, g, "dpm++2m", "quadratic")  # [1, D]
        torch.testing.assert_close(items[k], z[0], atol=ATOL, rtol=1e-5)
        for row in rows:
            row.append(Latents("audio", z))


def test_decode_linear_matches_nn_linear_and_follows_weight_changes():
    """DecodeLinear (the cached [in, out] weight for small no-grad CPU calls) computes nn.Linear's output, keeps
    nn.Linear's state_dict, recomputes its copy after an optimizer step and a load_state_dict, and trains through
    the ordinary path."""
    from latentlm.linear import DECODE_ROWS, DecodeLinear, decode_weight

    torch.manual_seed(0)
    ref = torch.nn.Linear(48, 80)
    lin = DecodeLinear(48, 80)
    assert lin.state_dict().keys() == ref.state_dict().keys()
    lin.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 48)  # 6 rows: the decode path
    big = torch.randn(DECODE_ROWS + 1, 48)  # the ordinary path
    with torch.no_grad():
        for inp in (x, big):
            torch.testing.assert_close(lin(inp), ref(inp), atol=ATOL, rtol=0)
        cached = decode_weight(lin)
        assert cached.is_contiguous() and cached.shape == (48, 80)
        assert decode_weight(lin) is cached  # reused while the weight is unchanged

    opt = torch.optim.SGD(lin.parameters(), lr=0.5)
    loss = lin(x).square().mean()  # grad enabled: F.linear, so the gradient reaches the weight
    loss.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    opt.step()
    with torch.no_grad():
        assert decode_weight(lin) is not cached
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), atol=ATOL, rtol=0)
        lin.load_state_dict(ref.state_dict())  # back to the reference weights
        torch.testing.assert_close(lin(x), ref(x), atol=ATOL, rtol=0)


def test_int8_trunk_stays_close_to_float32_and_tts_loads_quantised(tmp_path, real_speech_dir):
    """latentlm.linear.quantize_int8: the trunk's linears become dynamic int8; a cached decode gives nearly the
    float32 hidden states; TTS.from_pretrained(quantize="int8") quantises its trunk and still speaks."""
    import copy

    from latentlm.linear import quantize_int8
    from tests.helpers import make_tiny_release
    from tts.model import TTS, TTSInputError

    torch.manual_seed(0)
    trunk = Transformer(TransformerConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)).eval()
    q = quantize_int8(copy.deepcopy(trunk))
    assert type(q.layers[0].attn.qkv).__name__ == "Linear" and "quantized" in type(q.layers[0].attn.qkv).__module__
    x = randn(1, 12, 64, seed=3)
    with torch.no_grad():
        ref, got = trunk(x), q(x)
    rel = float((got - ref).norm() / ref.norm())
    assert rel < 0.05, rel
    release = make_tiny_release(tmp_path / "rel")
    tts = TTS.from_pretrained(release, quantize="int8")
    assert "quantized" in type(tts.lm.trunk.layers[0].mlp.down).__module__
    res = tts.synthesize(
        "Hello.", real_speech_dir / "dev" / "coqui__LJ001-0001.wav", prompt_text="Printing, in the only sense",
        max_seconds=0.4, steps=2,
    )
    assert res.audio.size > 0 and np.isfinite(res.audio).all()
    with pytest.raises(TTSInputError, match="quantize"):
        TTS.from_pretrained(release, quantize="int4")
