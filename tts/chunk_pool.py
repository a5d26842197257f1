"""A function over chunks of a list, in this process or in worker processes that receive the list once.

    with ChunkPool(data, workers=2) as pool:
        parts = pool.map(fn, obj)        # [fn(obj, chunk) for each chunk]; obj is sent with every call

Used by the HMM aligner (tts/phone_hmm.py: each EM step sends only the small aligner; the utterances' features
stay in the workers). ``fn`` must be a module-level function (it is pickled by name). BLAS is held to one
thread in this process and in the workers: on these small products OpenBLAS threads only spin (2x slower).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence

import numpy as np

_DATA: list = []  # a worker's list, set once by _init


def _one_blas_thread():
    """Limit BLAS to one thread (threadpoolctl comes with scikit-learn); returns the limiter, or None."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1)


def _init(data: list) -> None:
    global _DATA
    _DATA = data
    _one_blas_thread()


def _work(job: tuple) -> object:
    fn, obj, lo, hi = job
    return fn(obj, _DATA[lo:hi])


class ChunkPool:
    """Runs ``fn(obj, chunk)`` over chunks of ``data``: in this process (``workers`` <= 1: one chunk, the whole
    list), or in ``workers`` processes (4 chunks per worker)."""

    def __init__(self, data: Sequence, workers: int):
        self.data, self.workers, self.pool, self.limit = list(data), workers, None, None

    def __enter__(self) -> ChunkPool:
        self.limit = _one_blas_thread()
        if self.workers > 1 and len(self.data) > 1:
            self.pool = mp.Pool(self.workers, initializer=_init, initargs=(self.data,))
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
        if self.limit is not None:
            self.limit.restore_original_limits()

    def map(self, fn: Callable, obj) -> list:
        if self.pool is None:
            return [fn(obj, self.data)]
        edges = np.linspace(0, len(self.data), 4 * self.workers + 1).astype(int)
        jobs = [(fn, obj, int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
        return self.pool.map(_work, jobs)
