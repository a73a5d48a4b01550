"""`app.db.insert_object`: a row written by one prebuilt INSERT joins the session as if loaded.

On SQLite and PostgreSQL: the object holds what a fresh load of its row holds, reading it costs
no SQL, and a conflicting row leaves nothing behind in the session.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import event, select

from app.loyalty import codes, customers
from app.db import generated_columns, insert_object, new_session, session_scope
from app.models import CodeStatus, Customer, IssuedCode, utcnow


def _columns(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.c}


def _count_sql(session: Any) -> list[str]:
    seen: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_generated_columns_are_the_key_and_server_defaults() -> None:
    from app.models import Checkout

    assert [c.key for c in generated_columns(Customer.__table__)] == ["id"]
    assert [c.key for c in generated_columns(Checkout.__table__)] == ["id", "sequence", "next_step"]


def test_an_inserted_object_holds_what_its_row_holds_without_more_sql(app, make_shop):
    # given a shop, a new customer with few fields set, and a code relying on column defaults
    shop_id = make_shop("shopify")
    now = utcnow()
    with session_scope() as s:
        customer = insert_object(
            s, customers._INSERT_ACCOUNT(s),
            Customer(shop_id=shop_id, platform_id="c-1", email="kundin@example.test", created_at=now, updated_at=now),
        )
        assert customer is not None
        code = insert_object(
            s, codes._INSERT_CODE(s),
            IssuedCode(shop_id=shop_id, customer_id=customer.id, purpose="reward", source_key="k-1", code="SK-1",
                       spec={"value": "5.00"}, status=CodeStatus.PENDING, attempts=0, expires_at=None),
        )
        assert code is not None

        # when every column of both is read in the same session
        statements = _count_sql(s)
        held = {"customer": _columns(customer), "code": _columns(code)}

        # then no statement ran (no attribute was left to load) and nothing is pending
        assert statements == []
        assert not s.dirty and not s.new

    # and a fresh load of the rows holds the same values, defaults included
    with session_scope() as s:
        loaded = {"customer": _columns(s.get(Customer, held["customer"]["id"])),
                  "code": _columns(s.get(IssuedCode, held["code"]["id"]))}
    assert loaded == held
    assert held["code"]["created_at"] is not None and held["code"]["created_at"].tzinfo is not None
    assert held["customer"]["tier"] is None and held["customer"]["accepts_marketing"] is loaded["customer"]["accepts_marketing"]
    assert held["code"]["spec"] == {"value": "5.00"}


def test_a_conflicting_insert_returns_none_and_keeps_the_first_row(app, make_shop):
    # given a code already recorded for (shop, purpose, source key)
    shop_id = make_shop("shopify")

    def code(value: str) -> IssuedCode:
        return IssuedCode(shop_id=shop_id, customer_id=None, purpose="reward", source_key="same", code=f"SK-{value}",
                          spec={"value": value}, status=CodeStatus.PENDING, attempts=0)

    with session_scope() as s:
        assert insert_object(s, codes._INSERT_CODE(s), code("1")) is not None

    # when the same key is inserted again
    with session_scope() as s:
        second = code("2")
        result = insert_object(s, codes._INSERT_CODE(s), second)

        # then nothing is inserted and the object stays out of the session
        assert result is None
        assert second not in s

    session = new_session()
    try:
        rows = session.scalars(select(IssuedCode).where(IssuedCode.source_key == "same")).all()
        assert [(r.code, r.spec) for r in rows] == [("SK-1", {"value": "1"})]
        assert Decimal(rows[0].spec["value"]) == Decimal("1")
    finally:
        session.close()
