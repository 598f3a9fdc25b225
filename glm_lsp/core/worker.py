"""Model requests in flight: one worker thread per front-end connection, FIFO, cancellable.

The model runs on a single dedicated thread (not the front-end's pool, which also reads stdin), so
the event loop keeps answering while a generation runs; a second request waits its turn.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from glm_lsp.runtime.base import Cancelled

T = TypeVar("T")


@dataclass(eq=False)
class Job:
    command: str
    cancel: threading.Event = field(default_factory=threading.Event)
    msg_id: Any = None  # the executeCommand request id, for $/cancelRequest
    token: str | None = None  # the work-done progress token, for a progress cancel
    turn: int | None = None  # known once the worker starts it


class Worker:
    """One thread for every model request of this server; FIFO."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glm-worker")
        self._lock = threading.Lock()
        self.running: Job | None = None
        self.pending: list[Job] = []

    @property
    def busy(self) -> bool:
        return self.running is not None

    @property
    def queued(self) -> int:
        return len(self.pending)

    def jobs(self) -> list[Job]:
        with self._lock:
            return ([self.running] if self.running else []) + list(self.pending)

    async def run(self, job: Job, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        with self._lock:
            self.pending.append(job)

        def call() -> T:
            with self._lock:
                self.pending.remove(job)
                self.running = job
            try:
                if job.cancel.is_set():  # cancelled while it waited
                    raise Cancelled()
                return fn()
            finally:
                with self._lock:
                    self.running = None

        return await loop.run_in_executor(self.executor, call)

    def cancel_all(self) -> None:
        for job in self.jobs():
            job.cancel.set()

    def shutdown(self) -> None:
        self.cancel_all()
        self.executor.shutdown(wait=False, cancel_futures=True)


def wait_from_worker(future: Future[T], cancel: threading.Event, timeout: float | None = None) -> T:
    """The result of a coroutine the event loop runs for the worker thread (a question to the
    user, a client request); gives up, cancelling it, when the request is cancelled (Cancelled)
    or after `timeout` seconds (TimeoutError)."""
    waited = 0.0
    while True:
        try:
            return future.result(timeout=0.1)
        except FutureTimeout:
            waited += 0.1
            if cancel.is_set():
                future.cancel()
                raise Cancelled() from None
            if timeout is not None and waited >= timeout:
                future.cancel()
                raise TimeoutError(f"no answer within {timeout:.0f} s") from None
