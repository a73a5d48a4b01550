"""Scheduled points work: pending lots become available after their return window."""

from __future__ import annotations

import logging

from app import ledger
from app.db import session_scope
from app.models import Customer, Shop, utcnow
from app.redemptions import maybe_auto_redeem

logger = logging.getLogger(__name__)


def mature_points(limit: int = 1000) -> int:
    """Make every due pending lot available, each in its own transaction; returns how many."""
    now = utcnow()
    with session_scope() as session:
        ids = ledger.due_lot_ids(session, now, limit)
    matured = 0
    for lot_id in ids:
        with session_scope() as session:
            entry = ledger.mature_lot(session, lot_id, now=now)
            if entry is not None:
                matured += 1
                shop = session.get(Shop, entry.shop_id)
                customer = session.get(Customer, entry.customer_id)
                assert shop is not None and customer is not None
                maybe_auto_redeem(session, shop, customer)
    if matured:
        logger.info("points became available", extra={"count": matured})
    return matured
