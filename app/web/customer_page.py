"""Blueprint "customer_page": a customer's own points and rewards, behind a signed link.

`/r/<token>` needs no log-in: the token is an itsdangerous `URLSafeTimedSerializer` signature
(secret key, salt "customer-page") over {"shop": id, "customer": id}, valid for 30 days. Whoever
holds the link can redeem that one customer's points, so the page sends no referrer, is never
cached or framed, and asks search engines not to index it.

Texts come from Flask-Babel catalogs (`app/translations`, English message ids, German
translations) in the customer's language, else the shop's (`app.messaging.render.customer_language`).
The `.po` files are compiled to `.mo` into the instance folder when the app starts, so no build
step has to run `pybabel compile`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from flask import Blueprint, Flask, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import Babel, gettext, refresh
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from app import db
from app.loyalty import explain, ledger, storefront, vouchers
from app.messaging.render import customer_language
from app.models import Customer, Shop, ShopStatus
from app.program import Program, current_program
from app.loyalty.redemptions import RedemptionError, affordable, redeem, redemptions_of

logger = logging.getLogger(__name__)

bp = Blueprint("customer_page", __name__, url_prefix="/r")

SALT = "customer-page"
MAX_AGE = timedelta(days=30)
DEFAULT_LANGUAGE = "de"
TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
_MERGE_HOPS = 5
MAX_REWARD_POINTS = 10_000_000  # app.program.Reward.points is at most this


class InvalidLinkError(Exception):
    """The link is tampered, expired or names no customer; `shop_id` is set when it is trusted."""

    def __init__(self, reason: str, shop_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # "invalid" | "expired"
        self.shop_id = shop_id


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=SALT)


def make_token(shop_id: int, customer_id: int) -> str:
    """Return the signed token for one customer's page (needs an app context)."""
    return _serializer().dumps({"shop": shop_id, "customer": customer_id})


def customer_link(customer: Customer) -> str:
    """Return the absolute URL of the customer's page (for the admin and e-mails).

    Outside a request (a job sending e-mail), Flask needs SERVER_NAME and PREFERRED_URL_SCHEME.
    """
    token = make_token(customer.shop_id, customer.id)
    return url_for("customer_page.page", token=token, _external=True)


def read_token(token: str) -> tuple[int, int]:
    """Return (shop id, customer id) from a token signed by `make_token` within MAX_AGE.

    Raises:
        InvalidLinkError: bad signature or payload, or expired (then with the shop id).
    """
    serializer = _serializer()
    try:
        payload = serializer.loads(token, max_age=int(MAX_AGE.total_seconds()))
    except SignatureExpired as exc:
        # The signature is good, only old: the shop is known, so the page can speak its language.
        ids = None
        if exc.payload is not None:
            try:
                ids = _ids(serializer.load_payload(exc.payload))
            except BadData:
                ids = None
        raise InvalidLinkError("expired", ids[0] if ids else None) from None
    except BadData:
        raise InvalidLinkError("invalid") from None
    ids = _ids(payload)
    if ids is None:
        raise InvalidLinkError("invalid")
    return ids


def _ids(payload: Any) -> tuple[int, int] | None:
    if not isinstance(payload, dict):
        return None
    shop_id, customer_id = payload.get("shop"), payload.get("customer")
    if type(shop_id) is not int or type(customer_id) is not int:
        return None
    return shop_id, customer_id


def _resolve(session: Session, token: str) -> tuple[Shop, Customer]:
    """Return the shop and the live customer (following guest merges) the token names.

    Raises:
        InvalidLinkError: the token is bad or expired, or the shop or customer is gone.
    """
    shop_id, customer_id = read_token(token)
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise InvalidLinkError("invalid")
    if shop.status != ShopStatus.ACTIVE:
        raise InvalidLinkError("invalid", shop.id)
    customer = session.get(Customer, customer_id)
    hops = 0
    # A guest merged into an account keeps its link: the points now live on the account.
    while customer is not None and customer.merged_into_id is not None and hops < _MERGE_HOPS:
        customer = session.get(Customer, customer.merged_into_id)
        hops += 1
    if customer is None or customer.shop_id != shop.id or customer.merged_into_id is not None:
        raise InvalidLinkError("invalid", shop.id)
    return shop, customer


def _use_shop(shop: Shop | None, customer: Customer | None = None) -> None:
    """Speak the customer's language, else the shop's (German when both are unknown), and show
    the shop's local times."""
    g.customer_page_language = customer_language(customer, shop)
    g.customer_page_timezone = (shop.timezone if shop is not None else None) or "Europe/Berlin"
    refresh()


def _select_locale() -> str | None:
    # The customer page speaks the customer's language; the admin its staff user's (app.web.admin).
    return g.get("customer_page_language") or g.get("admin_language")


def _select_timezone() -> str | None:
    return g.get("customer_page_timezone")


def _dated(row: dict[str, Any]) -> dict[str, Any]:
    """Return a `redemptions_of` row with its ISO timestamps as datetimes (for dateformat)."""
    return {
        **row,
        **{k: datetime.fromisoformat(row[k]) if row[k] else None for k in ("created_at", "expires_at")},
    }


@dataclass(frozen=True)
class _Offer:
    name: str
    points: int
    key: str
    description: str | None = None  # a combination offer: what it gives


@bp.after_request
def _private(response: Any) -> Any:
    # The URL is the credential: never leak it in a Referer, never cache, frame or index the page.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
    )
    return response


@bp.get("/<token>")
def page(token: str) -> Any:
    """Show the customer's points, tier, the rewards they can afford now and their codes."""
    session = db.request_session()
    try:
        shop, customer = _resolve(session, token)
    except InvalidLinkError as exc:
        session.rollback()
        return _invalid_link(session, exc)
    _use_shop(shop, customer)
    balance = ledger.balance(session, customer.id)
    _, program = current_program(session, shop)
    banned = customer.banned_at is not None
    empty = vouchers.sold_out(session, shop, program)
    # One idempotency key per form: a double click on one button redeems once.
    offers = [] if banned else [
        _Offer(name=r.name, points=r.points, key=uuid.uuid4().hex,
               description=storefront.combination_text(r, g.customer_page_language) if r.kind == "buy_x_get_y" else None)
        for r in affordable(program, customer, balance.available, empty)
    ]
    # Partner vouchers they could pay for, whose pool has no code left: shown, not offered.
    sold_out = [] if banned else [r.name for r in affordable(program, customer, balance.available)
                                  if not vouchers.reward_in_stock(r, empty)]
    # The cheapest reward open to their tier, however many points they have.
    cheapest = min((r.points for r in affordable(program, customer, MAX_REWARD_POINTS)), default=None)
    history = [_dated(row) for row in redemptions_of(session, customer)]
    context = {
        "referral": _referral(session, shop, customer, program),
        "shop_name": shop.name or shop.domain,
        "balance": balance,
        "tier": customer.tier,
        "tier_until": customer.tier_period_ends_at,
        "banned": banned,
        "offers": offers,
        "sold_out": sold_out,
        "next_points": cheapest if not offers and not banned and cheapest is not None else None,
        "history": history,
        "bounce_back": _bounce_back(session, shop, customer, program),
        "bounce_back_offer": _bounce_back_offer(shop, program),
        "token": token,
        # what the available points are worth ("1.250 Punkte ≈ 12,50 €"), and a point
        "available_worth": _worth(shop, program, balance.available, g.customer_page_language),
        "point_value": storefront.point_value(shop, program, g.customer_page_language),
    }
    # End the read before rendering: on SQLite a transaction holds the write lock.
    session.commit()
    return render_template("customer/page.html", language=g.customer_page_language, **context)


def _amount_off(kind: str | None, value: Any, currency: str | None) -> str:
    """Return what a code takes off, in the page's language ("5,00 €", "10 %")."""
    if kind == "percentage":
        number = f"{Decimal(str(value)).normalize():f}"
        return f"{number} %" if g.customer_page_language == "de" else f"{number}%"
    return format_currency(Decimal(str(value)), currency or "EUR", locale=g.customer_page_language)


def _bounce_back(session: Session, shop: Shop, customer: Customer, program: Program) -> list[dict[str, Any]]:
    """Return the customer's bounce-back codes as the page shows them (`explain.bounce_back_codes`)."""
    rows = explain.bounce_back_codes(session, customer)
    for row in rows:
        row["amount"] = _amount_off(row["kind"], row["value"], row["currency"] or shop.currency)
        row["minimum_text"] = (format_currency(Decimal(row["minimum"]), row["currency"] or shop.currency,
                                               locale=g.customer_page_language) if row["minimum"] else None)
    return rows


def _bounce_back_offer(shop: Shop, program: Program) -> dict[str, str] | None:
    """Return the program's bounce-back offer in words, or None when it is off."""
    offer = program.bounce_back
    if not offer.enabled:
        return None
    return {"amount": _amount_off(offer.kind, offer.value, shop.currency),
            "threshold": format_currency(offer.threshold, shop.currency, locale=g.customer_page_language)}
def _worth(shop: Shop, program: Program, points: int, language: str) -> str | None:
    worth = storefront.points_value(shop, program, points, language)
    return worth[1] if worth is not None else None


def _referral(session: Session, shop: Shop, customer: Customer, program: Program) -> dict[str, Any] | None:
    """Return the member's referral offer with its link once the code exists in the shop, or
    its status ("pending", "failed") without a link or code; None when there is none to show."""
    view = storefront.referral_view(session, shop, customer, program, current_app.config["PUBLIC_URL"])
    if view is None:
        return None
    percent = f"{view.friend_discount_percent.normalize():f}"
    step = view.next_step
    step_percent = f"{step.member_discount_percent.normalize():f}" if step and step.member_discount_percent else None
    return {
        "status": view.status,
        "link": view.link,
        "discount": f"{percent} %" if g.customer_page_language == "de" else f"{percent}%",
        "points": view.referrer_points,
        # Rewards that grow: friends rewarded so far and the next step (None without steps left).
        "rewarded": view.rewarded,
        "next_step": None if step is None else {
            "count": step.count, "to_go": step.to_go, "points": step.points,
            "percent": None if step_percent is None else (
                f"{step_percent} %" if g.customer_page_language == "de" else f"{step_percent}%"),
        },
    }


@bp.post("/<token>/redeem")
def redeem_reward(token: str) -> Any:
    """Redeem one reward for the token's customer, once per form (idempotency key), then PRG."""
    reward_name = request.form.get("reward", "").strip()
    form_key = request.form.get("key", "")
    try:
        with db.session_scope() as session:
            shop, customer = _resolve(session, token)
            _use_shop(shop, customer)
            if not reward_name or not _is_uuid(form_key):
                # Not sent by our form; nothing to redeem.
                raise RedemptionError("reward or key missing")
            # The key is scoped to the customer, so a key from another page cannot find
            # another customer's redemption.
            redemption = redeem(
                session, shop, customer, reward_name, source="customer",
                idempotency_key=f"customer-{customer.id}-{form_key}",
            )
            if redemption.customer_id != customer.id:
                raise RedemptionError("idempotency key of another customer")
            reward, redemption_id, shop_id = redemption.reward_name, redemption.id, shop.id
    except InvalidLinkError as exc:
        return _invalid_link(db.request_session(), exc)
    except RedemptionError:
        flash(_why_not(token, reward_name), "error")
        logger.info("customer redemption refused", extra={"endpoint": request.endpoint})
        return redirect(url_for("customer_page.page", token=token))
    logger.info("customer redeemed a reward", extra={"shop": shop_id, "redemption": redemption_id})
    flash(
        gettext(
            "You redeemed “%(reward)s”. Your code appears below as soon as the shop has created it.",
            reward=reward,
        ),
        "success",
    )
    return redirect(url_for("customer_page.page", token=token))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _why_not(token: str, reward_name: str) -> str:
    """Say in the customer's language why a redemption was refused (read after the rollback)."""
    session = db.request_session()
    try:
        shop, customer = _resolve(session, token)
        _use_shop(shop, customer)
        _, program = current_program(session, shop)
        reward = program.reward(reward_name) if reward_name else None
        available = ledger.balance(session, customer.id).available
        in_stock = reward is None or vouchers.reward_in_stock(reward, vouchers.sold_out(session, shop, program))
    except InvalidLinkError:  # expired in the meantime: the page will say so
        return gettext("The reward could not be redeemed. Please try again.")
    finally:
        session.commit()
    return storefront.why_refused(program, customer, reward, available, g.customer_page_language,
                                  in_stock=in_stock)


def _invalid_link(session: Session, exc: InvalidLinkError) -> Any:
    shop = session.get(Shop, exc.shop_id) if exc.shop_id is not None else None
    _use_shop(shop)
    session.commit()
    logger.info("customer page link refused", extra={"reason": exc.reason, "shop": exc.shop_id})
    if exc.reason == "expired":
        title = gettext("Link expired")
        message = gettext("This link has expired. Please ask the shop for a new one.")
    else:
        title = gettext("Link not valid")
        message = gettext(
            "This link is not valid. Please use the link from the shop's latest e-mail, "
            "or ask the shop for a new one."
        )
    return render_template(
        "customer/error.html",
        language=g.customer_page_language,
        title=title,
        message=message,
        shop_name=(shop.name or shop.domain) if shop is not None else None,
    ), 404


@bp.errorhandler(CSRFError)
def _csrf_error(_error: CSRFError) -> Any:
    token = (request.view_args or {}).get("token", "")
    session = db.request_session()
    try:
        shop, customer = _resolve(session, token)
    except InvalidLinkError as exc:
        session.rollback()
        return _invalid_link(session, exc)
    _use_shop(shop, customer)
    session.commit()
    logger.info("customer page form without a valid CSRF token", extra={"shop": shop.id})
    return render_template(
        "customer/error.html",
        language=g.customer_page_language,
        title=gettext("Please try again"),
        message=gettext("The form has expired. Please reload the page and try again."),
        shop_name=shop.name or shop.domain,
        back=url_for("customer_page.page", token=token),
    ), 400


def compile_catalogs(source: Path, target: Path) -> None:
    """Compile every `<lang>/LC_MESSAGES/*.po` under `source` to `.mo` under `target`.

    Written to a temporary file and renamed, so workers starting together never read half a file.
    """
    for po_path in sorted(source.glob("*/LC_MESSAGES/*.po")):
        mo_path = target / po_path.relative_to(source).with_suffix(".mo")
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("rb") as fh:
            catalog = read_po(fh)
        fd, tmp = tempfile.mkstemp(dir=mo_path.parent, prefix=".messages-", suffix=".mo")
        try:
            with os.fdopen(fd, "wb") as out:
                write_mo(out, catalog)
            os.replace(tmp, mo_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def init_app(app: Flask) -> None:
    """Compile the message catalogs, set up Flask-Babel and register the blueprint."""
    compiled = Path(app.instance_path) / "translations"
    compile_catalogs(TRANSLATIONS, compiled)
    Babel().init_app(
        app,
        default_locale=DEFAULT_LANGUAGE,
        # Two catalogs from one folder, paired by position: messages (the customer page and the
        # domain's texts) and admin (the admin's pages).
        default_translation_directories=f"{compiled};{compiled}",
        default_domain="messages;admin",
        default_timezone="Europe/Berlin",
        locale_selector=_select_locale,
        timezone_selector=_select_timezone,
    )
    app.register_blueprint(bp)
