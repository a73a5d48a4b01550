"""Builders for the common model, so domain tests can say exactly the amounts they mean."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from connectors import types as ct

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)


def order(
    order_id: str,
    amount: str,
    *,
    email: str = "kundin@example.test",
    customer_id: str | None = "c1",
    paid: bool = True,
    paid_at: datetime = T0,
    updated_at: datetime | None = None,
    refunds: tuple[tuple[str, str], ...] = (),
    status: ct.OrderStatus | None = None,
    discount_codes: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    fingerprint: str | None = None,
    grams: int = 0,
    currency: str = "EUR",
) -> ct.Order:
    """Return a normalized order of `amount` merchandise (no tax, no shipping)."""
    value = Decimal(amount)
    customer = ct.Customer(id=customer_id, email=email) if customer_id else None
    return ct.Order(
        id=order_id,
        number=f"#{order_id}",
        currency=currency,
        presentment_currency=currency,
        platform_status="paid" if paid else "pending",
        status=status or (ct.OrderStatus.PAID if paid else ct.OrderStatus.PENDING),
        is_paid=paid,
        merchandise=value,
        merchandise_tax=Decimal("0"),
        taxes_included=False,
        gift_card_paid=Decimal("0"),
        shipping=Decimal("0"),
        total=value,
        created_at=paid_at,
        updated_at=updated_at or paid_at,
        customer=customer,
        email=email,
        paid_at=paid_at if paid else None,
        refunds=tuple(
            ct.Refund(id=rid, order_id=order_id, created_at=paid_at + timedelta(days=1), merchandise=Decimal(m),
                      total=Decimal(m), currency=currency)
            for rid, m in refunds
        ),
        discount_codes=discount_codes,
        tags=tags,
        shipping_address_fingerprint=fingerprint,
        total_weight_grams=grams,
    )


def apply(shop_id: int, o: ct.Order, **kw: Any) -> None:
    """Apply an order snapshot in its own transaction, as a worker would."""
    from app.db import session_scope
    from app.models import Shop
    from app.loyalty.orders import apply_order

    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        apply_order(session, shop, o, **kw)


def program(shop_id: int, document: dict[str, Any]) -> None:
    """Save a program version for the shop."""
    from app.db import session_scope
    from app.models import Shop
    from app.program import save_program

    with session_scope() as session:
        save_program(session, session.get(Shop, shop_id), document, created_by="test")


def report(shop_id: int, email: str) -> dict[str, Any]:
    """Return the customer report (what `customers show --json` prints)."""
    from app.loyalty.customers import find_by_email
    from app.db import session_scope
    from app.loyalty.explain import customer_report

    with session_scope() as session:
        customer = find_by_email(session, shop_id, email)
        assert customer is not None, email
        return customer_report(session, customer)
