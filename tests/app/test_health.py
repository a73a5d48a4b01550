"""`/healthz`, `/readyz` and `/metrics` as a load balancer, an uptime monitor and Prometheus see
them: real Redis with a registered RQ worker, real database, real prometheus_client exposition."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import fixture_bytes, free_port

pytestmark = pytest.mark.sqlite_only  # the checks' subject is the answer, not the database


@pytest.fixture
def worker(redis_url: str) -> Iterator[Any]:
    """An RQ worker registered in Redis as `rq worker` registers itself (birth = first heartbeat)."""
    from redis import Redis
    from rq import Queue, Worker

    conn = Redis.from_url(redis_url)
    w = Worker([Queue("webhooks", connection=conn)], connection=conn)
    w.register_birth()
    yield w
    w.register_death()


def _samples(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def _received(samples: dict, platform: str, topic: str, status: str) -> float:  # type: ignore[type-arg]
    key = ("stammkunde_webhook_deliveries_total", (("platform", platform), ("status", status), ("topic", topic)))
    return samples.get(key, 0.0)


def test_healthz_answers_without_login(client):
    # when an uptime monitor asks
    response = client.get("/healthz")

    # then the process answers, with no log-in page in between
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_with_a_live_worker(client, worker):
    # given a worker whose heartbeat Redis holds

    # when the load balancer asks
    response = client.get("/readyz")

    # then every check passes, and the backlog is reported
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ready" and body["failing"] == []
    assert body["checks"]["worker"]["workers"] == 1
    assert 0 <= body["checks"]["worker"]["last_heartbeat_age_seconds"] < 60
    assert body["checks"]["redis"]["queues"] == {"webhooks": 0, "points": 0, "codes": 0, "reminders": 0}
    assert body["checks"]["database"]["deliveries_waiting"] == 0
    assert body["checks"]["database"]["oldest_waiting_delivery"] == {"id": None, "age_seconds": None}


def test_unready_without_a_worker(client):
    # given Redis and the database up, and no worker registered

    # when the load balancer asks
    response = client.get("/readyz")

    # then 503, naming the worker as what fails
    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"] == ["worker"]
    assert body["checks"]["worker"]["workers"] == 0


def test_unready_with_a_stale_heartbeat(app, client, worker):
    # given a worker whose last heartbeat is older than allowed
    app.config["READY_HEARTBEAT_MAX_AGE_SECONDS"] = 0
    import time

    time.sleep(0.01)

    # when the load balancer asks
    response = client.get("/readyz")

    # then the worker check fails
    assert response.status_code == 503
    assert response.get_json()["failing"] == ["worker"]


def test_unready_when_redis_is_down(app, client):
    # given a Redis that refuses connections (nothing listens on its port)
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"

    # when the load balancer asks
    response = client.get("/readyz")

    # then 503 naming Redis (and the worker, which cannot be seen), the database still fine
    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"] == ["redis", "worker"]
    assert body["checks"]["database"]["ok"] is True


def test_readyz_and_metrics_show_a_waiting_delivery(make_shop, post_webhook, client, worker):
    # given a delivery accepted and not yet handled by a worker
    make_shop("shopify")
    before = _samples(client)
    response = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), event_id="e-1")
    assert response.status_code == 200

    # when the monitors look
    ready = client.get("/readyz").get_json()
    after = _samples(client)

    # then both show it waiting: one delivery, its age, one job in the webhooks queue
    assert ready["checks"]["database"]["deliveries_waiting"] == 1
    assert ready["checks"]["database"]["oldest_waiting_delivery"]["id"] is not None
    assert ready["checks"]["database"]["oldest_waiting_delivery"]["age_seconds"] >= 0
    assert ready["checks"]["redis"]["queues"]["webhooks"] == 1
    assert after[("stammkunde_deliveries_waiting", ())] == 1
    assert after[("stammkunde_oldest_waiting_delivery_age_seconds", ())] >= 0
    assert after[("stammkunde_queue_jobs", (("queue", "webhooks"),))] == 1
    assert after[("stammkunde_codes", (("status", "pending"),))] == 0
    # and the receiver counted it by platform, topic and answer
    assert _received(after, "shopify", "orders/paid", "200") - _received(before, "shopify", "orders/paid", "200") == 1


def test_metrics_count_what_the_worker_finished_and_its_lag(make_shop, post_webhook, client, work):
    # given a good delivery and a malformed one, accepted
    make_shop("shopify")
    before = _samples(client)
    good = fixture_bytes("shopify", "orders_paid.json")
    assert post_webhook("shopify", "orders/paid", good, event_id="m-1").status_code == 200
    assert post_webhook("shopify", "orders/paid", b'{"id": 1}', event_id="m-2").status_code == 200

    # when the worker has handled them
    work()
    after = _samples(client)

    # then one is counted processed, with its lag observed, and one failed
    def handled(samples: dict, outcome: str) -> float:  # type: ignore[type-arg]
        key = ("stammkunde_deliveries_handled_total",
               (("outcome", outcome), ("platform", "shopify"), ("topic", "orders/paid")))
        return samples.get(key, 0.0)

    assert handled(after, "processed") - handled(before, "processed") == 1
    assert handled(after, "failed") - handled(before, "failed") == 1
    lag = ("stammkunde_delivery_lag_seconds_count", ())
    assert after.get(lag, 0.0) - before.get(lag, 0.0) == 1


def test_metrics_count_refused_deliveries_by_answer(make_shop, post_webhook, client):
    # given a shop, and a delivery signed with the wrong secret
    make_shop("shopify")
    before = _samples(client)

    # when it is posted
    response = post_webhook("shopify", "orders/paid", b"{}", secret="wrong")

    # then it is counted as a 401 (its topic is not trusted before the signature holds)
    assert response.status_code == 401
    after = _samples(client)
    assert _received(after, "shopify", "", "401") - _received(before, "shopify", "", "401") == 1


def test_metrics_add_up_every_process_in_multiprocess_mode(app, client, tmp_path):
    # given two processes (as gunicorn workers) that counted deliveries into one PROMETHEUS_MULTIPROC_DIR
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    script = (
        "import sys; from app.telemetry import WEBHOOK_DELIVERIES as c; "
        "c.labels('woocommerce', 'order.updated', '200').inc(int(sys.argv[1]))"
    )
    for n in ("3", "4"):
        subprocess.run([sys.executable, "-c", script, n], env=env, check=True, timeout=60)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    app.config["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)

    # when Prometheus scrapes any one web process
    samples = _samples(client)

    # then it sees the sum of both processes, and the scrape-time gauges as well
    assert _received(samples, "woocommerce", "order.updated", "200") == 7
    assert ("stammkunde_deliveries_waiting", ()) in samples


def test_metrics_without_redis_still_answer_with_the_database_gauges(app, client):
    # given Redis down
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"

    # when Prometheus scrapes
    samples = _samples(client)

    # then the database gauges are there and the queue gauges are left out (not shown as 0)
    assert ("stammkunde_deliveries_waiting", ()) in samples
    assert not any(name == "stammkunde_queue_jobs" for name, _ in samples)
