"""Shopify webhook verify and parse, against the fixtures in tests/fixtures/shopify/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import Headers

import connectors
from connectors.base import address_fingerprint, body_digest, hmac_sha256_base64
from connectors.errors import (
    InvalidSignatureError,
    MalformedPayloadError,
    MissingSignatureError,
    UnsupportedTopicError,
)
from connectors.shopify import connector, consts, webhooks
from connectors.types import (
    AppUninstalled,
    Checkout,
    Customer,
    CustomerDataRequest,
    CustomerRedaction,
    LineItem,
    Order,
    OrderStatus,
    OrderTransaction,
    Refund,
    RefundLine,
    ShopRedaction,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "shopify"
SECRET = "shopify-test-secret"
OLD_SECRET = "shopify-old-test-secret"
# The shop of Shopify's docs example data (order_status_url, Shop.myshopify_domain).
SHOP = "jsmith.myshopify.com"
EVENT_ID = "59d6d79c-595f-4e7e-bc6f-72f5c3d0c66f"
WEBHOOK_ID = "545ebdd4-b7be-4d3d-b14e-54aa78e0e0f9"
BOB_FINGERPRINT = address_fingerprint("Chestnut Street 92", "40202", "US")
CANCELLED_AT = "2025-04-02T11:31:25-05:00"


def utc(*parts: int) -> datetime:
    """Return an aware UTC datetime."""
    return datetime(*parts, tzinfo=timezone.utc)


def fixture_bytes(stem: str) -> bytes:
    """Return the exact bytes of tests/fixtures/shopify/<stem>.json."""
    return (FIXTURES / f"{stem}.json").read_bytes()


def fixture_topic(stem: str) -> str:
    """Return the topic a fixture is named after ("orders_paid__guest" -> "orders/paid")."""
    slug = stem.split("__", 1)[0]
    topics = [topic for topic in connector.SUPPORTED_TOPICS if topic.replace("/", "_") == slug]
    assert topics, f"{stem}.json is named after no supported topic"
    return topics[0]


def signed_headers(topic: str, body: bytes, secret: str = SECRET, **extra: str) -> dict[str, str]:
    """Return the headers Shopify sends with `body`, signed with `secret`."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": hmac_sha256_base64(secret, body),
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-API-Version": consts.API_VERSION,
        **extra,
    }


def parse_fixture(stem: str, body: bytes | None = None, **extra: str) -> Any:
    """Verify and parse a fixture (or an edited body under its topic) as the view and job do."""
    body = fixture_bytes(stem) if body is None else body
    headers = signed_headers(fixture_topic(stem), body, **extra)
    connector.verify(headers, body, secret=SECRET)
    return connector.parse_event(headers, body).resource


def edited_body(stem: str, edit: Callable[[dict[str, Any]], object]) -> bytes:
    """Return a fixture re-encoded after `edit` changed its decoded payload in place."""
    payload = json.loads(fixture_bytes(stem))
    edit(payload)
    return json.dumps(payload).encode()


def ipod_lines(gift_card_line: str | None = None) -> tuple[LineItem, ...]:
    """Return the three iPod lines of Shopify's example order #1001 (TENOFF spread over them)."""
    return tuple(
        LineItem(
            id=line_id,
            product_id="632910392",
            variant_id=variant_id,
            quantity=1,
            unit_price=Decimal("199.00"),
            total=total,
            is_gift_card=line_id == gift_card_line,
            grams=200,
            tax=Decimal("3.98"),
            merchandise=None if line_id == gift_card_line else total,
        )
        for line_id, variant_id, total in (
            ("466157049", "39072856", Decimal("195.66")),
            ("518995019", "49148385", Decimal("195.67")),
            ("703073504", "457924702", Decimal("195.67")),
        )
    )


# Bob as embedded in the 2026-07 order example (and customers_create.json).
BOB = Customer(
    id="207119551",
    email="bob.norman@mail.example.com",
    first_name="Bob",
    last_name="Norman",
    accepts_marketing=False,
    marketing_consent_at=utc(2004, 6, 13, 15, 57, 11),
    created_at=utc(2025, 4, 2, 16, 29, 59),
    updated_at=utc(2025, 4, 2, 16, 29, 59),
    tags=("Léon", "Noël"),
)

# The refund 509562969 of order 450789469: the black and green iPods, not the red one.
PARTIAL_REFUND = Refund(
    id="509562969",
    order_id="450789469",
    created_at=utc(2025, 4, 2, 16, 29, 59),
    merchandise=Decimal("391.33"),
    total=Decimal("209.00"),
    currency="USD",
    # the red iPod's line and the black one's, each with its own share of TENOFF
    lines=(RefundLine("703073504", Decimal("195.66")), RefundLine("466157049", Decimal("195.67"))),
)

PAID_ORDER = Order(
    id="450789469",
    number="#1001",
    currency="USD",
    presentment_currency="USD",
    platform_status="paid",
    status=OrderStatus.PAID,
    is_paid=True,
    merchandise=Decimal("587.00"),
    merchandise_tax=Decimal("11.94"),
    taxes_included=False,
    gift_card_paid=None,
    shipping=Decimal("0.00"),
    total=Decimal("598.94"),
    created_at=utc(2008, 1, 10, 16, 0, 0),
    updated_at=utc(2008, 1, 10, 16, 0, 0),
    customer=BOB,
    email="bob.norman@mail.example.com",
    paid_at=utc(2008, 1, 10, 16, 0, 0),
    line_items=ipod_lines(),
    discount_codes=("TENOFF",),
    shipping_address_fingerprint=BOB_FINGERPRINT,
    checkout_token="bd5a8aa1ecd019dd3520ff791ee3a24c",
)


# ---- one test per topic, against its fixtures -------------------------------------------


def test_orders_paid_parses_every_field() -> None:
    # given Shopify's example order #1001, paid, with a customer and the TENOFF code
    stem = "orders_paid"

    # when it is verified and parsed
    order = parse_fixture(stem)

    # then every field is read in shop money, ids as str, times as aware UTC
    assert order == PAID_ORDER
    assert order.paid_at.tzinfo == timezone.utc


@pytest.mark.parametrize(
    ("_case", "stem", "expected"),
    [
        (
            "guest checkout: no customer object, the order email makes a guest",
            "orders_paid__guest_checkout",
            {"customer": Customer(id=None, email="bob.norman@mail.example.com")},
        ),
        (
            "multi-currency: shop EUR, presentment USD; the amounts are shop money",
            "orders_paid__multi_currency",
            {"currency": "EUR", "presentment_currency": "USD"},
        ),
        (
            "gift card line: neither merchandise nor merchandise tax",
            "orders_paid__gift_card_line",
            {
                "merchandise": Decimal("391.33"),
                "merchandise_tax": Decimal("7.96"),
                "line_items": ipod_lines(gift_card_line="703073504"),
            },
        ),
        (
            "taxes included: merchandise contains its tax",
            "orders_paid__taxes_included",
            {"taxes_included": True, "total": Decimal("587.00")},
        ),
    ],
)
def test_orders_paid_variants(_case: str, stem: str, expected: dict[str, Any]) -> None:
    # given a paid order that differs from orders_paid.json in one respect
    # when it is parsed
    order = parse_fixture(stem)

    # then only the fields of that respect differ from the plain paid order
    assert order == replace(PAID_ORDER, **expected)


def test_orders_create_is_pending_and_unpaid() -> None:
    # given the example order as created, before payment
    # when it is parsed
    order = parse_fixture("orders_create")

    # then it is pending, unpaid and has no paid_at
    assert order == replace(
        PAID_ORDER,
        platform_status="pending",
        status=OrderStatus.PENDING,
        is_paid=False,
        paid_at=None,
    )


def test_orders_create_tolerates_the_legacy_field_set() -> None:
    # given the legacy python-lib order: no *_set money, no line tax_lines, no discount_allocations
    # when it is parsed
    order = parse_fixture("orders_create__legacy")

    # then plain shop-currency fields are used, shipping comes from shipping_lines
    assert order == Order(
        id="450789469",
        number="#1001",
        currency="USD",
        presentment_currency="USD",
        platform_status="authorized",
        status=OrderStatus.PENDING,
        is_paid=False,
        merchandise=Decimal("398.00"),
        merchandise_tax=Decimal("0"),
        taxes_included=False,
        gift_card_paid=None,
        shipping=Decimal("0.00"),
        total=Decimal("409.94"),
        created_at=utc(2008, 1, 10, 16, 0, 0),
        updated_at=utc(2008, 1, 10, 16, 0, 0),
        customer=Customer(
            id="207119551",
            email="bob.norman@hostmail.com",
            first_name="Bob",
            last_name="Norman",
            accepts_marketing=False,
            created_at=utc(2014, 1, 22, 20, 58, 27),
            updated_at=utc(2014, 1, 22, 20, 58, 27),
        ),
        email="bob.norman@hostmail.com",
        line_items=tuple(
            replace(line, total=Decimal("199.00"), tax=Decimal("0"), merchandise=Decimal("199.00"))
            for line in ipod_lines()
        ),
        discount_codes=("TENOFF",),
        shipping_address_fingerprint=BOB_FINGERPRINT,
    )


def test_orders_updated_carries_its_refunds() -> None:
    # given Shopify's example order verbatim: partially refunded, with one refund
    # when it is parsed
    order = parse_fixture("orders_updated__partially_refunded")

    # then it stays paid and lists the refund; the docs example states subtotal_price 597.00
    # although its lines add up to 587.00 after TENOFF, and we read what the payload says
    assert order == replace(
        PAID_ORDER,
        platform_status="partially_refunded",
        merchandise=Decimal("597.00"),
        refunds=(PARTIAL_REFUND,),
    )


def test_orders_cancelled_is_cancelled_but_was_paid() -> None:
    # given Shopify's example cancel response (order unwrapped, "notice" dropped)
    # when it is parsed
    order = parse_fixture("orders_cancelled")

    # then it is cancelled, money was received once, and the cancel time is read
    assert order == replace(
        PAID_ORDER,
        platform_status="partially_refunded",
        status=OrderStatus.CANCELLED,
        merchandise=Decimal("597.00"),
        updated_at=utc(2025, 4, 2, 16, 31, 25),
        cancelled_at=utc(2025, 4, 2, 16, 31, 25),
        refunds=(PARTIAL_REFUND,),
    )


@pytest.mark.parametrize(
    ("_case", "stem", "expected"),
    [
        (
            "partial refund of two of the three lines of orders_paid.json",
            "refunds_create",
            replace(PARTIAL_REFUND, created_at=utc(2025, 4, 2, 16, 38, 15)),
        ),
        (
            "no-restock refund whose line subtotal is zero in the docs example",
            "refunds_create__no_restock",
            Refund(
                id="929361472",
                order_id="450789469",
                created_at=utc(2025, 4, 2, 16, 38, 34),
                merchandise=Decimal("0.00"),
                total=Decimal("41.94"),
                currency="USD",
                lines=(RefundLine("518995019", Decimal("0.00")),),
            ),
        ),
    ],
)
def test_refunds_create_parses_refund(_case: str, stem: str, expected: Refund) -> None:
    # given a refunds/create body
    # when it is parsed
    refund = parse_fixture(stem)

    # then merchandise is the refunded lines' subtotal, total the successful refund transactions
    assert refund == expected


def test_refunds_create_paid_order_is_the_refunded_order() -> None:
    # given the two fixtures other tests pair: the paid order and its refund
    # when both are parsed
    order = parse_fixture("orders_paid")
    refund = parse_fixture("refunds_create")

    # then the refund is a partial refund of that very order
    assert refund.order_id == order.id
    assert Decimal("0") < refund.merchandise < order.merchandise


def test_refunds_create_legacy_without_line_subtotal_is_malformed() -> None:
    # given the legacy python-lib refund, whose refund_line_items carry no subtotal
    body = fixture_bytes("refunds_create__legacy")
    headers = signed_headers("refunds/create", body)

    # when it is parsed
    with pytest.raises(MalformedPayloadError) as excinfo:
        connector.parse_event(headers, body)

    # then the error names the topic and the missing field
    assert str(excinfo.value) == "refunds/create: refund_line_items[0].subtotal missing"


def test_customers_create_parses_consent_object() -> None:
    # given the customer embedded in the 2026-07 order example (email_marketing_consent object)
    # when it is parsed
    customer = parse_fixture("customers_create")

    # then "not_subscribed" is no consent, dated by consent_updated_at
    assert customer == BOB


@pytest.mark.parametrize(
    ("_case", "stem", "expected"),
    [
        (
            "legacy accepts_marketing boolean, no consent object",
            "customers_update",
            Customer(
                id="207119551",
                email="bob.norman@hostmail.com",
                first_name="Bob",
                last_name="Norman",
                accepts_marketing=False,
                created_at=utc(2015, 5, 27, 22, 11, 24),
                updated_at=utc(2015, 5, 27, 22, 11, 24),
            ),
        ),
        (
            "subscribed consent",
            "customers_update__email_subscribed",
            replace(BOB, accepts_marketing=True),
        ),
    ],
)
def test_customers_update_parses_customer(_case: str, stem: str, expected: Customer) -> None:
    # given a customers/update body
    # when it is parsed
    customer = parse_fixture(stem)

    # then the customer and its marketing consent are read
    assert customer == expected


CHECKOUT = Checkout(
    id="2a1ace52255252df566af0faaedfbfa7",
    currency="USD",
    total=Decimal("379.69"),
    subtotal=Decimal("358.20"),
    created_at=utc(2012, 10, 12, 11, 5, 27),
    updated_at=utc(2012, 10, 12, 11, 5, 27),
    customer=Customer(
        id="207119551",
        email="bob.norman@mail.example.com",
        first_name="Bob",
        last_name="Norman",
        locale="en",
        created_at=utc(2025, 4, 2, 16, 38, 15),
        updated_at=utc(2025, 4, 2, 16, 38, 15),
    ),
    email="bob.norman@mail.example.com",
    recovery_url=(
        "https://checkout.local/548380009/checkouts/2a1ace52255252df566af0faaedfbfa7/recover"
    ),
    line_items=(
        LineItem(
            id="f32827a8d00b0a8d",
            product_id="632910392",
            variant_id="49148385",
            quantity=1,
            unit_price=Decimal("199.00"),
            total=Decimal("179.10"),
            grams=200,
            vendor="Apple",
            merchandise=Decimal("179.10"),
        ),
        LineItem(
            id="7e8c529027b9a00e",
            product_id="632910392",
            variant_id="808950810",
            quantity=1,
            unit_price=Decimal("199.00"),
            total=Decimal("179.10"),
            grams=200,
            vendor="Apple",
            merchandise=Decimal("179.10"),
        ),
    ),
    buyer_accepts_marketing=False,
)


def test_checkouts_create_parses_abandoned_checkout() -> None:
    # given the 2026-07 abandoned checkout example (lines keyed by `key`, no `id`)
    # when it is parsed
    checkout = parse_fixture("checkouts_create")

    # then the token is the id and the recovery URL is kept
    assert checkout == CHECKOUT


@pytest.mark.parametrize(
    ("_case", "stem", "expected"),
    [
        (
            "completed checkout",
            "checkouts_update__completed",
            replace(
                CHECKOUT,
                updated_at=utc(2012, 10, 12, 11, 15, 27),
                completed_at=utc(2012, 10, 12, 11, 15, 27),
            ),
        ),
        (
            "legacy python-lib checkout: lines with ids, no discounts",
            "checkouts_update",
            Checkout(
                id="2a1ace52255252df566af0faaedfbfa7",
                currency="USD",
                total=Decimal("409.94"),
                subtotal=Decimal("398.00"),
                created_at=utc(2012, 10, 12, 11, 5, 27),
                updated_at=utc(2012, 10, 12, 11, 5, 27),
                customer=Customer(
                    id="207119551",
                    email="bob.norman@hostmail.com",
                    first_name="Bob",
                    last_name="Norman",
                    accepts_marketing=False,
                    created_at=utc(2014, 3, 7, 21, 12, 37),
                    updated_at=utc(2014, 3, 7, 21, 12, 37),
                ),
                email="bob.norman@hostmail.com",
                recovery_url=(
                    "https://checkout.local/orders/690933842/"
                    "2a1ace52255252df566af0faaedfbfa7?recovered=1"
                ),
                line_items=tuple(
                    LineItem(
                        id=variant_id,
                        product_id="632910392",
                        variant_id=variant_id,
                        quantity=1,
                        unit_price=Decimal("199.00"),
                        total=Decimal("199.00"),
                        grams=200,
                        vendor="Apple",
                        merchandise=Decimal("199.00"),
                    )
                    for variant_id in ("49148385", "808950810")
                ),
                buyer_accepts_marketing=False,
            ),
        ),
    ],
)
def test_checkouts_update_parses_checkout(_case: str, stem: str, expected: Checkout) -> None:
    # given a checkouts/update body
    # when it is parsed
    checkout = parse_fixture(stem)

    # then it is read like checkouts/create, with completed_at when set
    assert checkout == expected


def test_app_uninstalled_names_the_shop_from_the_header() -> None:
    # given the shop body of app/uninstalled, delivered with a differently written shop header
    body = fixture_bytes("app_uninstalled")
    headers = signed_headers("app/uninstalled", body)
    headers["X-Shopify-Shop-Domain"] = "https://JSmith.myshopify.com/"

    # when it is parsed
    event = connector.parse_event(headers, body)

    # then the resource names the normalized shop, and the event time is the shop's updated_at
    assert event.resource == AppUninstalled(shop=SHOP)
    assert event.shop == SHOP
    assert event.occurred_at == utc(2025, 4, 2, 16, 35, 33)


def test_customers_redact_names_the_customer_and_the_orders() -> None:
    # given Shopify's example customers/redact body
    body = fixture_bytes("customers_redact")

    # when it is parsed
    event = connector.parse_event(signed_headers("customers/redact", body), body)

    # then it names the customer by id and e-mail, and the orders to erase, as strings
    assert event.resource == CustomerRedaction(customer_id="191167", email="john@example.com",
                                               order_ids=("299938", "280263", "220458"))


@pytest.mark.parametrize(
    ("_case", "change", "message"),
    [
        ("no customer", lambda b: b.pop("customer"), "customers/redact: customer missing"),
        ("customer not an object", lambda b: b.update(customer=[1]), "customers/redact: customer is not an object"),
        ("neither id nor e-mail", lambda b: b.update(customer={"phone": "555"}),
         "customers/redact: customer.id and customer.email missing"),
        ("orders not a list", lambda b: b.update(orders_to_redact=7), "customers/redact: orders_to_redact is not a list"),
    ],
)
def test_customers_redact_without_what_we_need_names_the_field(_case: str, change: Callable[[dict], Any],
                                                               message: str) -> None:
    # given a customers/redact body that lacks what we erase by
    payload = json.loads(fixture_bytes("customers_redact"))
    change(payload)
    body = json.dumps(payload).encode()

    # when it is parsed
    with pytest.raises(MalformedPayloadError) as excinfo:
        connector.parse_event(signed_headers("customers/redact", body), body)

    # then the error names topic and field
    assert str(excinfo.value) == message


def test_customers_redact_by_email_alone_and_without_orders() -> None:
    # given a guest (no id) and no orders_to_redact key
    body = json.dumps({"shop_id": 1, "customer": {"id": None, "email": " John@Example.com "}}).encode()

    # when it is parsed
    event = connector.parse_event(signed_headers("customers/redact", body), body)

    # then the e-mail is normalized and there are no orders
    assert event.resource == CustomerRedaction(customer_id=None, email="john@example.com", order_ids=())


def test_customers_data_request_names_the_request_customer_and_orders() -> None:
    # given Shopify's example customers/data_request body
    body = fixture_bytes("customers_data_request")

    # when it is parsed
    event = connector.parse_event(signed_headers("customers/data_request", body), body)

    # then it names the request, the customer and the orders asked about, as strings
    assert event.resource == CustomerDataRequest(request_id="9999", customer_id="191167", email="john@example.com",
                                                 order_ids=("299938", "280263", "220458"))


def test_customers_data_request_with_a_malformed_request_names_it() -> None:
    # given a data_request that is not an object
    payload = json.loads(fixture_bytes("customers_data_request"))
    payload["data_request"] = 9999
    body = json.dumps(payload).encode()

    # when it is parsed
    with pytest.raises(MalformedPayloadError) as excinfo:
        connector.parse_event(signed_headers("customers/data_request", body), body)

    # then the error names topic and field
    assert str(excinfo.value) == "customers/data_request: data_request is not an object"


def test_shop_redact_names_the_shop_from_the_header() -> None:
    # given Shopify's example shop/redact body (its shop_domain is a placeholder)
    body = fixture_bytes("shop_redact")

    # when it is parsed
    event = connector.parse_event(signed_headers("shop/redact", body), body)

    # then the shop is the signed header's
    assert event.resource == ShopRedaction(shop=SHOP)


# ---- the event envelope -----------------------------------------------------------------


def test_parse_event_fills_the_envelope() -> None:
    # given a delivery with event id, webhook id and a nanosecond trigger time
    body = fixture_bytes("orders_paid")
    headers = signed_headers(
        "orders/paid",
        body,
        **{
            "X-Shopify-Event-Id": EVENT_ID,
            "X-Shopify-Webhook-Id": WEBHOOK_ID,
            "X-Shopify-Triggered-At": "2025-03-11T20:54:30.516267807Z",
        },
    )

    # when it is parsed
    event = connector.parse_event(headers, body)

    # then platform, shop, topic, dedupe key and trigger time are set
    assert event.platform == "shopify"
    assert event.shop == SHOP
    assert event.topic == "orders/paid"
    assert event.delivery_key == f"orders/paid|event:{EVENT_ID}"
    assert event.occurred_at == datetime(2025, 3, 11, 20, 54, 30, 516267, tzinfo=timezone.utc)
    assert event.resource == PAID_ORDER


def test_occurred_at_falls_back_to_payload_updated_at() -> None:
    # given a delivery without X-Shopify-Triggered-At
    body = fixture_bytes("orders_cancelled")
    headers = signed_headers("orders/cancelled", body)

    # when it is parsed
    event = connector.parse_event(headers, body)

    # then the order's updated_at dates the event
    assert event.occurred_at == utc(2025, 4, 2, 16, 31, 25)


def test_unparsable_trigger_time_is_malformed() -> None:
    # given a trigger-time header that is not a timestamp
    body = fixture_bytes("orders_paid")
    headers = signed_headers("orders/paid", body, **{"X-Shopify-Triggered-At": "yesterday"})

    # when it is parsed
    with pytest.raises(MalformedPayloadError) as excinfo:
        connector.parse_event(headers, body)

    # then the error names the header
    assert str(excinfo.value) == "orders/paid: X-Shopify-Triggered-At is not a timestamp"


# ---- signatures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "stem"),
    [(f"{path.stem}.json", path.stem) for path in sorted(FIXTURES.glob("*.json"))],
)
def test_valid_signature_is_accepted(_case: str, stem: str) -> None:
    # given a fixture signed over its exact bytes
    body = fixture_bytes(stem)
    headers = signed_headers(fixture_topic(stem), body)

    # when it is verified
    result = connector.verify(headers, body, secret=SECRET)

    # then nothing is raised
    assert result is None


def test_tampered_body_is_rejected() -> None:
    # given a signed delivery whose body changed by one byte after signing
    body = fixture_bytes("orders_paid")
    headers = signed_headers("orders/paid", body)
    tampered = body.replace(b'"598.94"', b'"998.94"', 1)
    assert tampered != body

    # when it is verified
    # then it is rejected
    with pytest.raises(InvalidSignatureError):
        connector.verify(headers, tampered, secret=SECRET)


def test_wrong_secret_is_rejected() -> None:
    # given a delivery signed with another app's secret
    body = fixture_bytes("orders_paid")
    headers = signed_headers("orders/paid", body, secret="another-apps-secret")

    # when it is verified with ours
    # then it is rejected
    with pytest.raises(InvalidSignatureError):
        connector.verify(headers, body, secret=SECRET)


@pytest.mark.parametrize(
    ("_case", "signed_with"),
    [
        ("signed with the old secret during rotation", OLD_SECRET),
        ("signed with the new secret", SECRET),
    ],
)
def test_old_secret_is_accepted_during_rotation(_case: str, signed_with: str) -> None:
    # given a delivery signed with either secret
    body = fixture_bytes("orders_paid")
    headers = signed_headers("orders/paid", body, secret=signed_with)

    # when it is verified while both secrets are configured
    result = connector.verify(headers, body, secret=SECRET, old_secret=OLD_SECRET)

    # then it is accepted
    assert result is None


@pytest.mark.parametrize(
    ("_case", "signature"),
    [("header absent", None), ("header empty", ""), ("header blank", "   ")],
)
def test_missing_signature_header_is_rejected(_case: str, signature: str | None) -> None:
    # given a delivery without a usable signature header
    body = fixture_bytes("orders_paid")
    headers = signed_headers("orders/paid", body)
    del headers["X-Shopify-Hmac-Sha256"]
    if signature is not None:
        headers["X-Shopify-Hmac-Sha256"] = signature

    # when it is verified
    # then it is rejected as unsigned (400), not as a bad signature (401)
    with pytest.raises(MissingSignatureError):
        connector.verify(headers, body, secret=SECRET)


@pytest.mark.parametrize(
    ("_case", "old_secret"),
    [("no old secret", None), ("old secret empty too", "")],
)
def test_empty_secret_is_rejected(_case: str, old_secret: str | None) -> None:
    # given a delivery signed with the empty key, as an unconfigured secret would produce
    body = fixture_bytes("orders_paid")
    headers = signed_headers("orders/paid", body, secret="")

    # when it is verified with an empty secret
    # then it fails closed
    with pytest.raises(InvalidSignatureError):
        connector.verify(headers, body, secret="", old_secret=old_secret)


@pytest.mark.parametrize(
    ("_case", "names"),
    [
        (
            "lower-cased classic headers",
            ("x-shopify-hmac-sha256", "x-shopify-topic", "x-shopify-shop-domain"),
        ),
        (
            "upper-cased classic headers",
            ("X-SHOPIFY-HMAC-SHA256", "X-SHOPIFY-TOPIC", "X-SHOPIFY-SHOP-DOMAIN"),
        ),
        (
            "events webhook headers without X- prefix",
            ("shopify-hmac-sha256", "shopify-topic", "shopify-shop-domain"),
        ),
        (
            "un-prefixed headers in title case",
            ("Shopify-Hmac-Sha256", "Shopify-Topic", "Shopify-Shop-Domain"),
        ),
    ],
)
def test_headers_are_read_in_any_case_and_form(_case: str, names: tuple[str, str, str]) -> None:
    # given a delivery whose headers use another spelling
    body = fixture_bytes("customers_create")
    hmac_name, topic_name, shop_name = names
    headers = {
        hmac_name: hmac_sha256_base64(SECRET, body),
        topic_name: "customers/create",
        shop_name: SHOP,
    }

    # when it is verified and parsed
    connector.verify(headers, body, secret=SECRET)
    event = connector.parse_event(headers, body)

    # then the signature, topic and shop are all found
    assert event.topic == "customers/create"
    assert event.shop == SHOP
    assert event.resource == BOB


def test_werkzeug_headers_are_read() -> None:
    # given the request headers object the Flask view passes in
    body = fixture_bytes("customers_create")
    headers = Headers(signed_headers("customers/create", body))

    # when it is verified and parsed
    connector.verify(headers, body, secret=SECRET)
    event = connector.parse_event(headers, body)

    # then it works like a plain dict
    assert event.resource == BOB


# ---- shop, topic, ping ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "value", "expected"),
    [
        ("already canonical", "jsmith.myshopify.com", SHOP),
        ("mixed case", "JSmith.MyShopify.com", SHOP),
        ("https URL with trailing slash", "https://jsmith.myshopify.com/", SHOP),
        ("http URL with path and whitespace", "  http://JSMITH.myshopify.com/admin/apps \n", SHOP),
    ],
)
def test_normalize_shop(_case: str, value: str, expected: str) -> None:
    # given a shop domain as a merchant or a header may write it
    # when it is normalized
    # then it is the bare lower-case domain
    assert connector.normalize_shop(value) == expected


@pytest.mark.parametrize(
    ("_case", "headers", "expected"),
    [
        ("classic header", {"X-Shopify-Shop-Domain": "JSmith.myshopify.com"}, SHOP),
        ("events header", {"shopify-shop-domain": "jsmith.myshopify.com"}, SHOP),
        ("missing", {}, None),
        ("empty", {"X-Shopify-Shop-Domain": " "}, None),
    ],
)
def test_shop_from_headers(_case: str, headers: dict[str, str], expected: str | None) -> None:
    # given delivery headers
    # when the shop is read
    # then it is normalized, or None without a value
    assert connector.shop_from_headers(headers) == expected


@pytest.mark.parametrize(
    ("_case", "headers", "expected"),
    [
        ("classic header", {"X-Shopify-Topic": "orders/paid"}, "orders/paid"),
        ("events header", {"shopify-topic": "refunds/create"}, "refunds/create"),
        ("missing", {}, None),
    ],
)
def test_topic_from_headers(_case: str, headers: dict[str, str], expected: str | None) -> None:
    # given delivery headers
    # when the topic is read
    # then it is verbatim, or None without the header
    assert connector.topic_from_headers(headers) == expected


def test_shopify_never_pings() -> None:
    # given an unsigned, empty request
    # when it is checked for a ping
    # then it is not one: Shopify signs everything
    assert connector.is_ping({}, b"") is False


# ---- dedupe keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "extra", "expected"),
    [
        (
            "event id wins",
            {"X-Shopify-Event-Id": EVENT_ID, "X-Shopify-Webhook-Id": WEBHOOK_ID},
            f"orders/paid|event:{EVENT_ID}",
        ),
        (
            "events-webhook header form",
            {"shopify-event-id": EVENT_ID},
            f"orders/paid|event:{EVENT_ID}",
        ),
        (
            "webhook id without event id",
            {"X-Shopify-Webhook-Id": WEBHOOK_ID},
            f"orders/paid|webhook:{WEBHOOK_ID}",
        ),
        (
            "neither: body digest",
            {},
            f"orders/paid|body:{body_digest(fixture_bytes('orders_paid'))}",
        ),
    ],
)
def test_delivery_key_choice(_case: str, extra: dict[str, str], expected: str) -> None:
    # given a delivery with some of Shopify's id headers
    body = fixture_bytes("orders_paid")
    headers = signed_headers("orders/paid", body, **extra)

    # when its dedupe key is computed
    key = connector.delivery_key(headers, body, json.loads(body))

    # then the most stable id available is used
    assert key == expected


def test_retry_of_one_event_gets_the_same_key() -> None:
    # given two deliveries of one event with different webhook ids
    body = fixture_bytes("orders_paid")
    first = signed_headers(
        "orders/paid", body, **{"X-Shopify-Event-Id": EVENT_ID, "X-Shopify-Webhook-Id": "a"}
    )
    retry = signed_headers(
        "orders/paid", body, **{"X-Shopify-Event-Id": EVENT_ID, "X-Shopify-Webhook-Id": "b"}
    )

    # when their keys are computed
    # then they are equal, so the second is a duplicate
    assert connector.delivery_key(first, body, None) == connector.delivery_key(retry, body, None)


def test_absurd_delivery_key_is_bounded() -> None:
    # given an event id far longer than the dedupe column
    body = fixture_bytes("orders_paid")
    long_id = "e" * 1000
    headers = signed_headers("orders/paid", body, **{"X-Shopify-Event-Id": long_id})
    other = signed_headers("orders/paid", body, **{"X-Shopify-Event-Id": long_id + "f"})

    # when the keys are computed
    key = connector.delivery_key(headers, body, None)

    # then they fit in 255 characters, keep their prefix, and still differ
    assert len(key) == 255
    assert key.startswith("orders/paid|event:eee")
    assert key != connector.delivery_key(other, body, None)


# ---- strict about what we use, tolerant of the rest -------------------------------------


def _delete(*path: str | int) -> Callable[[dict[str, Any]], object]:
    def edit(payload: dict[str, Any]) -> object:
        node: Any = payload
        for key in path[:-1]:
            node = node[key]
        return node.pop(path[-1])

    return edit


def _set(value: Any, *path: str | int) -> Callable[[dict[str, Any]], object]:
    def edit(payload: dict[str, Any]) -> object:
        node: Any = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return None

    return edit


@pytest.mark.parametrize(
    ("_case", "stem", "edit", "message"),
    [
        (
            "total price missing",
            "orders_paid",
            lambda p: (p.pop("total_price"), p.pop("total_price_set")),
            "orders/paid: total_price missing",
        ),
        ("order id missing", "orders_paid", _delete("id"), "orders/paid: id missing"),
        (
            "financial status missing",
            "orders_create",
            _delete("financial_status"),
            "orders/create: financial_status missing",
        ),
        (
            "shop money amount not a number",
            "orders_paid",
            _set("lots", "subtotal_price_set", "shop_money", "amount"),
            "orders/paid: subtotal_price_set.shop_money.amount is not a number",
        ),
        (
            "shop money missing from a money set",
            "orders_updated__partially_refunded",
            _delete("total_price_set", "shop_money"),
            "orders/updated: total_price_set.shop_money missing",
        ),
        (
            "line quantity is a string",
            "orders_paid",
            _set("1", "line_items", 0, "quantity"),
            "orders/paid: line_items[0].quantity is not an integer",
        ),
        (
            "line items missing",
            "orders_cancelled",
            _delete("line_items"),
            "orders/cancelled: line_items missing",
        ),
        (
            "created_at not a timestamp",
            "orders_paid",
            _set("last tuesday", "created_at"),
            "orders/paid: created_at is not a timestamp",
        ),
        (
            "taxes_included is a string",
            "orders_paid",
            _set("false", "taxes_included"),
            "orders/paid: taxes_included is not a boolean",
        ),
        (
            "tags is a list",
            "orders_paid",
            _set(["vip"], "tags"),
            "orders/paid: tags is not a string",
        ),
        (
            "refund order id missing",
            "refunds_create",
            _delete("order_id"),
            "refunds/create: order_id missing",
        ),
        (
            "nested refund line subtotal wrong",
            "orders_updated__partially_refunded",
            _set("x", "refunds", 0, "refund_line_items", 1, "subtotal_set", "shop_money", "amount"),
            "orders/updated: refunds[0].refund_line_items[1].subtotal_set.shop_money.amount"
            " is not a number",
        ),
        ("customer id missing", "customers_create", _delete("id"), "customers/create: id missing"),
        (
            "consent state is a number",
            "customers_update__email_subscribed",
            _set(1, "email_marketing_consent", "state"),
            "customers/update: email_marketing_consent.state is not a string",
        ),
        (
            "checkout token missing",
            "checkouts_create",
            _delete("token"),
            "checkouts/create: token missing",
        ),
        (
            "checkout line without id or key",
            "checkouts_update__completed",
            _delete("line_items", 0, "key"),
            "checkouts/update: line_items[0].id missing",
        ),
        (
            "checkout customer is a string",
            "checkouts_update",
            _set("bob", "customer"),
            "checkouts/update: customer is not an object",
        ),
    ],
)
def test_malformed_payload_names_topic_and_field(
    _case: str, stem: str, edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    # given a fixture with a field we use removed or of the wrong type
    body = edited_body(stem, edit)

    # when it is parsed
    with pytest.raises(MalformedPayloadError) as excinfo:
        parse_fixture(stem, body)

    # then the error names the topic and the field
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("_case", "body", "message"),
    [
        ("JSON array", b"[]", "orders/paid: body is not a JSON object"),
        ("JSON string", b'"order"', "orders/paid: body is not a JSON object"),
        ("JSON null", b"null", "orders/paid: body is not a JSON object"),
        ("not JSON", b"order=1", "orders/paid: body is not JSON"),
        ("empty", b"", "orders/paid: body is not JSON"),
        ("not UTF-8", b'{"id": "\xff"}', "orders/paid: body is not JSON"),
    ],
)
def test_body_that_is_not_a_json_object_is_malformed(_case: str, body: bytes, message: str) -> None:
    # given a signed delivery whose body is not a JSON object
    headers = signed_headers("orders/paid", body)

    # when it is parsed
    with pytest.raises(MalformedPayloadError) as excinfo:
        connector.parse_event(headers, body)

    # then it is malformed, naming the topic
    assert str(excinfo.value) == message


def test_missing_shop_header_is_malformed() -> None:
    # given a delivery without X-Shopify-Shop-Domain
    body = fixture_bytes("orders_paid")
    headers = signed_headers("orders/paid", body)
    del headers["X-Shopify-Shop-Domain"]

    # when it is parsed
    with pytest.raises(MalformedPayloadError) as excinfo:
        connector.parse_event(headers, body)

    # then the error names the header
    assert str(excinfo.value) == "orders/paid: X-Shopify-Shop-Domain header missing"


@pytest.mark.parametrize(
    ("_case", "topic"),
    [
        ("known Shopify topic we do not handle", "products/create"),
        ("another known topic we do not handle", "products/update"),
        ("topic in another case", "ORDERS/PAID"),
    ],
)
def test_unsupported_topic_is_rejected(_case: str, topic: str) -> None:
    # given a signed delivery on a topic we do not parse
    body = fixture_bytes("orders_paid")
    headers = signed_headers(topic, body)

    # when it is parsed
    # then it is unsupported (the view answers 200 and logs)
    with pytest.raises(UnsupportedTopicError):
        connector.parse_event(headers, body)


def test_missing_topic_header_is_unsupported() -> None:
    # given a delivery without a topic header
    body = fixture_bytes("orders_paid")
    headers = signed_headers("orders/paid", body)
    del headers["X-Shopify-Topic"]

    # when it is parsed
    # then no topic is no supported topic
    with pytest.raises(UnsupportedTopicError):
        connector.parse_event(headers, body)


def test_extra_fields_are_ignored() -> None:
    # given the paid order with fields we have never seen, at every level
    def add_extras(payload: dict[str, Any]) -> None:
        payload["loyalty_tier_from_the_future"] = {"level": 9}
        payload["line_items"][0]["new_line_field"] = [1, 2.5]
        payload["customer"]["new_customer_field"] = None

    # when it is parsed
    order = parse_fixture("orders_paid", edited_body("orders_paid", add_extras))

    # then the result is the same
    assert order == PAID_ORDER


def test_optional_fields_tolerate_absence() -> None:
    # given the paid order without any of the optional fields
    def strip(payload: dict[str, Any]) -> None:
        for key in (
            "email", "contact_email", "customer", "tags", "discount_codes", "refunds",
            "shipping_address", "checkout_token", "test", "total_weight", "processed_at",
            "presentment_currency", "cancelled_at", "name",
        ):
            payload.pop(key, None)
        for line in payload["line_items"]:
            for key in ("tax_lines", "discount_allocations", "gift_card", "grams", "product_id"):
                line.pop(key)

    # when it is parsed
    order = parse_fixture("orders_paid", edited_body("orders_paid", strip))

    # then it parses with defaults: a guest-less order numbered by order_number
    assert order == replace(
        PAID_ORDER,
        number="1001",
        merchandise_tax=Decimal("0"),
        customer=None,
        email=None,
        paid_at=None,
        discount_codes=(),
        shipping_address_fingerprint=None,
        checkout_token=None,
        line_items=tuple(
            replace(line, product_id=None, total=Decimal("199.00"), grams=0, tax=Decimal("0"),
                    merchandise=Decimal("199.00"))
            for line in ipod_lines()
        ),
    )


# ---- order semantics --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "financial_status", "cancelled_at", "status", "is_paid"),
    [
        ("pending", "pending", None, OrderStatus.PENDING, False),
        ("authorized", "authorized", None, OrderStatus.PENDING, False),
        ("unpaid", "unpaid", None, OrderStatus.PENDING, False),
        ("paid", "paid", None, OrderStatus.PAID, True),
        ("partially paid", "partially_paid", None, OrderStatus.PAID, True),
        ("partially refunded", "partially_refunded", None, OrderStatus.PAID, True),
        ("refunded", "refunded", None, OrderStatus.REFUNDED, True),
        ("voided", "voided", None, OrderStatus.CANCELLED, False),
        ("unknown future value", "expired", None, OrderStatus.PENDING, False),
        ("cancelled after payment", "paid", CANCELLED_AT, OrderStatus.CANCELLED, True),
        ("cancelled and refunded", "refunded", CANCELLED_AT, OrderStatus.CANCELLED, True),
    ],
)
def test_order_status_follows_financial_status(
    _case: str, financial_status: str, cancelled_at: str | None, status: OrderStatus, is_paid: bool
) -> None:
    # given the paid order with another financial_status / cancelled_at
    def edit(payload: dict[str, Any]) -> None:
        payload["financial_status"] = financial_status
        payload["cancelled_at"] = cancelled_at

    # when it is parsed
    order = parse_fixture("orders_paid", edited_body("orders_paid", edit))

    # then status and is_paid follow it, and paid_at only exists for paid orders
    assert (order.status, order.is_paid) == (status, is_paid)
    assert order.platform_status == financial_status
    assert order.paid_at == (utc(2008, 1, 10, 16, 0, 0) if is_paid else None)


@pytest.mark.parametrize(
    ("_case", "total_discount", "allocations", "expected_total"),
    [
        ("allocations only", "0.00", ["3.34"], Decimal("195.66")),
        ("both carry the same discount: counted once", "3.34", ["3.34"], Decimal("195.66")),
        ("older payload: total_discount only", "5.00", [], Decimal("194.00")),
        ("several allocations add up", "0.00", ["3.34", "10.00"], Decimal("185.66")),
    ],
)
def test_line_total_subtracts_discounts_once(
    _case: str, total_discount: str, allocations: list[str], expected_total: Decimal
) -> None:
    # given the first paid line with discounts written in different ways
    def edit(payload: dict[str, Any]) -> None:
        line = payload["line_items"][0]
        line["total_discount"] = total_discount
        del line["total_discount_set"]
        line["discount_allocations"] = [{"amount": amount} for amount in allocations]

    # when it is parsed
    order = parse_fixture("orders_paid", edited_body("orders_paid", edit))

    # then the line total is price x quantity minus the discount, never counted twice
    assert order.line_items[0].total == expected_total


def test_quantity_multiplies_price_and_weight() -> None:
    # given a paid line bought three times
    body = edited_body("orders_paid", _set(3, "line_items", 1, "quantity"))

    # when it is parsed
    line = parse_fixture("orders_paid", body).line_items[1]

    # then the total and weight are for the whole line
    assert (line.quantity, line.unit_price, line.total, line.grams) == (
        3,
        Decimal("199.00"),
        Decimal("593.67"),
        600,
    )


def test_order_paid_by_gift_card_leaves_the_gift_card_amount_to_its_transactions() -> None:
    # given a paid order whose gateways include a gift card (the webhook gives no amount for it)
    body = edited_body("orders_paid", _set(["gift_card", "bogus"], "payment_gateway_names"))

    # when it is parsed
    order = parse_fixture("orders_paid", body)

    # then gift_card_paid is unknown (None), never a guess: order_transactions/create tells it
    assert order.gift_card_paid is None


GIFT_CARD_SALE = OrderTransaction(
    id="1068278510",
    order_id="450789469",
    kind="sale",
    status="success",
    gateway="gift_card",
    amount=Decimal("30.00"),
    currency="USD",
    created_at=utc(2005, 8, 5, 16, 59, 12),
)


@pytest.mark.parametrize(
    ("_case", "stem", "expected"),
    [
        ("gift-card sale", "order_transactions_create", GIFT_CARD_SALE),
        ("gift-card refund", "order_transactions_create__gift_card_refund",
         replace(GIFT_CARD_SALE, id="179259969", kind="refund")),
        ("card refund (verbatim docs example)", "order_transactions_create__card_refund",
         replace(GIFT_CARD_SALE, id="179259969", kind="refund", gateway="bogus", amount=Decimal("209.00"))),
    ],
)
def test_order_transaction_parses_kind_gateway_and_amount(_case: str, stem: str, expected: OrderTransaction) -> None:
    # given an order_transactions/create body
    # when it is parsed
    transaction = parse_fixture(stem)

    # then its order, kind, status, gateway and amount are read
    assert transaction == expected


def test_order_transaction_reads_shop_money_when_the_body_has_it() -> None:
    # given a transaction paid in a presentment currency, with shop money in amount_set
    def edit(payload: dict[str, Any]) -> None:
        payload["currency"] = "EUR"
        payload["amount"] = "33.00"
        payload["amount_set"] = {"shop_money": {"amount": "30.00", "currency_code": "USD"},
                                 "presentment_money": {"amount": "33.00", "currency_code": "EUR"}}

    # when it is parsed
    transaction = parse_fixture("order_transactions_create", edited_body("order_transactions_create", edit))

    # then the amount and currency are the shop's
    assert (transaction.amount, transaction.currency) == (Decimal("30.00"), "USD")


@pytest.mark.parametrize("_case, field", [("no order", "order_id"), ("no amount", "amount"), ("no kind", "kind")])
def test_order_transaction_without_a_field_we_use_is_malformed(_case: str, field: str) -> None:
    # given a transaction body without a field we read
    body = edited_body("order_transactions_create", lambda payload: payload.pop(field))

    # when it is parsed, then the error names the topic and the field
    with pytest.raises(MalformedPayloadError) as excinfo:
        parse_fixture("order_transactions_create", body)
    assert str(excinfo.value) == f"order_transactions/create: {field} missing"


@pytest.mark.parametrize("_case, stem, expected", [
    ("guest who ticked the box", "checkouts_create__guest_accepts_marketing", (None, True)),
    ("guest who did not", "checkouts_create__guest", (None, False)),
])
def test_guest_checkout_keeps_its_marketing_tick_box(_case: str, stem: str, expected: tuple[Any, bool]) -> None:
    # given a checkout without a customer object
    # when it is parsed
    checkout = parse_fixture(stem)

    # then the guest is known by e-mail and the checkout's own tick-box is kept
    assert (checkout.customer.id, checkout.buyer_accepts_marketing) == expected
    assert checkout.customer.accepts_marketing is None


def test_shipping_falls_back_to_shipping_lines() -> None:
    # given a legacy order (no total_shipping_price_set) with two priced shipping lines
    def edit(payload: dict[str, Any]) -> None:
        payload["shipping_lines"] = [{"price": "4.50"}, {"price": "1.25"}]

    # when it is parsed
    order = parse_fixture("orders_create__legacy", edited_body("orders_create__legacy", edit))

    # then shipping is their sum
    assert order.shipping == Decimal("5.75")


def test_tags_are_split_and_stripped() -> None:
    # given an order tagged the way Shopify writes tags
    body = edited_body("orders_paid", _set(" vip,  wholesale ,,Léon ", "tags"))

    # when it is parsed
    order = parse_fixture("orders_paid", body)

    # then each tag stands alone, without blanks
    assert order.tags == ("vip", "wholesale", "Léon")


def test_emails_are_normalized() -> None:
    # given a guest order with a shouted, padded email
    shouted = "  Bob.Norman@Mail.Example.COM "
    body = edited_body("orders_paid__guest_checkout", _set(shouted, "email"))

    # when it is parsed
    order = parse_fixture("orders_paid__guest_checkout", body)

    # then both the order and the guest customer carry the normalized email
    assert order.email == "bob.norman@mail.example.com"
    assert order.customer == Customer(id=None, email="bob.norman@mail.example.com")


def test_guest_without_email_has_no_customer() -> None:
    # given a guest order with no email at all
    def edit(payload: dict[str, Any]) -> None:
        payload["email"] = None
        payload["contact_email"] = None

    # when it is parsed
    stem = "orders_paid__guest_checkout"
    order = parse_fixture(stem, edited_body(stem, edit))

    # then there is nobody to attach points to
    assert (order.customer, order.email) == (None, None)


# ---- refund semantics -------------------------------------------------------------------


def test_refunded_gift_card_line_is_not_merchandise() -> None:
    # given the partial refund where the first refunded line is a gift card
    gift_card = _set(True, "refund_line_items", 0, "line_item", "gift_card")
    body = edited_body("refunds_create", gift_card)

    # when it is parsed
    refund = parse_fixture("refunds_create", body)

    # then only the other line counts as refunded merchandise
    assert refund.merchandise == Decimal("195.67")


@pytest.mark.parametrize(
    ("_case", "transactions", "expected_total"),
    [
        ("no transactions", [], Decimal("0")),
        (
            "failed and non-refund transactions are ignored",
            [
                {"kind": "refund", "status": "failure", "amount": "50.00", "currency": "USD"},
                {"kind": "sale", "status": "success", "amount": "70.00", "currency": "USD"},
                {"kind": "refund", "status": "success", "amount": "10.00", "currency": "USD"},
                {"kind": "refund", "status": "success", "amount": "2.50", "currency": "USD"},
            ],
            Decimal("12.50"),
        ),
        (
            "shop money preferred when a transaction has it",
            [
                {
                    "kind": "refund",
                    "status": "success",
                    "amount": "22.00",
                    "currency": "CHF",
                    "amount_set": {"shop_money": {"amount": "20.00", "currency_code": "USD"}},
                }
            ],
            Decimal("20.00"),
        ),
        (
            "presentment-currency transaction: refunded lines with tax instead",
            [{"kind": "refund", "status": "success", "amount": "230.00", "currency": "CHF"}],
            Decimal("399.29"),
        ),
    ],
)
def test_refund_total_counts_successful_refund_transactions(
    _case: str, transactions: list[dict[str, Any]], expected_total: Decimal
) -> None:
    # given the partial refund with other transactions
    body = edited_body("refunds_create", _set(transactions, "transactions"))

    # when it is parsed
    refund = parse_fixture("refunds_create", body)

    # then the total is the money given back, in shop currency
    assert (refund.total, refund.currency) == (expected_total, "USD")


# ---- marketing consent ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "state", "expected"),
    [
        ("subscribed", "subscribed", True),
        ("not subscribed", "not_subscribed", False),
        ("unsubscribed", "unsubscribed", False),
        ("redacted", "redacted", False),
        ("invalid", "invalid", False),
        ("pending double opt-in", "pending", False),
    ],
)
def test_email_marketing_consent_state(_case: str, state: str, expected: bool) -> None:
    # given a customer with this email_marketing_consent.state
    body = edited_body("customers_create", _set(state, "email_marketing_consent", "state"))

    # when it is parsed
    customer = parse_fixture("customers_create", body)

    # then only "subscribed" is consent, dated by consent_updated_at
    assert customer.accepts_marketing is expected
    assert customer.marketing_consent_at == utc(2004, 6, 13, 15, 57, 11)


def test_legacy_accepts_marketing_is_used_without_consent_object() -> None:
    # given a legacy customer who accepted marketing at a known time
    def edit(payload: dict[str, Any]) -> None:
        payload["accepts_marketing"] = True
        payload["accepts_marketing_updated_at"] = "2015-05-28T09:00:00+02:00"

    # when it is parsed
    customer = parse_fixture("customers_update", edited_body("customers_update", edit))

    # then the boolean and its time are used
    assert customer.accepts_marketing is True
    assert customer.marketing_consent_at == utc(2015, 5, 28, 7)


def test_customer_without_any_consent_field_says_nothing() -> None:
    # given a customer with neither consent field
    def edit(payload: dict[str, Any]) -> None:
        del payload["email_marketing_consent"]

    # when it is parsed
    customer = parse_fixture("customers_create", edited_body("customers_create", edit))

    # then consent is unknown, not refused
    assert (customer.accepts_marketing, customer.marketing_consent_at) == (None, None)


# ---- the contract -----------------------------------------------------------------------


def test_connector_exposes_the_contract() -> None:
    # given the registry
    # when the Shopify connector is looked up
    registered = connectors.get_connector("shopify")

    # then it is this package's connector, with the webhook half of the Protocol
    assert registered is connector
    assert connector.platform == "shopify"
    assert tuple(webhooks.TOPIC_HANDLERS) == connector.SUPPORTED_TOPICS
    assert set(connector.SUPPORTED_TOPICS) == {
        "orders/create", "orders/paid", "orders/updated", "orders/cancelled", "refunds/create",
        "order_transactions/create", "customers/create", "customers/update", "checkouts/create", "checkouts/update",
        "app/uninstalled", "customers/redact", "shop/redact", "customers/data_request",
    }
    for name in (
        "normalize_shop", "shop_from_headers", "topic_from_headers", "is_ping", "verify",
        "delivery_key", "parse_event",
    ):
        assert callable(getattr(connector, name))


def test_every_supported_topic_has_a_fixture() -> None:
    # given the fixture folder
    stems = {path.stem for path in FIXTURES.glob("*.json")}

    # when fixtures are mapped to their topics
    topics = {fixture_topic(stem) for stem in stems}

    # then every supported topic has one, and every fixture is for a supported topic
    assert topics == set(connector.SUPPORTED_TOPICS)


# ---- the shared field rule (connectors.fields) -----------------------------------------------


def test_text_fields_are_read_stripped_as_on_every_platform() -> None:
    # given an order whose texts carry padding, and a blank optional timestamp
    def pad(payload: dict[str, Any]) -> None:
        payload["currency"] = " USD "
        payload["discount_codes"][0]["code"] = " TENOFF\t"
        payload["customer"]["first_name"] = "  Bob "
        payload["checkout_token"] = " bd5a8aa1ecd019dd3520ff791ee3a24c "
        payload["id"] = " 450789469 "
        payload["cancelled_at"] = " "

    # when it is parsed
    order = parse_fixture("orders_paid", edited_body("orders_paid", pad))

    # then every text is stripped (Shopify's parser kept padding before connectors.fields),
    # and a blank optional timestamp is absent, as on WooCommerce
    assert (order.currency, order.discount_codes, order.customer.first_name) == ("USD", ("TENOFF",), "Bob")
    assert (order.checkout_token, order.id) == ("bd5a8aa1ecd019dd3520ff791ee3a24c", "450789469")
    assert order.cancelled_at is None


@pytest.mark.parametrize(
    ("_case", "edit", "message"),
    [
        ("blank required text", lambda p: p.update(currency="   "), "orders/paid: currency missing"),
        ("blank id", lambda p: p.update(id=" "), "orders/paid: id missing"),
        ("blank code", lambda p: p["discount_codes"][0].update(code=" "), "orders/paid: discount_codes[0].code missing"),
        ("wrong type", lambda p: p.update(currency=1), "orders/paid: currency is not a string"),
    ],
)
def test_blank_or_wrong_typed_fields_are_named(_case: str, edit: Callable[[dict[str, Any]], object],
                                               message: str) -> None:
    # when a field we use is blank or of the wrong type, then the error names topic and field
    with pytest.raises(MalformedPayloadError) as raised:
        parse_fixture("orders_paid", edited_body("orders_paid", edit))
    assert str(raised.value) == message


# ---- orders read by API (reconciliation and backfill) ------------------------------------------

API_FIXTURES = FIXTURES.parent / "shopify_admin_api"


def polled_node(name: str) -> dict[str, Any]:
    """The first order node of a captured-shape `orders` page in tests/fixtures/shopify_admin_api."""
    return json.loads((API_FIXTURES / name).read_text(encoding="utf-8"))["data"]["orders"]["nodes"][0]


@pytest.mark.parametrize(("_case", "rest", "page"), [
    ("paid order with a customer", "orders_paid", "orders__paid.json"),
    ("partially refunded order", "orders_updated__partially_refunded", "orders__partially_refunded.json"),
])
def test_an_order_read_by_api_parses_as_its_webhook_does(_case: str, rest: str, page: str):
    # given the same order state as a webhook body and as an Admin API order node
    from_webhook = webhooks.parse_order(json.loads(fixture_bytes(rest)), "orders/updated", SHOP)

    # when the node is parsed
    polled = webhooks.parse_polled_order(polled_node(page), consts.POLLED_ORDER, SHOP)

    # then it is the same Order, but for what the node does not carry (a line's weight) and the
    # customer's locale, which the Admin API always has and the webhook example leaves out; the
    # captured node predates the refund line's `lineItem { id }` in the document, so its refund
    # names no lines (the next test reads them from an answer that has them)
    assert polled.customer is not None and polled.customer.locale == "en"
    assert replace(polled, line_items=tuple(replace(li, grams=200) for li in polled.line_items),
                   customer=replace(polled.customer, locale=None)) == replace(
        from_webhook, refunds=tuple(replace(r, lines=()) for r in from_webhook.refunds))


def test_a_polled_refund_names_its_lines():
    # given the captured partially refunded node, with the refund lines' `lineItem { id }` the
    # document now asks for (the ids of the webhook example's refund_line_items)
    node = polled_node("orders__partially_refunded.json")
    refund_lines = node["refunds"][0]["refundLineItems"]["nodes"]
    for line, line_id in zip(refund_lines, ("703073504", "466157049"), strict=True):
        line["lineItem"]["id"] = f"gid://shopify/LineItem/{line_id}"

    # when it is parsed
    polled = webhooks.parse_polled_order(node, consts.POLLED_ORDER, SHOP)

    # then the refund names each refunded line with its merchandise, as the webhook does
    assert polled.refunds[0].lines == PARTIAL_REFUND.lines


def test_a_webhook_and_a_poll_of_one_order_state_share_the_dedupe_key():
    # given the orders/updated webhook of a state and the same state read by API
    headers = {"X-Shopify-Topic": "orders/updated", "X-Shopify-Event-Id": EVENT_ID}
    body = fixture_bytes("orders_paid")
    node = polled_node("orders__paid.json")

    # when both are keyed
    webhook_key = webhooks.delivery_key(headers, body, json.loads(body))
    poll_key = webhooks.delivery_key({"X-Shopify-Topic": consts.POLLED_ORDER}, b"", node)

    # then the key is the order's state, not the event
    assert webhook_key == poll_key == "orders/updated|order:450789469|2008-01-10T16:00:00Z|paid|open|refunds:0"
    # and a later state of the order (refunded within the same second) is another key
    refunded = webhooks.delivery_key(headers, b"", json.loads(fixture_bytes("orders_updated__partially_refunded")))
    assert refunded != webhook_key
    # and the other order topics keep their event-id keys
    assert webhooks.delivery_key({**headers, "X-Shopify-Topic": "orders/paid"}, body, json.loads(body)) == \
        f"orders/paid|event:{EVENT_ID}"


def test_the_polled_topic_is_never_accepted_as_a_webhook():
    # the receiver takes only SUPPORTED_TOPICS; our own topic is for the parser alone
    assert consts.POLLED_ORDER not in connector.SUPPORTED_TOPICS
    assert webhooks.PARSED_TOPICS[consts.POLLED_ORDER] is webhooks.parse_polled_order


@pytest.mark.parametrize(("_case", "change", "message"), [
    ("lines cut short", lambda n: n["lineItems"]["pageInfo"].update(hasNextPage=True),
     "lineItems is incomplete"),
    ("no shop money", lambda n: n["totalPriceSet"].pop("shopMoney"), "totalPriceSet.shopMoney missing"),
    ("weight not a number", lambda n: n.update(totalWeight="heavy"), "totalWeight is not an unsigned integer"),
    ("line id not a Shopify id", lambda n: n["lineItems"]["nodes"][0].update(id="gid://shopify/LineItem/x"),
     "lineItems.nodes[0].id is not a Shopify id"),
])
def test_a_malformed_order_node_is_refused_by_name(_case: str, change: Callable[[dict[str, Any]], None], message: str):
    node = polled_node("orders__paid.json")
    change(node)
    with pytest.raises(MalformedPayloadError, match=re.escape(message)):
        webhooks.parse_polled_order(node, consts.POLLED_ORDER, SHOP)
