"""Installing the app in a shop: Shopify's authorization code grant (a standalone app), and
WooCommerce's wc-auth key grant (`/woocommerce/connect`, its key POSTed to `/woocommerce/callback`).

`GET /shopify/install?shop=…` (also Shopify's App URL call, which adds `timestamp` and `hmac`)
sends the merchant to Shopify to grant our scopes, with a single-use `state` that is stored in the
database and in the browser's signed session. `GET /shopify/callback` checks the HMAC, the
timestamp and that `state` (both copies, once), trades the code for an expiring offline token,
stores it encrypted, re-activates a shop that was installed before (its data stays), and
enqueues the webhook subscription sync.
https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant

After an install (or a WooCommerce connect) the page asks the merchant what the shop's order
history is for: points for the orders of the last N days, tiers and lifetime spend only, or
nothing. The form carries a signed token naming the shop (valid a day); `POST /install/backfill`
starts the backfill (`jobs.backfill`).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis.exceptions import RedisError

from app import shops, woo_plugin
from app.db import request_session
from app.models import utcnow
from app.queues import PLATFORM_RETRY, RedisNotConfiguredError, enqueue_once
from connectors.errors import PermanentError, TransientError
from connectors.shopify import client, consts
from connectors.woocommerce import client as woo_client
from connectors.woocommerce import webhooks as woo_webhooks

logger = logging.getLogger(__name__)

bp = Blueprint("install", __name__)

_STATE_KEY = "shopify_install_state"


def _answer(message: str, status: int, *, ok: bool = False, hint: str | None = None,
            backfill_shop: int | None = None) -> Any:
    backfill = None
    if backfill_shop is not None:
        backfill = {"token": _backfill_signer().dumps({"shop": backfill_shop}),
                    "max_days": _max_backfill_days(backfill_shop)}
    response = current_app.make_response((render_template("install/result.html", message=message, hint=hint,
                                                          ok=ok, backfill=backfill), status))
    response.headers["Cache-Control"] = "no-store"
    return response


BACKFILL_TOKEN_MAX_AGE = 24 * 60 * 60


def _backfill_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="stammkunde-install-backfill")


def _max_backfill_days(shop_id: int) -> int | None:
    """Days of history the shop lets us read (Shopify without read_all_orders: 60), None: all."""
    from app.models import Shop

    shop = request_session().get(Shop, shop_id)
    if shop is None or shop.platform.value != "shopify":
        return None
    granted = set(filter(None, (shop.granted_scopes or "").split(",")))
    return None if consts.BACKFILL_SCOPE in granted else 60


@bp.post("/install/backfill")
def install_backfill() -> Any:
    """Start the backfill the merchant chose on the install page (token-bound to the shop)."""
    from jobs import backfill

    try:
        data = _backfill_signer().loads(request.form.get("token", ""), max_age=BACKFILL_TOKEN_MAX_AGE)
        shop_id = int(data["shop"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return _answer("This page is too old or not ours.", 403,
                       hint="Bring the history in with `flask shops backfill`, or install the app again.")
    choice = request.form.get("choice")
    if choice == "none":
        return _answer("Fine: points start with the next order.", 200, ok=True,
                       hint="You can bring the history in later with `flask shops backfill`.")
    days: int | None = None
    raw_days = (request.form.get("days") or "").strip() if choice == "points" else ""  # tiers: all we may read
    if raw_days:
        if not raw_days.isdigit():
            return _answer("The number of days must be a whole number.", 400, backfill_shop=shop_id)
        days = int(raw_days)
    if choice not in ("points", "tiers"):
        return _answer("Choose what the order history is for.", 400, backfill_shop=shop_id)
    try:
        backfill.start(shop_id, days=days, tiers_only=choice == "tiers")
    except backfill.BackfillError as exc:
        return _answer(str(exc).replace("--days", "days").replace("use days", "choose"), 400,
                       backfill_shop=shop_id)
    try:
        backfill.enqueue(shop_id)
    except (RedisError, RedisNotConfiguredError):
        logger.warning("backfill not enqueued after install", extra={"shop": shop_id}, exc_info=True)
        return _answer("Your choice is saved, but the queue did not answer.", 503, ok=False,
                       hint="Support can start it with `flask shops backfill`; it goes on from where it is.")
    what = ("Orders of the last " + str(days) + " days earn their points" if choice == "points"
            else "Past orders count for tiers and lifetime spend, without points")
    return _answer("Your order history is being brought in.", 200, ok=True,
                   hint=what + ". Customers get no e-mail about the past.")


def _app_credentials() -> tuple[str, str] | None:
    key, secret = current_app.config.get("SHOPIFY_API_KEY"), current_app.config.get("SHOPIFY_API_SECRET")
    return (key, secret) if key and secret else None


def _shop_param() -> str | None:
    shop = (request.args.get("shop") or "").strip().lower()
    return shop if client.is_shop_domain(shop) else None


@bp.get("/shopify/install")
def shopify_install() -> Any:
    """Send the merchant to Shopify to grant the app's scopes."""
    app_keys = _app_credentials()
    if app_keys is None:
        logger.error("shopify install without SHOPIFY_API_KEY / SHOPIFY_API_SECRET")
        return _answer("This app is not set up for Shopify yet.", 500,
                       hint="Set SHOPIFY_API_KEY and SHOPIFY_API_SECRET (README, Configuration).")
    shop = _shop_param()
    if shop is None:
        return _answer("That is not a Shopify shop address.", 400,
                       hint="Use the shop's own address, e.g. my-shop.myshopify.com.")
    # Opened from Shopify (the App URL), the query is signed: then it must be valid.
    if "hmac" in request.args and not client.valid_install_query(request.args.to_dict(), app_keys[1]):
        logger.warning("shopify install with an invalid hmac")
        return _answer("This install link is not valid or has expired.", 400, hint="Start the install again.")
    db = request_session()
    state = shops.new_install_state(db, "shopify", shop)
    db.commit()
    session[_STATE_KEY] = state
    redirect_uri = current_app.config["PUBLIC_URL"] + "/shopify/callback"
    return redirect(client.authorize_url(shop, app_keys[0], consts.SCOPES, redirect_uri, state), code=302)


@bp.get("/shopify/callback")
def shopify_callback() -> Any:
    """Finish the install: check the callback, store the token, sync the webhooks."""
    app_keys = _app_credentials()
    if app_keys is None:
        logger.error("shopify callback without SHOPIFY_API_KEY / SHOPIFY_API_SECRET")
        return _answer("This app is not set up for Shopify yet.", 500)
    shop = _shop_param()
    params = request.args.to_dict()
    if shop is None or not client.valid_install_query(params, app_keys[1]):
        logger.warning("shopify callback refused: shop or hmac")
        return _answer("This install link is not valid or has expired.", 400, hint="Start the install again.")
    state = params.get("state") or ""
    expected = session.pop(_STATE_KEY, None)
    db = request_session()
    # Both copies: the browser's (a callback opened elsewhere fails) and the database's (once).
    if not expected or expected != state or not shops.use_install_state(db, state, "shopify", shop):
        db.rollback()
        logger.warning("shopify callback refused: state")
        return _answer("This install link was already used or belongs to another browser.", 403,
                       hint="Start the install again from your Shopify admin.")
    db.commit()  # the state is spent whatever happens next
    code = params.get("code") or ""
    try:
        grant = client.exchange_code(shop, app_keys[0], app_keys[1], code, now=utcnow())
    except TransientError:
        return _answer("Shopify did not answer in time.", 502, hint="Start the install again in a minute.")
    except PermanentError:
        return _answer("Shopify refused the install.", 400, hint="Start the install again from your Shopify admin.")
    installed, created = shops.install_shopify_shop(db, keys=current_app.config["ENCRYPTION_KEY"], domain=shop,
                                                    grant=grant)
    shop_id = installed.id
    missing = shops.missing_scopes(installed, consts.SCOPES)
    db.commit()
    logger.info("shopify shop installed", extra={"shop": shop_id, "created": created})
    try:
        enqueue_once("codes", "jobs.shops.sync_webhooks", shop_id, job_id=f"sync-webhooks-{shop_id}",
                     retry=PLATFORM_RETRY)
    except (RedisError, RedisNotConfiguredError):  # the install stands; the sync can be run by hand
        logger.warning("webhook sync not enqueued after install", extra={"shop": shop_id}, exc_info=True)
        hint = "Webhooks will be set up by `flask shops sync-webhooks` (the queue did not answer)."
    else:
        hint = None
    if missing:
        hint = "Some permissions were not granted: " + ", ".join(missing) + ". Install again to grant them."
    return _answer(f"Stammkunde is installed in {shop}." if created else f"Stammkunde is installed again in {shop}.",
                   200, ok=True, hint=hint, backfill_shop=shop_id)


# ---- WooCommerce: connect through wc-auth, no keys to copy -----------------------------------


@bp.route("/woocommerce/connect", methods=["GET", "POST"])
def woocommerce_connect() -> Any:
    """Take the store's address and send its admin to grant us a read/write key."""
    if request.method == "GET":
        # Our WordPress plugin's "Connect" button names the store (?store=<home URL>).
        return render_template("install/woocommerce.html", store=request.args.get("store") or None, error=None)
    store = (request.form.get("store") or "").strip()
    session["woocommerce_connect_store"] = store
    callback_url = current_app.config["PUBLIC_URL"] + "/woocommerce/callback"
    if not callback_url.startswith("https://"):
        # WooCommerce refuses an http callback before anything else (live capture 116).
        return render_template("install/woocommerce.html", store=store,
                               error="This app must be reachable over https (PUBLIC_URL) to connect a store; "
                                     "until then add the store's keys with `flask shops add`."), 500
    try:
        shop_url = woo_webhooks.normalize_shop(store)
    except ValueError:
        return render_template("install/woocommerce.html", store=store,
                               error="That is not a store address (e.g. https://shop.example)."), 400
    db = request_session()
    state = shops.new_install_state(db, "woocommerce", shop_url)
    db.commit()
    target = woo_client.connect_url(
        shop_url, app_name="Stammkunde", user_id=state, callback_url=callback_url,
        return_url=current_app.config["PUBLIC_URL"] + "/woocommerce/connected",
    )
    return redirect(target, code=302)


@bp.post("/woocommerce/callback")
def woocommerce_callback() -> Any:
    """Store the key the store sends, only for a nonce of ours; answer exactly 200 then.

    Any other status makes WooCommerce delete the key it just sent (live capture 140), which is
    what we want for a key we did not ask for.
    """
    payload = request.get_json(silent=True, force=True)
    fields = ("user_id", "consumer_key", "consumer_secret", "key_permissions")
    if not isinstance(payload, dict) or not all(isinstance(payload.get(k), str) and payload[k] for k in fields):
        logger.warning("woocommerce key callback refused: malformed")
        return {"error": "malformed callback"}, 400
    if payload["key_permissions"] != "read_write":
        logger.warning("woocommerce key callback refused: permissions")
        return {"error": "read_write access is needed"}, 400
    db = request_session()
    store_url = shops.spend_install_state(db, payload["user_id"], "woocommerce")
    if store_url is None:
        db.rollback()
        logger.warning("woocommerce key callback refused: unknown or used nonce")
        return {"error": "unknown connect request"}, 403
    shop, created = shops.connect_woocommerce_shop(
        db, keys=current_app.config["ENCRYPTION_KEY"], store_url=store_url,
        consumer_key=payload["consumer_key"], consumer_secret=payload["consumer_secret"])
    woo_plugin.ensure_plugin_secret(shop, current_app.config["ENCRYPTION_KEY"])
    shop_id = shop.id
    db.commit()
    logger.info("woocommerce store connected", extra={"shop": shop_id, "created": created})
    try:
        enqueue_once("codes", "jobs.shops.create_woocommerce_webhooks", shop_id,
                     job_id=f"woo-webhooks-{shop_id}", retry=PLATFORM_RETRY)
    except (RedisError, RedisNotConfiguredError):  # the key is stored; `flask shops sync-webhooks` does the rest
        logger.warning("webhook creation not enqueued after connect", extra={"shop": shop_id}, exc_info=True)
    try:
        # Fill our WordPress plugin's settings in the store, if it is installed.
        enqueue_once("codes", "jobs.shops.push_plugin_settings", shop_id,
                     job_id=f"woo-plugin-settings-{shop_id}", retry=PLATFORM_RETRY)
    except (RedisError, RedisNotConfiguredError):  # `flask shops plugin-secret --push` does it by hand
        logger.warning("plugin settings not enqueued after connect", extra={"shop": shop_id}, exc_info=True)
    return {"received": True}, 200


@bp.get("/woocommerce/connected")
def woocommerce_connected() -> Any:
    """Where the store sends its admin back after approving (success=1) or denying (success=0)."""
    if request.args.get("success") == "1":
        return _answer("Your store is connected to Stammkunde.", 200, ok=True,
                       hint="Its webhooks are being set up; points start with the next order.",
                       backfill_shop=_connected_store())
    return _answer("The store was not connected: access was denied.", 200, hint="Start again to connect it.")


def _connected_store() -> int | None:
    """Return the id of the store this browser just connected (its key has arrived), else None."""
    from sqlalchemy import select

    from app.models import Shop, ShopStatus

    store = session.get("woocommerce_connect_store")
    try:
        domain = woo_webhooks.normalize_shop(store) if isinstance(store, str) else None
    except ValueError:
        return None
    if domain is None:
        return None
    return request_session().scalar(select(Shop.id).where(
        Shop.platform == "woocommerce", Shop.domain == domain, Shop.status == ShopStatus.ACTIVE,
        Shop.api_credentials_enc.is_not(None)))


def init_app(app: Any) -> None:
    """Register the install blueprint; only the store's key callback is exempt from CSRF (it is
    matched by our single-use nonce instead)."""
    app.register_blueprint(bp)
    from app.web.admin import csrf

    csrf.exempt(woocommerce_callback)
