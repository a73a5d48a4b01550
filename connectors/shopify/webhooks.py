"""Verify and parse Shopify webhook deliveries, with no I/O (STYLE rule 8).

A Shopify webhook body is the REST resource of the subscription's API version without its wrapper:
`orders/*` send the Order (`{"order": {...}}` minus the wrapper), `refunds/create` the Refund,
`order_transactions/create` the Transaction,
`customers/*` the Customer, `checkouts/*` the abandoned Checkout and `app/uninstalled` the Shop.
https://shopify.dev/docs/api/webhooks

Money: an order carries each amount as a plain field in the shop currency (`total_price`) and, on
newer API versions, as a `*_set` with `shop_money` and `presentment_money`. We always read shop
money.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

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
from connectors.shopify.consts import (
    APP_UNINSTALLED,
    CHECKOUTS_CREATE,
    CHECKOUTS_UPDATE,
    CUSTOMERS_CREATE,
    CUSTOMERS_DATA_REQUEST,
    CUSTOMERS_REDACT,
    CUSTOMERS_UPDATE,
    DELIVERY_KEY_MAX_LENGTH,
    EVENT_ID_HEADERS,
    HMAC_HEADERS,
    ORDERS_CANCELLED,
    ORDERS_CREATE,
    ORDERS_PAID,
    ORDERS_UPDATED,
    ORDER_TRANSACTIONS_CREATE,
    PLATFORM,
    POLLED_ORDER,
    REFUNDS_CREATE,
    SHOP_DOMAIN_HEADERS,
    SHOP_REDACT,
    TOPIC_HEADERS,
    TRIGGERED_AT_HEADERS,
    WEBHOOK_ID_HEADERS,
)
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
    Resource,
    ShopRedaction,
    WebhookEvent,
)

Payload = Mapping[str, Any]
Handler = Callable[[Payload, str, str], Resource]

_ZERO = Decimal("0")

# `financial_status` values meaning money was received at some point (it stays so after refunds).
# https://shopify.dev/docs/api/admin-rest/latest/resources/order (financial_status)
_PAID_STATUSES = frozenset({"paid", "partially_paid", "partially_refunded", "refunded"})


# ---- headers ----------------------------------------------------------------------------------


def normalize_shop(value: str) -> str:
    """Return a shop domain lower-cased, without scheme, path or slash ("x.myshopify.com")."""
    text = value.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    return text.split("/", 1)[0].strip()


def _header_value(headers: Mapping[str, str], names: Sequence[str]) -> str | None:
    value = header(headers, *names)
    if value is None:
        return None
    return value.strip() or None


def shop_from_headers(headers: Mapping[str, str]) -> str | None:
    """Return the normalized shop domain the delivery claims to come from, or None."""
    value = _header_value(headers, SHOP_DOMAIN_HEADERS)
    if value is None:
        return None
    return normalize_shop(value) or None


def topic_from_headers(headers: Mapping[str, str]) -> str | None:
    """Return the delivery's topic verbatim ("orders/paid"), or None when the header is missing."""
    return _header_value(headers, TOPIC_HEADERS)


def is_ping(headers: Mapping[str, str], body: bytes) -> bool:
    """Return False: Shopify sends no unsigned pings (every delivery is signed)."""
    return False


def verify(
    headers: Mapping[str, str], body: bytes, *, secret: str, old_secret: str | None = None
) -> None:
    """Check `X-Shopify-Hmac-Sha256` (or `shopify-hmac-sha256`) over the raw body; fail closed.

    https://shopify.dev/docs/apps/build/webhooks/verify-deliveries

    Raises:
        MissingSignatureError: no signature header.
        InvalidSignatureError: the signature matches neither secret (an empty secret never matches).
    """
    signature = _header_value(headers, HMAC_HEADERS)  # a blank header counts as missing
    verify_hmac_base64(signature, body, secret=secret, old_secret=old_secret)


def delivery_key(headers: Mapping[str, str], body: bytes, payload: Any) -> str:
    """Return the dedupe key: topic plus Event-Id, else Webhook-Id, else the body's sha256;
    for `orders/updated` (and our polled orders) the order's state instead.

    `X-Shopify-Event-Id` is the same on every delivery of one event ("the same value across more
    than one webhook indicates a duplicate",
    https://shopify.dev/docs/apps/build/webhooks/ignore-duplicates), so it comes first.

    An `orders/updated` body is keyed by the order's id and `updated_at` (`order_state_key`),
    which our reconciliation can compute from the same order read by API: a webhook and a poll
    of one state are one delivery. A retry carries the body of trigger time, so it keys the same.
    """
    topic = topic_from_headers(headers) or ""
    if topic in (ORDERS_UPDATED, POLLED_ORDER) and isinstance(payload, Mapping):
        state = _order_state(payload, topic)
        if state is not None:
            return order_state_key(*state)
    event_id = _header_value(headers, EVENT_ID_HEADERS)
    webhook_id = _header_value(headers, WEBHOOK_ID_HEADERS)
    if event_id is not None:
        key = f"{topic}|event:{event_id}"
    elif webhook_id is not None:
        key = f"{topic}|webhook:{webhook_id}"
    else:
        key = f"{topic}|body:{body_digest(body)}"
    return _bounded(key)


def order_state_key(order_id: str, updated_at: datetime, financial_status: str, cancelled: bool,
                    refunds: int) -> str:
    """Return the dedupe key of one state of an order:
    `orders/updated|order:<id>|<updated_at UTC>|<financial status>|<cancelled>|<refund count>`.

    Shopify's `updated_at` has one-second resolution, so the facts that move points (paid,
    cancelled, refunds) are part of the key too: two such changes within one second are two keys.
    Both shapes of an order carry them (REST `financial_status`, GraphQL `displayFinancialStatus`).
    """
    moment = updated_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    flags = f"{financial_status.lower()}|{'cancelled' if cancelled else 'open'}|refunds:{refunds}"
    return _bounded(f"{ORDERS_UPDATED}|order:{order_id}|{moment}|{flags}")


def _order_state(payload: Payload, topic: str) -> tuple[str, datetime, str, bool, int] | None:
    """Return the parts of `order_state_key` of a REST order body or a polled GraphQL node, or None."""
    polled = topic == POLLED_ORDER
    names = (("legacyResourceId", "updatedAt", "displayFinancialStatus", "cancelledAt") if polled
             else ("id", "updated_at", "financial_status", "cancelled_at"))
    refunds = payload.get("refunds") or []
    status = payload.get(names[2]) or "pending"
    if not isinstance(refunds, list) or not isinstance(status, str):
        return None
    try:
        return (fields.to_id(payload.get(names[0]), topic, names[0]),
                fields.to_datetime(payload.get(names[1]), topic, names[1]),
                status, payload.get(names[3]) is not None, len(refunds))
    except MalformedPayloadError:
        return None  # keyed by its event id; the parser reports what is wrong with it


def _bounded(key: str) -> str:
    """Keep a key within the column size, replacing an over-long tail by its sha256."""
    if len(key) <= DELIVERY_KEY_MAX_LENGTH:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    suffix = f"|sha256:{digest}"
    return key[: DELIVERY_KEY_MAX_LENGTH - len(suffix)] + suffix


def delivery_headers(shop: str, topic: str, *, signature: str, event_id: str) -> dict[str, str]:
    """Return the headers Shopify sends with a delivery of `topic` from `shop` (classic form)."""
    return {
        TOPIC_HEADERS[0]: topic,
        HMAC_HEADERS[0]: signature,
        SHOP_DOMAIN_HEADERS[0]: shop,
        EVENT_ID_HEADERS[0]: event_id,
    }


# ---- event ------------------------------------------------------------------------------------


def parse_event(headers: Mapping[str, str], body: bytes) -> WebhookEvent:
    """Parse a verified delivery into a `WebhookEvent`.

    Raises:
        UnsupportedTopicError: the topic header is missing or not in SUPPORTED_TOPICS.
        MalformedPayloadError: the body is not a JSON object, the shop header is missing, or a
            field we use is missing or of the wrong type.
    """
    topic = topic_from_headers(headers)
    if topic is None:
        raise UnsupportedTopicError("shopify: topic header missing")
    handler = PARSED_TOPICS.get(topic)
    if handler is None:
        raise UnsupportedTopicError(f"shopify: unsupported topic {topic!r}")
    shop = shop_from_headers(headers)
    if shop is None:
        raise MalformedPayloadError(f"{topic}: X-Shopify-Shop-Domain header missing")
    payload = _load_object(body, topic)
    return WebhookEvent(
        platform=PLATFORM,
        shop=shop,
        topic=topic,
        delivery_key=delivery_key(headers, body, payload),
        occurred_at=_occurred_at(headers, payload, topic),
        resource=handler(payload, topic, shop),
    )


def _load_object(body: bytes, topic: str) -> Payload:
    try:
        # parse_float=Decimal: no money value ever passes through a binary float.
        payload = json.loads(body, parse_float=Decimal)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        raise MalformedPayloadError(f"{topic}: body is not JSON") from None
    except RecursionError:
        raise MalformedPayloadError(f"{topic}: body nests too deeply") from None
    if not isinstance(payload, dict):
        raise MalformedPayloadError(f"{topic}: body is not a JSON object")
    return payload


def _occurred_at(headers: Mapping[str, str], payload: Payload, topic: str) -> datetime | None:
    # A retry carries the payload from trigger time, so X-Shopify-Triggered-At is the event time
    # (https://shopify.dev/changelog/updates-to-webhook-retry-mechanism).
    triggered_at = _header_value(headers, TRIGGERED_AT_HEADERS)
    if triggered_at is not None:
        return fields.to_datetime(triggered_at, topic, TRIGGERED_AT_HEADERS[0])
    for key in ("updated_at", "created_at", "updatedAt", "createdAt"):
        if payload.get(key) is not None:
            return fields.to_datetime(payload[key], topic, key)
    return None


# ---- resources --------------------------------------------------------------------------------


def parse_order(payload: Payload, topic: str, shop: str) -> Order:
    """Parse an `orders/*` body (the REST Order) into an `Order`; amounts in shop currency.

    Raises:
        MalformedPayloadError: a field we use is missing or of the wrong type.
    """
    currency = fields.text(payload, "currency", topic)
    financial_status = fields.text(payload, "financial_status", topic)
    cancelled_at = fields.optional_timestamp(payload, "cancelled_at", topic)
    is_paid = financial_status in _PAID_STATUSES

    lines = [
        _parse_line_item(item, topic, f"line_items[{i}].")
        for i, item in enumerate(fields.objects(payload, "line_items", topic, required=True))
    ]
    line_items = tuple(line for line, _tax in lines)
    # `subtotal_price` is after every discount (line and order level), before shipping and tax.
    # Gift cards are money in a different form, never merchandise.
    gift_card_lines = sum((line.total for line in line_items if line.is_gift_card), _ZERO)
    merchandise = _money(payload, "subtotal_price", topic) - gift_card_lines
    merchandise_tax = sum((tax for line, tax in lines if not line.is_gift_card), _ZERO)

    email = normalize_email(payload.get("email")) or normalize_email(payload.get("contact_email"))
    return Order(
        id=fields.to_id(payload.get("id"), topic, "id"),
        number=_order_number(payload, topic),
        currency=currency,
        presentment_currency=fields.optional_text(payload, "presentment_currency", topic) or currency,
        platform_status=financial_status,
        status=_order_status(financial_status, cancelled_at),
        is_paid=is_paid,
        merchandise=merchandise,
        merchandise_tax=merchandise_tax,
        taxes_included=fields.boolean(payload, "taxes_included", topic),
        # The order webhook body carries no amount paid by gift card: `payment_gateway_names` only
        # lists gateway names ("gift_card"), and `transactions` are not part of the Order payload
        # (https://community.shopify.com/c/Shopify-APIs-SDKs/Order-Webhook-Payment-info/td-p/846748).
        # The amounts come as order_transactions/create deliveries (`parse_order_transaction`);
        # None says "this snapshot does not know", so it never overwrites what they told us.
        gift_card_paid=None,
        shipping=_order_shipping(payload, topic),
        total=_money(payload, "total_price", topic),
        created_at=fields.timestamp(payload, "created_at", topic),
        updated_at=fields.timestamp(payload, "updated_at", topic),
        customer=_order_customer(payload, topic, email),
        email=email,
        # The Order has no paid_at; `processed_at` is when it was processed (paid, for paid orders).
        paid_at=fields.optional_timestamp(payload, "processed_at", topic) if is_paid else None,
        cancelled_at=cancelled_at,
        line_items=line_items,
        refunds=tuple(
            _parse_refund(refund, topic, f"refunds[{i}].", default_currency=currency)
            for i, refund in enumerate(fields.objects(payload, "refunds", topic))
        ),
        discount_codes=tuple(
            fields.text(code, "code", topic, f"discount_codes[{i}].")
            for i, code in enumerate(fields.objects(payload, "discount_codes", topic))
        ),
        tags=_tags(payload, topic),
        total_weight_grams=fields.integer(payload, "total_weight", topic, default=0),
        shipping_address_fingerprint=_address_fingerprint(payload, "shipping_address", topic),
        checkout_token=fields.optional_text(payload, "checkout_token", topic),
        test=fields.boolean(payload, "test", topic, default=False),
    )


def parse_polled_order(payload: Payload, topic: str, shop: str) -> Order:
    """Parse an order node of the Admin GraphQL `orders` query (our reconciliation and backfill,
    `client.DOCUMENTS["orders"]`) into the same `Order` the REST webhook body gives.

    Field by field, the GraphQL names of what `parse_order` reads: `displayFinancialStatus`
    (upper case) is `financial_status`, `*Set.shopMoney` the shop-money amounts, `tags` a list,
    `legacyResourceId` the numeric id, `defaultEmailAddress` the customer's e-mail and consent.
    Not in the node: a line's weight (its `grams` stay 0; the order's `totalWeight` is read) and
    the customer's legacy `accepts_marketing`.
    https://shopify.dev/docs/api/admin-graphql/2026-07/objects/Order

    Raises:
        MalformedPayloadError: a field we use is missing or of the wrong type.
    """
    order_id = fields.to_id(payload.get("legacyResourceId"), topic, "legacyResourceId")
    currency = fields.text(payload, "currencyCode", topic)
    status_value = fields.optional_text(payload, "displayFinancialStatus", topic)
    financial_status = (status_value or "pending").lower()
    cancelled_at = fields.optional_timestamp(payload, "cancelledAt", topic)
    is_paid = financial_status in _PAID_STATUSES
    lines = [
        _parse_polled_line(item, topic, f"lineItems.nodes[{i}].")
        for i, item in enumerate(fields.objects(_connection(payload, "lineItems", topic), "nodes", topic,
                                                "lineItems.", required=True))
    ]
    line_items = tuple(line for line, _tax in lines)
    gift_card_lines = sum((line.total for line in line_items if line.is_gift_card), _ZERO)
    merchandise = _shop_money(payload, "subtotalPriceSet", topic) - gift_card_lines
    merchandise_tax = sum((tax for line, tax in lines if not line.is_gift_card), _ZERO)
    email = normalize_email(payload.get("email"))
    address = fields.optional_object(payload, "shippingAddress", topic)
    return Order(
        id=order_id,
        number=fields.text(payload, "name", topic),
        currency=currency,
        presentment_currency=fields.optional_text(payload, "presentmentCurrencyCode", topic) or currency,
        platform_status=financial_status,
        status=_order_status(financial_status, cancelled_at),
        is_paid=is_paid,
        merchandise=merchandise,
        merchandise_tax=merchandise_tax,
        taxes_included=fields.boolean(payload, "taxesIncluded", topic),
        gift_card_paid=None,  # as for the webhook: order_transactions/create tell it
        shipping=_shop_money(payload, "totalShippingPriceSet", topic),
        total=_shop_money(payload, "totalPriceSet", topic),
        created_at=fields.timestamp(payload, "createdAt", topic),
        updated_at=fields.timestamp(payload, "updatedAt", topic),
        customer=_polled_customer(payload, topic, email),
        email=email,
        paid_at=fields.optional_timestamp(payload, "processedAt", topic) if is_paid else None,
        cancelled_at=cancelled_at,
        line_items=line_items,
        refunds=tuple(
            _parse_polled_refund(refund, topic, f"refunds[{i}].", order_id=order_id, currency=currency)
            for i, refund in enumerate(fields.objects(payload, "refunds", topic))
        ),
        discount_codes=_text_list(payload, "discountCodes", topic),
        tags=_text_list(payload, "tags", topic),
        total_weight_grams=_unsigned(payload, "totalWeight", topic),
        shipping_address_fingerprint=None if address is None else address_fingerprint(
            address.get("address1"), address.get("zip"), address.get("countryCodeV2")),
        checkout_token=fields.optional_text(payload, "checkoutToken", topic),
        test=fields.boolean(payload, "test", topic, default=False),
    )


def _connection(payload: Payload, key: str, topic: str, prefix: str = "") -> Payload:
    connection = fields.optional_object(payload, key, topic, prefix)
    if connection is None:
        raise MalformedPayloadError(f"{topic}: {prefix}{key} missing")
    info = connection.get("pageInfo")
    if isinstance(info, Mapping) and info.get("hasNextPage"):
        # The client completes every order before it is stored; a partial one would under-count.
        raise MalformedPayloadError(f"{topic}: {prefix}{key} is incomplete (more pages)")
    return connection


def _shop_money(payload: Payload, key: str, topic: str, prefix: str = "") -> Decimal:
    money_set = fields.optional_object(payload, key, topic, prefix)
    if money_set is None:
        raise MalformedPayloadError(f"{topic}: {prefix}{key} missing")
    shop_money = fields.optional_object(money_set, "shopMoney", topic, f"{prefix}{key}.")
    if shop_money is None:
        raise MalformedPayloadError(f"{topic}: {prefix}{key}.shopMoney missing")
    return fields.money(shop_money, "amount", topic, f"{prefix}{key}.shopMoney.")


def _gid_number(value: Any, topic: str, field_name: str) -> str:
    """Return the numeric id of a `gid://shopify/<Type>/<id>` (the REST id)."""
    text = fields.to_id(value, topic, field_name)
    number = text.rsplit("/", 1)[-1]
    if not number.isdigit():
        raise MalformedPayloadError(f"{topic}: {field_name} is not a Shopify id")
    return number


def _optional_gid_number(payload: Payload, key: str, topic: str, prefix: str) -> str | None:
    node = fields.optional_object(payload, key, topic, prefix)
    return None if node is None else _gid_number(node.get("id"), topic, f"{prefix}{key}.id")


def _parse_polled_line(item: Payload, topic: str, prefix: str) -> tuple[LineItem, Decimal]:
    quantity = fields.integer(item, "quantity", topic, prefix)
    unit_price = _shop_money(item, "originalUnitPriceSet", topic, prefix)
    discount = sum((
        _shop_money(allocation, "allocatedAmountSet", topic, f"{prefix}discountAllocations[{j}].")
        for j, allocation in enumerate(fields.objects(item, "discountAllocations", topic, prefix))
    ), _ZERO)
    tax = sum((
        _shop_money(tax_line, "priceSet", topic, f"{prefix}taxLines[{j}].")
        for j, tax_line in enumerate(fields.objects(item, "taxLines", topic, prefix))
    ), _ZERO)
    is_gift_card = fields.boolean(item, "isGiftCard", topic, prefix, default=False)
    total = unit_price * quantity - discount
    line = LineItem(
        id=_gid_number(item.get("id"), topic, f"{prefix}id"),
        product_id=_optional_gid_number(item, "product", topic, prefix),
        variant_id=_optional_gid_number(item, "variant", topic, prefix),
        quantity=quantity,
        unit_price=unit_price,
        total=total,
        is_gift_card=is_gift_card,
        vendor=fields.optional_text(item, "vendor", topic, prefix),
        tax=tax,
        merchandise=None if is_gift_card else total,
    )
    return line, tax


def _parse_polled_refund(data: Payload, topic: str, prefix: str, *, order_id: str, currency: str) -> Refund:
    merchandise = _ZERO
    by_line: dict[str, Decimal] = {}
    lines = _connection(data, "refundLineItems", topic, prefix)
    for j, line in enumerate(fields.objects(lines, "nodes", topic, f"{prefix}refundLineItems.")):
        line_prefix = f"{prefix}refundLineItems.nodes[{j}]."
        refunded_item = fields.optional_object(line, "lineItem", topic, line_prefix)
        if refunded_item is not None and fields.boolean(refunded_item, "isGiftCard", topic,
                                                        f"{line_prefix}lineItem.", default=False):
            continue
        subtotal = _shop_money(line, "subtotalSet", topic, line_prefix)
        merchandise += subtotal
        if refunded_item is not None and refunded_item.get("id") is not None:
            line_id = _gid_number(refunded_item.get("id"), topic, f"{line_prefix}lineItem.id")
            by_line[line_id] = by_line.get(line_id, _ZERO) + subtotal
    return Refund(
        id=_gid_number(data.get("id"), topic, f"{prefix}id"),
        order_id=order_id,
        created_at=fields.timestamp(data, "createdAt", topic, prefix),
        merchandise=merchandise,
        total=_shop_money(data, "totalRefundedSet", topic, prefix),
        currency=currency,
        lines=tuple(RefundLine(line_id, amount) for line_id, amount in by_line.items()),
    )


def _polled_customer(payload: Payload, topic: str, email: str | None) -> Customer | None:
    locale = fields.optional_text(payload, "customerLocale", topic)
    raw = fields.optional_object(payload, "customer", topic)
    if raw is None:
        return None if email is None else Customer(id=None, email=email, locale=locale)
    prefix = "customer."
    address = fields.optional_object(raw, "defaultEmailAddress", topic, prefix)
    accepts_marketing = consent_at = None
    customer_email = None
    if address is not None:
        customer_email = normalize_email(address.get("emailAddress"))
        state = fields.optional_text(address, "marketingState", topic, f"{prefix}defaultEmailAddress.")
        if state is not None:
            # As the webhook's email_marketing_consent.state: only SUBSCRIBED is consent.
            accepts_marketing = state == "SUBSCRIBED"
            consent_at = fields.optional_timestamp(address, "marketingUpdatedAt", topic,
                                                   f"{prefix}defaultEmailAddress.")
    return Customer(
        id=_gid_number(raw.get("id"), topic, f"{prefix}id"),
        email=customer_email or email,
        first_name=fields.optional_text(raw, "firstName", topic, prefix),
        last_name=fields.optional_text(raw, "lastName", topic, prefix),
        locale=fields.optional_text(raw, "locale", topic, prefix) or locale,
        accepts_marketing=accepts_marketing,
        marketing_consent_at=consent_at,
        created_at=fields.optional_timestamp(raw, "createdAt", topic, prefix),
        updated_at=fields.optional_timestamp(raw, "updatedAt", topic, prefix),
        tags=_text_list(raw, "tags", topic, prefix),
    )


def _text_list(payload: Payload, key: str, topic: str, prefix: str = "") -> tuple[str, ...]:
    """Return a GraphQL `[String!]!` as stripped non-empty texts."""
    items = fields.array(payload, key, topic, prefix)
    if not all(isinstance(item, str) for item in items):
        raise MalformedPayloadError(f"{topic}: {prefix}{key} holds a value that is not text")
    return tuple(item.strip() for item in items if item.strip())


def _unsigned(payload: Payload, key: str, topic: str) -> int:
    """Return an `UnsignedInt64` (sent as a decimal string) as int; absent is 0."""
    value = payload.get(key)
    if value is None:
        return 0
    if isinstance(value, str) and value.isdigit() and len(value) <= 12:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= fields.MAX_INTEGER:
        return value
    raise MalformedPayloadError(f"{topic}: {key} is not an unsigned integer")


def parse_refund(payload: Payload, topic: str, shop: str) -> Refund:
    """Parse a `refunds/create` body (the REST Refund) into a `Refund`.

    Raises:
        MalformedPayloadError: a field we use is missing or of the wrong type.
    """
    return _parse_refund(payload, topic, "", default_currency=None)


def parse_order_transaction(payload: Payload, topic: str, shop: str) -> OrderTransaction:
    """Parse an `order_transactions/create` body (the REST Transaction) into an `OrderTransaction`.

    The amount is shop money (`amount_set.shop_money`) when the body has it, else the plain
    `amount` in the transaction's `currency`.
    https://shopify.dev/docs/api/admin-rest/latest/resources/transaction

    Raises:
        MalformedPayloadError: a field we use is missing or of the wrong type.
    """
    amount = _money(payload, "amount", topic)
    currency = fields.text(payload, "currency", topic)
    money_set = payload.get("amount_set")
    if isinstance(money_set, Mapping):
        shop_money = money_set.get("shop_money")
        if isinstance(shop_money, Mapping) and shop_money.get("currency_code") is not None:
            currency = fields.text(shop_money, "currency_code", topic, "amount_set.shop_money.")
    return OrderTransaction(
        id=fields.to_id(payload.get("id"), topic, "id"),
        order_id=fields.to_id(payload.get("order_id"), topic, "order_id"),
        kind=fields.text(payload, "kind", topic).lower(),
        status=fields.text(payload, "status", topic).lower(),
        gateway=fields.text(payload, "gateway", topic),
        amount=amount,
        currency=currency,
        created_at=fields.optional_timestamp(payload, "created_at", topic),
    )


def parse_customer(payload: Payload, topic: str, shop: str) -> Customer:
    """Parse a `customers/*` body (the REST Customer) into a `Customer`.

    Raises:
        MalformedPayloadError: a field we use is missing or of the wrong type.
    """
    return _parse_customer(payload, topic, "", id_required=True)


def parse_checkout(payload: Payload, topic: str, shop: str) -> Checkout:
    """Parse a `checkouts/*` body (the REST abandoned Checkout) into a `Checkout`.

    Raises:
        MalformedPayloadError: a field we use is missing or of the wrong type.
    """
    email = normalize_email(payload.get("email"))
    return Checkout(
        id=fields.text(payload, "token", topic),
        currency=fields.text(payload, "currency", topic),
        total=_money(payload, "total_price", topic),
        subtotal=_money(payload, "subtotal_price", topic),
        created_at=fields.timestamp(payload, "created_at", topic),
        updated_at=fields.timestamp(payload, "updated_at", topic),
        customer=_order_customer(payload, topic, email),
        email=email,
        recovery_url=fields.optional_text(payload, "abandoned_checkout_url", topic),
        completed_at=fields.optional_timestamp(payload, "completed_at", topic),
        line_items=tuple(
            # Checkout lines of recent API versions have a `key` and no `id`.
            _parse_line_item(item, topic, f"line_items[{i}].", id_keys=("id", "key"))[0]
            for i, item in enumerate(fields.objects(payload, "line_items", topic, required=True))
        ),
        # The buyer's own "email me with news and offers" tick-box at checkout: for a guest (no
        # customer object) the only consent statement there is.
        # https://shopify.dev/docs/api/admin-rest/latest/resources/abandoned-checkouts
        buyer_accepts_marketing=fields.optional_boolean(payload, "buyer_accepts_marketing", topic),
    )


def parse_app_uninstalled(payload: Payload, topic: str, shop: str) -> AppUninstalled:
    """Return `AppUninstalled` for the shop named by the (signed) shop-domain header."""
    return AppUninstalled(shop=shop)


def _compliance_customer(payload: Payload, topic: str, orders_key: str) -> tuple[str | None, str | None, tuple[str, ...]]:
    """Return (customer id, e-mail, order ids) of a compliance request.

    Raises:
        MalformedPayloadError: no customer object, one with neither id nor e-mail, or orders
            that are not a list.
    """
    customer = fields.require(payload, "customer", topic)
    if not isinstance(customer, dict):
        raise MalformedPayloadError(f"{topic}: customer is not an object")
    customer_id = fields.optional_platform_id(customer, "id", topic, "customer.")
    email = normalize_email(customer.get("email"))
    if customer_id is None and email is None:
        raise MalformedPayloadError(f"{topic}: customer.id and customer.email missing")
    orders = payload.get(orders_key) or []
    if not isinstance(orders, list):
        raise MalformedPayloadError(f"{topic}: {orders_key} is not a list")
    return customer_id, email, tuple(fields.to_id(o, topic, f"{orders_key}[]") for o in orders)


def parse_customer_redaction(payload: Payload, topic: str, shop: str) -> CustomerRedaction:
    """Return the customer (id and/or e-mail) and the orders the shop asks us to erase.

    Raises:
        MalformedPayloadError: see `_compliance_customer`.
    """
    customer_id, email, orders = _compliance_customer(payload, topic, "orders_to_redact")
    return CustomerRedaction(customer_id=customer_id, email=email, order_ids=orders)


def parse_customer_data_request(payload: Payload, topic: str, shop: str) -> CustomerDataRequest:
    """Return the request's id, the customer and the orders the shop asks about.

    Raises:
        MalformedPayloadError: see `_compliance_customer`; a data_request that is not an object.
    """
    customer_id, email, orders = _compliance_customer(payload, topic, "orders_requested")
    request = payload.get("data_request") or {}
    if not isinstance(request, dict):
        raise MalformedPayloadError(f"{topic}: data_request is not an object")
    request_id = fields.optional_platform_id(request, "id", topic, "data_request.")
    return CustomerDataRequest(request_id=request_id,
                               customer_id=customer_id, email=email, order_ids=orders)


def parse_shop_redaction(payload: Payload, topic: str, shop: str) -> ShopRedaction:
    """Return `ShopRedaction` for the shop named by the (signed) shop-domain header."""
    return ShopRedaction(shop=shop)


TOPIC_HANDLERS: dict[str, Handler] = {
    ORDERS_CREATE: parse_order,
    ORDERS_PAID: parse_order,
    ORDERS_UPDATED: parse_order,
    ORDERS_CANCELLED: parse_order,
    REFUNDS_CREATE: parse_refund,
    ORDER_TRANSACTIONS_CREATE: parse_order_transaction,
    CUSTOMERS_CREATE: parse_customer,
    CUSTOMERS_UPDATE: parse_customer,
    CHECKOUTS_CREATE: parse_checkout,
    CHECKOUTS_UPDATE: parse_checkout,
    APP_UNINSTALLED: parse_app_uninstalled,
    CUSTOMERS_REDACT: parse_customer_redaction,
    CUSTOMERS_DATA_REQUEST: parse_customer_data_request,
    SHOP_REDACT: parse_shop_redaction,
}
SUPPORTED_TOPICS = tuple(TOPIC_HANDLERS)
# What the parser reads: the webhook topics and our own polled orders (never accepted from outside).
PARSED_TOPICS: dict[str, Handler] = {**TOPIC_HANDLERS, POLLED_ORDER: parse_polled_order}


# ---- pieces -----------------------------------------------------------------------------------


def _order_number(payload: Payload, topic: str) -> str:
    name = fields.optional_text(payload, "name", topic)
    if name:
        return name
    return fields.to_id(payload.get("order_number"), topic, "order_number")


def _order_status(financial_status: str, cancelled_at: datetime | None) -> OrderStatus:
    if cancelled_at is not None:
        return OrderStatus.CANCELLED
    if financial_status == "refunded":
        return OrderStatus.REFUNDED
    if financial_status in _PAID_STATUSES:
        return OrderStatus.PAID
    if financial_status == "voided":
        return OrderStatus.CANCELLED
    # "pending", "authorized", "unpaid" and any value Shopify adds later.
    return OrderStatus.PENDING


def _order_shipping(payload: Payload, topic: str) -> Decimal:
    # total_shipping_price_set: "The total shipping price of the order, excluding discounts and
    # returns"; older payloads only have shipping_lines, whose `price` is the same undiscounted
    # price.
    if payload.get("total_shipping_price_set") is not None:
        return _money(payload, "total_shipping_price", topic)
    return sum(
        (
            _money(line, "price", topic, f"shipping_lines[{i}].")
            for i, line in enumerate(fields.objects(payload, "shipping_lines", topic))
        ),
        _ZERO,
    )


def _order_customer(payload: Payload, topic: str, email: str | None) -> Customer | None:
    """Return the nested customer, a guest `Customer(id=None)` for an email alone, else None."""
    locale = fields.optional_text(payload, "customer_locale", topic)
    raw = fields.optional_object(payload, "customer", topic)
    if raw is not None:
        return _parse_customer(
            raw, topic, "customer.", id_required=False, fallback_email=email, fallback_locale=locale
        )
    if email is None:
        return None
    return Customer(id=None, email=email, locale=locale)


def _parse_customer(
    data: Payload,
    topic: str,
    prefix: str,
    *,
    id_required: bool,
    fallback_email: str | None = None,
    fallback_locale: str | None = None,
) -> Customer:
    raw_id = data.get("id")
    customer_id = (
        fields.to_id(raw_id, topic, f"{prefix}id") if id_required or raw_id is not None else None
    )
    accepts_marketing, consent_at = _marketing_consent(data, topic, prefix)
    return Customer(
        id=customer_id,
        email=normalize_email(data.get("email")) or fallback_email,
        first_name=fields.optional_text(data, "first_name", topic, prefix),
        last_name=fields.optional_text(data, "last_name", topic, prefix),
        locale=fields.optional_text(data, "locale", topic, prefix) or fallback_locale,
        accepts_marketing=accepts_marketing,
        marketing_consent_at=consent_at,
        created_at=fields.optional_timestamp(data, "created_at", topic, prefix),
        updated_at=fields.optional_timestamp(data, "updated_at", topic, prefix),
        tags=_tags(data, topic, prefix),
    )


def _marketing_consent(
    data: Payload, topic: str, prefix: str
) -> tuple[bool | None, datetime | None]:
    # `email_marketing_consent` replaced `accepts_marketing` in API 2022-04; only "subscribed"
    # means consent ("pending" is a double opt-in not confirmed yet).
    # https://shopify.dev/docs/api/admin-rest/latest/resources/customer (email_marketing_consent)
    consent = fields.optional_object(data, "email_marketing_consent", topic, prefix)
    if consent is not None:
        consent_prefix = f"{prefix}email_marketing_consent."
        state = fields.optional_text(consent, "state", topic, consent_prefix)
        if state is not None:
            return state == "subscribed", fields.optional_timestamp(
                consent, "consent_updated_at", topic, consent_prefix
            )
    legacy = data.get("accepts_marketing")
    if legacy is None:
        return None, None
    if not isinstance(legacy, bool):
        raise MalformedPayloadError(f"{topic}: {prefix}accepts_marketing is not a boolean")
    return legacy, fields.optional_timestamp(data, "accepts_marketing_updated_at", topic, prefix)


def _parse_line_item(
    item: Payload, topic: str, prefix: str, *, id_keys: Sequence[str] = ("id",)
) -> tuple[LineItem, Decimal]:
    """Return the line and the tax on it (both in shop currency)."""
    line_id = None
    for key in id_keys:
        if item.get(key) is not None:
            line_id = fields.to_id(item[key], topic, f"{prefix}{key}")
            break
    if line_id is None:
        raise MalformedPayloadError(f"{topic}: {prefix}id missing")
    quantity = fields.integer(item, "quantity", topic, prefix)
    unit_price = _money(item, "price", topic, prefix)
    allocations = [
        _money(allocation, "amount", topic, f"{prefix}discount_allocations[{j}].")
        for j, allocation in enumerate(fields.objects(item, "discount_allocations", topic, prefix))
    ]
    # `total_discount` is the older field for the same information as `discount_allocations`
    # ("Shopify recommends using discount_allocations, which provides the same information"), so
    # it only counts when there are no allocations; subtracting both would count a discount twice.
    if allocations:
        discount = sum(allocations, _ZERO)
    elif item.get("total_discount_set") is not None or item.get("total_discount") is not None:
        discount = _money(item, "total_discount", topic, prefix)
    else:
        discount = _ZERO
    tax = sum(
        (
            _money(tax_line, "price", topic, f"{prefix}tax_lines[{j}].")
            for j, tax_line in enumerate(fields.objects(item, "tax_lines", topic, prefix))
        ),
        _ZERO,
    )
    is_gift_card = fields.boolean(item, "gift_card", topic, prefix, default=False)
    total = unit_price * quantity - discount
    line = LineItem(
        id=line_id,
        product_id=fields.optional_platform_id(item, "product_id", topic, prefix),
        variant_id=fields.optional_platform_id(item, "variant_id", topic, prefix),
        quantity=quantity,
        unit_price=unit_price,
        total=total,
        is_gift_card=is_gift_card,
        grams=fields.integer(item, "grams", topic, prefix, default=0) * quantity,
        vendor=fields.optional_text(item, "vendor", topic, prefix),
        tax=tax,
        # `price` is on the order's tax basis (tax included iff taxes_included), as subtotal_price.
        merchandise=None if is_gift_card else total,
    )
    return line, tax


def _parse_refund(
    data: Payload, topic: str, prefix: str, *, default_currency: str | None
) -> Refund:
    refund_lines = fields.objects(data, "refund_line_items", topic, prefix)
    merchandise = _ZERO
    by_line: dict[str, Decimal] = {}
    for j, line in enumerate(refund_lines):
        line_prefix = f"{prefix}refund_line_items[{j}]."
        # `subtotal` is the refunded line after discounts, before tax: Order.merchandise's basis.
        subtotal = _money(line, "subtotal", topic, line_prefix)
        refunded_item = fields.optional_object(line, "line_item", topic, line_prefix)
        is_gift_card = refunded_item is not None and fields.boolean(
            refunded_item, "gift_card", topic, f"{line_prefix}line_item.", default=False
        )
        if not is_gift_card:
            merchandise += subtotal
            line_id = fields.optional_platform_id(line, "line_item_id", topic, line_prefix)
            if line_id is None and refunded_item is not None:
                line_id = fields.optional_platform_id(refunded_item, "id", topic, f"{line_prefix}line_item.")
            if line_id is not None:
                by_line[line_id] = by_line.get(line_id, _ZERO) + subtotal
    currency = (
        fields.optional_text(data, "currency", topic, prefix)
        or default_currency
        or _refund_shop_currency(refund_lines)
    )
    transactions = fields.objects(data, "transactions", topic, prefix)
    if currency is None:
        currency = next(
            (t["currency"] for t in transactions if isinstance(t.get("currency"), str)), None
        )
    if not currency:
        raise MalformedPayloadError(f"{topic}: {prefix}currency missing")
    return Refund(
        id=fields.to_id(data.get("id"), topic, f"{prefix}id"),
        order_id=fields.to_id(data.get("order_id"), topic, f"{prefix}order_id"),
        created_at=fields.timestamp(data, "created_at", topic, prefix),
        merchandise=merchandise,
        total=_refund_total(transactions, refund_lines, currency, topic, prefix),
        currency=currency,
        lines=tuple(RefundLine(line_id, amount) for line_id, amount in by_line.items()),
    )


def _refund_shop_currency(refund_lines: Sequence[Payload]) -> str | None:
    for line in refund_lines:
        money_set = line.get("subtotal_set")
        shop_money = money_set.get("shop_money") if isinstance(money_set, Mapping) else None
        code = shop_money.get("currency_code") if isinstance(shop_money, Mapping) else None
        if isinstance(code, str) and code:
            return code
    return None


def _refund_total(
    transactions: Sequence[Payload],
    refund_lines: Sequence[Payload],
    currency: str,
    topic: str,
    prefix: str,
) -> Decimal:
    total = _ZERO
    for k, transaction in enumerate(transactions):
        if transaction.get("kind") != "refund" or transaction.get("status") != "success":
            continue
        tx_prefix = f"{prefix}transactions[{k}]."
        if transaction.get("amount_set") is None:
            tx_currency = fields.optional_text(transaction, "currency", topic, tx_prefix)
            if tx_currency is not None and tx_currency != currency:
                # A REST transaction's `amount` is in its own (presentment) currency. With no shop
                # money on it, the best shop-currency figure is the refunded lines' subtotal plus
                # tax, which misses refunded shipping; it is a lower bound, never a conversion.
                return _refund_lines_total(refund_lines, topic, prefix)
        total += _money(transaction, "amount", topic, tx_prefix)
    return total


def _refund_lines_total(refund_lines: Sequence[Payload], topic: str, prefix: str) -> Decimal:
    total = _ZERO
    for j, line in enumerate(refund_lines):
        line_prefix = f"{prefix}refund_line_items[{j}]."
        total += _money(line, "subtotal", topic, line_prefix)
        if line.get("total_tax_set") is not None or line.get("total_tax") is not None:
            total += _money(line, "total_tax", topic, line_prefix)
    return total


def _address_fingerprint(payload: Payload, key: str, topic: str) -> str | None:
    address = fields.optional_object(payload, key, topic)
    if address is None:
        return None
    return address_fingerprint(
        address.get("address1"), address.get("zip"), address.get("country_code")
    )


def _tags(data: Payload, topic: str, prefix: str = "") -> tuple[str, ...]:
    # Shopify sends tags as one comma-separated string ("VIP, Léon").
    value = data.get("tags")
    if value is None:
        return ()
    if not isinstance(value, str):
        raise MalformedPayloadError(f"{topic}: {prefix}tags is not a string")
    return tuple(tag.strip() for tag in value.split(",") if tag.strip())


# ---- Shopify's money sets -----------------------------------------------------------------


def _money(data: Payload, key: str, topic: str, prefix: str = "") -> Decimal:
    """Return `<key>_set.shop_money.amount` when present, else the plain `<key>` (shop currency)."""
    money_set = data.get(f"{key}_set")
    if money_set is None:
        return fields.money(data, key, topic, prefix)
    set_field = f"{prefix}{key}_set"
    if not isinstance(money_set, Mapping):
        raise MalformedPayloadError(f"{topic}: {set_field} is not an object")
    shop_money = money_set.get("shop_money")
    if not isinstance(shop_money, Mapping):
        raise MalformedPayloadError(f"{topic}: {set_field}.shop_money missing")
    return fields.money(shop_money, "amount", topic, f"{set_field}.shop_money.")


# ---- app proxy ------------------------------------------------------------------------------

# Shopify signs each app proxy request it forwards; one older than this (or this far in the
# future: clocks drift) is refused, so a copied URL cannot be replayed for long.
PROXY_MAX_AGE_SECONDS = 300


def proxy_message(query: Sequence[tuple[str, str]]) -> str:
    """Return what Shopify signs for an app proxy request: every query parameter but `signature`,
    as `key=value` with the values of a repeated key joined by ",", sorted, joined with nothing.

    https://shopify.dev/docs/apps/build/online-store/app-proxies/authenticate-app-proxies
    """
    values: dict[str, list[str]] = {}
    for key, value in query:
        if key != "signature":
            values.setdefault(key, []).append(value)
    return "".join(sorted(f"{key}={','.join(items)}" for key, items in values.items()))


def verify_proxy(query: Sequence[tuple[str, str]], *, secrets: Sequence[str | None], now: float,
                 max_age: int = PROXY_MAX_AGE_SECONDS) -> None:
    """Check an app proxy request's `signature` (hex HMAC-SHA256 of `proxy_message` with one of
    `secrets`: the app's secret, the previous one during a rotation) and that its `timestamp` is
    fresh.

    `query`: the decoded query parameters in their order, repeated keys included.

    Raises:
        MissingSignatureError: no `signature`, or no usable secret.
        InvalidSignatureError: the signature matches no secret, or the timestamp is missing,
            malformed or more than `max_age` seconds away from `now`.
    """
    signatures = [value for key, value in query if key == "signature"]
    if len(signatures) != 1 or not signatures[0]:
        raise MissingSignatureError("app proxy request without a signature")
    message = proxy_message(query).encode()
    given = signatures[0].strip().lower().encode()
    candidates = [s for s in secrets if s]
    if not candidates:
        raise MissingSignatureError("no secret to check the app proxy signature with")
    expected = [hmac.new(s.encode(), message, hashlib.sha256).hexdigest().encode() for s in candidates]
    if not any(hmac.compare_digest(given, e) for e in expected):
        raise InvalidSignatureError("app proxy signature does not match")
    stamps = [value for key, value in query if key == "timestamp"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        raise InvalidSignatureError("app proxy request without a valid timestamp")
    if abs(now - int(stamps[0])) > max_age:
        raise InvalidSignatureError("app proxy request is stale")
