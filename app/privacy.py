"""Privacy requests from the shop (Shopify's mandatory compliance webhooks). No Flask here.

`customers/data_request`: recorded as an open `DataRequest`; support exports it from the admin
page (`export_data`: profile, points and ledger, orders, consent proofs, reminders, codes) and
hands the file to the merchant, who answers the customer.

`customers/redact`: the customer's personal data goes from every row that holds it (name,
e-mail, birthday, address fingerprints, recovery links, consent details). The points, orders'
amounts and the ledger stay, keyed by ids that no longer lead to a person. Raw deliveries are
emptied by the retention sweep (`jobs.deliveries.purge_delivery_bodies`, 30 days by default,
which is Shopify's deadline).

`shop/redact`: 48 hours after an uninstall, every row of the shop goes (the shop row's
ON DELETE CASCADE). A shop that is installed again is left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, false, or_, select, update
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.models import (
    Checkout,
    ConsentEvent,
    Customer,
    DataRequest,
    IssuedCode,
    MessageStatus,
    Order,
    ReminderMessage,
    Shop,
    ShopStatus,
    utcnow,
)
from connectors import types as ct

logger = logging.getLogger(__name__)


class ShopStillInstalledError(RuntimeError):
    """shop/redact arrived for a shop that uses the app (again): nothing is erased."""


def redact_customer(session: Session, shop: Shop, request: ct.CustomerRedaction) -> int:
    """Erase the customer's personal data in this shop; returns how many customer rows matched.

    Matches the account by platform id and any row (guest or account) with the e-mail, so a
    guest history merged or not is covered; the orders named in the request are cleaned too.
    """
    now = utcnow()
    ids = list(session.scalars(
        select(Customer.id).where(Customer.shop_id == shop.id, _customer(request.customer_id, request.email))))
    if ids:
        # Rows merged into a matched account carry the same person's history.
        ids += session.scalars(select(Customer.id).where(Customer.merged_into_id.in_(ids))).all()
        session.execute(
            update(Customer).where(Customer.id.in_(ids)).values(
                email=None, first_name=None, last_name=None, birthday=None, locale=None,
                accepts_marketing=False, unsubscribed_at=now, next_winback_at=None, redacted_at=now,
                updated_at=now,
            )
        )
        session.execute(update(ConsentEvent).where(ConsentEvent.customer_id.in_(ids)).values(detail={}))
        _redact_codes(session, ids)
        session.flush()  # before expire_all below
    # Each table's rows of this person: by customer id, and by e-mail where a row keeps one.
    by_email = request.email
    orders = _any(Order.customer_id.in_(ids) if ids else None,
                  Order.email == by_email if by_email else None,
                  Order.platform_id.in_(request.order_ids) if request.order_ids else None)
    session.execute(update(Order).where(Order.shop_id == shop.id, orders).values(
        email=None, shipping_address_fingerprint=None, recovery_url=None, updated_at=now))
    checkouts = _any(Checkout.customer_id.in_(ids) if ids else None,
                     Checkout.email == by_email if by_email else None)
    session.execute(update(Checkout).where(Checkout.shop_id == shop.id, checkouts).values(
        email=None, recovery_url=None, next_reminder_at=None, updated_at=now))
    messages = _any(ReminderMessage.customer_id.in_(ids) if ids else None,
                    ReminderMessage.email == by_email if by_email else None)
    session.execute(
        update(ReminderMessage)
        .where(ReminderMessage.shop_id == shop.id, messages, ReminderMessage.status == MessageStatus.SCHEDULED)
        .values(status=MessageStatus.SUPPRESSED, reason="redacted", updated_at=now)
    )
    session.execute(update(ReminderMessage).where(ReminderMessage.shop_id == shop.id, messages).values(email=None))
    requests = _any(DataRequest.customer_id.in_(ids) if ids else None,
                    DataRequest.email == by_email if by_email else None)
    session.execute(update(DataRequest).where(DataRequest.shop_id == shop.id, requests).values(email=None))
    session.expire_all()  # the Core UPDATEs above bypassed any loaded rows
    logger.info("customer redacted", extra={"shop": shop.id, "customers": len(ids)})
    return len(ids)


def _customer(platform_id: str | None, email: str | None) -> Any:
    """The customer rows a compliance request names: by platform id, and any with its e-mail."""
    return _any(Customer.platform_id == platform_id if platform_id is not None else None,
                Customer.email == email if email is not None else None)


def _any(*conditions: Any) -> Any:
    """OR of the conditions (None stands for one that does not apply); false when none applies."""
    present = [c for c in conditions if c is not None]
    return or_(*present) if present else false()


def _redact_codes(session: Session, customer_ids: list[int]) -> None:
    """Take the e-mail out of the specs of the customers' codes (they stay valid in the shop)."""
    for code in session.scalars(select(IssuedCode).where(IssuedCode.customer_id.in_(customer_ids))):
        if code.spec.get("customer_email") is not None:
            code.spec = {**code.spec, "customer_email": None}


def redact_shop(session: Session, shop: Shop) -> None:
    """Delete the uninstalled shop and, by ON DELETE CASCADE, every row that belongs to it
    (its webhook deliveries too, on every database: migration 0013).

    Raises:
        ShopStillInstalledError: the shop is installed (again); nothing is deleted.
    """
    # Read from the row, locked on PostgreSQL: a worker's `shop` may be its batch's copy, taken
    # before another lane's transaction recorded the uninstall or a reinstall.
    locked = select(Shop.status).where(Shop.id == shop.id).with_for_update()
    if session.scalar(locked) != ShopStatus.UNINSTALLED:
        raise ShopStillInstalledError(f"shop/redact: {shop.domain} is installed, so nothing was erased")
    shop_id = shop.id
    session.expunge(shop)
    session.execute(delete(Shop).where(Shop.id == shop_id))
    logger.info("shop redacted", extra={"shop": shop_id})


def _matching_customers(session: Session, shop_id: int, platform_id: str | None, email: str | None) -> list[Customer]:
    return list(session.scalars(
        select(Customer).where(Customer.shop_id == shop_id, _customer(platform_id, email)).order_by(Customer.id)))


def record_data_request(session: Session, shop: Shop, request: ct.CustomerDataRequest,
                        delivery_id: int | None = None) -> None:
    """Record the request as open for support (once per platform request id)."""
    found = _matching_customers(session, shop.id, request.customer_id, request.email)
    stmt = dialect_insert(session, DataRequest.__table__).values(
        shop_id=shop.id, platform_request_id=request.request_id, customer_id=found[0].id if found else None,
        platform_customer_id=request.customer_id, email=request.email, order_ids=list(request.order_ids),
        delivery_id=delivery_id, received_at=utcnow(),
    )
    # The same request delivered twice (two event ids) is recorded once.
    session.execute(stmt.on_conflict_do_nothing(index_elements=["shop_id", "platform_request_id"]))
    logger.info("data request recorded", extra={"shop": shop.id, "customers": len(found)})


def export_data(session: Session, request: DataRequest) -> dict[str, Any]:
    """Return everything we hold about the request's customer, as JSON-ready values."""
    from app.loyalty.explain import customer_report

    shop = session.get(Shop, request.shop_id)
    customers = _matching_customers(session, request.shop_id, request.platform_customer_id, request.email)
    if request.customer_id is not None and all(c.id != request.customer_id for c in customers):
        row = session.get(Customer, request.customer_id)
        customers += [row] if row is not None else []
    ids = [c.id for c in customers]
    orders = _any(Order.customer_id.in_(ids) if ids else None,
                  Order.platform_id.in_(request.order_ids) if request.order_ids else None)
    return {
        "request": {"shop": shop.domain if shop else None, "platform_request_id": request.platform_request_id,
                    "customer": request.platform_customer_id, "email": request.email,
                    "orders_requested": request.order_ids, "received_at": request.received_at.isoformat()},
        "customers": [
            {
                "profile": {k: _json(getattr(c, k)) for k in (
                    "platform_id", "email", "first_name", "last_name", "locale", "birthday", "accepts_marketing",
                    "consent_source", "consent_at", "unsubscribed_at", "banned_at", "ban_reason", "tier",
                    "referral_code", "last_order_at", "created_at", "redacted_at")},
                "points": customer_report(session, c, shop),
                "consent_events": [
                    {"kind": e.kind, "source": e.source, "detail": e.detail, "at": e.created_at.isoformat()}
                    for e in session.scalars(select(ConsentEvent).where(ConsentEvent.customer_id == c.id)
                                             .order_by(ConsentEvent.id))
                ],
                "reminders": [
                    {"campaign": m.campaign, "status": m.status.value, "email": m.email, "due_at": _json(m.due_at),
                     "sent_at": _json(m.sent_at)}
                    for m in session.scalars(select(ReminderMessage).where(ReminderMessage.customer_id == c.id)
                                             .order_by(ReminderMessage.id))
                ],
                "codes": [
                    {"code": code.code, "purpose": code.purpose, "status": code.status.value,
                     "created_at": code.created_at.isoformat()}
                    for code in session.scalars(select(IssuedCode).where(IssuedCode.customer_id == c.id)
                                                .order_by(IssuedCode.id))
                ],
            }
            for c in customers
        ],
        "orders": [
            {"platform_id": o.platform_id, "number": o.number, "email": o.email, "status": o.status,
             "currency": o.currency, "merchandise": _json(o.merchandise), "total": _json(o.total),
             "paid_at": _json(o.paid_at), "cancelled_at": _json(o.cancelled_at)}
            for o in session.scalars(select(Order).where(Order.shop_id == request.shop_id, orders).order_by(Order.id))
        ],
    }


def _json(value: Any) -> Any:
    """A column value as JSON: times and dates in ISO 8601, money as a decimal string."""
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
