"""Blueprint "public": one-click unsubscribe (RFC 8058), double opt-in confirmation, and the
friend page of a referral code (`/f/<shop id>/<code>`).

No log-in and no CSRF token: the signed link is the credential, and RFC 8058 one-click
unsubscribe is a bare POST from the mail client (`List-Unsubscribe=One-Click`). Unsubscribing is
immediate and recorded with a timestamped `ConsentEvent`.

The friend page is what a WooCommerce member shares (core WooCommerce ignores `?coupon=`): the
friend's discount and the code to copy, in the shop's language and colours, and a button to the
shop. It names nobody, and shows only a code that exists in the shop; anything else is a 404.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from decimal import Decimal
from typing import Any

from flask import Blueprint, current_app, render_template, request

from app.messaging import consent, links
from app.loyalty import referrals
from app.db import session_scope
from app.messaging.render import brand_colours, customer_language, format_money
from app.models import Customer, Shop
from connectors import get_connector

logger = logging.getLogger(__name__)

bp = Blueprint("public", __name__)

TEXT = {
    "de": {
        "unsubscribe_title": "Abmelden",
        "unsubscribe_question": "Möchten Sie keine Erinnerungen und Angebote von {shop} mehr per E-Mail erhalten?",
        "unsubscribe_button": "Jetzt abmelden",
        "unsubscribed": "Sie sind abgemeldet. Sie erhalten von {shop} keine Erinnerungen mehr.",
        "confirm_title": "Anmeldung bestätigen",
        "confirm_question": "Möchten Sie Erinnerungen und Angebote von {shop} per E-Mail erhalten?",
        "confirm_button": "Ja, Anmeldung bestätigen",
        "confirmed": "Danke! Ihre Anmeldung bei {shop} ist bestätigt.",
        "invalid": "Dieser Link ist ungültig oder abgelaufen.",
        "friend_title": "Dein Rabatt bei {shop}",
        "friend_invited": "Du wurdest zu {shop} eingeladen.",
        "friend_offer": "{value} Rabatt auf deine erste Bestellung",
        "friend_minimum": "ab {amount} Bestellwert",
        "friend_code": "Dein Code",
        "friend_how": "Gib den Code an der Kasse im Feld „Gutschein“ ein.",
        "friend_copy": "Code kopieren",
        "friend_copied": "Kopiert!",
        "friend_shop": "Zum Shop",
        "friend_invalid": "Dieser Empfehlungslink ist ungültig. Bitte frag nach einem neuen Link.",
        "free_shipping": "Gratisversand",
    },
    "en": {
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Do you want to stop receiving reminders and offers from {shop} by e-mail?",
        "unsubscribe_button": "Unsubscribe now",
        "unsubscribed": "You are unsubscribed. {shop} will send you no more reminders.",
        "confirm_title": "Confirm your subscription",
        "confirm_question": "Do you want to receive reminders and offers from {shop} by e-mail?",
        "confirm_button": "Yes, confirm my subscription",
        "confirmed": "Thank you! Your subscription to {shop} is confirmed.",
        "invalid": "This link is not valid or has expired.",
        "friend_title": "Your discount at {shop}",
        "friend_invited": "You have been invited to {shop}.",
        "friend_offer": "{value} off your first order",
        "friend_minimum": "on orders from {amount}",
        "friend_code": "Your code",
        "friend_how": "Enter the code at checkout in the coupon field.",
        "friend_copy": "Copy code",
        "friend_copied": "Copied!",
        "friend_shop": "Go to the shop",
        "friend_invalid": "This referral link is not valid. Please ask for a new one.",
        "free_shipping": "Free shipping",
    },
}


def _texts(shop: Shop | None, customer: Customer | None = None) -> dict[str, str]:
    language = customer_language(customer, shop)
    name = (shop.name or shop.domain) if shop is not None else ""
    return {k: v.replace("{shop}", name) for k, v in TEXT[language].items()}


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


def _linked_customer(session: Any, kind: str, token: str) -> tuple[Shop | None, Customer | None]:
    """Return the shop and customer a signed link of `kind` names; the customer is None when the
    link is not valid (the shop too, where the link names none)."""
    ids = _resolve(kind, token)
    if ids is None:
        return None, None
    shop, customer = session.get(Shop, ids[0]), session.get(Customer, ids[1])
    if shop is None or customer is None or customer.shop_id != shop.id:
        return shop, None
    return shop, customer


@bp.route("/u/<token>", methods=["GET", "POST"])
def unsubscribe(token: str) -> Any:
    """GET shows a confirmation page; POST (a form or RFC 8058 one-click) unsubscribes at once."""
    with session_scope() as session:
        shop, customer = _linked_customer(session, "unsubscribe", token)
        if shop is None or customer is None:
            return _page(_texts(shop), 404, message="invalid")
        shop_id, customer_id, texts = shop.id, customer.id, _texts(shop, customer)
        if request.method == "GET":
            if customer.unsubscribed_at is not None:
                return _page(texts, message="unsubscribed")
            return _page(texts, message="question", action=request.path)
        consent.unsubscribe(session, customer, source="unsubscribe_link", detail=_proof())
    logger.info("customer unsubscribed", extra={"shop": shop_id, "customer": customer_id})
    return _page(texts, message="unsubscribed")


@bp.route("/consent/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Any:
    """GET shows a page with a button; only its POST records marketing consent.

    Mail scanners and link previews open every link in a message (GET): a GET that confirmed
    would record consent nobody gave.
    """
    with session_scope() as session:
        shop, customer = _linked_customer(session, "doi", token)
        if shop is None or customer is None:
            return _page(_texts(shop), 404, message="invalid")
        shop_id, customer_id, texts = shop.id, customer.id, _texts(shop, customer)
        if request.method == "GET":
            if customer.accepts_marketing and customer.consent_source == "double_opt_in":
                return _page(texts, message="confirmed")
            return _page(texts, message="confirm_question", action=request.path)
        consent.confirm_double_opt_in(session, customer, detail=_proof())
    logger.info("double opt-in confirmed", extra={"shop": shop_id, "customer": customer_id})
    return _page(texts, message="confirmed")


def _offer_text(offer: referrals.FriendOffer, language: str, texts: dict[str, str]) -> str:
    if offer.kind == "percentage":
        percent = f"{offer.value.normalize():f}"
        return texts["friend_offer"].replace("{value}", f"{percent} %" if language == "de" else f"{percent}%")
    if offer.kind == "fixed_amount":
        return texts["friend_offer"].replace("{value}", format_money(offer.value, offer.currency, language))
    return texts["free_shipping"]


@bp.get("/f/<int:shop_id>/<code>")
def friend(shop_id: int, code: str) -> Any:
    """Show a friend the discount and the code a member shared, and lead them to the shop."""
    with session_scope() as session:
        offer = referrals.friend_offer(session, shop_id, code)
        shop = offer.shop if offer is not None else session.get(Shop, shop_id)
        language = customer_language(None, shop)
        texts = _texts(shop)
        colours = brand_colours(shop.brand_color if shop is not None else None)
        shop_name = (shop.name or shop.domain) if shop is not None else ""
        if offer is not None:
            page = {
                "code": offer.code,
                "offer": _offer_text(offer, language, texts),
                "minimum": texts["friend_minimum"].replace(
                    "{amount}", format_money(offer.minimum_amount, offer.currency, language))
                if offer.minimum_amount and offer.minimum_amount > Decimal(0) else None,
                # A link that applies the code where the platform has one, else the shop's home page.
                "shop_url": get_connector(offer.shop.platform.value).discount_link(offer.shop.domain, offer.code)
                or referrals.shop_url(offer.shop),
            }
    nonce = secrets.token_urlsafe(16)
    body = render_template("public/friend.html", t=texts, language=language, colours=colours,
                           shop_name=shop_name, nonce=nonce, **({"page": page} if offer is not None else {}))
    response = current_app.make_response((body, 200 if offer is not None else 404))
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    if offer is None:
        logger.info("friend page for an unknown or uncreated code", extra={"shop": shop_id})
    return response


def init_app(app: Any) -> None:
    """Register the blueprint and exempt it from CSRF (the signed token is the credential)."""
    app.register_blueprint(bp)
    from app.web.admin import csrf

    csrf.exempt(bp)
