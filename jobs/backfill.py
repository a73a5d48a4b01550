"""Backfill: bring a shop's order history in, once, as the merchant chose (issue 16).

The merchant chooses what the history is for:
- `points`: orders created in the last N days are read, and those paid in that window earn their
  points (as they would have, with the program of today);
- `tiers`: orders are read (the last N days, or as far back as the platform gives) only for tiers
  and lifetime spend; no order earns points.

Every order read goes through the SAME inbox and the same dedupe key as a webhook of its state
(`source` "backfill"), so a state a webhook or the reconciliation already brought is not read twice,
and the worker's decide-then-write path handles it. Processing knows a backfilled delivery by its
source (`app.loyalty.orders.History`): it never sends anything about the past — no win-back, no
cart reminder, no second-purchase code or e-mail, no referral, no gift tag, no double opt-in
request, no points-earned notice, no auto-redeem. When every backfilled delivery is processed,
`finish` sets each customer's tier once from the stored history (a tier change with the reason
`backfill`, which no notice announces; a tier's perk codes are issued, since the member holds the
tier from now on) and their last order date.

Reading is resumable: after each page the platform's cursor (Shopify's page cursor, WooCommerce's
next page number) and the counts are saved on the shop's `backfills` row in the same transaction,
so a crash resumes at the page after the last one saved (a page read twice is deduplicated).
Throttle-aware: Shopify's requests wait for the cost bucket (`CostThrottle`); WooCommerce is paged
100 orders at a time, and a 429 is retried by the job's retry policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from app.db import session_scope
from app.models import Backfill, Customer, DeliveryStatus, Order, Shop, ShopStatus, WebhookDelivery, utcnow
from connectors.errors import ConnectorError
from connectors.shopify import client as shopify_client
from connectors.woocommerce import client as woo_client
from connectors.woocommerce import consts as woo_consts
from jobs.reconcile import _shopify_page, record_polled_order
from jobs.shops import api_credentials

logger = logging.getLogger(__name__)

WOO_PER_PAGE = 100
# Shopify keeps orders older than this from an app without `read_all_orders`.
SHOPIFY_READ_ORDERS_DAYS = 60
MODES = ("points", "tiers")


class BackfillError(RuntimeError):
    """A backfill cannot start as asked (with the reason, for the merchant)."""


@dataclass(frozen=True)
class Progress:
    """Where a backfill stands, for the CLI's bar, the admin and `flask shops status`."""

    status: str
    mode: str
    orders_read: int
    orders_new: int
    orders_total: int | None
    pages: int
    waiting: int  # its deliveries the worker has not processed yet
    started_at: datetime
    finished_at: datetime | None
    error: str | None


def start(shop_id: int, *, days: int | None, tiers_only: bool, now: datetime | None = None) -> Backfill:
    """Record the merchant's choice as the shop's backfill (a new one replaces a finished one; a
    running one with the same choice is resumed); return the row (detached).

    Raises:
        BackfillError: unknown or inactive shop; `days` below 1; points without `days`; a Shopify
            backfill beyond 60 days without the `read_all_orders` scope; another choice running.
    """
    now = now or utcnow()
    if days is not None and days < 1:
        raise BackfillError("--days must be 1 or more")
    if not tiers_only and days is None:
        raise BackfillError("say how many days of orders earn points (--days N), or --tiers-only")
    mode = "tiers" if tiers_only else "points"
    since = None if days is None else now - timedelta(days=days)
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.status != ShopStatus.ACTIVE:
            raise BackfillError("no installed shop to backfill")
        if shop.platform.value == "shopify" and (days is None or days > SHOPIFY_READ_ORDERS_DAYS):
            granted = set(filter(None, (shop.granted_scopes or "").split(",")))
            if shop.granted_scopes is not None and "read_all_orders" not in granted:
                if days is not None:
                    raise BackfillError(
                        f"Shopify gives orders older than {SHOPIFY_READ_ORDERS_DAYS} days only with the "
                        "read_all_orders scope, which this shop did not grant: use --days 60 or less")
                since = now - timedelta(days=SHOPIFY_READ_ORDERS_DAYS)
        row = session.scalars(select(Backfill).where(Backfill.shop_id == shop_id).with_for_update()).first()
        if row is not None and row.status in ("running", "processing"):
            if row.mode != mode or (row.since is None) != (since is None):
                raise BackfillError(f"a backfill ({row.mode}) is {row.status} since {row.started_at:%Y-%m-%d %H:%M} UTC;"
                                    " let it finish first")
            session.expunge(row)
            return row
        if row is None:
            row = Backfill(shop_id=shop_id)
            session.add(row)
        row.mode, row.since, row.until, row.status = mode, since, now, "running"
        row.award_from = since if mode == "points" else None
        row.cursor, row.error, row.finished_at, row.orders_total = None, None, None, None
        row.orders_read = row.orders_new = row.pages = 0
        row.started_at = row.updated_at = now
        session.flush()
        session.expunge(row)
        return row


def enqueue(shop_id: int) -> bool:
    """Enqueue the job that reads the shop's backfill (one at a time per shop)."""
    from app.queues import PLATFORM_RETRY, enqueue_once

    return enqueue_once("codes", "jobs.backfill.run", shop_id, job_id=f"backfill-{shop_id}", retry=PLATFORM_RETRY)


def run(shop_id: int, *, on_page: Callable[[Progress], None] | None = None, max_pages: int | None = None) -> Progress:
    """Read the shop's backfill from where it stopped to the end; hand each page to the worker.

    `on_page` is told the progress after each page (the CLI's bar). Returns the progress at the
    end: `processing` until the worker has done every delivery, then `finish` makes it `done`.

    Raises:
        BackfillError: the shop has no backfill to run.
        TransientError, RateLimitedError, PermanentError: from the platform; the page cursor
            stays where it was, so the retry goes on from there.
    """
    from app.dispatch import enqueue_batch

    with session_scope() as session:
        row = session.scalars(select(Backfill).where(Backfill.shop_id == shop_id)).first()
        if row is None or row.status not in ("running", "processing"):
            raise BackfillError("no backfill to run for this shop")
        shop = session.get(Shop, shop_id)
        assert shop is not None
        platform, domain = shop.platform.value, shop.domain
        status, cursor, since, until = row.status, row.cursor, row.since, row.until
        total = row.orders_total
    if status == "running":
        credentials = api_credentials(shop_id)
        read_page = _shopify_reader(shop_id, credentials, since, until) if platform == "shopify" \
            else _woo_reader(credentials, since, until)
        if total is None and cursor is None:
            total = _count(platform, credentials, since, until)
            _save(shop_id, orders_total=total)
        pages = 0
        while True:
            try:
                nodes, next_cursor, page_total = read_page(cursor)
            except ConnectorError as exc:
                _save(shop_id, error=str(exc)[:500])  # shown until the retry gets on
                raise
            new_ids = []
            for node in nodes:
                delivery_id = (record_polled_order(shop_id, domain, node, source="backfill")[0] if platform == "shopify"
                               else _record_woo_order(shop_id, domain, node))
                if delivery_id is not None:
                    new_ids.append(delivery_id)
            if new_ids:
                enqueue_batch(new_ids)  # a lost enqueue is picked up by the requeue sweep
            done = next_cursor is None
            progress = _save(shop_id, cursor=next_cursor, read=len(nodes), new=len(new_ids),
                             orders_total=page_total if total is None else None,
                             status="processing" if done else None)
            cursor = next_cursor
            pages += 1
            if on_page is not None:
                on_page(progress)
            if done or (max_pages is not None and pages >= max_pages):
                break
    finish(shop_id)
    return progress_of(shop_id)


def _shopify_reader(shop_id: int, credentials: dict[str, Any], since: datetime | None, until: datetime):
    query = shopify_client.orders_query(created_from=since, created_before=until)

    def read(cursor: str | None) -> tuple[list[dict[str, Any]], str | None, int | None]:
        nonlocal credentials
        page, credentials = _shopify_page(shop_id, credentials, query, cursor, sort_key="CREATED_AT")
        return list(page.nodes), page.next_cursor, None

    return read


def _woo_reader(credentials: dict[str, Any], since: datetime | None, until: datetime):
    def read(cursor: str | None) -> tuple[list[dict[str, Any]], str | None, int | None]:
        page = int(cursor or "1")
        orders, total = woo_client.list_orders_created(credentials, after=since, before=until, page=page,
                                                       per_page=WOO_PER_PAGE)
        # A short page is the last; an empty one is past the end (its totals are 0: not trusted).
        return orders, None if len(orders) < WOO_PER_PAGE else str(page + 1), total

    return read


def _count(platform: str, credentials: dict[str, Any], since: datetime | None, until: datetime) -> int | None:
    """Return how many orders the backfill will read, where the platform says cheaply (Shopify)."""
    if platform != "shopify":
        return None  # WooCommerce says it with the first page (X-WP-Total)
    return shopify_client.count_orders(credentials, shopify_client.orders_query(created_from=since,
                                                                                created_before=until))


def _record_woo_order(shop_id: int, domain: str, order: dict[str, Any]) -> int | None:
    """Store one WooCommerce order as the reconciliation does (`order.updated`, its state's key)."""
    import json

    from app.inbox import record_delivery
    from connectors import get_connector

    headers = {woo_consts.HEADER_TOPIC: woo_consts.ORDER_UPDATED, woo_consts.HEADER_SOURCE: domain.rstrip("/") + "/",
               woo_consts.HEADER_RESOURCE: "order", woo_consts.HEADER_EVENT: "updated"}
    state = {k: v for k, v in order.items() if k != "_links"}
    body = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode()
    key = get_connector("woocommerce").delivery_key(headers, body, state)
    return record_delivery(shop_id, "woocommerce", woo_consts.ORDER_UPDATED, key, dict(headers), body,
                           source="backfill")


def _save(shop_id: int, *, cursor: str | None = None, read: int = 0, new: int = 0, orders_total: int | None = None,
          status: str | None = None, error: str | None = None) -> Progress:
    with session_scope() as session:
        row = session.scalars(select(Backfill).where(Backfill.shop_id == shop_id).with_for_update()).one()
        row.error = error
        if read or new or status or cursor is not None:
            row.cursor = cursor
            row.orders_read += read
            row.orders_new += new
            row.pages += 1
        if orders_total is not None:
            row.orders_total = orders_total
        if status is not None:
            row.status = status
        row.updated_at = utcnow()
        return _progress(session, row)


def finish(shop_id: int, *, now: datetime | None = None) -> bool:
    """Complete a backfill whose pages are all read once the worker processed every delivery:
    each customer's tier from the stored history (reason `backfill`), and their last order date.
    Returns True when it is done (now or before)."""
    from app.loyalty import tiers
    from app.program import current_program

    now = now or utcnow()
    with session_scope() as session:
        row = session.scalars(select(Backfill).where(Backfill.shop_id == shop_id)).first()
        if row is None or row.status == "done":
            return row is not None
        if row.status != "processing" or _waiting(session, shop_id):
            return False
        shop = session.get(Shop, shop_id)
        assert shop is not None
        version, program = current_program(session, shop)
        customer_ids = list(session.scalars(
            select(Order.customer_id).where(Order.shop_id == shop_id, Order.customer_id.is_not(None)).distinct()))
    for start_at in range(0, len(customer_ids), 500):
        with session_scope() as session:
            shop = session.get(Shop, shop_id)
            for customer in session.scalars(select(Customer).where(
                    Customer.id.in_(customer_ids[start_at:start_at + 500]), Customer.merged_into_id.is_(None))):
                last = session.scalar(select(func.max(Order.paid_at)).where(
                    Order.customer_id == customer.id, Order.is_paid.is_(True)))
                if last is not None and (customer.last_order_at is None or last > customer.last_order_at):
                    customer.last_order_at = last
                tiers.evaluate(session, shop, customer, program, version, now=now, reason="backfill")
    with session_scope() as session:
        row = session.scalars(select(Backfill).where(Backfill.shop_id == shop_id).with_for_update()).one()
        row.status, row.finished_at, row.updated_at = "done", now, now
    logger.info("backfill done", extra={"shop": shop_id, "customers": len(customer_ids)})
    return True


def finish_backfills() -> int:
    """Scheduled: complete every backfill whose deliveries the worker has processed; returns how many."""
    with session_scope() as session:
        ids = list(session.scalars(select(Backfill.shop_id).where(Backfill.status == "processing")))
    return sum(1 for shop_id in ids if finish(shop_id))


def _waiting(session: Any, shop_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(WebhookDelivery).where(
        WebhookDelivery.shop_id == shop_id, WebhookDelivery.source == "backfill",
        WebhookDelivery.status == DeliveryStatus.RECEIVED)) or 0)


def _progress(session: Any, row: Backfill) -> Progress:
    return Progress(status=row.status, mode=row.mode, orders_read=row.orders_read, orders_new=row.orders_new,
                    orders_total=row.orders_total, pages=row.pages,
                    waiting=_waiting(session, row.shop_id) if row.status == "processing" else 0,
                    started_at=row.started_at, finished_at=row.finished_at, error=row.error)


def progress_of(shop_id: int) -> Progress | None:
    """Return the shop's backfill progress, or None when it never had one."""
    with session_scope() as session:
        row = session.scalars(select(Backfill).where(Backfill.shop_id == shop_id)).first()
        return None if row is None else _progress(session, row)
