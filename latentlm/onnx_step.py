"""ONNX Runtime for the per-frame decode work: the trunk's cached step on one row, and a one-step head.

A decode step of the small models is bound by per-op overhead in eager PyTorch (~250 small ops for a 6-layer
trunk, ~12 us each on this CPU). Written as ONNX graphs and run by ONNX Runtime (already installed with faster-whisper),
the same arithmetic runs as one native graph. Measured on the 2-core development machine (demo release, one
row): ``benchmarks/bench_tts.py --backend onnx``.

- the trunk's arithmetic for N new positions of ONE row after S cached ones: latentlm/onnx_trunk.py's graph on
  ONNX Runtime's fused operators, reading and writing the ``KVCache`` buffers in place (the runtime is used only
  where every cached column of the row is valid).
- a head's one-step sample (``distill.one_step``: x0 from x_T at t = T-1): latentlm/onnx_head.py's graph.
- a step bridge's prediction (latentlm/bridge.py): traced by ``torch.onnx.export``.
- ``OnnxTrunkRuntime`` / ``OnnxHeadRuntime``: sessions built in memory (nothing written to disk), called by
  ``Transformer.forward`` and ``DiffusionHead.sample`` through their ``runtime`` hooks where the call is one
  they cover, so decoding code does not change; every other call (prefill of several rows, training, guidance,
  multi-step heads) runs eager as before.

Dimension legend: N new positions, S cached columns (S_max allocated), C width, M rows of a head call, D latent
dim.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from latentlm.onnx_graph import OPSET

WIDE_THREADS, WIDE_ITEMS = 2, 16  # trunk calls of more than WIDE_ITEMS items run on WIDE_THREADS threads


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
            quantize_dynamic(
                onnx.load_from_string(model), out, per_channel=True, weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # past ONNX Runtime's own operators
            )
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
    through ONNX Runtime (latentlm/onnx_trunk.py's graph); ``covers`` says which calls. The cache stays the trunk's
    ``KVCache``: the graph reads and writes its buffers in place, bound once per cache and session, so eager and
    runtime calls can alternate."""

    def __init__(self, trunk: nn.Module, threads: int = 1, int8: bool = False):
        from latentlm.onnx_trunk import trunk_step_graph

        if next(trunk.parameters()).device.type != "cpu":
            raise ValueError("the ONNX Runtime path runs on the CPU; move the model there first")
        if trunk.cfg.head_dim % 16:  # GroupQueryAttention's rotary kernels (ONNX Runtime 1.32) refuse others
            raise ValueError(
                f"the ONNX Runtime trunk step needs a head dim that is a multiple of 16 (ONNX Runtime's "
                f"GroupQueryAttention with RoPE); this trunk's is {trunk.cfg.head_dim}: use the PyTorch backend"
            )
        self.cfg = trunk.cfg
        self.int8 = int8  # its weights quantised (what a front end loaded is then visible)
        model = _weights(trunk_step_graph(trunk), int8)
        self.session = _session(model, threads)
        # calls of many items (a prefill: a prompt and its text) are matrix products that a second thread
        # speeds up, unlike the one-item steps (measured: a 330-item prefill 37 -> 30 ms); the same graph
        self.wide = _session(model, max(threads, WIDE_THREADS)) if threads < WIDE_THREADS else self.session

    def covers(self, x: Tensor, valid: Tensor | None, positions: Tensor | None, cache) -> bool:
        return (
            cache is not None
            and x.shape[0] == 1
            and positions is None
            and x.dtype == torch.float32
            and cache.k[0].dtype == torch.float32
            and not torch.is_grad_enabled()
            and (valid is None or bool(valid.all()))
            and bool(cache.key_valid[0, : cache.length].all())
        )

    def __call__(self, x: Tensor, cache) -> Tensor:
        """x [1, N, C] -> hidden [1, N, C]; appends N columns to ``cache`` (as ``Transformer.forward`` does)."""
        return torch.from_numpy(self.step(x[0].numpy(), cache))[None]

    def _binding(self, session, cache):
        """The IO binding of ``session`` for ``cache``: every layer's key/value buffer bound as both the past and
        the present of its attention (shared memory, written in place), made once per cache; kept on the cache,
        so decodes running at once (the server's workers) share the runtime, each with its own cache."""
        import onnxruntime as ort

        bindings = cache.__dict__.setdefault("_onnx_bindings", {})
        if id(session) not in bindings:
            if not all(t.is_contiguous() for t in cache.k + cache.v):
                raise ValueError("OnnxTrunkRuntime: the cache's buffers must be contiguous (it writes them in place)")
            io = session.io_binding()
            for i, (k, v) in enumerate(zip(cache.k, cache.v)):
                for kind, buf in (("key", k), ("value", v)):
                    val = ort.OrtValue.ortvalue_from_numpy(buf.numpy())  # [1, Hkv, S_max, Dh], no copy
                    io.bind_ortvalue_input(f"past_{kind}{i}", val)
                    io.bind_ortvalue_output(f"present_{kind}{i}", val)
            bindings[id(session)] = (session, io)
        return bindings[id(session)][1]

    def step(self, x: np.ndarray, cache) -> np.ndarray:
        """``__call__`` in NumPy: x [N, C] float32 -> hidden [N, C] (latentlm/row_loop.py calls it directly)."""
        n, start = x.shape[0], cache.length
        if start + n > cache.max_len:
            raise ValueError(
                f"Transformer: KV cache overflow: {start} columns filled + {n} new > max_len {cache.max_len}"
            )
        if int(cache.n_valid[0]) != start:  # every column valid (``covers``): positions are the columns
            raise ValueError("OnnxTrunkRuntime: the cache's positions are not its columns")
        if start + n > self.cfg.max_seq_len:
            raise ValueError(f"Transformer: RoPE positions must lie in [0, {self.cfg.max_seq_len})")
        session = self.wide if n > WIDE_ITEMS else self.session
        io = self._binding(session, cache)
        x = np.ascontiguousarray(x[None], dtype=np.float32)  # [1, N, C], alive until the run returns
        io.bind_cpu_input("x", x)
        io.bind_cpu_input("seqlens_k", np.array([start + n - 1], dtype=np.int32))
        io.bind_cpu_input("total_len", np.array(start + n, dtype=np.int32))
        hidden = np.empty((1, n, self.cfg.dim), dtype=np.float32)  # written by the run (no output copied back)
        io.bind_output("hidden", "cpu", 0, np.float32, hidden.shape, hidden.ctypes.data)
        session.run_with_iobinding(io)
        hidden = hidden[0]  # [N, C]
        cache.key_valid[:, start : start + n] = True
        cache.length += n
        cache.n_valid += n
        return hidden


class OnnxHeadRuntime:
    """Runs a head's one-step samples (``steps=1``, no guidance, DPM-Solver++ grid) through ONNX Runtime: the
    same noise draws, the same x0 to float rounding."""

    def __init__(self, head: nn.Module, threads: int = 1, int8: bool = False):
        from latentlm.onnx_head import one_step_graph

        self.int8 = int8
        self.session = _session(_weights(one_step_graph(head), int8), threads)

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
