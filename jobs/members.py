"""Scheduled member work: tier reviews at period end, referral settlement.

Each sweep selects due rows with an indexed query and handles each in its own transaction
(`jobs.sweeps.handle_each_due`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from app.loyalty import ledger, referrals, tiers
from app.loyalty.redemptions import maybe_auto_redeem
from app.models import Customer, Shop, utcnow
from app.program import current_program
from jobs.sweeps import handle_each_due

logger = logging.getLogger(__name__)


def _review(session: Session, customer_id: int, now: datetime) -> bool:
    customer = ledger.lock_customer(session, customer_id)
    if customer.tier_period_ends_at is None or customer.tier_period_ends_at > now:
        return False
    shop = session.get(Shop, customer.shop_id)
    assert shop is not None
    version, program = current_program(session, shop)
    return tiers.evaluate(session, shop, customer, program, version, now=now, allow_downgrade=True) is not None


def review_tiers(limit: int = 1000) -> int:
    """Re-evaluate customers whose tier period ended (the only place downgrades happen)."""
    return handle_each_due(tiers.due_for_review, _review, utcnow(), limit)


def _settle(session: Session, referral_id: int, now: datetime) -> bool:
    referral = referrals.settle(session, referral_id, now=now)
    if referral is not None and referral.status.value == "rewarded":
        referrer = session.get(Customer, referral.referrer_id)
        shop = session.get(Shop, referral.shop_id)
        if referrer is not None and shop is not None:
            maybe_auto_redeem(session, shop, referrer)
    return referral is not None


def settle_referrals(limit: int = 1000) -> int:
    """Reward or reject referrals whose return window has passed; returns how many were settled."""
    return handle_each_due(referrals.due_referrals, _settle, utcnow(), limit)
