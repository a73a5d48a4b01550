"""Scheduled points work: pending lots mature after their return window, lots expire, birthdays.

Each sweep selects due rows with an indexed query and handles each in its own transaction
(`jobs.sweeps.handle_each_due`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from app.db import session_scope
from app.loyalty import ledger
from app.loyalty.redemptions import maybe_auto_redeem
from app.models import Customer, Shop, utcnow
from app.program import current_program
from jobs.sweeps import handle_each_due

logger = logging.getLogger(__name__)


def _mature(session: Session, lot_id: int, now: datetime) -> bool:
    entry = ledger.mature_lot(session, lot_id, now=now)
    if entry is None:
        return False
    shop = session.get(Shop, entry.shop_id)
    customer = session.get(Customer, entry.customer_id)
    assert shop is not None and customer is not None
    maybe_auto_redeem(session, shop, customer)
    return True


def mature_points(limit: int = 1000) -> int:
    """Make every due pending lot available, each in its own transaction; returns how many."""
    matured = handle_each_due(ledger.due_lot_ids, _mature, utcnow(), limit)
    if matured:
        logger.info("points became available", extra={"count": matured})
    return matured


def _expire(session: Session, lot_id: int, now: datetime) -> bool:
    return ledger.expire_lot(session, lot_id, now=now) is not None


def expire_points(limit: int = 1000) -> int:
    """Expire every lot past its expiry date; returns how many lots expired."""
    expired = handle_each_due(ledger.expired_lot_ids, _expire, utcnow(), limit)
    if expired:
        logger.info("points expired", extra={"count": expired})
    return expired

def award_birthday_bonuses(today: str | None = None) -> int:
    """Award the birthday bonus to customers whose birthday is today in their shop's time zone.

    Only where a birthday is known (neither Shopify nor WooCommerce core sends one; a shop can
    fill it from its own data). Once per customer and year, by the ledger's unique key.
    """
    from datetime import date
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from app.loyalty.incentives import award_bonus

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
