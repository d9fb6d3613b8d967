"""Graceful shutdown of `maskrcnn serve`: SIGTERM (or Ctrl-C) starts a grace period.

From the signal on, the server takes no new connections (uvicorn closes idle ones); requests in
flight are finished when the model is done with them before the grace period ends,
and answered 503 ("server shutting down") when it ends. The server then exits without waiting
for the model call still running (its thread is a daemon) and without cancelling request tasks,
so no CancelledError reaches the log.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future

import uvicorn


class ShuttingDown(Exception):
    """The grace period ended before the request's result was ready."""


class Shutdown:
    """The drain state shared by the server (`begin`, from the signal handler) and the requests."""

    def __init__(self, grace: float):
        self.grace = grace
        self.deadline: float | None = None  # time.monotonic() at which requests get 503
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called once the event loop runs (the app's startup)."""
        self._loop, self._event = loop, asyncio.Event()

    @property
    def draining(self) -> bool:
        """Whether the grace period has begun (a signal asked the server to stop)."""
        return self.deadline is not None

    def begin(self) -> None:
        """Start the grace period; safe to call from a signal handler."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grace
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._event.set)

    async def result(self, future: Future):
        """The batcher's result for `future`, or ShuttingDown once the grace period is over."""
        job = asyncio.wrap_future(future)
        if self._event is None:
            return await job
        drain = asyncio.ensure_future(self._grace_over())
        done, _ = await asyncio.wait({job, drain}, return_when=asyncio.FIRST_COMPLETED)
        if job in done:
            drain.cancel()
            return job.result()
        job.cancel()  # a job not started yet is then skipped by the batcher
        raise ShuttingDown

    async def _grace_over(self) -> None:
        await self._event.wait()
        await asyncio.sleep(max(0.0, self.deadline - time.monotonic()))


class GracefulServer(uvicorn.Server):
    """uvicorn's server, telling `shutdown` when a signal asks it to stop."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown):
        super().__init__(config)
        self.drain = shutdown

    def handle_exit(self, sig, frame) -> None:
        """uvicorn's signal handler (SIGINT, SIGTERM): starts the grace period, then uvicorn's own exit
        (no new connections; it waits for the requests in flight)."""
        self.drain.begin()
        super().handle_exit(sig, frame)


def serve(app, host: str, port: int, grace: float) -> None:
    """Run `app` (from `create_app`, whose `state.shutdown` is a Shutdown) until a signal."""
    # uvicorn's own limit only backs ours up: every request is answered by the grace period's end
    config = uvicorn.Config(app, host=host, port=port, log_level="info",
                            timeout_graceful_shutdown=grace + 5)
    GracefulServer(config, app.state.shutdown).run()
