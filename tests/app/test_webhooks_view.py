"""The webhook endpoint's answer table, each line against a real database and real Redis."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select

from app.models import DeliveryStatus, WebhookDelivery
from tests.conftest import SHOPIFY_SECRET, WOO_SECRET, fixture_bytes, signed_headers


def _deliveries(session) -> list[WebhookDelivery]:  # type: ignore[no-untyped-def]
    session.expire_all()
    rows = list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
    session.commit()  # end the read: on SQLite every transaction holds the write lock
    return rows


def _queued(redis_url: str) -> int:
    from redis import Redis
    from rq import Queue

    return Queue("webhooks", connection=Redis.from_url(redis_url)).count


def test_signed_delivery_is_recorded_and_enqueued(make_shop, post_webhook, session, redis_url):
    # given a registered Shopify shop
    make_shop("shopify")
    body = fixture_bytes("shopify", "orders_paid.json")

    # when Shopify posts a signed orders/paid
    response = post_webhook("shopify", "orders/paid", body, event_id="evt-1")

    # then it is accepted, stored with its exact bytes, and one job waits for a worker
    assert response.status_code == 200
    [delivery] = _deliveries(session)
    assert delivery.body == body
    assert delivery.topic == "orders/paid"
    assert delivery.status == DeliveryStatus.RECEIVED
    assert delivery.dedupe_key == "orders/paid|event:evt-1"
    assert _queued(redis_url) == 1


def test_real_woocommerce_delivery_verifies(make_shop, client, session):
    # given the shop of the captured real WooCommerce delivery, with its secret
    make_shop("woocommerce", domain="http://127.0.0.1:8888", secret=WOO_SECRET)
    body = fixture_bytes("woocommerce", "order_created.json")
    headers = json.loads(fixture_bytes("woocommerce", "order_created.headers.json"))

    # when the captured request is replayed byte for byte, with its real signature
    response = client.post("/webhooks/woocommerce", data=body, headers=headers)

    # then it is accepted
    assert response.status_code == 200
    assert len(_deliveries(session)) == 1


@pytest.mark.parametrize(
    "_case, mutate, status",
    [
        ("missing signature", lambda h, b: ({k: v for k, v in h.items() if k != "X-Shopify-Hmac-Sha256"}, b), 400),
        ("bad signature", lambda h, b: ({**h, "X-Shopify-Hmac-Sha256": "AAAA"}, b), 401),
        ("tampered body", lambda h, b: (h, b.replace(b"1", b"2", 1)), 401),
        ("unknown shop", lambda h, b: ({**h, "X-Shopify-Shop-Domain": "other.myshopify.com"}, b), 401),
        ("unhandled topic", lambda h, b: ({**h, "X-Shopify-Topic": "products/update"}, b), 200),
        ("missing topic", lambda h, b: ({k: v for k, v in h.items() if k != "X-Shopify-Topic"}, b), 400),
    ],
)
def test_answer_table(_case, mutate, status, make_shop, client, session, redis_url):
    # given a shop and a correctly signed delivery
    make_shop("shopify")
    body = fixture_bytes("shopify", "orders_paid.json")
    headers = signed_headers("shopify", "orders/paid", body, secret=SHOPIFY_SECRET)
    headers, body = mutate(headers, body)

    # when it arrives changed as the case says
    response = client.post("/webhooks/shopify", data=body, headers=headers)

    # then the answer is exact and nothing is recorded or enqueued
    assert response.status_code == status
    assert _deliveries(session) == []
    assert _queued(redis_url) == 0


@pytest.mark.parametrize("_case, body", [
    ("not json", b"{nope"), ("json list", b"[1, 2]"), ("not utf-8", b"\xff\xfe"),
    # deeper than any parser allows (the stdlib hit Python's recursion limit: a 500 before)
    ("nested 1100 deep", b'{"id": 1, "note": ' + b"[" * 1100 + b"]" * 1100 + b"}"),
    ("nested just past orjson's limit", b'{"a": ' + b"[" * 1024 + b"]" * 1024 + b"}"),
    # a lone UTF-16 surrogate: valid JSON escapes, but no database stores the text (a 500 before)
    ("lone surrogate in an id", b'{"id": "\\ud800", "email": "a@example.test"}'),
    ("lone surrogate in a key", b'{"\\udfff": 1}'),
])
def test_unparsable_body_is_400(_case, body, make_shop, post_webhook, session):
    # given a shop
    make_shop("shopify")

    # when a correctly signed body is not a JSON object
    response = post_webhook("shopify", "orders/paid", body)

    # then 400, nothing stored
    assert response.status_code == 400
    assert _deliveries(session) == []


def test_duplicate_delivery_is_200_and_not_enqueued_again(make_shop, post_webhook, session, redis_url):
    # given one accepted delivery
    make_shop("shopify")
    body = fixture_bytes("shopify", "orders_paid.json")
    assert post_webhook("shopify", "orders/paid", body, event_id="evt-9").status_code == 200

    # when Shopify delivers the same event again
    response = post_webhook("shopify", "orders/paid", body, event_id="evt-9")

    # then 200, still one row and one job
    assert response.status_code == 200
    assert response.get_json()["message"] == "duplicate"
    assert len(_deliveries(session)) == 1
    assert _queued(redis_url) == 1


def test_woocommerce_ping_is_exactly_200_unsigned(make_shop, client, session):
    # given a WooCommerce shop
    make_shop("woocommerce")

    # when WooCommerce pings the new webhook (form body, no X-WC headers, no signature)
    response = client.post(
        "/webhooks/woocommerce", data=fixture_bytes("woocommerce", "ping.txt"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    # then exactly 200, nothing stored
    assert response.status_code == 200
    assert _deliveries(session) == []


def test_get_is_405(client):
    # when something GETs the webhook URL
    response = client.get("/webhooks/shopify")

    # then 405
    assert response.status_code == 405


def test_unknown_platform_or_deeper_path_is_404(client):
    # when something posts to a platform we do not know, or below a known one
    unknown = client.post("/webhooks/magento", data=b"{}")
    deeper = client.post("/webhooks/shopify/orders", data=b"{}")

    # then 404, as JSON
    assert unknown.status_code == 404 and unknown.get_json()["message"] == "unknown platform"
    assert deeper.status_code == 404


def test_streamed_body_over_one_mebibyte_is_413(make_shop, client, session):
    # given a shop, and a body sent chunked (no Content-Length to refuse it by)
    make_shop("shopify")
    body = json.dumps({"id": 1, "pad": "x" * (1024 * 1024)}).encode()
    headers = signed_headers("shopify", "orders/paid", body, secret=SHOPIFY_SECRET)

    # when it arrives as a stream (gunicorn marks a de-chunked body "wsgi.input_terminated")
    response = client.post(
        "/webhooks/shopify", input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True},
    )

    # then 413, nothing stored
    assert response.status_code == 413, response.get_data()
    assert _deliveries(session) == []


def test_body_over_one_mebibyte_is_413(make_shop, post_webhook, session):
    # given a shop
    make_shop("shopify")
    body = json.dumps({"id": 1, "pad": "x" * (1024 * 1024)}).encode()

    # when a body over 1 MiB arrives
    response = post_webhook("shopify", "orders/paid", body)

    # then 413
    assert response.status_code == 413
    assert _deliveries(session) == []


def test_shop_without_secret_fails_closed_500(make_shop, post_webhook, session):
    # given a Shopify shop registered without a secret and no app secret configured
    make_shop("shopify", secret="")

    # when a signed delivery arrives
    response = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"))

    # then 500: we cannot verify, so we refuse (Shopify retries later)
    assert response.status_code == 500
    assert _deliveries(session) == []


def test_old_secret_accepted_during_rotation(make_shop, post_webhook, session):
    # given a shop whose secret was rotated
    make_shop("shopify", secret="old-secret")
    make_shop("shopify", secret="new-secret")
    body = fixture_bytes("shopify", "orders_paid.json")

    # when deliveries signed with the old and the new secret arrive, and one with neither
    old = post_webhook("shopify", "orders/paid", body, secret="old-secret", event_id="a")
    new = post_webhook("shopify", "orders/paid", body, secret="new-secret", event_id="b")
    wrong = post_webhook("shopify", "orders/paid", body, secret="other", event_id="c")

    # then both rotation secrets verify and the wrong one does not
    assert (old.status_code, new.status_code, wrong.status_code) == (200, 200, 401)
    assert len(_deliveries(session)) == 2


def test_shopify_app_secret_used_when_shop_has_none(app, make_shop, post_webhook, session):
    # given the app-level Shopify secret (public app) and a shop without its own
    app.config.update(SHOPIFY_API_SECRET="app-secret", SHOPIFY_API_SECRET_OLD="app-old")
    make_shop("shopify", secret="")
    body = fixture_bytes("shopify", "orders_paid.json")

    # when deliveries are signed with the app secret and its predecessor
    current = post_webhook("shopify", "orders/paid", body, secret="app-secret", event_id="1")
    previous = post_webhook("shopify", "orders/paid", body, secret="app-old", event_id="2")

    # then both are accepted
    assert (current.status_code, previous.status_code) == (200, 200)


def test_redis_down_still_200_and_sweep_enqueues_later(app, make_shop, post_webhook, session, redis_server, work):
    # given Redis is down
    make_shop("shopify")
    redis_server["stop"]()

    # when a delivery arrives
    response = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"))

    # then it is committed and acknowledged anyway
    assert response.status_code == 200
    [delivery] = _deliveries(session)
    assert delivery.status == DeliveryStatus.RECEIVED

    # and when Redis is back, the sweep hands it to a worker, which processes it
    redis_server["restart"]()
    from jobs.deliveries import requeue_stuck_deliveries

    assert requeue_stuck_deliveries(older_than_seconds=0) == 1
    work()
    [delivery] = _deliveries(session)
    assert delivery.status == DeliveryStatus.PROCESSED


@pytest.mark.parametrize("_case, broken", [("cannot connect", "connect"), ("insert fails", "acquire")])
def test_database_down_is_503(_case, broken, app, make_shop, post_webhook, monkeypatch, session):
    # given a shop, then a database that fails at the shop lookup or at the insert
    make_shop("shopify")
    from sqlalchemy.exc import OperationalError

    from app import db, inbox

    def dead(real):  # type: ignore[no-untyped-def]
        class DeadEngine:
            dialect = real.dialect

            def __getattr__(self, name):  # type: ignore[no-untyped-def]
                if name == broken:
                    def fail(*_a, **_k):  # type: ignore[no-untyped-def]
                        raise OperationalError("connect", {}, Exception("connection refused"))
                    return fail
                return getattr(real, name)

        return DeadEngine()

    engine, pool = dead(db.get_engine()), dead(inbox.get_driver_pool())
    monkeypatch.setattr(db, "get_engine", lambda: engine)
    monkeypatch.setattr(inbox, "get_driver_pool", lambda: pool)

    # when a delivery arrives
    response = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"))

    # then 503 so the platform retries, and nothing was stored
    assert response.status_code == 503
    monkeypatch.undo()
    assert _deliveries(session) == []


def test_stale_pooled_connection_is_replaced_not_503(app, make_shop, post_webhook, session, database_url):
    # given PostgreSQL dropped the connections the webhook INSERT keeps in its pool (a restart, a
    # failover, an idle timeout): the next use of each fails
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop a connection")
    make_shop("shopify")
    first = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), event_id="e1")
    assert first.get_json()["message"] == "accepted"
    from sqlalchemy import text

    from app import db

    with db.get_engine().connect() as conn:
        killed = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'"
        )).scalar_one()
    assert killed >= 1

    # when the next delivery arrives
    response = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), event_id="e2")

    # then it is stored on a new connection and acknowledged, not answered 503
    assert response.status_code == 200
    assert response.get_json()["message"] == "accepted"
    session.commit()
    assert len(_deliveries(session)) == 2


def test_sqlite_webhook_writes_queue_on_the_writer_lock(app, make_shop, post_webhook, session, database_url):
    # given another process holds the SQLite writer lock (as a web worker does during its INSERT)
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL settles concurrent writers itself")
    import fcntl
    import os
    import threading

    from app import inbox

    make_shop("shopify")
    path = inbox.get_driver_pool().write_lock.path
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    answers: list[int] = []
    poster = threading.Thread(target=lambda: answers.append(post_webhook(
        "shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json")).status_code))
    try:
        # when a delivery arrives meanwhile
        poster.start()
        poster.join(0.5)

        # then it waits for the lock (nothing stored, no answer yet) ...
        assert poster.is_alive() and answers == []
        session.commit()
        assert _deliveries(session) == []
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    # ... and is stored and acknowledged as soon as the lock is free
    poster.join(10)
    assert answers == [200]
    session.commit()
    assert len(_deliveries(session)) == 1


def _wal_frames(database_path: str) -> tuple[int, int]:
    """(frames in the WAL, frames already copied into the database) from SQLite's wal-index.

    https://www.sqlite.org/walformat.html: the header's mxFrame is the u32 at byte 16, and the
    checkpoint info's nBackfill the u32 at byte 96, both in native byte order.
    """
    import struct

    with open(database_path + "-shm", "rb") as shm:
        head = shm.read(100)
    return struct.unpack_from("=I", head, 16)[0], struct.unpack_from("=I", head, 96)[0]


def test_sqlite_wal_is_checkpointed_by_the_webhook_writers(app, make_shop, post_webhook, database_url, monkeypatch):
    # given webhook writers that checkpoint every 3 writes (never inside a write)
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL checkpoints by itself")
    import time

    from app import db, inbox

    make_shop("shopify")
    pool = inbox.get_driver_pool()
    monkeypatch.setattr(inbox.DriverPool, "CHECKPOINT_EVERY", 3)
    monkeypatch.setattr(pool, "_writes", 0)
    path = db.get_engine().url.database
    body = fixture_bytes("shopify", "orders_paid.json")

    # when two deliveries are written, they wait in the WAL
    for event in ("e1", "e2"):
        assert post_webhook("shopify", "orders/paid", body, event_id=event).get_json()["message"] == "accepted"
    frames, copied = _wal_frames(path)
    assert copied < frames

    # and when the third is written, a thread soon copies the whole WAL into the database
    assert post_webhook("shopify", "orders/paid", body, event_id="e3").get_json()["message"] == "accepted"
    deadline = time.monotonic() + 10
    while (state := _wal_frames(path))[1] < state[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    frames, copied = _wal_frames(path)
    assert copied == frames > 0


def test_deliveries_counted_once_under_concurrency(app, make_shop, session, redis_url):
    # given one signed delivery posted by 8 threads at once
    import threading

    make_shop("shopify")
    body = fixture_bytes("shopify", "orders_paid.json")
    headers = signed_headers("shopify", "orders/paid", body, secret=SHOPIFY_SECRET, event_id="same")
    codes: list[int] = []

    def post() -> None:
        codes.append(app.test_client().post("/webhooks/shopify", data=body, headers=headers).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then every answer is 200 and exactly one delivery is stored
    assert codes == [200] * 8
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
