"""Owner reports in the admin: analytics with charts, outstanding points at a date (page and CSV).

Routes of the "admin" blueprint (app.web.admin). All of it is owner work: support staff get 403,
staff of other shops 404. (The CSV exports of customers and of the ledger are in app.web.admin_staff.)
The pages speak the staff user's language (the `admin` catalog); the domain's report
(app.loyalty.reports) gives structured values that are worded here, its CSV stays English.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from babel.dates import format_date
from flask import Response, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
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

# The analytics page's periods (their days: app.loyalty.analytics.PERIODS) as the page names them.
PERIODS: dict[str, Any] = {"30d": _l("Last 30 days"), "90d": _l("Last 90 days"), "365d": _l("Last 12 months")}
# The campaign chart's title per period.
CAMPAIGN_TITLES: dict[str, Any] = {
    "30d": _l("Revenue won back per campaign (last 30 days)"),
    "90d": _l("Revenue won back per campaign (last 90 days)"),
    "365d": _l("Revenue won back per campaign (last 12 months)"),
}
DEFAULT_PERIOD = "30d"
# The reminder campaigns (app.messaging.reminders.MARKETING) as the page names them.
CAMPAIGN_TEXTS: dict[str, Any] = {
    "cart": _l("Cart reminder"), "winback": _l("Win-back"), "second_purchase": _l("Second purchase"),
    "tier_change": _l("Tier change notice"), "expiry": _l("Expiry notice"), "points_earned": _l("Points earned notice"),
    "doi": _l("Double opt-in"),
}


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
        return _("The worker's queue cannot be reached, so the figures cannot be computed now. Try again later.")
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
    campaigns = [(str(CAMPAIGN_TEXTS.get(name, name)), c) for name, c in figures["campaigns"].items()]
    none = _("no value")
    charts = {
        "points": bar_chart(_("Points per week"), labels, [
            Series(_("Earned"), [w["earned"] for w in points], "s1"),
            Series(_("Redeemed"), [w["redeemed"] for w in points], "s2"),
            Series(_("Expired"), [w["expired"] for w in points], "s3"),
        ], none=none),
        "members": line_chart(_("Members per week"), labels, [
            Series(_("Members"), [w["members"] for w in members], "s1"),
            Series(_("Buyers"), [w["buyers"] for w in members], "s2"),
        ], none=none),
        "repeat": bar_chart(_("Repeat-purchase rate per week"), labels, [
            Series(_("Returning buyers"), [w["repeat_purchase_rate"] for w in members], "s2"),
        ], percent=True, none=none),
        "campaigns": hbar_chart(str(CAMPAIGN_TITLES[period]), [name for name, _c in campaigns],
                                [c["revenue"] for _name, c in campaigns], unit=shop.currency),
        "tiers": hbar_chart(_("Customers per tier"), [name or _("No tier") for name, _n in tiers],
                            [n for _name, n in tiers]),
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
        flash(_("The figures are being computed; reload the page in a moment."), "success")
    return redirect(url_for("admin.analytics", shop_id=shop.id, period=period))


def _day_arg(name: str, default: date) -> tuple[date, str | None]:
    raw = request.args.get(name, "").strip()
    if not raw:
        return default, None
    try:
        return date.fromisoformat(raw), None
    except ValueError:
        return default, _("%(raw)s is not a date (YYYY-MM-DD); showing %(day)s instead.", raw=repr(raw),
                          day=day_text(default))


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
    return render_template("admin/liability.html", shop=shop, r=report, day=day, error=error, day_text=day_text,
                           bucket_text=bucket_text, point_value_text=point_value_text), (400 if error else 200)


def day_text(day: date) -> str:
    """A day as the admin writes it: "31.07.2027" in German, "2027-07-31" in English."""
    return day.strftime("%d.%m.%Y") if g.admin_language == "de" else day.isoformat()


def _month_text(month: str) -> str:
    """A calendar month ("YYYY-MM") as the admin writes it: "Juli 2027" in German, "2027-07" in English."""
    if g.admin_language != "de":
        return month
    return format_date(date.fromisoformat(month + "-01"), "LLLL yyyy", locale="de")


def bucket_text(bucket: reports.Bucket) -> str:
    """Name an age or expiry group of the outstanding-points report in the admin's language."""
    if bucket.month is not None:
        month = _month_text(bucket.month)
        return _("after %(month)s", month=month) if bucket.later else month
    if bucket.months_to is None:
        return _("over %(months)s months before", months=bucket.months_from)
    return _("%(start)s-%(end)s months before", start=bucket.months_from, end=bucket.months_to)


def point_value_text(value: reports.PointValue) -> str:
    """Say how the value of a point was found (`PointValue.explain`, in the admin's language)."""
    if value.source == "program":
        return _("1 point = %(amount)s %(currency)s, as the program (version %(version)s) states.",
                 amount=value.amount, currency=value.currency, version=value.program_version)
    if value.source == "reward":
        return _("1 point = %(amount)s %(currency)s: the cheapest amount reward, “%(reward)s”, gives %(value)s "
                 "%(currency)s for %(points)s points (program version %(version)s).",
                 amount=value.amount, currency=value.currency, reward=value.reward, value=value.reward_value,
                 points=value.reward_points, version=value.program_version)
    return _("No money value: the program in force (version %(version)s) has no amount reward and states no "
             "point value (set redemption.point_value).", version=value.program_version)
