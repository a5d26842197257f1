"""Resampling a stream chunk by chunk (the server's pcm answers: the model's rate -> OpenAI's 24 kHz).

rs = StreamResampler(16000, 24000)
for chunk in chunks: send(rs.feed(chunk))
send(rs.flush())                      # together: scipy.signal.resample_poly(whole signal, 3, 2)
"""

from __future__ import annotations

import numpy as np


class StreamResampler:
    """Polyphase resampling of a stream, chunk by chunk, equal (to float rounding) to ``scipy.signal.resample_poly``
    of the whole signal with its default Kaiser FIR: rate_in -> rate_out = rate_in * up / down.

    y[m] = sum_i h[down * m + half - up * i] x[i]   (h: 2 * half + 1 taps, half = 10 * max(up, down); zero outside)

    ``feed(x)`` returns the outputs whose inputs are all known; ``flush()`` the rest (ceil(N * up / down) in all)."""

    def __init__(self, rate_in: int, rate_out: int):
        from math import gcd

        from scipy.signal import firwin

        g = gcd(rate_in, rate_out)
        self.up, self.down = rate_out // g, rate_in // g
        self.half = 10 * max(self.up, self.down)
        if self.up == self.down:  # the same rate: y = x (the FIR below would be a unit impulse)
            self.h = np.ones(1)
            self.half = 0
        else:
            self.h = (
                firwin(2 * self.half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
            )
        self.taps = len(self.h) // self.up + 2  # inputs one output can touch (and a margin)
        self.x = np.zeros(0, np.float64)  # the inputs still needed, from global index self.start
        self.start = 0
        self.n = 0  # inputs seen
        self.m = 0  # next output index

    def _first_input(self, m):
        """The first input output(s) m read: ceil((down * m + half - (L - 1)) / up)."""
        return -((len(self.h) - 1 - (self.down * m + self.half)) // self.up)

    def _outputs(self, stop: int) -> np.ndarray:
        m = np.arange(self.m, stop)  # [M]
        if m.size == 0:
            return np.zeros(0, np.float32)
        i = self._first_input(m)[:, None] + np.arange(self.taps)[None]  # [M, taps] global input indices
        k = (self.down * m + self.half)[:, None] - self.up * i  # [M, taps] filter taps
        ok = (k >= 0) & (k < len(self.h)) & (i >= 0) & (i < self.n)
        taps = self.h[np.clip(k, 0, len(self.h) - 1)]
        x = self.x[np.clip(i - self.start, 0, max(len(self.x) - 1, 0))]  # inputs before start are never read
        y = np.where(ok, taps * x, 0.0).sum(axis=1)  # [M]
        self.m = stop
        keep = max(int(self._first_input(stop)), 0)
        if keep > self.start:  # drop the inputs no later output reads
            self.x, self.start = self.x[keep - self.start :], keep
        return y.astype(np.float32)

    def feed(self, x: np.ndarray) -> np.ndarray:
        self.x = np.concatenate([self.x, np.asarray(x, np.float64).reshape(-1)])
        self.n += int(np.size(x))
        # output m is complete when its last input, floor((down * m + half) / up), is known (< n)
        stop = max((self.up * self.n - self.half - 1) // self.down + 1, self.m)
        return self._outputs(stop)

    def flush(self) -> np.ndarray:
        total = -(-self.n * self.up // self.down)
        return self._outputs(max(total, self.m))
