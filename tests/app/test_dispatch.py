"""The batching dispatcher: deliveries reach the workers in batches, after a bounded delay, never lost."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import select

from app.dispatch import Dispatcher, enqueue_batch
from app.models import DeliveryStatus, WebhookDelivery
from tests.conftest import WOO_DOMAIN, fixture_bytes

WAIT = 10.0  # seconds a test waits for the dispatcher thread at most (a slow CI host)


class Recorder:
    """An enqueue function that notes each batch and when it came."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[float, list[int]]] = []
        self.fail = fail
        self.arrived = threading.Event()

    def __call__(self, ids: list[int]) -> None:
        if self.fail:
            raise ConnectionError("redis is down")
        self.batches.append((time.monotonic(), list(ids)))
        self.arrived.set()

    def wait_for(self, count: int) -> list[int]:
        """Wait until `count` ids were enqueued; return them in order."""
        deadline = time.monotonic() + WAIT
        while sum(len(b) for _, b in self.batches) < count and time.monotonic() < deadline:
            self.arrived.wait(0.05)
            self.arrived.clear()
        return [i for _, batch in self.batches for i in batch]


def test_ids_wait_for_the_interval_then_go_as_one_batch():
    # given a dispatcher that waits 300 ms
    recorder = Recorder()
    dispatcher = Dispatcher(interval_ms=300, batch_size=100, enqueue=recorder)

    # when three deliveries come in
    start = time.monotonic()
    for delivery_id in (1, 2, 3):
        dispatcher.notify(delivery_id)

    # then they reach the queue together, in order, no sooner than the interval after the first
    assert recorder.wait_for(3) == [1, 2, 3]
    [(sent_at, _)] = recorder.batches
    assert sent_at - start >= 0.3


def test_a_full_batch_goes_at_once_without_waiting_for_the_interval():
    # given a dispatcher with a long interval and batches of 4
    recorder = Recorder()
    dispatcher = Dispatcher(interval_ms=60_000, batch_size=4, enqueue=recorder)

    # when 4 deliveries come in
    for delivery_id in range(1, 5):
        dispatcher.notify(delivery_id)

    # then the full batch is enqueued long before the interval
    assert recorder.wait_for(4) == [1, 2, 3, 4]


def test_later_deliveries_start_a_new_batch_with_their_own_delay():
    # given a dispatcher that already sent one batch
    recorder = Recorder()
    dispatcher = Dispatcher(interval_ms=100, batch_size=100, enqueue=recorder)
    dispatcher.notify(1)
    assert recorder.wait_for(1) == [1]

    # when another delivery comes in after it
    dispatcher.notify(2)

    # then it goes in a batch of its own, and no empty batch was ever enqueued
    assert recorder.wait_for(2) == [1, 2]
    assert [batch for _, batch in recorder.batches] == [[1], [2]]


def test_flush_splits_what_it_holds_into_batches():
    # given a dispatcher holding 5 ids with batches of 2 (interval long, so the thread waits)
    recorder = Recorder()
    dispatcher = Dispatcher(interval_ms=60_000, batch_size=2, enqueue=recorder)
    dispatcher._ids = [1, 2, 3, 4, 5]

    # when it is flushed (as at the process's exit)
    sent = dispatcher.flush()

    # then every id went, in batches of at most 2
    assert sent == 5
    assert [batch for _, batch in recorder.batches] == [[1, 2], [3, 4], [5]]


def test_an_enqueue_failure_is_logged_and_counted_not_raised(caplog):
    # given Redis refusing the enqueue
    dispatcher = Dispatcher(interval_ms=60_000, batch_size=10, enqueue=Recorder(fail=True))
    dispatcher._ids = [7, 8]

    # when the dispatcher flushes
    with caplog.at_level(logging.WARNING, logger="app.dispatch"):
        sent = dispatcher.flush()

    # then nothing counts as handed over and the warning says the sweep will pick them up
    assert sent == 0
    assert "requeue sweep" in caplog.text


@pytest.mark.sqlite_only
def test_enqueue_batch_puts_one_job_with_the_ids_on_the_webhooks_queue(app, redis_url):
    # when a batch is enqueued
    enqueue_batch([11, 12, 13])

    # then one job processes exactly those deliveries, and the queue is registered for workers
    conn = Redis.from_url(redis_url)
    queue = Queue("webhooks", connection=conn)
    [job] = queue.get_jobs()
    assert job.func_name == "jobs.deliveries.process_deliveries"
    assert job.args == ([11, 12, 13],)
    assert "webhooks" in [q.name for q in Queue.all(connection=conn)]


def test_deliveries_posted_with_batching_on_are_processed_and_earn(app, make_shop, post_webhook, work, runner, session):
    # given the app's dispatcher batching as in production (50 ms)
    app.extensions["dispatcher"] = Dispatcher(interval_ms=50, batch_size=200)
    make_shop("woocommerce")

    # when the real paid WooCommerce order arrives, then the batch reaches Redis and a worker runs it
    response = post_webhook("woocommerce", "order.created", fixture_bytes("woocommerce", "order_created.json"))
    assert response.status_code == 200
    deadline = time.monotonic() + WAIT
    while work() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)

    # then the delivery is processed and the customer holds its 25 points
    session.expire_all()
    [delivery] = session.scalars(select(WebhookDelivery)).all()
    session.commit()
    assert delivery.status == DeliveryStatus.PROCESSED
    result = runner.invoke(args=["customers", "show", "--shop", WOO_DOMAIN, "--email", "jane.doe@example.test",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["pending"] == 25
