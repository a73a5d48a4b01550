"""Customer metafields in Shopify: the member's points, pending points, tier and next reward.

`sweep_metafields` (the clock, every minute) marks the Shopify customers whose values may have
changed since it last looked (new ledger entries, tier changes; two cursors) and enqueues one
`sync_metafields(shop_id)` per shop with marked customers. The sync computes each marked
customer's values from the database, writes only those that differ from what the shop holds,
with `metafieldsSet` (at most 25 metafields per call, a customer's metafields never split across
calls), and records each call's values as written once it succeeded. The client's cost throttle
waits before a call; a longer wait raises `RateLimitedError`, and RQ retries the job later
(what was written stays written). A customer changed again during a sync stays marked.
https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/metafieldsSet
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import dialect_insert, session_scope
from app.loyalty import storefront
from app.models import (
    Customer,
    CustomerMetafields,
    LedgerEntry,
    Platform,
    Shop,
    ShopStatus,
    TierChange,
    utcnow,
)
from app.telemetry import platform_call
from connectors.shopify import client as shopify
from connectors.shopify.consts import METAFIELDS_SCOPE
from jobs.sweeps import advance_cursor, cursor_position

logger = logging.getLogger(__name__)

LEDGER_CURSOR = "metafields-ledger"
TIERS_CURSOR = "metafields-tiers"
SWEEP_LIMIT = 5000
SYNC_BATCH = 500


def mark_changed(session: Session, customer_ids: set[int], now: datetime) -> set[int]:
    """Mark the Shopify accounts among `customer_ids` as changed (upsert; a newer mark wins) and
    return their shops' ids."""
    if not customer_ids:
        return set()
    rows = session.execute(
        select(Customer.id, Customer.shop_id)
        .join(Shop, Shop.id == Customer.shop_id)
        .where(Customer.id.in_(customer_ids), Customer.platform_id.is_not(None),
               Customer.redacted_at.is_(None), Shop.platform == Platform.SHOPIFY)
    ).all()
    if not rows:
        return set()
    table = CustomerMetafields.__table__
    stmt = dialect_insert(session, table)
    session.execute(
        stmt.on_conflict_do_update(index_elements=[table.c.customer_id],
                                   set_={"dirty_since": stmt.excluded.dirty_since}),
        [{"customer_id": cid, "shop_id": sid, "written": {}, "dirty_since": now} for cid, sid in rows],
    )
    return {sid for _, sid in rows}


def sweep_metafields(limit: int = SWEEP_LIMIT) -> int:
    """Mark the customers changed since the last sweep and enqueue a sync for every shop with
    marked customers; returns how many syncs were enqueued."""
    now = utcnow()
    with session_scope() as session:
        after_entry, after_tier = cursor_position(session, LEDGER_CURSOR), cursor_position(session, TIERS_CURSOR)
        entries = session.execute(
            select(LedgerEntry.id, LedgerEntry.customer_id).where(LedgerEntry.id > after_entry)
            .order_by(LedgerEntry.id).limit(limit)
        ).all()
        tiers = session.execute(
            select(TierChange.id, TierChange.customer_id).where(TierChange.id > after_tier)
            .order_by(TierChange.id).limit(limit)
        ).all()
        mark_changed(session, {c for _, c in entries} | {c for _, c in tiers}, now)
        if entries:
            advance_cursor(session, LEDGER_CURSOR, entries[-1][0])
        if tiers:
            advance_cursor(session, TIERS_CURSOR, tiers[-1][0])
        shop_ids = set(session.scalars(
            select(CustomerMetafields.shop_id).where(CustomerMetafields.dirty_since.is_not(None)).distinct()))
    return sum(1 for shop_id in sorted(shop_ids) if enqueue_sync(shop_id))


def enqueue_sync(shop_id: int) -> bool:
    """Enqueue the metafield sync of one shop (no-op when it is queued already)."""
    from app.queues import PLATFORM_RETRY, enqueue_once

    return enqueue_once("codes", "jobs.metafields.sync_metafields", shop_id, job_id=f"sync-metafields-{shop_id}",
                        retry=PLATFORM_RETRY)


def _calls(plan: list[tuple[int, datetime, dict[str, str], str]]) -> list[list[tuple[int, datetime, dict[str, str], str]]]:
    """Group customers into calls of at most 25 metafields, never splitting one customer."""
    calls: list[list[Any]] = [[]]
    size = 0
    for item in plan:
        count = len(item[2])
        if size + count > shopify.METAFIELDS_PER_CALL:
            calls.append([])
            size = 0
        calls[-1].append(item)
        size += count
    return [c for c in calls if c]


def sync_metafields(shop_id: int, batch: int = SYNC_BATCH) -> int:
    """Write the changed metafields of up to `batch` marked customers of a shop; returns how many
    metafields were written. Enqueues itself again when more customers are marked.

    Raises:
        TransientError, RateLimitedError: Shopify did not answer or asked us to wait (RQ retries).
        PermanentError: Shopify refused the values (the customers stay marked; the job fails).
    """
    from jobs.codes import PausedError, callable_credentials, once_more_after_401, pause_reason, shop_credentials

    now = utcnow()
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.platform != Platform.SHOPIFY:
            return 0
        granted = (shop.granted_scopes or "").split(",") if shop.granted_scopes is not None else None
        if granted is not None and METAFIELDS_SCOPE not in granted:
            logger.info("metafields wait for the write_customers scope", extra={"shop": shop_id})
            return 0
        paused = pause_reason(shop) if shop.status == ShopStatus.ACTIVE else "uninstalled"
        credentials, missing = shop_credentials(shop)
        rows = session.scalars(
            select(CustomerMetafields)
            .where(CustomerMetafields.shop_id == shop_id, CustomerMetafields.dirty_since.is_not(None))
            .order_by(CustomerMetafields.dirty_since).limit(batch)
        ).all()
        plan: list[tuple[int, datetime, dict[str, str], str]] = []
        for row in rows:
            customer = session.get(Customer, row.customer_id)
            if customer is None or not customer.platform_id or customer.redacted_at is not None:
                row.dirty_since = None
                continue
            changes = storefront.metafield_changes(row.written, storefront.metafield_values(session, shop, customer))
            if not changes:
                row.dirty_since = None  # the shop holds these values already: no call
                continue
            assert row.dirty_since is not None
            plan.append((row.customer_id, row.dirty_since, changes, shopify.customer_gid(customer.platform_id)))
        more = len(rows) == batch
    if not plan:
        if more:
            enqueue_sync(shop_id)
        return 0
    if (credentials := callable_credentials(shop_id, paused, credentials, missing)) is None:
        return 0
    if missing is not None:
        logger.warning("shop has no usable api credentials for metafields", extra={"shop": shop_id})
        return 0
    written = 0
    for call in _calls(plan):
        values = [
            shopify.MetafieldValue(owner=gid, namespace=storefront.METAFIELD_NAMESPACE, key=key,
                                   type=storefront.METAFIELD_TYPES[key], value=value)
            for _, _, changes, gid in call for key, value in changes.items()
        ]
        try:
            with platform_call("shopify", "set_metafields"):
                once_more_after_401(shop_id, credentials, lambda creds, v=values: shopify.set_metafields(creds, v))
        except PausedError:
            return written
        with session_scope() as session:
            for customer_id, marked_at, changes, _ in call:
                row = session.get(CustomerMetafields, customer_id)
                if row is None:
                    continue
                row.written = {**row.written, **changes}
                row.written_at = now
                if row.dirty_since == marked_at:  # not changed again meanwhile
                    row.dirty_since = None
        written += len(values)
    logger.info("customer metafields written", extra={"shop": shop_id, "count": written})
    if more:
        enqueue_sync(shop_id)
    return written
