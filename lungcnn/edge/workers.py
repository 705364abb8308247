"""Classifying many scans at once: worker threads, each leasing a classifier of its own (a
TFLite interpreter must not be shared between threads), with results in input order.

Decoding, resizing and the invoke run in C with the GIL released, so threads use several
cores without a second process or a second copy of the start-up. Each scan is classified
exactly as it would be alone: the answers do not depend on the number of workers.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

from lungcnn.edge.api import Classifier

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_DEFAULT_WORKERS = 4
# Each worker holds an interpreter and its threads; far past the cores they only cost memory
# (and an unbounded --threads crashed the runtime).
MAX_WORKERS = 64
MAX_THREADS = 64
LOOKAHEAD = 2  # items queued per worker beyond the one it is classifying


def default_workers() -> int:
    """The CPUs this process may use, at most MAX_DEFAULT_WORKERS."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, available))


class Classifiers:
    """Replicas of one classifier (same model and manifest, own interpreter), lent to one
    thread at a time; at most `limit` exist, made on first need unless `eager`."""

    def __init__(self, first: Classifier, limit: int, *, eager: bool = False):
        self.first = first
        self._idle: queue.SimpleQueue[Classifier] = queue.SimpleQueue()
        self._idle.put(first)
        self._made, self._limit = 1, max(1, limit)
        self._lock = threading.Lock()
        while eager and self._may_make():
            self._idle.put(first.replica())

    def _may_make(self) -> bool:
        """Whether one more replica may be made (and it is counted)."""
        with self._lock:
            if self._made >= self._limit:
                return False
            self._made += 1
            return True

    @contextmanager
    def lease(self):
        try:
            classifier = self._idle.get_nowait()
        except queue.Empty:
            classifier = self.first.replica() if self._may_make() else self._idle.get()
        try:
            yield classifier
        finally:
            self._idle.put(classifier)


def classify_in_order(classifier: Classifier, work: Callable[[Classifier, Item], Result],
                      items: Iterable[Item], workers: int) -> Iterator[Result]:
    """`work(classifier, item)` for every item, on up to `workers` threads (as many as the
    system lets start; none: in this thread), yielded in the items' order. Closing the
    iterator early cancels what has not started and waits for what has."""
    pool = _ThreadPool(classifier, workers) if workers > 1 else None
    if pool is None or not pool.threads:
        yield from (work(classifier, item) for item in items)
        return
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) > len(pool.threads) * LOOKAHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.close(pending)


class _ThreadPool:
    """Threads started up front, each leasing a classifier; a thread the system refuses to
    start (`can't start new thread`) only means fewer workers."""

    def __init__(self, classifier: Classifier, workers: int):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        for number in range(workers):
            thread = threading.Thread(target=self._serve, name=f"lungcnn-classify-{number}",
                                      daemon=True)
            try:
                thread.start()
            except RuntimeError:
                break
            self.threads.append(thread)
        self._classifiers = Classifiers(classifier, len(self.threads))

    def submit(self, work: Callable, item) -> Future:
        future: Future = Future()
        self._jobs.put((future, work, item))
        return future

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, work, item = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with self._classifiers.lease() as leased:
                    future.set_result(work(leased, item))
            except BaseException as error:  # handed to the caller by future.result()
                future.set_exception(error)

    def close(self, pending: Iterable[Future]) -> None:
        for future in pending:
            future.cancel()
        for _ in self.threads:
            self._jobs.put(None)
        for thread in self.threads:
            thread.join()
