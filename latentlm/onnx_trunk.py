"""The trunk's cached step for ONE row as an ONNX graph written node by node, on ONNX Runtime's fused operators.

``Transformer.forward`` for N new items after S cached columns of one row, as ~11 nodes per layer instead of the
~90 a traced export leaves after optimisation (measured: 829 nodes for the demo's 9 layers against 100 here):

- ``SimplifiedLayerNormalization`` / ``SkipSimplifiedLayerNormalization`` (com.microsoft): the RMSNorms, the second
  one fused with the residual sum it normalises;
- ``MatMul`` by the transposed linear weights (ONNX Runtime's dynamic quantisation turns them into int8 products);
- ``GroupQueryAttention`` (com.microsoft): RoPE on q and k (half rotation, the ``RopeTable`` layout's cos and the
  sin's positive half as its caches), grouped-query causal attention over the cache and the new items, and the
  new keys/values written into the cache in place: ``past_key{i}`` / ``present_key{i}`` are bound to the SAME
  buffer (the ``KVCache``'s [1, Hkv, S_max, Dh] tensor of layer i), so no call copies the cache and no call feeds
  36 cache views (what bounded the traced graph's calls: ~0.6 ms of Python feeds per call at S ~ 450);
- SwiGLU as ``MatMul`` -> ``Split`` -> ``Sigmoid`` -> ``Mul`` x 2 -> ``MatMul``.

Inputs: x [1, N, C] float32, past_key{i} / past_value{i} [1, Hkv, S_max, Dh] per layer, seqlens_k [1] int32
(= S + N - 1), total_len int32 scalar (= S + N). Outputs: hidden [1, N, C] (after the final norm), present_key{i}
/ present_value{i} (the same buffers). RoPE positions are the cache columns (S + j for new item j): the runtime
covers only rows whose every cached column is valid, where that is the position ``Transformer.forward`` uses.
Equal to it to float rounding (tests/test_onnx_step.py).

Dimension legend: N new items, S cached columns (S_max allocated), C width, L layers, H query heads, Hkv key/value
heads, Dh head dim, F SwiGLU hidden width.
"""

from __future__ import annotations

import torch
from torch import nn


def trunk_step_graph(trunk: nn.Module) -> bytes:
    """The ONNX model (bytes) of ``trunk``'s cached one-row step (module docstring), weights as initializers."""
    from onnx import TensorProto, helper

    from latentlm.onnx_graph import GraphBuilder

    cfg = trunk.cfg
    H, Hkv, Dh, C, eps = cfg.n_heads, cfg.kv_heads, cfg.head_dim, cfg.dim, cfg.norm_eps
    g = GraphBuilder()
    weight, node = g.weight, g.node

    cos, sin = trunk.rope.lookup(torch.arange(cfg.max_seq_len)[None])  # [1, L, 1, Dh], sin sign-folded
    weight("cos_cache", cos[0, :, 0, : Dh // 2])  # [max_seq_len, Dh / 2]
    weight("sin_cache", sin[0, :, 0, Dh // 2 :])  # the positive half: sin
    h, branch = "x", None  # the residual stream; the last block branch not yet added to it
    for i, blk in enumerate(trunk.layers):
        a, mlp = blk.attn, blk.mlp
        if branch is None:
            node("SimplifiedLayerNormalization", [h, weight(f"attn_norm{i}", blk.attn_norm.weight)], [f"an{i}"],
                 axis=-1, epsilon=eps, stash_type=1)
        else:
            node("SkipSimplifiedLayerNormalization", [branch, h, weight(f"attn_norm{i}", blk.attn_norm.weight)],
                 [f"an{i}", "", "", f"h{i}"], epsilon=eps)
            h = f"h{i}"
        node("MatMul", [f"an{i}", weight(f"qkv{i}", a.qkv.weight.T)], [f"qkv_{i}"])  # [1, N, (H + 2 Hkv) Dh]
        node("GroupQueryAttention",
             [f"qkv_{i}", "", "", f"past_key{i}", f"past_value{i}", "seqlens_k", "total_len", "cos_cache",
              "sin_cache"],
             [f"att{i}", f"present_key{i}", f"present_value{i}"],
             num_heads=H, kv_num_heads=Hkv, do_rotary=1, rotary_interleaved=0)  # [1, N, H Dh]
        node("MatMul", [f"att{i}", weight(f"out{i}", a.out.weight.T)], [f"ao{i}"])
        node("SkipSimplifiedLayerNormalization", [f"ao{i}", h, weight(f"mlp_norm{i}", blk.mlp_norm.weight)],
             [f"mn{i}", "", "", f"hm{i}"], epsilon=eps)
        h = f"hm{i}"
        node("MatMul", [f"mn{i}", weight(f"gate_up{i}", mlp.gate_up.weight.T)], [f"gu{i}"])  # [1, N, 2F]
        node("Split", [f"gu{i}"], [f"gate{i}", f"up{i}"], axis=-1)  # equal halves (opset 17)
        node("Sigmoid", [f"gate{i}"], [f"sg{i}"])
        node("Mul", [f"gate{i}", f"sg{i}"], [f"silu{i}"])
        node("Mul", [f"silu{i}", f"up{i}"], [f"act{i}"])
        node("MatMul", [f"act{i}", weight(f"down{i}", mlp.down.weight.T)], [f"mo{i}"])
        branch = f"mo{i}"
    node("SkipSimplifiedLayerNormalization", [branch, h, weight("norm", trunk.norm.weight)],
         ["hidden", "", "", "h_out"], epsilon=eps)

    f32, cache = TensorProto.FLOAT, [1, Hkv, "S_max", Dh]
    inputs = [helper.make_tensor_value_info("x", f32, [1, "N", C])]
    outputs = [helper.make_tensor_value_info("hidden", f32, [1, "N", C])]
    for i in range(cfg.n_layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}{i}", f32, cache))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}{i}", f32, cache))
    inputs += [
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
        helper.make_tensor_value_info("total_len", TensorProto.INT32, []),
    ]
    return g.model("trunk_step", inputs, outputs)
