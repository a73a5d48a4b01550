"""Members' tiers in their shops: a Shopify customer tag, a WooCommerce customer meta.

A tier change marks the member's `CustomerTierTag` row pending in its own transaction
(`app.loyalty.tier_tags`); `requeue_tier_tags` (the clock, every minute) enqueues one
`sync_tier_tags(shop_id)` per shop with members waiting. The sync reads each waiting member's
tier *now*, so however many deliveries changed it and in whatever order, it writes the final
tier once, and nothing when the shop shows it already. A row is marked written only if no newer
change came while the call was under way (its generation); otherwise it stays pending for the
next run. Like codes: a timeout, 5xx or rate limit raises and RQ retries with backoff (the
members written so far stay written; Shopify calls wait for the shop's shared cost bucket); a
refusal is recorded on the member (`failed` with the reason, shown on the customer page) and
the run goes on with the others.

`resync` is `flask shops sync-tiers`: every member of a shop, page by page, written again even
where our record says the shop has it (a tag removed by hand comes back), resumable from the last
page it finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.loyalty import tier_tags
from app.models import Customer, CustomerTierTag, JobCursor, Shop, ShopStatus, TierTagStatus, utcnow
from app.program import current_program
from app.telemetry import platform_call
from connectors import get_connector
from connectors.errors import PermanentError, RateLimitedError, TransientError
from jobs.sweeps import advance_cursor, cursor_position

logger = logging.getLogger(__name__)

SYNC_BATCH = 200
RESYNC_PAGE = 100
# The command sleeps at most this long for a rate limit before it asks again.
MAX_RESYNC_WAIT = 60.0


class TierSyncError(RuntimeError):
    """The shop's tiers cannot be written now (calls wait, or no usable credentials)."""


def requeue_tier_tags() -> int:
    """Enqueue the sync of every shop with members waiting whose calls are not paused (a lost
    or exhausted job is picked up here too); returns how many syncs were enqueued."""
    callable_shops = select(Shop.id).where(Shop.status == ShopStatus.ACTIVE, Shop.needs_reauth_at.is_(None))
    with session_scope() as session:
        shop_ids = list(session.scalars(
            select(CustomerTierTag.shop_id).where(CustomerTierTag.status == TierTagStatus.PENDING,
                                                  CustomerTierTag.shop_id.in_(callable_shops)).distinct()))
    return sum(1 for shop_id in sorted(shop_ids) if enqueue_sync(shop_id))


def enqueue_sync(shop_id: int) -> bool:
    """Enqueue the tier sync of one shop (no-op when it is queued or running already)."""
    from app.queues import PLATFORM_RETRY, enqueue_once

    return enqueue_once("codes", "jobs.tier_tags.sync_tier_tags", shop_id, job_id=f"sync-tier-tags-{shop_id}",
                        retry=PLATFORM_RETRY)


@dataclass(frozen=True)
class _Write:
    """One member's write: what the shop should show (`label`) and what it has from us."""

    customer_id: int
    generation: int
    platform_id: str
    label: str | None
    previous: str | None


def _plan(session: Session, shop: Shop, rows: list[Any], *, force: bool, now: datetime) -> list[_Write]:
    """Settle the rows that need no call (nothing to change, a guest, an erased customer, a label
    the platform cannot express) and return the writes the others need.

    `force`: write again what our record says the shop shows (a re-sync); a member with nothing
    wanted and nothing written still costs no call.
    """
    _, program = current_program(session, shop)
    connector = get_connector(shop.platform.value)
    writes = []
    for row, platform_id, tier, redacted_at in rows:
        if platform_id is None or redacted_at is not None:
            row.status = TierTagStatus.SKIPPED
            row.error = tier_tags.GUEST_REASON if platform_id is None else tier_tags.REDACTED_REASON
            continue
        try:
            label = tier_tags.wanted_label(connector, program, tier)
        except ValueError as exc:
            row.status, row.error = TierTagStatus.FAILED, str(exc)[:2000]
            continue
        if label == row.written and not (force and label is not None):
            row.status, row.error, row.written_at = TierTagStatus.WRITTEN, None, row.written_at or now
            continue
        row.attempts += 1
        writes.append(_Write(row.customer_id, row.generation, platform_id, label, row.written))
    return writes


def _settle(write: _Write, *, error: str | None = None, failed: bool = False, now: datetime) -> None:
    """Record a write's outcome on its row: written (pending still if the member changed again
    meanwhile), failed with `error`, or still pending with the last transient `error`."""
    with session_scope() as session:
        row = session.get(CustomerTierTag, write.customer_id)
        if row is None:
            return
        current = row.generation == write.generation
        if error is None:
            row.written, row.written_at = write.label, now
            if current:
                row.status, row.error = TierTagStatus.WRITTEN, None
        elif current:
            row.error = error[:2000]
            if failed:
                row.status = TierTagStatus.FAILED


def _credentials_for(shop_id: int) -> tuple[str, dict[str, Any] | None, str | None]:
    """Return (platform, credentials or None when calls wait, why they cannot be made or None).

    Raises:
        TransientError: see `jobs.codes._refreshed`.
    """
    from jobs.codes import callable_credentials, pause_reason, shop_credentials

    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        platform, paused = shop.platform.value, pause_reason(shop)
        credentials, missing = shop_credentials(shop)
    return platform, callable_credentials(shop_id, paused, credentials, missing), missing


def _write_all(shop_id: int, platform: str, credentials: dict[str, Any], writes: list[_Write]) -> int:
    """Make the writes one member after the other; returns how many the shop took.

    Raises:
        TransientError, RateLimitedError: the member stays pending with the reason; the rest wait.
        PausedError: the shop's grant is gone (see `jobs.codes`).
    """
    from jobs.codes import once_more_after_401

    connector = get_connector(platform)
    done = 0
    for write in writes:
        now = utcnow()

        def call(creds: dict[str, Any], write: _Write = write) -> None:
            connector.set_customer_tier(creds, write.platform_id, write.label, previous=write.previous)

        try:
            with platform_call(platform, "set_customer_tier"):
                once_more_after_401(shop_id, credentials, call)
        except TransientError as exc:
            _settle(write, error=f"will retry: {exc}", now=now)
            raise
        except (PermanentError, ValueError) as exc:
            logger.warning("shop refused a member's tier", extra={"shop": shop_id, "customer": write.customer_id,
                                                                   "platform": platform})
            _settle(write, error=str(exc), failed=True, now=now)
            continue
        _settle(write, now=now)
        done += 1
    return done


def _fail_all(writes: list[_Write], reason: str) -> None:
    now = utcnow()
    for write in writes:
        _settle(write, error=reason, failed=True, now=now)


def _pending(session: Session, shop_id: int, limit: int, customer_ids: list[int] | None = None) -> list[Any]:
    query = (select(CustomerTierTag, Customer.platform_id, Customer.tier, Customer.redacted_at)
             .join(Customer, Customer.id == CustomerTierTag.customer_id)
             .where(CustomerTierTag.shop_id == shop_id, CustomerTierTag.status == TierTagStatus.PENDING))
    if customer_ids is not None:
        query = query.where(CustomerTierTag.customer_id.in_(customer_ids))
    return list(session.execute(query.order_by(CustomerTierTag.marked_at, CustomerTierTag.customer_id)
                                .limit(limit)).all())


def sync_tier_tags(shop_id: int, batch: int = SYNC_BATCH) -> int:
    """Write the tiers of up to `batch` waiting members of a shop; returns how many writes the
    shop took. Enqueues itself again when more members wait.

    Raises:
        TransientError, RateLimitedError: the shop did not answer or asked us to wait (RQ retries).
    """
    from jobs.codes import PausedError

    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return 0
        rows = _pending(session, shop_id, batch)
        more = len(rows) == batch
        writes = _plan(session, shop, rows, force=False, now=utcnow())
    if writes:
        platform, credentials, missing = _credentials_for(shop_id)
        if credentials is None:
            return 0  # calls wait (uninstalled, re-authorisation): the members stay pending
        if missing is not None:
            logger.warning("shop has no usable api credentials for tiers", extra={"shop": shop_id})
            _fail_all(writes, missing)
            return 0
        try:
            done = _write_all(shop_id, platform, credentials, writes)
        except PausedError:
            return 0
        logger.info("member tiers written to the shop", extra={"shop": shop_id, "count": done})
    else:
        done = 0
    if more:
        enqueue_sync(shop_id)
    return done


# ---- the re-sync command ---------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far a re-sync got: members looked at of `total`, and writes made, failed, skipped."""

    done: int
    total: int
    written: int
    failed: int


def _cursor_name(shop_id: int) -> str:
    return f"sync-tiers-{shop_id}"


def _members(shop_id: int) -> Any:
    """The shop's members whose tier the shop may show: a tier now, or a label of ours written."""
    has_label = select(CustomerTierTag.customer_id).where(CustomerTierTag.shop_id == shop_id,
                                                         CustomerTierTag.written.is_not(None))
    return (select(Customer.id, Customer.platform_id)
            .where(Customer.shop_id == shop_id, Customer.merged_into_id.is_(None),
                   or_(Customer.tier.is_not(None), Customer.id.in_(has_label))))


def resync(shop_id: int, *, restart: bool = False, on_page: Callable[[Progress], None] | None = None,
           page_size: int | None = None, sleep: Callable[[float], None] = time.sleep) -> Progress:
    """Write every member's tier to the shop again, page by page (by customer id), going on from
    the last page a stopped run finished (`restart`: from the first). A rate limit is waited out
    (the shared cost bucket paces each call before it); other failures stop the run, which the
    next run resumes. Members the shop refuses are recorded failed and counted.

    Raises:
        TierSyncError: the shop's calls wait or it has no usable credentials (nothing written).
        TransientError: the shop did not answer; run again to go on.
    """
    from jobs.codes import PausedError

    name = _cursor_name(shop_id)
    page_size = page_size or RESYNC_PAGE
    with session_scope() as session:
        if restart:
            session.execute(delete(JobCursor).where(JobCursor.name == name))
    platform, credentials, missing = _credentials_for(shop_id)
    if credentials is None:
        raise TierSyncError("calls to the shop wait (uninstalled or needs re-authorisation)")
    if missing is not None:
        raise TierSyncError(missing)
    with session_scope() as session:
        after = cursor_position(session, name)
        total = session.scalar(select(func.count()).select_from(_members(shop_id).subquery())) or 0
        done = session.scalar(select(func.count()).select_from(
            _members(shop_id).where(Customer.id <= after).subquery())) or 0
    written = failed = 0
    while True:
        now = utcnow()
        with session_scope() as session:
            page = session.execute(_members(shop_id).where(Customer.id > after).order_by(Customer.id)
                                   .limit(page_size)).all()
            if not page:
                session.execute(delete(JobCursor).where(JobCursor.name == name))
                break
            ids = [customer_id for customer_id, _ in page]
            tier_tags.mark(session, [tier_tags.row_values(shop_id, cid, pid, now) for cid, pid in page])
        while True:
            with session_scope() as session:
                shop = session.get(Shop, shop_id)
                assert shop is not None
                writes = _plan(session, shop, _pending(session, shop_id, page_size, ids), force=True, now=now)
            try:
                written += _write_all(shop_id, platform, credentials, writes)
            except RateLimitedError as exc:
                sleep(min(max(exc.retry_after or 1.0, 1.0), MAX_RESYNC_WAIT))
                continue
            except PausedError:
                raise TierSyncError("the shop's grant is gone: the merchant must install the app again") from None
            break
        with session_scope() as session:
            failed += session.scalar(select(func.count()).select_from(CustomerTierTag).where(
                CustomerTierTag.customer_id.in_(ids), CustomerTierTag.status == TierTagStatus.FAILED)) or 0
            after = ids[-1]
            advance_cursor(session, name, after)
        done += len(ids)
        if on_page is not None:
            on_page(Progress(done=done, total=total, written=written, failed=failed))
    return Progress(done=done, total=total, written=written, failed=failed)
