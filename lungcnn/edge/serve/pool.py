"""Bounded inference: a fixed number of worker threads, each leasing its own Classifier
(`edge.workers.Classifiers`), behind an admission counter.

A request is admitted before its body is read, so a full server refuses work (503) without
holding the upload; an admitted request keeps its slot until its job has finished, even if
the client went away.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from lungcnn.edge.api import Classifier
from lungcnn.edge.workers import Classifiers

T = TypeVar("T")


class Busy(Exception):
    """Every slot is taken: the request is refused with 503."""


class InferencePool:
    def __init__(self, make_classifier: Callable[[], Classifier], workers: int,
                 queue_limit: int):
        # Loaded before serving (a bad model stops startup); the other workers get replicas.
        self.first = make_classifier()
        self._classifiers = Classifiers(self.first, workers, eager=True)
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="lungcnn-inference")
        self.capacity = workers + queue_limit
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Requests admitted and not finished: running or waiting for a worker."""
        return self._in_flight

    def admit(self) -> None:
        """Take a slot or raise Busy; the caller must `release` it or hand it to `run`."""
        with self._lock:
            if self._in_flight >= self.capacity:
                raise Busy(f"server busy: {self.capacity} requests in progress or queued; "
                           "retry later")
            self._in_flight += 1

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    async def run(self, job: Callable[[Classifier], T]) -> T:
        """Run `job` with a free Classifier on a worker thread; the admitted slot is
        released when the job ends, not when the caller stops waiting."""
        try:
            future = self._executor.submit(self._with_classifier, job)
        except RuntimeError:  # shutting down
            self.release()
            raise Busy("server shutting down") from None
        future.add_done_callback(lambda _: self.release())
        return await asyncio.wrap_future(future)

    def _with_classifier(self, job: Callable[[Classifier], T]) -> T:
        with self._classifiers.lease() as classifier:
            return job(classifier)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
