"""Shopify's erasure webhooks, end to end: signed POST -> inbox -> RQ worker -> rows erased.

On SQLite and PostgreSQL. The customer is the one of tests/fixtures/shopify/orders_paid.json.
"""

from __future__ import annotations

import json

from sqlalchemy import func, select

from app.db import session_scope
from app.models import (
    Customer,
    DeliveryStatus,
    LedgerEntry,
    Order,
    PointLot,
    Shop,
    WebhookDelivery,
)
from tests.conftest import fixture_bytes

EMAIL = "bob.norman@mail.example.com"
CUSTOMER_ID = 207119551
ORDER_ID = 450789469


def _post(post_webhook, topic: str, body: bytes | dict, event_id: str) -> None:  # type: ignore[no-untyped-def, type-arg]
    response = post_webhook("shopify", topic, body, event_id=event_id)
    assert response.status_code == 200 and response.get_json()["message"] == "accepted", response.get_json()


def _redact_body() -> dict:  # type: ignore[type-arg]
    body = json.loads(fixture_bytes("shopify", "customers_redact.json"))
    body["customer"].update(id=CUSTOMER_ID, email=EMAIL)
    body["orders_to_redact"] = [ORDER_ID]
    return body


def _points(shop_id: int) -> int:
    with session_scope() as s:
        return int(s.scalar(select(func.coalesce(func.sum(PointLot.remaining), 0))
                            .where(PointLot.shop_id == shop_id)))


def test_customers_redact_erases_the_person_and_keeps_the_points(make_shop, post_webhook, work, runner):
    # given Bob's paid order (587 points pending)
    shop_id = make_shop("shopify")
    _post(post_webhook, "orders/paid", fixture_bytes("shopify", "orders_paid.json"), "paid-1")
    work()
    assert _points(shop_id) == 587

    # when the shop asks us to erase Bob, and a customers/update and an orders/updated for him
    # arrive afterwards
    _post(post_webhook, "customers/redact", _redact_body(), "redact-1")
    work()
    _post(post_webhook, "customers/update", fixture_bytes("shopify", "customers_create.json"), "late-1")
    late_order = json.loads(fixture_bytes("shopify", "orders_paid.json"))
    late_order["updated_at"] = "2030-01-01T00:00:00+00:00"
    _post(post_webhook, "orders/updated", late_order, "late-2")
    work()

    # then his row, his order and his deliveries' status say nothing about him any more ...
    with session_scope() as s:
        customer = s.scalars(select(Customer).where(Customer.platform_id == str(CUSTOMER_ID))).one()
        order = s.scalars(select(Order).where(Order.platform_id == str(ORDER_ID))).one()
        statuses = set(s.scalars(select(WebhookDelivery.status)))
        earned = s.scalar(select(LedgerEntry.delta).where(LedgerEntry.reason == "earn"))
        person = (customer.email, customer.first_name, customer.last_name, customer.birthday, customer.locale)
        assert person == (None, None, None, None, None)
        assert customer.redacted_at is not None and customer.accepts_marketing is False
        assert customer.unsubscribed_at is not None
        assert (order.email, order.shipping_address_fingerprint, order.recovery_url) == (None, None, None)
    assert statuses == {DeliveryStatus.PROCESSED}
    # ... nobody finds him by e-mail, and the points and the ledger stay
    shown = runner.invoke(args=["customers", "show", "--shop", "demo-laden.myshopify.com", "--email", EMAIL])
    assert shown.exit_code == 1 and "no customer" in shown.output
    assert _points(shop_id) == 587 and earned == 587


def test_shop_redact_erases_an_uninstalled_shop(make_shop, post_webhook, work):
    # given a shop with a customer, an order, points and deliveries, uninstalled 48 hours ago
    shop_id = make_shop("shopify")
    other = make_shop("woocommerce")
    _post(post_webhook, "orders/paid", fixture_bytes("shopify", "orders_paid.json"), "paid-1")
    _post(post_webhook, "app/uninstalled", fixture_bytes("shopify", "app_uninstalled.json"), "bye-1")
    work()

    # when shop/redact arrives
    _post(post_webhook, "shop/redact", fixture_bytes("shopify", "shop_redact.json"), "redact-shop-1")
    work()

    # then nothing of the shop is left, and the other shop is untouched
    with session_scope() as s:
        assert s.get(Shop, shop_id) is None and s.get(Shop, other) is not None
        for model in (Customer, Order, PointLot, LedgerEntry, WebhookDelivery):
            assert s.scalar(select(func.count()).select_from(model).where(model.shop_id == shop_id)) == 0


def test_shop_redact_for_an_installed_shop_erases_nothing(make_shop, post_webhook, work):
    # given a shop that uses the app
    shop_id = make_shop("shopify")
    _post(post_webhook, "orders/paid", fixture_bytes("shopify", "orders_paid.json"), "paid-1")
    work()

    # when shop/redact arrives for it
    _post(post_webhook, "shop/redact", fixture_bytes("shopify", "shop_redact.json"), "redact-shop-1")
    work()

    # then its data stays, and the delivery failed with the reason, for support to see
    assert _points(shop_id) == 587
    with session_scope() as s:
        delivery = s.scalars(select(WebhookDelivery).where(WebhookDelivery.topic == "shop/redact")).one()
        assert delivery.status == DeliveryStatus.FAILED
        assert "is installed, so nothing was erased" in (delivery.error or "")


def test_shop_redact_reads_the_shop_row_not_a_batch_copy(make_shop, post_webhook, session):
    # given a worker lane that read the shop while it was installed (its batch copy) ...
    from jobs.deliveries import BatchMemo, process_delivery

    shop_id = make_shop("shopify")
    memo = BatchMemo()
    with session_scope() as s:
        assert memo.shop(s, shop_id).status.value == "active"
    # ... and an uninstall that another lane recorded meanwhile
    _post(post_webhook, "app/uninstalled", fixture_bytes("shopify", "app_uninstalled.json"), "bye-1")
    _post(post_webhook, "shop/redact", fixture_bytes("shopify", "shop_redact.json"), "redact-shop-1")
    bye, redact = session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)).all()
    session.commit()
    assert process_delivery(bye) == "processed"

    # when the first lane takes the shop/redact with its copy
    assert process_delivery(redact, memo=memo) == "processed"

    # then the shop is erased
    with session_scope() as s:
        assert s.get(Shop, shop_id) is None


def test_a_checkout_arriving_after_the_erasure_keeps_nothing_of_the_person(make_shop, post_webhook, work):
    from app.models import Checkout

    # given Bob's paid order, and then his erasure
    make_shop("shopify")
    _post(post_webhook, "orders/paid", fixture_bytes("shopify", "orders_paid.json"), "paid-1")
    _post(post_webhook, "customers/redact", _redact_body(), "redact-1")
    work()

    # when a checkout of his arrives afterwards (a late delivery)
    _post(post_webhook, "checkouts/update", fixture_bytes("shopify", "checkouts_create.json"), "late-checkout")
    work()

    # then the checkout holds no e-mail and no recovery link, and no reminder is due for it
    with session_scope() as s:
        checkout = s.scalars(select(Checkout)).one()
        customer = s.scalars(select(Customer).where(Customer.platform_id == str(CUSTOMER_ID))).one()
        assert checkout.customer_id == customer.id
        assert (checkout.email, checkout.recovery_url, checkout.next_reminder_at) == (None, None, None)
        assert set(s.scalars(select(WebhookDelivery.status))) == {DeliveryStatus.PROCESSED}


def test_a_delivery_for_a_shop_erased_after_the_receiver_read_it_is_refused(app, make_shop, post_webhook,
                                                                             monkeypatch):
    # given a receiver that holds the shop in its cache, and the shop erased meanwhile
    from sqlalchemy import delete

    from app.web import webhooks

    monkeypatch.setattr(webhooks, "_shops", webhooks._ShopCache())
    app.config["SHOP_CACHE_SECONDS"] = 60
    shop_id = make_shop("shopify")
    _post(post_webhook, "orders/paid", fixture_bytes("shopify", "orders_paid.json"), "paid-1")
    with session_scope() as s:
        s.execute(delete(Shop).where(Shop.id == shop_id))

    # when a delivery for it arrives, signed with the cached shop's secret
    response = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), event_id="late")

    # then the inbox's key to shops refuses it on every database: 401 as for an unknown shop,
    # and nothing of the shop is stored (its first delivery went with the shop)
    assert (response.status_code, response.get_json()["message"]) == (401, "unknown shop")
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_a_delivery_row_whose_shop_is_gone_is_deleted_by_the_worker(make_shop, database_url):
    # given a delivery row whose shop no longer exists (the inbox's key cascades and refuses such
    # rows, so the test deletes the shop row with the key's check and cascade off)
    from app.inbox import record_delivery
    from jobs.deliveries import process_deliveries

    shop_id = make_shop("shopify")
    delivery_id = record_delivery(shop_id, "shopify", "orders/paid", "orders/paid|event:late",
                                  {"X-Shopify-Topic": "orders/paid"}, fixture_bytes("shopify", "orders_paid.json"))
    assert delivery_id is not None
    _erase_shop_row_only(database_url, shop_id)

    # when a worker takes it
    outcome = process_deliveries([delivery_id])

    # then the worker deleted it with its customer's data, and created nothing for the shop
    assert outcome == {"deleted": 1}
    with session_scope() as s:
        for model in (Customer, Order, PointLot, LedgerEntry, WebhookDelivery):
            assert s.scalar(select(func.count()).select_from(model).where(model.shop_id == shop_id)) == 0


def _erase_shop_row_only(database_url: str, shop_id: int) -> None:
    """Delete the shop row but not its deliveries, with the key's check and cascade off for it."""
    from sqlalchemy import text

    from app import db

    with db.get_engine().connect() as conn:
        if database_url.startswith("sqlite"):
            # foreign_keys cannot change inside a transaction: on the driver, before BEGIN
            raw = conn.connection.dbapi_connection
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    conn.execute(text("DELETE FROM shops WHERE id = :id"), {"id": shop_id})
            finally:
                raw.execute("PRAGMA foreign_keys=ON")
        else:
            with conn.begin():
                conn.execute(text("SET LOCAL session_replication_role = replica"))  # no FK triggers
                conn.execute(text("DELETE FROM shops WHERE id = :id"), {"id": shop_id})
