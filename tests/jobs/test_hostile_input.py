"""Hostile input ends the same way on SQLite and PostgreSQL: the receiver answers 400 for what no
parser takes, and an accepted delivery whose fields are out of what we store ends failed with the
reason, never awarded and never a database error."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.models import DeliveryStatus, LedgerEntry, WebhookDelivery
from tests.conftest import fixture_bytes


def _order(**changes) -> bytes:  # type: ignore[no-untyped-def]
    order = json.loads(fixture_bytes("shopify", "orders_paid.json"))
    for key, value in changes.items():
        order[key] = value
        order.pop(f"{key}_set", None)  # the parser prefers `<key>_set.shop_money` when present
    return json.dumps(order).encode()


@pytest.mark.parametrize(("_case", "changes", "reason"), [
    ("a subtotal of 10^17 (it earned 10^17 points before)", {"subtotal_price": "1E+17"},
     "orders/paid: subtotal_price is out of range"),
    ("an order id of 65 digits", {"id": int("9" * 65)}, "orders/paid: id is longer than 64 characters"),
    ("money with 5 decimal places", {"total_price": "199.00001"},
     "orders/paid: total_price has more than 4 decimal places"),
])
def test_out_of_range_fields_end_failed_with_the_reason(_case, changes, reason, make_shop, post_webhook, work):
    # given a shop, and a correctly signed order whose field is outside what we store
    make_shop("shopify")

    # when it is delivered and the worker runs
    assert post_webhook("shopify", "orders/paid", _order(**changes)).status_code == 200
    work()

    # then the delivery is failed with the reason (on both databases alike) and nothing is awarded
    with session_scope() as s:
        delivery = s.scalars(select(WebhookDelivery)).one()
        assert (delivery.status, delivery.error) == (DeliveryStatus.FAILED, reason)
        assert s.scalars(select(LedgerEntry)).all() == []
