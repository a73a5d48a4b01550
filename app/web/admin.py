"""Blueprint "admin": staff login, shops (program, "does the program pay?" figures, e-mail
previews), webhook deliveries (with replay), reminder sends, and customers (ledger, consent,
reminder history, redeeming, adjusting points, bans, unsubscribing, re-sending reward codes).

Every page but the login form needs a signed-in staff user (Flask-Login). Every POST carries a
CSRF token (Flask-WTF's CSRFProtect). The platform webhooks never reach Flask (app.web.webhooks), so
they need no exemption: they are signed instead.
Writes go through the same domain functions as the CLI, inside `db.session_scope()`, so jobs they
record (e.g. a reward's code) are enqueued after the commit.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal
from flask_babel import get_locale, refresh
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup
from flask_wtf.csrf import CSRFError, CSRFProtect
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.messaging import consent, render as emails, links
from app import db
from app.loyalty import explain, ledger, metrics, support, tier_tags, vouchers
from app.web.access import audit, can_see, current_access, login_manager, only_visible, require_owner, shop_or_404
from app.web.customer_page import customer_link
from app.web import program_errors, program_form
from app.messaging.send import MailError, OutgoingMessage, format_address, mailer_from_config
from app.models import (
    CodeStatus,
    ConsentEvent,
    Customer,
    DataRequest,
    DeliveryStatus,
    IssuedCode,
    MessageStatus,
    Order,
    Redemption,
    ReminderMessage,
    Shop,
    WebhookDelivery,
    utcnow,
)
from app.program import Program, ProgramError, current_program, program_versions, save_program
from app.queues import RedisNotConfiguredError
from app.loyalty.redemptions import RedemptionError, affordable, redeem, redemptions_of
from app.messaging.reminders import history as reminder_history
from connectors import get_connector

logger = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf = CSRFProtect()

PAGE_SIZE = 100
SEARCH_LIMIT = 100
# The dashboard's periods: query value -> (label, days back from now; None = all time).
PERIODS: dict[str, tuple[Any, int | None]] = {
    "30d": (_l("Last 30 days"), 30),
    "90d": (_l("Last 90 days"), 90),
    "all": (_l("All time"), None),
}
# Words for the states rows are in, as the admin shows them.
STATUS_TEXTS = {
    "received": _l("received"), "processed": _l("processed"), "failed": _l("failed"), "pending": _l("pending"),
    "created": _l("created"), "available": _l("available"), "spent": _l("spent"), "expired": _l("expired"),
    "reversed": _l("reversed"), "scheduled": _l("scheduled"), "sending": _l("sending"), "sent": _l("sent"),
    "suppressed": _l("suppressed"), "active": _l("active"), "uninstalled": _l("uninstalled"),
    "owner": _l("owner"), "support": _l("support"),
}


# What a code is for, and its state as support needs to read it (a failed code is never usable).
PURPOSE_TEXTS = {
    "reward": _l("reward"), "second_purchase": _l("second purchase"), "bounce_back": _l("bounce-back"),
    "referral": _l("referral"),
    "tier_discount": _l("tier discount"),
    "tier_shipping": _l("tier free shipping"), "cart": _l("cart reminder"), "winback": _l("win-back"),
    "referral_step": _l("referral step"),
}
PURPOSE_TEXTS["partner_voucher"] = _l("partner voucher")  # a partner's code from a voucher pool
CODE_STATE_TEXTS = {"created": _l("usable"), "pending": _l("being created"), "failed": _l("failed"),
                    # a bounce-back code (app.loyalty.explain.code_state)
                    "used": _l("used"), "withdrawing": _l("being taken back"), "withdrawn": _l("taken back")}
# Why a bounce-back code was taken back: what became of the order that earned it.
END_REASON_TEXTS = {"cancelled": _l("order cancelled"), "refunded": _l("order refunded in full"),
                    "deleted": _l("order deleted")}


def purpose_text(value: str | None) -> Any:
    """Return the admin's words for a code's purpose."""
    return PURPOSE_TEXTS.get(value or "", value or "")


def code_state_text(value: str | None) -> Any:
    """Return the admin's words for a code's state in the shop."""
    return CODE_STATE_TEXTS.get(value or "", value or "")


def end_reason_text(value: str | None) -> Any:
    """Return the admin's words for why a bounce-back code was taken back."""
    return END_REASON_TEXTS.get(value or "", value or "")


def _money(value: Decimal | None, currency: str | None) -> str:
    """Render an amount with its currency in the admin's language ("1.450,00 €", "€1,450.00")."""
    if value is None:
        return ""
    return format_currency(value, currency or "EUR", locale=str(get_locale() or "en"))


def _number(value: int | Decimal) -> str:
    """Render a number with the admin language's grouping ("1.000.000", "1,000,000")."""
    return format_decimal(value, locale=str(get_locale() or "en"))


def status_text(value: str | None) -> Any:
    """Return the admin's word for a state (the value itself when it has none)."""
    return STATUS_TEXTS.get(value or "", value or "")
DEFAULT_PERIOD = "30d"
# The one admin response that is shown inside a frame of our own pages: the e-mail preview HTML.
# It gets a CSP of its own (sandboxed, no scripts, inline styles only) instead of the admin's.
_PREVIEW_ENDPOINT = "admin.email_preview_html"
_PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'; "
    "form-action 'none'; base-uri 'none'"
)


def _safe_next(target: str | None) -> str | None:
    """Return `target` when it is a path on this site (no open redirect), else None."""
    if not target or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target



def _newest_first(session: Any, query: Any, id_column: Any, before: int | None, endpoint: str,
                  filters: dict[str, Any]) -> tuple[list[Any], str | None]:
    """Return one page of `query`, newest first by `id_column`, and the link to older rows.

    Keyset pagination on the primary key stays cheap however long the list grows.
    """
    if before is not None:
        query = query.where(id_column < before)
    rows = session.execute(query.order_by(id_column.desc()).limit(PAGE_SIZE + 1)).all()
    more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    kept = {k: v for k, v in filters.items() if v is not None}
    return rows, (url_for(endpoint, before=rows[-1][0].id, **kept) if more else None)

# The pages a visitor reaches before signing in: the form, its second step, a set-password link.
_OPEN_ENDPOINTS = frozenset({"admin.login", "admin.login_code", "admin.set_password"})


# URL parts that name a shop's object, and how to find the shop it belongs to.
_SHOP_OF: dict[str, tuple[Any, Any]] = {
    "customer_id": (Customer, Customer.shop_id),
    "delivery_id": (WebhookDelivery, WebhookDelivery.shop_id),
    "request_id": (DataRequest, DataRequest.shop_id),
    "redemption_id": (Redemption, Redemption.shop_id),
}


ADMIN_LANGUAGES = ("de", "en")


def admin_language() -> str:
    """Return the language the admin speaks to this request's user: their choice; else German
    when any of their shops is German, English when none is; before sign-in, the browser's
    preference (English when it states none)."""
    if current_user.is_authenticated:
        if current_user.language in ADMIN_LANGUAGES:
            return current_user.language
        if "de" in current_user.shop_languages:
            return "de"
        if current_user.shop_languages:
            return "en"
    return request.accept_languages.best_match(ADMIN_LANGUAGES) or "en"


@bp.before_request
def _speak() -> None:
    g.admin_language = admin_language()
    refresh()


@bp.before_request
def _require_login() -> Any:
    if request.endpoint in _OPEN_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    # Before any form is read: an object of a shop the user was not given is 404, whatever the
    # request (each view checks again where it loads the object).
    args = request.view_args or {}
    if "shop_id" in args and not can_see(args["shop_id"]):
        abort(404)
    for name, (model, shop_column) in _SHOP_OF.items():
        if name in args:
            session = db.request_session()
            shop_id = session.scalar(select(shop_column).where(model.id == args[name]))
            session.rollback()
            if not can_see(shop_id):
                abort(404)
    return None


@bp.errorhandler(403)
def _forbidden(_error: Any) -> Any:
    message = _("Your role in this shop does not allow this. An owner of the shop can do it, or change your role.")
    return render_template("admin/error.html", code=403, message=message), 403


@bp.errorhandler(404)
def _not_found(_error: Any) -> Any:
    return render_template("admin/error.html", code=404, message=_("There is no such page, or it is not yours to see.")), 404


@bp.after_request
def _no_store(response: Any) -> Any:
    # Pages show customer data: never cache them, never frame them (but the e-mail preview, which
    # only our own preview page frames, sandboxed).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint == _PREVIEW_ENDPOINT:
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Content-Security-Policy"] = _PREVIEW_CSP
    else:
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
    return response


@bp.get("/")
def dashboard() -> Any:
    """List the shops with their delivery counts by status."""
    session = db.request_session()
    shops = session.scalars(only_visible(select(Shop), Shop.id).order_by(Shop.platform, Shop.domain)).all()
    counts: dict[int, dict[str, int]] = {}
    for shop_id, status, n in session.execute(
        only_visible(select(WebhookDelivery.shop_id, WebhookDelivery.status, func.count()), WebhookDelivery.shop_id)
        .group_by(WebhookDelivery.shop_id, WebhookDelivery.status)
    ):
        counts.setdefault(shop_id, {})[DeliveryStatus(status).value] = n
    from app.shops import missing_api_credentials

    # A shop whose API cannot be called gets no codes: every reward, referral and incentive fails.
    keys = current_app.config["ENCRYPTION_KEY"]
    no_api = {shop.id: reason for shop in shops if (reason := missing_api_credentials(shop, keys))}
    failed_codes = dict(session.execute(
        only_visible(select(IssuedCode.shop_id, func.count()), IssuedCode.shop_id)
        .where(IssuedCode.status == CodeStatus.FAILED)
        .group_by(IssuedCode.shop_id)
    ).all())
    from app.shop_health import shop_health

    # The same health `flask shops status` prints, from stored facts only (no platform call here).
    health = {shop.id: shop_health(session, shop, keys=keys) for shop in shops}
    return render_template(
        "admin/shops.html", shops=shops, counts=counts, statuses=[s.value for s in DeliveryStatus],
        no_api=no_api, failed_codes=failed_codes, health=health,
    )


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() else None


@bp.get("/deliveries")
def deliveries() -> Any:
    """List recent deliveries, newest first, filtered by status, shop or id; 100 per page."""
    session = db.request_session()
    status = request.args.get("status") or None
    if status is not None and status not in {s.value for s in DeliveryStatus}:
        status = None
    shop_id = _int_arg("shop")
    delivery_id = _int_arg("id")
    before = _int_arg("before")

    query = only_visible(select(WebhookDelivery, Shop).join(Shop, Shop.id == WebhookDelivery.shop_id),
                         WebhookDelivery.shop_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == DeliveryStatus(status))
    if shop_id is not None:
        query = query.where(WebhookDelivery.shop_id == shop_id)
    if delivery_id is not None:
        query = query.where(WebhookDelivery.id == delivery_id)
    filters = {"status": status, "shop": shop_id, "id": delivery_id}
    rows, older = _newest_first(session, query, WebhookDelivery.id, before, "admin.deliveries", filters)
    shops = session.scalars(only_visible(select(Shop), Shop.id).order_by(Shop.platform, Shop.domain)).all()
    return render_template(
        "admin/deliveries.html",
        rows=rows,
        filters=filters,
        older=older,
        shops=shops,
        statuses=[s.value for s in DeliveryStatus],
        failed=DeliveryStatus.FAILED,
    )


@bp.post("/deliveries/<int:delivery_id>/replay")
def replay(delivery_id: int) -> Any:
    """Put a delivery back to `received` and enqueue it again (jobs.deliveries.replay_delivery)."""
    from jobs.deliveries import DeliveryPurgedError, replay_delivery

    session = db.request_session()
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or not can_see(delivery.shop_id):
        session.rollback()
        abort(404)
    before_state = {"status": delivery.status.value, "attempts": delivery.attempts}
    shop_id = delivery.shop_id
    session.rollback()
    try:
        found = replay_delivery(delivery_id)
    except DeliveryPurgedError:
        flash(_("Delivery %(id)s cannot be replayed: the retention sweep removed its body "
                "(DELIVERY_RETENTION_DAYS).", id=delivery_id), "error")
    except (RedisError, RedisNotConfiguredError):
        logger.warning("replay could not be enqueued", extra={"delivery": delivery_id}, exc_info=True)
        flash(
            _("Delivery %(id)s is marked as received again, but the job queue (Redis) is not "
              "reachable, so it was not queued now. The requeue sweep will process it once the queue "
              "is back; there is no need to replay it again.", id=delivery_id),
            "error",
        )
    else:
        if found:
            with db.session_scope() as write:
                audit(write, shop_id=shop_id, action="delivery.replay", subject=f"delivery {delivery_id}",
                      before=before_state, after={"status": DeliveryStatus.RECEIVED.value})
            logger.info("delivery replayed", extra={"delivery": delivery_id, "staff": current_user.staff_id})
            flash(_("Delivery %(id)s was queued for processing again.", id=delivery_id), "success")
        else:
            flash(_("Delivery %(id)s does not exist.", id=delivery_id), "error")
    back = {k: request.form[k] for k in ("status", "shop", "id") if request.form.get(k)}
    return redirect(url_for("admin.deliveries", **back))


@bp.get("/data-requests")
def data_requests() -> Any:
    """List the shops' requests for a customer's data: open ones first, then the last exported."""
    session = db.request_session()
    query = only_visible(select(DataRequest, Shop).join(Shop, Shop.id == DataRequest.shop_id), DataRequest.shop_id)
    open_rows = session.execute(
        query.where(DataRequest.exported_at.is_(None)).order_by(DataRequest.received_at)).all()
    done_rows = session.execute(
        query.where(DataRequest.exported_at.is_not(None)).order_by(DataRequest.exported_at.desc()).limit(50)).all()
    return render_template("admin/data_requests.html", open_rows=open_rows, done_rows=done_rows)


@bp.post("/data-requests/<int:request_id>/export")
def export_data_request(request_id: int) -> Any:
    """Download everything we hold about the request's customer as JSON, and mark it exported."""
    from app.privacy import export_data

    with db.session_scope() as session:
        data_request = session.get(DataRequest, request_id)
        if data_request is None or not can_see(data_request.shop_id):
            abort(404)
        export = export_data(session, data_request)
        data_request.exported_at = utcnow()
        data_request.exported_by = current_user.email
        audit(session, shop_id=data_request.shop_id, action="data_request.export",
              subject=f"data request {request_id}", before=None, after={"exported": True})
    logger.info("data request exported", extra={"request": request_id, "staff": current_user.staff_id})
    body = json.dumps(export, indent=2, ensure_ascii=False, default=str)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="data-request-{request_id}.json"'})


def _flag_arg(name: str) -> bool | None:
    """Read a yes/no filter: "1" yes, "0" no, anything else (or nothing) any."""
    return {"1": True, "0": False}.get(request.args.get(name, ""))


CUSTOMER_PAGE_SIZE = 50


@bp.get("/customers")
def customers() -> Any:
    """Find customers by any part of the e-mail or name, an order number, a reward or referral
    code (in every shop the user may see); without a search, list one shop's customers with
    filters (tier, banned, balance, failed codes), sortable by e-mail, name, balance, last order
    or sign-up, 50 a page (keyset pages: `after`/`before` cursors)."""
    from app.loyalty import directory

    q = request.args.get("q", "").strip()
    session = db.request_session()
    shop_ids = current_access().shop_ids()
    shops = session.scalars(only_visible(select(Shop), Shop.id).order_by(Shop.platform, Shop.domain)).all()
    results: list[dict[str, Any]] = []
    truncated = False
    if q:
        # Trigram-indexed on PostgreSQL; balances come with the rows.
        found = directory.search_customers(session, q, SEARCH_LIMIT + 1, shop_ids=shop_ids)
        truncated = len(found) > SEARCH_LIMIT
        for row in found[:SEARCH_LIMIT]:
            results.append({"customer": row.customer, "shop": row.shop,
                            "balance": ledger.Balance(pending=row.pending, available=row.available)})
    sort = request.args.get("sort", "email")
    if sort not in directory.SORTS:
        sort = "email"
    descending = request.args.get("dir") == "desc"
    # The list shows one shop at a time (the first the user may see unless one is chosen).
    shop = next((s for s in shops if s.id == _int_arg("shop")), shops[0] if shops else None)
    tier = request.args.get("tier")
    filters = {"tier": tier if tier else None, "banned": _flag_arg("banned"), "has_points": _flag_arg("balance"),
               "failed_codes": _flag_arg("failed")}
    listing = directory.Page([], None, None)
    if shop is not None and not q:
        try:
            listing = directory.list_customers(
                session, shop.id, limit=CUSTOMER_PAGE_SIZE, sort=sort, descending=descending,
                after=request.args.get("after") or None, before=request.args.get("before") or None, **filters)
        except ValueError:
            abort(400, description=_("This page link is out of date. Start again from the first page."))
    program = current_program(session, shop)[1] if shop is not None else None
    tiers = [t.name for t in program.tiers.levels] if program is not None else []
    session.commit()
    args = {k: v for k, v in request.args.items() if k not in ("after", "before", "q") and v}
    return render_template(
        "admin/customers.html", q=q, results=results, truncated=truncated, limit=SEARCH_LIMIT,
        listing=listing, sort=sort, descending=descending, args=args, shops=shops, shop=shop, tiers=tiers,
        filters=filters,
    )


@bp.get("/customers/<int:customer_id>")
def customer(customer_id: int) -> Any:
    """Show one customer: balance, tier, referral and page links, redemptions, ledger, actions."""
    session = db.request_session()
    row = session.get(Customer, customer_id)
    if row is None or not can_see(row.shop_id):
        abort(404)
    shop = session.get(Shop, row.shop_id)
    language = g.admin_language if g.admin_language != "en" else None
    report = explain.customer_report(session, row, public_url=current_app.config["PUBLIC_URL"], language=language)
    version, program = current_program(session, shop)
    now = utcnow()
    empty = vouchers.sold_out(session, shop, program, now)
    can_afford = {r.name for r in affordable(program, row, report["available"], empty)}
    rewards = [
        {"name": r.name, "points": r.points, "tiers": r.tiers, "affordable": r.name in can_afford,
         "sold_out": not vouchers.reward_in_stock(r, empty)}
        for r in program.rewards
        if r.active
    ]
    consent_events = session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.customer_id == row.id)
        .order_by(ConsentEvent.created_at, ConsentEvent.id)
    ).all()
    context = {
        "customer": row,
        "shop": shop,
        "report": report,
        "program_version": version,
        "rewards": rewards,
        "redemptions": redemptions_of(session, row),
        "consent_events": consent_events,
        "reminders": reminder_history(session, row),
        "ledger": list(reversed(support.with_running_balance(report["ledger"]))),
        "codes": explain.codes_of(session, row),
        "orders": support.orders_of(session, row),
        "bans": support.ban_history(session, row),
        "spend": support.lifetime_spend(session, program, row, now),
        "progress": support.tier_progress(session, program, row, now),
        "tier_in_shop": tier_tags.customer_state(session, get_connector(shop.platform.value), program, row),
        # Re-sending a code the customer already owns is transactional: allowed when they are
        # unsubscribed, refused when they are banned (no codes while banned) or have no e-mail.
        "can_resend": row.merged_into_id is None and row.banned_at is None and bool(row.email),
        "page_link": customer_link(row) if row.merged_into_id is None else None,
        # Fresh per render: posting the same form twice redeems or adjusts once.
        "redeem_key": uuid.uuid4().hex,
        "adjust_key": uuid.uuid4().hex,
        "max_adjustment": _adjust_limit(row.shop_id),
        **_points_worth(shop, program, report["available"], report["pending"]),
    }
    session.commit()
    return render_template("admin/customer.html", **context)


def _points_worth(shop: Shop, program: Program, available: int, pending: int) -> dict[str, Any]:
    """What the customer's points are worth ("1.250 Punkte ≈ 12,50 €", in the admin's language),
    and where a point's value comes from (`Program.point_worth`)."""
    from app.loyalty.storefront import point_value, points_value

    language = "de" if g.admin_language == "de" else "en"
    available_worth = points_value(shop, program, available, language)
    pending_worth = points_value(shop, program, pending, language) if pending else None
    worth = program.point_worth(shop.platform.value)
    return {
        "available_worth": available_worth[1] if available_worth else None,
        "pending_worth": pending_worth[1] if pending_worth else None,
        "point_value": point_value(shop, program, language),
        "point_value_reward": worth.reward.name if worth is not None and worth.reward is not None else None,
    }


def _form_key() -> str | None:
    """Return the form's idempotency key when it is a UUID (rendered by the page), else None."""
    value = request.form.get("key", "")
    try:
        return uuid.UUID(value).hex
    except ValueError:
        return None


class _ActionRefusedError(Exception):
    """A customer action that is not possible; the message is shown to staff."""


def _live_customer(session: Any, customer_id: int) -> tuple[Shop, Customer]:
    """Return the shop and customer for a write, refusing merged guest records.

    Raises:
        _ActionRefusedError: the customer was merged into another record.
    """
    row = session.get(Customer, customer_id)
    if row is None or not can_see(row.shop_id):
        abort(404)
    if row.merged_into_id is not None:
        raise _ActionRefusedError(
            _("This guest record was merged into customer %(id)s; act on that record.", id=row.merged_into_id)
        )
    shop = session.get(Shop, row.shop_id)
    assert shop is not None
    return shop, row


def _adjust_limit(shop_id: int) -> int:
    """Return the most points the signed-in user may add or remove at once in this shop."""
    grant = current_access().grant(shop_id)
    limit = grant.adjust_limit if grant is not None else 0
    return ledger.MAX_ADJUSTMENT if limit is None else min(limit, ledger.MAX_ADJUSTMENT)


def _customer_state(session: Any, row: Customer) -> dict[str, Any]:
    """Return what an audit entry keeps of a customer: balance and ban state."""
    return {"available": ledger.balance(session, row.id).available,
            "banned": row.banned_at is not None, "ban_reason": row.ban_reason}


def _back_to(customer_id: int) -> Any:
    return redirect(url_for("admin.customer", customer_id=customer_id))


@bp.post("/customers/<int:customer_id>/redeem")
def redeem_reward(customer_id: int) -> Any:
    """Redeem a reward for the customer as staff (once per rendered form)."""
    reward_name = request.form.get("reward", "").strip()
    key = _form_key()
    if not reward_name or key is None:
        flash(_("Choose a reward. (Reload the page if this form came from an old tab.)"), "error")
        return _back_to(customer_id)
    try:
        with db.session_scope() as session:
            shop, row = _live_customer(session, customer_id)
            state = _customer_state(session, row)
            redemption = redeem(
                session, shop, row, reward_name, source="staff", actor=current_user.email,
                idempotency_key=f"staff-{row.id}-{key}",
            )
            if redemption.customer_id != row.id:
                raise _ActionRefusedError(_("That form belongs to another customer. Reload the page."))
            redemption_id, reward, points = redemption.id, redemption.reward_name, redemption.points
            voucher_code = None
            if redemption.reward.get("kind") == "partner_voucher" and redemption.issued_code_id is not None:
                voucher_code = session.get(IssuedCode, redemption.issued_code_id).code
            audit(session, shop_id=shop.id, action="customer.redeem", subject=f"customer {row.id}",
                  before=state, after={**_customer_state(session, row), "reward": reward, "points": points,
                                       "redemption": redemption_id})
    except (RedemptionError, _ActionRefusedError) as exc:
        flash(_("Not redeemed: %(reason)s", reason=exc), "error")
        return _back_to(customer_id)
    logger.info(
        "staff redeemed a reward",
        extra={"customer": customer_id, "redemption": redemption_id, "staff": current_user.staff_id},
    )
    if voucher_code is not None:
        flash(_("Redeemed %(reward)s for %(points)s points (redemption %(id)s): partner code %(code)s, e-mailed "
                "to the customer.", reward=reward, points=points, id=redemption_id, code=voucher_code), "success")
        return _back_to(customer_id)
    flash(
        _("Redeemed %(reward)s for %(points)s points (redemption %(id)s); the code is being created.",
          reward=reward, points=points, id=redemption_id),
        "success",
    )
    return _back_to(customer_id)


@bp.post("/customers/<int:customer_id>/adjust")
def adjust_points(customer_id: int) -> Any:
    """Add or remove points with a reason (once per rendered form)."""
    raw_points = request.form.get("points", "").strip()
    reason = request.form.get("reason", "").strip()
    key = _form_key()
    try:
        points = int(raw_points)
    except ValueError:
        flash(_("Points must be a whole number such as 50 or -50."), "error")
        return _back_to(customer_id)
    if key is None:
        flash(_("The form is incomplete. Reload the page and try again."), "error")
        return _back_to(customer_id)
    try:
        with db.session_scope() as session:
            shop, row = _live_customer(session, customer_id)
            limit = _adjust_limit(shop.id)
            if abs(points) > limit:
                raise _ActionRefusedError(_(
                    "your role allows at most %(limit)s points either way per adjustment, got %(points)s; "
                    "ask an owner of the shop", limit=f"{limit:_}".replace("_", " "),
                    points=f"{points:+_}".replace("_", " ")))
            state = _customer_state(session, row)
            entry = ledger.adjust(
                session, shop_id=shop.id, customer_id=row.id, points=points, note=reason,
                actor=current_user.email, key=f"{row.id}-{key}",
            )
            if entry is not None:
                audit(session, shop_id=shop.id, action="customer.adjust", subject=f"customer {row.id}",
                      before=state, after={**_customer_state(session, row), "points": points, "reason": reason})
    except (ledger.AdjustmentError, _ActionRefusedError) as exc:
        flash(_("Not adjusted: %(reason)s", reason=exc), "error")
        return _back_to(customer_id)
    if entry is None:
        flash(_("This adjustment was already recorded (the form was sent twice)."), "info")
    else:
        logger.info("staff adjusted points", extra={"customer": customer_id, "staff": current_user.staff_id})
        flash(_("Adjusted by %(points)s points.", points=f"{points:+d}"), "success")
    return _back_to(customer_id)


@bp.post("/customers/<int:customer_id>/ban")
def ban(customer_id: int) -> Any:
    """Ban the customer from earning, redeeming and codes, or lift the ban (as `flask customers ban`)."""
    lift = request.form.get("action") == "lift"
    reason = request.form.get("reason", "").strip()
    if not lift and not reason:
        flash(_("Give a reason for the ban; support staff will see it."), "error")
        return _back_to(customer_id)
    try:
        with db.session_scope() as session:
            shop, row = _live_customer(session, customer_id)
            state = _customer_state(session, row)
            row.banned_at = None if lift else utcnow()
            row.ban_reason = None if lift else reason
            audit(session, shop_id=shop.id, action="customer.unban" if lift else "customer.ban",
                  subject=f"customer {row.id}", before=state, after=_customer_state(session, row))
    except _ActionRefusedError as exc:
        flash(_("Not changed: %(reason)s", reason=exc), "error")
        return _back_to(customer_id)
    logger.info(
        "staff lifted a ban" if lift else "staff banned a customer",
        extra={"customer": customer_id, "staff": current_user.staff_id},
    )
    flash(_("Ban lifted.") if lift else _("Customer banned: no earning, redeeming or codes."), "success")
    return _back_to(customer_id)


@bp.post("/customers/<int:customer_id>/unsubscribe")
def unsubscribe_customer(customer_id: int) -> Any:
    """Unsubscribe the customer from every reminder and notice at once, with proof (source "staff")."""
    try:
        with db.session_scope() as session:
            shop, row = _live_customer(session, customer_id)
            changed = consent.unsubscribe(session, row, source="staff", detail={"by": current_user.email})
            if changed:
                audit(session, shop_id=shop.id, action="customer.unsubscribe", subject=f"customer {row.id}",
                      before={"subscribed": True}, after={"subscribed": False})
    except _ActionRefusedError as exc:
        flash(_("Not unsubscribed: %(reason)s", reason=exc), "error")
        return _back_to(customer_id)
    if not changed:
        flash(_("This customer was already unsubscribed; nothing changed."), "info")
        return _back_to(customer_id)
    logger.info("staff unsubscribed a customer", extra={"customer": customer_id, "staff": current_user.staff_id})
    flash(_("Unsubscribed: no more reminders or notices. The consent event below is the proof."), "success")
    return _back_to(customer_id)


def _value_text(spec: dict[str, Any], language: str) -> str:
    """Return what a code is worth in the customer's words ("10 %", "5,00 €", "Gratisversand")."""
    kind = spec.get("kind")
    german = emails.normalize_language(language) == "de"
    if kind == "percentage":
        percent = f"{Decimal(spec['value']).normalize():f}"
        return f"{percent} %" if german else f"{percent}%"
    if kind == "fixed_amount":
        return emails.format_money(Decimal(spec["value"]), spec["currency"], language)
    if kind == "free_shipping":
        return "Versandkostenfrei" if german else "Free shipping"
    if kind == vouchers.PURPOSE:
        return vouchers.value_text(spec, language)
    return "Gratisartikel" if german else "Free item"


def _offer_text(reward: dict[str, Any] | None, language: str) -> str | None:
    """Return what a combination offer gives ("Kaufe 2 × X, erhalte 1 × Y gratis"), else None."""
    from app.loyalty.storefront import combination_text

    if not isinstance(reward, dict) or reward.get("kind") != "buy_x_get_y":
        return None
    return combination_text(reward, emails.normalize_language(language))


def _shop_mail_context(shop: Shop) -> dict[str, Any]:
    """Return the `shop` part of an e-mail context for this shop (as the reminder jobs build it)."""
    shop_url = get_connector(shop.platform.value).storefront_url(shop.domain)
    return {
        "name": shop.name or shop.domain,
        "colour": shop.brand_color or emails.DEFAULT_COLOUR,
        "url": shop_url,
        "address": shop.address,
        "timezone": shop.timezone,
    }


def _reward_code_message(session: Any, customer_id: int, redemption_id: int,
                         cfg: Any) -> tuple[OutgoingMessage, str, str]:
    """Return the e-mail carrying a redemption's code, the code and the recipient (reads only).

    Raises:
        _ActionRefusedError: merged, banned, no e-mail, or the code does not exist (or expired).
    """
    row = session.get(Customer, customer_id)
    redemption = session.get(Redemption, redemption_id)
    if row is None or redemption is None or redemption.customer_id != row.id or not can_see(row.shop_id):
        abort(404)
    if row.merged_into_id is not None:
        raise _ActionRefusedError(_("this guest record was merged into customer %(id)s", id=row.merged_into_id))
    if row.banned_at is not None:
        raise _ActionRefusedError(_("the customer is banned, and banned customers get no codes"))
    if not row.email:
        raise _ActionRefusedError(_("the customer has no e-mail address"))
    code = session.get(IssuedCode, redemption.issued_code_id) if redemption.issued_code_id else None
    if code is None or code.status != CodeStatus.CREATED:
        state = code.status.value if code is not None else "missing"
        raise _ActionRefusedError(_("the code does not exist in the shop (its status is %(state)s)", state=state))
    if code.expires_at is not None and code.expires_at <= utcnow():
        raise _ActionRefusedError(_("the code expired on %(when)s", when=f"{code.expires_at:%Y-%m-%d %H:%M} UTC"))
    shop = session.get(Shop, row.shop_id)
    assert shop is not None
    language = emails.customer_language(row, shop)
    context = {
        "shop": _shop_mail_context(shop),
        "customer": {"first_name": row.first_name},
        "reward": redemption.reward_name,
        "code": {
            "code": code.code,
            "value_text": _offer_text(redemption.reward, language) or _value_text(code.spec, language),
            "expires_at": code.expires_at,
        },
        "rewards_url": links.url(cfg["PUBLIC_URL"], cfg["SECRET_KEY"], "customer-page", shop.id, row.id),
    }
    rendered = emails.render("reward_code", language, context)
    name = " ".join(p for p in (row.first_name, row.last_name) if p)
    outgoing = OutgoingMessage(
        to=format_address(name, row.email) if name else row.email,
        from_addr=shop.mail_from or cfg["MAIL_FROM"],
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )
    return outgoing, code.code, row.email


@bp.post("/customers/<int:customer_id>/redemptions/<int:redemption_id>/resend")
def resend_code(customer_id: int, redemption_id: int) -> Any:
    """E-mail a redeemed reward's code to the customer again, at once (transactional).

    Allowed for unsubscribed customers (it is their own code, not marketing), refused for banned
    ones. The database read ends before the SMTP handover, so no transaction waits on the server.
    """
    cfg = current_app.config
    session = db.request_session()
    try:
        outgoing, code, address = _reward_code_message(session, customer_id, redemption_id, cfg)
    except _ActionRefusedError as exc:
        flash(_("Code not sent: %(reason)s.", reason=exc), "error")
        return _back_to(customer_id)
    finally:
        session.rollback()
    try:
        message_id = mailer_from_config(cfg).send(outgoing)
    except MailError as exc:
        logger.warning(
            "reward code not re-sent",
            extra={"customer": customer_id, "redemption": redemption_id, "staff": current_user.staff_id,
                   "error_class": type(exc).__name__},
        )
        flash(
            _("The code was NOT sent: the mail server could not be reached or refused the message (%(error)s). "
              "Try again later; if it keeps failing, check the SMTP settings.", error=exc),
            "error",
        )
        return _back_to(customer_id)
    logger.info(
        "staff re-sent a reward code",
        extra={"customer": customer_id, "redemption": redemption_id, "staff": current_user.staff_id,
               "message_id": message_id},
    )
    with db.session_scope() as write:
        shop_id = write.get(Customer, customer_id).shop_id
        audit(write, shop_id=shop_id, action="customer.resend_code", subject=f"customer {customer_id}",
              before=None, after={"redemption": redemption_id, "code": code})
    flash(_("Code %(code)s was e-mailed to %(address)s.", code=code, address=address), "success")
    return _back_to(customer_id)


@bp.get("/reminders")
def reminders() -> Any:
    """List reminder sends, newest first, filtered by shop, status or campaign; 100 per page."""
    session = db.request_session()
    status = request.args.get("status") or None
    if status is not None and status not in {s.value for s in MessageStatus}:
        status = None
    campaign = request.args.get("campaign") or None
    if campaign is not None and campaign not in metrics.CAMPAIGNS:
        campaign = None
    shop_id = _int_arg("shop")
    before = _int_arg("before")

    query = only_visible(
        select(ReminderMessage, Shop, Customer, Order.number, IssuedCode.code)
        .join(Shop, Shop.id == ReminderMessage.shop_id)
        .outerjoin(Customer, Customer.id == ReminderMessage.customer_id)
        .outerjoin(Order, Order.id == ReminderMessage.attributed_order_id)
        .outerjoin(IssuedCode, IssuedCode.id == ReminderMessage.code_id),
        ReminderMessage.shop_id,
    )
    if status is not None:
        query = query.where(ReminderMessage.status == MessageStatus(status))
    if campaign is not None:
        query = query.where(ReminderMessage.campaign == campaign)
    if shop_id is not None:
        query = query.where(ReminderMessage.shop_id == shop_id)
    filters = {"status": status, "shop": shop_id, "campaign": campaign}
    rows, older = _newest_first(session, query, ReminderMessage.id, before, "admin.reminders", filters)
    shops = session.scalars(only_visible(select(Shop), Shop.id).order_by(Shop.platform, Shop.domain)).all()
    session.commit()
    return render_template(
        "admin/reminders.html",
        rows=rows,
        filters=filters,
        older=older,
        shops=shops,
        statuses=[s.value for s in MessageStatus],
        campaigns=metrics.CAMPAIGNS,
    )


@bp.get("/shops/<int:shop_id>")
def shop_dashboard(shop_id: int) -> Any:
    """Show whether the program pays: members, repeat purchases, points, rewards, referrals, reminders."""
    period = request.args.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        period = DEFAULT_PERIOD
    days = PERIODS[period][1]
    since = utcnow() - timedelta(days=days) if days is not None else None
    session = db.request_session()
    row = _shop_or_404(session, shop_id)
    figures = metrics.program_metrics(session, row.id, since=since)
    low_pools = vouchers.warnings(session, row, current_program(session, row)[1])
    session.commit()
    return render_template("admin/shop.html", shop=row, m=figures, period=period, periods=PERIODS,
                           low_pools=low_pools)


def _preview(shop: Shop, kind: str, language: str) -> emails.Rendered:
    """Render the sample e-mail of `kind` with this shop's name, colour, link and address line."""
    context = emails.sample_context(kind, language)
    context["shop"] = _shop_mail_context(shop)
    return emails.render(kind, language, context)


def _preview_args(shop_id: int, kind: str) -> tuple[Shop, str]:
    if kind not in emails.KINDS:
        abort(404)
    session = db.request_session()
    row = _shop_or_404(session, shop_id)
    session.commit()
    lang = request.args.get("lang", "")
    return row, lang if lang in emails.LANGUAGES else emails.normalize_language(row.language)


@bp.get("/shops/<int:shop_id>/emails")
def email_previews(shop_id: int) -> Any:
    """List the e-mail kinds the shop's customers can get, with preview links per language."""
    session = db.request_session()
    row = _shop_or_404(session, shop_id)
    session.commit()
    kinds = [{"kind": k, "marketing": k in emails.MARKETING_KINDS} for k in emails.KINDS]
    return render_template("admin/emails.html", shop=row, kinds=kinds, languages=emails.LANGUAGES)


@bp.get("/shops/<int:shop_id>/emails/<kind>")
def email_preview(shop_id: int, kind: str) -> Any:
    """Show one e-mail with sample data in the shop's look: subject, text part, and the HTML framed."""
    row, lang = _preview_args(shop_id, kind)
    rendered = _preview(row, kind, lang)
    return render_template(
        "admin/email_preview.html",
        shop=row,
        kind=kind,
        lang=lang,
        languages=emails.LANGUAGES,
        marketing=kind in emails.MARKETING_KINDS,
        rendered=rendered,
        html_url=url_for("admin.email_preview_html", shop_id=row.id, kind=kind, lang=lang),
    )


@bp.get("/shops/<int:shop_id>/emails/<kind>/html")
def email_preview_html(shop_id: int, kind: str) -> Any:
    """Return the preview's HTML part alone, sandboxed by its CSP, for the preview page's frame."""
    row, lang = _preview_args(shop_id, kind)
    response = make_response(_preview(row, kind, lang).html)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def _pretty(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def _shop_or_404(session: Any, shop_id: int) -> Shop:
    return shop_or_404(session, shop_id)


def _program_page(shop_id: int, *, text: str | None = None, base: int | None = None, error: str | None = None,
                  status: int = 200, values: dict[str, Any] | None = None,
                  field_errors: dict[str, list[str]] | None = None) -> Any:
    session = db.request_session()
    shop = _shop_or_404(session, shop_id)
    version, program = current_program(session, shop)
    versions = program_versions(session, shop)
    session.commit()
    document = program.model_dump(mode="json")
    return render_template(
        "admin/program.html",
        shop=shop,
        version=version,
        text=text if text is not None else _pretty(document),
        base=base if base is not None else version,
        versions=versions,
        error=error,
        values=values if values is not None else program_form.values_from_document(document),
        field_errors=field_errors or {},
        field_id=program_form.field_id,
        point_value_shown=_point_value_shown(shop, program),
    ), status


def _point_value_shown(shop: Shop, program: Program) -> str:
    """Say what a point is worth under the program in force, and why (the program page's hint)."""
    from app.loyalty.storefront import point_value

    language = "de" if g.admin_language == "de" else "en"
    worth, shown = program.point_worth(shop.platform.value), point_value(shop, program, language)
    if worth is None or shown is None:
        return _("Now: no value (no amount reward). Customers see no money value until you state one.")
    if worth.reward is None:
        return _("Now: %(value)s, as stated here.", value=shown.text)
    return _("Now: %(value)s, derived from the reward “%(reward)s”; leave empty to keep deriving it.",
             value=shown.text, reward=worth.reward.name)


class _StaleVersionError(Exception):
    """Another version was saved since the form was rendered."""


def _save_program_document(shop_id: int, document: Any, base: int | None) -> int:
    """Save `document` as the shop's next program version, audited; return its number.

    The one save path of the program page, for the forms and the JSON document alike.

    Raises:
        ProgramError: the document is invalid (nothing saved).
        _StaleVersionError: another version was saved since the page was rendered.
        IntegrityError: another version was saved at the same moment.
    """
    with db.session_scope() as session:
        shop = _shop_or_404(session, shop_id)
        in_force, _in_force_program = current_program(session, shop)
        if base is not None and base != in_force:
            raise _StaleVersionError(in_force)
        row = save_program(session, shop, document, created_by=current_user.email)
        saved = row.version
        audit(session, shop_id=shop.id, action="program.save", subject=f"program of shop {shop.id}",
              before={"version": in_force}, after={"version": saved})
    logger.info("program saved", extra={"shop": shop_id, "version": saved, "staff": current_user.staff_id})
    flash(_("Program version %(version)s is in force.", version=saved), "success")
    return saved


def _stale_message() -> str:
    return _("Another version was saved since you opened this page; nothing was applied. "
             "Compare with the version in force (listed below), then save again.")


@bp.route("/shops/<int:shop_id>/program", methods=["GET", "POST"])
def program(shop_id: int) -> Any:
    """Show the program in force and its versions; on POST save the text as a new version."""
    if request.method == "GET":
        return _program_page(shop_id)
    require_owner(shop_id)
    text = request.form.get("document", "")
    base_raw = request.form.get("base", "")
    base = int(base_raw) if base_raw.isdigit() else None
    try:
        document = json.loads(text)
    except ValueError as exc:
        return _program_page(
            shop_id, text=text, base=base, error=_("Not valid JSON: %(error)s. Nothing was applied.", error=exc), status=400
        )
    if isinstance(document, dict) and set(document) == {"version", "program"}:
        document = document["program"]  # accept what `flask program show` prints
    try:
        _save_program_document(shop_id, document, base)
    except ProgramError as exc:
        return _program_page(shop_id, text=text, base=base, status=400,
                             error=_("Program not applied: %(error)s", error=program_errors.summary(exc)))
    except (_StaleVersionError, IntegrityError):
        return _program_page(shop_id, text=text, status=409, error=_stale_message())
    return redirect(url_for("admin.program", shop_id=shop_id))


@bp.post("/shops/<int:shop_id>/program/forms")
def program_forms(shop_id: int) -> Any:
    """Save the program as edited in the page's forms, laid over the version they showed."""
    require_owner(shop_id)
    base_raw = request.form.get("base", "")
    base = int(base_raw) if base_raw.isdigit() else None
    session = db.request_session()
    shop = _shop_or_404(session, shop_id)
    rows = {row.version: row.document for row in program_versions(session, shop)}
    session.commit()
    shown = rows.get(base) if base else Program().model_dump(mode="json")
    values = program_form.values_from_form(request.form)
    if base is None or shown is None:
        return _program_page(shop_id, values=values, status=409, error=_stale_message())
    posted = program_form.document_from_form(request.form, shown)
    try:
        _save_program_document(shop_id, posted.document, base)
    except ProgramError as exc:
        placed = program_form.field_errors(program_errors.problems(exc), posted)
        return _program_page(
            shop_id, base=base, values=values, field_errors=placed, status=400,
            error=_("Program not applied: %(count)s problems, each shown beside its field. Nothing was saved.",
                    count=sum(len(messages) for messages in placed.values())),
        )
    except (_StaleVersionError, IntegrityError):
        return _program_page(shop_id, values=values, status=409, error=_stale_message())
    return redirect(url_for("admin.program", shop_id=shop_id))


@bp.get("/shops/<int:shop_id>/program/<int:version>")
def program_version(shop_id: int, version: int) -> Any:
    """Show one saved version of the shop's program."""
    session = db.request_session()
    shop = _shop_or_404(session, shop_id)
    rows = {row.version: row for row in program_versions(session, shop)}
    in_force, _in_force_program = current_program(session, shop)
    session.commit()
    row = rows.get(version)
    if row is None:
        abort(404)
    return render_template(
        "admin/program_version.html", shop=shop, row=row, text=_pretty(row.document), in_force=in_force
    )


def _when(value: str | datetime | None, zone: str | None = None) -> Markup | str:
    """Render a timestamp (datetime or ISO string) in the time zone `zone` (a shop's; None: UTC),
    with the zone shown: "02.10.2026 12:00 MESZ" in German, "2026-10-02 12:00 CEST" in English.

    Wrapped in <time> with the exact instant and the zone's name, for screen readers and tooltips.
    """
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    tz = ZoneInfo(zone) if zone else timezone.utc
    local = moment.astimezone(tz)
    if str(get_locale() or "en").startswith("de"):
        text = format_datetime(local, "dd.MM.yyyy HH:mm z", tzinfo=tz, locale="de")
    else:
        text = f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.astimezone(timezone.utc).isoformat(), zone or "UTC", text)


def _signed(value: int) -> str:
    """Render a point change with its sign ('+5', '-3', '0')."""
    return f"{value:+d}" if value else "0"


def _percent(rate: Decimal | None) -> str:
    """Render a rate between 0 and 1 as a percentage with one decimal ('40.0 %'), or '—' for none."""
    if rate is None:
        return "—"
    return f"{rate * 100:.1f} %"


def _index() -> Any:
    return redirect(url_for("admin.dashboard"))


def init_app(app: Flask) -> None:
    """Register the admin blueprint, staff login, CSRF protection and `/`."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from app.web import admin_account, admin_ops, admin_staff  # noqa: F401  (their routes join the blueprint)
    from app.web import admin_reports  # noqa: F401  (owner reports: analytics, liability, exports)
    from app.web import admin_vouchers  # partner voucher pools: create, upload, stock

    # Before CSRF protection reads the form: a partner's CSV may be larger than a webhook.
    app.before_request(admin_vouchers.allow_large_upload)
    csrf.init_app(app)
    login_manager.init_app(app)
    if app.config.get("TRUSTED_PROXIES"):
        # The client's address (sign-in throttling) from X-Forwarded-For, as many hops deep as
        # there are proxies of our own in front; never trusted without them (anyone can send it).
        proxies = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    app.register_blueprint(bp)
    app.add_template_filter(_when, "when")
    app.add_template_filter(_signed, "signed")
    app.add_template_filter(_percent, "percent")
    app.add_template_global(status_text, "status_text")
    app.add_template_global(purpose_text, "purpose_text")
    app.add_template_global(end_reason_text, "end_reason_text")
    app.add_template_global(code_state_text, "code_state_text")
    app.add_template_filter(_money, "money")
    app.add_template_filter(_number, "number")
    app.add_url_rule("/", "index", _index)

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> Any:
        logger.info("request without a valid CSRF token", extra={"endpoint": request.endpoint})
        message = _("The form has expired or was not sent from this site. Reload the page and try again.")
        return render_template("admin/error.html", code=400, message=message), 400
