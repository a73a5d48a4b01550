"""The Shopify app proxy: the loyalty page inside the shop's theme, and its JSON API.

Shopify forwards `https://<shop>/apps/stammkunde/<path>` to `/proxy/shopify/<path>` with the
query parameters `shop`, `logged_in_customer_id`, `path_prefix`, `timestamp` and `signature` added.
Every request is checked first (`connectors.shopify.webhooks.verify_proxy`: the signature with the
app's secret, a fresh timestamp); the customer is identified by `logged_in_customer_id` only
(blank: logged out). Nothing here calls Shopify: every answer is read from our database
(`app.loyalty.storefront`).
https://shopify.dev/docs/apps/build/online-store/app-proxies

| path (under /proxy/shopify) | answer |
|---|---|
| `GET /` | the loyalty page, `application/liquid` (rendered in the shop's layout) |
| `POST /redeem` | the page's redeem form; 303 back to the page saying what happened |
| `GET /api/balance` | the launcher's facts and texts (JSON; `BalanceAnswer`, in front of Flask) |
| `GET /api/member` | everything the page shows (JSON; logged out: the program) |
| `GET /api/rewards` | the rewards, and which the member can afford |
| `POST /api/redeem` | `{"reward": id, "request_key": uuid}` (JSON only) -> the redemption |
| `GET /api/redemptions/<id>` | one of the member's redemptions (its code once created) |
| `GET /api/cart-points?subtotal=&currency=[&tax=][&lines=]` | the points a cart earns (`estimate` true when a product rule reads facts not yet known of a line's product), and what they are worth (`value`, `value_text`); `lines`: JSON `[{"product_id", "variant_id", "vendor", "amount", "tax"}]` (amount after discounts; without `subtotal` the lines' sum) |

Failures: no signature 400, a bad or stale one 401, an unknown or uninstalled shop 404, a request
that needs a logged-in customer without one 401, a refused redemption 422 with `error` and a
`message` in the customer's language.

The page never puts anything into Liquid: every `{` and `}` of the rendered HTML is written as an
HTML entity, so no shop or customer data (and no text of ours) can become a Liquid tag; its
styles come from the widget's stylesheet, so it has no inline CSS either.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from flask import Blueprint, Flask, Response, current_app, g, jsonify, redirect, render_template, request
from flask_babel import gettext, refresh
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from app import db
from app.i18n import translations
from app.loyalty import storefront
from app.messaging.render import format_date, format_money, format_number
from app.models import Customer, Shop, ShopStatus, utcnow
from app.shops import find_shop, webhook_secrets
from app.web import widget
from app.web.webhooks import cached_shop
from connectors.errors import InvalidSignatureError, MissingSignatureError
from connectors.shopify.client import is_shop_domain
from connectors.shopify.webhooks import verify_proxy

logger = logging.getLogger(__name__)

bp = Blueprint("proxy", __name__, url_prefix="/proxy/shopify")

FORM_SALT = "proxy-redeem"
FORM_MAX_AGE = 24 * 3600
DEFAULT_PREFIX = "/apps/stammkunde"
# Shopify's subpath prefixes (apps, a, community, tools) and a subpath of letters, digits, - and _.
_PATH_PREFIX = re.compile(r"/(?:[a-z]{2}(?:-[a-zA-Z]{2})?/)?(?:apps|a|community|tools)/[A-Za-z0-9_-]{1,60}")
_MONEY = re.compile(r"\d{1,12}(?:\.\d{1,4})?")


class ProxyError(Exception):
    """A proxy request we answer with `status` and `message` (plain text or JSON)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _query() -> list[tuple[str, str]]:
    """The decoded query parameters in order, blank values kept (what Shopify signed)."""
    if "proxy_query" not in g:
        g.proxy_query = parse_qsl(request.query_string.decode("utf-8", "replace"), keep_blank_values=True)
    return g.proxy_query


def verified_shop(query: list[tuple[str, str]], config: Any, session: Session | None = None) -> Shop:
    """Return the shop of a correctly signed, fresh proxy request (`query`: its decoded
    parameters): with `session`, the shop row of that session (to write with); without, a copy at
    most SHOP_CACHE_SECONDS old (to read).

    Raises:
        ProxyError: 400 without a signature or shop, 401 when the signature or timestamp is
            refused, 404 for a shop we do not serve.
    """
    shops = [v for k, v in query if k == "shop"]
    if not any(k == "signature" for k, _ in query):
        raise ProxyError(400, "missing signature")
    if len(shops) != 1 or not is_shop_domain(shops[0]):
        raise ProxyError(400, "missing or malformed shop")
    shop = (find_shop(session, "shopify", shops[0]) if session is not None
            else cached_shop("shopify", shops[0], config["SHOP_CACHE_SECONDS"]))
    secrets = [config.get("SHOPIFY_API_SECRET"), config.get("SHOPIFY_API_SECRET_OLD")]
    if shop is not None and shop.webhook_secret_enc is not None:
        own = webhook_secrets(shop, config["ENCRYPTION_KEY"], None, None, utcnow())
        secrets += [own.current, own.old]  # a shop's own custom app signs with its own secret
    try:
        verify_proxy(query, secrets=secrets, now=time.time())
    except MissingSignatureError:
        logger.error("app proxy request but no secret configured", extra={"platform": "shopify"})
        raise ProxyError(401, "signature cannot be checked") from None
    except InvalidSignatureError as exc:
        logger.info("app proxy request refused", extra={"platform": "shopify", "why": str(exc)})
        raise ProxyError(401, "invalid or stale signature") from None
    if shop is None or shop.status != ShopStatus.ACTIVE:
        raise ProxyError(404, "shop not connected")
    return shop


def _verified_shop(session: Session | None = None) -> Shop:
    return verified_shop(_query(), current_app.config, session)


def _param(query: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in query if k == name), "")


class _ReadConnections:
    """Autocommit connections kept checked out for the read-only answers (a checkout is a list
    pop, no pool events or reset per request), closed when their engine is disposed."""

    MAX_IDLE = 8

    def __init__(self) -> None:
        self._idle: list[Connection] = []
        self._engine: Engine | None = None
        self._pid = os.getpid()

    def acquire(self, engine: Engine) -> Connection:
        """Return an idle connection to `engine`, or a new one."""
        if engine is not self._engine or self._pid != os.getpid():
            if self._pid == os.getpid():
                self._close_idle()
            self._idle, self._engine, self._pid = [], engine, os.getpid()
            if not event.contains(engine, "engine_disposed", self._disposed):
                event.listen(engine, "engine_disposed", self._disposed)
        try:
            return self._idle.pop()
        except IndexError:
            return engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def release(self, conn: Connection) -> None:
        """Keep a healthy connection for the next request (close it when it broke or too many wait)."""
        if conn.engine is not self._engine:
            self._close(conn)
        elif conn.invalidated or conn.closed or len(self._idle) >= self.MAX_IDLE:
            conn.close()
        else:
            self._idle.append(conn)

    def _disposed(self, engine: Engine) -> None:
        if engine is self._engine:
            self._close_idle()

    def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            self._close(conn)

    @staticmethod
    def _close(conn: Connection) -> None:
        # Its engine's pool was replaced (disposed): close the driver connection itself rather
        # than hand it back to a pool nobody holds.
        if not conn.closed:
            conn.invalidate()
            conn.close()


_readers = _ReadConnections()


@contextmanager
def _reading() -> Iterator[Session]:
    """A session for the read-only answers on a kept autocommit connection: no transaction, so a
    read never waits for (or holds) SQLite's write lock and each statement sees what is committed;
    and no pool checkout per request (the widget asks on every page view). A connection that
    broke is closed, and the next request opens another."""
    conn = _readers.acquire(db.get_engine())
    session = db.new_session(conn)
    try:
        yield session
    finally:
        session.close()
        _readers.release(conn)


def _customer_id() -> str:
    """The logged-in customer's id as Shopify signed it ("" when logged out)."""
    return _param(_query(), "logged_in_customer_id").strip()


def _path_prefix() -> str:
    """Where the shop serves us (signed by Shopify; ours when it is not a proxy path)."""
    prefix = next((v for k, v in _query() if k == "path_prefix"), "")
    return prefix if _PATH_PREFIX.fullmatch(prefix) else DEFAULT_PREFIX


def _locale() -> str | None:
    return _param(_query(), "locale") or None


def _speak(shop: Shop, customer: Customer | None) -> str:
    """Set the language (asked for, the customer's, else the shop's) and the shop's time zone."""
    language = storefront.language_for(shop, customer, _locale())
    g.customer_page_language = language
    g.customer_page_timezone = shop.timezone or "Europe/Berlin"
    refresh()
    return language


def _member(session: Session, shop: Shop) -> tuple[str, Customer | None]:
    platform_id = _customer_id()
    return platform_id, storefront.find_member(session, shop, platform_id) if platform_id else None


@bp.errorhandler(ProxyError)
def _refused(exc: ProxyError) -> Any:
    if request.path.startswith(f"{bp.url_prefix}/api/"):
        response = jsonify(error=exc.message)
    else:
        response = Response(exc.message + "\n", mimetype="text/plain")
    response.status_code = exc.status
    return response


@bp.after_request
def _private(response: Response) -> Response:
    # Each answer is one customer's: never stored by Shopify's or any other cache.
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


# --- the page ----------------------------------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=FORM_SALT)


def _liquid_safe(html: str) -> str:
    """Return `html` with every brace written as an entity: the browser shows the same text, and
    Shopify's Liquid finds no `{{`, `{%` or `{{-` in it."""
    return html.replace("{", "&#123;").replace("}", "&#125;")


@bp.get("/")
@bp.get("")
def page() -> Any:
    """The loyalty page in the shop's theme: the member's points, or the program and a log-in."""
    shop = _verified_shop()
    with _reading() as session:
        return _page(session, shop)


def _page(session: Session, shop: Shop) -> Response:
    platform_id, customer = _member(session, shop)
    language = _speak(shop, customer)
    prefix = _path_prefix()
    context: dict[str, Any] = {
        "language": language,
        "prefix": prefix,
        "logged_in": bool(platform_id),
        "stylesheet": widget.asset_url("stammkunde.css"),
        "login_url": "/account/login?" + urlencode({"return_url": prefix}),
        "register_url": "/account/register",
        "notice": None,
    }
    if customer is None:
        context["program"] = storefront.program_view(session, shop, locale=language)
    else:
        view = storefront.member_view(session, shop, customer, locale=language,
                                      public_url=current_app.config["PUBLIC_URL"])
        context["view"] = view
        context["forms"] = {
            r.id: _serializer().dumps({"s": shop.id, "c": platform_id, "k": uuid.uuid4().hex}) for r in view.affordable
        }
        context["notice"] = _notice(session, shop, customer, view)
        context["tier_percent"] = _tier_percent(view.tier)
    context["fmt"] = lambda n, places=0: format_number(n, language, places)
    context["date"] = lambda d: format_date(d, language, shop.timezone)
    context["money"] = lambda m: format_money(m.amount, m.currency, language)
    html = render_template("proxy/page.html", **context)
    return Response(_liquid_safe(html), mimetype="application/liquid")


def _tier_percent(tier: storefront.TierView) -> int | None:
    if tier.next_threshold is None or tier.next_threshold <= 0:
        return None
    return max(0, min(100, int(tier.value * 100 / tier.next_threshold)))


def _notice(session: Session, shop: Shop, customer: Customer, view: storefront.MemberView) -> dict[str, str] | None:
    """What the redeem form's redirect says: the redemption made, or why it was refused."""
    redeemed = request.args.get("redeemed", "")
    if redeemed.isdigit():
        result = storefront.redemption_state(session, shop, customer, int(redeemed))
        if result is not None:
            return {"kind": "success", "text": gettext(
                "You redeemed “%(reward)s”. Your code appears below as soon as the shop has created it.",
                reward=result.reward)}
    refused = request.args.get("refused", "")
    if refused:
        texts = {
            "not_enough_points": gettext("You do not have enough points for this reward."),
            "banned": gettext("Your account cannot redeem rewards at the moment. Please contact the shop."),
            "unknown_reward": gettext("This reward is not available any more."),
            "tier": gettext("This reward is only for other tiers."),
        }
        return {"kind": "error", "text": texts.get(refused, gettext("The reward could not be redeemed. Please try again."))}
    return None


@bp.post("/redeem")
def redeem_form() -> Any:
    """The page's redeem form: once per form (its signed key), then back to the page (303)."""
    prefix = _path_prefix()
    back = {"locale": _locale()} if _locale() else {}
    try:
        # Its own transaction: the code job is enqueued once the redemption is committed.
        with db.session_scope() as session:
            shop = _verified_shop(session)
            platform_id, customer = _member(session, shop)
            try:
                form = _serializer().loads(request.form.get("form", ""), max_age=FORM_MAX_AGE)
            except BadData:
                form = None
            if customer is None or not isinstance(form, dict) or form.get("s") != shop.id \
                    or form.get("c") != platform_id:
                # Not our form for this customer (or expired): nothing is redeemed.
                raise storefront.StorefrontError("form", "not this customer's form")
            result = storefront.redeem(session, shop, customer, request.form.get("reward", ""),
                                       request_key=str(form.get("k", "")), locale=_locale())
            shop_id = shop.id
    except storefront.StorefrontError as exc:
        logger.info("proxy redemption refused", extra={"why": exc.reason})
        return redirect(f"{prefix}?{urlencode({**back, 'refused': exc.reason})}", code=303)
    logger.info("storefront redemption", extra={"shop": shop_id, "redemption": result.redemption_id})
    return redirect(f"{prefix}?{urlencode({**back, 'redeemed': result.redemption_id})}", code=303)


# --- the JSON API ------------------------------------------------------------------------------


def N_(message: str) -> str:  # noqa: N802 - babel's marker for "translate later"
    """Mark `message` for the catalog; `_texts` translates it."""
    return message


WIDGET_TEXTS = {
    "title": N_("Loyalty points"),
    "available": N_("Available"),
    "pending": N_("Pending"),
    "tier": N_("Tier"),
    "redeem": N_("Redeem"),
    "rewards": N_("Rewards you can redeem now"),
    "details": N_("All details"),
    "login": N_("Log in to see your points"),
    "join": N_("Collect points with every order"),
    "apply": N_("Apply my reward"),
    "choose": N_("Choose a reward for this cart"),
    "creating": N_("Your code is being created …"),
    "applied": N_("Your code is applied to the cart."),
    "credited": N_("Credited to your store credit."),
    "failed": N_("The shop could not create this code; your points were given back."),
    "slow": N_("Your code is still being created. You will find it on your points page."),
    "close": N_("Close"),
    "code": N_("Code:"),
}


@lru_cache(maxsize=8)
def _texts(language: str) -> dict[str, str]:
    """The widget's texts in `language`, translated once per process."""
    t = translations(language)
    return {key: t.gettext(text) for key, text in WIDGET_TEXTS.items()}


def balance_answer(query: list[tuple[str, str]], config: Any) -> dict[str, Any]:
    """The launcher's facts for a signed proxy request: balance, tier, next reward, a point's
    value, and the widget's texts (`GET /api/balance`, answered by `BalanceAnswer`).

    Raises:
        ProxyError: see `verified_shop`.
    """
    shop = verified_shop(query, config)
    platform_id = _param(query, "logged_in_customer_id").strip()
    with _reading() as session:
        found = storefront.launcher(session, shop, platform_id, locale=_param(query, "locale") or None)
    summary, language = found.summary, found.language
    t = translations(language)
    data = storefront.as_json(summary)
    data.update(
        logged_in=bool(platform_id),
        member=found.member,
        currency=shop.currency,
        balance_text=t.ngettext("%(num)s point", "%(num)s points", summary.available) % {
            "num": format_number(summary.available, language)},
        pending_text=(t.gettext("%(num)s pending, available from %(date)s") % {
            "num": format_number(summary.pending, language),
            "date": format_date(summary.next_available_at, language, shop.timezone)}
            if summary.pending and summary.next_available_at else None),
        next_text=(t.gettext("%(num)s more points for “%(reward)s”") % {
            "num": format_number(summary.next_reward.missing, language), "reward": summary.next_reward.name}
            if summary.next_reward is not None else None),
        texts=_texts(language),
    )
    return data


BALANCE_PATH = f"{bp.url_prefix}/api/balance"
_PRIVATE_HEADERS = [("Cache-Control", "private, no-store"), ("X-Robots-Tag", "noindex")]


class BalanceAnswer:
    """WSGI layer: `GET /proxy/shopify/api/balance` is answered here, everything else by `fallback`.

    The widget asks on every page view of every visitor, so this answer skips Flask's request
    machinery (context, routing, session, response object): `balance_answer` and orjson only,
    as the webhook receiver does for deliveries. It reads the app's config on every request.
    """

    def __init__(self, app: Flask, fallback: Any) -> None:
        self.app = app
        self.fallback = fallback

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != BALANCE_PATH:
            return self.fallback(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            status, data = 405, {"error": "method not allowed"}
        else:
            query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            try:
                status, data = 200, balance_answer(query, self.app.config)
            except ProxyError as exc:
                status, data = exc.status, {"error": exc.message}
            except (OperationalError, DBAPIError):
                if self.app.testing:
                    raise
                logger.exception("database unavailable", extra={"platform": "shopify"})
                status, data = 503, {"error": "database unavailable, try again"}
        body = orjson.dumps(data)
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))), *_PRIVATE_HEADERS])
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]


@bp.get("/api/member")
def api_member() -> Any:
    """Everything the page shows, as JSON (the program for a visitor)."""
    shop = _verified_shop()
    with _reading() as session:
        platform_id, customer = _member(session, shop)
        language = storefront.language_for(shop, customer, _locale())
        if customer is None:
            data = {"logged_in": bool(platform_id), "member": False,
                    "program": storefront.as_json(storefront.program_view(session, shop, locale=language))}
        else:
            view = storefront.member_view(session, shop, customer, locale=language,
                                          public_url=current_app.config["PUBLIC_URL"])
            data = {"logged_in": True, "member": True, **storefront.as_json(view)}
    return jsonify(data)


@bp.get("/api/rewards")
def api_rewards() -> Any:
    """The rewards open to the member (or the program's, for a visitor), cheapest first."""
    shop = _verified_shop()
    with _reading() as session:
        _, customer = _member(session, shop)
        language = storefront.language_for(shop, customer, _locale())
        if customer is None:
            rewards = storefront.program_view(session, shop, locale=language).rewards
            available, banned = 0, False
        else:
            view = storefront.member_view(session, shop, customer, locale=language,
                                          public_url=current_app.config["PUBLIC_URL"])
            rewards, available, banned = view.rewards, view.balance.available, view.banned
    return jsonify(available=available, banned=banned,
                   rewards=[{**storefront.as_json(r), "affordable": r.affordable and not banned} for r in rewards])


def _logged_in_member(session: Session, shop: Shop) -> Customer:
    platform_id, customer = _member(session, shop)
    if not platform_id:
        raise ProxyError(401, "log in first")
    if customer is None:
        raise ProxyError(422, "not a member yet: no points to redeem")
    return customer


@bp.post("/api/redeem")
def api_redeem() -> Any:
    """Redeem a reward: `{"reward": "<id or name>", "request_key": "<uuid>"}`, JSON only (a form
    from another site cannot send it). The same request key redeems once."""
    if not request.is_json:
        raise ProxyError(415, "send JSON")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("reward"), str) or not isinstance(
            body.get("request_key"), str):
        raise ProxyError(400, "reward and request_key are required")
    try:
        # Its own transaction: the code job is enqueued once the redemption is committed.
        with db.session_scope() as session:
            shop = _verified_shop(session)
            customer = _logged_in_member(session, shop)
            language = _speak(shop, customer)
            result = storefront.redeem(session, shop, customer, body["reward"], request_key=body["request_key"],
                                       locale=language)
            shop_id = shop.id
    except storefront.StorefrontError as exc:
        return jsonify(error=exc.reason, message=exc.message), 422
    logger.info("storefront redemption", extra={"shop": shop_id, "redemption": result.redemption_id})
    return jsonify(storefront.as_json(result)), 200 if result.repeated else 201


@bp.get("/api/redemptions/<int:redemption_id>")
def api_redemption(redemption_id: int) -> Any:
    """One of the member's redemptions as it stands (its code once the shop holds it)."""
    shop = _verified_shop()
    with _reading() as session:
        customer = _logged_in_member(session, shop)
        result = storefront.redemption_state(session, shop, customer, redemption_id)
    if result is None:
        raise ProxyError(404, "no such redemption")
    return jsonify(storefront.as_json(result))


def _amount(name: str, *, required: bool) -> Decimal | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        if required:
            raise ProxyError(400, f"{name} is required")
        return None
    if not _MONEY.fullmatch(raw):
        raise ProxyError(400, f"{name} must be an amount like 12.50")
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise ProxyError(400, f"{name} must be an amount like 12.50") from None


@bp.get("/api/cart-points")
def api_cart_points() -> Any:
    """The points a cart earns: `subtotal` (after discounts, without shipping) in `currency`, and
    `lines` (JSON, `storefront.cart_lines`) so the program's product rules weigh its lines."""
    shop = _verified_shop()
    lines = _cart_lines()
    subtotal = _amount("subtotal", required=not lines)
    tax = _amount("tax", required=False)
    currency = request.args.get("currency", shop.currency).strip().upper()
    with _reading() as session:
        _, customer = _member(session, shop)
        language = storefront.language_for(shop, customer, _locale())
        try:
            estimate = storefront.cart_estimate(session, shop, customer, subtotal, currency, tax=tax, lines=lines)
        except storefront.StorefrontError as exc:
            return jsonify(error=exc.reason, message=exc.message), 422
        points = estimate.points
        worth = storefront.points_value(shop, storefront.current_program(session, shop)[1], points, language)
    t = translations(language)
    if estimate.estimate:
        text = t.ngettext("You earn about %(num)s point with this cart.",
                          "You earn about %(num)s points with this cart.", points)
    else:
        text = t.ngettext("You earn %(num)s point with this cart.", "You earn %(num)s points with this cart.", points)
    return jsonify(points=points, estimate=estimate.estimate, currency=shop.currency,
                   text=text % {"num": format_number(points, language)},
                   value=storefront.as_json(worth[0]) if worth else None, value_text=worth[1] if worth else None)


def _cart_lines() -> tuple[storefront.CartLine, ...]:
    raw = request.args.get("lines", "").strip()
    if not raw:
        return ()
    try:
        return storefront.cart_lines(orjson.loads(raw))
    except orjson.JSONDecodeError:
        raise ProxyError(400, "lines must be JSON") from None
    except ValueError as exc:
        raise ProxyError(400, str(exc)) from None


def init_app(app: Flask) -> None:
    """Register the app proxy blueprint (CSRF: the redeem form carries a signed key of its own,
    the API takes JSON only; neither can use Flask-WTF's cookie, which the proxy strips)."""
    from app.web.admin import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)
    app.wsgi_app = BalanceAnswer(app, app.wsgi_app)  # type: ignore[method-assign]
