"""Bounce-back coupon (issue 20, rule 1): a paid order at or over the threshold earns a code for the
customer's next purchase, once per order, taken back when the order is cancelled or fully refunded
before the code is used.

Shopify and WooCommerce HTTP are mocked with `responses` where the shape is the point (documents
the schema tests validate; answers shaped like the captured ones); elsewhere the fake connector.
Redis, the RQ worker and both databases are real.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import responses
from sqlalchemy import select

from app.db import session_scope
from app.models import CodeStatus, IssuedCode, Order
from connectors import types as ct
from connectors.shopify import client as shopify_client
from jobs.codes import requeue_pending
from tests.conftest import WOO_DOMAIN
from tests.connectors.fake import install_fake_connector
from tests.factories import T0, apply, order, program

SHOPIFY_GRAPHQL = "https://demo-laden.myshopify.com/admin/api/2026-07/graphql.json"
WOO_COUPONS = f"{WOO_DOMAIN}/wp-json/wc/v3/coupons"
COST = {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0}}
OFFER = {"enabled": True, "threshold": "50", "kind": "fixed_amount", "value": "5", "minimum_amount": "20",
         "valid_days": 30}
PROGRAM = {"second_purchase": {"enabled": False}, "referral": {"enabled": False}, "bounce_back": OFFER}


def cancelled(o: ct.Order, days: int = 1) -> ct.Order:
    """The order's snapshot after it was cancelled `days` after payment."""
    at = o.paid_at + timedelta(days=days)
    return dataclasses.replace(o, status=ct.OrderStatus.CANCELLED, platform_status="cancelled", cancelled_at=at,
                               updated_at=at)


def refunded(o: ct.Order, amount: str, *, full: bool, days: int = 1) -> ct.Order:
    """The order's snapshot after a refund of `amount` (all of it with `full`)."""
    at = o.paid_at + timedelta(days=days)
    again = order(o.id, str(o.merchandise), customer_id=o.customer.id if o.customer else None, email=o.email,
                  refunds=(("r1", amount),), updated_at=at, paid_at=o.paid_at,
                  status=ct.OrderStatus.REFUNDED if full else None)
    return again


def codes(shop: int) -> list[IssuedCode]:
    with session_scope() as s:
        rows = list(s.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop).order_by(IssuedCode.id)))
        s.expunge_all()
        return rows


def order_id(shop: int, platform_id: str) -> int:
    with session_scope() as s:
        return s.scalars(select(Order.id).where(Order.shop_id == shop, Order.platform_id == platform_id)).one()


def run(work) -> None:  # type: ignore[no-untyped-def]
    requeue_pending()
    work()


# ---- the rule --------------------------------------------------------------------------------


def test_every_paid_order_over_the_threshold_earns_one_code_for_its_customer(make_shop, work, monkeypatch,
                                                                             time_machine):
    # given a shop with "from 50 €, 5 € off the next order of at least 20 €, 30 days"
    time_machine.move_to(T0, tick=False)
    fake = install_fake_connector(monkeypatch, "woocommerce")
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, PROGRAM)

    # when a customer pays 49.99 €, then 50 € (a second order), then 80 € (a third), and the
    # 50 € order is delivered twice
    apply(shop, order("1", "49.99", customer_id="7"))
    apply(shop, order("2", "50.00", customer_id="7", paid_at=T0 + timedelta(days=1)))
    apply(shop, order("2", "50.00", customer_id="7", paid_at=T0 + timedelta(days=1)))
    apply(shop, order("3", "80.00", customer_id="7", paid_at=T0 + timedelta(days=2)))
    run(work)

    # then the orders at or over the threshold have one code each, made in the shop for this
    # customer only: once, from 20 €, for 30 days
    rows = codes(shop)
    assert [(r.purpose, r.source_key) for r in rows] == [
        ("bounce_back", str(order_id(shop, "2"))), ("bounce_back", str(order_id(shop, "3")))]
    assert all(r.status == CodeStatus.CREATED for r in rows)
    made = [fake.codes[r.code] for r in rows]
    assert [(s.kind, str(s.value), str(s.minimum_amount), s.usage_limit, s.once_per_customer) for s in made] == [
        ("fixed_amount", "5", "20", 1, True)] * 2
    assert all(s.customer_id == "7" and s.customer_email == "kundin@example.test" for s in made)
    assert made[0].ends_at - made[0].starts_at == timedelta(days=30)
    assert rows[0].code.startswith("DANKE-")


def test_the_threshold_is_the_points_base_after_discounts_without_tax(make_shop, monkeypatch):
    # given the offer from 50 € and an order of 59.50 € gross with 9.50 € tax included (50 € net)
    # and one of 59.49 € gross (49.99 € net)
    install_fake_connector(monkeypatch, "woocommerce")
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, PROGRAM)
    net = dataclasses.replace(order("1", "59.50", customer_id="7"), taxes_included=True,
                              merchandise_tax=Decimal("9.50"))
    under = dataclasses.replace(order("2", "59.49", customer_id="7"), taxes_included=True,
                                merchandise_tax=Decimal("9.50"))

    # when both are paid
    apply(shop, net)
    apply(shop, under)

    # then only the one whose net merchandise reaches 50 € earns a code
    assert [r.source_key for r in codes(shop)] == [str(order_id(shop, "1"))]


def test_no_code_for_a_guest_or_when_off(make_shop, monkeypatch):
    # given the offer off in one shop, and on in another
    install_fake_connector(monkeypatch, "woocommerce")
    off = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(off, {**PROGRAM, "bounce_back": {**OFFER, "enabled": False}})
    on = make_shop("woocommerce", domain="https://zweiter-laden.example",
                   credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(on, PROGRAM)

    # when orders over the threshold are paid: one where it is off, a guest's where it is on
    apply(off, order("1", "80.00", customer_id="7"))
    apply(on, order("1", "80.00", customer_id=None, email="gast@example.test"))

    # then no code (a guest has no customer account the code could be restricted to)
    assert codes(off) == [] and codes(on) == []


# ---- duplicate and out-of-order deliveries ---------------------------------------------------

SNAPSHOTS = {
    "paid": order("1", "80.00", customer_id="7"),
    "cancelled": cancelled(order("1", "80.00", customer_id="7")),
}


@pytest.mark.parametrize("arrival", list(itertools.permutations(["paid", "paid", "cancelled"])),
                         ids=lambda a: "-".join(a))
def test_any_arrival_order_leaves_no_usable_code_for_a_cancelled_order(make_shop, work, monkeypatch, arrival):
    # given the offer, and an 80 € order that was paid and then cancelled
    fake = install_fake_connector(monkeypatch, "woocommerce")
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, PROGRAM)

    # when its deliveries arrive in this order (the paid one twice), the code job running in between
    for name in arrival:
        apply(shop, SNAPSHOTS[name])
        run(work)

    # then at most one code was ever recorded, and none is live in the shop
    rows = codes(shop)
    assert len(rows) <= 1
    live = set(fake.codes) - {r.code for r in rows if r.deactivated_at is not None}
    assert live == set()
    for r in rows:
        assert (r.end_reason, r.status) == ("cancelled", CodeStatus.CREATED) and r.deactivated_at is not None


@pytest.mark.parametrize("arrival", list(itertools.permutations(["paid", "paid", "paid-again"])),
                         ids=lambda a: "-".join(a))
def test_duplicates_in_any_order_issue_one_code(make_shop, work, monkeypatch, arrival):
    # given the offer
    fake = install_fake_connector(monkeypatch, "woocommerce")
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, PROGRAM)
    later = dataclasses.replace(SNAPSHOTS["paid"], updated_at=T0 + timedelta(hours=1))

    # when the paid order arrives three times (one a later snapshot), in any order
    for name in arrival:
        apply(shop, later if name == "paid-again" else SNAPSHOTS["paid"])
    run(work)

    # then one code, created once in the shop
    [row] = codes(shop)
    assert row.status == CodeStatus.CREATED and list(fake.codes) == [row.code]
    assert [c[0] for c in fake.calls] == ["create_discount_code"]


# ---- taking the code back --------------------------------------------------------------------


@pytest.mark.parametrize("_case", ["cancelled", "fully refunded"])
def test_a_code_is_taken_back_when_its_order_stops_counting_before_use(make_shop, work, monkeypatch, _case):
    # given an 80 € order whose code exists in the shop
    fake = install_fake_connector(monkeypatch, "woocommerce")
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, PROGRAM)
    paid = order("1", "80.00", customer_id="7")
    apply(shop, paid)
    run(work)
    [row] = codes(shop)

    # when the order is cancelled / fully refunded (and the delivery comes twice)
    gone = cancelled(paid) if _case == "cancelled" else refunded(paid, "80.00", full=True)
    apply(shop, gone)
    apply(shop, gone)
    run(work)

    # then the code is removed from the shop, once, and recorded as withdrawn with why
    assert fake.withdrawn == {row.platform_id}
    assert [c[0] for c in fake.calls].count("withdraw_discount_code") == 1
    [row] = codes(shop)
    assert row.deactivated_at is not None and row.used_at is None
    assert row.end_reason == ("cancelled" if _case == "cancelled" else "refunded")


def test_a_code_still_being_created_is_created_then_taken_back(make_shop, work, monkeypatch):
    # given an 80 € order whose code was not created in the shop yet
    fake = install_fake_connector(monkeypatch, "woocommerce")
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, PROGRAM)
    paid = order("1", "80.00", customer_id="7")
    apply(shop, paid)

    # when the order is cancelled first, then the code job runs
    apply(shop, cancelled(paid))
    run(work)
    work()

    # then it is created and removed again: nothing usable stays in the shop
    [row] = codes(shop)
    assert [c[0] for c in fake.calls] == ["create_discount_code", "withdraw_discount_code"]
    assert row.deactivated_at is not None and row.platform_id in fake.withdrawn


def test_a_used_code_stays(make_shop, work, monkeypatch):
    # given an 80 € order whose code the customer used on their next order
    fake = install_fake_connector(monkeypatch, "woocommerce")
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, PROGRAM)
    paid = order("1", "80.00", customer_id="7")
    apply(shop, paid)
    run(work)
    [row] = codes(shop)
    apply(shop, order("2", "30.00", customer_id="7", paid_at=T0 + timedelta(days=2),
                      discount_codes=(row.code.lower(),)))

    # when the first order is cancelled afterwards
    apply(shop, cancelled(paid, days=3))
    run(work)

    # then the code was not taken back: it stays, used
    assert "withdraw_discount_code" not in [c[0] for c in fake.calls]
    [row] = codes(shop)
    assert row.used_at is not None and row.ends_early_at is None and row.deactivated_at is None


def test_a_code_the_shop_counts_as_used_stays(make_shop, work, monkeypatch):
    # given an 80 € order whose code the shop counts a use of (the using order has not reached us)
    fake = install_fake_connector(monkeypatch, "woocommerce")
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, PROGRAM)
    paid = order("1", "80.00", customer_id="7")
    apply(shop, paid)
    run(work)
    [row] = codes(shop)
    fake.used.add(row.platform_id)

    # when the order is cancelled
    apply(shop, cancelled(paid))
    run(work)

    # then the shop kept it and we record it as used, no longer ending
    [row] = codes(shop)
    assert row.used_at is not None and row.ends_early_at is None and row.deactivated_at is None
    requeue_pending()
    assert work() == 0  # nothing is handed over again


def test_a_partial_refund_keeps_the_code_even_below_the_threshold(make_shop, work, monkeypatch):
    # given an 80 € order whose code exists
    fake = install_fake_connector(monkeypatch, "woocommerce")
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, PROGRAM)
    paid = order("1", "80.00", customer_id="7")
    apply(shop, paid)
    run(work)

    # when 40 € of it are refunded (the order is now under the 50 € threshold)
    apply(shop, refunded(paid, "40.00", full=False))
    run(work)

    # then the code stays: only cancellation or a full refund takes it back
    [row] = codes(shop)
    assert row.ends_early_at is None and fake.withdrawn == set()


# ---- both platforms' code paths, HTTP mocked ---------------------------------------------------


class ShopifyShop:
    """Answers the discount documents as Shopify does (the client's pinned documents only)."""

    def __init__(self) -> None:
        self.live: dict[str, dict[str, Any]] = {}
        self.sent: list[str] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        name = next(k for k, v in shopify_client.DOCUMENTS.items() if v == body["query"])
        self.sent.append(name)
        node_id = body["variables"].get("id")
        if name == "discountCodeBasicCreate":
            node_id = f"gid://shopify/DiscountCodeNode/{100 + len(self.live)}"
            self.live[node_id] = body["variables"]["basicCodeDiscount"]
            data = {name: {"codeDiscountNode": {"id": node_id}, "userErrors": []}}
        elif name == "discountCodeUsage":
            data = {"node": {"id": node_id, "codeDiscount": {"__typename": "DiscountCodeBasic",
                                                              "asyncUsageCount": 0}} if node_id in self.live else None}
        elif name == "discountCodeDelete":
            self.live.pop(node_id)
            data = {name: {"deletedCodeDiscountId": node_id, "userErrors": []}}
        else:
            raise AssertionError(name)
        return 200, {}, json.dumps({"data": data, "extensions": {"cost": COST}})


def test_shopify_code_is_for_the_customer_and_deleted_on_cancellation(make_shop, work, time_machine):
    # given a Shopify shop with the offer
    time_machine.move_to(T0, tick=False)
    shop = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop, PROGRAM)
    fake = ShopifyShop()
    paid = order("1", "80.00", customer_id="207119551")

    # when the order is paid
    apply(shop, paid)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.POST, SHOPIFY_GRAPHQL, callback=fake)
        run(work)

    # then a basic code discount exists for that customer only: 5 € off, once, from 20 €, 30 days
    [discount] = fake.live.values()
    assert discount["context"] == {"customers": {"add": ["gid://shopify/Customer/207119551"]}}
    assert discount["customerGets"]["value"] == {"discountAmount": {"amount": "5", "appliesOnEachItem": False}}
    assert discount["usageLimit"] == 1 and discount["appliesOncePerCustomer"] is True
    assert discount["minimumRequirement"] == {"subtotal": {"greaterThanOrEqualToSubtotal": "20"}}
    assert (discount["startsAt"], discount["endsAt"]) == ("2026-11-01T10:00:00Z", "2026-12-01T10:00:00Z")

    # when the order is cancelled
    apply(shop, cancelled(paid))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.POST, SHOPIFY_GRAPHQL, callback=fake)
        run(work)

    # then its uses were read and the discount deleted
    assert fake.sent == ["discountCodeBasicCreate", "discountCodeUsage", "discountCodeDelete"]
    assert fake.live == {}
    [row] = codes(shop)
    assert row.deactivated_at is not None and row.end_reason == "cancelled"


def test_woocommerce_coupon_is_restricted_and_deleted_with_force_on_full_refund(make_shop, work, time_machine):
    # given a WooCommerce shop with the offer (percent this time)
    time_machine.move_to(T0, tick=False)
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, {**PROGRAM, "bounce_back": {**OFFER, "kind": "percentage", "value": "10"}})
    paid = order("1", "80.00", customer_id="7", email="Kundin@Example.test")
    sent: list[tuple[str, Any]] = []
    store: dict[int, dict[str, Any]] = {}

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        # shaped like the captured answers: 201 with the coupon (010/038), 200 for GET and the
        # forced DELETE (045, the coupon as it was)
        sent.append((request.method, json.loads(request.body) if request.body else request.url))
        if request.method == "POST":
            body = json.loads(request.body)
            coupon = {"id": 41, "code": body["code"].lower(), "amount": body["amount"], "status": "publish",
                      "discount_type": body["discount_type"], "date_expires": body["date_expires"][:-1],
                      "date_expires_gmt": body["date_expires"][:-1], "usage_count": 0,
                      "individual_use": True, "usage_limit": body["usage_limit"],
                      "usage_limit_per_user": body["usage_limit_per_user"],
                      "email_restrictions": [e.lower() for e in body["email_restrictions"]],
                      "minimum_amount": body["minimum_amount"], "free_shipping": False, "used_by": []}
            store[41] = coupon
            return 201, {}, json.dumps(coupon)
        return 200, {}, json.dumps(store[41])

    # when the order is paid, then fully refunded
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.POST, WOO_COUPONS, callback=answer)
        apply(shop, paid)
        run(work)
        mock.add_callback(responses.GET, WOO_COUPONS + "/41", callback=answer)
        mock.add_callback(responses.DELETE, WOO_COUPONS + "/41", callback=answer)
        apply(shop, refunded(paid, "80.00", full=True))
        run(work)

    # then the coupon was for her e-mail only, once, 10 % from 20 €, expiring with an explicit offset
    (method, body), (get, _), (delete, url) = sent
    assert method == "POST" and body["discount_type"] == "percent" and body["amount"] == "10"
    assert body["email_restrictions"] == ["Kundin@Example.test"] and body["usage_limit"] == 1
    assert body["usage_limit_per_user"] == 1 and body["minimum_amount"] == "20"
    assert body["date_expires"] == "2026-12-01T10:00:00Z"
    # and on the full refund it was read, then deleted for good
    assert (get, delete) == ("GET", "DELETE") and "force=true" in url
    [row] = codes(shop)
    assert row.deactivated_at is not None and row.end_reason == "refunded"


# ---- the e-mail ------------------------------------------------------------------------------

EMAIL = "kundin@example.test"
MONDAY = T0.replace(day=2, hour=9)  # Monday 2 November 2026, 10:00 in Berlin


def consent(shop: int, *, granted: bool = True) -> None:
    from app.loyalty.customers import upsert_customer
    from app.models import Shop

    with session_scope() as s:
        upsert_customer(s, s.get(Shop, shop), ct.Customer(id="c1", email=EMAIL, first_name="Erika",
                                                          accepts_marketing=granted,
                                                          marketing_consent_at=MONDAY - timedelta(days=30)))


def sweep(work, at) -> dict:  # type: ignore[no-untyped-def]
    from jobs.reminders import sweep_reminders

    result = sweep_reminders(at.isoformat())
    work()
    return result


def messages() -> list[tuple[str, str, str | None]]:
    from app.models import ReminderMessage

    with session_scope() as s:
        return [(m.campaign, m.status.value, m.reason)
                for m in s.scalars(select(ReminderMessage).order_by(ReminderMessage.id))]


def mail_shop(make_shop, monkeypatch, language: str, **program_changes: Any) -> int:  # type: ignore[no-untyped-def]
    install_fake_connector(monkeypatch, "shopify")
    shop = make_shop("shopify", name="Demo Laden", timezone="Europe/Berlin", language=language,
                     credentials={"access_token": "shpat_test"})
    program(shop, {**PROGRAM, **program_changes})
    return shop


@pytest.mark.parametrize(("language", "words"), [
    ("de", ("Rabatt auf Ihre nächste Bestellung", "ab einem Bestellwert von 20,00 €", "5,00 €", "bis 02.12.2026")),
    ("en", ("off your next order", "on an order of at least €20.00", "€5.00", "until 2 December 2026")),
])
def test_the_code_gets_its_own_email_when_the_points_notice_is_off(make_shop, smtp_server, work, monkeypatch,
                                                                   time_machine, language, words):
    # given a customer with marketing consent, and no points-earned notice
    time_machine.move_to(MONDAY, tick=False)
    shop = mail_shop(make_shop, monkeypatch, language)
    consent(shop)

    # when an 80 € order earns its code, it is created in the shop, and the sweep runs (twice)
    apply(shop, order("1042", "80.00", customer_id="c1", email=EMAIL, paid_at=MONDAY))
    run(work)
    sweep(work, MONDAY + timedelta(minutes=5))
    sweep(work, MONDAY + timedelta(hours=3))

    # then one e-mail of its own carries the code, in the shop's language, with the order that earned it
    [row] = codes(shop)
    [mail] = smtp_server.messages
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert row.code in text and row.code in html and "#1042" in mail["Subject"] and "#1042" in text
    assert all(w in text for w in words), text
    assert mail["List-Unsubscribe"]  # an offer: a marketing e-mail
    assert messages() == [("bounce_back", "sent", None)]


@pytest.mark.parametrize(("language", "intro"), [("de", "Dafür haben Sie"), ("en", "It earned you")])
def test_the_code_rides_with_the_points_email_when_that_notice_is_on(make_shop, smtp_server, work, monkeypatch,
                                                                     time_machine, language, intro):
    # given the points-earned notice is on and the customer may get offers
    time_machine.move_to(MONDAY, tick=False)
    shop = mail_shop(make_shop, monkeypatch, language, reminders={"notices": {"points_earned": True}})
    consent(shop)

    # when an 80 € order earns points and its code, the points notice is swept before the code
    # exists (it waits for it), then after
    apply(shop, order("1042", "80.00", customer_id="c1", email=EMAIL, paid_at=MONDAY))
    sweep(work, MONDAY + timedelta(minutes=1))
    assert messages() == [("points_earned", "scheduled", "code_pending")]
    run(work)
    time_machine.move_to(MONDAY + timedelta(minutes=5), tick=False)
    sweep(work, MONDAY + timedelta(minutes=5))

    # then one e-mail: the points notice, with the code in it
    [row] = codes(shop)
    [mail] = smtp_server.messages
    text = mail.get_body(("plain",)).get_content()
    assert intro in text and row.code in text and row.code in mail.get_body(("html",)).get_content()
    assert messages() == [("points_earned", "sent", None)]


def test_without_marketing_consent_the_points_email_goes_without_the_code(make_shop, smtp_server, work,
                                                                          monkeypatch, time_machine):
    # given the points-earned notice is on, and the customer has no marketing consent
    time_machine.move_to(MONDAY, tick=False)
    shop = mail_shop(make_shop, monkeypatch, "de", reminders={"notices": {"points_earned": True}})
    consent(shop, granted=False)

    # when an 80 € order earns points and its code, and the sweep runs
    apply(shop, order("1042", "80.00", customer_id="c1", email=EMAIL, paid_at=MONDAY))
    run(work)
    sweep(work, MONDAY + timedelta(minutes=5))

    # then the (transactional) points notice goes, without the offer; no e-mail of its own either
    [row] = codes(shop)
    [mail] = smtp_server.messages
    assert row.code not in mail.get_body(("plain",)).get_content()
    assert messages() == [("points_earned", "sent", "without_code")]


def test_a_code_taken_back_before_its_email_is_not_sent(make_shop, smtp_server, work, monkeypatch, time_machine):
    # given a code whose own e-mail is due
    time_machine.move_to(MONDAY, tick=False)
    shop = mail_shop(make_shop, monkeypatch, "de")
    consent(shop)
    paid = order("1042", "80.00", customer_id="c1", email=EMAIL, paid_at=MONDAY)
    apply(shop, paid)
    run(work)
    from jobs.reminders import sweep_reminders

    sweep_reminders((MONDAY + timedelta(minutes=5)).isoformat())  # created, not sent yet

    # when the order is cancelled first, then the send job runs
    apply(shop, cancelled(paid, days=0))
    work()

    # then nothing is sent, and why is recorded
    assert smtp_server.messages == []
    assert messages() == [("bounce_back", "suppressed", "code_withdrawn")]


def test_the_codes_email_waits_for_the_end_of_quiet_hours(make_shop, smtp_server, work, monkeypatch, time_machine):
    # given a code that exists at 22:30 in Berlin
    late = MONDAY.replace(hour=21, minute=30)
    time_machine.move_to(late, tick=False)
    shop = mail_shop(make_shop, monkeypatch, "de")
    consent(shop)
    apply(shop, order("1042", "80.00", customer_id="c1", email=EMAIL, paid_at=late))
    run(work)

    # when the sweep runs in quiet hours
    sweep(work, late + timedelta(minutes=5))

    # then the e-mail is held until 08:00 Berlin, not dropped
    assert smtp_server.messages == [] and messages() == [("bounce_back", "scheduled", "quiet_hours")]
    sweep(work, MONDAY.replace(day=3, hour=7, minute=1))
    assert len(smtp_server.messages) == 1
