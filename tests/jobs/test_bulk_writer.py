"""The bulk writer of new customers' paid orders (`app.loyalty.writer`, via `jobs.deliveries`).

It must leave exactly the rows the per-delivery path leaves, in a handful of statements per group;
a delivery it cannot take (bad, or raced by another transaction) never costs its neighbours.
Every test runs on SQLite and PostgreSQL unless marked.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, select, update

from app.models import (
    Checkout,
    ConsentEvent,
    Customer,
    CustomerTierTag,
    DeliveryStatus,
    IssuedCode,
    LedgerEntry,
    Order,
    OrderTask,
    PointLot,
    TierChange,
    WebhookDelivery,
)
from tests.conftest import fixture_bytes
from tests.factories import program

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
# Every step that follows a first payment is on: bonus, second-purchase, bounce-back and referral
# codes, a gift, a tier with both perks (the fixture's 587.00 reach Gold).
EVERYTHING = {
    "earning": {"first_order_bonus": 50},
    "bounce_back": {"enabled": True, "threshold": "100", "kind": "fixed_amount", "value": "5",
                    "minimum_amount": "30", "valid_days": 30},
    "gifts": [{"name": "Tasche", "min_amount": "100"}],
    "tiers": {"levels": [
        {"name": "Bronze", "threshold": "0"},
        {"name": "Gold", "threshold": "500", "multiplier": "1.5", "member_discount_percent": "5",
         "free_shipping": True},
    ]},
}


def paid_order(k: int, **changes: Any) -> dict[str, Any]:
    """The real orders/paid fixture as the k-th distinct order of a distinct customer."""
    body = json.loads(fixture_bytes("shopify", "orders_paid.json"))
    body = copy.deepcopy(body)
    email = f"kunde{k}@example.test"
    body.update(id=9_000_000_000 + k, order_number=5000 + k, name=f"#B{k}", email=email, contact_email=email,
                checkout_token=f"checkout-{k}", **changes)
    body["customer"] = dict(body["customer"], id=8_000_000_000 + k, email=email)
    return body


def post_all(post_webhook, session, bodies: list[dict[str, Any]]) -> list[int]:  # type: ignore[no-untyped-def]
    for n, body in enumerate(bodies):
        response = post_webhook("shopify", "orders/paid", body, event_id=f"bulk-{n}")
        assert response.status_code == 200, response.get_json()
    ids = list(session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)))
    session.commit()
    return ids


class Statements:
    """Counts the statements the app's engine runs, by their first words (e.g. "INSERT INTO customers")."""

    def __init__(self) -> None:
        from app import db

        self.engine = db.get_engine()
        self.seen: Counter[str] = Counter()
        self.commits = 0

    def _on(self, conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        self.seen[" ".join(statement.split()[:3])] += 1

    def _on_commit(self, conn) -> None:  # type: ignore[no-untyped-def]
        self.commits += 1

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._on)
        event.listen(self.engine, "commit", self._on_commit)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on)
        event.remove(self.engine, "commit", self._on_commit)


@pytest.fixture
def one_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """Process a batch as one group (PostgreSQL deals a batch out to lanes, one group each)."""
    import jobs.deliveries

    monkeypatch.setattr(jobs.deliveries, "POSTGRES_LANES", 1)


def dump(session, shop_id: int) -> dict[str, list[Any]]:  # type: ignore[no-untyped-def]
    """Every row the order path writes, with database ids replaced by natural keys (platform
    ids, a lot's order and rule) and derived codes checked against their derivation."""
    from app.loyalty.codes import derive_code

    def rows(model: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in session.execute(select(model.__table__)).mappings()]

    customers = {r["id"]: f"C{r['platform_id']}" for r in rows(Customer)}
    orders = {r["id"]: f"O{r['platform_id']}" for r in rows(Order)}
    lots = {r["id"]: (orders.get(r["order_id"]), r["rule"]["rule"]) for r in rows(PointLot)}
    ids = {"customer_id": customers, "order_id": orders, "lot_id": lots}

    def plain(row: dict[str, Any], drop: tuple[str, ...] = ("id", "created_at", "updated_at")) -> dict[str, Any]:
        out = {k: (ids[k].get(v, v) if k in ids and v is not None else v) for k, v in row.items() if k not in drop}
        return out

    result: dict[str, list[Any]] = {}
    result["customers"] = []
    for r in rows(Customer):
        if r["referral_code"] is not None:
            assert r["referral_code"] == derive_code(shop_id, "referral", str(r["id"]))
        result["customers"].append(plain(r, ("id", "created_at", "updated_at", "referral_code"))
                                   | {"has_referral_code": r["referral_code"] is not None})
    result["orders"] = [plain(r) for r in rows(Order)]
    result["lots"] = [plain(r) for r in rows(PointLot)]
    entries = []
    for r in rows(LedgerEntry):
        source = r["source_id"]
        if r["source_type"] == "order":
            source = orders[int(source)]
        elif r["source_type"] == "customer":
            source = customers[int(source)]
        entries.append(plain(r, ("id",)) | {"source_id": source})
    result["entries"] = entries
    codes = []
    for r in rows(IssuedCode):
        assert r["code"] == derive_code(shop_id, r["purpose"], r["source_key"]) == r["spec"]["code"]
        owner, _, rest = r["source_key"].partition(":")
        # a bounce-back code is keyed by its order, the others by their customer
        source = orders[int(owner)] if r["purpose"] == "bounce_back" else customers[int(owner)]
        codes.append(plain(r, ("id", "created_at", "updated_at", "code"))
                     | {"source_key": f"{source}:{rest}",
                        "spec": {k: v for k, v in r["spec"].items() if k != "code"}})
    result["codes"] = codes
    result["tier_changes"] = [plain(r) for r in rows(TierChange)]
    result["tier_tags"] = [plain(r) for r in rows(CustomerTierTag)]
    result["consent_events"] = [plain(r) for r in rows(ConsentEvent)]
    result["order_tasks"] = [plain(r) for r in rows(OrderTask)]
    result["checkouts"] = [plain(r, ("id",)) for r in rows(Checkout)]
    result["deliveries"] = [
        (r["id"], r["status"], r["attempts"], r["error"], r["processed_at"]) for r in rows(WebhookDelivery)]
    session.commit()
    return {name: sorted(values, key=repr) for name, values in result.items()}


# Earning by product: the black iPod's variant earns double, on its line's own base.
DOUBLE_VARIANT = {"product_rules": [{"name": "Schwarz doppelt", "variant_ids": ["39072856"], "multiplier": "2"}]}


@pytest.mark.parametrize(("_case", "earning"), [
    ("program without product rules", {}),
    ("a product rule doubles one line of each order", DOUBLE_VARIANT),
])
def test_bulk_and_per_delivery_paths_leave_the_same_rows(make_shop, post_webhook, session, time_machine, one_lane,
                                                         _case: str, earning: dict[str, Any]):
    # given a program with every step after a first payment, a checkout waiting for one order,
    # and four paid orders of new customers: plain, a staff order (earns nothing), one who
    # subscribed and speaks English, one paid with a gift card line
    time_machine.move_to(NOW, tick=False)
    shop_id = make_shop("shopify")
    program(shop_id, {**EVERYTHING, "earning": {**EVERYTHING["earning"], **earning}})
    subscribed = {"state": "subscribed", "opt_in_level": "single_opt_in",
                  "consent_updated_at": "2026-11-01T08:00:00+00:00"}
    bodies = [paid_order(0), paid_order(1, tags="staff"), paid_order(2), paid_order(3)]
    bodies[2]["customer"] = dict(bodies[2]["customer"], email_marketing_consent=subscribed, locale="en")
    ids = post_all(post_webhook, session, bodies)
    session.add(Checkout(shop_id=shop_id, platform_id="checkout-2", currency="EUR", total=Decimal("598.94"),
                         next_reminder_at=NOW))
    session.commit()
    from jobs.deliveries import process_deliveries, process_delivery

    # when one job processes them together (the bulk writer) ...
    with Statements() as bulk:
        assert process_deliveries(ids) == {"processed": 4}
    together = dump(session, shop_id)

    # ... and, from the same start, each is processed on its own (the per-delivery path)
    for model in (LedgerEntry, PointLot, IssuedCode, TierChange, CustomerTierTag, ConsentEvent, OrderTask, Order,
                  Customer):
        session.execute(model.__table__.delete())
    session.execute(update(Checkout).values(completed_at=None, next_reminder_at=NOW))
    session.execute(update(WebhookDelivery).values(status=DeliveryStatus.RECEIVED, attempts=0, processed_at=None))
    session.commit()
    with Statements() as alone:
        assert [process_delivery(i) for i in ids] == ["processed"] * 4
    one_by_one = dump(session, shop_id)

    # then the rows are the same, table by table
    for table in together:
        assert together[table] == one_by_one[table], table
    # and every step happened: 3 earning orders with bonus, gift, Gold and perks; the staff order
    # earns nothing (no entry) but its customer is stored, with win-back; a checkout completed
    assert len(together["customers"]) == 4 and len(together["orders"]) == 4
    assert Counter(e["reason"] for e in together["entries"]) == {"earn": 3, "first_order_bonus": 3}
    assert Counter(c["purpose"] for c in together["codes"]) == {
        "second_purchase": 3, "bounce_back": 3, "referral": 3, "tier_discount": 3, "tier_shipping": 3}
    # (each order's bounce-back code is for its own customer only, once, from a 30 € order)
    for code in (c for c in together["codes"] if c["purpose"] == "bounce_back"):
        assert code["spec"]["customer_id"] and code["spec"]["customer_email"]
        assert (code["spec"]["kind"], code["spec"]["value"], code["spec"]["minimum_amount"],
                code["spec"]["usage_limit"]) == ("fixed_amount", "5", "30", 1)
    assert len(together["tier_changes"]) == 3 and len(together["order_tasks"]) == 3
    # and each new member's tier waits to be written to the shop (a job writes it), on both paths
    assert sorted((t["status"], t["generation"], t["written"]) for t in together["tier_tags"]) == [
        ("pending", 1, None)] * 3
    assert Counter(e["kind"] for e in together["consent_events"]) == {"revoked": 3, "granted": 1}
    [checkout] = together["checkouts"]
    assert checkout["completed_at"] is not None and checkout["next_reminder_at"] is None
    assert all(c["next_winback_at"] is not None for c in together["customers"])
    # and the group wrote its customers in one INSERT, where one by one took one each
    assert bulk.seen["INSERT INTO customers"] == 1 and alone.seen["INSERT INTO customers"] == 4
    assert bulk.seen["INSERT INTO ledger_entries"] == 1
    # and with the product rule each award names its lines: the doubled one holds twice the
    # points of each of the other two (587.00 eligible, 195.66 of it doubled; Gold comes after)
    earned = sorted(e["delta"] for e in together["entries"] if e["reason"] == "earn")
    if earning:
        assert earned == [782] * 3  # floor(587.00 + 195.66)
        for entry in (e for e in together["entries"] if e["reason"] == "earn"):
            lines = {line["id"]: line for line in entry["detail"]["lines"]}
            assert lines["466157049"]["rule"] == "Schwarz doppelt" and lines["466157049"]["factor"] == "2"
            assert sum(line["points"] for line in lines.values()) == 782
    else:
        assert earned == [587] * 3


def test_a_bad_delivery_in_a_group_fails_alone(make_shop, post_webhook, session, one_lane):
    # given a group of three paid orders of new customers, the middle one without its line items
    make_shop("shopify")
    broken = paid_order(1)
    del broken["line_items"]
    ids = post_all(post_webhook, session, [paid_order(0), broken, paid_order(2)])
    from jobs.deliveries import process_deliveries

    # when one job processes them
    outcome = process_deliveries(ids)

    # then the two good orders earned, and the bad one is failed with the reason, for a person
    assert outcome == {"processed": 2, "failed": 1}
    rows = {d.id: d for d in session.scalars(select(WebhookDelivery))}
    assert rows[ids[1]].status == DeliveryStatus.FAILED and "line_items" in rows[ids[1]].error
    earns = list(session.scalars(select(LedgerEntry.delivery_id).where(LedgerEntry.reason == "earn")))
    session.commit()
    assert sorted(earns) == [ids[0], ids[2]]


def test_deliveries_that_name_the_same_customer_go_the_per_delivery_path(make_shop, post_webhook, session,
                                                                         one_lane):
    # given a group holding two paid orders of one new customer, and a third customer's order
    make_shop("shopify")
    second = paid_order(1)
    second["customer"] = paid_order(0)["customer"]
    second["email"] = second["contact_email"] = paid_order(0)["email"]
    ids = post_all(post_webhook, session, [paid_order(0), second, paid_order(2)])
    from jobs.deliveries import process_deliveries

    # when one job processes them
    with Statements() as seen:
        assert process_deliveries(ids) == {"processed": 3}

    # then the shared customer exists once with both orders and one first-order code; only the
    # third customer went through the bulk INSERT
    customers = session.scalars(select(Customer).order_by(Customer.platform_id)).all()
    assert [c.platform_id for c in customers] == ["8000000000", "8000000002"]
    orders = Counter(session.scalars(select(Order.customer_id)))
    assert orders == {customers[0].id: 2, customers[1].id: 1}
    seconds = list(session.scalars(select(IssuedCode.customer_id).where(IssuedCode.purpose == "second_purchase")))
    session.commit()
    assert sorted(seconds) == sorted(c.id for c in customers)
    assert seen.seen["INSERT INTO customers"] == 2  # the bulk one, and the per-delivery one


@pytest.mark.postgres_only  # SQLite's write lock admits no second writer while a group is written
@pytest.mark.parametrize("_case, raced", [("customer", "customer"), ("order", "order")])
def test_a_row_written_meanwhile_sends_its_delivery_down_the_per_delivery_path(
        _case, raced, make_shop, post_webhook, session, monkeypatch, one_lane):
    # given a group of three paid orders of new customers
    shop_id = make_shop("shopify")
    ids = post_all(post_webhook, session, [paid_order(0), paid_order(1), paid_order(2)])
    from app.db import session_scope
    from app.loyalty import customers, orders, writer
    from app.models import Shop
    from connectors import types as ct
    from jobs.deliveries import process_deliveries

    # and another transaction that stores the second order's customer (or an empty row of its
    # order, as a refund arriving first does) and commits after the group looked for them
    real_stored = writer._stored
    raced_once: list[bool] = []

    def stored_then_raced(session_, shop, todo):  # type: ignore[no-untyped-def]
        found = real_stored(session_, shop, todo)
        if raced_once:
            return found
        raced_once.append(True)
        with session_scope() as other:
            other_shop = other.get(Shop, shop_id)
            if raced == "customer":
                customers.upsert_customer(other, other_shop, ct.Customer(id="8000000001",
                                                                         email="kunde1@example.test"))
            else:
                orders.lock_order(other, other_shop, "9000000001")
        return found

    monkeypatch.setattr(writer, "_stored", stored_then_raced)

    # when one job processes them
    with Statements() as seen:
        assert process_deliveries(ids) == {"processed": 3}

    # then each customer and order exists once, each order earned once, and the raced delivery
    # was written by the per-delivery path in the same transaction
    platform_ids = list(session.scalars(select(Customer.platform_id)))
    order_ids = list(session.scalars(select(Order.platform_id)))
    earns = list(session.scalars(select(LedgerEntry.delivery_id).where(LedgerEntry.reason == "earn")))
    proofs = Counter(session.scalars(select(ConsentEvent.kind)))
    session.commit()
    assert sorted(platform_ids) == ["8000000000", "8000000001", "8000000002"]
    assert proofs == {"revoked": 3}  # each customer's consent (the fixture: not subscribed) with its proof
    assert sorted(order_ids) == ["9000000000", "9000000001", "9000000002"]
    assert sorted(earns) == sorted(ids)
    assert seen.commits == 2  # the other transaction, and the group: nothing fell back to one by one
    # the group's customers in one INSERT (and the other transaction's own)
    assert seen.seen["INSERT INTO customers"] == (2 if raced == "customer" else 1)
