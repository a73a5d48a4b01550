"""Blueprint "admin": staff login, shops, webhook deliveries (with replay) and customer ledgers.

Every page but the login form needs a signed-in staff user (Flask-Login). Every POST carries a
CSRF token (Flask-WTF's CSRFProtect), except the platform webhooks, which are signed instead.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from redis.exceptions import RedisError
from sqlalchemy import func, select

from app import db, explain, ledger, staff, webhooks
from app.models import Customer, DeliveryStatus, Shop, StaffUser, WebhookDelivery
from app.queues import RedisNotConfiguredError

logger = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "admin.login"
login_manager.login_message = "Please sign in to see this page."
login_manager.login_message_category = "info"

PAGE_SIZE = 100
SEARCH_LIMIT = 100


class StaffSession(UserMixin):
    """The signed-in staff user as Flask-Login sees it (detached from any DB session).

    The session id includes a digest of the password hash, so a new password (`flask staff
    create` again) signs out every existing session of that account.
    """

    def __init__(self, user: StaffUser) -> None:
        self.staff_id = user.id
        self.email = user.email
        self.active = user.active
        self.token = _password_digest(user.password_hash)

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return f"{self.staff_id}-{self.token}"


def _password_digest(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@login_manager.user_loader
def _load_staff(session_id: str) -> StaffSession | None:
    staff_id, _, token = session_id.partition("-")
    if not staff_id.isdigit():
        return None
    session = db.request_session()
    user = session.get(StaffUser, int(staff_id))
    staff_session = None
    if user is not None and user.active and _password_digest(user.password_hash) == token:
        staff_session = StaffSession(user)
    # End the read at once: on SQLite every transaction holds the write lock (BEGIN IMMEDIATE),
    # and views such as replay write through their own session.
    session.rollback()
    return staff_session


def _safe_next(target: str | None) -> str | None:
    """Return `target` when it is a path on this site (no open redirect), else None."""
    if not target or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.before_request
def _require_login() -> Any:
    if request.endpoint == "admin.login" or current_user.is_authenticated:
        return None
    return login_manager.unauthorized()


@bp.after_request
def _no_store(response: Any) -> Any:
    # Pages show customer data: never cache them, never frame them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Show the sign-in form; sign in on POST (one generic error for any wrong credential)."""
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(url_for("admin.dashboard"))
        return render_template("admin/login.html", next=_safe_next(request.args.get("next")))
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    session = db.request_session()
    user = staff.authenticate(session, email, password) if email and password else None
    if user is None:
        session.rollback()
        logger.info("staff sign-in failed")
        return render_template(
            "admin/login.html",
            next=_safe_next(request.form.get("next")),
            email=email,
            error="Wrong e-mail or password.",
        )
    session.commit()
    login_user(StaffSession(user))
    logger.info("staff signed in", extra={"staff": user.id})
    return redirect(_safe_next(request.form.get("next")) or url_for("admin.dashboard"))


@bp.post("/logout")
def logout() -> Any:
    """Sign out."""
    logout_user()
    flash("You have been signed out.", "info")
    return redirect(url_for("admin.login"))


@bp.get("/")
def dashboard() -> Any:
    """List the shops with their delivery counts by status."""
    session = db.request_session()
    shops = session.scalars(select(Shop).order_by(Shop.platform, Shop.domain)).all()
    counts: dict[int, dict[str, int]] = {}
    for shop_id, status, n in session.execute(
        select(WebhookDelivery.shop_id, WebhookDelivery.status, func.count())
        .group_by(WebhookDelivery.shop_id, WebhookDelivery.status)
    ):
        counts.setdefault(shop_id, {})[DeliveryStatus(status).value] = n
    return render_template(
        "admin/shops.html", shops=shops, counts=counts, statuses=[s.value for s in DeliveryStatus]
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

    query = select(WebhookDelivery, Shop).join(Shop, Shop.id == WebhookDelivery.shop_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == DeliveryStatus(status))
    if shop_id is not None:
        query = query.where(WebhookDelivery.shop_id == shop_id)
    if delivery_id is not None:
        query = query.where(WebhookDelivery.id == delivery_id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    # Keyset pagination on the primary key: the newest first, cheap on a large inbox.
    rows = session.execute(query.order_by(WebhookDelivery.id.desc()).limit(PAGE_SIZE + 1)).all()
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filters = {k: v for k, v in (("status", status), ("shop", shop_id), ("id", delivery_id)) if v is not None}
    older = url_for("admin.deliveries", before=rows[-1][0].id, **filters) if more else None
    shops = session.scalars(select(Shop).order_by(Shop.platform, Shop.domain)).all()
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
    from jobs.deliveries import replay_delivery

    try:
        found = replay_delivery(delivery_id)
    except (RedisError, RedisNotConfiguredError):
        logger.warning("replay could not be enqueued", extra={"delivery": delivery_id}, exc_info=True)
        flash(
            f"Delivery {delivery_id} is marked as received again, but the job queue (Redis) is not "
            "reachable, so it was not queued now. The requeue sweep will process it once the queue "
            "is back; there is no need to replay it again.",
            "error",
        )
    else:
        if found:
            logger.info("delivery replayed", extra={"delivery": delivery_id, "staff": current_user.staff_id})
            flash(f"Delivery {delivery_id} was queued for processing again.", "success")
        else:
            flash(f"Delivery {delivery_id} does not exist.", "error")
    back = {k: request.form[k] for k in ("status", "shop", "id") if request.form.get(k)}
    return redirect(url_for("admin.deliveries", **back))


@bp.get("/customers")
def customers() -> Any:
    """Find customers across shops by e-mail (case-insensitive; exact or prefix)."""
    q = request.args.get("q", "").strip()
    results: list[dict[str, Any]] = []
    truncated = False
    if q:
        session = db.request_session()
        rows = session.execute(
            select(Customer, Shop)
            .join(Shop, Shop.id == Customer.shop_id)
            .where(func.lower(Customer.email).startswith(q.lower(), autoescape=True))
            .where(Customer.merged_into_id.is_(None))
            .order_by(func.lower(Customer.email), Shop.domain, Customer.id)
            .limit(SEARCH_LIMIT + 1)
        ).all()
        truncated = len(rows) > SEARCH_LIMIT
        for customer, shop in rows[:SEARCH_LIMIT]:
            results.append(
                {"customer": customer, "shop": shop, "balance": ledger.balance(session, customer.id)}
            )
    return render_template("admin/customers.html", q=q, results=results, truncated=truncated, limit=SEARCH_LIMIT)


@bp.get("/customers/<int:customer_id>")
def customer(customer_id: int) -> Any:
    """Show one customer's balance, lots and explained ledger (app.explain.customer_report)."""
    session = db.request_session()
    row = session.get(Customer, customer_id)
    if row is None:
        abort(404)
    shop = session.get(Shop, row.shop_id)
    report = explain.customer_report(session, row)
    return render_template("admin/customer.html", customer=row, shop=shop, report=report)


def _when(value: str | datetime | None) -> str:
    """Render a timestamp (datetime or ISO string) as 'YYYY-MM-DD HH:MM UTC'."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _signed(value: int) -> str:
    """Render a point change with its sign ('+5', '-3', '0')."""
    return f"{value:+d}" if value else "0"


def _index() -> Any:
    return redirect(url_for("admin.dashboard"))


def init_app(app: Flask) -> None:
    """Register the admin blueprint, staff login, CSRF protection (webhooks exempt) and `/`."""
    csrf.init_app(app)
    # Platforms sign their webhooks with HMAC; they cannot send our CSRF token.
    csrf.exempt(webhooks.bp)
    login_manager.init_app(app)
    app.register_blueprint(bp)
    app.add_template_filter(_when, "when")
    app.add_template_filter(_signed, "signed")
    app.add_url_rule("/", "index", _index)

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> Any:
        logger.info("request without a valid CSRF token", extra={"endpoint": request.endpoint})
        message = "The form has expired or was not sent from this site. Reload the page and try again."
        return render_template("admin/error.html", code=400, message=message), 400
