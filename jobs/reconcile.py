"""Reconciliation: nothing missed stays missed (WooCommerce and Shopify).

WooCommerce never retries a failed delivery and silently disables a webhook after repeated
failures, losing every event while it is off. So every few minutes, per store, we ask for the
orders changed since the newest change we have seen (stepping back `OVERLAP`, because
`modified_after` is exclusive at one-second resolution) and feed each one through the SAME inbox
with the SAME dedupe key as a webhook of that state (`connectors.woocommerce.webhooks
.delivery_key` keys the state, not the bytes). A state a webhook already brought is a duplicate
and costs nothing more; one that no webhook brought is processed like any delivery, so the
ledger stays exactly once.

Shopify retries failed deliveries for hours (and then removes the subscription), and a webhook
can still be lost; `reconcile_shopify` asks the Admin GraphQL API for `orders(query:
"updated_at:>'…'", sortKey: UPDATED_AT)` page by page (cursor paging, each request waiting for the
cost bucket: `connectors.shopify.client.CostThrottle`), and stores every order node as a delivery
of our topic `stammkunde/order` whose dedupe key is the `orders/updated` webhook's for that state
(`connectors.shopify.webhooks.order_state_key`: order id and `updated_at`). The parser turns the
node into the same `Order` the webhook gives.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from app.db import session_scope
from app.models import JobCursor, Shop, ShopStatus, utcnow
from connectors import get_connector
from connectors.errors import UnauthorizedError
from connectors.shopify import client as shopify_client
from connectors.shopify import consts as shopify_consts
from connectors.shopify import webhooks as shopify_webhooks
from connectors.woocommerce import client as woo_client
from connectors.woocommerce import consts as woo_consts
from jobs.shops import api_credentials
from jobs.sweeps import advance_cursor

logger = logging.getLogger(__name__)

# How far behind the newest change seen a run starts again (deliveries are deduplicated).
OVERLAP = timedelta(minutes=10)
# At most this many pages per run; the cursor is saved after each, so the next run goes on.
MAX_PAGES = 50
PER_PAGE = 100
# How far back the first Shopify reconciliation of a shop looks (Shopify retries a failed delivery
# for 48 hours before it gives up on it).
FIRST_LOOKBACK = timedelta(days=3)


def _cursor_name(shop_id: int) -> str:
    return f"reconcile-{shop_id}"


def _modified(order: dict[str, Any]) -> datetime | None:
    raw = order.get("date_modified_gmt")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def reconcile_woocommerce(shop_id: int, *, now: datetime | None = None) -> dict[str, int]:
    """Bring in every order change of the store that no webhook brought; returns counts.

    Returns {"seen": orders read, "recovered": new deliveries, "pages": pages read}.
    """
    from app.dispatch import enqueue_batch
    from app.inbox import record_delivery

    now = now or utcnow()
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.platform.value != "woocommerce" or shop.status != ShopStatus.ACTIVE:
            logger.debug("reconcile: no active store", extra={"shop": shop_id})
            return {"seen": 0, "recovered": 0, "pages": 0}
        domain = shop.domain
        cursor = session.get(JobCursor, _cursor_name(shop_id))
        since = (datetime.fromtimestamp(cursor.position, timezone.utc) if cursor is not None
                 else (shop.installed_at or shop.created_at))
    credentials = api_credentials(shop_id)
    connector = get_connector("woocommerce")
    after = since - OVERLAP
    newest = since
    seen = recovered = pages = 0
    headers = {woo_consts.HEADER_TOPIC: woo_consts.ORDER_UPDATED, woo_consts.HEADER_SOURCE: domain.rstrip("/") + "/",
               woo_consts.HEADER_RESOURCE: "order", woo_consts.HEADER_EVENT: "updated"}
    for page in range(1, MAX_PAGES + 1):
        orders = woo_client.list_orders_modified_after(credentials, after, page=page, per_page=PER_PAGE)
        if not orders:
            break
        pages += 1
        new_ids = []
        for order in orders:
            state = {k: v for k, v in order.items() if k != "_links"}
            body = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode()
            key = connector.delivery_key(headers, body, state)
            delivery_id = record_delivery(shop_id, "woocommerce", woo_consts.ORDER_UPDATED, key, dict(headers), body,
                                          source="reconcile")
            if delivery_id is not None:
                new_ids.append(delivery_id)
            modified = _modified(order)
            if modified is not None and modified > newest:
                newest = modified
        seen += len(orders)
        recovered += len(new_ids)
        if new_ids:
            # A lost enqueue is picked up by the requeue sweep (the rows are committed).
            enqueue_batch(new_ids)
            logger.info("reconciliation recovered deliveries", extra={"shop": shop_id, "count": len(new_ids)})
        _save(shop_id, newest, recovered_now=len(new_ids), finished=False, now=now)
        if len(orders) < PER_PAGE:
            break
    _save(shop_id, newest, recovered_now=0, finished=True, now=now)
    return {"seen": seen, "recovered": recovered, "pages": pages}


def _save(shop_id: int, newest: datetime, *, recovered_now: int, finished: bool, now: datetime) -> None:
    with session_scope() as session:
        advance_cursor(session, _cursor_name(shop_id), int(newest.timestamp()))
        shop = session.get(Shop, shop_id)
        if shop is not None:
            shop.reconciled_recovered = (shop.reconciled_recovered or 0) + recovered_now
            if finished:
                shop.last_reconciled_at = now


def reconcile_shopify(shop_id: int, *, now: datetime | None = None) -> dict[str, int]:
    """Bring in every order state of the shop that no webhook brought; returns counts.

    Returns {"seen": orders read, "recovered": new deliveries, "pages": pages read}. The cursor
    (`job_cursors`, the newest `updatedAt` seen) is saved after each page, so a run that stops
    (throttled for longer than the client waits, a crash) goes on from there next time.
    """
    from app.dispatch import enqueue_batch

    now = now or utcnow()
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.platform.value != "shopify" or shop.status != ShopStatus.ACTIVE:
            logger.debug("reconcile: no active shop", extra={"shop": shop_id})
            return {"seen": 0, "recovered": 0, "pages": 0}
        domain = shop.domain
        cursor = session.get(JobCursor, _cursor_name(shop_id))
        # A first run starts at the install, but at most FIRST_LOOKBACK back: a shop installed
        # before this existed has had its orders by webhook (and a state read again is a
        # duplicate anyway, only slower).
        since = (datetime.fromtimestamp(cursor.position, timezone.utc) if cursor is not None
                 else max(shop.installed_at or shop.created_at, now - FIRST_LOOKBACK))
    credentials = api_credentials(shop_id)
    query = shopify_client.orders_query(updated_after=since - OVERLAP)
    newest = since
    seen = recovered = pages = 0
    after: str | None = None
    for _ in range(MAX_PAGES):
        page, credentials = _shopify_page(shop_id, credentials, query, after, sort_key="UPDATED_AT")
        pages += 1
        new_ids = []
        for node in page.nodes:
            delivery_id, updated = record_polled_order(shop_id, domain, node, source="reconcile")
            if delivery_id is not None:
                new_ids.append(delivery_id)
            if updated is not None and updated > newest:
                newest = updated
        seen += len(page.nodes)
        recovered += len(new_ids)
        if new_ids:
            enqueue_batch(new_ids)  # a lost enqueue is picked up by the requeue sweep
            logger.info("reconciliation recovered deliveries", extra={"shop": shop_id, "count": len(new_ids)})
        _save(shop_id, newest, recovered_now=len(new_ids), finished=False, now=now)
        after = page.next_cursor
        if after is None:
            break
    _save(shop_id, newest, recovered_now=0, finished=True, now=now)
    return {"seen": seen, "recovered": recovered, "pages": pages}


def _shopify_page(shop_id: int, credentials: dict[str, Any], query: str, after: str | None, *,
                  sort_key: str) -> tuple[shopify_client.OrdersPage, dict[str, Any]]:
    """Read one page of orders; a refused token is refreshed once (expiring offline tokens)."""
    try:
        return shopify_client.list_orders(credentials, query, after, sort_key=sort_key), credentials
    except UnauthorizedError:
        if not credentials.get("refresh_token"):
            raise
        logger.info("token refused; refreshing it once", extra={"shop": shop_id})
        credentials = api_credentials(shop_id, force_refresh=True)
        return shopify_client.list_orders(credentials, query, after, sort_key=sort_key), credentials


def record_polled_order(shop_id: int, domain: str, node: dict[str, Any], *, source: str) -> tuple[int | None, datetime | None]:
    """Store one order node read from the Admin API in the inbox, keyed like the `orders/updated`
    webhook of that state; return (the new delivery's id or None for a duplicate, its updatedAt)."""
    from app.inbox import record_delivery

    body = json.dumps(node, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {shopify_consts.TOPIC_HEADERS[0]: shopify_consts.POLLED_ORDER,
               shopify_consts.SHOP_DOMAIN_HEADERS[0]: domain}
    key = shopify_webhooks.delivery_key(headers, body, node)
    delivery_id = record_delivery(shop_id, "shopify", shopify_consts.POLLED_ORDER, key, headers, body, source=source)
    raw = node.get("updatedAt")
    try:
        updated = datetime.fromisoformat(raw.replace("Z", "+00:00")) if isinstance(raw, str) else None
    except ValueError:
        updated = None
    return delivery_id, updated


RECONCILERS = {"woocommerce": "jobs.reconcile.reconcile_woocommerce", "shopify": "jobs.reconcile.reconcile_shopify"}


def reconcile_all() -> int:
    """Scheduled: enqueue one reconciliation per active shop; returns how many."""
    from app.queues import PLATFORM_RETRY, enqueue_once

    with session_scope() as session:
        # A shop without API credentials, or waiting for the merchant to install again, is skipped
        # (its status says so); it is reconciled again once it can be called.
        shops = session.execute(select(Shop.id, Shop.platform).where(
            Shop.status == ShopStatus.ACTIVE, Shop.api_credentials_enc.is_not(None),
            Shop.needs_reauth_at.is_(None))).all()
    return sum(1 for shop_id, platform in shops if enqueue_once(
        "codes", RECONCILERS[platform.value], shop_id, job_id=f"reconcile-{shop_id}", retry=PLATFORM_RETRY))


def fetch_refund_detail(shop_id: int, order_platform_id: str) -> int | None:
    """Read an order's refunds with their lines (WooCommerce `GET orders/N/refunds`) and put them in
    the inbox as one delivery of our topic `stammkunde/order_refunds`; return its id (None when the
    same answer was stored before, or the shop or order is gone).

    The order webhook lists refunds as totals only (fact 32), so their merchandise was estimated in
    proportion to the order total; processing this delivery replaces the estimate by the refunds'
    own lines and moves the points to the exact share.
    """
    from app.dispatch import enqueue_batch
    from app.inbox import record_delivery
    from app.models import Order
    from connectors.woocommerce import webhooks as woo_webhooks

    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.status != ShopStatus.ACTIVE or shop.platform.value != "woocommerce":
            logger.debug("refund detail: no active store", extra={"shop": shop_id})
            return None
        domain = shop.domain
        order = session.scalars(select(Order).where(Order.shop_id == shop_id,
                                                    Order.platform_id == order_platform_id)).first()
        if order is None:
            return None
        currency, taxes_included = order.currency or shop.currency, bool(order.taxes_included)
    refunds = woo_client.list_refunds(api_credentials(shop_id), order_platform_id)
    state = {"order_id": int(order_platform_id), "currency": currency, "prices_include_tax": taxes_included,
             "refunds": [{k: v for k, v in refund.items() if k != "_links"} for refund in refunds]}
    body = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {woo_consts.HEADER_TOPIC: woo_consts.REFUND_DETAILS, woo_consts.HEADER_SOURCE: domain.rstrip("/") + "/",
               woo_consts.HEADER_RESOURCE: "order", woo_consts.HEADER_EVENT: "refunds"}
    key = f"{woo_consts.REFUND_DETAILS}|{order_platform_id}|{woo_webhooks.state_digest(state)}"
    delivery_id = record_delivery(shop_id, "woocommerce", woo_consts.REFUND_DETAILS, key, headers, body,
                                  source="reconcile")
    if delivery_id is not None:
        enqueue_batch([delivery_id])
    return delivery_id
