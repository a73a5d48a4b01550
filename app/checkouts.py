"""Storing checkouts that may become abandoned carts (no Flask here)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.customers import upsert_customer
from app.db import dialect_insert
from app.models import Checkout, Shop, utcnow
from connectors import types as ct


def apply_checkout(session: Session, shop: Shop, checkout: ct.Checkout) -> Checkout:
    """Store the newest snapshot of a checkout (an older one never overwrites a newer one)."""
    customer = None
    if checkout.customer is not None or checkout.email:
        customer = upsert_customer(
            session, shop, checkout.customer or ct.Customer(id=None, email=checkout.email), email=checkout.email
        )
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
    session.flush()
    return row
