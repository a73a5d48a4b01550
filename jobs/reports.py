"""Reports computed in the background: the analytics page's report of a shop and period."""

from __future__ import annotations

import logging

from app.db import session_scope
from app.loyalty import analytics

logger = logging.getLogger(__name__)


def refresh_analytics(shop_id: int, period: str) -> None:
    """Compute the analytics report of a shop and period and keep it (app.loyalty.analytics)."""
    with session_scope() as session:
        kept = analytics.refresh(session, shop_id, period)
    logger.info("analytics report computed", extra={"shop": shop_id, "period": period,
                                                    "duration_ms": kept.duration_ms})
