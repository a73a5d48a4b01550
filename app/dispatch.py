"""Hands committed deliveries to the workers in batches, off the request path.

The webhook view only appends the new delivery id to an in-process buffer; a daemon thread
enqueues one RQ job per batch: DISPATCH_INTERVAL_MS after the oldest buffered id arrived
(bounded delay), or at once when DISPATCH_BATCH_SIZE ids wait. With nothing buffered the thread
sleeps. The request does no Redis round trip. If Redis is down, or the process dies before a
flush, nothing is lost: the delivery is committed as `received`, and
`jobs.deliveries.requeue_stuck_deliveries` (scheduled) enqueues whatever has waited longer than
REQUEUE_AFTER_SECONDS.

An enqueue is a fixed cost per batch (about 1 ms of CPU here, most of it Redis round trips), so
the interval sets how much of it each delivery carries under load (bench/RESULTS.md).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

Enqueue = Callable[[list[int]], None]


def enqueue_batch(ids: list[int]) -> None:
    """Enqueue one job that processes these deliveries (each in its own transaction).

    RQ writes the job in one MULTI/EXEC of its own and registers the queue in another; given a
    pipeline it puts both in it, so an enqueue is one round trip to Redis.
    """
    from app.queues import get_queue, job_id

    queue = get_queue("webhooks")
    with queue.connection.pipeline() as pipe:
        queue.enqueue(
            "jobs.deliveries.process_deliveries",
            ids,
            job_id=job_id("deliveries", ids[0], ids[-1], len(ids)),
            result_ttl=300,
            failure_ttl=7 * 24 * 3600,
            pipeline=pipe,
        )
        pipe.execute()


class Dispatcher:
    """Buffers delivery ids per process and flushes them as batches."""

    def __init__(self, interval_ms: int, batch_size: int, enqueue: Enqueue = enqueue_batch) -> None:
        self.interval = interval_ms / 1000
        self.batch_size = batch_size
        self.enqueue = enqueue
        self._ids: list[int] = []
        self._oldest: float = 0.0  # time.monotonic() when the first id of the buffer came
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def notify(self, delivery_id: int) -> None:
        """Note a committed delivery; with interval 0 it is enqueued at once (tests, CLI)."""
        if self.interval <= 0:
            self._send([delivery_id])
            return
        with self._lock:
            if not self._ids:
                self._oldest = time.monotonic()
            self._ids.append(delivery_id)
            count = len(self._ids)
        self._ensure_thread()
        if count == 1 or count >= self.batch_size:  # the thread sleeps, or a batch is full
            self._wake.set()

    def flush(self) -> int:
        """Enqueue everything buffered now; returns how many ids were handed over."""
        with self._lock:
            ids, self._ids = self._ids, []
        sent = 0
        for start in range(0, len(ids), self.batch_size):
            batch = ids[start : start + self.batch_size]
            if self._send(batch):
                sent += len(batch)
        return sent

    def _send(self, ids: list[int]) -> bool:
        try:
            self.enqueue(ids)
            return True
        except Exception:  # Redis down must not fail the webhook; the sweep retries (logged, not swallowed).
            logger.warning(
                "could not enqueue deliveries; the requeue sweep will pick them up",
                extra={"count": len(ids), "first_delivery": ids[0]},
                exc_info=True,
            )
            return False

    def _ensure_thread(self) -> None:
        # gunicorn forks workers after import: start one thread per process, lazily.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            if self._pid != os.getpid():
                atexit.register(self.flush)  # a worker that exits cleanly hands over what it holds
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="delivery-dispatcher", daemon=True)
            self._thread.start()

    def _due_in(self) -> float | None:
        """Seconds until the buffer is due (0: now), or None while it is empty."""
        with self._lock:
            if not self._ids:
                return None
            if len(self._ids) >= self.batch_size:
                return 0.0
            return self._oldest + self.interval - time.monotonic()

    def _run(self) -> None:
        while True:
            due = self._due_in()
            if due is not None and due <= 0:
                self.flush()
                continue
            # notify() sets the event for the first id and for a full batch. One set between
            # reading the buffer and this wait makes the wait return at once.
            self._wake.wait(due)
            self._wake.clear()


def init_app(app) -> None:  # type: ignore[no-untyped-def]
    """Attach a dispatcher to the app as `app.extensions["dispatcher"]`."""
    app.extensions["dispatcher"] = Dispatcher(
        app.config["DISPATCH_INTERVAL_MS"], app.config["DISPATCH_BATCH_SIZE"]
    )
