"""Verify and parse WooCommerce webhook deliveries, with no I/O (rule 8).

Delivery format: woocommerce/woocommerce `plugins/woocommerce/includes/class-wc-webhook.php`
(`deliver`, `generate_signature`). The body of an `order.*` / `customer.*` delivery is exactly the
REST v3 resource (https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks), built at
*delivery* time: it is the resource's current state, not a snapshot of the event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlsplit

from connectors import fields
from connectors.base import (
    address_fingerprint,
    body_digest,
    header,
    normalize_email,
    verify_hmac_base64,
)
from connectors.errors import (
    InvalidSignatureError,
    MalformedPayloadError,
    MissingSignatureError,
    UnsupportedTopicError,
)
from connectors.types import (
    Customer,
    Deleted,
    LineItem,
    Order,
    OrderStatus,
    Refund,
    RefundDetails,
    RefundLine,
    Resource,
    WebhookEvent,
)
from connectors.woocommerce.consts import (
    CUSTOMER_CREATED,
    CUSTOMER_UPDATED,
    REFUND_DETAILS,
    HEADER_DELIVERY_ID,
    HEADER_EVENT,
    HEADER_RESOURCE,
    HEADER_SIGNATURE,
    HEADER_SOURCE,
    HEADER_TOPIC,
    HEADER_WEBHOOK_ID,
    ORDER_CREATED,
    ORDER_DELETED,
    ORDER_RESTORED,
    ORDER_UPDATED,
    PAID_STATUSES,
    PLATFORM,
    PLUGIN_HEADER_NONCE,
    PLUGIN_HEADER_SHOP,
    PLUGIN_HEADER_SIGNATURE,
    PLUGIN_HEADER_TIMESTAMP,
    PLUGIN_REPLAY_WINDOW_SECONDS,
    PLUGIN_SIGNATURE_VERSION,
    STATUS_CANCELLED,
    STATUS_CHECKOUT_DRAFT,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_ON_HOLD,
    STATUS_PENDING,
    STATUS_PROCESSING,
    STATUS_REFUNDED,
)

logger = logging.getLogger(__name__)

# Statuses as the REST API spells them (https://woocommerce.github.io/woocommerce-rest-api-docs/
# #order-properties, plus checkout-draft). A status a plugin registers ("wc-awaiting-shipment"
# arrives as "awaiting-shipment"), and "trash", are unknown to us and treated as not paid yet.
STATUS_MAP: dict[str, OrderStatus] = {
    STATUS_PENDING: OrderStatus.PENDING,
    STATUS_PROCESSING: OrderStatus.PAID,
    STATUS_COMPLETED: OrderStatus.PAID,
    STATUS_ON_HOLD: OrderStatus.ON_HOLD,
    STATUS_CANCELLED: OrderStatus.CANCELLED,
    STATUS_REFUNDED: OrderStatus.REFUNDED,
    STATUS_FAILED: OrderStatus.FAILED,
    STATUS_CHECKOUT_DRAFT: OrderStatus.DRAFT,
}

_DEFAULT_PORTS = {"http": 80, "https": 443}

# The activation ping: wp_safe_remote_post(url, body="webhook_id=N"), no X-WC-* header, unsigned
# (class-wc-webhook.php `deliver_ping`).
_PING_BODY = re.compile(rb"webhook_id=[0-9]+")

_MAX_DELIVERY_KEY = 255


# ---- shop, topic, ping, signature -------------------------------------------------------


def normalize_shop(value: str) -> str:
    """Return the store base URL: lower-case scheme and host, non-default port and path kept.

    Raises:
        ValueError: the value is not an http(s) URL or host name.
    """
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ValueError("store URL is empty")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("store URL is not http or https")
    host = parts.hostname  # urllib lower-cases it and drops any user:password@
    if not host:
        raise ValueError("store URL has no host")
    netloc = f"[{host}]" if ":" in host else host
    port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    # WordPress may live in a sub-folder ("https://example.com/shop"): the path is part of the
    # store's identity. home_url('/') adds the trailing slash we strip.
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def shop_from_headers(headers: Mapping[str, str]) -> str | None:
    """Return the normalized store URL from X-WC-Webhook-Source, or None when missing or invalid."""
    value = header(headers, HEADER_SOURCE)
    if value is None:
        return None
    try:
        return normalize_shop(value)
    except ValueError:
        return None


def topic_from_headers(headers: Mapping[str, str]) -> str | None:
    """Return the X-WC-Webhook-Topic value, or None when the header is missing or empty."""
    value = header(headers, HEADER_TOPIC)
    if value is None:
        return None
    return value.strip() or None


def is_ping(headers: Mapping[str, str], body: bytes) -> bool:
    """Return True for WooCommerce's unsigned activation ping (`webhook_id=N`, no X-WC-* header)."""
    if header(headers, HEADER_TOPIC) is not None or header(headers, HEADER_SIGNATURE) is not None:
        return False
    return _PING_BODY.fullmatch(bytes(body)) is not None


def verify(
    headers: Mapping[str, str], body: bytes, *, secret: str, old_secret: str | None = None
) -> None:
    """Check X-WC-Webhook-Signature = base64(HMAC-SHA256(raw body, secret)), fail closed.

    WooCommerce signs with `wp_specialchars_decode(secret)`, so a secret typed with `&`, `<`, `>`
    or quotes is signed in its decoded form; the secret we store must be that decoded form. A shop
    that switched the algorithm (`woocommerce_webhook_hash_algorithm` filter) is rejected.

    Raises:
        MissingSignatureError: the signature header is missing or blank.
        InvalidSignatureError: no non-empty secret (current or old) produces the signature.
    """
    signature = header(headers, HEADER_SIGNATURE)
    # A blank header is a missing one (400), not a wrong one (401).
    signature = signature.strip() if signature else None
    verify_hmac_base64(signature, body, secret=secret, old_secret=old_secret)


def delivery_key(headers: Mapping[str, str], body: bytes, payload: Any) -> str:
    """Return `topic|resource id|date_modified_gmt|sha256(state)`, the dedupe key of a delivery.

    WooCommerce has no unique delivery id (X-WC-Webhook-Delivery-ID hashes the webhook id and the
    current second), and it does not retry, so the same state of a resource is the same event.
    The state is the parsed JSON without `_links` (`state_digest`), so the reconciliation's read
    of an order (`GET orders`) and the webhook of that same state share a key; `order.created`
    and `order.updated` share the topic part "order". A body that is not a JSON object is keyed
    by its bytes.
    """
    topic = topic_from_headers(headers) or ""
    resource_id = ""
    modified = ""
    digest = body_digest(body)
    if isinstance(payload, Mapping):
        raw_id = payload.get("id")
        if isinstance(raw_id, int | str) and not isinstance(raw_id, bool):
            resource_id = str(raw_id)
        raw_modified = payload.get("date_modified_gmt")
        if isinstance(raw_modified, str):
            modified = raw_modified
        # The state, not the bytes: a webhook body and the same order read back by the
        # reconciliation (`GET orders`, which adds `_links` and is encoded by another JSON
        # encoder) are the same delivery. Created and updated carry the same state too.
        digest = state_digest(payload)
        if topic in (ORDER_CREATED, ORDER_UPDATED):
            topic = "order"
    key = f"{topic}|{resource_id}|{modified}|{digest}"
    if len(key) > _MAX_DELIVERY_KEY:
        # Only an absurd topic or id gets here; hashing keeps the key unique and bounded.
        key = f"sha256|{hashlib.sha256(key.encode('utf-8')).hexdigest()}"
    return key


def state_digest(payload: Mapping[str, Any]) -> str:
    """Return the sha256 of a resource's JSON state, independent of encoding and of `_links`."""
    state = {k: v for k, v in payload.items() if k != "_links"}
    # Numbers as numbers whichever parser read them (the receiver's floats, the parser's Decimals).
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=lambda value: float(value) if isinstance(value, Decimal) else str(value))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()  # a digest, never stored text


def delivery_headers(shop: str, topic: str, *, signature: str, event_id: str) -> dict[str, str]:
    """Return the headers WooCommerce sends with a delivery of `topic` from the store `shop`.

    The source is `home_url('/')` (trailing slash); `event_id` goes into the delivery id header,
    which we never use as a dedupe key (see consts.HEADER_DELIVERY_ID).
    """
    resource, _, event = topic.partition(".")
    return {
        HEADER_SOURCE: shop.rstrip("/") + "/",
        HEADER_TOPIC: topic,
        HEADER_RESOURCE: resource,
        HEADER_EVENT: event,
        HEADER_SIGNATURE: signature,
        HEADER_WEBHOOK_ID: "1",
        HEADER_DELIVERY_ID: event_id,
    }


def parse_event(headers: Mapping[str, str], body: bytes) -> WebhookEvent:
    """Parse a verified delivery into a WebhookEvent.

    Raises:
        UnsupportedTopicError: the topic header is missing or not in SUPPORTED_TOPICS.
        MalformedPayloadError: the body is not a JSON object, the source header is missing, or a
            field we use is missing or of the wrong type.
    """
    topic = topic_from_headers(headers)
    handler = PARSED_TOPICS.get(topic) if topic else None
    if topic is None or handler is None:
        raise UnsupportedTopicError(f"woocommerce: topic {topic!r} is not supported")
    shop = shop_from_headers(headers)
    if shop is None:
        raise MalformedPayloadError(f"{topic}: {HEADER_SOURCE} header missing")
    payload = _decode_body(body, topic)
    resource = handler(payload, topic)
    return WebhookEvent(
        platform=PLATFORM,
        shop=shop,
        topic=topic,
        delivery_key=delivery_key(headers, body, payload),
        occurred_at=_occurred_at(resource),
        resource=resource,
    )


# ---- resource parsers -------------------------------------------------------------------


def parse_order(payload: Mapping[str, Any], topic: str) -> Order:
    """Parse a REST v3 order (the body of order.created/updated/restored) into an Order.

    Raises:
        MalformedPayloadError: a field we use is missing or of the wrong type.
    """
    order_id = fields.platform_id(payload, "id", topic)
    platform_status = fields.text(payload, "status", topic)
    status = STATUS_MAP.get(platform_status)
    if status is None:
        logger.info(
            "unknown woocommerce order status treated as pending",
            extra={"platform": PLATFORM, "topic": topic, "order_id": order_id},
        )
        status = OrderStatus.PENDING
    currency = fields.text(payload, "currency", topic)
    taxes_included = fields.boolean(payload, "prices_include_tax", topic)
    created_at = fields.timestamp(payload, "date_created_gmt", topic)
    updated_at = fields.timestamp(payload, "date_modified_gmt", topic)
    paid_at = fields.optional_timestamp(payload, "date_paid_gmt", topic)
    paid_date_set = paid_at is not None or bool(payload.get("date_paid"))
    total = fields.money(payload, "total", topic)
    shipping = fields.money(payload, "shipping_total", topic)

    raw_lines = fields.objects(payload, "line_items", topic, required=True)
    line_items: list[LineItem] = []
    lines_tax = Decimal("0")
    for index, raw_line in enumerate(raw_lines):
        line, line_tax = _parse_line_item(raw_line, topic, f"line_items[{index}].")
        # The line's part of `merchandise`, on its basis (with its tax where prices include tax).
        line_items.append(replace(line, merchandise=line.total + line_tax if taxes_included else line.total))
        lines_tax += line_tax
    # Line `total` is after discounts and excludes tax, whatever prices_include_tax says; a shop
    # that enters prices with tax gets merchandise on that same (tax-included) basis.
    merchandise = sum((line.total for line in line_items), Decimal("0"))
    if taxes_included:
        merchandise += lines_tax

    billing = _object(payload, "billing", topic)
    shipping_address = _object(payload, "shipping", topic)
    email = normalize_email(billing.get("email"))
    fingerprint = _address_fingerprint(shipping_address) or _address_fingerprint(billing)

    refunds = tuple(
        _parse_refund(
            raw,
            topic,
            f"refunds[{index}].",
            order_id=order_id,
            order_updated_at=updated_at,
            currency=currency,
            merchandise=merchandise,
            order_total=total,
        )
        for index, raw in enumerate(fields.objects(payload, "refunds", topic))
    )

    return Order(
        id=order_id,
        number=_order_number(payload, order_id),
        currency=currency,
        presentment_currency=currency,  # WooCommerce core has a single store currency
        platform_status=platform_status,
        status=status,
        is_paid=paid_date_set and platform_status in PAID_STATUSES,
        merchandise=merchandise,
        merchandise_tax=lines_tax,
        taxes_included=taxes_included,
        # WooCommerce core has no gift cards (they come from plugins, usually as coupons or fees),
        # so nothing is paid by gift card and no line is a gift card.
        gift_card_paid=Decimal("0"),
        shipping=shipping,
        total=total,
        created_at=created_at,
        updated_at=updated_at,
        customer=_order_customer(payload, billing, email, topic),
        email=email,
        paid_at=paid_at,
        # WooCommerce records no cancellation date: the modification that delivered the cancelled
        # status stands in for it.
        cancelled_at=updated_at if platform_status == STATUS_CANCELLED else None,
        line_items=tuple(line_items),
        refunds=refunds,
        discount_codes=_discount_codes(payload, topic),
        shipping_address_fingerprint=fingerprint,
        recovery_url=fields.optional_text(payload, "payment_url", topic),
    )


def parse_deleted(payload: Mapping[str, Any], topic: str) -> Deleted:
    """Parse a `*.deleted` body, which is only `{"id": N}`.

    Raises:
        MalformedPayloadError: the id is missing or not an id.
    """
    return Deleted(kind=topic.split(".", 1)[0], id=fields.platform_id(payload, "id", topic))


def parse_customer(payload: Mapping[str, Any], topic: str) -> Customer:
    """Parse a REST v3 customer (the body of customer.created/updated) into a Customer.

    Raises:
        MalformedPayloadError: a field we use is missing or of the wrong type.
    """
    customer_id = fields.platform_id(payload, "id", topic)
    email = normalize_email(fields.text(payload, "email", topic, allow_empty=True))
    return Customer(
        id=customer_id,
        email=email,
        first_name=fields.optional_text(payload, "first_name", topic),
        last_name=fields.optional_text(payload, "last_name", topic),
        # WooCommerce core has no marketing-consent field; a shop-configured meta key carries it,
        # and the domain reads it from `meta`.
        accepts_marketing=None,
        created_at=fields.optional_timestamp(payload, "date_created_gmt", topic),
        updated_at=fields.optional_timestamp(payload, "date_modified_gmt", topic),
        meta=_scalar_meta(payload, topic),
    )


TOPIC_HANDLERS: dict[str, Callable[[Mapping[str, Any], str], Resource]] = {
    ORDER_CREATED: parse_order,
    ORDER_UPDATED: parse_order,
    ORDER_DELETED: parse_deleted,
    ORDER_RESTORED: parse_order,
    CUSTOMER_CREATED: parse_customer,
    CUSTOMER_UPDATED: parse_customer,
}

SUPPORTED_TOPICS: tuple[str, ...] = tuple(TOPIC_HANDLERS)


# ---- helpers ----------------------------------------------------------------------------


def _decode_body(body: bytes, topic: str) -> Mapping[str, Any]:
    try:
        # parse_float=Decimal: WooCommerce sends some money as JSON numbers ("price": 12.5).
        payload = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayloadError(f"{topic}: body is not JSON") from None
    except RecursionError:
        raise MalformedPayloadError(f"{topic}: body nests too deeply") from None
    if not isinstance(payload, dict):
        raise MalformedPayloadError(f"{topic}: body is not a JSON object")
    return payload


def _occurred_at(resource: Resource) -> datetime | None:
    if isinstance(resource, Order):
        return resource.updated_at
    if isinstance(resource, Customer):
        return resource.updated_at or resource.created_at
    return None


def _optional_id(data: Mapping[str, Any], key: str, topic: str, path: str = "") -> str | None:
    # WooCommerce writes 0 for "none" (variation_id of a simple product, product_id of a line
    # whose product was deleted).
    value = data.get(key)
    if value == 0 or value == "0":
        return None
    return fields.optional_platform_id(data, key, topic, path)


def _object(data: Mapping[str, Any], key: str, topic: str) -> Mapping[str, Any]:
    # PHP serializes an empty associative array as [], so an empty address may arrive as a list.
    if data.get(key) == []:
        return {}
    return fields.optional_object(data, key, topic) or {}


def _parse_line_item(raw: Mapping[str, Any], topic: str, path: str) -> tuple[LineItem, Decimal]:
    line = LineItem(
        id=fields.platform_id(raw, "id", topic, path),
        product_id=_optional_id(raw, "product_id", topic, path),
        variant_id=_optional_id(raw, "variation_id", topic, path),
        quantity=fields.integer(raw, "quantity", topic, path),
        # REST `price` is the line total / quantity (after discounts, excluding tax), and it is a
        # JSON number, not a string.
        unit_price=fields.money(raw, "price", topic, path),
        total=fields.money(raw, "total", topic, path),
        # Weights are not part of the order payload (only of the product resource).
        grams=0,
        tax=fields.money(raw, "total_tax", topic, path),
    )
    return line, line.tax


def _parse_refund(
    raw: Mapping[str, Any],
    topic: str,
    path: str,
    *,
    order_id: str,
    order_updated_at: datetime,
    currency: str,
    merchandise: Decimal,
    order_total: Decimal,
) -> Refund:
    refunded = abs(fields.money(raw, "total", topic, path))
    # The order body lists refunds only as {id, reason, total: "-5.00"}: no date and no split by
    # line (https://woocommerce.github.io/woocommerce-rest-api-docs/#order-properties, `refunds`).
    # So the refunded merchandise is proportional to the refunded share of the order total, and
    # the refund is dated by the order's date_modified_gmt (the body is built at delivery time).
    quantum = Decimal(1).scaleb(min(_exponent(order_total), 0))
    if order_total == 0:
        share = Decimal(0)
    else:
        share = min(merchandise, refunded * merchandise / order_total)
    return Refund(
        id=fields.platform_id(raw, "id", topic, path),
        order_id=order_id,
        created_at=order_updated_at,
        merchandise=share.quantize(quantum, rounding=ROUND_HALF_UP),
        total=refunded,
        currency=currency,
        detailed=False,  # an estimate until `parse_refund_details` brings the refund's lines
    )


def parse_refund_details(payload: Mapping[str, Any], topic: str) -> RefundDetails:
    """Parse our stored answer of `GET orders/N/refunds` ({"order_id", "currency",
    "prices_include_tax", "refunds": [...]}) into each refund's exact merchandise.

    A refund line has negative `quantity`, `total` (after discounts, without tax) and `total_tax`,
    and `_refunded_item_id` naming the order's line (live captures 102-103). Its merchandise is
    minus the lines' totals, with their tax when the store's prices include tax (the basis of
    `Order.merchandise`); shipping and fee lines are not merchandise. The refund's `amount` is what
    went back, and `date_created_gmt` when.

    Raises:
        MalformedPayloadError: a field we use is missing or of the wrong type.
    """
    order_id = fields.platform_id(payload, "order_id", topic)
    currency = fields.text(payload, "currency", topic)
    taxes_included = fields.boolean(payload, "prices_include_tax", topic)
    refunds = []
    for index, raw in enumerate(fields.objects(payload, "refunds", topic)):
        path = f"refunds[{index}]."
        merchandise = Decimal("0")
        by_line: dict[str, Decimal] = {}
        for line_index, line in enumerate(fields.objects(raw, "line_items", topic, path)):
            line_path = f"{path}line_items[{line_index}]."
            amount = -fields.money(line, "total", topic, line_path)
            if taxes_included:
                amount -= fields.money(line, "total_tax", topic, line_path)
            merchandise += amount
            # `_refunded_item_id` (a meta entry) names the order line refunded (live capture 103).
            item_id = _refunded_item_id(line)
            if item_id is not None:
                by_line[item_id] = by_line.get(item_id, Decimal("0")) + amount
        refunds.append(Refund(
            id=fields.platform_id(raw, "id", topic, path),
            order_id=order_id,
            created_at=fields.timestamp(raw, "date_created_gmt", topic, path),
            merchandise=max(merchandise, Decimal("0")),
            total=abs(fields.money(raw, "amount", topic, path)),
            currency=currency,
            lines=tuple(RefundLine(item_id, max(amount, Decimal("0"))) for item_id, amount in by_line.items()),
        ))
    return RefundDetails(order_id=order_id, refunds=tuple(refunds))


def _refunded_item_id(line: Mapping[str, Any]) -> str | None:
    """Return the order line a refund line refunds (its `_refunded_item_id` meta), or None."""
    for meta in line.get("meta_data") or ():
        if isinstance(meta, Mapping) and meta.get("key") == "_refunded_item_id":
            value = meta.get("value")
            if isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip().isdigit():
                return str(value).strip()
    return None


def _exponent(value: Decimal) -> int:
    # The REST API formats money with the store's price decimals ("25.00" -> 2 places).
    exponent = value.as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0


def _order_number(payload: Mapping[str, Any], order_id: str) -> str:
    number = payload.get("number")
    if isinstance(number, str) and number.strip():
        return number.strip()
    if isinstance(number, int) and not isinstance(number, bool):
        return str(number)
    return order_id


def _order_customer(
    payload: Mapping[str, Any], billing: Mapping[str, Any], email: str | None, topic: str
) -> Customer | None:
    fields.require(payload, "customer_id", topic)  # 0 for a guest, never absent
    customer_id = _optional_id(payload, "customer_id", topic)
    first_name = fields.optional_text(billing, "first_name", topic, "billing.")
    last_name = fields.optional_text(billing, "last_name", topic, "billing.")
    if customer_id is None and email is None:
        # A guest with no e-mail (an empty checkout-draft): nobody to attach the order to.
        return None
    return Customer(id=customer_id, email=email, first_name=first_name, last_name=last_name)


def _address_fingerprint(address: Mapping[str, Any]) -> str | None:
    return address_fingerprint(
        address.get("address_1"), address.get("postcode"), address.get("country")
    )


def _discount_codes(payload: Mapping[str, Any], topic: str) -> tuple[str, ...]:
    codes: list[str] = []
    for index, raw in enumerate(fields.objects(payload, "coupon_lines", topic)):
        codes.append(fields.text(raw, "code", topic, f"coupon_lines[{index}]."))
    return tuple(codes)


def _scalar_meta(payload: Mapping[str, Any], topic: str) -> tuple[tuple[str, str], ...]:
    meta: list[tuple[str, str]] = []
    for raw in fields.array(payload, "meta_data", topic):
        if not isinstance(raw, Mapping):
            continue
        key, value = raw.get("key"), raw.get("value")
        # Only scalars: serialized arrays and objects are plugin data we have no use for.
        if isinstance(key, str) and isinstance(value, str | int | bool):
            meta.append((key, str(value)))
    return tuple(meta)


# ---- our WordPress plugin's signed calls to the app -------------------------------------
#
# The plugin (wordpress-plugin/stammkunde/includes/class-stammkunde-signer.php) signs every call
# to `/api/woocommerce/v1/...` with the shop's own plugin secret:
#
#     canonical = "stammkunde-v1\n" METHOD "\n" PATH "\n" TIMESTAMP "\n" NONCE "\n" hex(sha256(BODY))
#     signature = base64(HMAC-SHA256(secret, canonical))
#
# PATH is the path with its query string as sent; TIMESTAMP is Unix seconds and must lie within
# PLUGIN_REPLAY_WINDOW_SECONDS of our clock; NONCE (16-64 letters, digits, "-" or "_") is accepted
# once per shop, which the caller records (the database settles it). Both sides are checked
# against one test vector (wordpress-plugin/tests/signing-vector.json).

_PLUGIN_SHOP_ID = re.compile(r"[1-9][0-9]{0,17}")
_PLUGIN_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_PLUGIN_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class StalePluginRequestError(InvalidSignatureError):
    """The request's timestamp lies outside the replay window."""


@dataclass(frozen=True)
class PluginSignedHeaders:
    """The plugin's signing headers, well-formed (not yet verified)."""

    shop_id: int
    timestamp: int
    nonce: str
    signature: str


def canonical_plugin_request(method: str, path: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    """Return the bytes that are signed."""
    lines = (PLUGIN_SIGNATURE_VERSION, method.upper(), path, str(int(timestamp)), nonce,
             hashlib.sha256(body).hexdigest())
    return "\n".join(lines).encode("utf-8")


def sign_plugin_request(secret: str, method: str, path: str, timestamp: int, nonce: str, body: bytes) -> str:
    """Return the base64 HMAC-SHA256 signature of a request (what the plugin sends)."""
    digest = hmac.new(secret.encode("utf-8"), canonical_plugin_request(method, path, timestamp, nonce, body),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def read_plugin_headers(headers: Mapping[str, str]) -> PluginSignedHeaders:
    """Return the signing headers of a request, checked for form only.

    Raises:
        MissingSignatureError: a header is missing or malformed.
    """
    shop, timestamp, nonce, signature = (
        (headers.get(name) or "").strip()
        for name in (PLUGIN_HEADER_SHOP, PLUGIN_HEADER_TIMESTAMP, PLUGIN_HEADER_NONCE, PLUGIN_HEADER_SIGNATURE)
    )
    well_formed = (_PLUGIN_SHOP_ID.fullmatch(shop) and _PLUGIN_TIMESTAMP.fullmatch(timestamp)
                   and _PLUGIN_NONCE.fullmatch(nonce) and signature)
    if not well_formed:
        raise MissingSignatureError("plugin request: signing headers missing or malformed")
    return PluginSignedHeaders(shop_id=int(shop), timestamp=int(timestamp), nonce=nonce, signature=signature)


def verify_plugin_request(signed: PluginSignedHeaders, method: str, path: str, body: bytes, *, secret: str,
                          now: float, window: int = PLUGIN_REPLAY_WINDOW_SECONDS) -> None:
    """Check a request's signature (constant-time) and its timestamp against `now` (Unix seconds).

    The nonce's single use is the caller's to record.

    Raises:
        InvalidSignatureError: no secret, or the signature does not match.
        StalePluginRequestError: the timestamp is more than `window` seconds from `now`.
    """
    if not secret:
        raise InvalidSignatureError("plugin request: the shop has no plugin secret")
    expected = sign_plugin_request(secret, method, path, signed.timestamp, signed.nonce, body)
    if not hmac.compare_digest(expected.encode("ascii"), signed.signature.encode("utf-8", "replace")):
        raise InvalidSignatureError("plugin request: signature does not match")
    if abs(now - signed.timestamp) > window:
        raise StalePluginRequestError("plugin request: timestamp outside the replay window")


# What the parser reads: the webhook topics and our own refund details (never accepted from outside).
PARSED_TOPICS: dict[str, Callable[[Mapping[str, Any], str], Resource]] = {
    **TOPIC_HANDLERS, REFUND_DETAILS: parse_refund_details}
