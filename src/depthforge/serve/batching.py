"""Dynamic batching keyed by what a batch must share: requests with the same key (image size and options) are run
together, up to ``max_batch`` of them. A request waits for company, at most ``timeout`` seconds, only while
company is likely: others are on their way in (being uploaded and checked: `Batcher.arriving`) or the last
batch held several requests (clients are sending concurrently); a lone client's request runs at once. A key whose
batch is full or whose oldest request has waited its time goes first, so a photo of another size never waits behind
a batch it cannot join. The queue is bounded: a request over ``max_queue`` is refused at once (the server answers 503 with
Retry-After) instead of the queue growing without limit."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already; ``retry_after`` is a guess in seconds of when it has room."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    """One request waiting for its batch: what to run, and the future its answer goes to."""

    key: Hashable
    item: Any
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.monotonic)


class Batcher:
    """Runs ``run(items) -> results`` (one result or exception per item, in order) over batches of jobs that share
    a key, on one thread of its own (a model runs one batch at a time; its own threads use the cores)."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], max_batch: int = 8, timeout: float = 0.01,
                 max_queue: int = 64):
        self.run, self.max_batch, self.timeout, self.max_queue = run, max_batch, timeout, max_queue
        self.queues: dict[Hashable, deque[Job]] = {}
        self.waiting = 0
        self.incoming = 0  # requests on their way in (see arriving)
        self.last_batch = 0  # the size of the batch run last: several means concurrent clients
        self.seconds_per_item = 0.1  # a running mean of the run time per item, for Retry-After
        self.cond = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, name="depthforge-batcher", daemon=True)
        self.thread.start()

    def submit(self, key: Hashable, item: Any) -> Future:
        """Queue ``item``; its future gets its result (or exception). `QueueFull` when there is no room."""
        with self.cond:
            if self.stopped:
                raise RuntimeError("the batcher is stopped")
            if self.waiting >= self.max_queue:
                raise QueueFull(max(1, round(self.waiting * self.seconds_per_item)))
            job = Job(key, item)
            self.queues.setdefault(key, deque()).append(job)
            self.waiting += 1
            self.cond.notify()
            return job.future

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around a request's reading and checking, up to its `submit`: while any request is inside, queued
        ones wait (up to ``timeout``) for it to join their batch."""
        with self.cond:
            self.incoming += 1
        try:
            yield
        finally:
            with self.cond:
                self.incoming -= 1
                self.cond.notify()

    def stop(self) -> None:
        """Finish the jobs queued, then end the thread."""
        with self.cond:
            self.stopped = True
            self.cond.notify()
        self.thread.join()

    def _next(self) -> list[Job] | None:
        """The next batch (called holding the lock): a full one, else the one whose oldest job's wait is over or
        that no company is likely to join (oldest first); None to wait for ``timeout`` seconds or a new job."""
        now = time.monotonic()
        alone = (self.incoming == 0 and self.last_batch <= 1) or self.stopped
        ready = [q for q in self.queues.values()
                 if len(q) >= self.max_batch or now - q[0].queued >= self.timeout or alone]
        if not ready:
            return None
        queue = min(ready, key=lambda q: q[0].queued)
        batch = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
        if not queue:
            del self.queues[batch[0].key]
        self.waiting -= len(batch)
        self.last_batch = len(batch)
        return batch

    def _loop(self) -> None:
        while True:
            with self.cond:
                while (batch := self._next()) is None:
                    if self.stopped and not self.queues:
                        return
                    oldest = min((q[0].queued for q in self.queues.values()), default=None)
                    self.cond.wait(None if oldest is None else max(0.0, oldest + self.timeout - time.monotonic()))
            jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]  # a timed-out job is skipped
            if not jobs:
                continue
            start = time.monotonic()
            try:
                results = self.run([job.item for job in jobs])
            except Exception as err:  # the whole batch failed: each job gets the error
                results = [err] * len(jobs)
            per_item = (time.monotonic() - start) / len(jobs)
            self.seconds_per_item = 0.8 * self.seconds_per_item + 0.2 * per_item
            for job, result in zip(jobs, results):
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
