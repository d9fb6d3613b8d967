"""Dynamic batching: requests wait in a bounded queue; one worker thread runs them in batches.

The worker takes the oldest waiting job, then gathers more for up to `timeout_ms` or until it
has `max_batch`, and runs them in one call. When `max_queue` jobs are already waiting, `submit`
refuses at once (the server answers 503) instead of letting latency grow without bound.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future

logger = logging.getLogger(__name__)
_STOP = object()


class QueueFull(Exception):
    """The queue holds `max_queue` jobs; `retry_after` is a whole-second estimate of the wait."""

    def __init__(self, retry_after: int):
        super().__init__(f"queue full, retry after {retry_after} s")
        self.retry_after = retry_after


class DynamicBatcher:
    """run_batch: list of items -> list of results (same order), called from one worker thread."""

    def __init__(self, run_batch, max_batch: int = 4, timeout_ms: float = 10.0, max_queue: int = 32):
        if max_batch < 1 or max_queue < 1 or timeout_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1, timeout_ms >= 0")
        self.run_batch, self.max_batch, self.timeout = run_batch, max_batch, timeout_ms / 1000
        self.max_queue = max_queue
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._work, name="maskrcnn-batcher", daemon=True)
        self.seconds_per_batch = 1.0  # running estimate, for Retry-After
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # the latest batches run

    def start(self) -> None:
        """Start the worker thread that runs the queued items in batches (once, at the app's startup)."""
        self._thread.start()

    def submit(self, item) -> Future:
        """Queue `item`; the future gets its result. Raises QueueFull when the queue is full."""
        future: Future = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            waves = math.ceil((self._queue.qsize() + 1) / self.max_batch) + 1  # + the batch running
            raise QueueFull(max(1, math.ceil(waves * self.seconds_per_batch))) from None
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Finish the jobs already queued, then end the worker; waits at most `timeout` seconds
        (None: as long as that takes), after which the daemon worker is left to the process's end."""
        if self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                return
            self._thread.join(timeout)

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken into a batch."""
        return self._queue.qsize()

    def _work(self) -> None:
        stopping = False
        while not stopping:
            job = self._queue.get()
            if job is _STOP:
                return
            batch, deadline = [job], time.monotonic() + self.timeout
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                batch.append(job)
            self._run(batch)

    def _run(self, batch: list) -> None:
        batch = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        if not batch:
            return
        start = time.monotonic()
        try:
            results = self.run_batch([item for item, _ in batch])
        except Exception as exc:  # the requests get the error; the worker lives on
            logger.exception("batch of %d failed", len(batch))
            for _, future in batch:
                future.set_exception(exc)
            return
        self.seconds_per_batch = 0.8 * self.seconds_per_batch + 0.2 * (time.monotonic() - start)
        self.batch_sizes.append(len(batch))
        for (_, future), result in zip(batch, results):
            future.set_result(result)
