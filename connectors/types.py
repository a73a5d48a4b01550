"""The common model every connector parses into: small frozen dataclasses.

Money is `Decimal` in the shop's currency (the order's own shop-currency amounts, never the
presentment currency), platform ids are `str`, times are timezone-aware UTC. There is no raw
payload on any of these: the raw body lives only on the delivery row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


class OrderStatus(enum.StrEnum):
    """Our normalized order state; the platform's own word is kept in `Order.platform_status`."""

    DRAFT = "draft"  # WooCommerce checkout-draft: kept for cart reminders, never earns
    PENDING = "pending"  # created, not paid yet
    ON_HOLD = "on_hold"
    PAID = "paid"  # money received (fully or partially)
    CANCELLED = "cancelled"
    REFUNDED = "refunded"  # fully refunded
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Customer:
    """A shop customer as the platform describes it; `id` is None for a guest."""

    id: str | None
    email: str | None  # stripped and lower-cased; None when the platform gave none
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    # Marketing consent as the platform states it: True/False, or None when it says nothing.
    accepts_marketing: bool | None = None
    marketing_consent_at: datetime | None = None
    birthday: date | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    tags: tuple[str, ...] = ()
    # Scalar platform meta fields as (key, value) strings: WooCommerce keeps marketing consent in a
    # shop-configured customer meta key, which the domain (not the sans-I/O parser) picks out.
    meta: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LineItem:
    """One order or checkout line; `total` is after every discount, in shop currency."""

    id: str
    product_id: str | None
    variant_id: str | None
    quantity: int
    unit_price: Decimal
    total: Decimal
    is_gift_card: bool = False
    grams: int = 0  # weight of the whole line (unit weight x quantity)
    vendor: str | None = None  # Shopify's line `vendor`; WooCommerce core has no vendor
    tax: Decimal = Decimal("0")  # the tax on (or contained in) the line
    # The line's part of `Order.merchandise`, on its basis (tax included iff taxes_included);
    # None for a line that is not merchandise (a gift card) or where the parser does not say.
    merchandise: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RefundLine:
    """One refunded order line: its id and the refunded merchandise (on `Refund.merchandise`'s basis)."""

    line_id: str
    merchandise: Decimal


@dataclass(frozen=True, slots=True)
class Refund:
    """One refund of an order.

    `merchandise` is the refunded part of the order's eligible merchandise, on the same basis as
    `Order.merchandise` (so `merchandise / order.merchandise` is the refunded share).
    """

    id: str
    order_id: str
    created_at: datetime
    merchandise: Decimal
    total: Decimal  # all money given back (may include shipping and tax)
    currency: str
    # False when `merchandise` is an estimate (a WooCommerce order body lists refund totals only,
    # so the share is proportional); the refund's own lines then come as `RefundDetails`.
    detailed: bool = True
    # The refunded merchandise by order line (what `merchandise` adds up), when the platform
    # names the lines: product rules take back a line's own points (`app.loyalty.earning`).
    lines: tuple[RefundLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Order:
    """A normalized snapshot of an order at `updated_at`."""

    id: str
    number: str  # what the merchant and customer see ("#1001", "11")
    currency: str  # the shop currency: every amount below is in it
    presentment_currency: str
    platform_status: str  # the platform's own word ("paid", "processing", ...)
    status: OrderStatus
    is_paid: bool  # money was received at some point (stays True after refunds)
    merchandise: Decimal  # non-gift-card lines after all discounts (tax included iff taxes_included)
    merchandise_tax: Decimal  # the tax contained in / added to `merchandise`
    taxes_included: bool
    # Value paid by gift card or store credit; None when the payload does not say (a Shopify order:
    # its gift-card payments arrive as `OrderTransaction`s).
    gift_card_paid: Decimal | None
    shipping: Decimal
    total: Decimal
    created_at: datetime
    updated_at: datetime
    customer: Customer | None = None
    email: str | None = None
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    line_items: tuple[LineItem, ...] = ()
    refunds: tuple[Refund, ...] = ()
    discount_codes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    total_weight_grams: int = 0
    # sha256 of the normalized shipping address (for referral fraud checks), never the address.
    shipping_address_fingerprint: str | None = None
    checkout_token: str | None = None
    recovery_url: str | None = None  # WooCommerce payment_url for pending/failed orders
    test: bool = False


@dataclass(frozen=True, slots=True)
class OrderTransaction:
    """A payment or refund of an order (Shopify order_transactions/create); amount in shop currency."""

    id: str
    order_id: str
    kind: str  # the platform's word: "sale", "capture", "authorization", "refund", "void", ...
    status: str  # "success", "failure", "pending", "error"
    gateway: str  # "gift_card" for a Shopify gift card
    amount: Decimal
    currency: str
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Checkout:
    """A checkout that may be abandoned (Shopify checkouts/*, WooCommerce checkout-draft)."""

    id: str  # Shopify checkout token; WooCommerce order id
    currency: str
    total: Decimal
    subtotal: Decimal
    created_at: datetime
    updated_at: datetime
    customer: Customer | None = None
    email: str | None = None
    recovery_url: str | None = None
    completed_at: datetime | None = None
    line_items: tuple[LineItem, ...] = ()
    # The checkout's own marketing tick-box (Shopify `buyer_accepts_marketing`); None when unknown.
    buyer_accepts_marketing: bool | None = None


@dataclass(frozen=True, slots=True)
class Deleted:
    """A resource the platform says was deleted (WooCommerce `*.deleted` carries only the id)."""

    kind: str  # "order", "customer", ...
    id: str


@dataclass(frozen=True, slots=True)
class AppUninstalled:
    """The shop removed our app (Shopify app/uninstalled)."""

    shop: str


@dataclass(frozen=True, slots=True)
class CustomerRedaction:
    """The shop asks us to erase what we hold about a customer (Shopify customers/redact)."""

    customer_id: str | None
    email: str | None  # stripped and lower-cased
    order_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ShopRedaction:
    """The shop, uninstalled 48 hours ago, asks us to erase everything we hold for it (shop/redact)."""

    shop: str


@dataclass(frozen=True, slots=True)
class CustomerDataRequest:
    """The shop asks for the data we hold about a customer (Shopify customers/data_request)."""

    request_id: str | None  # the platform's id of the request
    customer_id: str | None
    email: str | None  # stripped and lower-cased
    order_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RefundDetails:
    """An order's refunds with their lines, read from the platform's API (WooCommerce
    `orders/N/refunds`): each `Refund` with its exact merchandise."""

    order_id: str
    refunds: tuple[Refund, ...]


Resource = (Order | Refund | OrderTransaction | Customer | Checkout | Deleted | AppUninstalled | CustomerRedaction | ShopRedaction
            | CustomerDataRequest | RefundDetails)


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One parsed delivery."""

    platform: str
    shop: str  # normalized shop identifier (Shopify domain, WooCommerce base URL)
    topic: str  # the platform's topic string verbatim
    delivery_key: str  # unique per delivery of one event (the dedupe key)
    occurred_at: datetime | None
    resource: Resource


@dataclass(frozen=True, slots=True)
class ProductFacts:
    """What earning rules read of a product that an order line does not carry, from the
    platform's API: its collections (Shopify) or categories (WooCommerce) and its tags, each
    as every name a rule may use for it (id, handle or slug, title or name)."""

    id: str
    found: bool  # False: the platform does not know the product (deleted)
    collections: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DiscountSpec:
    """What a discount code must do; built by the rewards domain, sent by a client."""

    code: str
    title: str
    kind: str  # "fixed_amount" | "percentage" | "free_shipping" | "free_product" | "buy_x_get_y"
    value: Decimal  # amount in `currency`, or percent 0-100 (buy_x_get_y: off the product it gives); unused for free shipping
    currency: str
    starts_at: datetime
    ends_at: datetime | None = None
    minimum_amount: Decimal | None = None
    customer_id: str | None = None  # restricts the code to this platform customer
    customer_email: str | None = None
    product_ids: tuple[str, ...] = ()
    variant_ids: tuple[str, ...] = ()
    usage_limit: int | None = 1  # total uses; None = unlimited
    # False for a perk that lasts while the member holds a tier: any number of orders.
    once_per_customer: bool = True
    # buy_x_get_y: the products/variants that must be bought, and how many; `product_ids` /
    # `variant_ids` are then what the customer gets `value` percent cheaper, `gets_quantity` of them.
    buys_product_ids: tuple[str, ...] = ()
    buys_variant_ids: tuple[str, ...] = ()
    buys_quantity: int | None = None
    gets_quantity: int | None = None
    buys_label: str | None = None  # what must be bought, as the customer reads it


@dataclass(frozen=True, slots=True)
class DiscountCode:
    """A discount code that exists in the shop."""

    code: str
    platform_id: str
    created: bool = field(default=True)  # False when an existing code was found instead
