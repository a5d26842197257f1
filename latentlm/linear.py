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
            or x.device.type != "cpu"
            or rows > DECODE_ROWS
            or x.dtype != self.weight.dtype
        ):
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(rows, self.in_features)
        w = decode_weight(self)
        y = torch.mm(x2, w) if self.bias is None else torch.addmm(self.bias, x2, w)
        return y.view(*x.shape[:-1], self.out_features)
