"""`app.db.defer`: writes held back until the commit (on PostgreSQL, sent with it in one pipeline).

On SQLite and PostgreSQL: they land at commit in the order they came, after the ORM's flush; a
failing one rolls the whole transaction back and leaves the connection usable; a rollback drops
them; inside a savepoint they run at once; a plain `session.commit()` writes them too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from app.loyalty import customers
from app.db import (
    DEFERRED_WRITES,
    LOCKED_CUSTOMERS,
    defer,
    defer_insert,
    get_engine,
    insert_object,
    new_session,
    note,
    session_scope,
)
from app.models import Customer, TierChange, utcnow

_RENAME = update(Customer).where(Customer.id == bindparam("b_id")).values(first_name=bindparam("name"))


def _customer(session: Any, shop_id: int, platform_id: str) -> Customer:
    now = utcnow()
    row = insert_object(session, customers._INSERT_ACCOUNT(session),
                        Customer(shop_id=shop_id, platform_id=platform_id, email=f"{platform_id}@example.test",
                                 created_at=now, updated_at=now))
    assert row is not None
    return row


def _first_name(customer_id: int) -> str | None:
    with session_scope() as s:
        return s.scalar(select(Customer.first_name).where(Customer.id == customer_id))


def _tier_changes(customer_id: int) -> list[str | None]:
    with session_scope() as s:
        return list(s.scalars(select(TierChange.to_tier).where(TierChange.customer_id == customer_id)
                              .order_by(TierChange.id)))


def _tier_change(customer: Customer, to_tier: str) -> TierChange:
    return TierChange(shop_id=customer.shop_id, customer_id=customer.id, from_tier=None, to_tier=to_tier,
                      metric_value=0, reason="upgrade", program_version=1, created_at=utcnow())


def test_deferred_writes_land_at_commit_in_the_order_they_came(app, make_shop):
    # given a customer, and a transaction that defers two renames and a history row
    shop_id = make_shop("shopify")
    with session_scope() as s:
        customer = _customer(s, shop_id, "c-1")
        defer(s, _RENAME, {"b_id": customer.id, "name": "Anna"})
        defer_insert(s, _tier_change(customer, "Silber"))
        defer(s, _RENAME, {"b_id": customer.id, "name": "Berta"})
        # then, within the transaction, they have not run yet (nothing may read them back)
        assert s.scalar(select(Customer.first_name).where(Customer.id == customer.id)) is None
        customer_id = customer.id

    # then after the commit the last rename won and the history row is there
    assert _first_name(customer_id) == "Berta"
    assert _tier_changes(customer_id) == ["Silber"]


def test_deferred_writes_follow_the_orm_flush(app, make_shop):
    # given a deferred rename, and then an ORM change of the same column left for the flush
    shop_id = make_shop("shopify")
    with session_scope() as s:
        customer = _customer(s, shop_id, "c-1")
        defer(s, _RENAME, {"b_id": customer.id, "name": "Deferred"})
        customer.first_name = "Flushed"

    # then the deferred write ran after the flush, as a statement written later would
    assert _first_name(customer.id) == "Deferred"


def test_a_failing_deferred_write_rolls_everything_back_and_the_connection_stays_usable(app, make_shop):
    # given an existing customer, and one connection serving two transactions (as a worker's batch)
    shop_id = make_shop("shopify")
    with session_scope() as s:
        _customer(s, shop_id, "taken")
    with get_engine().connect() as conn:
        # when a transaction writes a customer at once and defers a duplicate of "taken"
        with pytest.raises(IntegrityError), session_scope(conn) as s:
            first = _customer(s, shop_id, "written-at-once")
            defer(s, _RENAME, {"b_id": first.id, "name": "Never"})
            now = utcnow()
            defer_insert(s, Customer(shop_id=shop_id, platform_id="taken", created_at=now, updated_at=now))

        # then the next transaction on the same connection works
        with session_scope(conn) as s:
            second = _customer(s, shop_id, "next")
            defer(s, _RENAME, {"b_id": second.id, "name": "Next"})

    # and nothing of the failed transaction was kept
    with session_scope() as s:
        ids = set(s.scalars(select(Customer.platform_id).where(Customer.shop_id == shop_id)))
    assert ids == {"taken", "next"}
    assert _first_name(second.id) == "Next"


def test_inside_a_savepoint_a_deferred_write_runs_at_once(app, make_shop):
    # given a customer, and two savepoints that each defer a history row: one rolled back, one kept
    shop_id = make_shop("shopify")
    with session_scope() as s:
        customer = _customer(s, shop_id, "c-1")
        with pytest.raises(RuntimeError), s.begin_nested():
            defer_insert(s, _tier_change(customer, "rolled back"))
            raise RuntimeError("the savepoint fails")
        with s.begin_nested():
            defer_insert(s, _tier_change(customer, "kept"))
        assert DEFERRED_WRITES not in s.info  # both ran at once

    # then the rolled back savepoint took its row along
    assert _tier_changes(customer.id) == ["kept"]


@pytest.mark.parametrize("rollback_first", [False, True])
def test_a_plain_session_commit_writes_deferred_writes_unless_rolled_back(app, make_shop, rollback_first):
    shop_id = make_shop("shopify")
    with session_scope() as s:
        customer = _customer(s, shop_id, "c-1")

    # given a caller that commits its session itself, after a deferred rename (and a rollback)
    s = new_session()
    try:
        defer(s, _RENAME, {"b_id": customer.id, "name": "Plain"})
        if rollback_first:
            s.rollback()
            assert DEFERRED_WRITES not in s.info
        s.commit()
    finally:
        s.close()

    # then the rename was written by the commit, or dropped by the rollback
    assert _first_name(customer.id) == (None if rollback_first else "Plain")


def test_on_postgresql_deferred_writes_go_out_in_one_pipeline(app, make_shop, database_url, monkeypatch):
    if not database_url.startswith("postgresql"):
        pytest.skip("psycopg's pipeline mode is PostgreSQL's")
    import psycopg

    shop_id = make_shop("shopify")
    # Every statement the driver gets, with the number of the pipeline it went out in (None: on
    # its own). Both SQLAlchemy's executor and app.driver_sql end in psycopg's Cursor.execute.
    seen: list[tuple[str, int | None]] = []
    open_pipelines: list[int] = []
    opened = itertools.count(1)
    real_pipeline, real_execute = psycopg.Connection.pipeline, psycopg.Cursor.execute

    @contextmanager
    def numbered_pipeline(self: Any) -> Iterator[Any]:
        with real_pipeline(self) as pipeline:
            open_pipelines.append(next(opened))
            try:
                yield pipeline
            finally:
                open_pipelines.pop()

    def recorded_execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        verb = str(query).split()[0]
        if verb in ("INSERT", "UPDATE"):  # not the pool's pre-ping
            seen.append((verb, open_pipelines[-1] if open_pipelines else None))
        return real_execute(self, query, params, **kw)

    monkeypatch.setattr(psycopg.Connection, "pipeline", numbered_pipeline)
    monkeypatch.setattr(psycopg.Cursor, "execute", recorded_execute)

    # given a session on a connection its caller keeps (a worker's batch), one on its own
    engine = get_engine()
    with engine.connect() as conn, session_scope(conn) as s:
        customer = _customer(s, shop_id, "c-1")
        defer(s, _RENAME, {"b_id": customer.id, "name": "Anna"})
        defer_insert(s, _tier_change(customer, "Silber"))
        note(s, LOCKED_CUSTOMERS, customer.id)  # as upsert_customer notes the row it holds
        customer.last_name = "Muster"
    with session_scope() as s:
        other = _customer(s, shop_id, "c-2")
        defer(s, _RENAME, {"b_id": other.id, "name": "Berta"})

    # then a transaction's first statement goes out with its BEGIN (a pipeline of its own); on
    # the kept connection the change to the locked customer and the deferred writes share the
    # COMMIT's pipeline; the session that hands its connection back at commit writes them one by one
    assert seen == [("INSERT", 1), ("UPDATE", 2), ("UPDATE", 2), ("INSERT", 2), ("INSERT", 3), ("UPDATE", None)]
    with session_scope() as s:
        assert s.get(Customer, customer.id).last_name == "Muster"
    assert _first_name(customer.id) == "Anna"
    assert _tier_changes(customer.id) == ["Silber"]
    assert _first_name(other.id) == "Berta"
