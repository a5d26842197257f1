"""ONNX Runtime for the per-frame decode work: the trunk's cached step on one row, and a one-step head.

A decode step of the small models is bound by per-op overhead in eager PyTorch (~250 small ops for a 6-layer
trunk, ~12 us each on this CPU). Exported to ONNX and run by ONNX Runtime (already installed with faster-whisper),
the same arithmetic runs as one native graph. Measured on the 2-core development machine (demo release, one
row): ``benchmarks/bench_tts.py --backend onnx``.

- ``TrunkStep``: the trunk's arithmetic for N new positions of ONE row after S cached ones, written with ops
  ONNX exports (RMSNorm by hand, attention by matmuls, grouped-query heads by reshape). Inputs: x [N, C],
  cos/sin [N, Dh] (``RopeTable`` layout), the cache buffers of every layer [Hkv, S_max, Dh] and ``past`` (S, a
  0-d int64): keys/values are read from columns [0, S) (a padding column of the row would be attended to, so
  the runtime is used only where every cached column is valid). Outputs: hidden [N, C] (after the final norm),
  the new keys/values [L, Hkv, N, Dh], which the caller writes at columns [S, S + N).
- ``OneStepNet``: ``distill.one_step`` (x0 from x_T at t = T-1) for a head, with t baked in.
- ``OnnxTrunkRuntime`` / ``OnnxHeadRuntime``: sessions built in memory (nothing written to disk), called by
  ``Transformer.forward`` and ``DiffusionHead.sample`` through their ``runtime`` hooks where the call is one
  they cover, so decoding code does not change; every other call (prefill of several rows, training, guidance,
  multi-step heads) runs eager as before.

Dimension legend: N new positions, S cached columns (S_max allocated), C width, L layers, H query heads, Hkv
key/value heads, Dh head dim, M rows of a head call, D latent dim.
"""

from __future__ import annotations

import io
import logging
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

OPSET = 17
WIDE_THREADS, WIDE_ITEMS = 2, 16  # trunk calls of more than WIDE_ITEMS items run on WIDE_THREADS threads


def _rms(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * weight


class TrunkStep(nn.Module):
    """The trunk's cached forward for one row: (x, cos, sin, k_0_0, ..., k_0_{Hkv-1}, v_0_0, ..., v_{L-1}_{Hkv-1})
    -> (hidden [N, C], k_new [L, Hkv, N, Dh], v_new [L, Hkv, N, Dh]). The cache comes in one [S, Dh] array per
    layer, kind and key/value head, exactly the S cached columns: each is a contiguous view of the trunk's
    ``KVCache`` buffer ([1, Hkv, S_max, Dh]), so no call copies the cache (a graph slicing [Hkv, S_max, Dh]
    inputs copied ~5 MB per call at S ~ 550). Equal to ``Transformer.forward`` on that row to float rounding
    (tests/test_onnx_step.py)."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        cfg = trunk.cfg
        self.H, self.Hkv, self.Dh, self.eps = cfg.n_heads, cfg.kv_heads, cfg.head_dim, cfg.norm_eps

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, *kv: Tensor):
        H, Hkv, Dh, eps = self.H, self.Hkv, self.Dh, self.eps
        rep, n = H // Hkv, x.shape[0]
        # causal among the new positions: column j visible to row i when j <= i
        ar = torch.arange(n)
        new_mask = torch.where(ar[None, :] <= ar[:, None], 0.0, float("-inf"))  # [N, N]
        ks, vs, h = [], [], x
        for i, blk in enumerate(self.trunk.layers):
            a = blk.attn
            qkv = F.linear(_rms(h, blk.attn_norm.weight, eps), a.qkv.weight)  # [N, (H + 2 Hkv) Dh]
            qk = qkv[:, : (H + Hkv) * Dh].reshape(n, H + Hkv, Dh)
            x1, x2 = qk.chunk(2, dim=-1)
            qk = qk * cos[:, None] + torch.cat([x2, x1], dim=-1) * sin[:, None]
            q = qk[:, :H].reshape(n, Hkv, rep, Dh).permute(1, 2, 0, 3).reshape(Hkv, rep * n, Dh)
            k = qk[:, H:].transpose(0, 1)  # [Hkv, N, Dh]
            v = qkv[:, (H + Hkv) * Dh :].reshape(n, Hkv, Dh).transpose(0, 1)  # [Hkv, N, Dh]
            ks.append(k)
            vs.append(v)
            q = q / math.sqrt(Dh)
            s_new = torch.matmul(q, k.transpose(1, 2)).reshape(Hkv, rep, n, n) + new_mask  # [Hkv, rep, N, N]
            s_new = s_new.reshape(Hkv, rep * n, n)
            outs = []
            for j in range(Hkv):  # per key/value head: its cached columns as they are
                k_old, v_old = kv[2 * Hkv * i + j], kv[2 * Hkv * i + Hkv + j]  # [S, Dh] each
                s_old = torch.matmul(q[j], k_old.transpose(0, 1))  # [rep N, S]
                p = torch.cat([s_old, s_new[j]], dim=-1).softmax(-1)  # [rep N, S + N]
                past = k_old.shape[0]
                outs.append(torch.matmul(p[:, :past], v_old) + torch.matmul(p[:, past:], v[j]))  # [rep N, Dh]
            o = torch.stack(outs)  # [Hkv, rep N, Dh]
            o = o.reshape(Hkv, rep, n, Dh).permute(2, 0, 1, 3).reshape(n, H * Dh)
            h = h + F.linear(o, a.out.weight)
            gate, up = F.linear(_rms(h, blk.mlp_norm.weight, eps), blk.mlp.gate_up.weight).chunk(2, dim=-1)
            h = h + F.linear(F.silu(gate) * up, blk.mlp.down.weight)
        return _rms(h, self.trunk.norm.weight, eps), torch.stack(ks), torch.stack(vs)


def cache_names(n_layers: int, kv_heads: int) -> list[str]:
    """The trunk step's cache inputs in order: per layer its keys then its values, one per key/value head."""
    return [f"{kind}{i}_{j}" for i in range(n_layers) for kind in "kv" for j in range(kv_heads)]


class OneStepNet(nn.Module):
    """x_T [M, D], cond [M, C] -> x0 [M, D]: the head's x0 estimate at t = T-1 (``distill.one_step``)."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x_T: Tensor, cond: Tensor) -> Tensor:
        from latentlm.distill import one_step

        return one_step(self.head, x_T, cond)


def _export(module: nn.Module, args: tuple, names: list[str], outputs: list[str], dynamic: dict) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            args,
            buf,
            input_names=names,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def export_trunk_step(trunk: nn.Module) -> bytes:
    """The ONNX model (bytes) of ``TrunkStep(trunk)`` with N and S (the cached columns) dynamic."""
    cfg = trunk.cfg
    n, s = 2, 3
    args = [torch.zeros(n, cfg.dim), torch.ones(n, cfg.head_dim), torch.zeros(n, cfg.head_dim)]
    names = ["x", "cos", "sin"]
    dynamic: dict = {"x": {0: "N"}, "cos": {0: "N"}, "sin": {0: "N"}}
    for name in cache_names(cfg.n_layers, cfg.kv_heads):
        names.append(name)
        args.append(torch.zeros(s, cfg.head_dim))
        dynamic[name] = {0: "S"}
    step = TrunkStep(trunk).eval()
    dynamic.update(hidden={0: "N"}, k_new={2: "N"}, v_new={2: "N"})
    return _export(step, tuple(args), names, ["hidden", "k_new", "v_new"], dynamic)


def export_one_step(head: nn.Module) -> bytes:
    """The ONNX model (bytes) of ``OneStepNet(head)`` with M dynamic."""
    cfg = head.cfg
    args = (torch.zeros(2, cfg.latent_dim), torch.zeros(2, cfg.cond_dim))
    return _export(OneStepNet(head).eval(), args, ["x_T", "cond"], ["x0"], {"x_T": {0: "M"}, "cond": {0: "M"}})


def quantized_int8(model: bytes) -> bytes:
    """The model with its MatMul weights in int8 (ONNX Runtime's dynamic quantisation: weights per output
    channel, activations quantised per call): a quarter of the weight bytes each step streams."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # its advice to pre-process the graph, through the root logger
        try:
            out = Path(tmp) / "int8.onnx"
            quantize_dynamic(onnx.load_from_string(model), out, per_channel=True, weight_type=QuantType.QInt8)
            return out.read_bytes()
        finally:
            logging.disable(logging.NOTSET)


def _weights(model: bytes, int8: bool) -> bytes:
    """The exported model, with its MatMul weights in int8 when asked (``quantized_int8``)."""
    return quantized_int8(model) if int8 else model


def _session(model: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # no busy-waiting between calls: the decode loop runs torch ops between every two sessions' runs, and
    # spinning ORT workers beside torch's own threads made a 2-thread synthesis 4x slower (measured)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class OnnxTrunkRuntime:
    """Runs ``Transformer.forward`` calls that feed one row with a KV cache (every item valid, default positions)
    through ONNX Runtime; ``covers`` says which calls. The cache stays the trunk's ``KVCache``: the runtime reads
    its buffers in place and writes the new columns back, so eager and runtime calls can alternate."""

    def __init__(self, trunk: nn.Module, threads: int = 1, int8: bool = False):
        if next(trunk.parameters()).device.type != "cpu":
            raise ValueError("the ONNX Runtime path runs on the CPU; move the model there first")
        self.cfg = trunk.cfg
        self.rope = trunk.rope
        self.int8 = int8  # its weights quantised (what a front end loaded is then visible)
        model = _weights(export_trunk_step(trunk), int8)
        self.session = _session(model, threads)
        # calls of many items (a prefill: a prompt and its text) are matrix products that a second thread
        # speeds up, unlike the one-item steps (measured: a 330-item prefill 37 -> 30 ms); the same graph
        self.wide = _session(model, max(threads, WIDE_THREADS)) if threads < WIDE_THREADS else self.session
        self._rope: tuple[np.ndarray, np.ndarray] | None = None
        self._names = cache_names(self.cfg.n_layers, self.cfg.kv_heads)

    def _rope_table(self) -> tuple[np.ndarray, np.ndarray]:
        """cos, sign-folded sin [max_seq_len, Dh] as NumPy arrays (the trunk's ``RopeTable``), made once."""
        if self._rope is None:
            cos, sin = self.rope.lookup(torch.arange(self.cfg.max_seq_len)[None])  # [1, L, 1, Dh]
            self._rope = (cos[0, :, 0].numpy().copy(), sin[0, :, 0].numpy().copy())
        return self._rope

    def covers(self, x: Tensor, valid: Tensor | None, positions: Tensor | None, cache) -> bool:
        return (
            cache is not None
            and x.shape[0] == 1
            and positions is None
            and x.dtype == torch.float32
            and not torch.is_grad_enabled()
            and (valid is None or bool(valid.all()))
            and bool(cache.key_valid[0, : cache.length].all())
        )

    def __call__(self, x: Tensor, cache) -> Tensor:
        """x [1, N, C] -> hidden [1, N, C]; appends N columns to ``cache`` (as ``Transformer.forward`` does)."""
        return torch.from_numpy(self.step(x[0].numpy(), cache))[None]

    def step(self, x: np.ndarray, cache) -> np.ndarray:
        """``__call__`` in NumPy: x [N, C] float32 -> hidden [N, C] (latentlm/row_loop.py calls it directly)."""
        n, start = x.shape[0], cache.length
        if start + n > cache.max_len:
            raise ValueError(
                f"Transformer: KV cache overflow: {start} columns filled + {n} new > max_len {cache.max_len}"
            )
        pos = int(cache.n_valid[0])  # every column valid (``covers``): the next position
        if pos + n > self.cfg.max_seq_len:
            raise ValueError(f"Transformer: RoPE positions must lie in [0, {self.cfg.max_seq_len})")
        cos, sin = self._rope_table()
        state = cache.__dict__.get("_onnx_feeds")  # kept on the cache: concurrent decodes share the runtime
        if state is None:
            views = []  # per layer: its [Hkv, S_max, Dh] keys and values, shared memory
            for k, v in zip(cache.k, cache.v):
                views += [k[0].numpy(), v[0].numpy()]
            heads = [view[j] for view in views for j in range(self.cfg.kv_heads)]  # [S_max, Dh], contiguous
            state = cache.__dict__["_onnx_feeds"] = (views, heads, {})
        views, heads, feeds = state  # the cache's own feeds: its decode is the only one writing them
        for name, arr in zip(self._names, heads):  # the filled columns of each head, without a copy
            feeds[name] = arr[:start]
        feeds.update(x=np.ascontiguousarray(x, dtype=np.float32), cos=cos[pos : pos + n], sin=sin[pos : pos + n])
        hidden, k_new, v_new = (self.wide if n > WIDE_ITEMS else self.session).run(None, feeds)
        for i in range(self.cfg.n_layers):
            views[2 * i][:, start : start + n] = k_new[i]
            views[2 * i + 1][:, start : start + n] = v_new[i]
        cache.key_valid[:, start : start + n] = True
        cache.length += n
        cache.n_valid += n
        return hidden


class OnnxHeadRuntime:
    """Runs a head's one-step samples (``steps=1``, no guidance, DPM-Solver++ grid) through ONNX Runtime: the
    same noise draws, the same x0 to float rounding."""

    def __init__(self, head: nn.Module, threads: int = 1, int8: bool = False):
        self.int8 = int8
        self.session = _session(_weights(export_one_step(head), int8), threads)

    def __call__(self, x_T: Tensor, cond: Tensor) -> Tensor:  # [M, D] float32, [M, C] -> [M, D] float32
        (x0,) = self.session.run(None, {"x_T": x_T.numpy(), "cond": cond.float().numpy()})
        return torch.from_numpy(x0)


class _BridgeNet(nn.Module):
    def __init__(self, bridge: nn.Module):
        super().__init__()
        self.bridge = bridge

    def forward(self, h: Tensor, z: Tensor, tokens: Tensor) -> Tensor:
        return self.bridge.predict(h, z, tokens)


def export_bridge(bridge: nn.Module) -> bytes:
    """The ONNX model (bytes) of a ``StepBridge``'s ``predict`` with M dynamic."""
    c = bridge.cfg
    args = (torch.zeros(2, c.dim), torch.zeros(2, c.latent_dim), torch.full((2, c.max_tokens), c.vocab))
    dynamic = {"h": {0: "M"}, "z": {0: "M"}, "tokens": {0: "M"}}
    return _export(_BridgeNet(bridge).eval(), args, ["h", "z", "tokens"], ["h_next"], dynamic)


class OnnxBridgeRuntime:
    """Runs a step bridge's predictions (latentlm/bridge.py) through ONNX Runtime: the same states to float
    rounding (float32), or with int8 weights."""

    def __init__(self, bridge: nn.Module, threads: int = 1, int8: bool = False):
        self.int8 = int8
        self.session = _session(_weights(export_bridge(bridge), int8), threads)

    def __call__(self, h: Tensor, z: Tensor, tokens: Tensor) -> Tensor:  # [M, C], [M, D], [M, K] -> [M, C]
        feeds = {"h": h.float().numpy(), "z": z.float().numpy(), "tokens": tokens.long().numpy()}
        (out,) = self.session.run(None, feeds)
        return torch.from_numpy(out)
