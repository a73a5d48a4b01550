"""A platform customer becomes our row with its profile and consent, whoever inserts it first.

Domain-level, on SQLite and PostgreSQL: `upsert_customer` as a worker calls it for an order.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import event, select

from app.loyalty.customers import upsert_customer
from app.db import session_scope
from app.models import ConsentEvent, Customer, Shop
from connectors import types as ct
from tests.factories import T0


def _profile(first_name: str, updated_at=T0, accepts_marketing: bool | None = True) -> ct.Customer:  # type: ignore[no-untyped-def]
    return ct.Customer(id="4711", email="kundin@example.test", first_name=first_name, last_name="Muster",
                       locale="de", accepts_marketing=accepts_marketing, marketing_consent_at=updated_at,
                       birthday=date(1990, 5, 17), updated_at=updated_at)


def _stored(shop_id: int) -> tuple[tuple, list[tuple[str, str]]]:  # type: ignore[type-arg]
    with session_scope() as s:
        c = s.scalars(select(Customer).where(Customer.shop_id == shop_id)).one()
        events = [(e.kind, e.source) for e in s.scalars(select(ConsentEvent).order_by(ConsentEvent.id))]
        return (c.platform_id, c.first_name, c.last_name, c.locale, c.birthday, c.accepts_marketing,
                c.consent_source, c.platform_updated_at), events


def test_a_new_account_gets_its_profile_and_consent_with_proof_in_one_insert_and_one_update(app, make_shop):
    # given a shop and a Shopify customer we have never seen, who opted in to e-mail marketing
    shop_id = make_shop("shopify")

    # when the worker meets them for the first time
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement.split()[0].upper())

    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        event.listen(s.get_bind(), "before_cursor_execute", seen)
        try:
            upsert_customer(s, shop, _profile("Erika"))
            s.flush()
        finally:
            event.remove(s.get_bind(), "before_cursor_execute", seen)

    # then the row holds the profile and the consent, with its proof, written by one INSERT of the
    # account and one UPDATE of its profile
    assert _stored(shop_id) == (
        ("4711", "Erika", "Muster", "de", date(1990, 5, 17), True, "shopify", T0),
        [("granted", "shopify")],
    )
    assert statements.count("UPDATE") == 1


def test_an_account_inserted_by_someone_else_first_still_gets_the_newer_profile(app, make_shop):
    # given an account another worker inserted, with an older profile and no marketing consent
    from app.loyalty import customers

    shop_id = make_shop("shopify")
    with session_scope() as s:
        customers._insert_account(s, s.get(Shop, shop_id), _profile("Erika", accepts_marketing=False),
                                  "kundin@example.test")

    # when this worker's INSERT of the same account finds it there, with a newer profile that opts in
    with session_scope() as s:
        row, inserted = customers._insert_account(s, s.get(Shop, shop_id),
                                                  _profile("Erika-Maria", T0 + timedelta(days=1)),
                                                  "kundin@example.test")
        assert row.id is not None and not inserted

    # then the existing row takes the newer profile and consent, and both statements have their proof
    assert _stored(shop_id) == (
        ("4711", "Erika-Maria", "Muster", "de", date(1990, 5, 17), True, "shopify", T0 + timedelta(days=1)),
        [("revoked", "shopify"), ("granted", "shopify")],
    )
