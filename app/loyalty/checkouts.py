"""Storing checkouts that may become abandoned carts (no Flask here)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.messaging import consent, reminders
from app.loyalty.customers import upsert_customer
from app.db import dialect_insert
from app.models import Checkout, Shop, utcnow
from app.program import current_program
from connectors import types as ct


def apply_checkout(session: Session, shop: Shop, checkout: ct.Checkout) -> Checkout:
    """Store the newest snapshot of a checkout (an older one never overwrites a newer one)."""
    customer = None
    if checkout.customer is not None or checkout.email:
        customer = upsert_customer(
            session, shop, checkout.customer or ct.Customer(id=None, email=checkout.email), email=checkout.email
        )
    if (customer is not None and checkout.buyer_accepts_marketing
            and (checkout.customer is None or checkout.customer.accepts_marketing is None)):
        # The checkout's own tick-box is the only statement about a guest's consent.
        consent.apply_checkout_consent(session, shop, customer, checkout.id, checkout.updated_at)
    now = utcnow()
    stmt = dialect_insert(session, Checkout.__table__).values(
        shop_id=shop.id,
        platform_id=checkout.id,
        currency=checkout.currency,
        total=checkout.total,
        created_at=now,
        updated_at=now,
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["shop_id", "platform_id"]))
    row = session.scalars(
        select(Checkout).where(Checkout.shop_id == shop.id, Checkout.platform_id == checkout.id)
    ).one()
    if row.platform_updated_at is None or checkout.updated_at >= row.platform_updated_at:
        row.customer_id = customer.id if customer else row.customer_id
        row.email = checkout.email or row.email
        row.currency = checkout.currency
        row.total = checkout.total
        row.recovery_url = checkout.recovery_url
        row.platform_created_at = checkout.created_at
        row.platform_updated_at = checkout.updated_at
    if checkout.completed_at and row.completed_at is None:
        row.completed_at = checkout.completed_at
    if customer is not None and customer.redacted_at is not None:  # app.privacy erased them
        # A snapshot arriving after the erasure keeps no e-mail or link, and no reminder goes out.
        row.email = row.recovery_url = row.next_reminder_at = None
    elif row.platform_updated_at == checkout.updated_at:  # this snapshot is the newest we hold
        _, program = current_program(session, shop)
        reminders.note_cart_content(row, reminders.cart_fingerprint(checkout), checkout.updated_at, program)
    session.flush()
    return row


def checkout_from_order(shop: Shop, order: ct.Order) -> ct.Checkout:
    """Treat an unpaid WooCommerce order (checkout-draft, pending, failed) as a checkout.

    WooCommerce has no abandoned-cart webhook; its recovery link is the order's payment_url
    (for drafts, which have none, the shop's cart page).
    """
    recovery = order.recovery_url if order.status != ct.OrderStatus.DRAFT else None
    return ct.Checkout(
        id=f"order-{order.id}", currency=order.currency, total=order.total, subtotal=order.merchandise,
        created_at=order.created_at, updated_at=order.updated_at, customer=order.customer, email=order.email,
        recovery_url=recovery or f"{shop.domain}/cart/", line_items=order.line_items,
    )


_CHECKOUTS = Checkout.__table__
# A plain UPDATE (no row loaded): every paid order runs it, and most have no checkout row here.
_COMPLETE = (
    update(_CHECKOUTS)
    .where(_CHECKOUTS.c.shop_id == bindparam("b_shop_id"), _CHECKOUTS.c.platform_id == bindparam("b_platform_id"),
           _CHECKOUTS.c.completed_at.is_(None))
    .values(completed_at=bindparam("when"), next_reminder_at=None)
)


def complete(session: Session, shop: Shop, platform_id: str, when: datetime) -> None:
    """Mark a checkout completed (its order was paid): its reminders stop."""
    complete_many(session, shop, [(platform_id, when)])


def complete_many(session: Session, shop: Shop, completed: list[tuple[str, datetime]]) -> None:
    """Mark checkouts completed, each (platform id, when) (one UPDATE, executemany)."""
    if completed:
        session.execute(_COMPLETE, [{"b_shop_id": shop.id, "b_platform_id": platform_id, "when": when}
                                    for platform_id, when in completed])
