"""The inbox's write path (`app.inbox`) on SQLite and PostgreSQL: one INSERT per delivery."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app import db, inbox
from app.db import session_scope
from app.models import DeliveryStatus, WebhookDelivery


def _record(shop_id: int, key: str) -> int | None:
    return inbox.record_delivery(shop_id, "shopify", "orders/paid", key, {"X-Shopify-Topic": "orders/paid"}, b"{}")


def test_a_delivery_is_stored_once(make_shop):
    # given a shop
    shop_id = make_shop("shopify")

    # when the same delivery is recorded twice
    first, second = _record(shop_id, "k1"), _record(shop_id, "k1")

    # then the first returns the new row's id, the second None, and one row waits for a worker
    assert first is not None and second is None
    with session_scope() as s:
        rows = s.execute(select(WebhookDelivery.id, WebhookDelivery.status)).all()
    assert rows == [(first, DeliveryStatus.RECEIVED)]


def test_a_delivery_of_a_missing_shop_is_refused(make_shop):
    # given no shop with this id (the receiver read it before it was erased)
    shop_id = make_shop("shopify") + 1000

    # when a delivery is recorded for it, then the inbox's key to shops refuses it, and nothing is stored
    with pytest.raises(inbox.ShopGoneError):
        _record(shop_id, "k1")
    with session_scope() as s:
        assert s.scalars(select(WebhookDelivery.id)).all() == []


def test_disposing_the_engine_closes_the_driver_pool(make_shop, database_url):
    # given a driver pool holding an idle connection
    import sqlite3

    shop_id = make_shop("shopify")
    pool = inbox.get_driver_pool()
    conn = pool.acquire()
    pool.release(conn)

    # when the engine's connections are closed (process exit, tests, another database)
    db.dispose()

    # then the pool's are too, and the next delivery is written through a new pool
    assert pool.closed
    if database_url.startswith("sqlite"):
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    else:
        assert conn.closed
    assert _record(shop_id, "after") is not None
    assert inbox.get_driver_pool() is not pool


@pytest.mark.sqlite_only
def test_a_database_locked_longer_than_a_platform_waits_is_answered_503_in_time(make_shop, post_webhook,
                                                                                database_url):
    # given another process's long write holding the SQLite database (a backup, a long migration)
    import sqlite3
    import threading
    import time

    from tests.conftest import fixture_bytes

    make_shop("shopify")
    path = database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(8.0, lambda: holder.execute("ROLLBACK"))
    released.start()
    try:
        # when Shopify delivers meanwhile
        started = time.monotonic()
        answer = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), event_id="l-1")
        waited = time.monotonic() - started

        # then it gets 503 (it will retry) well within its 5 s, instead of a timeout
        assert answer.status_code == 503
        assert waited < 4.5, waited
    finally:
        released.cancel()
        holder.execute("ROLLBACK") if holder.in_transaction else None
        holder.close()

    # and once the database is free, the retry is accepted
    again = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), event_id="l-1")
    assert again.status_code == 200


@pytest.mark.sqlite_only
def test_the_writer_lock_waits_a_bounded_time(tmp_path):
    # given another process holding the machine's writer lock of a database file
    import fcntl
    import os
    import time

    lock = inbox.SQLiteWriterLock(str(tmp_path / "db.sqlite"))
    other = os.open(lock.path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        # when a webhook's INSERT wants it, then it gives up after the bounded wait
        started = time.monotonic()
        with pytest.raises(inbox.WriterBusyError):
            with lock:
                pass
        assert inbox.WRITER_WAIT_SECONDS <= time.monotonic() - started < inbox.WRITER_WAIT_SECONDS + 1
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    # and once it is free, it is taken at once
    with lock:
        pass
    lock.close()
