"""Owner reports in the admin: analytics with charts, outstanding points at a date (page and CSV).

Routes of the "admin" blueprint (app.web.admin). All of it is owner work: support staff get 403,
staff of other shops 404. (The CSV exports of customers and of the ledger are in app.web.admin_staff.)
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from redis.exceptions import RedisError

from app import db, queues
from app.loyalty import analytics as analytics_reports
from app.loyalty import reports
from app.models import Shop, utcnow
from app.queues import RedisNotConfiguredError
from app.web.access import require_owner, shop_or_404
from app.web.admin import bp
from app.web.charts import Series, bar_chart, hbar_chart, line_chart

logger = logging.getLogger(__name__)

# The analytics page's periods (app.loyalty.analytics.PERIODS) as the page names them.
PERIODS: dict[str, tuple[str, int]] = {"30d": ("Last 30 days", 30), "90d": ("Last 90 days", 90),
                                       "365d": ("Last 12 months", 365)}
DEFAULT_PERIOD = "30d"


def _owner_shop(shop_id: int) -> Shop:
    require_owner(shop_id)
    return shop_or_404(db.request_session(), shop_id)


def _week_label(moment: datetime, shop: Shop) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(shop.timezone)).strftime("%d.%m.")


def _ask_for_report(shop_id: int, period: str) -> str | None:
    """Ask the worker to compute the report (once, however often the page is opened meanwhile);
    return why that failed, or None."""
    try:
        queues.enqueue_once("reminders", "jobs.reports.refresh_analytics", shop_id, period,
                            job_id=queues.job_id("analytics", shop_id, period))
    except (RedisError, RedisNotConfiguredError) as exc:
        logger.error("analytics report not queued", extra={"shop": shop_id, "error": type(exc).__name__})
        return "The worker's queue cannot be reached, so the figures cannot be computed now. Try again later."
    return None


@bp.get("/shops/<int:shop_id>/analytics")
def analytics(shop_id: int) -> Any:
    """Show the program's trends as charts (with tables) and the KPIs of the chosen period, from
    the newest report the worker computed (a new one is asked for when it is older than
    `analytics.FRESH`, or when there is none yet)."""
    shop = _owner_shop(shop_id)
    period = request.args.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        period = DEFAULT_PERIOD
    session = db.request_session()
    kept = analytics_reports.latest(session, shop.id, period)
    session.commit()
    now = utcnow()
    problem = _ask_for_report(shop.id, period) if kept is None or kept.stale(now) else None
    page = {"shop": shop, "period": period, "periods": PERIODS, "kept": kept, "problem": problem,
            "fresh_minutes": int(analytics_reports.FRESH.total_seconds() // 60)}
    if kept is None:
        return render_template("admin/analytics.html", **page)
    report = kept.report
    figures, points, members, tiers = report["figures"], report["points"], report["members"], report["tiers"]
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
        "admin/analytics.html", **page, k=report["kpis"], m=figures, points=points, members=members,
        labels=labels, tiers=tiers, campaigns=campaigns, charts=charts, weeks=analytics_reports.WEEKS,
    )


@bp.post("/shops/<int:shop_id>/analytics/refresh")
def refresh_analytics(shop_id: int) -> Any:
    """Ask the worker for a new report of the period now (the owner's "compute again")."""
    shop = _owner_shop(shop_id)
    period = request.form.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        period = DEFAULT_PERIOD
    problem = _ask_for_report(shop.id, period)
    if problem:
        flash(problem, "error")
    else:
        flash("The figures are being computed; reload the page in a moment.", "success")
    return redirect(url_for("admin.analytics", shop_id=shop.id, period=period))


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
