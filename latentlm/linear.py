"""Linear layers for CPU decoding: a cached, contiguous [in, out] copy of the weight.

A decode step multiplies a few rows (batch x CFG) by every weight of the model once, so on a CPU its time is
the time to stream the weights through the caches. ``F.linear`` hands the BLAS a transposed [out, in] weight,
which it repacks on every call for so few rows; a contiguous [in, out] copy is read once, in order. Measured on
the 2-core development machine (benchmarks/bench_tts.py, demo release): about 15% less wall time per frame,
outputs equal to float rounding.

``DecodeLinear`` is an ``nn.Linear`` (same parameters, same state_dict keys) that takes that path for small
no-grad CPU calls and the ordinary one otherwise (training, prefill of long prompts, GPUs). ``decode_weight``
gives the cached copy to code that calls ``torch.mm`` itself (the diffusion head's solver loop). The copy is
rebuilt whenever the weight changes (optimizer step, ``load_state_dict``, ``.to``), detected by the weight's
storage, dtype and version counter. The copies double the memory of the weights a CPU decodes with (the demo
model: 28 MB more); nothing is copied on GPUs or in training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DECODE_ROWS = 64  # calls with at most this many rows take the decode path


def decode_weight(linear: nn.Linear) -> Tensor:
    """``linear.weight`` as a contiguous [in, out] tensor without gradient, cached on the module."""
    w = linear.weight
    key = (w.data_ptr(), w.dtype, w.device, w._version, tuple(w.shape))
    cached = linear.__dict__.get("_decode_weight")
    if cached is None or cached[0] != key:
        cached = (key, w.detach().t().contiguous())
        linear.__dict__["_decode_weight"] = cached  # not a buffer: never saved, never moved by .to()
    return cached[1]


class DecodeLinear(nn.Linear):
    """``nn.Linear`` that multiplies small no-grad CPU batches by ``decode_weight(self)``.

    x [..., in] -> [..., out], identical in meaning to ``nn.Linear`` (results equal to float rounding)."""

    def forward(self, x: Tensor) -> Tensor:
        rows = x.numel() // max(self.in_features, 1)
        if (
            torch.is_grad_enabled()
            or torch.onnx.is_in_onnx_export()  # the parameter exports as a weight ONNX tools recognise
            or x.device.type != "cpu"
            or rows > DECODE_ROWS
            or x.dtype != self.weight.dtype
        ):
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(rows, self.in_features)
        w = decode_weight(self)
        y = torch.mm(x2, w) if self.bias is None else torch.addmm(self.bias, x2, w)
        return y.view(*x.shape[:-1], self.out_features)


def quantize_int8(module: nn.Module) -> nn.Module:
    """In place, for CPU inference only: every linear layer under ``module`` (``DecodeLinear`` or ``nn.Linear``)
    becomes torch's dynamic int8 ``Linear`` (weights int8 per output channel; activations quantised on the fly,
    per call), and the module is put in eval mode. A decode step of a large trunk streams its weights through
    the caches, so a quarter of the bytes is most of the gain: measured on the 2-core development machine, one
    cached step of an untrained 88M-parameter trunk (768 x 12) took 10 ms against 26 ms in float32 (bf16: 33 ms);
    the 7M demo trunk, bound by per-op overhead, gained 7%. The quantised module cannot be trained or moved to a
    GPU. torch marks ``torch.ao.quantization`` deprecated (torchao replaces it); the pinned torch 2.11 has it and
    its fbgemm kernels (torch's weight-only ``_weight_int8pack_mm`` measured 4x slower than float32 here).
    -> ``module``."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as e:
        raise RuntimeError(f"int8 needs torch.ao.quantization (torch 2.11 has it): {e}") from None

    def plain(m: nn.Module) -> None:  # torch's converter takes exact nn.Linear only
        for name, child in m.named_children():
            if isinstance(child, DecodeLinear):
                lin = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                lin.load_state_dict(child.state_dict())
                setattr(m, name, lin)
            else:
                plain(child)

    plain(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        quantize_dynamic(module.eval(), {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
    return module
