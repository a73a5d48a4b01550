"""Platform set-up jobs of a shop: webhook subscriptions by API, and fresh API credentials.

`sync_webhooks` compares the subscriptions the shop has with the ones we need and fixes the
difference, so running it again (after every install, or by `flask shops sync-webhooks`) is
harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app import config, shops
from app.db import dialect_insert, session_scope
from app.models import PlatformWebhook, Shop, utcnow
from app.rate_limits import shared_throttle
from connectors import get_connector
from connectors.errors import PermanentError
from connectors.shopify import client as shopify_client
from connectors.shopify import consts as shopify_consts
from connectors.woocommerce import client as woo_client
from connectors.woocommerce import consts as woo_consts

logger = logging.getLogger(__name__)


def shopify_api_credentials(shop_id: int, *, force_refresh: bool = False) -> dict[str, Any]:
    """Return a Shopify shop's credentials with a token that is good for the next call.

    Raises:
        app.shops.ShopNeedsReauthorizationError: the merchant must install again.
        app.shops.TokenRefreshBusyError, connectors.errors.TransientError: retry later.
    """
    settings = config.settings()

    def refresh(domain: str, refresh_token: str, now: datetime) -> shopify_client.TokenGrant:
        return shopify_client.refresh_access_token(
            domain, settings["SHOPIFY_API_KEY"] or "", settings["SHOPIFY_API_SECRET"] or "", refresh_token, now=now)

    return shops.fresh_credentials(shop_id, keys=settings["ENCRYPTION_KEY"], refresh=refresh, force=force_refresh)


def webhook_address(public_url: str) -> str:
    """Return where the platform sends a Shopify shop's webhooks."""
    return public_url.rstrip("/") + "/webhooks/shopify"


def sync_webhooks(shop_id: int) -> dict[str, list[str]]:
    """Make the shop's webhook subscriptions exactly the topics we handle, at our address.

    Returns the topics created and deleted and the ones kept. A subscription of ours to a topic we
    no longer need, or to another address (an old PUBLIC_URL), is deleted.
    """
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.platform.value != "shopify":
            logger.debug("webhook sync: no such Shopify shop", extra={"shop": shop_id})
            return {"created": [], "deleted": [], "kept": []}
    credentials = api_credentials(shop_id)
    address = webhook_address(config.settings()["PUBLIC_URL"])
    wanted = set(shopify_consts.SUBSCRIPTION_TOPICS.values())
    existing = shopify_client.list_webhook_subscriptions(credentials)
    kept: set[str] = set()
    deleted: list[str] = []
    for subscription in existing:
        if subscription.topic in wanted and subscription.uri == address and subscription.topic not in kept:
            kept.add(subscription.topic)
            continue
        shopify_client.delete_webhook_subscription(credentials, subscription.id)
        deleted.append(subscription.topic)
    created = []
    for topic in sorted(wanted - kept):
        shopify_client.create_webhook_subscription(credentials, topic, address)
        created.append(topic)
    logger.info("webhooks synced", extra={"shop": shop_id, "created": len(created), "deleted": len(deleted)})
    return {"created": created, "deleted": sorted(deleted), "kept": sorted(kept)}


# The WooCommerce topics we create webhooks for (the ones the connector parses).
WOOCOMMERCE_TOPICS = (woo_consts.ORDER_CREATED, woo_consts.ORDER_UPDATED, woo_consts.ORDER_DELETED,
                      woo_consts.ORDER_RESTORED, woo_consts.CUSTOMER_CREATED, woo_consts.CUSTOMER_UPDATED)


def create_woocommerce_webhooks(shop_id: int) -> dict[str, list[str]]:
    """Create the store's webhooks we do not have yet, signed with the shop's secret; keep their ids.

    Each topic's row is written `pending` before the call (unique per shop and topic, so two
    runs never both create it) and gets the store's webhook id after. A retried job creates only
    what is still pending. Returns the topics created and the ones that were already there.
    """
    settings = config.settings()
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.platform.value != "woocommerce":
            logger.debug("woocommerce webhooks: no such store", extra={"shop": shop_id})
            return {"created": [], "present": []}
        secret = shops.decrypt_or_none(settings["ENCRYPTION_KEY"], shop.webhook_secret_enc)
        table = PlatformWebhook.__table__
        for topic in WOOCOMMERCE_TOPICS:
            session.execute(dialect_insert(session, table).values(
                shop_id=shop_id, topic=topic, status="pending", created_at=utcnow(),
            ).on_conflict_do_nothing(index_elements=["shop_id", "topic"]))
        todo = list(session.scalars(select(PlatformWebhook.topic).where(
            PlatformWebhook.shop_id == shop_id, PlatformWebhook.platform_id.is_(None))))
    if not secret:
        raise PermanentError("the store has no webhook secret to sign its webhooks with")
    credentials = api_credentials(shop_id)
    address = settings["PUBLIC_URL"].rstrip("/") + "/webhooks/woocommerce"
    created = []
    for topic in sorted(todo):
        hook = woo_client.create_webhook(credentials, topic, address, secret)
        with session_scope() as session:
            row = session.scalars(select(PlatformWebhook).where(
                PlatformWebhook.shop_id == shop_id, PlatformWebhook.topic == topic)).one()
            row.platform_id, row.status, row.checked_at, row.error = hook.id, hook.status, utcnow(), None
        created.append(topic)
    logger.info("woocommerce webhooks created", extra={"shop": shop_id, "created": len(created)})
    return {"created": created, "present": sorted(set(WOOCOMMERCE_TOPICS) - set(todo))}


def api_credentials(shop_id: int, *, force_refresh: bool = False) -> dict[str, Any]:
    """Return the credentials the shop's connector takes, an expiring token refreshed first
    (`force_refresh`: also a token that looks fresh, after the platform answered 401).

    Raises:
        app.shops.ShopNeedsReauthorizationError: the merchant must install again.
        app.shops.TokenRefreshBusyError, connectors.errors.TransientError: retry later.
    """
    settings = config.settings()
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise shops.UnknownShopError(f"no shop with id {shop_id}")
        platform, domain = shop.platform.value, shop.domain
        stored = shops.credentials(shop, settings["ENCRYPTION_KEY"])
    if stored.get("refresh_token"):  # only Shopify's expiring offline tokens come with one
        stored = shopify_api_credentials(shop_id, force_refresh=force_refresh)
    return get_connector(platform).credentials(domain, stored, throttle=shared_throttle(platform))


def check_credentials(shop_id: int) -> None:
    """One cheap API call with the shop's credentials (raises the connector's error when refused)."""
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        platform = shop.platform.value
    get_connector(platform).check_credentials(api_credentials(shop_id))


def check_woocommerce_webhooks() -> dict[str, int]:
    """Scheduled: read each of our WooCommerce webhooks' status; switch a disabled one on again.

    The store disables a webhook after 6 failed deliveries in a row, silently, and events while it
    is off are lost (live capture, round 3 facts 22-26). Re-enabling does not reset the store's
    failure count: the next delivery must succeed. Returns counts of checked and re-enabled hooks.
    """
    with session_scope() as session:
        rows = session.execute(
            select(PlatformWebhook.id, PlatformWebhook.shop_id, PlatformWebhook.platform_id)
            .join(Shop, Shop.id == PlatformWebhook.shop_id)
            .where(PlatformWebhook.platform_id.is_not(None), Shop.status == "active")
            .order_by(PlatformWebhook.shop_id, PlatformWebhook.id)
        ).all()
    checked = reenabled = 0
    credentials_of: dict[int, dict[str, Any]] = {}  # read once per shop, not once per webhook
    for row_id, shop_id, platform_id in rows:
        if shop_id not in credentials_of:
            credentials_of[shop_id] = api_credentials(shop_id)
        credentials = credentials_of[shop_id]
        hook = woo_client.get_webhook(credentials, platform_id)
        status = "deleted" if hook is None else hook.status
        if status == "disabled":
            woo_client.activate_webhook(credentials, platform_id)
            logger.warning("woocommerce webhook was disabled; switched on again",
                           extra={"shop": shop_id, "webhook": platform_id})
            reenabled += 1
            status = "active"
            # Events while it was off are lost in the store: bring them in now, not in 5 minutes.
            from app.queues import PLATFORM_RETRY, enqueue_once

            enqueue_once("codes", "jobs.reconcile.reconcile_woocommerce", shop_id, job_id=f"reconcile-{shop_id}",
                         retry=PLATFORM_RETRY)
        with session_scope() as session:
            row = session.get(PlatformWebhook, row_id)
            if row is not None:
                row.status, row.checked_at = status, utcnow()
                if hook is None:
                    row.platform_id = None  # gone from the store: the next webhook sync creates it again
                    row.status = "pending"
        checked += 1
    return {"checked": checked, "reenabled": reenabled}


def push_plugin_settings(shop_id: int) -> bool:
    """Write our WordPress plugin's settings (app address, shop id, secret) into a WooCommerce
    store through its REST settings API, making the secret first if the shop has none.

    Returns False when the store has no active plugin (nothing to fill: the merchant enters
    the values from `flask shops plugin-secret` once it is installed, or connects again).

    Raises:
        connectors.errors.TransientError, RateLimitedError: retry later.
        connectors.errors.PermanentError: the store refuses the key or did not keep a value.
    """
    from app import woo_plugin

    settings = config.settings()
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.platform.value != "woocommerce":
            logger.debug("plugin settings: no such store", extra={"shop": shop_id})
            return False
        secret = woo_plugin.ensure_plugin_secret(shop, settings["ENCRYPTION_KEY"])
        values = woo_plugin.plugin_settings(shop, secret, settings["PUBLIC_URL"])
    pushed = woo_client.update_plugin_settings(api_credentials(shop_id), values)
    logger.info("plugin settings written" if pushed else "plugin settings not written: plugin not active",
                extra={"shop": shop_id})
    return pushed


def purge_plugin_nonces() -> int:
    """Delete the plugin's nonces older than twice the replay window (a sweep, hourly)."""
    from app import woo_plugin

    with session_scope() as session:
        removed = woo_plugin.purge_nonces(session, utcnow())
    logger.debug("plugin nonces purged", extra={"removed": removed})
    return removed
