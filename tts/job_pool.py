"""A bounded worker pool for the HTTP server: ``workers`` threads share one loaded model; at most ``max_queue``
more jobs wait; beyond that ``submit`` refuses at once (``QueueFull``: the server's 429), never hangs.

    pool = JobPool(workers=1, max_queue=4)
    job = pool.submit(lambda: tts.stream(...))        # in the event loop; the iterator runs in a worker thread
    first = await job.next()                         # its items arrive as they are made; errors are re-raised here
    job.cancel()                                     # e.g. the client left: the worker stops after the item it is on

A job holds its place from ``submit`` until its worker has finished it, or until it is cancelled while it still
waits (then it is skipped), so ``busy + queued`` never exceeds ``workers + max_queue``. Items are handed to the
event loop as they come (unbounded: audio is small), so a slow reader does not hold a worker.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_END = object()


class QueueFull(RuntimeError):
    """Every worker is busy and the queue is full."""


class Job:
    """The items of one job, fed from its worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_cancel: Callable[[Job], None] | None = None):
        self._loop = loop
        self._items: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self._on_cancel = on_cancel
        self.state = "queued"  # -> "running" -> "done", or "queued" -> "dropped" (cancelled before it ran)

    def _put(self, item: Any) -> None:  # worker thread
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the loop is closed (server shutting down)
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()
        if self._on_cancel is not None:
            self._on_cancel(self)

    async def next(self) -> Any:
        """The next item; StopAsyncIteration at the end; the job's exception if it raised."""
        item = await self._items.get()
        if item is _END:
            self._items.put_nowait(_END)  # stays at the end for later calls
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def __aiter__(self) -> Job:
        return self

    async def __anext__(self) -> Any:
        return await self.next()


class JobPool:
    def __init__(self, workers: int = 1, max_queue: int = 8):
        if workers < 1 or max_queue < 0:
            raise ValueError(f"workers must be >= 1 and max_queue >= 0, got {workers}, {max_queue}")
        self.workers, self.max_queue = workers, max_queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="tts-worker")
        self._lock = threading.Lock()
        self._admitted = 0  # submitted, not yet finished
        self._running = 0

    def stats(self) -> dict:
        with self._lock:
            return {
                "workers": self.workers,
                "max_queue": self.max_queue,
                "busy": self._running,
                "queued": self._admitted - self._running,
            }

    def submit(self, produce: Callable[[], Iterable[Any]]) -> Job:
        """Run ``produce()`` in a worker and stream its items to the returned Job (call from the event loop)."""
        with self._lock:
            if self._admitted >= self.workers + self.max_queue:
                raise QueueFull(
                    f"the server is busy: {self.workers} request(s) running and {self.max_queue} waiting; retry later"
                )
            self._admitted += 1
        job = Job(asyncio.get_running_loop(), on_cancel=self._drop)
        try:
            self._executor.submit(self._run, produce, job)
        except RuntimeError:  # shut down
            with self._lock:
                self._admitted -= 1
            raise
        return job

    def _drop(self, job: Job) -> None:
        """A job cancelled while it waits gives its queue place back at once (its worker will skip it)."""
        with self._lock:
            if job.state == "queued":
                job.state = "dropped"
                self._admitted -= 1

    async def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in a worker (same queue and limits); its result or its exception."""
        return await self.submit(lambda: [fn()]).next()

    def _run(self, produce: Callable[[], Iterable[Any]], job: Job) -> None:
        final: Any = _END
        with self._lock:
            if job.state == "dropped":  # the client left while the job waited: its place is already free
                job._put(_END)
                return
            job.state = "running"
            self._running += 1
        try:
            if not job.cancelled.is_set():
                items = iter(produce())
                try:
                    for item in items:
                        job._put(item)
                        if job.cancelled.is_set():
                            break
                finally:
                    close = getattr(items, "close", None)
                    if close is not None:
                        close()
        except BaseException as e:  # handed to the request that waits for it
            final = e
        finally:
            with self._lock:  # the slot is free before the end is seen
                job.state = "done"
                self._running -= 1
                self._admitted -= 1
            job._put(final)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
