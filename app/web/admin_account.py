"""The admin's sign-in (password, throttling, the optional second factor), sign-out, the staff
user's own account page (language, second factor), and the set-password links owners hand to
the staff they add. Routes of the "admin" blueprint (app.web.admin).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import segno
from flask import current_app, flash, g, redirect, render_template, request, session as cookie, url_for
from flask_babel import gettext as _
from flask_babel import ngettext, refresh
from flask_login import current_user, login_user, logout_user
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from app import db
from app.models import StaffUser, utcnow
from app.web import staff, throttle
from app.web.access import StaffSession, audit, shop_languages
from app.web.admin import _safe_next, admin_language, bp

logger = logging.getLogger(__name__)

# How long the second step may follow the password, and a set-password link stays valid.
SECOND_STEP_SECONDS = 300
PASSWORD_LINK_SECONDS = 7 * 24 * 3600
_PENDING = "staff_pending_second_factor"
LANGUAGES = ("de", "en")


def _keys(email: str) -> throttle.Keys:
    return throttle.keys_for(current_app.config["SECRET_KEY"], email, request.remote_addr or "")


def _blocked_page(until: datetime, email: str, template: str = "admin/login.html", **extra: Any) -> Any:
    minutes = max(1, int((until - utcnow()).total_seconds() + 59) // 60)
    error = ngettext("Too many failed sign-ins. For your safety, sign-ins for this account or from this network "
                     "are paused; try again in %(num)s minute.",
                     "Too many failed sign-ins. For your safety, sign-ins for this account or from this network "
                     "are paused; try again in %(num)s minutes.", minutes)
    return render_template(template, email=email, error=error, **extra), 429


def _complete_sign_in(session: Any, user: StaffUser, keys: throttle.Keys, next_page: str | None) -> Any:
    throttle.clear_account(session, keys)
    user.last_login_at = utcnow()
    sign_in = staff.open_sign_in(session, user)
    access = staff.access_of(session, user)
    languages = shop_languages(session, access)
    session.commit()
    login_user(StaffSession(user, sign_in, access, languages))
    logger.info("staff signed in", extra={"staff": user.id})
    return redirect(next_page or url_for("admin.dashboard"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Show the sign-in form; sign in on POST (one generic error for any wrong credential).

    Failed attempts are counted per account and per address (app.web.throttle); while either is
    over its limit the form answers 429 with when to try again, and no password is checked.
    """
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(url_for("admin.dashboard"))
        return render_template("admin/login.html", next=_safe_next(request.args.get("next")))
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    next_page = _safe_next(request.form.get("next"))
    session = db.request_session()
    keys = _keys(email)
    until = throttle.blocked_until(session, keys)
    if until is not None:
        session.rollback()
        logger.info("staff sign-in refused: throttled")
        return _blocked_page(until, email, next=next_page)
    user = staff.authenticate(session, email, password) if email and password else None
    if user is None:
        session.rollback()
        throttle.record_failure(session, keys)
        session.commit()
        logger.info("staff sign-in failed")
        return render_template("admin/login.html", next=next_page, email=email, error=_("Wrong e-mail or password."))
    if staff.has_totp(user):
        cookie[_PENDING] = {"id": user.id, "token": staff.password_digest(user.password_hash),
                            "at": int(time.time()), "next": next_page}
        session.commit()
        return redirect(url_for("admin.login_code"))
    return _complete_sign_in(session, user, keys, next_page)


def _pending_user(session: Any) -> tuple[StaffUser, str | None] | None:
    pending = cookie.get(_PENDING)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > SECOND_STEP_SECONDS:
        return None
    user = session.get(StaffUser, pending.get("id"))
    if user is None or not user.active or staff.password_digest(user.password_hash) != pending.get("token"):
        return None
    return user, _safe_next(pending.get("next"))


@bp.route("/login/code", methods=["GET", "POST"])
def login_code() -> Any:
    """The second step for accounts with a second factor: the code from the authenticator app."""
    session = db.request_session()
    found = _pending_user(session)
    if found is None:
        session.rollback()
        cookie.pop(_PENDING, None)
        flash(_("Please sign in again (the second step has to follow the password within 5 minutes)."), "info")
        return redirect(url_for("admin.login"))
    user, next_page = found
    if request.method == "GET":
        session.rollback()
        return render_template("admin/login_code.html")
    keys = _keys(user.email)
    until = throttle.blocked_until(session, keys)
    if until is not None:
        session.rollback()
        return _blocked_page(until, "", template="admin/login_code.html")
    if not staff.check_totp(session, user, request.form.get("code", ""), keys=current_app.config["ENCRYPTION_KEY"]):
        session.rollback()
        throttle.record_failure(session, keys)
        session.commit()
        logger.info("staff second factor failed", extra={"staff": user.id})
        return render_template("admin/login_code.html", error=_("That code is not right (or was used already). "
                                       "Enter the current 6-digit code from your authenticator app.")), 200
    cookie.pop(_PENDING, None)
    return _complete_sign_in(session, user, keys, next_page)


@bp.post("/logout")
def logout() -> Any:
    """Sign out: the server forgets the sign-in, so a copy of the cookie stops working too."""
    if current_user.is_authenticated:
        session = db.request_session()
        staff.close_sign_in(session, current_user.sign_in)
        session.commit()
    logout_user()
    flash(_("You have been signed out."), "info")
    return redirect(url_for("admin.login"))


# ---- the account page ---------------------------------------------------------------------

def _account_page(*, setup_secret: str | None = None, error: str | None = None, status: int = 200) -> Any:
    setup = None
    if setup_secret is not None:
        uri = staff.totp_uri(setup_secret, current_user.email)
        setup = {"secret": setup_secret, "uri": uri,
                 "qr": segno.make(uri, error="m").svg_inline(scale=4, dark="#1a1a1a", light="#ffffff",
                                                             title=_("QR code for the authenticator app"))}
    return render_template("admin/account.html", setup=setup, error=error, languages=LANGUAGES), status


def _me(session: Any) -> StaffUser:
    user = session.get(StaffUser, current_user.staff_id)
    assert user is not None  # the loader found it for this request
    return user


@bp.get("/account")
def account() -> Any:
    """The signed-in user's own settings: the admin's language and the second factor."""
    return _account_page()


@bp.post("/account/language")
def account_language() -> Any:
    """Set the language the admin speaks to this user (empty: that of their shops)."""
    language = request.form.get("language", "")
    if language not in (*LANGUAGES, ""):
        flash(_("Choose German or English."), "error")
        return redirect(url_for("admin.account"))
    with db.session_scope() as session:
        user = _me(session)
        before = user.language
        user.language = language or None
        audit(session, shop_id=None, action="account.language", subject=f"staff {user.id}",
              before={"language": before}, after={"language": user.language})
    # Say it in the language just chosen (this request started in the old one).
    current_user.language = language or None
    g.admin_language = admin_language()
    refresh()
    flash(_("Language saved."), "success")
    return redirect(url_for("admin.account"))


@bp.post("/account/totp/setup")
def totp_setup() -> Any:
    """Start turning the second factor on: show a new secret as a QR code and as text."""
    if current_user.has_totp:
        flash(_("Two-step sign-in is on already."), "info")
        return redirect(url_for("admin.account"))
    return _account_page(setup_secret=staff.new_totp_secret())


def _password_ok(session: Any, user: StaffUser) -> bool:
    return staff.verify_password(user, request.form.get("password", ""))


@bp.post("/account/totp/enable")
def totp_enable() -> Any:
    """Turn the second factor on once the password and a code from the app are right."""
    secret = request.form.get("secret", "")
    if len(secret) != 32 or not secret.isalnum():
        flash(_("The set-up form is incomplete. Start again."), "error")
        return redirect(url_for("admin.account"))
    with db.session_scope() as session:
        user = _me(session)
        if not _password_ok(session, user):
            session.rollback()
            return _account_page(setup_secret=secret, error=_("Your password is not right."), status=400)
        if not staff.enable_totp(session, user, secret, request.form.get("code", ""),
                                 keys=current_app.config["ENCRYPTION_KEY"]):
            session.rollback()
            return _account_page(setup_secret=secret, status=400,
                                 error=_("That code is not right. Check the time on your phone and enter the current code."))
        audit(session, shop_id=None, action="account.totp_on", subject=f"staff {user.id}",
              before={"totp": False}, after={"totp": True})
    logger.info("staff turned on the second factor", extra={"staff": current_user.staff_id})
    flash(_("Two-step sign-in is on: from now on you enter a code from your app after your password."), "success")
    return redirect(url_for("admin.account"))


@bp.post("/account/totp/disable")
def totp_disable() -> Any:
    """Turn the second factor off (password and a current code needed)."""
    keys = current_app.config["ENCRYPTION_KEY"]
    with db.session_scope() as session:
        user = _me(session)
        if not (_password_ok(session, user) and staff.check_totp(session, user, request.form.get("code", ""), keys=keys)):
            session.rollback()
            return _account_page(error=_("Password or code not right; two-step sign-in stays on."), status=400)
        staff.disable_totp(session, user)
        audit(session, shop_id=None, action="account.totp_off", subject=f"staff {user.id}",
              before={"totp": True}, after={"totp": False})
    logger.info("staff turned off the second factor", extra={"staff": current_user.staff_id})
    flash(_("Two-step sign-in is off."), "success")
    return redirect(url_for("admin.account"))


# ---- set-password links -------------------------------------------------------------------

def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="staff-set-password")


def password_link(user: StaffUser) -> str:
    """Return the absolute link that lets `user` set a password (7 days, until a password is set)."""
    token = _serializer().dumps({"id": user.id, "p": staff.password_digest(user.password_hash)})
    return url_for("admin.set_password", token=token, _external=True)


def _link_user(session: Any, token: str) -> StaffUser | None:
    try:
        data = _serializer().loads(token, max_age=PASSWORD_LINK_SECONDS)
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict):
        return None
    user = session.scalars(select(StaffUser).where(StaffUser.id == data.get("id"))).first()
    # The digest changes with the password: a link works until it (or anything else) set one.
    if user is None or not user.active or staff.password_digest(user.password_hash) != data.get("p"):
        return None
    return user


@bp.route("/password/<token>", methods=["GET", "POST"])
def set_password(token: str) -> Any:
    """Let a new staff user choose their password through the link their owner gave them."""
    session = db.request_session()
    user = _link_user(session, token)
    if user is None:
        session.rollback()
        return render_template("admin/error.html", code=404, message=_(
            "This link is not valid any more: it was used, it expired (after 7 days), or a newer one "
            "was made. Ask the shop owner for a new link.")), 404
    if request.method == "GET":
        session.rollback()
        return render_template("admin/set_password.html", email=user.email, min_length=staff.MIN_PASSWORD_LENGTH)
    password = request.form.get("password", "")
    if password != request.form.get("repeat", ""):
        session.rollback()
        return render_template("admin/set_password.html", email=user.email, min_length=staff.MIN_PASSWORD_LENGTH,
                               error=_("The two passwords differ.")), 400
    try:
        staff.set_password(session, user, password)
    except ValueError as exc:
        session.rollback()
        return render_template("admin/set_password.html", email=user.email, min_length=staff.MIN_PASSWORD_LENGTH,
                               error=_("Not saved: %(reason)s.", reason=exc)), 400
    from app import audit as audit_log

    audit_log.record(session, shop_id=None, staff_id=user.id, staff_email=user.email, action="account.password_set",
                     subject=f"staff {user.id}")
    session.commit()
    flash(_("Your password is set. Sign in with it now."), "success")
    return redirect(url_for("admin.login"))
