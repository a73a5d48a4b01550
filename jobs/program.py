"""Scheduled program work: expiry, tier reviews at period end, referral settlement.

Each sweep selects due rows with an indexed query and handles each in its own transaction, so one
bad row never blocks the rest and a sweep that runs twice does nothing the second time.
"""

from __future__ import annotations

import logging

from app import ledger, referrals, tiers
from app.db import session_scope
from app.models import Customer, Shop, utcnow
from app.program import current_program
from app.redemptions import maybe_auto_redeem

logger = logging.getLogger(__name__)


def expire_points(limit: int = 1000) -> int:
    """Expire every lot past its expiry date; returns how many lots expired."""
    now = utcnow()
    with session_scope() as session:
        ids = ledger.expired_lot_ids(session, now, limit)
    expired = 0
    for lot_id in ids:
        with session_scope() as session:
            if ledger.expire_lot(session, lot_id, now=now) is not None:
                expired += 1
    if expired:
        logger.info("points expired", extra={"count": expired})
    return expired


def review_tiers(limit: int = 1000) -> int:
    """Re-evaluate customers whose tier period ended (the only place downgrades happen)."""
    now = utcnow()
    with session_scope() as session:
        ids = tiers.due_for_review(session, now, limit)
    changed = 0
    for customer_id in ids:
        with session_scope() as session:
            customer = ledger.lock_customer(session, customer_id)
            if customer.tier_period_ends_at is None or customer.tier_period_ends_at > now:
                continue
            shop = session.get(Shop, customer.shop_id)
            assert shop is not None
            version, program = current_program(session, shop)
            if tiers.evaluate(session, shop, customer, program, version, now=now, allow_downgrade=True):
                changed += 1
    return changed


def settle_referrals(limit: int = 1000) -> int:
    """Reward or reject referrals whose return window has passed; returns how many were settled."""
    now = utcnow()
    with session_scope() as session:
        ids = referrals.due_referrals(session, now, limit)
    for referral_id in ids:
        with session_scope() as session:
            referral = referrals.settle(session, referral_id, now=now)
            if referral is not None and referral.status.value == "rewarded":
                referrer = session.get(Customer, referral.referrer_id)
                shop = session.get(Shop, referral.shop_id)
                if referrer is not None and shop is not None:
                    maybe_auto_redeem(session, shop, referrer)
    return len(ids)


def award_birthday_bonuses(today: str | None = None) -> int:
    """Award the birthday bonus to customers whose birthday is today in their shop's time zone.

    Only where a birthday is known (neither Shopify nor WooCommerce core sends one; a shop can
    fill it from its own data). Once per customer and year, by the ledger's unique key.
    """
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from app.incentives import award_bonus

    awarded = 0
    with session_scope() as session:
        shops = [(shop.id, shop.timezone) for shop in session.scalars(select(Shop))]
    for shop_id, tz in shops:
        day = date.fromisoformat(today) if today else datetime.now(ZoneInfo(tz)).date()
        with session_scope() as session:
            shop = session.get(Shop, shop_id)
            version, program = current_program(session, shop)
            if program.earning.birthday_bonus <= 0:
                continue
            for customer in session.scalars(
                select(Customer).where(Customer.shop_id == shop_id, Customer.birthday.is_not(None),
                                       Customer.merged_into_id.is_(None))
            ):
                if (customer.birthday.month, customer.birthday.day) != (day.month, day.day):
                    continue
                now = utcnow()
                if award_bonus(session, shop, customer, reason="birthday_bonus",
                               source_id=f"{customer.id}-{day.year}", points=program.earning.birthday_bonus,
                               version=version, available_at=now, expires_at=None, now=now):
                    awarded += 1
    return awarded
