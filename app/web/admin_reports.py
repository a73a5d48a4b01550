"""Owner reports in the admin: analytics with charts, outstanding points at a date (page and CSV).

Routes of the "admin" blueprint (app.web.admin). All of it is owner work: support staff get 403,
staff of other shops 404. (The CSV exports of customers and of the ledger are in app.web.admin_staff.)
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from flask import Response, render_template, request

from app import db
from app.loyalty import metrics, reports
from app.models import Shop, utcnow
from app.program import current_program
from app.web.access import require_owner, shop_or_404
from app.web.admin import bp
from app.web.charts import Series, bar_chart, hbar_chart, line_chart

logger = logging.getLogger(__name__)

# The analytics page's periods: query value -> (label, days back from now).
PERIODS: dict[str, tuple[str, int]] = {"30d": ("Last 30 days", 30), "90d": ("Last 90 days", 90),
                                       "365d": ("Last 12 months", 365)}
DEFAULT_PERIOD = "30d"
WEEKS = 12


def _owner_shop(shop_id: int) -> Shop:
    require_owner(shop_id)
    return shop_or_404(db.request_session(), shop_id)


def _week_label(moment: datetime, shop: Shop) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(shop.timezone)).strftime("%d.%m.")


@bp.get("/shops/<int:shop_id>/analytics")
def analytics(shop_id: int) -> Any:
    """Show the program's trends as charts (with tables) and the KPIs of the chosen period."""
    shop = _owner_shop(shop_id)
    period = request.args.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        period = DEFAULT_PERIOD
    session = db.request_session()
    now = utcnow()
    since = now - timedelta(days=PERIODS[period][1])
    figures = metrics.program_metrics(session, shop.id, since=since, until=now)
    kpis = metrics.analytics_kpis(session, shop, since, now, figures=figures)
    bounds = metrics.week_starts(shop.timezone, now, WEEKS)
    points = metrics.weekly_points(session, shop.id, bounds)
    members = metrics.member_series(session, shop.id, bounds)
    _, program = current_program(session, shop)
    tiers = metrics.tier_distribution(session, shop.id, [t.name for t in program.tiers.levels])
    session.commit()

    labels = [_week_label(w["week"], shop) for w in points]
    campaigns = [(name, c) for name, c in figures["campaigns"].items()]
    charts = {
        "points": bar_chart("Points per week", labels, [
            Series("Earned", [w["earned"] for w in points], "s1"),
            Series("Redeemed", [w["redeemed"] for w in points], "s2"),
            Series("Expired", [w["expired"] for w in points], "s3"),
        ]),
        "members": line_chart("Members per week", labels, [
            Series("Members", [w["members"] for w in members], "s1"),
            Series("Buyers", [w["buyers"] for w in members], "s2"),
        ]),
        "repeat": bar_chart("Repeat-purchase rate per week", labels, [
            Series("Returning buyers", [w["repeat_purchase_rate"] for w in members], "s2"),
        ], percent=True),
        "campaigns": hbar_chart(f"Revenue won back per campaign ({PERIODS[period][0].lower()})",
                                [name for name, _ in campaigns], [c["revenue"] for _, c in campaigns],
                                unit=shop.currency),
        "tiers": hbar_chart("Customers per tier", [name or "No tier" for name, _ in tiers], [n for _, n in tiers]),
    }
    return render_template(
        "admin/analytics.html", shop=shop, period=period, periods=PERIODS, k=kpis, m=figures, points=points,
        members=members, labels=labels, tiers=tiers, campaigns=campaigns, charts=charts, weeks=WEEKS,
    )


def _day_arg(name: str, default: date) -> tuple[date, str | None]:
    raw = request.args.get(name, "").strip()
    if not raw:
        return default, None
    try:
        return date.fromisoformat(raw), None
    except ValueError:
        return default, f"{raw!r} is not a date (YYYY-MM-DD); showing {default.isoformat()} instead."


def _local_today(shop: Shop) -> date:
    from zoneinfo import ZoneInfo

    return utcnow().astimezone(ZoneInfo(shop.timezone)).date()


@bp.get("/shops/<int:shop_id>/liability")
def liability(shop_id: int) -> Any:
    """Show the points outstanding at the end of a day (default: yesterday, shop time); `format=csv` downloads it."""
    shop = _owner_shop(shop_id)
    day, error = _day_arg("at", _local_today(shop) - timedelta(days=1))
    session = db.request_session()
    report = reports.outstanding_points(session, shop, reports.end_of_day(shop, day))
    session.commit()
    if request.args.get("format") == "csv" and error is None:
        return Response(reports.liability_csv(report), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="outstanding-points-{shop.id}-{day.isoformat()}.csv"'})
    return render_template("admin/liability.html", shop=shop, r=report, day=day, error=error), (400 if error else 200)
