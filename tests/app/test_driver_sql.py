"""`app.driver_sql` and `app.db.flush`: the worker's statements without SQLAlchemy's executor or
unit of work, writing and reading what those would, and failing the way they would.

On SQLite `driver_sql` hands every statement to the executor; the tests hold on both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from app import driver_sql
from app.db import (
    LOCKED_CUSTOMERS,
    LOCKED_ORDERS,
    flush,
    get_engine,
    new_session,
    note,
    session_scope,
)
from app.models import CodeStatus, Customer, IssuedCode, Order, utcnow

_CODES = IssuedCode.__table__
# Every column back, so the test sees what each type's processors made of it.
_INSERT_CODE = insert(_CODES).returning(*_CODES.c)
_BY_KEYS = select(_CODES.c.code).where(_CODES.c.source_key.in_(bindparam("keys", expanding=True)))


def _code_params(shop_id: int, key: str, **kw: Any) -> dict[str, Any]:
    params = {"shop_id": shop_id, "customer_id": None, "purpose": "reward", "source_key": key, "code": f"SK-{key}",
              "spec": {"value": "5.00", "nested": [1, "zwei"]}, "status": CodeStatus.PENDING, "attempts": 0,
              "expires_at": utcnow() + timedelta(days=30)}
    params.update(kw)
    return params


def test_a_statement_sends_and_reads_back_what_the_executor_would(app, make_shop):
    # given two new codes that leave created_at and updated_at to their Python defaults
    shop_id = make_shop("shopify")
    before = utcnow()
    with session_scope() as s:
        conn = s.connection()

        # when one is inserted through driver_sql and the other through SQLAlchemy's executor
        ours = driver_sql.execute(conn, _INSERT_CODE, _code_params(shop_id, "a"))
        theirs = conn.execute(_INSERT_CODE, _code_params(shop_id, "b"))
        their_row = dict(theirs.one()._mapping)
        their_params = theirs.last_inserted_params()

    # then the rows come back alike: enum, JSON and aware UTC times processed, defaults filled in
    (row,) = ours.rows
    different = {"id", "source_key", "code", "created_at", "updated_at", "expires_at"}
    assert {k: v for k, v in row.items() if k not in different} == {
        k: v for k, v in their_row.items() if k not in different}
    assert row["status"] is CodeStatus.PENDING
    assert row["spec"] == {"value": "5.00", "nested": [1, "zwei"]}
    assert row["created_at"] >= before and row["created_at"].utcoffset() == timedelta(0)
    # and the parameters it reports hold the defaults it computed, as last_inserted_params does
    assert ours.params["created_at"] == row["created_at"]
    assert set(ours.params) == set(their_params)


def test_a_statement_it_cannot_prepare_goes_through_the_executor(app, make_shop):
    # given two codes
    shop_id = make_shop("shopify")
    with session_scope() as s:
        conn = s.connection()
        for key in ("a", "b"):
            driver_sql.execute(conn, _INSERT_CODE, _code_params(shop_id, key))

        # when a statement with an expanding IN list runs (rendered per call, so not prepared once)
        found = driver_sql.execute(conn, _BY_KEYS, {"keys": ["a", "b", "c"]})

    # then it still answers
    assert sorted(r["code"] for r in found.rows) == ["SK-a", "SK-b"]


def test_errors_come_as_sqlalchemys_and_the_transaction_rolls_back(app, make_shop):
    # given a recorded code
    shop_id = make_shop("shopify")
    with session_scope() as s:
        driver_sql.execute(s.connection(), _INSERT_CODE, _code_params(shop_id, "a"))

    # when the same key is inserted again, and a naive time is given
    with pytest.raises(IntegrityError), session_scope() as s:
        driver_sql.execute(s.connection(), _INSERT_CODE, _code_params(shop_id, "a"))
    with pytest.raises(StatementError, match="naive datetime"), session_scope() as s:
        driver_sql.execute(s.connection(), _INSERT_CODE,
                           _code_params(shop_id, "n", expires_at=datetime(2026, 12, 1)))

    # then the first insert of the first attempt did not stay either (its BEGIN went with it)
    with pytest.raises(IntegrityError), session_scope() as s:
        conn = s.connection()
        driver_sql.execute(conn, _INSERT_CODE, _code_params(shop_id, "b"))
        driver_sql.execute(conn, _INSERT_CODE, _code_params(shop_id, "a"))
    with session_scope() as s:
        assert sorted(s.scalars(select(_CODES.c.source_key)).all()) == ["a"]


def test_a_lost_connection_is_invalidated_and_the_next_transaction_reconnects(app, make_shop, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop a connection")
    shop_id = make_shop("shopify")
    with get_engine().connect() as conn:
        # given a kept connection (a worker's lane) whose server process is gone
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.commit()
        with get_engine().connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            other.commit()

        # when a statement runs on it
        with pytest.raises(OperationalError) as raised, session_scope(conn) as s:
            driver_sql.execute(s.connection(), _INSERT_CODE, _code_params(shop_id, "a"))

        # then the error says the connection was invalidated, and the next transaction reconnects
        assert raised.value.connection_invalidated
        with session_scope(conn) as s:
            driver_sql.execute(s.connection(), _INSERT_CODE, _code_params(shop_id, "a"))
    with session_scope() as s:
        assert s.scalars(select(_CODES.c.source_key)).all() == ["a"]


def _locked_order_and_customer(session: Any, shop_id: int) -> tuple[Order, Customer]:
    now = utcnow()
    customer = Customer(shop_id=shop_id, platform_id="c-1", email="kundin@example.test", created_at=now,
                        updated_at=now - timedelta(days=1))
    order = Order(shop_id=shop_id, platform_id="o-1", is_paid=False, taxes_included=False, total_weight_grams=0,
                  tags=[], discount_codes=[], test=False, created_at=now, updated_at=now - timedelta(days=1))
    session.add_all([customer, order])
    session.flush()
    return order, customer


@contextmanager
def _unit_of_work_runs(session: Any) -> Iterator[list[int]]:
    """Yield a list that gets one item per flush the unit of work does in `session`."""
    runs: list[int] = []

    def count(*_: Any) -> None:
        runs.append(1)

    event.listen(session, "before_flush", count)
    try:
        yield runs
    finally:
        event.remove(session, "before_flush", count)


def _row(session: Any, order_id: int, customer_id: int) -> tuple[Any, ...]:
    row = session.execute(text("SELECT o.is_paid, o.merchandise, c.tier, c.referral_code "
                               "FROM orders o, customers c WHERE o.id = :o AND c.id = :c"),
                          {"o": order_id, "c": customer_id}).one()
    return bool(row[0]), Decimal(str(row[1])) if row[1] is not None else None, row[2], row[3]


def test_flush_writes_changes_to_locked_rows_without_the_unit_of_work(app, make_shop):
    shop_id = make_shop("shopify")
    session = new_session()
    try:
        # given an order and a customer this transaction holds locked, both changed
        order, customer = _locked_order_and_customer(session, shop_id)
        note(session, LOCKED_ORDERS, order.id)
        note(session, LOCKED_CUSTOMERS, customer.id)
        old_stamp = customer.updated_at
        order.is_paid, order.merchandise, order.tags = True, Decimal("49.90"), ["vip"]
        customer.tier, customer.referral_code = "Silber", "FREUND-X"

        # when the session is flushed the short way
        with _unit_of_work_runs(session) as runs:
            flush(session)

        # then the unit of work did not run, nothing is pending, the onupdate stamps moved on
        # (in the objects as in the rows), and the rows hold the changes
        assert runs == []
        assert not session.dirty
        assert customer.updated_at > old_stamp and order.updated_at > old_stamp
        stamps = session.execute(text("SELECT updated_at FROM customers WHERE id = :c"), {"c": customer.id}).scalar()
        assert stamps is not None
        assert _row(session, order.id, customer.id) == (True, Decimal("49.90"), "Silber", "FREUND-X")
        session.commit()
    finally:
        session.close()
    with session_scope() as s:
        assert s.get(Order, order.id).tags == ["vip"]
        assert s.get(Customer, customer.id).updated_at == customer.updated_at


def test_flush_leaves_anything_else_to_the_unit_of_work(app, make_shop):
    shop_id = make_shop("shopify")
    session = new_session()
    try:
        order, customer = _locked_order_and_customer(session, shop_id)
        with _unit_of_work_runs(session) as runs:
            # given a changed customer nobody noted as locked; when flushed
            customer.tier = "Gold"
            flush(session)
            # then the unit of work wrote it
            assert runs == [1]
            assert _row(session, order.id, customer.id)[2] == "Gold"

            # given a locked customer's change next to a new object; when flushed
            note(session, LOCKED_CUSTOMERS, customer.id)
            customer.tier = "Silber"
            session.add(IssuedCode(shop_id=shop_id, customer_id=customer.id, purpose="reward", source_key="k",
                                   code="SK-K", spec={}, status=CodeStatus.PENDING, attempts=0))
            flush(session)
            # then the unit of work wrote both
            assert runs == [1, 1]
            assert _row(session, order.id, customer.id)[2] == "Silber"
            assert session.scalar(select(_CODES.c.code).where(_CODES.c.source_key == "k")) == "SK-K"
        session.commit()
    finally:
        session.close()


def test_loaded_objects_join_the_session_as_the_orm_would_load_them(app, make_shop):
    from app.loyalty.customers import _ACCOUNT_OR_GUEST
    from app.db import load_objects

    # given an account and a guest with the same e-mail, and another account
    shop_id = make_shop("shopify")
    now = utcnow()
    with session_scope() as s:
        s.add_all([
            Customer(shop_id=shop_id, platform_id="c-1", email="a@example.test", tier="Gold", created_at=now, updated_at=now),
            Customer(shop_id=shop_id, platform_id=None, email="a@example.test", created_at=now, updated_at=now),
            Customer(shop_id=shop_id, platform_id="c-2", email="b@example.test", created_at=now, updated_at=now),
        ])
    params = {"shop_id": shop_id, "platform_id": "c-1", "email": "a@example.test"}

    # when they are loaded the ORM's way, and then the short way
    with session_scope() as s:
        theirs = s.scalars(_ACCOUNT_OR_GUEST, params).all()
        theirs_values = sorted((c.id, c.platform_id, c.email, c.tier, c.created_at) for c in theirs)
    with session_scope() as s:
        ours = load_objects(s, Customer, _ACCOUNT_OR_GUEST, params)

        # then they are the same rows with the same values, persistent and clean
        assert sorted((c.id, c.platform_id, c.email, c.tier, c.created_at) for c in ours) == theirs_values
        assert all(c in s and not s.is_modified(c) for c in ours)
        account = next(c for c in ours if c.platform_id == "c-1")

        # and loading again returns the same objects: a local change stays, an expired one is refilled
        account.tier = "Silber"
        guest = next(c for c in ours if c.platform_id is None)
        s.expire(guest)
        again = load_objects(s, Customer, _ACCOUNT_OR_GUEST, params)
        assert {id(c) for c in again} == {id(c) for c in ours}
        assert account.tier == "Silber"
        assert "email" not in inspect(guest).unloaded and guest.email == "a@example.test"
    with session_scope() as s:
        assert s.scalar(select(Customer.tier).where(Customer.platform_id == "c-1")) == "Silber"


_SET_TIER = update(Customer).where(Customer.id == bindparam("b_id")).values(tier=bindparam("b_tier"))


def _new_customer(shop_id: int, platform_id: str = "c-1") -> int:
    now = utcnow()
    with session_scope() as s:
        customer = Customer(shop_id=shop_id, platform_id=platform_id, email=f"{platform_id}@example.test",
                            created_at=now, updated_at=now)
        s.add(customer)
        s.flush()
        return customer.id


def _tier(customer_id: int) -> str | None:
    with session_scope() as s:
        return s.scalar(select(Customer.tier).where(Customer.id == customer_id))


def test_a_write_behind_is_seen_by_the_next_statement_and_committed_with_the_transaction(app, make_shop):
    shop_id = make_shop("shopify")
    customer_id = _new_customer(shop_id)
    with get_engine().connect() as conn:
        # given a queued write on a kept connection
        with session_scope(conn) as s:
            driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": customer_id, "b_tier": "Silber"})
            # when the transaction's next statements run, through driver_sql and the executor
            seen_by_ours = driver_sql.execute(s.connection(), select(Customer.tier).where(Customer.id == customer_id),
                                              {}).rows
            driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": customer_id, "b_tier": "Gold"})
            seen_by_executor = s.scalar(select(Customer.tier).where(Customer.id == customer_id))
            driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": customer_id, "b_tier": "Platin"})

        # then each saw the writes before it, and the commit sent the last one
        assert seen_by_ours == [{"tier": "Silber"}]
        assert seen_by_executor == "Gold"
        assert _tier(customer_id) == "Platin"


def test_a_connection_given_back_is_kept_for_the_next_checkout_without_what_waited_on_it(app, make_shop,
                                                                                       database_url):
    from app.db import make_engine

    shop_id = make_shop("shopify")
    customer_id = _new_customer(shop_id)
    engine = make_engine(database_url)  # its own pool: one connection, so the next checkout is it
    try:
        # given a connection with a write still waiting on it, given back without a commit
        with engine.connect() as conn:
            first = conn.connection.dbapi_connection
            driver_sql.write_behind(conn, _SET_TIER, {"b_id": customer_id, "b_tier": "Silber"})

        # when the pool hands out a connection again
        with engine.connect() as conn:
            # then it is the same one (the pool's reset did not fail and throw it away), and
            # nothing waits on it
            assert conn.connection.dbapi_connection is first
            assert driver_sql._BEHIND not in conn.info
            conn.commit()
    finally:
        engine.dispose()
    assert _tier(customer_id) is None


def test_a_rollback_drops_what_waits_and_a_savepoint_keeps_what_came_before_it(app, make_shop):
    shop_id = make_shop("shopify")
    customer_id = _new_customer(shop_id)
    other_id = _new_customer(shop_id, "c-2")
    with get_engine().connect() as conn:
        # given a transaction that queues a write and fails
        with pytest.raises(RuntimeError), session_scope(conn) as s:
            driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": customer_id, "b_tier": "Never"})
            raise RuntimeError("the order failed")

        # when the connection's next transaction queues a write, opens a savepoint, queues one
        # more in it and rolls the savepoint back
        with session_scope(conn) as s:
            driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": other_id, "b_tier": "Silber"})
            with pytest.raises(RuntimeError), s.begin_nested():
                driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": customer_id, "b_tier": "Rolled back"})
                raise RuntimeError("the savepoint fails")

    # then only the write before the savepoint was kept, and nothing of the first transaction
    assert _tier(customer_id) is None
    assert _tier(other_id) == "Silber"


def test_a_failing_write_behind_fails_the_statement_it_went_out_with(app, make_shop):
    shop_id = make_shop("shopify")
    customer_id = _new_customer(shop_id)
    with get_engine().connect() as conn:
        # given a queued write that the database refuses (an unknown shop)
        bad = update(Customer).where(Customer.id == bindparam("b_id")).values(shop_id=bindparam("b_shop"))
        with pytest.raises(IntegrityError, match="shop"), session_scope(conn) as s:
            driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": customer_id, "b_tier": "Silber"})
            driver_sql.write_behind(s.connection(), bad, {"b_id": customer_id, "b_shop": 999_999})
            # when the next statement runs: then it raises the write's error
            driver_sql.execute(s.connection(), select(Customer.tier).where(Customer.id == customer_id), {})

        # and the transaction rolled back; the connection serves the next one
        with session_scope(conn) as s:
            driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": customer_id, "b_tier": "Gold"})
    assert _tier(customer_id) == "Gold"


def test_on_postgresql_a_write_behind_costs_no_round_trip_of_its_own(app, make_shop, database_url, monkeypatch):
    if not database_url.startswith("postgresql"):
        pytest.skip("psycopg's pipeline mode is PostgreSQL's")
    import psycopg

    shop_id = make_shop("shopify")
    customer_id = _new_customer(shop_id)
    syncs: list[int] = []
    real_pipeline = psycopg.Connection.pipeline

    @contextmanager
    def counted(self: Any) -> Iterator[Any]:
        with real_pipeline(self) as pipeline:
            yield pipeline
        syncs.append(1)

    with get_engine().connect() as conn, session_scope(conn) as s:
        driver_sql.execute(s.connection(), select(Customer.tier).where(Customer.id == customer_id), {})
        # given a transaction under way; when writes are queued and a read follows
        monkeypatch.setattr(psycopg.Connection, "pipeline", counted)
        driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": customer_id, "b_tier": "Silber"})
        driver_sql.write_behind(s.connection(), _SET_TIER, {"b_id": customer_id, "b_tier": "Gold"})
        rows = driver_sql.execute(s.connection(), select(Customer.tier).where(Customer.id == customer_id), {}).rows
        # then the writes and the read went out in one pipeline: one round trip
        assert syncs == [1]
        assert rows == [{"tier": "Gold"}]


def test_inside_a_savepoint_nothing_waits_so_the_savepoint_catches_the_error(app, make_shop):
    from app.db import insert_behind
    from app.models import LedgerEntry

    shop_id = make_shop("shopify")
    customer_id = _new_customer(shop_id)

    def entry() -> LedgerEntry:
        return LedgerEntry(shop_id=shop_id, customer_id=customer_id, delta=0, reason="merged_guest",
                           source_type="customer", source_id="same", detail={})

    with get_engine().connect() as conn, session_scope(conn) as s:
        # given an entry with a key, written behind outside any savepoint
        insert_behind(s, entry())
        # when a savepoint writes the same key behind, and another one changes a locked row
        with pytest.raises(IntegrityError), s.begin_nested():
            insert_behind(s, entry())
        customer = s.get(Customer, customer_id)
        note(s, LOCKED_CUSTOMERS, customer_id)
        with pytest.raises(IntegrityError), s.begin_nested():
            customer.shop_id = 999_999  # an unknown shop: the UPDATE is refused
            flush(s)
        # then each savepoint caught its own error at once, and the transaction goes on
        s.expire_all()
        assert s.get(Customer, customer_id).shop_id == shop_id
    with session_scope() as s:
        assert s.scalars(select(LedgerEntry.source_id)).all() == ["same"]
