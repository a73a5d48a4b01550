"""The referral program: each member's code, friends' first orders, fraud rules, rewards.

No Flask here. A referral is recorded when a paid order used a member's referral code and is
decided at once when a fraud rule applies; otherwise it waits for the order's return window and is
rewarded by `settle` (scheduled) if the order was not refunded or cancelled by then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.loyalty import codes, decide, ledger
from app.db import dialect_insert
from app.models import (
    CodeStatus,
    Customer,
    IssuedCode,
    LedgerEntry,
    Order,
    Referral,
    ReferralStatus,
    Shop,
    ShopStatus,
    utcnow,
)
from app.i18n import translations
from app.messaging.render import customer_language
from app.program import Program
from connectors import get_connector

logger = logging.getLogger(__name__)


def referral_code(shop: Shop, customer: Any, program: Program) -> dict[str, Any] | None:
    """Return the member's referral code to create (`codes.record_code` keywords: a real code in
    the shop for the friend's discount), or None when the program is off, the customer banned,
    or they have one. Pure."""
    if not program.referral.enabled or customer.banned_at is not None or customer.referral_code:
        return None
    offer = program.referral
    return dict(
        purpose="referral", source_key=str(customer.id), customer_id=customer.id,
        # For the friend, whose language nobody knows yet: the shop's.
        title=translations(customer_language(None, shop)).gettext(
            "Welcome: %(percent)s %% off your first order") % {"percent": offer.friend_discount_percent},
        kind="percentage", value=offer.friend_discount_percent, valid_days=None,
        minimum_amount=offer.friend_minimum_amount, usage_limit=None,
    )


def ensure_referral_code(session: Session, shop: Shop, customer: Customer, program: Program) -> str | None:
    """Give a member their referral code (a real code in the shop for the friend's discount)."""
    spec = referral_code(shop, customer, program)
    if spec is None:
        return customer.referral_code
    row, _ = codes.record_code(session, shop, enqueue=False, **spec)
    customer.referral_code = row.code
    return row.code


FRIEND_PATH = "/f/{shop_id}/{code}"


def shop_url(shop: Shop) -> str:
    """Return the shop's storefront address (as its connector knows it)."""
    return get_connector(shop.platform.value).storefront_url(shop.domain)


def referral_link(shop: Shop, code: str, public_url: str) -> str:
    """Return the link a member shares with friends.

    Where the platform has a link that applies the code to the visitor's cart (Shopify's
    `/discount/<code>`), that one; otherwise (core WooCommerce has none: see the connector's
    `discount_link`) our friend page (`app.web.public`): it shows the discount and the code, and
    leads to the shop.
    """
    link = get_connector(shop.platform.value).discount_link(shop.domain, code)
    return link or public_url.rstrip("/") + FRIEND_PATH.format(shop_id=shop.id, code=quote(code, safe=""))


def referral_code_row(session: Session, customer: Customer) -> IssuedCode | None:
    """Return the outbox row of the member's referral code (pending, created or failed), or None."""
    return session.scalars(
        select(IssuedCode).where(
            IssuedCode.shop_id == customer.shop_id, IssuedCode.purpose == "referral",
            IssuedCode.source_key == str(customer.id),
        )
    ).first()


@dataclass(frozen=True)
class FriendOffer:
    """What a friend's page shows for a member's code: nothing about the member."""

    shop: Shop
    code: str
    kind: str
    value: Decimal
    currency: str
    minimum_amount: Decimal | None


def friend_offer(session: Session, shop_id: int, code: str) -> FriendOffer | None:
    """Return the offer behind a referral code that exists in an active shop, else None.

    A code that is unknown, not a referral code, or not created in the shop (pending or failed)
    gives None: the page must never show a code the shop would refuse.
    """
    shop = session.get(Shop, shop_id)
    if shop is None or shop.status != ShopStatus.ACTIVE:
        return None
    row = session.scalars(
        _REFERRAL_CODE, {"shop_id": shop.id, "codes": [code.strip().upper()]}
    ).first()
    if row is None or row.status != CodeStatus.CREATED:
        return None
    spec = row.spec
    minimum = spec.get("minimum_amount")
    return FriendOffer(
        shop=shop, code=row.code, kind=spec["kind"], value=Decimal(spec["value"]),
        currency=spec.get("currency") or shop.currency, minimum_amount=Decimal(minimum) if minimum else None,
    )


_REFERRAL_CODE = select(IssuedCode).where(
    # Our codes are stored upper-case, so this uses the (shop_id, code) index.
    IssuedCode.shop_id == bindparam("shop_id"),
    IssuedCode.code.in_(bindparam("codes", expanding=True)),
    IssuedCode.purpose == "referral",
)


def _referrer_for(session: Session, shop: Shop, order: Order) -> tuple[Customer, str] | None:
    # Referral codes are ours (`codes.derive_code`), so a code without their prefix is the shop's own.
    prefix = codes.PREFIXES["referral"] + "-"
    wanted = {code for c in (order.discount_codes or []) if c and (code := c.strip().upper()).startswith(prefix)}
    if not wanted:
        return None
    row = session.scalars(_REFERRAL_CODE, {"shop_id": shop.id, "codes": sorted(wanted)}).first()
    if row is None or row.customer_id is None:
        return None
    referrer = session.get(Customer, row.customer_id)
    return (referrer, row.code) if referrer is not None else None


def _reject_reason(session: Session, shop: Shop, program: Program, referrer: Customer, friend: Customer,
                   order: Order, now: datetime) -> str | None:
    if referrer.id == friend.id or (referrer.email and referrer.email == friend.email):
        return "self_referral"
    if order.shipping_address_fingerprint:
        same_address = session.scalar(
            select(func.count()).select_from(Order).where(
                Order.customer_id == referrer.id,
                Order.shipping_address_fingerprint == order.shipping_address_fingerprint,
            )
        )
        if same_address:
            return "self_referral"
    if referrer.banned_at is not None or friend.banned_at is not None:
        return "banned"
    earlier = session.scalar(
        select(func.count()).select_from(Order).where(
            Order.customer_id == friend.id, Order.is_paid.is_(True), Order.id != order.id,
            Order.paid_at <= (order.paid_at or now),
        )
    )
    if earlier:
        return "not_new_customer"
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    this_month = session.scalar(
        select(func.count()).select_from(Referral).where(
            Referral.referrer_id == referrer.id,
            Referral.created_at >= month_start,
            Referral.status.in_([ReferralStatus.PENDING, ReferralStatus.REWARDED]),
        )
    )
    if this_month >= program.referral.monthly_cap:
        return "monthly_cap"
    return None


def record_referral(session: Session, shop: Shop, order: Order, friend: Customer, program: Program,
                    qualifies_at: datetime, now: datetime | None = None) -> Referral | None:
    """Record that a paid order used a referral code (once per friend), deciding fraud at once."""
    if not program.referral.enabled:
        return None
    found = _referrer_for(session, shop, order)
    if found is None:
        return None
    referrer, code = found
    now = now or utcnow()
    ledger.lock_customer(session, referrer.id)  # serializes the monthly cap per referrer
    reason = _reject_reason(session, shop, program, referrer, friend, order, now)
    stmt = dialect_insert(session, Referral.__table__).values(
        shop_id=shop.id, referrer_id=referrer.id, referred_customer_id=friend.id, order_id=order.id, code=code,
        status=(ReferralStatus.REJECTED if reason else ReferralStatus.PENDING).value, reason=reason,
        qualifies_at=qualifies_at, created_at=now, updated_at=now,
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["shop_id", "referred_customer_id"]))
    referral = session.scalars(
        select(Referral).where(Referral.shop_id == shop.id, Referral.referred_customer_id == friend.id)
    ).one()
    if reason:
        logger.info("referral rejected", extra={"shop": shop.id, "referral": referral.id, "reason": reason})
    return referral


def settle(session: Session, referral_id: int, now: datetime | None = None) -> Referral | None:
    """Reward or reject a pending referral whose window has passed (idempotent)."""
    now = now or utcnow()
    referral = session.get(Referral, referral_id)
    if referral is None:
        return None
    ledger.lock_customer(session, referral.referrer_id)
    session.refresh(referral)
    if referral.status != ReferralStatus.PENDING or referral.qualifies_at > now:
        return referral
    order = session.get(Order, referral.order_id)
    shop = session.get(Shop, referral.shop_id)
    assert order is not None and shop is not None
    if not decide.still_counts(order) or order.refunds:  # any refund rejects the referral
        referral.status, referral.reason = ReferralStatus.REJECTED, "refunded"
        return referral
    from app.program import current_program

    version, program = current_program(session, shop)
    referrer = session.get(Customer, referral.referrer_id)
    assert referrer is not None
    if referrer.banned_at is not None:
        referral.status, referral.reason = ReferralStatus.REJECTED, "banned"
        return referral
    points = program.referral.referrer_points
    if points > 0:
        lot = ledger.new_lot(
            shop_id=shop.id, customer_id=referrer.id, points=points, earned_at=now, available_at=now, now=now,
            rule={"rule": "referral", "program_version": version, "points": points, "order": order.number},
        )
        ledger.credit(
            session,
            LedgerEntry(shop_id=shop.id, customer_id=referrer.id, delta=0, reason="referral",
                        source_type="referral", source_id=str(referral.id), detail={"order": order.number}),
            lot,
        )
    referral.status = ReferralStatus.REWARDED
    return referral


def due_referrals(session: Session, now: datetime, limit: int = 1000) -> list[int]:
    """Return ids of pending referrals whose window has passed (indexed)."""
    return list(
        session.scalars(
            select(Referral.id)
            .where(Referral.status == ReferralStatus.PENDING, Referral.qualifies_at <= now)
            .order_by(Referral.qualifies_at)
            .limit(limit)
        )
    )
