"""Blueprint "plugin_api": what our WordPress plugin asks the app, server to server.

Every request is signed by the plugin with the shop's own plugin secret
(`connectors.woocommerce.webhooks.verify_plugin_request`): shop id, timestamp and nonce in headers, an HMAC-SHA256 over
method, path with query, timestamp, nonce and body. We refuse a bad or missing signature, a
timestamp outside 5 minutes and a nonce seen before (401, before anything else is read), and
answer from indexed reads (`app.loyalty.storefront`), never calling the store on the request
path. The customer is named only by the store's customer id in the path, which the plugin takes
from the logged-in WordPress user: the app never takes an e-mail or an id from a browser.

| request | answer |
|---|---|
| `GET  /api/woocommerce/v1/ping` | `{"shop": id}` |
| `GET  /api/woocommerce/v1/program?lang=de` | what the program offers (`ProgramView`) |
| `GET  /api/woocommerce/v1/customers/<id>?lang=de` | the member view, 404 `unknown_customer` |
| `POST /api/woocommerce/v1/customers/<id>/redemptions` `{"reward", "key"}` | 201 new, 200 repeated key, 422 refused (`message` in the customer's language) |
| `GET  /api/woocommerce/v1/customers/<id>/redemptions/<rid>` | that redemption now (its code once the store holds it) |
| `POST /api/woocommerce/v1/cart-points?lang=de` `{"customer_id", "currency", "subtotal", "tax", "lines"}` (`lines` optional: `[{"product_id", "variant_id", "amount", "tax"}]`, each line after discounts with the tax it includes; without `subtotal`/`tax` their sums) | `{"points": n, "estimate": false (true: a product rule reads categories or tags not yet known of a line's product), "value": {"amount", "currency"} or null, "value_text": "52 Punkte ≈ 0,52 €" or null}` (what the points are worth, `Program.point_worth`) |
| `GET  /api/woocommerce/v1/referral-codes/<code>` | a member's referral code that exists in the store, else 404 |
"""

from __future__ import annotations

import logging
import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from app import db, woo_plugin
from app.loyalty import storefront
from app.loyalty.referrals import friend_offer, referral_code_row
from app.models import Customer, Platform, Shop, ShopStatus, utcnow
from connectors.errors import InvalidSignatureError, MissingSignatureError
from connectors.woocommerce import webhooks as woo_webhooks

logger = logging.getLogger(__name__)

bp = Blueprint("plugin_api", __name__, url_prefix="/api/woocommerce/v1")

MAX_BODY_BYTES = 16 * 1024
_CUSTOMER_ID = re.compile(r"[1-9][0-9]{0,18}")
_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,4})?")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def _error(status: int, error: str, message: str | None = None) -> Any:
    body = {"error": error}
    if message is not None:
        body["message"] = message
    return jsonify(body), status


@bp.before_request
def _verify() -> Any:
    """Refuse any request that is not signed by the named shop's plugin, fresh and not replayed."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(413, "too_large")
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return _error(413, "too_large")
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "too_large")
    try:
        signed = woo_webhooks.read_plugin_headers(request.headers)
    except MissingSignatureError:
        logger.info("plugin request refused: signing headers missing or malformed")
        return _error(400, "signature_missing")
    path = request.script_root + request.path
    if request.query_string:
        path += "?" + request.query_string.decode("latin-1")
    keys = current_app.config["ENCRYPTION_KEY"]
    with db.session_scope() as session:
        shop = session.get(Shop, signed.shop_id)
        if shop is None or shop.platform != Platform.WOOCOMMERCE or shop.status != ShopStatus.ACTIVE:
            logger.info("plugin request refused: unknown shop", extra={"shop": signed.shop_id})
            return _error(401, "unknown_shop")
        try:
            woo_webhooks.verify_plugin_request(signed, request.method, path, body,
                                               secret=woo_plugin.plugin_secret(shop, keys) or "", now=time.time())
        except woo_webhooks.StalePluginRequestError:
            logger.info("plugin request refused: stale timestamp", extra={"shop": shop.id})
            return _error(401, "stale_timestamp")
        except InvalidSignatureError:
            logger.info("plugin request refused: bad signature", extra={"shop": shop.id})
            return _error(401, "bad_signature")
        if not woo_plugin.accept_nonce(session, shop.id, signed.nonce, utcnow()):
            logger.warning("plugin request refused: nonce used before", extra={"shop": shop.id})
            return _error(401, "replayed")
    g.plugin_shop_id = signed.shop_id
    return None


@bp.after_request
def _private(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    return response


def _shop(session: Any) -> Shop:
    shop = session.get(Shop, g.plugin_shop_id)
    assert shop is not None  # checked by _verify in this request
    return shop


def _member(session: Any, shop: Shop, customer_id: str) -> Customer | None:
    if not _CUSTOMER_ID.fullmatch(customer_id):
        return None
    return storefront.find_member(session, shop, customer_id)


def _language() -> str | None:
    return request.args.get("lang") or None


@bp.get("/ping")
def ping() -> Any:
    """Say that the signature is good (the plugin's settings page shows it)."""
    return jsonify({"shop": g.plugin_shop_id})


@bp.get("/program")
def program() -> Any:
    """What the program offers, for a visitor or a customer without points yet."""
    session = db.request_session()
    view = storefront.program_view(session, _shop(session), locale=_language())
    session.commit()
    return jsonify(storefront.as_json(view))


@bp.get("/customers/<customer_id>")
def member(customer_id: str) -> Any:
    """The member's balance, tier, rewards, codes, history and invitation."""
    session = db.request_session()
    shop = _shop(session)
    customer = _member(session, shop, customer_id)
    if customer is None:
        session.commit()
        return _error(404, "unknown_customer")
    data = storefront.as_json(storefront.member_view(session, shop, customer, locale=_language()))
    if data.get("referral") is not None:
        data["referral"]["code"] = referral_code(session, customer)
    session.commit()
    return jsonify(data)


def referral_code(session: Any, customer: Customer) -> str | None:
    """Return the member's referral code once it exists in the store (the plugin builds its own
    link, `?sk_ref=CODE`, which applies the code to the friend's cart), else None."""
    row = referral_code_row(session, customer)
    return row.code if row is not None and row.status.value == "created" else None


@bp.post("/customers/<customer_id>/redemptions")
def redeem(customer_id: str) -> Any:
    """Redeem a reward through the one mechanism; the same key redeems once."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("reward"), str) \
            or not isinstance(payload.get("key"), str):
        return _error(400, "bad_request", "reward and key are required")
    with db.session_scope() as session:
        shop = _shop(session)
        customer = _member(session, shop, customer_id)
        if customer is None:
            return _error(404, "unknown_customer")
        try:
            result = storefront.redeem(session, shop, customer, payload["reward"], request_key=payload["key"],
                                       locale=_language())
        except storefront.StorefrontError as exc:
            logger.info("plugin redemption refused", extra={"shop": shop.id, "reason": exc.reason})
            return _error(422, exc.reason, exc.message)
        data = storefront.as_json(result)
    if not result.repeated:
        logger.info("plugin redemption", extra={"shop": g.plugin_shop_id, "redemption": result.redemption_id})
    return jsonify(data), 200 if result.repeated else 201


@bp.get("/customers/<customer_id>/redemptions/<int:redemption_id>")
def redemption(customer_id: str, redemption_id: int) -> Any:
    """One of the member's redemptions as it stands now."""
    session = db.request_session()
    shop = _shop(session)
    customer = _member(session, shop, customer_id)
    result = storefront.redemption_state(session, shop, customer, redemption_id) if customer is not None else None
    session.commit()
    if result is None:
        return _error(404, "unknown_redemption")
    return jsonify(storefront.as_json(result))


@bp.post("/cart-points")
def cart_points() -> Any:
    """The points a cart would earn this customer (or a visitor) by the order earning rule, its
    `lines` (optional) weighed by the program's product rules."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return _error(400, "bad_request", "a JSON object is required")
    lines: tuple[storefront.CartLine, ...] = ()
    if payload.get("lines") is not None:
        try:
            lines = storefront.cart_lines(payload["lines"])
        except ValueError as exc:
            return _error(400, "bad_request", str(exc))
    raw_subtotal, raw_tax = payload.get("subtotal"), payload.get("tax")
    subtotal, tax = _amount(raw_subtotal), _amount(raw_tax)
    currency, customer_id = payload.get("currency"), payload.get("customer_id")
    if (raw_subtotal is not None and subtotal is None) or (raw_tax is not None and tax is None) \
            or (not lines and (subtotal is None or tax is None)) \
            or not isinstance(currency, str) or not _CURRENCY.fullmatch(currency) \
            or not (customer_id is None or isinstance(customer_id, str)):
        return _error(400, "bad_request", "subtotal and tax (decimal strings) or lines, and currency are required")
    session = db.request_session()
    shop = _shop(session)
    customer = _member(session, shop, customer_id) if customer_id else None
    try:
        estimate = storefront.cart_estimate(session, shop, customer, subtotal, currency, tax=tax, lines=lines)
    except storefront.StorefrontError as exc:
        session.rollback()
        return _error(422, exc.reason, exc.message)
    worth = storefront.points_value(shop, storefront.current_program(session, shop)[1], estimate.points,
                                    storefront.language_for(shop, customer, _language()))
    session.commit()
    return jsonify({"points": estimate.points, "estimate": estimate.estimate,
                    "value": storefront.as_json(worth[0]) if worth else None,
                    "value_text": worth[1] if worth else None})


def _amount(value: Any) -> Decimal | None:
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


@bp.get("/referral-codes/<code>")
def referral(code: str) -> Any:
    """A member's referral code that exists in the store: what it gives the friend."""
    session = db.request_session()
    offer = friend_offer(session, g.plugin_shop_id, code)
    session.commit()
    if offer is None:
        return _error(404, "unknown_code")
    return jsonify({
        "code": offer.code,
        "kind": offer.kind,
        "value": str(offer.value),
        "currency": offer.currency,
        "minimum_amount": str(offer.minimum_amount) if offer.minimum_amount is not None else None,
    })


def init_app(app: Flask) -> None:
    """Register the blueprint; its requests are signed, so CSRF tokens do not apply."""
    app.register_blueprint(bp)
    from app.web.admin import csrf

    csrf.exempt(bp)
