"""Applying order, refund and deletion events to our order rows (no Flask here).

Events can arrive duplicated, late or out of order. Each handler stores what it learned in a
monotonic way (an older snapshot never overwrites a newer one; paid, refunds, gift-card
transactions and cancellation only accumulate) and then calls `points.reconcile_order`, which moves
the ledger to what the order's current state deserves. Any order of the same events therefore ends
in the same balance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.loyalty import checkouts, points
from app.messaging import reminders
from app.loyalty.customers import customer_for_order
from app.db import after_commit, dialect_insert, insert_row
from app.models import Backfill, Order, OrderRefund, OrderTransaction, Shop, utcnow
from app.program import current_program
from connectors import get_connector
from connectors import types as ct

logger = logging.getLogger(__name__)


_ORDER_KEY = ["shop_id", "platform_id"]


@dataclass(frozen=True)
class History:
    """An order from the shop's past, brought in by a backfill (`jobs.backfill`): it is stored and
    counts for tiers and spend, earns points only if paid at or after `award_from` (None: never),
    and starts nothing a live order starts (reminders, codes, e-mails, referrals, gifts)."""

    award_from: datetime | None

    def earns(self, paid_at: datetime | None) -> bool:
        """Return True when an order paid at `paid_at` earns its points."""
        return self.award_from is not None and paid_at is not None and paid_at >= self.award_from


def history_for(session: Session, shop_id: int) -> History:
    """Return what the shop's backfill chose (no backfill row: history earns nothing)."""
    award_from = session.scalar(select(Backfill.award_from).where(Backfill.shop_id == shop_id))
    return History(award_from=award_from)


def lock_order(session: Session, shop: Shop, platform_id: str) -> tuple[Order, bool]:
    """Return the order row for `platform_id`, creating an empty one, locked on PostgreSQL, and
    True when this call created it.

    The lock serializes every event of one order, so their ledger arithmetic never interleaves.
    A new row comes back from the INSERT itself (and is ours alone until we commit, so it has no
    refunds yet); an existing one is read afresh with FOR UPDATE (SQLAlchemy's SQLite dialect
    leaves that out: its transactions hold the write lock).
    """
    now = utcnow()
    row = insert_row(session, Order, dict(
        shop_id=shop.id, platform_id=platform_id, is_paid=False, taxes_included=False, total_weight_grams=0,
        tags=[], discount_codes=[], test=False, created_at=now, updated_at=now,
    ), conflict_on=_ORDER_KEY)
    if row is not None:
        set_committed_value(row, "refunds", [])
        return row, True
    row = session.scalars(
        select(Order).where(Order.shop_id == shop.id, Order.platform_id == platform_id)
        .with_for_update().execution_options(populate_existing=True)
    ).one()
    return row, False


def add_refund(session: Session, shop: Shop, row: Order, refund: ct.Refund) -> None:
    """Record a refund once (refunds/create and order snapshots may both report it).

    A refund's own detail (`refund.detailed`) replaces an estimate stored before, once; an
    estimate never replaces anything.
    """
    now = utcnow()
    table = OrderRefund.__table__
    stmt = dialect_insert(session, table).values(
        shop_id=shop.id,
        order_id=row.id,
        platform_id=refund.id,
        merchandise=refund.merchandise,
        total=refund.total,
        currency=refund.currency,
        platform_created_at=refund.created_at,
        created_at=now,
        detailed_at=now if refund.detailed else None,
        lines=[[line.line_id, str(line.merchandise)] for line in refund.lines] if refund.lines else None,
    )
    if not refund.detailed:
        session.execute(stmt.on_conflict_do_nothing(index_elements=["order_id", "platform_id"]))
        return
    session.execute(stmt.on_conflict_do_update(
        index_elements=["order_id", "platform_id"],
        set_={"merchandise": stmt.excluded.merchandise, "total": stmt.excluded.total,
              "platform_created_at": stmt.excluded.platform_created_at, "detailed_at": stmt.excluded.detailed_at,
              "lines": stmt.excluded.lines},
        where=table.c.detailed_at.is_(None),
    ))


def snapshot_fields(order: ct.Order) -> dict[str, Any]:
    """Return the order row's columns that a snapshot sets, whenever it is the newest we hold.
    Pure; the monotonic facts (paid, cancelled, refunds) are not among them."""
    fields: dict[str, Any] = dict(
        number=order.number,
        email=order.email,
        status=order.status.value,
        platform_status=order.platform_status,
        currency=order.currency,
        presentment_currency=order.presentment_currency,
        merchandise=order.merchandise,
        merchandise_tax=order.merchandise_tax,
        taxes_included=order.taxes_included,
        shipping=order.shipping,
        total=order.total,
        total_weight_grams=order.total_weight_grams,
        tags=list(order.tags),
        discount_codes=list(order.discount_codes),
        shipping_address_fingerprint=order.shipping_address_fingerprint,
        platform_created_at=order.created_at,
        platform_updated_at=order.updated_at,
        recovery_url=order.recovery_url,
        test=order.test,
        lines=order_lines(order),
    )
    if order.gift_card_paid is not None:  # a Shopify order leaves it to its transactions
        fields["gift_card_paid"] = order.gift_card_paid
    return fields


def order_lines(order: ct.Order) -> list[dict[str, Any]]:
    """Return the order's merchandise lines as the order row keeps them (earning by product):
    id, product, variant, vendor, merchandise and tax, amounts as text. Gift-card lines are not
    merchandise and are left out. Pure."""
    return [
        {"id": line.id, "product_id": line.product_id, "variant_id": line.variant_id, "vendor": line.vendor,
         "merchandise": str(line.merchandise), "tax": str(line.tax)}
        for line in order.line_items if line.merchandise is not None and not line.is_gift_card
    ]


def paid_fields(order: ct.Order) -> dict[str, Any]:
    """Return the columns that record an order's payment (once: paid never turns back). Pure."""
    return {"is_paid": True, "paid_at": order.paid_at or order.updated_at}


def _copy_snapshot(row: Order, order: ct.Order) -> None:
    for name, value in snapshot_fields(order).items():
        setattr(row, name, value)


def apply_order(
    session: Session, shop: Shop, order: ct.Order, *, delivery_id: int | None = None, restored: bool = False,
    history: History | None = None,
) -> Order:
    """Store an order snapshot and bring the customer's points in line with it.

    `history`: the order comes from a backfill (see `History`).
    """
    # Loaded first (once per session): the customer's consent rules need it, and a query between
    # the customer's changes would flush them as a second UPDATE.
    _, program = current_program(session, shop)
    row, new_order = lock_order(session, shop, order.id)
    customer, new_customer = customer_for_order(session, shop, order)
    if row.customer_id is None and customer is not None:
        row.customer_id = customer.id
    newer = row.platform_updated_at is None or order.updated_at >= row.platform_updated_at
    if newer:
        _copy_snapshot(row, order)
        if order.gift_card_paid is None and row.gift_card_paid is not None:
            # Gift-card transactions came first, maybe before the order's currency was known.
            row.gift_card_paid = gift_card_paid(session, row)
        if customer is not None and customer.redacted_at is not None:  # app.privacy erased them
            row.email = row.shipping_address_fingerprint = row.recovery_url = None
    became_paid = order.is_paid and not row.is_paid
    # Monotonic facts, whatever the age of the snapshot that carries them.
    if became_paid:
        for name, value in paid_fields(order).items():
            setattr(row, name, value)
    if order.cancelled_at and row.cancelled_at is None:
        row.cancelled_at = order.cancelled_at
    if restored:
        row.deleted_at = None
    for refund in order.refunds:
        add_refund(session, shop, row, refund)
    session.flush()
    if order.refunds:
        session.expire(row, ["refunds"])  # Core inserts above are not in the loaded collection
        if any(not r.detailed for r in order.refunds) and any(r.detailed_at is None for r in row.refunds):
            # The platform gave refund totals only: its API has the lines (jobs.reconcile).
            after_commit(session, lambda: enqueue_refund_detail(shop.id, row.platform_id))
    # customer_for_order holds the customer locked: passed on, not locked again.
    locked = customer if customer is not None and customer.id == row.customer_id else None
    points.reconcile_order(session, shop, row, delivery_id=delivery_id, new_order=new_order,
                           new_customer=new_customer, customer=locked, history=history)
    if history is not None:
        # Nothing about the past: no cart, win-back or attribution; a customer first seen in the
        # history is not asked for their opt-in (`jobs.backfill.finish` sets their last order).
        if new_customer and customer is not None:
            reminders.suppress_for_history(session, customer)
        return row
    # What follows reads only rows already flushed above (orders, checkouts, reminders) and
    # changes the customer, the checkout and a reminder: one flush at commit writes them all.
    with session.no_autoflush:
        _track_checkout(session, shop, row, order, newer=newer)
        if became_paid and customer is not None:
            reminders.schedule_winback(session, customer, program, paid_now=row, new_customer=new_customer)
            reminders.attribute_order(session, customer, row, program, new_customer=new_customer)
    return row


def _orders_are_checkouts(shop: Shop) -> bool:
    """Return True when the shop's unpaid orders stand for its checkouts (the connector says:
    WooCommerce has no checkout topic)."""
    return get_connector(shop.platform.value).ORDERS_ARE_CHECKOUTS


def completed_checkouts(shop: Shop, platform_id: str, checkout_token: str | None) -> list[str]:
    """Return the platform ids of the checkouts a paid (or ended) order completes: its own
    where orders double as checkouts, and the checkout it came from. Pure."""
    ids = [f"order-{platform_id}"] if _orders_are_checkouts(shop) else []
    if checkout_token:
        ids.append(checkout_token)
    return ids


def _track_checkout(session: Session, shop: Shop, row: Order, order: ct.Order, *, newer: bool) -> None:
    """Paid orders end their checkout's reminders; unpaid orders are checkouts where orders
    double as checkouts."""
    if row.is_paid or row.cancelled_at or row.deleted_at:
        when = row.paid_at or row.cancelled_at or row.deleted_at or utcnow()
        for checkout_id in completed_checkouts(shop, row.platform_id, order.checkout_token):
            checkouts.complete(session, shop, checkout_id, when)
        return
    unpaid = (ct.OrderStatus.DRAFT, ct.OrderStatus.PENDING, ct.OrderStatus.FAILED)
    if newer and _orders_are_checkouts(shop) and order.status in unpaid and order.email:
        checkouts.apply_checkout(session, shop, checkouts.checkout_from_order(shop, order))


def enqueue_refund_detail(shop_id: int, order_platform_id: str) -> bool:
    """Enqueue the job that reads an order's refunds with their lines from the platform."""
    import hashlib

    from app.queues import PLATFORM_RETRY, enqueue_once

    tag = hashlib.sha256(order_platform_id.encode()).hexdigest()[:16]
    return enqueue_once("codes", "jobs.reconcile.fetch_refund_detail", shop_id, order_platform_id,
                        job_id=f"refund-detail-{shop_id}-{tag}", retry=PLATFORM_RETRY)


def apply_refund_details(session: Session, shop: Shop, details: ct.RefundDetails, *,
                         delivery_id: int | None = None) -> Order:
    """Store each refund's exact merchandise (in place of the estimate) and move the points to it."""
    row, new_order = lock_order(session, shop, details.order_id)
    for refund in details.refunds:
        add_refund(session, shop, row, refund)
    session.flush()
    session.expire(row, ["refunds"])
    points.reconcile_order(session, shop, row, delivery_id=delivery_id, new_order=new_order)
    return row


def apply_refund(session: Session, shop: Shop, refund: ct.Refund, *, delivery_id: int | None = None) -> Order:
    """Record a refund (even before we have seen its order) and reverse points for it."""
    row, new_order = lock_order(session, shop, refund.order_id)
    add_refund(session, shop, row, refund)
    session.flush()
    session.expire(row, ["refunds"])
    points.reconcile_order(session, shop, row, delivery_id=delivery_id, new_order=new_order)
    return row


# Gift-card transactions that move the value paid by gift card: a sale, or the capture of an
# authorization, takes money from the card; a refund puts it back. Authorizations (captured later
# or voided), voids and transactions that did not succeed move nothing.
# https://shopify.dev/docs/api/admin-rest/latest/resources/transaction (kind, status)
GIFT_CARD_GATEWAY = "gift_card"
_GIFT_CARD_PAYMENTS = frozenset({"sale", "capture"})
_GIFT_CARD_REFUNDS = frozenset({"refund"})


def counts_as_gift_card(tx: ct.OrderTransaction) -> bool:
    """Return True when the transaction changes how much of its order a gift card paid."""
    return (tx.gateway == GIFT_CARD_GATEWAY and tx.status == "success"
            and tx.kind in _GIFT_CARD_PAYMENTS | _GIFT_CARD_REFUNDS)


def gift_card_paid(session: Session, row: Order) -> Decimal:
    """Return what gift cards paid for the order: its stored payments minus refunds, never below 0.

    Derived from the stored transactions every time, so a duplicate or a replay cannot count
    twice. A transaction in another currency than the order's shop currency (a body without
    shop money) is left out: we never convert.
    """
    total = Decimal("0")
    for kind, amount, currency in session.execute(
        select(OrderTransaction.kind, OrderTransaction.amount, OrderTransaction.currency)
        .where(OrderTransaction.order_id == row.id)
    ):
        if row.currency is not None and currency != row.currency:
            logger.warning("gift-card transaction in another currency left out",
                           extra={"shop": row.shop_id, "order_id": row.id})
            continue
        total += amount if kind in _GIFT_CARD_PAYMENTS else -amount
    return max(total, Decimal("0"))


def apply_transaction(
    session: Session, shop: Shop, tx: ct.OrderTransaction, *, delivery_id: int | None = None
) -> Order | None:
    """Record a gift-card payment or refund once (even before its order) and move the order's points.

    Other transactions (cards, authorizations, failures) are not stored: None. A duplicate
    delivery meets the unique key and changes nothing.
    """
    if not counts_as_gift_card(tx):
        logger.debug("transaction without gift-card value ignored", extra={"shop": shop.id})
        return None
    row, new_order = lock_order(session, shop, tx.order_id)
    table = OrderTransaction.__table__
    stmt = dialect_insert(session, table).values(
        shop_id=shop.id,
        order_id=row.id,
        platform_id=tx.id,
        kind=tx.kind,
        gateway=tx.gateway,
        amount=tx.amount,
        currency=tx.currency,
        platform_created_at=tx.created_at,
        created_at=utcnow(),
    )
    stored = session.execute(
        stmt.on_conflict_do_nothing(index_elements=["order_id", "platform_id"]).returning(table.c.id)
    ).scalar()
    if stored is None:
        logger.debug("gift-card transaction already recorded", extra={"shop": shop.id, "order_id": row.id})
        return row
    row.gift_card_paid = gift_card_paid(session, row)
    session.flush()
    points.reconcile_order(session, shop, row, delivery_id=delivery_id, gift_card_source=str(stored),
                           new_order=new_order)
    return row


def apply_deletion(session: Session, shop: Shop, platform_id: str, *, delivery_id: int | None = None) -> Order:
    """Mark an order deleted (WooCommerce trash/delete) and take back its points."""
    row, new_order = lock_order(session, shop, platform_id)
    if row.deleted_at is None:
        row.deleted_at = utcnow()
    session.flush()
    points.reconcile_order(session, shop, row, delivery_id=delivery_id, new_order=new_order)
    return row
