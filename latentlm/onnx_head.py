"""A diffusion head's one-step sample (``distill.one_step``) as an ONNX graph written node by node.

x_T [M, D], cond [M, C] -> x0 [M, D], the head's x0 estimate at t = T-1, as ~45 nodes where the traced export
leaves ~300 (measured for the demo's head: the traced graph's int8 session 0.25 ms a call on one thread):

- the timestep is fixed, so ``t_mlp(timestep_embedding(T-1))`` is a constant [W] computed here in PyTorch;
- c_act = silu(cond_proj(RMSNorm(cond)) + that constant), and every block's AdaLN modulation and the final one
  come from ONE ``MatMul`` of c_act by their weights side by side (+ biases, the scales' ``1 +`` folded in),
  ``Split`` into shift / scale / gate pieces;
- each block: ``SimplifiedLayerNormalization`` -> * scale + shift -> SwiGLU (``MatMul``, ``Split``, ``Sigmoid``,
  ``Mul`` x 2, ``MatMul``) -> * gate + h;
- the output projection, then x0 = A x_T + B out, where (A, B) are what the schedule's ``to_x0_eps`` makes of
  the model output at T-1 (v or eps prediction alike: both are linear in x_T and the output).

The same x0 as ``distill.one_step`` to float rounding (tests/test_onnx_step.py).

Dimension legend: M rows, D latent dim, C cond dim, W head width, Hd SwiGLU hidden width, K blocks.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def one_step_graph(head: nn.Module) -> bytes:
    """The ONNX model (bytes) of ``head``'s one-step sample (module docstring), weights as initializers."""
    from onnx import TensorProto, helper

    from latentlm.head import timestep_embedding
    from latentlm.onnx_graph import GraphBuilder

    cfg, W = head.cfg, head.cfg.width
    last = head.schedule.num_steps - 1
    g = GraphBuilder()
    weight, node = g.weight, g.node

    def rms(x: str, norm: nn.Module, out: str) -> None:
        node("SimplifiedLayerNormalization", [x, weight(f"{out}_w", norm.weight)], [out], axis=-1,
             epsilon=norm.eps, stash_type=1)

    def linear(x: str, lin: nn.Module, out: str) -> None:
        node("MatMul", [x, weight(f"{out}_w", lin.weight.T)], [out if lin.bias is None else f"{out}_mm"])
        if lin.bias is not None:
            node("Add", [f"{out}_mm", weight(f"{out}_b", lin.bias)], [out])

    def silu(x: str, out: str) -> None:
        node("Sigmoid", [x], [f"{out}_sg"])
        node("Mul", [x, f"{out}_sg"], [out])

    t = torch.full((1,), last, dtype=torch.long)
    t_const = head.t_mlp(timestep_embedding(t, head.FREQ_DIM).float())[0]  # [W]
    rms("cond", head.cond_norm, "cn")
    linear("cn", head.cond_proj, "cp")
    node("Add", ["cp", weight("t_const", t_const)], ["c"])
    silu("c", "c_act")  # [M, W]
    # every modulation at once: per block (shift, 1 + scale, gate), then the final (shift, 1 + scale)
    ws, bs, names = [], [], []
    for k, blk in enumerate(head.blocks):
        w, b = blk.ada.weight, blk.ada.bias.clone()  # [3W, W], [3W]
        b[W : 2 * W] += 1
        ws.append(w)
        bs.append(b)
        names += [f"shift{k}", f"scale{k}", f"gate{k}"]
    w, b = head.final_ada.weight, head.final_ada.bias.clone()
    b[W:] += 1
    ws.append(w)
    bs.append(b)
    names += ["shift_f", "scale_f"]
    node("MatMul", ["c_act", weight("ada_w", torch.cat(ws).T)], ["ada_mm"])
    node("Add", ["ada_mm", weight("ada_b", torch.cat(bs))], ["ada"])
    node("Split", ["ada"], names, axis=-1)  # equal pieces of W
    linear("x_T", head.x_in, "h0")
    h = "h0"
    for k, blk in enumerate(head.blocks):
        rms(h, blk.norm, f"n{k}")
        node("Mul", [f"n{k}", f"scale{k}"], [f"ns{k}"])
        node("Add", [f"ns{k}", f"shift{k}"], [f"y{k}"])
        linear(f"y{k}", blk.mlp.w_in, f"wi{k}")
        node("Split", [f"wi{k}"], [f"a{k}", f"b{k}"], axis=-1)
        silu(f"a{k}", f"sa{k}")
        node("Mul", [f"sa{k}", f"b{k}"], [f"ab{k}"])
        linear(f"ab{k}", blk.mlp.w_out, f"mo{k}")
        node("Mul", [f"mo{k}", f"gate{k}"], [f"g{k}"])
        node("Add", [h, f"g{k}"], [f"h{k + 1}"])
        h = f"h{k + 1}"
    rms(h, head.final_norm, "fn")
    node("Mul", ["fn", "scale_f"], ["fs"])
    node("Add", ["fs", "shift_f"], ["fy"])
    linear("fy", head.out, "out")  # [M, D] the model output (v or eps)
    # x0 = A x_T + B out: what to_x0_eps makes of the output at t = T-1, read off its two linear parts
    one, zero = torch.ones(1, cfg.latent_dim), torch.zeros(1, cfg.latent_dim)
    a = head.schedule.to_x0_eps(zero, one, t)[0][0]  # [D] (the same factor in every dimension)
    b = head.schedule.to_x0_eps(one, zero, t)[0][0]
    node("Mul", ["x_T", weight("coef_x", a)], ["ax"])
    node("Mul", ["out", weight("coef_out", b)], ["bo"])
    node("Add", ["ax", "bo"], ["x0"])

    f32 = TensorProto.FLOAT
    return g.model(
        "one_step_head",
        [helper.make_tensor_value_info("x_T", f32, ["M", cfg.latent_dim]),
         helper.make_tensor_value_info("cond", f32, ["M", cfg.cond_dim])],
        [helper.make_tensor_value_info("x0", f32, ["M", cfg.latent_dim])],
    )
