"""One worker thread runs jobs one at a time in arrival order; a bounded line of jobs waits behind it.

The model pair holds one KV cache, so generations cannot overlap. The worker is a plain thread: OpenVINO's
infer calls release the GIL, so the event loop keeps answering (health checks, queueing) during a generation.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("edgespec.serve")

Job = Callable[[], None]


class QueueFull(Exception):
    def __init__(self, waiting: int, retry_after: int):
        super().__init__(f"{waiting} jobs waiting")
        self.waiting = waiting
        self.retry_after = retry_after


class Scheduler:
    def __init__(self, max_waiting: int = 8):
        self.max_waiting = max_waiting
        self._line: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()  # the size check and the put happen as one
        self._mean_s = 1.0  # recent seconds per job, for Retry-After
        self.busy = False
        self._thread = threading.Thread(target=self._work, name="edgespec-generate", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._line.qsize()

    def submit(self, job: Job) -> None:
        """Queue `job`; raises QueueFull when max_waiting jobs already wait."""
        with self._lock:
            waiting = self._line.qsize()
            if waiting >= self.max_waiting:
                raise QueueFull(waiting, self.retry_after(waiting))
            self._line.put(job)

    def retry_after(self, waiting: int) -> int:
        """Whole seconds until the line has likely moved by one: the running job and those waiting."""
        return max(1, math.ceil((waiting + 1) * self._mean_s))

    def close(self, timeout: float = 5.0) -> None:
        self._line.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while (job := self._line.get()) is not None:
            self.busy = True
            start = time.perf_counter()
            try:
                job()
            except Exception:  # a job reports its own errors; this only keeps the worker alive
                log.exception("a job failed")
            finally:
                self.busy = False
                self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - start)
