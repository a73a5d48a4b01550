"""The per-shop cost bucket shared in Redis (app.rate_limits) against the real redis-server.

Each `RedisThrottle` below gets a connection of its own, as a worker process on another machine
would; what one learns, the others pace by.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import responses
from redis import Redis

from app.rate_limits import RedisThrottle
from connectors.errors import RateLimitedError, TransientError
from connectors.shopify import client
from connectors.throttle import BucketStatus, Throttle
from tests.conftest import free_port

SHOP = "demo-laden.myshopify.com"
GRAPHQL = f"https://{SHOP}/admin/api/2026-07/graphql.json"


class Sleeps:
    """A `sleep` that records instead of sleeping (Redis's clock still runs on)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def worker(redis_url: str, sleep: Any = None, **kw: Any) -> RedisThrottle:
    """A throttle on a connection of its own (one per simulated worker process)."""
    return RedisThrottle(Redis.from_url(redis_url), platform="shopify", sleep=sleep or Sleeps(), **kw)


def status(available: float, maximum: float = 1000, rate: float = 100) -> BucketStatus:
    return BucketStatus(maximum=maximum, available=available, restore_rate=rate)


def test_it_is_a_throttle_the_connectors_accept(redis_url):
    assert isinstance(worker(redis_url), Throttle)


def test_what_one_worker_learns_paces_another(redis_url):
    # given worker A's answer left 4 points in the shop's bucket, restoring 100 per second
    a, b = worker(redis_url), worker(redis_url, sleep=(slept := Sleeps()))
    a.settle(a.acquire(SHOP, "DiscountCodeBasicCreate", 10), requested=10, actual=10, status=status(4))

    # when worker B (another process) sends a 10-point mutation to the same shop
    ticket = b.acquire(SHOP, "DiscountCodeBasicCreate", 10)

    # then B waits for the 6 missing points (less the few ms Redis's clock moved on), and no more
    assert len(slept.calls) == 1 and 0.04 < slept.calls[0] <= 0.06
    assert ticket.cost == 10


def test_an_unknown_shop_goes_at_once_and_another_shops_bucket_does_not_count(redis_url):
    # given an empty bucket known for another shop
    a, b = worker(redis_url), worker(redis_url, sleep=(slept := Sleeps()))
    a.settle(a.acquire("other.myshopify.com", "Op", 10), requested=10, actual=10, status=status(0))

    # when this shop's first request is admitted
    b.acquire(SHOP, "Op", 10)

    # then it goes at once: its first answer teaches the model
    assert slept.calls == [] and b.status(SHOP) is None


def test_requests_still_in_flight_are_taken_off_the_platforms_figure(redis_url):
    # given 25 points known, and workers A and B each booked a 10-point request (5 left)
    a, b, c = worker(redis_url), worker(redis_url), worker(redis_url, sleep=(slept := Sleeps()))
    a.settle(a.acquire(SHOP, "Op", 10), requested=10, actual=10, status=status(35))
    a_ticket = a.acquire(SHOP, "Op", 10)
    b_ticket = b.acquire(SHOP, "Op", 10)

    # when B's answer comes first, saying 15 points are left (A's request had not reached Shopify)
    b.settle(b_ticket, requested=10, actual=10, status=status(15))

    # then the model holds 15 - A's 10 still out, so C waits for 5 points rather than going at once
    model = c.status(SHOP)
    assert model is not None and model["available"] == 5 and model["in_flight"] == 1
    c.acquire(SHOP, "Op", 10)
    assert len(slept.calls) == 1 and 0.03 < slept.calls[0] <= 0.05
    a.settle(a_ticket, requested=10, actual=10, status=status(5))


def test_an_overtaken_answer_does_not_raise_the_model(redis_url):
    # given 35 points known; A's request reached Shopify first (25 left), then B's (15 left)
    a, b = worker(redis_url), worker(redis_url)
    a.settle(a.acquire(SHOP, "Op", 10), requested=10, actual=10, status=status(35))
    a_ticket, b_ticket = a.acquire(SHOP, "Op", 10), b.acquire(SHOP, "Op", 10)

    # when B's answer (15 left) is settled before A's older one (25 left)
    b.settle(b_ticket, requested=10, actual=10, status=status(15))
    a.settle(a_ticket, requested=10, actual=10, status=status(25))

    # then the model stays at what is really left (about 5: B's figure less A's cost, then out of
    # flight), not the 25 of A's older figure, which does not know of B's request
    model = a.status(SHOP)
    assert model is not None and 5 <= model["available"] < 6 and model["in_flight"] == 0


def test_what_the_platform_gives_back_returns_to_the_model(redis_url):
    # given 100 points known, and a query booked at its last requested cost of 50
    a = worker(redis_url)
    a.settle(a.acquire(SHOP, "Op", 10), requested=50, actual=50, status=status(100))
    ticket = a.acquire(SHOP, "Op", 10)

    # when Shopify charges only 20 of the 50 (30 given back) and reports 80 left
    a.settle(ticket, requested=50, actual=20, status=status(80))

    # then the model holds 80, not the 50 it booked down to
    model = a.status(SHOP)
    assert model is not None and 80 <= model["available"] < 81


def test_the_requested_cost_seen_once_is_what_every_worker_books_next(redis_url):
    # given worker A learnt that the query costs 752 points (requested), with 800 available
    a, b = worker(redis_url), worker(redis_url, sleep=(slept := Sleeps()))
    a.settle(a.acquire(SHOP, "BigQuery", 10), requested=752, actual=300, status=status(800, rate=50))

    # when worker B sends it twice, estimating 10 points each time
    first = b.acquire(SHOP, "BigQuery", 10)
    with pytest.raises(RateLimitedError) as second_wait:
        b.acquire(SHOP, "BigQuery", 10)

    # then B books 752 each time: the first fits, the second would wait (752 - 48) / 50 s > 10 s
    assert first.cost == 752 and slept.calls == []
    assert second_wait.value.retry_after == pytest.approx(14.08, abs=0.05)


def test_a_wait_over_the_maximum_is_refused_and_books_nothing(redis_url):
    # given an empty bucket restoring 1 point per second
    a = worker(redis_url)
    a.settle(a.acquire(SHOP, "Op", 10), requested=50, actual=50, status=status(0, rate=1))

    # when a 50-point request asks to go
    with pytest.raises(RateLimitedError) as refused:
        a.acquire(SHOP, "Op", 10)

    # then the job is told to come back in about 50 s, and nothing was booked for it
    assert refused.value.retry_after == pytest.approx(50, abs=0.1)
    model = a.status(SHOP)
    assert model is not None and model["available"] == 0 and model["in_flight"] == 0


def test_a_ticket_of_a_worker_that_died_lapses(redis_url):
    # given 30 points known, and a worker that booked 10 and died before its answer (short hold)
    a, b = worker(redis_url, hold_seconds=0.2), worker(redis_url)
    a.settle(a.acquire(SHOP, "Op", 10), requested=10, actual=10, status=status(30))
    a.acquire(SHOP, "Op", 10)

    # when another worker's answer comes after the hold
    time.sleep(0.3)
    b.settle(b.acquire(SHOP, "Op", 10), requested=10, actual=10, status=status(20))

    # then the dead worker's booking no longer holds points back
    model = b.status(SHOP)
    assert model is not None and model["available"] == 20 and model["in_flight"] == 0


def test_without_redis_the_call_is_not_made_unpaced():
    # given Redis is not there
    throttle = RedisThrottle(Redis(port=free_port(), socket_connect_timeout=0.5), platform="shopify")

    # when / then a request cannot get its booking and the job will be retried
    with pytest.raises(TransientError, match="shared rate limit"):
        throttle.acquire(SHOP, "Op", 10)


def test_the_client_paces_by_the_throttle_handed_in_with_the_credentials(redis_url):
    # given two worker processes' credentials for one shop, each with its own handle on the bucket
    slept_b = Sleeps()
    creds_a = client.credentials(SHOP, {"access_token": "shpat_a"}, throttle=worker(redis_url))
    creds_b = client.credentials(SHOP, {"access_token": "shpat_a"}, throttle=worker(redis_url, sleep=slept_b))
    # (a slow restore rate, so the time this host takes between the two calls, even when loaded,
    # is small against the wait)
    cost = {"requestedQueryCost": 10, "actualQueryCost": 10,
            "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 2, "restoreRate": 4.0}}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as shopify:
        for _ in range(2):
            shopify.add(responses.POST, GRAPHQL, json={"data": {"codeDiscountNodeByCode": None},
                                                       "extensions": {"cost": cost}})

        # when A looks a code up (the answer leaves 2 points), then B does
        assert client.find_discount_code(creds_a, "SK-1") is None
        assert client.find_discount_code(creds_b, "SK-2") is None

    # then B waited for the 8 points A's answer said were missing (2 s at 4 points/s)
    assert len(slept_b.calls) == 1 and 1.5 < slept_b.calls[0] <= 2.0


class _Shopify:
    """Shopify's bucket as the local throttle server keeps it: refused when the cost is not there."""

    def __init__(self, maximum: float, rate: float) -> None:
        self.maximum, self.rate = maximum, rate
        self.available, self.at = maximum, time.monotonic()
        self.lock = threading.Lock()
        self.accepted = self.refused = 0

    def call(self, cost: float) -> BucketStatus:
        with self.lock:
            now = time.monotonic()
            self.available = min(self.maximum, self.available + self.rate * (now - self.at))
            self.at = now
            if self.available < cost:
                self.refused += 1
            else:
                self.available -= cost
                self.accepted += 1
            return BucketStatus(self.maximum, float(int(self.available)), self.rate)


def test_three_workers_on_one_shop_stay_under_the_bucket_and_use_it(redis_url):
    # given Shopify's bucket of 60 points restoring 200/s, and three workers (own connections)
    # sending 10-point mutations back to back for 1.5 s, each answer 5 ms after the request
    shopify = _Shopify(maximum=60, rate=200)
    stop = time.monotonic() + 1.5
    errors: list[BaseException] = []

    def run() -> None:
        throttle = worker(redis_url, sleep=time.sleep)
        try:
            while time.monotonic() < stop:
                ticket = throttle.acquire(SHOP, "DiscountCodeBasicCreate", 10)
                answer = shopify.call(10)
                time.sleep(0.005)
                throttle.settle(ticket, requested=10, actual=10, status=answer)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started

    # then Shopify refused nothing, and the workers used at least 85 % of what it allowed
    assert errors == []
    allowed = (60 + 200 * elapsed) / 10
    assert shopify.refused == 0
    assert shopify.accepted >= 0.85 * allowed, (shopify.accepted, allowed)
