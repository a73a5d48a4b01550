"""Tiers: which tier a customer's spend or points reach, upgrades at once, downgrades at period end.

No Flask here. `evaluate` is called after every change to a customer's points (upgrade only) and
by the scheduled `jobs.members.review_tiers` for customers whose tier period ended (where a
downgrade may happen). A customer below the lowest threshold has no tier.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.loyalty import decide, tier_tags
from app.loyalty.decide import add_months
from app.models import (
    CodeStatus,
    Customer,
    IssuedCode,
    LedgerEntry,
    Order,
    OrderRefund,
    Shop,
    TierChange,
    utcnow,
)
from app.i18n import translations
from app.messaging.render import customer_language
from app.program import Program, Tier

logger = logging.getLogger(__name__)

EARNING_REASONS = ("earn", "refund", "cancel", "restore", "gift_card")


# Spend: paid orders not cancelled, refunded or deleted, net of partial refunds.
_KEPT_ORDERS = select(Order.id, Order.merchandise).where(
    Order.customer_id == bindparam("customer_id"), decide.counts_clause(Order)
)
_KEPT_ORDERS_SINCE = _KEPT_ORDERS.where(Order.paid_at >= bindparam("since"))
_REFUNDED = select(OrderRefund.order_id, OrderRefund.merchandise).where(
    OrderRefund.order_id.in_(bindparam("order_ids", expanding=True))
)


def _since(program: Program, now: datetime) -> datetime | None:
    return None if program.tiers.window == "lifetime" else now - timedelta(days=365)


def metric_value(session: Session, program: Program, customer: Customer, now: datetime) -> Decimal:
    """Return the customer's spend (shop currency, net of refunds) or points earned in the window."""
    since = _since(program, now)
    if program.tiers.metric == "points":
        query = select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
            LedgerEntry.customer_id == customer.id, LedgerEntry.reason.in_(EARNING_REASONS)
        )
        if since is not None:
            query = query.where(LedgerEntry.created_at >= since)
        return Decimal(int(session.scalar(query) or 0))
    if since is None:
        rows = session.execute(_KEPT_ORDERS, {"customer_id": customer.id}).all()
    else:
        rows = session.execute(_KEPT_ORDERS_SINCE, {"customer_id": customer.id, "since": since}).all()
    if not rows:
        return Decimal("0")
    refunded: dict[int, Decimal] = {}
    for order_id, amount in session.execute(_REFUNDED, {"order_ids": [r.id for r in rows]}).all():
        refunded[order_id] = refunded.get(order_id, Decimal("0")) + amount
    total = Decimal("0")
    for order_id, merchandise in rows:
        total += max((merchandise or Decimal("0")) - refunded.get(order_id, Decimal("0")), Decimal("0"))
    return total


def first_order_metric(program: Program, order: decide.OrderFacts, earned: int, now: datetime) -> Decimal:
    """Return `metric_value` of a customer whose only order is `order`, which just earned `earned`
    points (its `earn` entry is their only earning entry). Pure: what the database would sum."""
    if program.tiers.metric == "points":
        return Decimal(earned)
    if not decide.still_counts(order, _since(program, now)):
        return Decimal("0")
    refunded = sum((r.merchandise for r in order.refunds), Decimal("0"))
    return max((order.merchandise or Decimal("0")) - refunded, Decimal("0"))


def qualifying_tier(program: Program, value: Decimal) -> Tier | None:
    """Return the highest tier whose threshold `value` reaches (exactly at it counts)."""
    reached = [t for t in program.tiers.levels if value >= t.threshold]
    return reached[-1] if reached else None


def _rank(program: Program, name: str | None) -> int:
    names = [t.name for t in program.tiers.levels]
    return names.index(name) if name in names else -1


def upgrade_to(program: Program, current: str | None, value: Decimal) -> Tier | None:
    """Return the tier a customer in tier `current` moves up to at `value`, or None. Pure."""
    target = qualifying_tier(program, value)
    if target is not None and _rank(program, target.name) > _rank(program, current):
        return target
    return None


def tier_change(customer: Any, tier: Tier | None, value: Decimal, reason: str, version: int, program: Program,
                now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the tier change (column values) of a customer entering `tier` (None: no tier) and
    the customer's columns after it: a new tier period starts now. Pure."""
    change = dict(shop_id=customer.shop_id, customer_id=customer.id, from_tier=customer.tier,
                  to_tier=tier.name if tier else None, metric_value=value, reason=reason, program_version=version,
                  created_at=now)
    fields = {"tier": tier.name if tier else None, "tier_since": now,
              "tier_period_ends_at": add_months(now, program.tiers.period_months)}
    return change, fields


def _change(session: Session, shop: Shop, customer: Customer, tier: Tier | None, value: Decimal,
            reason: str, version: int, program: Program, now: datetime) -> TierChange:
    values, fields = tier_change(customer, tier, value, reason, version, program, now)
    change = TierChange(**values)
    session.add(change)
    for name, field_value in fields.items():
        setattr(customer, name, field_value)
    _renew_perks(session, shop, customer, tier, now)
    tier_tags.mark_customers(session, shop.id, [customer], now)  # the shop shows the new tier
    logger.info("tier changed", extra={"shop": shop.id, "customer": customer.id, "reason": reason})
    return change


PERK_PURPOSES = ("tier_discount", "tier_shipping")


def _renew_perks(session: Session, shop: Shop, customer: Customer, tier: Tier | None, now: datetime) -> None:
    """Switch off the member's perk codes and give those of `tier` for the period now starting.

    Called when the member enters, leaves or changes tier, and when a review keeps them in their
    tier for a new period: each perk code lasts exactly one tier period, so the member never holds
    two live codes of the same kind (the old ones are marked to end now, and a job switches them
    off in the shop).
    """
    from app.loyalty import codes

    live = list(session.scalars(select(IssuedCode).where(
        IssuedCode.customer_id == customer.id,
        IssuedCode.purpose.in_(PERK_PURPOSES),
        IssuedCode.ends_early_at.is_(None),
        IssuedCode.status != CodeStatus.FAILED,
    )))
    codes.end_codes_early(session, live, now)
    if tier is not None:
        for spec in perk_codes(shop, customer, tier, customer.tier_period_ends_at):
            codes.record_code(session, shop, enqueue=False, **spec)


def perk_codes(shop: Shop, customer: Any, tier: Tier, ends_at: datetime | None) -> list[dict[str, Any]]:
    """Return the tier's lasting perks as codes (`codes.record_code` keywords) restricted to the
    member, for the tier period ending `ends_at`; none for a banned customer. Pure.

    A perk code has no use limits (the member uses it on every order) and ends with the period;
    one code per tier and period.
    """
    if customer.banned_at is not None:
        return []
    texts = translations(customer_language(customer, shop))
    period = ends_at.isoformat(timespec="seconds") if ends_at else "open"
    common = {"customer_id": customer.id, "platform_customer_id": customer.platform_id,
              "customer_email": customer.email, "valid_days": None, "ends_at": ends_at,
              "usage_limit": None, "once_per_customer": False}
    specs = []
    if tier.member_discount_percent > 0:
        specs.append(dict(
            purpose="tier_discount", source_key=f"{customer.id}:{tier.name}:{period}",
            title=texts.gettext("%(tier)s: %(percent)s %% member discount")
            % {"tier": tier.name, "percent": f"{tier.member_discount_percent.normalize():f}"},
            kind="percentage", value=tier.member_discount_percent, **common))
    if tier.free_shipping:
        specs.append(dict(
            purpose="tier_shipping", source_key=f"{customer.id}:{tier.name}:{period}",
            title=texts.gettext("%(tier)s: free shipping") % {"tier": tier.name}, kind="free_shipping",
            value=Decimal("0"), **common))
    return specs


def evaluate(session: Session, shop: Shop, customer: Customer, program: Program, version: int, *,
             now: datetime | None = None, allow_downgrade: bool = False,
             reason: str = "upgrade") -> TierChange | None:
    """Move the customer up at once when they qualify higher; down only if `allow_downgrade`.

    With `allow_downgrade` (the period-end review) a customer who still qualifies for their tier
    starts a new period in it. `reason`: what a move up is recorded as (`backfill` for the tier
    the history gives, which no notice announces).
    """
    now = now or utcnow()
    if not program.tiers.levels:
        return None
    value = metric_value(session, program, customer, now)
    target = qualifying_tier(program, value)
    current, wanted = _rank(program, customer.tier), _rank(program, target.name if target else None)
    if wanted > current:
        return _change(session, shop, customer, target, value, reason, version, program, now)
    if allow_downgrade:
        if wanted < current:
            return _change(session, shop, customer, target, value, "downgrade", version, program, now)
        customer.tier_period_ends_at = add_months(now, program.tiers.period_months)
        _renew_perks(session, shop, customer, program.tier(customer.tier), now)
    return None


def due_for_review(session: Session, now: datetime, limit: int = 1000) -> list[int]:
    """Return ids of customers whose tier period has ended (indexed)."""
    return list(
        session.scalars(
            select(Customer.id)
            .where(Customer.tier_period_ends_at <= now, Customer.merged_into_id.is_(None))
            .order_by(Customer.tier_period_ends_at)
            .limit(limit)
        )
    )
