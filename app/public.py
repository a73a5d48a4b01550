"""Blueprint "public": one-click unsubscribe (RFC 8058) and double opt-in confirmation.

No log-in and no CSRF token: the signed link is the credential, and RFC 8058 one-click
unsubscribe is a bare POST from the mail client (`List-Unsubscribe=One-Click`). Unsubscribing is
immediate and recorded with a timestamped `ConsentEvent`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from flask import Blueprint, current_app, render_template, request

from app import consent, links
from app.db import session_scope
from app.emails import customer_language
from app.models import Customer, Shop

logger = logging.getLogger(__name__)

bp = Blueprint("public", __name__)

TEXT = {
    "de": {
        "unsubscribe_title": "Abmelden",
        "unsubscribe_question": "Möchten Sie keine Erinnerungen und Angebote von {shop} mehr per E-Mail erhalten?",
        "unsubscribe_button": "Jetzt abmelden",
        "unsubscribed": "Sie sind abgemeldet. Sie erhalten von {shop} keine Erinnerungen mehr.",
        "confirmed": "Danke! Ihre Anmeldung bei {shop} ist bestätigt.",
        "invalid": "Dieser Link ist ungültig oder abgelaufen.",
    },
    "en": {
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Do you want to stop receiving reminders and offers from {shop} by e-mail?",
        "unsubscribe_button": "Unsubscribe now",
        "unsubscribed": "You are unsubscribed. {shop} will send you no more reminders.",
        "confirmed": "Thank you! Your subscription to {shop} is confirmed.",
        "invalid": "This link is not valid or has expired.",
    },
}


def _texts(shop: Shop | None, customer: Customer | None = None) -> dict[str, str]:
    language = customer_language(customer, shop)
    name = (shop.name or shop.domain) if shop is not None else ""
    return {k: v.format(shop=name) for k, v in TEXT[language].items()}


def _proof() -> dict[str, Any]:
    """What we keep as proof of the action: time is on the event; the client IP only hashed."""
    ip = request.headers.get("X-Forwarded-For", request.remote_addr or "").split(",")[0].strip()
    return {"ip_sha256": hashlib.sha256(ip.encode()).hexdigest()[:16] if ip else None,
            "one_click": request.form.get("List-Unsubscribe") == "One-Click"}


def _resolve(kind: str, token: str) -> tuple[int, int] | None:
    try:
        return links.read_token(current_app.config["SECRET_KEY"], kind, token)
    except links.InvalidLinkError:
        return None


def _page(texts: dict[str, str], status: int = 200, **kw: Any) -> Any:
    response = current_app.make_response((render_template("public/page.html", t=texts, **kw), status))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.route("/u/<token>", methods=["GET", "POST"])
def unsubscribe(token: str) -> Any:
    """GET shows a confirmation page; POST (a form or RFC 8058 one-click) unsubscribes at once."""
    ids = _resolve("unsubscribe", token)
    if ids is None:
        return _page(_texts(None), 404, message="invalid")
    shop_id, customer_id = ids
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        customer = session.get(Customer, customer_id)
        if shop is None or customer is None or customer.shop_id != shop.id:
            return _page(_texts(shop), 404, message="invalid")
        texts = _texts(shop, customer)
        if request.method == "GET":
            if customer.unsubscribed_at is not None:
                return _page(texts, message="unsubscribed")
            return _page(texts, message="question", action=request.path)
        consent.unsubscribe(session, customer, source="unsubscribe_link", detail=_proof())
    logger.info("customer unsubscribed", extra={"shop": shop_id, "customer": customer_id})
    return _page(texts, message="unsubscribed")


@bp.route("/consent/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Any:
    """Record marketing consent from our double opt-in e-mail's link."""
    ids = _resolve("doi", token)
    if ids is None:
        return _page(_texts(None), 404, message="invalid")
    shop_id, customer_id = ids
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        customer = session.get(Customer, customer_id)
        if shop is None or customer is None or customer.shop_id != shop.id:
            return _page(_texts(shop), 404, message="invalid")
        texts = _texts(shop, customer)
        consent.confirm_double_opt_in(session, customer, detail=_proof())
    return _page(texts, message="confirmed")


def init_app(app: Any) -> None:
    """Register the blueprint and exempt it from CSRF (the signed token is the credential)."""
    app.register_blueprint(bp)
    from app.admin import csrf

    csrf.exempt(bp)
