"""Hostile input ends the same way on SQLite and PostgreSQL: the receiver answers 400 for what no
parser takes, and an accepted delivery whose fields are out of what we store ends failed with the
reason, never awarded and never a database error."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from markupsafe import escape

from app.db import session_scope
from app.models import DeliveryStatus, LedgerEntry, Order, Shop, WebhookDelivery
from app.program import current_program, save_program
from jobs.deliveries import replay_delivery
from tests.app.test_admin import _signed_in
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



def test_an_order_over_the_shops_points_limit_is_held_failed_with_the_reason(client, session, make_shop,
                                                                              post_webhook, work):
    # given a shop with the default program (at most 1 000 000 points per order), and a correctly
    # signed paid order of 5 000 000 € (within what the connectors store, so the parser takes it)
    shop_id = make_shop("shopify")
    body = _order(subtotal_price="5000000.00", total_price="5000000.00")

    # when it is delivered and the worker runs
    assert post_webhook("shopify", "orders/paid", body).status_code == 200
    work()

    # then the delivery is failed with the reason, and nothing of the order is written
    with session_scope() as s:
        delivery = s.scalars(select(WebhookDelivery)).one()
        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.error is not None
        assert "more than the shop's limit of 1000000 per order (program: earning.max_points_per_order); " \
               "nothing was awarded" in delivery.error
        assert s.scalars(select(LedgerEntry)).all() == []
        assert s.scalars(select(Order)).all() == []
        delivery_id, reason = delivery.id, delivery.error

    # and staff see the reason among the failed deliveries in the admin
    _signed_in(client, session)
    html = client.get("/admin/deliveries?status=failed").get_data(as_text=True)
    assert f'id="delivery-{delivery_id}"' in html and str(escape(reason)) in html

    # when the merchant confirms the order is real, raises the limit and the delivery is replayed
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        assert shop is not None
        document = current_program(s, shop)[1].model_dump(mode="json")
        document["earning"]["max_points_per_order"] = 10_000_000
        save_program(s, shop, document, created_by="test")
    assert replay_delivery(delivery_id)
    work()

    # then it is awarded once, with the points the order is worth
    with session_scope() as s:
        assert s.get(WebhookDelivery, delivery_id).status == DeliveryStatus.PROCESSED
        [earn] = s.scalars(select(LedgerEntry).where(LedgerEntry.reason == "earn")).all()
        assert 1_000_000 < earn.delta <= 5_000_000
