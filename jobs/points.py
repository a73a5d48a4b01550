"""Scheduled points work: pending lots become available after their return window."""

from __future__ import annotations

import logging

from app import ledger
from app.db import session_scope
from app.models import utcnow

logger = logging.getLogger(__name__)


def mature_points(limit: int = 1000) -> int:
    """Make every due pending lot available, each in its own transaction; returns how many."""
    now = utcnow()
    with session_scope() as session:
        ids = ledger.due_lot_ids(session, now, limit)
    matured = 0
    for lot_id in ids:
        with session_scope() as session:
            if ledger.mature_lot(session, lot_id, now=now) is not None:
                matured += 1
    if matured:
        logger.info("points became available", extra={"count": matured})
    return matured
