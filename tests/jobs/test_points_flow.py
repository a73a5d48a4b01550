"""Points from real deliveries, end to end: signed POST -> inbox -> RQ worker -> ledger.

Every test runs on SQLite and on PostgreSQL with a real redis-server and a real SimpleWorker.
"""

from __future__ import annotations

import itertools
import json
import threading
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from app.models import DeliveryStatus, PointLot, WebhookDelivery
from tests.conftest import WOO_DOMAIN, fixture_bytes

SHOPIFY_EMAIL = "bob.norman@mail.example.com"
WOO_EMAIL = "jane.doe@example.test"


def show(runner, shop: str, email: str) -> dict:  # type: ignore[no-untyped-def]
    """The customer as `flask customers show --json` prints it."""
    result = runner.invoke(args=["customers", "show", "--shop", shop, "--email", email, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def deliver(post_webhook, work, platform: str, *items: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    """POST each (topic, fixture) in order, then let the worker process everything."""
    for n, (topic, name) in enumerate(items):
        response = post_webhook(platform, topic, fixture_bytes(platform, name), event_id=f"{name}-{n}")
        assert response.status_code == 200, response.get_json()
    work()


def test_paid_order_earns_pending_points(make_shop, post_webhook, work, runner):
    # given a WooCommerce shop with the default program (1 point per unit, 14-day window)
    make_shop("woocommerce")

    # when the real order.created delivery (25.00 paid, 2026-11-22) is processed
    deliver(post_webhook, work, "woocommerce", ("order.created", "order_created.json"))

    # then 25 points wait in the return window, explained by the order number
    customer = show(runner, WOO_DOMAIN, WOO_EMAIL)
    assert (customer["pending"], customer["available"]) == (25, 0)
    [entry] = customer["ledger"]
    assert (entry["delta"], entry["reason"], entry["order"]) == (25, "earn", "11")
    assert "order 11" in entry["why"]
    [lot] = customer["lots"]
    assert lot["available_at"].startswith("2026-12-06T12:40:28")
    assert lot["rule"]["points_per_unit"] == "1"


def test_points_become_available_after_the_return_window(make_shop, post_webhook, work, runner, time_machine):
    # given 25 pending points earned on 2026-11-22 12:40 UTC
    make_shop("woocommerce")
    deliver(post_webhook, work, "woocommerce", ("order.created", "order_created.json"))
    from jobs.points import mature_points

    # when the sweep runs one second before and one second after the window ends
    time_machine.move_to("2026-12-06T12:40:27+00:00", tick=False)
    assert mature_points() == 0
    time_machine.move_to("2026-12-06T12:40:29+00:00", tick=False)
    assert mature_points() == 1
    assert mature_points() == 0  # a second run finds nothing

    # then the points are available and the ledger says why
    customer = show(runner, WOO_DOMAIN, WOO_EMAIL)
    assert (customer["pending"], customer["available"]) == (0, 25)
    assert [e["reason"] for e in customer["ledger"]] == ["earn", "available"]


def test_partial_then_full_refund_reverses_in_proportion_then_the_rest(make_shop, post_webhook, work, runner):
    # given a paid 25.00 order
    make_shop("woocommerce")

    # when a 5.00 refund and then a full refund arrive (refunds ride inside order.updated)
    deliver(
        post_webhook, work, "woocommerce",
        ("order.created", "order_created.json"),
        ("order.updated", "order_updated__partial_refund.json"),
    )
    after_partial = show(runner, WOO_DOMAIN, WOO_EMAIL)
    deliver(post_webhook, work, "woocommerce", ("order.updated", "order_updated__refunded.json"))
    after_full = show(runner, WOO_DOMAIN, WOO_EMAIL)

    # then 5 of 25 points go with the 5.00 refund, and the rest with the full refund
    assert after_partial["pending"] == 20
    assert [(e["reason"], e["delta"]) for e in after_partial["ledger"]] == [("earn", 25), ("refund", -5)]
    assert after_full["pending"] == 0
    assert [(e["reason"], e["delta"]) for e in after_full["ledger"]] == [("earn", 25), ("refund", -5), ("refund", -20)]


@pytest.mark.parametrize(
    "_case, order",
    [(f"order {n}", p) for n, p in enumerate(itertools.permutations(
        [("orders/create", "orders_create.json"), ("orders/paid", "orders_paid.json"), ("refunds/create", "refunds_create.json")]
    ))],
)
def test_shopify_events_in_any_order_end_in_the_same_balance(_case, order, make_shop, post_webhook, work, runner):
    # given a Shopify shop
    make_shop("shopify")

    # when create, paid and a 391.33 refund of the 587.00 order arrive in this order
    for topic, name in order:
        deliver(post_webhook, work, "shopify", (topic, name))

    # then the balance is the clean-order one: 587 earned, 391 taken back
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert customer["available"] + customer["pending"] == 587 - 391
    assert sorted((e["reason"], e["delta"]) for e in customer["ledger"]) == [("earn", 587), ("refund", -391)]


@pytest.mark.parametrize(
    "_case, order",
    [(f"order {n}", p) for n, p in enumerate(itertools.permutations(
        [("order.created", "order_created.json"), ("order.updated", "order_updated__partial_refund.json"),
         ("order.updated", "order_updated__completed.json")]
    ))],
)
def test_woocommerce_updates_in_any_order_end_in_the_same_balance(_case, order, make_shop, post_webhook, work, runner):
    # given a WooCommerce shop
    make_shop("woocommerce")

    # when created, completed and a partial refund arrive in this order
    for topic, name in order:
        deliver(post_webhook, work, "woocommerce", (topic, name))

    # then 25 - 5 points, whatever the order
    customer = show(runner, WOO_DOMAIN, WOO_EMAIL)
    assert customer["pending"] + customer["available"] == 20


def test_cancellation_reverses_the_rest(make_shop, post_webhook, work, runner):
    # given a paid 587.00 order with a 391.33 refund
    make_shop("shopify")
    deliver(post_webhook, work, "shopify", ("orders/paid", "orders_paid.json"), ("refunds/create", "refunds_create.json"))

    # when the order is cancelled
    deliver(post_webhook, work, "shopify", ("orders/cancelled", "orders_cancelled.json"))

    # then nothing is left and the ledger explains each step
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert customer["available"] + customer["pending"] == 0
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", 587), ("refund", -391), ("cancel", -196)]


def test_deleted_then_restored_order_takes_back_and_gives_back(make_shop, post_webhook, work, runner):
    # given a paid 25.00 order
    make_shop("woocommerce")
    deliver(post_webhook, work, "woocommerce", ("order.created", "order_created.json"))

    # when it is deleted, and later restored in its completed state
    deliver(post_webhook, work, "woocommerce", ("order.deleted", "order_deleted.json"))
    deleted = show(runner, WOO_DOMAIN, WOO_EMAIL)
    deliver(post_webhook, work, "woocommerce", ("order.restored", "order_updated__completed.json"))
    restored = show(runner, WOO_DOMAIN, WOO_EMAIL)

    # then the points go and come back
    assert deleted["pending"] == 0
    assert restored["pending"] == 25
    assert [e["reason"] for e in restored["ledger"]] == ["earn", "cancel", "restore"]


def test_spent_points_are_not_clawed_below_zero(app, make_shop, post_webhook, work, runner, session):
    # given 25 points of which 22 were spent (a lot emptied by a redemption elsewhere)
    make_shop("woocommerce")
    deliver(post_webhook, work, "woocommerce", ("order.created", "order_created.json"))
    lot = session.scalars(select(PointLot)).one()
    lot.remaining = 3
    session.commit()

    # when the order is fully refunded
    deliver(post_webhook, work, "woocommerce", ("order.updated", "order_updated__refunded.json"))

    # then the balance stops at zero and the shortfall is recorded and shown
    customer = show(runner, WOO_DOMAIN, WOO_EMAIL)
    assert customer["pending"] + customer["available"] == 0
    assert customer["shortfall"] == 22
    assert "could not be taken back" in customer["ledger"][-1]["why"]


def test_guest_order_merges_into_the_account_that_appears_later(make_shop, post_webhook, work, runner):
    # given a guest order (no customer object, an e-mail) earned points
    make_shop("shopify")
    deliver(post_webhook, work, "shopify", ("orders/paid", "orders_paid__guest_checkout.json"))
    guest = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert guest["platform_id"] is None

    # when the customer creates an account with that e-mail
    deliver(post_webhook, work, "shopify", ("customers/create", "customers_create.json"))

    # then the account holds the guest's points
    account = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert account["platform_id"] == "207119551"
    assert account["available"] + account["pending"] == 587


def test_multi_currency_order_earns_on_shop_currency(make_shop, post_webhook, work, runner):
    # given a EUR shop and an order presented in USD
    make_shop("shopify", currency="EUR")

    # when it is paid
    deliver(post_webhook, work, "shopify", ("orders/paid", "orders_paid__multi_currency.json"))

    # then points follow the shop-currency amounts
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    [entry] = customer["ledger"]
    assert entry["delta"] == 587
    assert customer["lots"][0]["rule"]["currency"] == "EUR"


def test_malformed_payload_fails_visibly_and_can_be_replayed(make_shop, post_webhook, work, session):
    # given a signed orders/paid whose body lacks a field we use
    make_shop("shopify")
    body = json.loads(fixture_bytes("shopify", "orders_paid.json"))
    del body["line_items"]
    post_webhook("shopify", "orders/paid", body)

    # when the worker processes it
    work()

    # then the delivery is failed with a reason naming topic and field
    delivery = session.scalars(select(WebhookDelivery)).one()
    session.commit()
    assert delivery.status == DeliveryStatus.FAILED
    assert "orders/paid" in delivery.error and "line_items" in delivery.error

    # and a replay puts it back in the queue (it fails again, visibly, with the same reason)
    from jobs.deliveries import replay_delivery

    assert replay_delivery(delivery.id)
    session.expire_all()
    assert session.get(WebhookDelivery, delivery.id).status == DeliveryStatus.RECEIVED
    session.commit()
    work()
    session.expire_all()
    assert session.get(WebhookDelivery, delivery.id).status == DeliveryStatus.FAILED


def test_one_failure_never_fails_its_batch_neighbours(make_shop, post_webhook, session, runner):
    # given a bad and a good delivery in one batch
    make_shop("shopify")
    bad = json.loads(fixture_bytes("shopify", "orders_paid.json"))
    del bad["line_items"]
    post_webhook("shopify", "orders/paid", bad, event_id="bad")
    post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), event_id="good")
    ids = list(session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)))
    session.commit()

    # when one job processes both
    from jobs.deliveries import process_deliveries

    outcome = process_deliveries(ids)

    # then the good one earned its points
    assert outcome == {"failed": 1, "processed": 1}
    assert show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)["available"] == 587


def test_a_batch_of_one_customers_orders_earns_each_once(make_shop, post_webhook, session, runner):
    # given six paid orders of one customer in one batch (on PostgreSQL its lanes take turns
    # on the same customer row), and one delivery twice
    make_shop("shopify")
    base = json.loads(fixture_bytes("shopify", "orders_paid.json"))
    for n in range(6):
        post_webhook("shopify", "orders/paid", dict(base, id=base["id"] + n, name=f"#10{n}"), event_id=f"o-{n}")
    ids = list(session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)))
    session.commit()
    from jobs.deliveries import process_deliveries

    # when one job processes the batch
    outcome = process_deliveries([*ids, ids[0]])

    # then every order earned once, and the repeated delivery was skipped
    assert outcome == {"processed": 6, "skipped": 1}
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    earns = [e for e in customer["ledger"] if e["reason"] == "earn"]
    assert sorted(e["order"] for e in earns) == [f"#10{n}" for n in range(6)]
    # and each order counted once towards the tiers, in whichever order they were taken: the
    # default program's multipliers (none, Silber 1.25, Gold 1.5, Platin 2) as the spend grew
    assert sorted(e["delta"] for e in earns) == [587, 733, 880, 880, 1174, 1174]
    assert customer["pending"] + customer["available"] == 5428


def test_a_broken_connection_fails_only_its_delivery(make_shop, post_webhook, session, runner, monkeypatch):
    # given three paid orders of different customers in one batch
    make_shop("shopify")
    base = json.loads(fixture_bytes("shopify", "orders_paid.json"))
    for n in range(3):
        body = dict(base, id=base["id"] + n, email=f"kunde{n}@example.test", contact_email=f"kunde{n}@example.test",
                    customer=dict(base["customer"], id=base["customer"]["id"] + n, email=f"kunde{n}@example.test"))
        post_webhook("shopify", "orders/paid", body, event_id=f"order-{n}")
    ids = list(session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)))
    session.commit()

    # and the connection the batch runs on breaks whenever the first order is processed (in its
    # group's transaction, and again in its own) (PostgreSQL: the server ends the backend; SQLite:
    # the connection is invalidated). On PostgreSQL lanes share the batch, so "first" means the
    # first delivery's order, not whichever lane gets there first.
    # (The group's transaction writes new customers' paid orders in bulk, `app.loyalty.writer`;
    # one delivery at a time they go through `orders.apply_order`.)
    from app.loyalty import orders, writer
    from jobs.deliveries import process_deliveries

    real_apply, real_write = orders.apply_order, writer.write_new_orders
    broken = []

    def break_connection(session):  # type: ignore[no-untyped-def]
        broken.append(str(base["id"]))
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        else:
            conn.invalidate()

    def apply_order(session, shop, order, **kw):  # type: ignore[no-untyped-def]
        if order.id == str(base["id"]):
            break_connection(session)
        return real_apply(session, shop, order, **kw)

    def write_new_orders(session, shop, version, program, candidates):  # type: ignore[no-untyped-def]
        if any(c.order.id == str(base["id"]) for c in candidates):
            break_connection(session)
        return real_write(session, shop, version, program, candidates)

    monkeypatch.setattr(orders, "apply_order", apply_order)
    monkeypatch.setattr(writer, "write_new_orders", write_new_orders)

    # when one job processes the batch
    outcome = process_deliveries(ids)

    # then the other two run on a fresh connection and earn; the first keeps its error, unprocessed
    assert outcome.get("processed") == 2
    for n in (1, 2):
        customer = show(runner, "demo-laden.myshopify.com", f"kunde{n}@example.test")
        assert customer["pending"] + customer["available"] == 587
    first = session.get(WebhookDelivery, ids[0])
    session.commit()
    assert first.status != DeliveryStatus.PROCESSED and first.error and first.attempts == 1


def test_a_customer_is_locked_again_in_each_transaction(make_shop, session, database_url):
    # given a customer that one transaction of a session created (and so held locked)
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite transactions hold the database's write lock")
    from sqlalchemy import event

    from app.loyalty import customers, ledger
    from app.models import Shop
    from connectors import types as ct

    shop = session.get(Shop, make_shop("shopify"))
    customer = customers.upsert_customer(session, shop, ct.Customer(id="42", email="kunde@example.test"))
    session.commit()
    statements: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute",
                 lambda conn, cursor, sql, *rest: statements.append(sql))

    # when the next transaction of the same session wants the customer locked
    ledger.lock_customer(session, customer.id)

    # then it takes the row lock again (the first one ended with its transaction)
    assert any("FOR UPDATE" in sql for sql in statements)


def test_a_ledger_entry_is_recorded_once_and_its_duplicate_leaves_no_lot(make_shop, session):
    # given a customer and a credit with its natural key
    from app.loyalty import customers, ledger
    from app.models import LedgerEntry, Shop, utcnow
    from connectors import types as ct

    shop = session.get(Shop, make_shop("shopify"))
    customer = customers.upsert_customer(session, shop, ct.Customer(id="42", email="kunde@example.test"))

    def credit(points: int):  # type: ignore[no-untyped-def]
        now = utcnow()
        lot = ledger.new_lot(shop_id=shop.id, customer_id=customer.id, points=points, earned_at=now,
                             available_at=now, rule={"rule": "test"}, now=now)
        entry = LedgerEntry(shop_id=shop.id, customer_id=customer.id, delta=0, reason="adjust",
                            source_type="test", source_id="once")
        return ledger.credit(session, entry, lot), lot

    # when it is credited, and the same key again (with other points)
    first, _ = credit(10)
    second, refused_lot = credit(99)
    session.commit()

    # then the first counts, the second is refused, and no lot of the second exists (in the
    # database or in the session)
    assert first is not None and first.id and first.lot_id and second is None
    assert refused_lot not in session
    assert ledger.balance(session, customer.id).available == 10
    assert session.scalars(select(PointLot).where(PointLot.customer_id == customer.id)).all() == [
        session.get(PointLot, first.lot_id)
    ]
    session.commit()


def test_a_batch_sees_its_shop_uninstall(make_shop, post_webhook, session, runner):
    # given one batch: a paid order, the app being uninstalled, another paid order
    from app.models import Shop, ShopStatus

    shop_id = make_shop("shopify")
    order = json.loads(fixture_bytes("shopify", "orders_paid.json"))
    post_webhook("shopify", "orders/paid", order, event_id="first")
    post_webhook("shopify", "app/uninstalled", fixture_bytes("shopify", "app_uninstalled.json"), event_id="bye")
    post_webhook("shopify", "orders/paid", dict(order, id=order["id"] + 1, name="#1002"), event_id="second")
    ids = list(session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)))
    session.commit()

    # when one job processes it (the batch reads its shop once)
    from jobs.deliveries import process_deliveries

    assert process_deliveries(ids) == {"processed": 3}

    # then the shop stays uninstalled (the order after it did not write back what the batch read
    # before), and both orders were processed
    shop = session.get(Shop, shop_id)
    assert shop.status == ShopStatus.UNINSTALLED and shop.uninstalled_at is not None
    session.commit()
    entries = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)["ledger"]
    assert sorted(e["order"] for e in entries if e["reason"] == "earn") == sorted([order["name"], "#1002"])


@pytest.mark.parametrize("workers", ["one delivery each", "batches"])
def test_concurrent_processing_of_one_order_awards_once(make_shop, post_webhook, session, runner, workers):
    # given three deliveries of the same paid order (orders/paid, orders/updated, orders/paid)
    make_shop("shopify")
    for n, topic in enumerate(["orders/paid", "orders/updated", "orders/paid"]):
        post_webhook("shopify", topic, fixture_bytes("shopify", "orders_paid.json"), event_id=f"e{n}")
    ids = list(session.scalars(select(WebhookDelivery.id)))
    session.commit()
    from jobs.deliveries import process_deliveries, process_delivery

    # when workers process them at the same time: each delivery twice on its own, or four
    # batches of all three (each on its own kept connection, where PostgreSQL commits the
    # deferred writes in a pipeline)
    if workers == "batches":
        work, args = process_deliveries, [ids, ids[::-1], ids, ids[::-1]]
    else:
        work, args = process_delivery, ids * 2
    errors: list[BaseException] = []

    def run(arg: Any) -> None:
        try:
            work(arg)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then every delivery is processed and the order earned exactly once
    assert errors == []
    session.expire_all()
    assert {d.status for d in session.scalars(select(WebhookDelivery))} == {DeliveryStatus.PROCESSED}
    session.rollback()  # SQLite: let go of the write lock this read's transaction took
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", 587)]


def test_staff_tagged_order_earns_nothing(make_shop, post_webhook, work, runner):
    # given an order tagged "staff"
    make_shop("shopify")
    body = json.loads(fixture_bytes("shopify", "orders_paid.json"))
    body["tags"] = "staff, vip"

    # when it is paid
    post_webhook("shopify", "orders/paid", body)
    work()

    # then the customer exists but earned nothing
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert customer["ledger"] == []


def test_unknown_customer_or_shop_is_a_clear_error(make_shop, runner):
    # given a shop with no customers
    make_shop("shopify")

    # when support asks for an unknown customer, or an unknown shop
    no_customer = runner.invoke(args=["customers", "show", "--shop", "demo-laden.myshopify.com", "--email", "x@y.z", "--json"])
    no_shop = runner.invoke(args=["customers", "show", "--shop", "nope.myshopify.com", "--email", "x@y.z"])

    # then exit code 1 with a message
    assert no_customer.exit_code == 1 and "no customer" in no_customer.output
    assert no_shop.exit_code == 1 and "no shop" in no_shop.output


# ---- gift-card payments (order_transactions/create) -------------------------------------------

PAID = ("orders/paid", "orders_paid.json")
GIFT_CARD_SALE = ("order_transactions/create", "order_transactions_create.json")
GIFT_CARD_REFUND = ("order_transactions/create", "order_transactions_create__gift_card_refund.json")
REFUND = ("refunds/create", "refunds_create.json")


def deliver_each(post_webhook, work, items) -> None:  # type: ignore[no-untyped-def]
    """POST each (topic, fixture) as its own Shopify event, processing after each."""
    for n, (topic, name) in enumerate(items):
        response = post_webhook("shopify", topic, fixture_bytes("shopify", name), event_id=f"gc-{n}-{name}")
        assert response.status_code == 200, response.get_json()
        work()


@pytest.mark.parametrize("_case, items", [
    ("transaction before the order was paid", [GIFT_CARD_SALE, PAID]),
    ("transaction after the order was paid", [PAID, GIFT_CARD_SALE]),
    ("transaction twice (two events), after", [PAID, GIFT_CARD_SALE, GIFT_CARD_SALE]),
    ("transaction before, and again after", [GIFT_CARD_SALE, PAID, GIFT_CARD_SALE]),
])
def test_value_paid_by_gift_card_earns_nothing_in_any_arrival_order(_case, items, make_shop, post_webhook, work,
                                                                    runner):
    # given a Shopify shop (1 point per unit)
    make_shop("shopify")

    # when the 587.00 order is paid and its 30.00 gift-card sale arrives, in this order
    deliver_each(post_webhook, work, items)

    # then 30.00 of it earns nothing: 557 points, whatever came first and however often
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert customer["available"] + customer["pending"] == 557
    moved = [e for e in customer["ledger"] if e["reason"] == "gift_card"]
    assert sum(e["delta"] for e in customer["ledger"]) == 557
    assert len(moved) == (1 if items[0] == PAID else 0)
    if moved:
        assert moved[0]["why"] == "Order #1001: points moved to what it earns with 30.00 USD paid by gift card"


def test_a_redelivered_gift_card_transaction_is_counted_once(make_shop, post_webhook, work, runner, session):
    # given a paid order whose gift-card sale was processed
    from app.models import Order, OrderTransaction

    make_shop("shopify")
    deliver_each(post_webhook, work, [PAID, GIFT_CARD_SALE])

    # when Shopify delivers the same event again (same event id), and staff replay its delivery
    from jobs.deliveries import replay_delivery

    body = fixture_bytes("shopify", GIFT_CARD_SALE[1])
    assert post_webhook("shopify", GIFT_CARD_SALE[0], body, event_id=f"gc-1-{GIFT_CARD_SALE[1]}").status_code == 200
    delivery_id = session.scalars(
        select(WebhookDelivery.id).where(WebhookDelivery.topic == "order_transactions/create")).one()
    session.commit()
    assert replay_delivery(delivery_id)
    work()

    # then one transaction is stored, the order says 30.00, and the balance is unchanged
    assert len(session.scalars(select(OrderTransaction)).all()) == 1
    assert session.scalars(select(Order.gift_card_paid)).one() == Decimal("30.00")
    session.commit()
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert customer["pending"] + customer["available"] == 557
    assert [e["reason"] for e in customer["ledger"]] == ["earn", "gift_card"]


@pytest.mark.parametrize(
    "_case, order",
    [(f"order {n}", p) for n, p in enumerate(itertools.permutations([PAID, GIFT_CARD_SALE, REFUND]))],
)
def test_gift_card_payment_and_refund_in_any_order_end_in_the_same_balance(_case, order, make_shop, post_webhook,
                                                                            work, runner):
    # given a Shopify shop
    make_shop("shopify")

    # when the paid order, its 30.00 gift-card sale and a 391.33 refund arrive in this order
    deliver_each(post_webhook, work, order)

    # then the award is 557 (587 - 30) less the refund's share, floor(557 x 391.33 / 587) = 371
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert customer["available"] + customer["pending"] == 557 - 371


@pytest.mark.parametrize(
    "_case, order",
    [(f"order {n}", p) for n, p in enumerate(itertools.permutations([PAID, GIFT_CARD_SALE, GIFT_CARD_REFUND]))],
)
def test_gift_card_refunded_to_the_card_earns_again(_case, order, make_shop, post_webhook, work, runner):
    # given a Shopify shop
    make_shop("shopify")

    # when the 30.00 taken from a gift card is put back on it (any order of the three events)
    deliver_each(post_webhook, work, order)

    # then gift cards paid nothing in the end: the whole 587.00 earns
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert customer["available"] + customer["pending"] == 587


def test_card_transactions_change_nothing(make_shop, post_webhook, work, runner, session):
    # given a paid order
    from app.models import OrderTransaction

    make_shop("shopify")

    # when a transaction of another gateway (the docs' card refund) arrives
    deliver_each(post_webhook, work, [PAID, ("order_transactions/create", "order_transactions_create__card_refund.json")])

    # then it is not stored and the award stays
    assert session.scalars(select(OrderTransaction)).all() == []
    session.commit()
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert customer["pending"] + customer["available"] == 587


@pytest.mark.parametrize("_case, transaction_first", [("transaction first", True), ("order first", False)])
def test_a_90_order_with_30_paid_by_gift_card_earns_60(_case, transaction_first, make_shop):
    # given a 90.00 Shopify order (its snapshot does not know the gift-card amount) and a 30.00
    # gift-card sale for it
    from dataclasses import replace

    from app.db import session_scope
    from app.models import Shop
    from app.loyalty.orders import apply_transaction
    from connectors import types as ct
    from tests.factories import apply, order, report

    shop = make_shop("shopify")
    paid = replace(order("9030", "90"), gift_card_paid=None)
    sale = ct.OrderTransaction(id="t1", order_id="9030", kind="sale", status="success", gateway="gift_card",
                               amount=Decimal("30"), currency="EUR")

    def pay_by_gift_card() -> None:
        with session_scope() as s:
            apply_transaction(s, s.get(Shop, shop), sale)

    # when both arrive, in this order, and the transaction once more
    if transaction_first:
        pay_by_gift_card()
    apply(shop, paid)
    pay_by_gift_card()

    # then the order earns 60
    customer = report(shop, "kundin@example.test")
    assert customer["pending"] + customer["available"] == 60


def test_a_plan_refused_by_the_ledgers_key_is_decided_again(make_shop, post_webhook, work, runner, monkeypatch):
    # given a known customer (so their order goes through the per-delivery path, not the bulk
    # writer of new customers' orders) and a paid order whose ledger writes meet an entry another
    # transaction wrote meanwhile, in its group's transaction and in its own first one
    from app.loyalty import points

    make_shop("shopify")
    deliver(post_webhook, work, "shopify", ("customers/create", "customers_create.json"))
    real_write, calls = points.write_plan, []

    def refused_twice(*args, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) <= 2:
            raise points.PlanConflictError("a ledger entry of the plan exists already")
        return real_write(*args, **kw)

    monkeypatch.setattr(points, "write_plan", refused_twice)

    # when it is processed
    deliver(post_webhook, work, "shopify", ("orders/paid", "orders_paid.json"))

    # then both transactions rolled back, the delivery was decided again, and earned once
    assert len(calls) == 3
    customer = show(runner, "demo-laden.myshopify.com", SHOPIFY_EMAIL)
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", 587)]
