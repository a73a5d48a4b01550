"""WooCommerce webhook verify and parse, against the fixtures in tests/fixtures/woocommerce/."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.base import hmac_sha256_base64
from connectors.errors import (
    InvalidSignatureError,
    MalformedPayloadError,
    MissingSignatureError,
    UnsupportedTopicError,
)
from connectors.types import Customer, Deleted, LineItem, Order, OrderStatus, Refund
from connectors.woocommerce import connector, consts, webhooks

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "woocommerce"
# The webhook secret of the local test store the real delivery was captured from.
SECRET = "loyalty-webhook-secret"
SHOP = "http://127.0.0.1:8888"
REAL_SIGNATURE = "aNXoyqNQlvX7b9B94BoBcLDuYiJXVXudChULVETCHsI="
PAY_URL = (
    "http://127.0.0.1:8888/checkout/order-pay/{}/?pay_for_order=true&key=wc_order_B5W46sHsjiad2"
)
JANE = Customer(id="2", email="jane.doe@example.test", first_name="Jane", last_name="Doe")


def utc(*parts: int) -> datetime:
    """Return an aware UTC datetime."""
    return datetime(*parts, tzinfo=timezone.utc)


def fixture_bytes(stem: str) -> bytes:
    """Return the exact bytes of tests/fixtures/woocommerce/<stem>.json."""
    return (FIXTURES / f"{stem}.json").read_bytes()


def fixture_topic(stem: str) -> str:
    """Return the topic a fixture is named after ("order_updated__x" -> "order.updated")."""
    resource, event = stem.split("__", 1)[0].split("_", 1)
    return f"{resource}.{event}"


def signed_headers(topic: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    """Return the headers WooCommerce sends with `body`, signed with `secret`."""
    resource, event = topic.split(".", 1)
    return {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": f"{SHOP}/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": hmac_sha256_base64(secret, body),
        "X-WC-Webhook-ID": "1",
        "X-WC-Webhook-Delivery-ID": "a10d15cc64c404d2d350418e75fcac62",
    }


def parse_fixture(stem: str) -> Any:
    """Verify and parse a fixture the way the webhook view and the job do."""
    body = fixture_bytes(stem)
    headers = signed_headers(fixture_topic(stem), body)
    connector.verify(headers, body, secret=SECRET)
    return connector.parse_event(headers, body)


def edited_body(stem: str, **changes: Any) -> bytes:
    """Return a fixture re-encoded with top-level fields replaced (None values removed)."""
    payload = json.loads(fixture_bytes(stem))
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return json.dumps(payload).encode()


def fingerprint(address: str) -> str:
    """Return the sha256 our address fingerprint uses for an already-normalized address."""
    return hashlib.sha256(address.encode()).hexdigest()


# ---- the real captured delivery ---------------------------------------------------------


def test_real_delivery_signature_verifies() -> None:
    # given the real order.created delivery, byte for byte, with its captured headers
    body = fixture_bytes("order_created")
    headers = json.loads((FIXTURES / "order_created.headers.json").read_text())

    # when we verify it with the store's webhook secret
    result = connector.verify(headers, body, secret=SECRET)

    # then WooCommerce's own signature matches ours over the exact bytes
    assert result is None
    assert len(body) == int(headers["Content-Length"]) == 2175
    assert headers["X-WC-Webhook-Signature"] == REAL_SIGNATURE
    assert hmac_sha256_base64(SECRET, body) == REAL_SIGNATURE


def test_order_created_parses_real_delivery() -> None:
    # given the real order.created delivery with its captured headers
    body = fixture_bytes("order_created")
    headers = json.loads((FIXTURES / "order_created.headers.json").read_text())

    # when it is parsed
    event = connector.parse_event(headers, body)

    # then every field we use is read exactly
    assert event.platform == "woocommerce"
    assert event.shop == SHOP
    assert event.topic == "order.created"
    assert event.occurred_at == utc(2026, 11, 22, 12, 40, 28)
    assert event.occurred_at.tzinfo == timezone.utc
    assert event.delivery_key == (
        "order|11|2026-11-22T12:40:28|04c3316d734193682cc580ec6daf95bcfce82a62890271f732a6cbb5a47a8559"
    )
    assert event.resource == Order(
        id="11",
        number="11",
        currency="USD",
        presentment_currency="USD",
        platform_status="processing",
        status=OrderStatus.PAID,
        is_paid=True,
        merchandise=Decimal("25.00"),
        merchandise_tax=Decimal("0.00"),
        taxes_included=False,
        gift_card_paid=Decimal("0"),
        shipping=Decimal("0.00"),
        total=Decimal("25.00"),
        created_at=utc(2026, 11, 22, 12, 40, 28),
        updated_at=utc(2026, 11, 22, 12, 40, 28),
        customer=JANE,
        email="jane.doe@example.test",
        paid_at=utc(2026, 11, 22, 12, 40, 28),
        line_items=(
            LineItem(
                id="1",
                product_id="10",
                variant_id=None,
                quantity=2,
                unit_price=Decimal("12.5"),
                total=Decimal("25.00"),
                tax=Decimal("0.00"),
                merchandise=Decimal("25.00"),
            ),
        ),
        # shipping is empty in this order, so the billing address is fingerprinted
        shipping_address_fingerprint=fingerprint("1 main st|62701|us"),
        recovery_url=PAY_URL.format(11),
    )
    assert isinstance(event.resource.line_items[0].unit_price, Decimal)
    assert str(event.resource.line_items[0].unit_price) == "12.5"


# ---- one test per topic -----------------------------------------------------------------


def test_order_updated_parses_guest_order_with_tax_and_shipping() -> None:
    # given the REST v3 docs order 727: a guest (customer_id 0), tax on top, flat-rate shipping
    stem = "order_updated"

    # when it is parsed
    event = parse_fixture(stem)

    # then the guest is kept by e-mail and the shipping address is fingerprinted
    assert event.topic == "order.updated"
    assert event.occurred_at == utc(2017, 3, 22, 19, 28, 8)
    assert event.resource == Order(
        id="727",
        number="727",
        currency="USD",
        presentment_currency="USD",
        platform_status="processing",
        status=OrderStatus.PAID,
        is_paid=True,
        merchandise=Decimal("18.00"),
        merchandise_tax=Decimal("1.35"),
        taxes_included=False,
        gift_card_paid=Decimal("0"),
        shipping=Decimal("10.00"),
        total=Decimal("29.35"),
        created_at=utc(2017, 3, 22, 19, 28, 2),
        updated_at=utc(2017, 3, 22, 19, 28, 8),
        customer=Customer(
            id=None, email="john.doe@example.com", first_name="John", last_name="Doe"
        ),
        email="john.doe@example.com",
        paid_at=utc(2017, 3, 22, 19, 28, 8),
        line_items=(
            LineItem(
                id="315",
                product_id="93",
                variant_id=None,
                quantity=2,
                unit_price=Decimal("3"),
                total=Decimal("6.00"),
                tax=Decimal("0.45"),
                merchandise=Decimal("6.00"),  # tax on top: not part of the merchandise
            ),
            LineItem(
                id="316",
                product_id="22",
                variant_id="23",
                quantity=1,
                unit_price=Decimal("12"),
                total=Decimal("12.00"),
                tax=Decimal("0.90"),
                merchandise=Decimal("12.00"),
            ),
        ),
        shipping_address_fingerprint=fingerprint("969 market|94103|us"),
        recovery_url=None,
    )


def test_order_deleted_parses_to_deleted_id() -> None:
    # given an order.deleted body, which is only {"id": 11}
    stem = "order_deleted"

    # when it is parsed
    event = parse_fixture(stem)

    # then it names the deleted order and has no time of its own
    assert event.resource == Deleted(kind="order", id="11")
    assert event.occurred_at is None
    digest = hashlib.sha256(b'{"id":11}').hexdigest()
    assert event.delivery_key == f"order.deleted|11||{digest}"


def test_order_restored_parses_restored_order() -> None:
    # given order 11 restored from the trash after it was fully refunded
    stem = "order_restored"

    # when it is parsed
    event = parse_fixture(stem)

    # then it is the full order again, as of the restore
    order = event.resource
    assert event.topic == "order.restored"
    assert event.occurred_at == utc(2026, 11, 26, 8, 0, 0)
    assert (order.id, order.status, order.platform_status, order.is_paid) == (
        "11",
        OrderStatus.REFUNDED,
        "refunded",
        True,
    )
    assert [refund.id for refund in order.refunds] == ["14", "13"]


def test_customer_created_parses_customer() -> None:
    # given the REST v3 docs "Create a customer" response as a customer.created body
    stem = "customer_created"

    # when it is parsed
    event = parse_fixture(stem)

    # then the customer is read exactly, with no marketing consent claimed
    assert event.topic == "customer.created"
    assert event.occurred_at == utc(2017, 3, 21, 19, 9, 30)
    assert event.resource == Customer(
        id="25",
        email="john.doe@example.com",
        first_name="John",
        last_name="Doe",
        accepts_marketing=None,
        birthday=None,
        created_at=utc(2017, 3, 21, 19, 9, 28),
        updated_at=utc(2017, 3, 21, 19, 9, 30),
        meta=(),
    )


def test_customer_updated_parses_customer() -> None:
    # given the REST v3 docs "Update a customer" response (first name changed to James)
    stem = "customer_updated"

    # when it is parsed
    event = parse_fixture(stem)

    # then the new name and modification time are read
    assert event.topic == "customer.updated"
    assert event.occurred_at == utc(2017, 3, 21, 19, 12, 28)
    assert event.resource == Customer(
        id="25",
        email="john.doe@example.com",
        first_name="James",
        last_name="Doe",
        created_at=utc(2017, 3, 21, 19, 9, 28),
        updated_at=utc(2017, 3, 21, 19, 12, 28),
    )


def test_customer_meta_keeps_only_scalar_values() -> None:
    # given a customer whose meta_data mixes strings, an int, a bool, an object, a float and null
    stem = "customer_updated__meta_data"

    # when it is parsed
    customer = parse_fixture(stem).resource

    # then string/int/bool values are kept as strings, in order, and the rest is dropped
    assert customer.meta == (
        ("stammkunde_marketing_consent", "yes"),
        ("loyalty_visits", "3"),
        ("newsletter_opt_in", "True"),
    )
    assert customer.accepts_marketing is None


# ---- order variants ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "stem", "order_id", "platform_status", "status", "is_paid", "paid_at", "updated_at"),
    [
        (
            "completed later",
            "order_updated__completed",
            "11",
            "completed",
            OrderStatus.PAID,
            True,
            utc(2026, 11, 22, 12, 40, 28),
            utc(2026, 11, 23, 9, 15, 0),
        ),
        (
            "cancelled before payment",
            "order_updated__cancelled",
            "21",
            "cancelled",
            OrderStatus.CANCELLED,
            False,
            None,
            utc(2026, 11, 22, 13, 5, 0),
        ),
        (
            "pending, never paid",
            "order_updated__pending",
            "22",
            "pending",
            OrderStatus.PENDING,
            False,
            None,
            utc(2026, 11, 22, 12, 50, 0),
        ),
        (
            "payment failed",
            "order_updated__failed",
            "23",
            "failed",
            OrderStatus.FAILED,
            False,
            None,
            utc(2026, 11, 22, 12, 55, 0),
        ),
        (
            "on hold awaiting bank transfer",
            "order_updated__on_hold",
            "24",
            "on-hold",
            OrderStatus.ON_HOLD,
            False,
            None,
            utc(2026, 11, 22, 13, 0, 0),
        ),
        (
            "block checkout draft",
            "order_updated__checkout_draft",
            "25",
            "checkout-draft",
            OrderStatus.DRAFT,
            False,
            None,
            utc(2026, 11, 22, 13, 10, 0),
        ),
        (
            "fully refunded after payment",
            "order_updated__refunded",
            "11",
            "refunded",
            OrderStatus.REFUNDED,
            True,
            utc(2026, 11, 22, 12, 40, 28),
            utc(2026, 11, 25, 8, 0, 0),
        ),
    ],
)
def test_order_variant_status_and_payment(
    _case: str,
    stem: str,
    order_id: str,
    platform_status: str,
    status: OrderStatus,
    is_paid: bool,
    paid_at: datetime | None,
    updated_at: datetime,
) -> None:
    # given an order.updated fixture in one lifecycle state
    # when it is parsed
    event = parse_fixture(stem)

    # then status, payment and time are exact
    order = event.resource
    assert order.id == order_id
    assert order.number == order_id
    assert order.platform_status == platform_status
    assert order.status is status
    assert order.is_paid is is_paid
    assert order.paid_at == paid_at
    assert order.updated_at == updated_at
    assert event.occurred_at == updated_at


def test_cancelled_order_is_dated_by_its_modification() -> None:
    # given order 21 cancelled before payment
    stem = "order_updated__cancelled"

    # when it is parsed
    order = parse_fixture(stem).resource

    # then its cancellation time is the modification that delivered it
    assert order.cancelled_at == utc(2026, 11, 22, 13, 5, 0)


@pytest.mark.parametrize(
    ("_case", "stem", "order_id"),
    [
        ("pending order can still be paid", "order_updated__pending", "22"),
        ("failed payment can be retried", "order_updated__failed", "23"),
    ],
)
def test_unpaid_order_keeps_payment_url_as_recovery_url(
    _case: str, stem: str, order_id: str
) -> None:
    # given an order that was never paid
    # when it is parsed
    order = parse_fixture(stem).resource

    # then its payment_url is kept for reminders, and nothing counts as paid
    assert order.recovery_url == PAY_URL.format(order_id)
    assert order.paid_at is None
    assert order.customer == JANE


def test_checkout_draft_keeps_guest_email_for_reminders() -> None:
    # given a block-checkout draft of a guest who typed an e-mail
    stem = "order_updated__checkout_draft"

    # when it is parsed
    order = parse_fixture(stem).resource

    # then it is a never-earning draft that still knows who to remind
    assert order.status is OrderStatus.DRAFT
    assert order.is_paid is False
    assert order.email == "jane.doe@example.test"
    assert order.customer == Customer(
        id=None, email="jane.doe@example.test", first_name="Jane", last_name="Doe"
    )
    assert order.recovery_url == PAY_URL.format(25)


def test_partial_refund_is_proportional_to_order_total() -> None:
    # given order 11 (25.00) completed, then refunded 5.00
    stem = "order_updated__partial_refund"

    # when it is parsed
    event = parse_fixture(stem)

    # then the order is still paid and carries one refund dated by the delivery
    order = event.resource
    assert event.occurred_at == utc(2026, 11, 24, 10, 30, 0)
    assert (order.id, order.status, order.platform_status, order.is_paid) == (
        "11",
        OrderStatus.PAID,
        "completed",
        True,
    )
    assert order.total == Decimal("25.00")
    assert order.refunds == (
        Refund(
            id="13",
            order_id="11",
            created_at=utc(2026, 11, 24, 10, 30, 0),
            merchandise=Decimal("5.00"),
            total=Decimal("5.00"),
            currency="USD",
            detailed=False,
        ),
    )


def test_full_refund_lists_every_refund() -> None:
    # given order 11 refunded 5.00 and then the remaining 20.00
    stem = "order_updated__refunded"

    # when it is parsed
    order = parse_fixture(stem).resource

    # then both refunds are listed (newest first, as WooCommerce sends them), all merchandise back
    assert order.refunds == (
        Refund(
            id="14",
            order_id="11",
            created_at=utc(2026, 11, 25, 8, 0, 0),
            merchandise=Decimal("20.00"),
            total=Decimal("20.00"),
            currency="USD",
            detailed=False,
        ),
        Refund(
            id="13",
            order_id="11",
            created_at=utc(2026, 11, 25, 8, 0, 0),
            merchandise=Decimal("5.00"),
            total=Decimal("5.00"),
            currency="USD",
            detailed=False,
        ),
    )
    assert sum(refund.merchandise for refund in order.refunds) == order.merchandise


@pytest.mark.parametrize(
    ("_case", "stem", "total", "refunded", "merchandise"),
    [
        ("part of an order with tax and shipping", "order_updated", "29.35", "-10.00", "6.13"),
        ("whole order with tax and shipping", "order_updated", "29.35", "-29.35", "18.00"),
        ("more than the order total is capped", "order_updated", "29.35", "-40.00", "18.00"),
        ("free order", "order_updated", "0.00", "-0.00", "0.00"),
        ("rounds half up to the cent", "order_created", "25.00", "-0.05", "0.05"),
    ],
)
def test_refund_merchandise_is_the_refunded_share(
    _case: str, stem: str, total: str, refunded: str, merchandise: str
) -> None:
    # given an order whose body lists one refund (WooCommerce gives only its total)
    body = edited_body(stem, total=total, refunds=[{"id": 99, "reason": "", "total": refunded}])

    # when it is parsed
    order = connector.parse_event(signed_headers("order.updated", body), body).resource

    # then the refund's merchandise is its share of the order total, to the cent
    (refund,) = order.refunds
    assert refund.total == abs(Decimal(refunded))
    assert refund.merchandise == Decimal(merchandise)
    assert str(refund.merchandise) == merchandise


def test_coupon_codes_are_read_from_coupon_lines() -> None:
    # given order 26 paid with the loyalty reward code loyalty-jane-500 (5.00 off 25.00)
    stem = "order_created__loyalty_coupon"

    # when it is parsed
    order = parse_fixture(stem).resource

    # then the code is listed and merchandise is after the discount
    assert order.discount_codes == ("loyalty-jane-500",)
    assert order.merchandise == Decimal("20.00")
    assert order.total == Decimal("20.00")
    assert order.line_items[0].unit_price == Decimal("10")
    assert order.created_at == utc(2026, 11, 27, 10, 0, 0)


def test_prices_entered_with_tax_count_tax_in_merchandise() -> None:
    # given docs order 727 from a shop whose prices include tax
    stem = "order_updated__taxes_included"

    # when it is parsed
    order = parse_fixture(stem).resource

    # then line totals plus line tax make the merchandise
    assert order.taxes_included is True
    assert order.merchandise == Decimal("19.35")
    assert order.merchandise_tax == Decimal("1.35")
    assert order.total == Decimal("29.35")


@pytest.mark.parametrize(
    ("_case", "status", "date_paid", "expected_status", "expected_paid"),
    [
        ("pending", "pending", None, OrderStatus.PENDING, False),
        ("processing and paid", "processing", "2026-11-22T12:40:28", OrderStatus.PAID, True),
        ("processing without date_paid", "processing", None, OrderStatus.PAID, False),
        ("completed and paid", "completed", "2026-11-22T12:40:28", OrderStatus.PAID, True),
        ("on-hold", "on-hold", None, OrderStatus.ON_HOLD, False),
        ("cancelled", "cancelled", None, OrderStatus.CANCELLED, False),
        (
            "cancelled after date_paid",
            "cancelled",
            "2026-11-22T12:40:28",
            OrderStatus.CANCELLED,
            False,
        ),
        ("refunded after payment", "refunded", "2026-11-22T12:40:28", OrderStatus.REFUNDED, True),
        ("refunded never paid", "refunded", None, OrderStatus.REFUNDED, False),
        ("failed", "failed", None, OrderStatus.FAILED, False),
        ("checkout-draft", "checkout-draft", None, OrderStatus.DRAFT, False),
        ("custom status", "awaiting-shipment", "2026-11-22T12:40:28", OrderStatus.PENDING, False),
    ],
)
def test_every_status_maps(
    _case: str,
    status: str,
    date_paid: str | None,
    expected_status: OrderStatus,
    expected_paid: bool,
) -> None:
    # given the real order in another status, with or without a payment date
    payload = json.loads(fixture_bytes("order_created"))
    payload.update(status=status, date_paid=date_paid, date_paid_gmt=date_paid)
    body = json.dumps(payload).encode()

    # when it is parsed
    order = connector.parse_event(signed_headers("order.updated", body), body).resource

    # then our status and is_paid follow WooCommerce's word and date_paid
    assert order.platform_status == status
    assert order.status is expected_status
    assert order.is_paid is expected_paid


def test_unknown_status_log_has_no_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    # given an order in a plugin's custom status
    body = edited_body("order_created", status="awaiting-shipment")

    # when it is parsed
    with caplog.at_level(logging.DEBUG, logger="connectors.woocommerce.webhooks"):
        connector.parse_event(signed_headers("order.updated", body), body)

    # then one constant message is logged with ids only
    (record,) = caplog.records
    assert record.getMessage() == "unknown woocommerce order status treated as pending"
    assert record.order_id == "11"
    assert "jane" not in caplog.text.lower()


def test_guest_email_is_normalized_and_extra_fields_ignored() -> None:
    # given a guest order with a padded mixed-case e-mail and fields we have never seen
    payload = json.loads(fixture_bytes("order_created"))
    payload["customer_id"] = 0
    payload["billing"]["email"] = "  Jane.Doe@Example.TEST "
    payload["shipping"] = []
    payload["brand_new_field"] = {"nested": [1, 2, 3]}
    payload["line_items"][0]["brand_new_line_field"] = True
    body = json.dumps(payload).encode()

    # when it is parsed
    order = connector.parse_event(signed_headers("order.updated", body), body).resource

    # then the guest is identified by the normalized e-mail and the extras change nothing
    assert order.customer == Customer(
        id=None, email="jane.doe@example.test", first_name="Jane", last_name="Doe"
    )
    assert order.email == "jane.doe@example.test"
    assert order.merchandise == Decimal("25.00")


# ---- signatures -------------------------------------------------------------------------


def test_tampered_body_is_rejected() -> None:
    # given the real delivery's headers and a body changed by one character
    body = fixture_bytes("order_created").replace(b'"total":"25.00"', b'"total":"95.00"', 1)
    headers = json.loads((FIXTURES / "order_created.headers.json").read_text())

    # when / then
    with pytest.raises(InvalidSignatureError):
        connector.verify(headers, body, secret=SECRET)


def test_wrong_secret_is_rejected() -> None:
    # given the real delivery
    body = fixture_bytes("order_created")
    headers = json.loads((FIXTURES / "order_created.headers.json").read_text())

    # when / then it does not verify under another secret
    with pytest.raises(InvalidSignatureError):
        connector.verify(headers, body, secret="not-the-webhook-secret")


@pytest.mark.parametrize(
    ("_case", "signed_with"),
    [("signed with the old secret", "old-secret"), ("signed with the new secret", "new-secret")],
)
def test_old_secret_is_accepted_during_rotation(_case: str, signed_with: str) -> None:
    # given a delivery signed with either secret while the secret is being rotated
    body = fixture_bytes("order_updated__completed")
    headers = signed_headers("order.updated", body, secret=signed_with)

    # when it is verified with both secrets
    result = connector.verify(headers, body, secret="new-secret", old_secret="old-secret")

    # then it is accepted
    assert result is None


@pytest.mark.parametrize(
    ("_case", "signature"),
    [("header absent", None), ("header empty", ""), ("header blank", "   ")],
)
def test_missing_signature_header_is_rejected(_case: str, signature: str | None) -> None:
    # given a delivery without a usable signature
    body = fixture_bytes("order_updated__completed")
    headers = signed_headers("order.updated", body)
    if signature is None:
        del headers["X-WC-Webhook-Signature"]
    else:
        headers["X-WC-Webhook-Signature"] = signature

    # when / then
    with pytest.raises(MissingSignatureError):
        connector.verify(headers, body, secret=SECRET)


@pytest.mark.parametrize(
    ("_case", "old_secret"),
    [("no old secret", None), ("empty old secret", "")],
)
def test_empty_secret_is_rejected(_case: str, old_secret: str | None) -> None:
    # given a delivery signed with an empty key, which anyone can compute
    body = fixture_bytes("order_updated__completed")
    headers = signed_headers("order.updated", body, secret="")

    # when / then an unset secret never verifies anything
    with pytest.raises(InvalidSignatureError):
        connector.verify(headers, body, secret="", old_secret=old_secret)


def test_lower_cased_headers_are_read() -> None:
    # given the real delivery as it arrives behind a proxy that lower-cases header names
    body = fixture_bytes("order_created")
    captured = json.loads((FIXTURES / "order_created.headers.json").read_text())
    headers = {name.lower(): value for name, value in captured.items()}

    # when it is verified and parsed
    connector.verify(headers, body, secret=SECRET)
    event = connector.parse_event(headers, body)

    # then nothing is lost
    assert connector.shop_from_headers(headers) == SHOP
    assert connector.topic_from_headers(headers) == "order.created"
    assert event.resource.id == "11"


# ---- ping -------------------------------------------------------------------------------


def test_ping_is_recognised() -> None:
    # given the captured activation ping: a form body and no X-WC-* header
    body = (FIXTURES / "ping.txt").read_bytes()
    headers = {
        "User-Agent": "WooCommerce/10.0.2 Hookshot (WordPress/6.8.3)",
        "Content-Length": "12",
        "Content-Type": "application/x-www-form-urlencoded",
    }

    # when / then it is a ping, before any signature rule
    assert body == b"webhook_id=1"
    assert connector.is_ping(headers, body) is True


@pytest.mark.parametrize(
    ("_case", "headers", "body"),
    [
        (
            "signed JSON delivery",
            signed_headers("order.updated", b'{"id":11}'),
            b'{"id":11}',
        ),
        (
            "ping body with a topic header",
            {"X-WC-Webhook-Topic": "order.updated"},
            b"webhook_id=1",
        ),
        (
            "ping body with a signature header",
            {"x-wc-webhook-signature": "aNXoyqNQlvX7b9B94BoBcLDuYiJXVXudChULVETCHsI="},
            b"webhook_id=1",
        ),
        ("non-numeric webhook id", {}, b"webhook_id=abc"),
        ("extra form field", {}, b"webhook_id=1&x=2"),
        ("empty body", {}, b""),
    ],
)
def test_is_not_ping(_case: str, headers: dict[str, str], body: bytes) -> None:
    # given a request that is not exactly WooCommerce's unsigned ping
    # when / then
    assert connector.is_ping(headers, body) is False


# ---- shop and topic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "value", "expected"),
    [
        ("home_url with trailing slash", "http://127.0.0.1:8888/", "http://127.0.0.1:8888"),
        ("bare host", "shop.example", "https://shop.example"),
        ("upper-case scheme and host", "HTTPS://Shop.Example/", "https://shop.example"),
        ("default https port dropped", "https://shop.example:443/", "https://shop.example"),
        ("default http port dropped", "http://shop.example:80", "http://shop.example"),
        ("sub-folder install kept", "https://Example.com/Shop/", "https://example.com/Shop"),
        (
            "credentials, query and spaces dropped",
            " https://u:p@shop.example/?a=1 ",
            "https://shop.example",
        ),
        ("ipv6 host", "http://[::1]:8080/", "http://[::1]:8080"),
    ],
)
def test_normalize_shop(_case: str, value: str, expected: str) -> None:
    # given a store URL as a merchant or WooCommerce writes it
    # when / then
    assert connector.normalize_shop(value) == expected


@pytest.mark.parametrize(
    ("_case", "value"),
    [("empty", ""), ("ftp scheme", "ftp://shop.example"), ("bad port", "https://shop.example:x/")],
)
def test_normalize_shop_rejects_non_store_urls(_case: str, value: str) -> None:
    # given something that is not an http(s) store URL
    # when / then
    with pytest.raises(ValueError):
        connector.normalize_shop(value)


@pytest.mark.parametrize(
    ("_case", "headers", "expected"),
    [
        ("source header", {"X-WC-Webhook-Source": "http://127.0.0.1:8888/"}, SHOP),
        ("no source header", {}, None),
        ("invalid source header", {"X-WC-Webhook-Source": "ftp://x"}, None),
    ],
)
def test_shop_from_headers(_case: str, headers: dict[str, str], expected: str | None) -> None:
    # given delivery headers
    # when / then
    assert connector.shop_from_headers(headers) == expected


def test_topic_from_headers_is_none_without_header() -> None:
    # given headers without a topic
    # when / then
    assert connector.topic_from_headers({"Content-Type": "application/json"}) is None


# ---- delivery key -----------------------------------------------------------------------


def test_same_body_gives_same_delivery_key() -> None:
    # given the same event delivered twice (the Delivery-ID hash changes with the second)
    body = fixture_bytes("order_updated__partial_refund")
    first = signed_headers("order.updated", body)
    second = {**first, "X-WC-Webhook-Delivery-ID": "0f6e2c1b9a8d7e6f5a4b3c2d1e0f9a8b"}

    # when both are keyed
    key_1 = connector.delivery_key(first, body, json.loads(body))
    key_2 = connector.delivery_key(second, body, json.loads(body))

    # then they dedupe
    assert key_1 == key_2
    assert key_1 == (
        "order|11|2026-11-24T10:30:00|351b0b4d8728253898079c65756eb1a987a9fe36be7d439c1ef92a635446cd1b"
    )
    assert len(key_1) < 255


def test_bodies_differing_only_in_content_get_different_keys() -> None:
    # given two deliveries of order 11 with the same id and date_modified_gmt
    body_1 = fixture_bytes("order_updated__partial_refund")
    body_2 = body_1.replace(b'"reason":"Chipped mug"', b'"reason":"Cracked mug"', 1)
    headers = signed_headers("order.updated", body_1)

    # when both are keyed
    key_1 = connector.delivery_key(headers, body_1, json.loads(body_1))
    key_2 = connector.delivery_key(headers, body_2, json.loads(body_2))

    # then they are different deliveries
    assert body_1 != body_2
    assert key_1 != key_2


def test_created_and_updated_of_one_order_state_are_one_delivery_restored_is_not() -> None:
    # given the real body delivered as order.created, as order.updated and as order.restored
    body = fixture_bytes("order_created")

    # when they are keyed
    created = connector.delivery_key(signed_headers("order.created", body), body, json.loads(body))
    updated = connector.delivery_key(signed_headers("order.updated", body), body, json.loads(body))
    restored = connector.delivery_key(signed_headers("order.restored", body), body, json.loads(body))

    # then created and updated of the same state are one delivery (either brings the same order),
    # while a restore is an event of its own
    assert created == updated
    assert restored != updated


def test_the_same_order_read_back_by_the_api_is_the_same_delivery() -> None:
    # given the real webhook body, and the same order as GET orders answers it: other JSON encoding
    # (PHP escapes "/"), other key order, and `_links` added
    body = fixture_bytes("order_created")
    state = json.loads(body)
    polled = {"_links": {"self": [{"href": "https://shop.example/wp-json/wc/v3/orders/11"}]},
              **dict(reversed(list(state.items())))}
    polled_body = json.dumps(polled, ensure_ascii=True).encode()

    # when both are keyed as order.updated deliveries
    webhook = connector.delivery_key(signed_headers("order.created", body), body, state)
    poll = connector.delivery_key(signed_headers("order.updated", polled_body), polled_body, json.loads(polled_body))

    # then they are one delivery
    assert polled_body != body
    assert poll == webhook


def test_absurd_delivery_key_is_bounded() -> None:
    # given a custom topic and an id long enough to overflow a 255-character column
    body = b'{"id":"' + b"9" * 300 + b'"}'
    headers = {"X-WC-Webhook-Topic": "action.woocommerce_" + "x" * 200}

    # when it is keyed
    key = connector.delivery_key(headers, body, json.loads(body))

    # then it stays short and deterministic
    assert len(key) <= 255
    assert key == connector.delivery_key(headers, body, json.loads(body))


# ---- malformed and unsupported ----------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "stem", "topic", "changes", "message"),
    [
        (
            "date_modified_gmt missing",
            "order_updated__completed",
            "order.updated",
            {"date_modified_gmt": None},
            "order.updated: date_modified_gmt missing",
        ),
        (
            "date_created_gmt not a timestamp",
            "order_created",
            "order.created",
            {"date_created_gmt": "yesterday"},
            "order.created: date_created_gmt is not a timestamp",
        ),
        (
            "status not a string",
            "order_updated__completed",
            "order.updated",
            {"status": 5},
            "order.updated: status is not a string",
        ),
        (
            "total not a number",
            "order_updated__completed",
            "order.updated",
            {"total": "twenty"},
            "order.updated: total is not a number",
        ),
        (
            "currency missing",
            "order_restored",
            "order.restored",
            {"currency": None},
            "order.restored: currency missing",
        ),
        (
            "prices_include_tax not a boolean",
            "order_updated__completed",
            "order.updated",
            {"prices_include_tax": "no"},
            "order.updated: prices_include_tax is not a boolean",
        ),
        (
            "customer_id missing",
            "order_updated__completed",
            "order.updated",
            {"customer_id": None},
            "order.updated: customer_id missing",
        ),
        (
            "line_items missing",
            "order_updated__completed",
            "order.updated",
            {"line_items": None},
            "order.updated: line_items missing",
        ),
        (
            "line total not a number",
            "order_updated__completed",
            "order.updated",
            {"line_items": [{"id": 1, "product_id": 10, "variation_id": 0, "quantity": 2,
                             "price": 12.5, "total": "x", "total_tax": "0.00"}]},
            "order.updated: line_items[0].total is not a number",
        ),
        (
            "line quantity not an integer",
            "order_updated__completed",
            "order.updated",
            {"line_items": [{"id": 1, "product_id": 10, "variation_id": 0, "quantity": "2",
                             "price": 12.5, "total": "25.00", "total_tax": "0.00"}]},
            "order.updated: line_items[0].quantity is not an integer",
        ),
        (
            "refund total missing",
            "order_updated__partial_refund",
            "order.updated",
            {"refunds": [{"id": 13, "reason": ""}]},
            "order.updated: refunds[0].total missing",
        ),
        (
            "coupon code missing",
            "order_created__loyalty_coupon",
            "order.created",
            {"coupon_lines": [{"id": 2, "discount": "5.00"}]},
            "order.created: coupon_lines[0].code missing",
        ),
        (
            "deleted order id missing",
            "order_deleted",
            "order.deleted",
            {"id": None},
            "order.deleted: id missing",
        ),
        (
            "customer email missing",
            "customer_updated",
            "customer.updated",
            {"email": None},
            "customer.updated: email missing",
        ),
        (
            "customer id missing",
            "customer_created",
            "customer.created",
            {"id": None},
            "customer.created: id missing",
        ),
    ],
)
def test_malformed_payload_names_topic_and_field(
    _case: str, stem: str, topic: str, changes: dict[str, Any], message: str
) -> None:
    # given a fixture with one field we use removed or of the wrong type
    body = edited_body(stem, **changes)

    # when / then the error names the topic and the field
    with pytest.raises(MalformedPayloadError) as raised:
        connector.parse_event(signed_headers(topic, body), body)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("_case", "body", "message"),
    [
        ("JSON array", b"[]", "order.updated: body is not a JSON object"),
        ("JSON string", b'"order"', "order.updated: body is not a JSON object"),
        ("not JSON", b"webhook_id=1", "order.updated: body is not JSON"),
        ("not UTF-8", b"\xff\xfe{}", "order.updated: body is not JSON"),
        ("empty", b"", "order.updated: body is not JSON"),
    ],
)
def test_body_that_is_not_a_json_object_is_malformed(
    _case: str, body: bytes, message: str
) -> None:
    # given a signed order.updated delivery whose body is not a JSON object
    headers = signed_headers("order.updated", body)

    # when / then
    with pytest.raises(MalformedPayloadError) as raised:
        connector.parse_event(headers, body)
    assert str(raised.value) == message


def test_missing_source_header_is_malformed() -> None:
    # given a delivery that does not say which store sent it
    body = fixture_bytes("order_updated__completed")
    headers = signed_headers("order.updated", body)
    del headers["X-WC-Webhook-Source"]

    # when / then
    with pytest.raises(MalformedPayloadError, match="order.updated: X-WC-Webhook-Source"):
        connector.parse_event(headers, body)


@pytest.mark.parametrize(
    ("_case", "topic"),
    [
        ("core topic we do not handle", "coupon.created"),
        ("custom action topic", "action.woocommerce_add_to_cart"),
        ("product topic", "product.updated"),
    ],
)
def test_unsupported_topic_is_rejected(_case: str, topic: str) -> None:
    # given a signed delivery on a topic we do not parse
    body = b'{"id":11}'
    headers = signed_headers(topic, body)

    # when / then
    with pytest.raises(UnsupportedTopicError):
        connector.parse_event(headers, body)


def test_missing_topic_header_is_unsupported() -> None:
    # given a delivery without X-WC-Webhook-Topic
    body = b'{"id":11}'
    headers = signed_headers("order.updated", body)
    del headers["X-WC-Webhook-Topic"]

    # when / then
    with pytest.raises(UnsupportedTopicError):
        connector.parse_event(headers, body)


# ---- contract ---------------------------------------------------------------------------


def test_connector_exposes_the_contract() -> None:
    # given the exported connector
    # when / then its topics are the dispatch table's, with the platform's words
    assert connector.platform == "woocommerce"
    assert connector.SUPPORTED_TOPICS == tuple(webhooks.TOPIC_HANDLERS) == webhooks.SUPPORTED_TOPICS
    assert connector.SUPPORTED_TOPICS == (
        "order.created",
        "order.updated",
        "order.deleted",
        "order.restored",
        "customer.created",
        "customer.updated",
    )
    assert (consts.ORDER_UPDATED, consts.API_VERSION) == ("order.updated", "wc/v3")


def test_every_supported_topic_has_a_fixture() -> None:
    # given the topic fixtures on disk (the ping and captured headers are not topic bodies)
    stems = [path.stem for path in FIXTURES.glob("*.json") if not path.stem.endswith(".headers")]

    # when they are mapped to topics
    topics = {fixture_topic(stem) for stem in stems}

    # then every supported topic is covered and every fixture is a supported topic
    assert topics == set(connector.SUPPORTED_TOPICS)


# ---- the shared field rule (connectors.fields) -----------------------------------------------


def parse_body(stem: str, body: bytes) -> Any:
    """Verify and parse an edited body under a fixture's topic."""
    headers = signed_headers(fixture_topic(stem), body)
    connector.verify(headers, body, secret=SECRET)
    return connector.parse_event(headers, body).resource


def test_text_fields_are_read_stripped_as_on_every_platform() -> None:
    # given an order whose texts carry padding, and a blank optional timestamp
    payload = json.loads(fixture_bytes("order_created__loyalty_coupon"))
    payload.update(currency=" USD ", status=" processing ", id=f" {payload['id']} ")
    payload["coupon_lines"][0]["code"] = " loyalty-jane-500\t"
    payload["billing"]["first_name"] = "  Jane "

    # when it is parsed
    order = parse_body("order_created__loyalty_coupon", json.dumps(payload).encode())

    # then every text is stripped (required texts kept padding before connectors.fields, so a
    # padded status read as unknown, hence unpaid)
    assert (order.currency, order.platform_status, order.status, order.is_paid) == (
        "USD", "processing", OrderStatus.PAID, True)
    assert (order.discount_codes, order.customer.first_name) == (("loyalty-jane-500",), "Jane")
    assert order.id == payload["id"].strip()


@pytest.mark.parametrize(
    ("_case", "changes", "message"),
    [
        ("blank required text", {"currency": "   "}, "order.created: currency missing"),
        ("blank id", {"id": " "}, "order.created: id missing"),
        ("wrong type", {"currency": 1}, "order.created: currency is not a string"),
        ("blank coupon code", {"coupon_lines": [{"code": " "}]}, "order.created: coupon_lines[0].code missing"),
    ],
)
def test_blank_or_wrong_typed_fields_are_named(_case: str, changes: dict[str, Any], message: str) -> None:
    # when a field we use is blank or of the wrong type, then the error names topic and field
    with pytest.raises(MalformedPayloadError) as raised:
        parse_body("order_created__loyalty_coupon", edited_body("order_created__loyalty_coupon", **changes))
    assert str(raised.value) == message


# ---- refunds with their lines (GET orders/N/refunds, fact 32) ----------------------------------


def refund_details_state(*, prices_include_tax: bool = False) -> dict[str, Any]:
    """What jobs.reconcile.fetch_refund_detail stores for order 31: the store's real refunds answer."""
    refunds = json.loads((FIXTURES.parent / "woocommerce_api" / "refunds_list.json").read_bytes())
    return {"order_id": 31, "currency": "USD", "prices_include_tax": prices_include_tax, "refunds": refunds}


def test_an_order_body_gives_refund_estimates_only() -> None:
    # the order body lists a refund as {id, reason, total}: its share is estimated
    order = webhooks.parse_order(json.loads(fixture_bytes("order_updated__line_refund_with_shipping")),
                                 "order.updated")
    [refund] = order.refunds
    assert (refund.id, refund.detailed, refund.merchandise) == ("37", False, Decimal("17.33"))  # 20 x 52/60


def test_refund_details_give_each_refunds_own_merchandise() -> None:
    # when the store's refunds of order 31 are parsed
    details = webhooks.parse_refund_details(refund_details_state(), consts.REFUND_DETAILS)

    # then refund 37 is its line's 20.00, dated when it was made
    assert details.order_id == "31"
    [refund] = details.refunds
    assert (refund.id, refund.merchandise, refund.total, refund.detailed) == ("37", Decimal("20.00"),
                                                                              Decimal("20.00"), True)
    assert refund.created_at == datetime(2026, 12, 2, 1, 41, 31, tzinfo=timezone.utc)


def test_refund_details_are_parsed_from_an_inbox_delivery_but_never_accepted_as_a_webhook() -> None:
    body = json.dumps(refund_details_state()).encode()
    event = webhooks.parse_event({consts.HEADER_TOPIC: consts.REFUND_DETAILS,
                                  consts.HEADER_SOURCE: "http://127.0.0.1:8888/"}, body)
    assert event.resource.refunds[0].merchandise == Decimal("20.00")
    assert consts.REFUND_DETAILS not in webhooks.SUPPORTED_TOPICS
