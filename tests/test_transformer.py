"""Causal Transformer trunk: causality, KV-cache equivalence, ragged batches, GQA, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentlm.config import ConfigError, from_dict, to_dict
from latentlm.transformer import KVCache, RMSNorm, Transformer, TransformerConfig

ATOL = 2e-5


def make(n_kv_heads=None, seed=0, sharpen=True, **kw) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads, max_seq_len=128, **kw)
    model = Transformer(cfg).eval()
    if sharpen:  # the 0.02 init gives near-uniform attention, which would hide mask and position bugs
        with torch.no_grad():
            for layer in model.layers:
                layer.attn.qkv.weight.mul_(15)
                layer.attn.out.weight.mul_(5)
    return model


def randn(*shape, seed=1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_kv_heads", [None, 2])
@pytest.mark.parametrize("ragged", [False, True])
def test_causality(n_kv_heads, ragged):
    model = make(n_kv_heads)
    x = randn(2, 12, 32)
    valid = None
    if ragged:  # row 1 is right-padded: only its first 9 tokens are real
        valid = torch.ones(2, 12, dtype=torch.bool)
        valid[1, 9:] = False
    t = 5
    x2 = x.clone()
    x2[:, t] += randn(2, 32, seed=7)
    with torch.no_grad():
        y, y2 = model(x, valid), model(x2, valid)
    assert torch.equal(y[:, :t], y2[:, :t]), "output before the perturbed position changed"
    diff = (y - y2).abs().amax(-1)  # [B, N]
    assert (diff[0, t:] > 1e-4).all(), "perturbation did not reach the outputs at >= t"
    if ragged:
        assert (diff[1, t:9] > 1e-4).all()


def test_fast_causal_path_matches_explicit_mask():
    model = make()
    x = randn(3, 10, 32)
    with torch.no_grad():
        y_fast = model(x)  # no mask: is_causal
        y_mask = model(x, valid=torch.ones(3, 10, dtype=torch.bool))  # explicit boolean mask
    torch.testing.assert_close(y_fast, y_mask, atol=ATOL, rtol=0)


@pytest.mark.parametrize("n_kv_heads", [None, 2, 1])
def test_kv_cache_token_by_token_matches_full_forward(n_kv_heads):
    model = make(n_kv_heads)
    x = randn(2, 10, 32)
    with torch.no_grad():
        full = model(x)
        cache = KVCache.empty(model.cfg, 2, 10, x.device, x.dtype)
        steps = [model(x[:, i : i + 1], cache=cache) for i in range(10)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=ATOL, rtol=0)
    assert cache.length == 10 and cache.n_valid.tolist() == [10, 10]


@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_kv_cache_chunked_prefill_then_decode_matches_full_forward(n_kv_heads):
    model = make(n_kv_heads)
    x = randn(2, 13, 32)
    with torch.no_grad():
        full = model(x)
        cache = KVCache.empty(model.cfg, 2, 16, x.device, x.dtype)
        outs = [model(x[:, :6], cache=cache), model(x[:, 6:9], cache=cache)]  # prefill in two chunks
        outs += [model(x[:, i : i + 1], cache=cache) for i in range(9, 13)]  # then decode
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=ATOL, rtol=0)


@pytest.mark.parametrize("n_kv_heads", [None, 1])
def test_ragged_batch_with_cache_matches_each_sequence_alone(n_kv_heads):
    """Right-padded prompts of lengths 7/4/2, prefilled together, then 5 decode steps for all rows at once."""
    model = make(n_kv_heads)
    lengths, n_decode, C = [7, 4, 2], 5, 32
    seqs = [randn(1, L + n_decode, C, seed=10 + i) for i, L in enumerate(lengths)]
    with torch.no_grad():
        alone = [model(s) for s in seqs]  # each sequence by itself, unpadded, no cache

        P = max(lengths)
        prompt = torch.zeros(3, P, C)
        valid = torch.zeros(3, P, dtype=torch.bool)
        for i, L in enumerate(lengths):
            prompt[i, :L] = seqs[i][0, :L]
            prompt[i, L:] = randn(P - L, C, seed=99 + i) * 5  # garbage in the padding must not matter
            valid[i, :L] = True
        cache = KVCache.empty(model.cfg, 3, P + n_decode, prompt.device, prompt.dtype)
        pre = model(prompt, valid, cache=cache)
        assert cache.n_valid.tolist() == lengths and cache.length == P
        dec = []
        for j in range(n_decode):
            step = torch.cat([s[:, L + j : L + j + 1] for s, L in zip(seqs, lengths)])  # [3, 1, C]
            dec.append(model(step, cache=cache))
        dec = torch.cat(dec, 1)  # [3, n_decode, C]
    assert torch.isfinite(pre).all()  # padding queries attend to themselves: no NaN rows
    for i, L in enumerate(lengths):
        torch.testing.assert_close(pre[i, :L], alone[i][0, :L], atol=ATOL, rtol=0)
        torch.testing.assert_close(dec[i], alone[i][0, L:], atol=ATOL, rtol=0)
    assert cache.n_valid.tolist() == [L + n_decode for L in lengths]


def test_ragged_batch_without_cache_matches_each_sequence_alone():
    model = make(2)
    lengths = [9, 3, 6]
    seqs = [randn(1, L, 32, seed=20 + i) for i, L in enumerate(lengths)]
    x = torch.randn(3, 9, 32) * 3
    valid = torch.zeros(3, 9, dtype=torch.bool)
    for i, L in enumerate(lengths):
        x[i, :L] = seqs[i][0]
        valid[i, :L] = True
    with torch.no_grad():
        y = model(x, valid)
        x_other_pad = x.clone()
        x_other_pad[~valid] = -7.0
        y_other_pad = model(x_other_pad, valid)
        for i, L in enumerate(lengths):
            torch.testing.assert_close(y[i, :L], model(seqs[i])[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(y[valid], y_other_pad[valid], atol=0, rtol=0)
    assert torch.isfinite(y).all()


def test_padding_hole_inside_one_call_is_skipped():
    """Default positions count valid tokens only: [a b _ c d] gives the outputs of [a b c d]."""
    model = make(2)
    x = randn(1, 5, 32)
    valid = torch.tensor([[True, True, False, True, True]])
    with torch.no_grad():
        y = model(x, valid)
        ref = model(x[:, valid[0]])
        cache = KVCache.empty(model.cfg, 1, 6, x.device, x.dtype)
        y_cached = torch.cat([model(x[:, :3], valid[:, :3], cache=cache), model(x[:, 3:], cache=cache)], 1)
    torch.testing.assert_close(y[valid], ref[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(y_cached[valid], ref[0], atol=ATOL, rtol=0)


def test_padding_hole_in_the_middle_of_a_cache_stays_masked():
    """A row that is padding at one decode step (e.g. it waits) keeps a hole that later steps skip."""
    model = make()
    x = randn(1, 6, 32)
    with torch.no_grad():
        full = model(x)
        cache = KVCache.empty(model.cfg, 1, 8, x.device, x.dtype)
        model(x[:, :3], cache=cache)
        model(randn(1, 1, 32, seed=5) * 10, valid=torch.zeros(1, 1, dtype=torch.bool), cache=cache)  # a hole
        rest = model(x[:, 3:], cache=cache)
    torch.testing.assert_close(rest, full[:, 3:], atol=ATOL, rtol=0)
    assert cache.length == 7 and cache.n_valid.tolist() == [6]


def test_explicit_positions_match_default():
    model = make()
    x = randn(2, 8, 32)
    pos = torch.arange(8).expand(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x, positions=pos), model(x), atol=ATOL, rtol=0)
        base = model(x)
        shifted = model(x, positions=pos + 3)  # RoPE is relative: a uniform shift changes nothing
        stretched = model(x, positions=pos * 2)  # but other relative distances do
    torch.testing.assert_close(shifted, base, atol=1e-4, rtol=0)
    assert (stretched - base)[:, 1:].abs().amax(-1).min() > 1e-4


def test_gqa_parameter_counts_and_invalid_heads():
    full = make(None)
    counts = {}
    for kv in (None, 2, 1):
        model = make(kv)
        attn = model.layers[0].attn
        kv_rows = attn.qkv.weight.shape[0] - attn.n_heads * attn.head_dim  # rows producing K and V
        counts[kv] = kv_rows * attn.qkv.weight.shape[1]
        with torch.no_grad():
            assert model(randn(2, 5, 32)).shape == (2, 5, 32)
    assert counts[None] == 2 * 32 * 32 and counts[2] == counts[None] // 2 and counts[1] == counts[None] // 4
    assert sum(p.numel() for p in make(1).parameters()) < sum(p.numel() for p in full.parameters())
    with pytest.raises(ValueError, match="n_kv_heads"):
        TransformerConfig(dim=32, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="n_kv_heads"):
        TransformerConfig(dim=32, n_heads=4, n_kv_heads=0)
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(dim=30, n_heads=4)


def test_config_roundtrip_and_ffn_default():
    cfg = TransformerConfig(dim=256)
    assert cfg.ffn_dim == 704  # round_up(8/3 * 256 = 682.7, 64)
    assert from_dict(TransformerConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError):
        from_dict(TransformerConfig, {"dim": 32, "bogus": 1})
    with pytest.raises(ValueError, match="n_kv_heads"):
        from_dict(TransformerConfig, {"dim": 32, "n_heads": 4, "n_kv_heads": 3})


def test_cache_select_keeps_the_right_rows():
    model = make(2)
    x = randn(4, 6, 32)
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[1, 4:] = False
    valid[3, 2:] = False
    with torch.no_grad():
        cache = KVCache.empty(model.cfg, 4, 8, x.device, x.dtype)
        model(x[:, :5], valid[:, :5], cache=cache)
        keep = torch.tensor([3, 1])
        sub = cache.select(keep)
        assert sub.n_valid.tolist() == [2, 4] and sub.length == 5 and sub.batch_size == 2
        y_sub = model(x[keep, 5:6], valid[keep, 5:6], cache=sub)
        y_all = model(x[:, 5:6], valid[:, 5:6], cache=cache)
    torch.testing.assert_close(y_sub, y_all[keep], atol=ATOL, rtol=0)
    for a, b in zip(sub.k, cache.k):
        assert torch.equal(a[:, :, :5], b[keep][:, :, :5])
    mask_sub = cache.select(torch.tensor([False, True, False, True]))
    assert mask_sub.n_valid.tolist() == cache.n_valid[[1, 3]].tolist()


def test_overflow_and_bad_input_raise():
    model = make()
    cache = KVCache.empty(model.cfg, 2, 4, "cpu", torch.float32)
    with torch.no_grad():
        model(randn(2, 3, 32), cache=cache)
        with pytest.raises(ValueError, match="overflow"):
            model(randn(2, 2, 32), cache=cache)
        assert cache.length == 3  # a refused call leaves the cache untouched
        with pytest.raises(ValueError, match="batch size"):
            model(randn(3, 1, 32), cache=cache)
        with pytest.raises(ValueError, match="positions"):
            model(randn(1, 129, 32))  # max_seq_len = 128
        with pytest.raises(ValueError, match="positions"):
            model(randn(1, 4, 32), positions=torch.tensor([[0, 1, 2, 500]]))
        with pytest.raises(ValueError, match="shape"):
            model(randn(1, 4, 16))
        with pytest.raises(ValueError, match="valid"):
            model(randn(1, 4, 32), valid=torch.ones(1, 4))  # float, not bool
    # positions are counted from the cache, so a long-running cache also trips the RoPE limit
    long_cache = KVCache.empty(model.cfg, 1, 200, "cpu", torch.float32)
    with torch.no_grad():
        model(randn(1, 128, 32), cache=long_cache)
        with pytest.raises(ValueError, match="positions"):
            model(randn(1, 1, 32), cache=long_cache)


def test_rmsnorm_normalises():
    norm = RMSNorm(16)
    x = randn(3, 16) * 7 + 2
    y = norm(x)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(3), atol=1e-4, rtol=0)
    assert [n for n, _ in norm.named_parameters()] == ["weight"]


def test_no_biases_and_residual_init():
    model = make(sharpen=False)
    assert all("bias" not in n for n, _ in model.named_parameters())
    std_in = model.layers[0].attn.qkv.weight.std().item()
    std_out = model.layers[0].attn.out.weight.std().item()
    assert std_out < std_in * 0.75  # output projections get the 1/sqrt(2 * n_layers) scale


def test_gradients_flow_and_tiny_overfit_reduces_loss():
    model = make(2, sharpen=False, dropout=0.1).train()
    x, target = randn(4, 8, 32), randn(4, 8, 32, seed=3)
    valid = torch.ones(4, 8, dtype=torch.bool)
    valid[2, 5:] = False
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = (model(x, valid) - target)[valid].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert losses[-1] < 0.7 * losses[0], losses


def test_bf16_autocast_cpu_with_cache():
    model = make(2)
    x = randn(2, 6, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = model(x)
        cache = KVCache.empty(model.cfg, 2, 6, x.device, torch.bfloat16)
        steps = torch.cat(
            [model(x[:, :3], cache=cache)] + [model(x[:, i : i + 1], cache=cache) for i in (3, 4, 5)], 1
        )
    assert torch.isfinite(full).all()
    torch.testing.assert_close(steps.float(), full.float(), atol=0.1, rtol=0)


@pytest.mark.gpu
def test_cuda_bf16_cache_matches_full_forward():
    model = make(2).cuda()
    x = randn(2, 10, 32).cuda()
    valid = torch.ones(2, 10, dtype=torch.bool, device="cuda")
    valid[1, 7:] = False
    with torch.no_grad():
        ref = model(x, valid)
        cache = KVCache.empty(model.cfg, 2, 12, x.device, x.dtype)
        steps = torch.cat(
            [model(x[:, :4], valid[:, :4], cache=cache)]
            + [model(x[:, i : i + 1], valid[:, i : i + 1], cache=cache) for i in range(4, 10)],
            1,
        )
        torch.testing.assert_close(steps[valid], ref[valid], atol=1e-4, rtol=0)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = model(x, valid)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float()[valid], ref[valid], atol=0.1, rtol=0)


def test_kept_attention_probs_are_the_ones_sdpa_uses():
    """Attention.keep_probs materialises the softmax of the first k query heads (GQA, padding mask, cache)."""
    from latentlm.transformer import attention_probs

    torch.manual_seed(0)
    B, H, Hkv, N, Dh = 2, 4, 2, 7, 8
    q, k, v = torch.randn(B, H, N, Dh), torch.randn(B, Hkv, N, Dh), torch.randn(B, Hkv, N, Dh)
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, 5:] = False
    mask = (torch.ones(N, N, dtype=torch.bool).tril()[None] & valid[:, None, :]) | torch.eye(
        N, dtype=torch.bool
    )
    mask = mask[:, None]  # [B, 1, N, N]
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)  # [B, H, N, Dh]
    for m in (mask, None):
        probs = attention_probs(q[:, :3], k, m, H // Hkv)  # [B, 3, N, N]
        vv = v[:, torch.arange(3) // 2]
        ref = (
            want
            if m is not None
            else F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        )
        assert torch.allclose(probs @ vv, ref[:, :3], atol=1e-5)


def _rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The textbook rotate-half RoPE: x [B, h, N, Dh], cos/sin [B, 1, N, Dh] from rope_cos_sin."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return x.float() * cos + torch.cat([-x2, x1], dim=-1) * sin


def test_rope_table_matches_the_rotate_half_reference():
    """The cached table (sign-folded sin, halves swapped) rotates exactly as rotate-half RoPE, for integer and
    fractional positions, and keeps each pair's norm."""
    from latentlm.transformer import RopeTable, apply_rope_swapped, rope_cos_sin

    g = torch.Generator().manual_seed(0)
    B, h, N, Dh = 2, 3, 17, 16
    x = torch.randn(B, h, N, Dh, generator=g)
    table = RopeTable(Dh, 10000.0, 64)
    for pos in (torch.randint(0, 64, (B, N), generator=g), torch.rand(B, N, generator=g) * 50):
        ref = _rope_reference(x, *rope_cos_sin(pos, Dh, 10000.0))
        cos, sin_signed = table.lookup(pos)  # [B, N, 1, Dh]
        got = apply_rope_swapped(x.transpose(1, 2), cos, sin_signed).transpose(1, 2)
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
        pairs = lambda t: t[..., : Dh // 2] ** 2 + t[..., Dh // 2 :] ** 2  # noqa: E731
        torch.testing.assert_close(pairs(got), pairs(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, x)  # it does rotate
