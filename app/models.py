"""The schema (SQLAlchemy 2 typed declarative). Changes go through Alembic migrations.

Designed for the whole product, not only the foundation:
- `PointLot` carries the state of points (pending -> available -> spent / expired / reversed), its
  expiry and the rule that awarded it; `LedgerEntry` is the append-only story of every change,
  unique on its natural key so duplicates and races settle in the database.
- customers keep consent, ban and tier columns that the program and reminder features fill.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; store timezone-aware UTC times only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Money(TypeDecorator[Decimal]):
    """An exact decimal amount: NUMERIC on PostgreSQL, text on SQLite (which has no decimal type)."""

    impl = Numeric(18, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(18, 4, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("money must be Decimal, never float")
        amount = Decimal(value)
        return str(amount) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        amount = Decimal(str(value))
        # NUMERIC(18, 4) reads back "49.9000"; show cents like SQLite's stored text does.
        cents = amount.quantize(Decimal("0.01"))
        return cents if cents == amount else amount


def _enum(cls: type[enum.Enum], name: str) -> SAEnum:
    return SAEnum(
        cls,
        name=name,
        native_enum=False,
        length=20,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Platform(enum.StrEnum):
    SHOPIFY = "shopify"
    WOOCOMMERCE = "woocommerce"


class ShopStatus(enum.StrEnum):
    ACTIVE = "active"
    UNINSTALLED = "uninstalled"


class DeliveryStatus(enum.StrEnum):
    RECEIVED = "received"  # committed, waiting for a worker
    PROCESSED = "processed"
    FAILED = "failed"  # visible in the admin with its reason, replayable


class LotState(enum.StrEnum):
    PENDING = "pending"  # inside the return window
    AVAILABLE = "available"
    SPENT = "spent"
    EXPIRED = "expired"
    REVERSED = "reversed"  # taken back by a refund or cancellation


class Shop(Base):
    __tablename__ = "shops"
    __table_args__ = (UniqueConstraint("platform", "domain"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    # Shopify: "x.myshopify.com"; WooCommerce: the store base URL, as the connector normalizes it.
    domain: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Berlin")
    language: Mapped[str] = mapped_column(String(8), default="de")
    brand_color: Mapped[str | None] = mapped_column(String(7))
    mail_from: Mapped[str | None] = mapped_column(String(320))  # "Shop <hallo@shop.example>"
    address: Mapped[str | None] = mapped_column(Text)  # imprint line for e-mail footers
    status: Mapped[ShopStatus] = mapped_column(_enum(ShopStatus, "shop_status"), default=ShopStatus.ACTIVE)
    # Fernet tokens (app.crypto); never stored or logged in clear.
    webhook_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    webhook_secret_old_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    webhook_secret_old_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    api_credentials_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The secret our WordPress plugin signs its calls with (WooCommerce; `flask shops plugin-secret`).
    plugin_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Shopify's expiring offline token (the pair itself is in api_credentials_enc): when the
    # access token and the refresh token end, the scopes granted at install, and when a refresh
    # was refused (the merchant must install again; outgoing calls wait until then).
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    granted_scopes: Mapped[str | None] = mapped_column(String(1024))
    needs_reauth_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A worker refreshing the token claims it until then; the others wait and re-read.
    token_refresh_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    installed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last cheap API call made with the shop's credentials (app.shop_health), and its refusal.
    credentials_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    credentials_error: Mapped[str | None] = mapped_column(Text)
    # The reconciliation (jobs.reconcile): when it last finished, and how many events it brought
    # in that no webhook had (all runs together).
    last_reconciled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reconciled_recovered: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    program_version: Mapped[int] = mapped_column(Integer, default=1)
    uninstalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProgramVersion(Base):
    """Every version of a shop's program document; the newest is in force, older ones are kept."""

    __tablename__ = "program_versions"
    __table_args__ = (UniqueConstraint("shop_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(255), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("shop_id", "platform_id"),
        # One guest row per e-mail; rows with a platform id are keyed by that id instead.
        Index(
            "uq_customers_guest_email",
            "shop_id",
            "email",
            unique=True,
            sqlite_where=text("platform_id IS NULL AND merged_into_id IS NULL"),
            postgresql_where=text("platform_id IS NULL AND merged_into_id IS NULL"),
        ),
        Index("ix_customers_shop_id_email", "shop_id", "email"),
        Index("ix_customers_shop_id_created_at", "shop_id", "created_at"),
        Index("ix_customers_next_winback_at_id", "next_winback_at", "id"),
        # Admin search by any part of the e-mail or name (migration 0021): trigram GIN indexes on
        # PostgreSQL (pg_trgm), which serve LIKE/ILIKE '%part%'; plain indexes on SQLite.
        Index("ix_customers_email_search", "email", postgresql_using="gin", postgresql_ops={"email": "gin_trgm_ops"}),
        Index("ix_customers_first_name_search", "first_name", postgresql_using="gin",
              postgresql_ops={"first_name": "gin_trgm_ops"}),
        Index("ix_customers_last_name_search", "last_name", postgresql_using="gin",
              postgresql_ops={"last_name": "gin_trgm_ops"}),
        # The admin's customer list filtered by tier, or to banned customers, in e-mail order.
        Index("ix_customers_shop_id_tier_email", "shop_id", "tier", "email"),
        Index("ix_customers_shop_id_referral_code", "shop_id", "referral_code"),  # search by referral code
        Index("ix_customers_banned_shop_id_email", "shop_id", "email",
              sqlite_where=text("banned_at IS NOT NULL"), postgresql_where=text("banned_at IS NOT NULL")),
        # The customer list sorted by last name or last order, one page after another (migration 0028).
        Index("ix_customers_shop_id_last_name_id", "shop_id", "last_name", "id"),
        Index("ix_customers_shop_id_last_order_at_id", "shop_id", "last_order_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform_id: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str | None] = mapped_column(String(16))
    accepts_marketing: Mapped[bool | None] = mapped_column(Boolean)
    consent_source: Mapped[str | None] = mapped_column(String(64))
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    banned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ban_reason: Mapped[str | None] = mapped_column(Text)
    birthday: Mapped[date | None] = mapped_column(Date)
    tier: Mapped[str | None] = mapped_column(String(64))
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Downgrades happen only when the current tier period ends (evaluated by a scheduled job).
    tier_period_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    referral_code: Mapped[str | None] = mapped_column(String(64))
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Win-back bookkeeping, refreshed at every paid order: the sweep selects by the indexed
    # next_winback_at, so its cost follows the number of customers due, not the number of customers.
    last_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_winback_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    platform_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the shop asked us to erase the customer's personal data (app.privacy); no profile
    # is stored for them again.
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def display_name(self) -> str:
        """Return the name support staff see (e-mail when there is no name)."""
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or self.email or f"customer {self.id}"


class CustomerBalance(Base):
    """A customer's points by bucket, kept by the database: the sums of `point_lots.remaining` of
    the customer's available and pending lots, so the admin can sort and filter a million customers
    by balance from an index (migration 0028).

    Nothing in the application writes this table. Triggers in migration 0028 do, in the same
    statement as the change they follow: a row (0, 0) for every new customer, and for every lot
    inserted, deleted or changed (remaining, state or customer) the difference to both buckets.
    Read it; to change a balance, change lots as always (`app.loyalty.ledger`).
    """

    __tablename__ = "customer_balances"
    __table_args__ = (Index("ix_customer_balances_shop_id_available_customer_id", "shop_id", "available",
                            "customer_id"),)

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    available: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    pending: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class AnalyticsReport(Base):
    """The analytics page's newest report of a shop and period, computed by the worker
    (`app.loyalty.analytics`): the figures as tagged JSON, when and how fast they were computed."""

    __tablename__ = "analytics_reports"
    __table_args__ = (UniqueConstraint("shop_id", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(16))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


class Order(Base):
    """The newest normalized snapshot of a platform order plus what we derived from it."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("shop_id", "platform_id"),
        Index("ix_orders_customer_id_paid_at", "customer_id", "paid_at"),
        Index("ix_orders_shop_id_paid_at", "shop_id", "paid_at"),
        Index("ix_orders_shop_id_number", "shop_id", "number"),  # admin search by order number
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    number: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str | None] = mapped_column(String(20))  # connectors.types.OrderStatus value
    platform_status: Mapped[str | None] = mapped_column(String(40))
    is_paid: Mapped[bool] = mapped_column(Boolean, default=False)
    currency: Mapped[str | None] = mapped_column(String(3))
    presentment_currency: Mapped[str | None] = mapped_column(String(3))
    merchandise: Mapped[Decimal | None] = mapped_column(Money)
    merchandise_tax: Mapped[Decimal | None] = mapped_column(Money)
    taxes_included: Mapped[bool] = mapped_column(Boolean, default=False)
    gift_card_paid: Mapped[Decimal | None] = mapped_column(Money)
    shipping: Mapped[Decimal | None] = mapped_column(Money)
    total: Mapped[Decimal | None] = mapped_column(Money)
    total_weight_grams: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    discount_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    shipping_address_fingerprint: Mapped[str | None] = mapped_column(String(64))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    platform_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The platform's updated_at of the snapshot we hold: older snapshots never overwrite newer ones.
    platform_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recovery_url: Mapped[str | None] = mapped_column(Text)
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    # Its merchandise lines as the newest snapshot lists them (earning by product):
    # [{"id", "product_id", "variant_id", "vendor", "merchandise", "tax"}], amounts as text.
    # None for an order stored before they were kept.
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    refunds: Mapped[list[OrderRefund]] = relationship(
        back_populates="order", order_by="OrderRefund.id", lazy="selectin"
    )


class OrderRefund(Base):
    """A refund we know of, from refunds/create or from an order snapshot, whichever came first."""

    __tablename__ = "order_refunds"
    __table_args__ = (UniqueConstraint("order_id", "platform_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    platform_id: Mapped[str] = mapped_column(String(64))
    merchandise: Mapped[Decimal] = mapped_column(Money)
    total: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    platform_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When `merchandise` became the refund's own line detail (WooCommerce `orders/N/refunds`);
    # None while it is the share estimated from the order's refund total. A detailed figure is
    # never overwritten by an estimate.
    detailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The refunded merchandise by order line, [[line id, amount as text], ...], when the platform
    # named the lines (None: it did not, or the refund was stored before they were kept).
    lines: Mapped[list[list[str]] | None] = mapped_column(JSON)

    order: Mapped[Order] = relationship(back_populates="refunds")


class ProductFacts(Base):
    """What earning rules read of a product that an order line does not carry: its collections
    (Shopify) or categories (WooCommerce) and its tags, looked up from the platform's API by the
    worker before an order is decided, and kept for `app.loyalty.products.MAX_AGE`.

    `found` False: the platform does not know the product (deleted); it has no collections or tags.
    """

    __tablename__ = "product_facts"
    __table_args__ = (UniqueConstraint("shop_id", "product_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(String(64))
    found: Mapped[bool] = mapped_column(Boolean, default=True)
    # Each as [id, handle or slug, title or name], so a rule may name any of them.
    collections: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    tags: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderTransaction(Base):
    """A gift-card payment or refund of an order (Shopify order_transactions/create), stored once.

    An order's `gift_card_paid` is derived from these rows (sales and captures minus refunds),
    never accumulated: a duplicate delivery meets the unique key and adds nothing.
    """

    __tablename__ = "order_transactions"
    __table_args__ = (UniqueConstraint("order_id", "platform_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    platform_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))  # sale | capture | refund
    gateway: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Money)  # positive, in the shop currency
    currency: Mapped[str] = mapped_column(String(3))
    platform_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Checkout(Base):
    """A checkout that may be abandoned (input of the cart reminders)."""

    __tablename__ = "checkouts"
    __table_args__ = (
        UniqueConstraint("shop_id", "platform_id"),
        Index("ix_checkouts_next_reminder_at_id", "next_reminder_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(Money)
    recovery_url: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    platform_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    platform_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The reminder sequence: restarts (sequence + 1) whenever the cart's content changes.
    content_fingerprint: Mapped[str | None] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    sequence_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_step: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """The inbox: every accepted delivery, committed before we answer the platform."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("shop_id", "dedupe_key"),
        Index("ix_webhook_deliveries_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # Enforced on every database (migration 0013): erasing a shop deletes its deliveries, and the
    # webhook INSERT for a shop erased after the receiver read it is refused (app.inbox).
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(20))
    topic: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    # On PostgreSQL the table's toast_tuple_target is 4080 (migration 0010): a compressed body up to
    # that size stays in the row instead of a TOAST relation (one heap and one index insert less).
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.RECEIVED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the retention sweep emptied body and headers (they hold the customer's personal data);
    # the row stays, because ledger entries name the delivery that caused them.
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How it reached us: `webhook` (the platform sent it), `reconcile` (our poll found a state no
    # webhook brought) or `backfill` (history read at install or by `flask shops backfill`).
    # Processing hands it to the handlers: a backfilled order sends nothing about the past.
    source: Mapped[str] = mapped_column(String(16), default="webhook", server_default="webhook")


class OAuthState(Base):
    """A single-use `state` nonce of an install: made when the merchant is sent to the platform,
    used once when the platform sends them back (the same nonce also sits in their browser's
    signed session, so a callback opened in another browser is refused)."""

    __tablename__ = "oauth_states"
    __table_args__ = (UniqueConstraint("nonce", name="uq_oauth_states_nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32))
    shop_domain: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PlatformWebhook(Base):
    """A webhook we created in a shop by API (WooCommerce: one per topic), and its last known state."""

    __tablename__ = "platform_webhooks"
    __table_args__ = (UniqueConstraint("shop_id", "topic", name="uq_platform_webhooks_shop_id_topic"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(64))
    platform_id: Mapped[str | None] = mapped_column(String(64))  # None until the store answered
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | active | disabled | ...
    error: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DataRequest(Base):
    """A shop's request for what we hold about a customer (Shopify customers/data_request),
    open until support exports it from the admin page and hands it to the merchant."""

    __tablename__ = "data_requests"
    __table_args__ = (
        UniqueConstraint("shop_id", "platform_request_id"),
        Index("ix_data_requests_shop_id_exported_at", "shop_id", "exported_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform_request_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    platform_customer_id: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    order_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    delivery_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    exported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exported_by: Mapped[str | None] = mapped_column(String(320))  # the staff user's e-mail


class Backfill(Base):
    """A shop's history being brought in (jobs.backfill): the merchant's choice, where the reading
    stopped (resumed from there after a crash) and how far it got. One row per shop."""

    __tablename__ = "backfills"
    __table_args__ = (UniqueConstraint("shop_id", name="uq_backfills_shop_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    # points: orders paid at or after `award_from` earn points; tiers: none do (tiers and spend only)
    mode: Mapped[str] = mapped_column(String(16))
    # Orders created at or after this are read (None: as far back as the platform gives).
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    award_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Orders created before this are history; later ones come by webhook (a stable end for paging).
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    # running (reading pages) | processing (all read; the worker is still on them) | done | failed
    status: Mapped[str] = mapped_column(String(16))
    # Where to go on: Shopify's page cursor, WooCommerce's next page number (as text).
    cursor: Mapped[str | None] = mapped_column(Text)
    orders_read: Mapped[int] = mapped_column(Integer, default=0)
    orders_new: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    orders_total: Mapped[int | None] = mapped_column(Integer)  # what the platform says there are, if it says
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobCursor(Base):
    """Where a sweep over an append-only table stopped (e.g. the delivery retention sweep's last id),
    so the next run starts there instead of reading every row again."""

    __tablename__ = "job_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class PointLot(Base):
    """Points earned together, with their state, expiry and the rule that awarded them."""

    __tablename__ = "point_lots"
    __table_args__ = (
        Index("ix_point_lots_customer_id_state", "customer_id", "state"),
        Index("ix_point_lots_state_available_at", "state", "available_at"),
        Index("ix_point_lots_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    points: Mapped[int] = mapped_column(Integer)  # as awarded
    remaining: Mapped[int] = mapped_column(Integer)  # not yet spent, expired or reversed
    state: Mapped[LotState] = mapped_column(_enum(LotState, "lot_state"))
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The rule as applied: {"rule": "order", "program_version": 1, "points_per_unit": "1",
    # "multiplier": "1", "base": "25.00", "currency": "EUR"}. Refunds are computed from this.
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LedgerEntry(Base):
    """One append-only change to a customer's points, and why.

    `delta` is the change of the total; `pending_delta` and `available_delta` split it by bucket
    (a lot becoming available is 0 = -N pending + N available). `shortfall` records points a
    reversal could not take back because they were already spent.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("shop_id", "source_type", "source_id", "reason"),
        Index("ix_ledger_entries_customer_id_id", "customer_id", "id"),
        Index("ix_ledger_entries_reason_created_at", "reason", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("point_lots.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    delivery_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("webhook_deliveries.id", ondelete="SET NULL")
    )
    delta: Mapped[int] = mapped_column(Integer)
    pending_delta: Mapped[int] = mapped_column(Integer, default=0)
    available_delta: Mapped[int] = mapped_column(Integer, default=0)
    shortfall: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(32))
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The installation's administrator: owner of every shop, present and future (`flask staff
    # create --admin`). Everyone else sees only the shops `staff_shop_roles` gives them.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # The admin's language for this user ("de", "en"); None: the language of their shops.
    language: Mapped[str | None] = mapped_column(String(8))
    # The optional second factor: a TOTP secret (Fernet token, app.crypto) once confirmed, and the
    # last time step a code was accepted for, so each code signs in once.
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


class StaffRole(enum.StrEnum):
    OWNER = "owner"  # the program, the shop's staff and settings, the audit log; and all of support
    SUPPORT = "support"  # view, adjust within the limit, redeem, resend, ban, unsubscribe, replay


class StaffShopRole(Base):
    """What one staff user may do in one shop. No row: the shop does not exist for them (404)."""

    __tablename__ = "staff_shop_roles"
    __table_args__ = (Index("ix_staff_shop_roles_shop_id", "shop_id"),)

    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole, "staff_role"))
    # Support: the most points one manual adjustment may add or remove (the owner sets it).
    adjust_limit: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    granted_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffAuditEntry(Base):
    """One staff action: who, what, on which subject, and the state before and after.

    Written in the same transaction as the action it records. `shop_id` is None for actions on
    a staff account itself (second factor, language).
    """

    __tablename__ = "staff_audit_log"
    __table_args__ = (Index("ix_staff_audit_log_shop_id_id", "shop_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    staff_email: Mapped[str] = mapped_column(String(320))  # kept when the account is deleted
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))  # "customer 12", "delivery 5", "staff 3"
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffLoginFailure(Base):
    """A failed sign-in (password or second factor), counted per account and per address.

    `key_digest` is an HMAC of the normalised e-mail or the client address (no personal data in
    clear); rows older than the throttling window are deleted as new failures are recorded.
    """

    __tablename__ = "staff_login_failures"
    __table_args__ = (Index("ix_staff_login_failures_scope_key_digest_failed_at", "scope", "key_digest", "failed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # "account" | "address"
    key_digest: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffSignIn(Base):
    """A staff sign-in the server knows: the cookie names it, and signing out deletes it, so a
    copied cookie stops working. Only a digest of the cookie's random token is stored."""

    __tablename__ = "staff_sign_ins"
    __table_args__ = (Index("ix_staff_sign_ins_staff_id", "staff_id"),)

    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PluginNonce(Base):
    """A nonce our WordPress plugin signed a call with: each is accepted once per shop (the
    primary key settles it), and rows older than the replay window are purged hourly."""

    __tablename__ = "plugin_nonces"
    __table_args__ = (Index("ix_plugin_nonces_seen_at", "seen_at"),)

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CodeStatus(enum.StrEnum):
    PENDING = "pending"  # recorded, the platform call has not succeeded yet
    CREATED = "created"  # exists in the shop
    FAILED = "failed"  # the platform refused for good; see `error`


class IssuedCode(Base):
    """A discount code we create in the shop: written `pending` before the API call (an outbox).

    `purpose` + `source_key` is unique, so "once per customer" incentives and retried jobs settle
    in the database. The code itself is derived from the row's purpose and source, so a retry
    looks up the same code instead of creating a second one.
    """

    __tablename__ = "issued_codes"
    __table_args__ = (
        UniqueConstraint("shop_id", "purpose", "source_key"),
        UniqueConstraint("shop_id", "code"),
        Index("ix_issued_codes_status_created_at", "status", "created_at"),
        Index("ix_issued_codes_ends_early_at", "ends_early_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    # reward | second_purchase | bounce_back | referral | tier_discount | cart | winback
    purpose: Mapped[str] = mapped_column(String(32))
    source_key: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # connectors.types.DiscountSpec as JSON
    status: Mapped[CodeStatus] = mapped_column(_enum(CodeStatus, "code_status"), default=CodeStatus.PENDING)
    platform_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A tier perk of a member who left the tier (or whose period was renewed): the code must be
    # switched off in the shop from this time (an outbox, written before the call) ...
    ends_early_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # ... and the shop confirmed it at this time.
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why a bounce-back code is taken back (its order "cancelled", "refunded" or "deleted"); set
    # with `ends_early_at`, in the same UPDATE.
    end_reason: Mapped[str | None] = mapped_column(String(32))
    # When we learned the code was used (an order of ours named it, or the shop counted a use):
    # a used bounce-back code is never taken back.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RedemptionStatus(enum.StrEnum):
    PENDING = "pending"  # points deducted, code being created
    CREATED = "created"  # code exists in the shop
    FAILED = "failed"  # the shop refused; points given back


class Redemption(Base):
    """A reward bought with points. Points are deducted when this row is written."""

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("shop_id", "idempotency_key"),
        Index("ix_redemptions_shop_id_created_at", "shop_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    reward_name: Mapped[str] = mapped_column(String(80))
    reward: Mapped[dict[str, Any]] = mapped_column(JSON)  # the reward as it was when redeemed
    program_version: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # auto | staff | customer
    actor: Mapped[str | None] = mapped_column(String(320))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    status: Mapped[RedemptionStatus] = mapped_column(
        _enum(RedemptionStatus, "redemption_status"), default=RedemptionStatus.PENDING
    )
    issued_code_id: Mapped[int | None] = mapped_column(ForeignKey("issued_codes.id"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ReferralStatus(enum.StrEnum):
    PENDING = "pending"  # friend's first order paid; waiting for its return window
    REWARDED = "rewarded"
    REJECTED = "rejected"  # a fraud rule or a refund; `reason` says which (`reversed_at`: after the reward)


class Referral(Base):
    """A friend's first order that used a member's referral code."""

    __tablename__ = "referrals"
    __table_args__ = (
        UniqueConstraint("shop_id", "referred_customer_id"),
        Index("ix_referrals_status_qualifies_at", "status", "qualifies_at"),
        Index("ix_referrals_referrer_id_created_at", "referrer_id", "created_at"),
        Index("ix_referrals_shop_id_created_at", "shop_id", "created_at"),
        # Each place among a member's rewarded referrals is held once: two settlements at the
        # same moment cannot both be "the 3rd" (app.loyalty.referrals.settle).
        Index("uq_referrals_referrer_id_place", "referrer_id", "place", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    referrer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    referred_customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    code: Mapped[str] = mapped_column(String(64))
    status: Mapped[ReferralStatus] = mapped_column(_enum(ReferralStatus, "referral_status"))
    reason: Mapped[str | None] = mapped_column(String(64))
    qualifies_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # While rewarded: its place among the member's rewarded referrals (1 = the first), which
    # decides the referral step it gave; None otherwise (a reversal frees the place).
    place: Mapped[int | None] = mapped_column(Integer)
    # When a rewarded referral was reversed (the friend's order refunded or cancelled later).
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CustomerMetafields(Base):
    """The loyalty metafields a Shopify shop holds for one customer, as we last wrote them.

    `dirty_since` is set when something they show may have changed (a sweep marks it from new
    ledger entries and tier changes) and cleared once the shop holds the current values; a write
    happens only for values that differ from `written`.
    """

    __tablename__ = "customer_metafields"
    __table_args__ = (Index("ix_customer_metafields_shop_id_dirty_since", "shop_id", "dirty_since"),)

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    written: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    dirty_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TierTagStatus(enum.StrEnum):
    PENDING = "pending"  # the shop may not show the member's tier yet: a job writes it
    WRITTEN = "written"  # the shop shows what `written` says
    FAILED = "failed"  # the shop refused for good; see `error`
    SKIPPED = "skipped"  # nothing can be written (a guest has no account in the shop); see `error`


class CustomerTierTag(Base):
    """A member's tier as the shop shows it (a Shopify customer tag, a WooCommerce customer meta).

    The desired state is the customer's `tier` (and the program's `tier_in_shop`); a tier change
    marks the row `pending` and bumps `generation` in its own transaction (an outbox). The job
    writes the difference between what is wanted then and `written` (what we last wrote, so only
    our own tag is ever removed) and marks the row `written` only when no newer change came meanwhile.
    """

    __tablename__ = "customer_tier_tags"
    __table_args__ = (Index("ix_customer_tier_tags_shop_id_status", "shop_id", "status"),)

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    status: Mapped[TierTagStatus] = mapped_column(_enum(TierTagStatus, "tier_tag_status"),
                                                  default=TierTagStatus.PENDING)
    # Bumped by every change that may change what the shop should show.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    # The label the shop holds from us (Shopify: our tag; WooCommerce: the meta's value); None: nothing.
    written: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TierChange(Base):
    """Every tier a customer entered or left, and why (input of the tier-change notice)."""

    __tablename__ = "tier_changes"
    __table_args__ = (Index("ix_tier_changes_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    from_tier: Mapped[str | None] = mapped_column(String(64))
    to_tier: Mapped[str | None] = mapped_column(String(64))
    metric_value: Mapped[Decimal] = mapped_column(Money)
    reason: Mapped[str] = mapped_column(String(32))  # upgrade | downgrade | backfill
    program_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OrderTask(Base):
    """Something to do to an order in the shop (tag or note a gift with purchase), done once."""

    __tablename__ = "order_tasks"
    __table_args__ = (UniqueConstraint("order_id", "kind", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    kind: Mapped[str] = mapped_column(String(32))  # gift
    key: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[CodeStatus] = mapped_column(_enum(CodeStatus, "task_status"), default=CodeStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MessageStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for due_at (deferred by cap or quiet hours keeps this state)
    SENDING = "sending"  # claimed by a worker; the SMTP handover is under way
    SENT = "sent"
    SUPPRESSED = "suppressed"  # not sent, on purpose: `reason` says why
    FAILED = "failed"  # gave up after retries; `error` says why


class ReminderMessage(Base):
    """One reminder or notice to one customer: the "reminder sent" row.

    Unique on (shop, campaign, subject_key, step), so overlapping sweeps, retried jobs and
    duplicate webhooks end in one row, and the row's status guards the send.
    """

    __tablename__ = "reminder_messages"
    __table_args__ = (
        UniqueConstraint("shop_id", "campaign", "subject_key", "step"),
        Index("ix_reminder_messages_status_due_at", "status", "due_at"),
        Index("ix_reminder_messages_customer_id_sent_at", "customer_id", "sent_at"),
        Index("ix_reminder_messages_shop_id_id", "shop_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    # cart | winback | second_purchase | expiry | tier_change | points_earned | doi
    campaign: Mapped[str] = mapped_column(String(32))
    subject_key: Mapped[str] = mapped_column(String(128))  # checkout:seq, customer:lapse, lot id, ...
    step: Mapped[int] = mapped_column(Integer, default=1)
    marketing: Mapped[bool] = mapped_column(Boolean)
    email: Mapped[str | None] = mapped_column(String(320))
    checkout_id: Mapped[int | None] = mapped_column(ForeignKey("checkouts.id"))
    status: Mapped[MessageStatus] = mapped_column(_enum(MessageStatus, "message_status"))
    reason: Mapped[str | None] = mapped_column(String(64))  # why suppressed or last deferred
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    code_id: Mapped[int | None] = mapped_column(ForeignKey("issued_codes.id"))
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attributed_order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    attributed_revenue: Mapped[Decimal | None] = mapped_column(Money)
    attributed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ConsentEvent(Base):
    """Timestamped proof of every consent change (platform, double opt-in, unsubscribe)."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    # granted | revoked | unsubscribed | doi_requested | doi_confirmed
    kind: Mapped[str] = mapped_column(String(32))
    # shopify | woocommerce | checkout (its tick-box; detail names it) | double_opt_in | unsubscribe_link | staff
    source: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VoucherPool(Base):
    """Codes a partner gave the shop (a coffee roaster's, a travel partner's vouchers), offered as
    a `partner_voucher` reward that names the pool. Pools are never deleted (a program version may
    name one); uploads only append codes."""

    __tablename__ = "voucher_pools"
    __table_args__ = (UniqueConstraint("shop_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))  # what a reward's `pool` names
    partner: Mapped[str | None] = mapped_column(String(120))  # who gave the codes (for the owner)
    created_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VoucherCode(Base):
    """One partner code of a pool: unused until a redemption claims it (`redemption_id`), which it
    keeps for good. A code is unique in its shop (so in its pool too)."""

    __tablename__ = "voucher_codes"
    __table_args__ = (
        UniqueConstraint("shop_id", "code"),
        UniqueConstraint("redemption_id"),
        # The claim and the count of codes left: a pool's unclaimed codes in upload order.
        Index("ix_voucher_codes_pool_id_redemption_id_id", "pool_id", "redemption_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("voucher_pools.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the partner's own expiry, if given
    redemption_id: Mapped[int | None] = mapped_column(ForeignKey("redemptions.id"))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
