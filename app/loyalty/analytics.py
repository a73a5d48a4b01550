"""The analytics page's report, computed in the background and kept (no Flask).

At a big shop the report takes seconds to compute (the KPIs and the weekly series read every
paid order of the period, and a "returning buyer" is a look-up per buyer), so the page never
computes it: it shows the newest kept report (`latest`) and asks the worker for a new one when
that is older than `FRESH` (`jobs.reports.refresh_analytics` → `refresh`). The page says when
its figures were computed. One row per shop and period (`analytics_reports`), replaced by an
upsert, so two refreshes at once leave one report.

The report is the figures of `app.loyalty.metrics` as they are; kept as JSON, with `Decimal`
and `datetime` values tagged so they come back as they went in.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.loyalty import metrics
from app.models import AnalyticsReport, Shop, utcnow
from app.program import current_program

# The page's periods: key -> days back from the moment the report is computed.
PERIODS: dict[str, int] = {"30d": 30, "90d": 90, "365d": 365}
WEEKS = 12  # the weekly series
FRESH = timedelta(minutes=15)  # a report older than this is computed again when the page is opened


@dataclass(frozen=True)
class Kept:
    """A kept report: when it was computed, how long that took (ms), and the figures."""

    computed_at: datetime
    duration_ms: int
    report: dict[str, Any]

    def stale(self, now: datetime) -> bool:
        return now - self.computed_at > FRESH


def compute(session: Session, shop: Shop, period: str, now: datetime) -> dict[str, Any]:
    """Return the analytics report of `shop` for `period` (a key of PERIODS) ending `now`:
    `figures` (metrics.program_metrics), `kpis` (metrics.analytics_kpis), `points` and `members`
    (weekly series of the last WEEKS weeks in the shop's zone), `tiers` (customers per tier).

    Raises:
        ValueError: an unknown period.
    """
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}; one of {', '.join(PERIODS)}")
    since = now - timedelta(days=PERIODS[period])
    figures = metrics.program_metrics(session, shop.id, since=since, until=now)
    bounds = metrics.week_starts(shop.timezone, now, WEEKS)
    _, program = current_program(session, shop)
    return {
        "since": since,
        "until": now,
        "figures": figures,
        "kpis": metrics.analytics_kpis(session, shop, since, now, figures=figures),
        "points": metrics.weekly_points(session, shop.id, bounds),
        "members": metrics.member_series(session, shop.id, bounds),
        "tiers": [list(pair) for pair in metrics.tier_distribution(session, shop.id,
                                                                   [t.name for t in program.tiers.levels])],
    }


def refresh(session: Session, shop_id: int, period: str, *, now: datetime | None = None) -> Kept:
    """Compute the report of a shop and period and keep it in place of the previous one.

    Raises:
        ValueError: no shop with this id, or an unknown period.
    """
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise ValueError(f"no shop with id {shop_id}")
    now = now or utcnow()
    started = time.perf_counter()
    report = compute(session, shop, period, now)
    duration_ms = round((time.perf_counter() - started) * 1000)
    values = {"shop_id": shop_id, "period": period, "computed_at": now, "duration_ms": duration_ms,
              "report": json.loads(_encode(report))}
    statement = dialect_insert(session, AnalyticsReport).values(**values)
    # A newer report is never replaced by an older one computed at the same time.
    session.execute(statement.on_conflict_do_update(
        index_elements=["shop_id", "period"],
        set_={"computed_at": statement.excluded.computed_at, "duration_ms": statement.excluded.duration_ms,
              "report": statement.excluded.report},
        where=AnalyticsReport.computed_at <= statement.excluded.computed_at,
    ))
    return Kept(now, duration_ms, report)


def latest(session: Session, shop_id: int, period: str) -> Kept | None:
    """Return the kept report of a shop and period, or None when there is none yet."""
    row = session.execute(
        select(AnalyticsReport.computed_at, AnalyticsReport.duration_ms, AnalyticsReport.report)
        .where(AnalyticsReport.shop_id == shop_id, AnalyticsReport.period == period)
    ).first()
    if row is None:
        return None
    return Kept(row.computed_at, row.duration_ms, _decode(row.report))


def _tag(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    raise TypeError(f"cannot keep {type(value).__name__} in a report")


def _encode(report: dict[str, Any]) -> str:
    return json.dumps(report, default=_tag)


def _untag(value: dict[str, Any]) -> Any:
    if value.keys() == {"$decimal"}:
        return Decimal(value["$decimal"])
    if value.keys() == {"$datetime"}:
        return datetime.fromisoformat(value["$datetime"])
    return value


def _decode(report: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(report), object_hook=_untag)
    return result
