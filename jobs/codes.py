"""Creating codes and tagging orders in the shop: the only jobs that call platform APIs.

Each job reads its outbox row, calls the platform outside any database transaction (so a slow
shop never holds a lock), then records the result. Transient failures raise, and RQ retries with
backoff (Retry at the enqueue site); permanent refusals are recorded, and for a reward the points
are given back with an entry saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import select

from app import config, shops
from app.telemetry import platform_call
from app.loyalty import redemptions
from app.loyalty.codes import enqueue_code, enqueue_deactivation, spec_from_json
from app.loyalty.decide import BOUNCE_BACK
from app.db import after_commit, session_scope
from app.loyalty.incentives import enqueue_order_task
from app.models import CodeStatus, IssuedCode, OrderTask, Redemption, RedemptionStatus, Shop, ShopStatus, utcnow
from connectors import get_connector
from connectors.errors import PermanentError, TransientError, UnauthorizedError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def shop_credentials(shop: Shop) -> tuple[dict[str, Any], str | None]:
    """Return (the connector's credentials, None), or ({}, why the shop's API cannot be called)."""
    return shops.api_credentials(shop, config.settings()["ENCRYPTION_KEY"])


def pause_reason(shop: Shop) -> str | None:
    """Return why calls to the shop wait (its rows stay pending, nothing is lost), or None.

    An uninstalled shop, or one whose Shopify grant was refused, gets no calls until the merchant
    installs again; the requeue sweep then hands its pending rows over.
    """
    if shop.status != ShopStatus.ACTIVE:
        return "uninstalled"
    if shop.needs_reauth_at is not None:
        return "needs re-authorisation"
    return None


def _refreshed(shop_id: int, credentials: dict[str, Any], *, force: bool = False) -> dict[str, Any] | None:
    """Return the credentials with an expiring token refreshed first (outside any transaction),
    or None when the shop must be installed again (it is marked; its calls wait).

    Raises:
        TransientError: another worker is refreshing, or the platform did not answer (retry).
    """
    if not credentials.get("refresh_token"):
        return credentials
    from jobs.shops import api_credentials

    try:
        return api_credentials(shop_id, force_refresh=force)
    except shops.ShopNeedsReauthorizationError:
        return None
    except shops.TokenRefreshBusyError as exc:
        raise TransientError(str(exc)) from None


def callable_credentials(shop_id: int, paused: str | None, credentials: dict[str, Any],
                          missing: str | None) -> dict[str, Any] | None:
    """Return the credentials to call the shop with (an expiring token refreshed first), or None
    when its calls wait: the shop is paused (`paused`), or the refresh found its grant gone.
    Credentials that are `missing` come back unchanged, for the caller to fail the row with why.

    Raises:
        TransientError: see `_refreshed`.
    """
    if paused is not None:
        logger.info("calls to the shop wait", extra={"shop": shop_id, "why": paused})
        return None
    if missing is not None:
        return credentials
    return _refreshed(shop_id, credentials)


class PausedError(Exception):
    """The shop's grant is gone: the row waits (see `pause_reason`)."""


def once_more_after_401(shop_id: int, credentials: dict[str, Any], call: Callable[[dict[str, Any]], T]) -> T:
    """Run `call(credentials)`; on a 401 with an expiring token, refresh it once and run it again.

    Raises:
        PausedError: the refresh found the grant expired or revoked.
        UnauthorizedError: the token is refused and cannot be refreshed (or was, and still is).
    """
    try:
        return call(credentials)
    except UnauthorizedError:
        if not credentials.get("refresh_token"):
            raise
        logger.info("token refused; refreshing it once", extra={"shop": shop_id})
        fresh = _refreshed(shop_id, credentials, force=True)
        if fresh is None:
            raise PausedError from None
        return call(fresh)


def _create(platform: str, credentials: dict[str, Any], spec: Any) -> Any:
    """Create the code in the shop (or, for a "store credit" reward, credit the customer's
    account), counting a failed call (`stammkunde_platform_api_errors`)."""
    connector = get_connector(platform)
    if spec.kind == "store_credit":
        with platform_call(platform, "credit_store_credit"):
            return connector.credit_store_credit(credentials, spec)
    with platform_call(platform, "create_discount_code"):
        return connector.create_discount_code(credentials, spec)


def _fail_code(code_id: int, reason: str, *, why: str = "the shop refused the code") -> str:
    """Record a code the shop will never hold as failed (`reason` in its `error`), and give a
    pending redemption's points back with an entry saying `why: reason`."""
    with session_scope() as session:
        row = session.get(IssuedCode, code_id)
        assert row is not None
        if row.status != CodeStatus.PENDING:
            return row.status.value
        row.status = CodeStatus.FAILED
        row.error = reason[:2000]
        redemption = session.scalars(select(Redemption).where(Redemption.issued_code_id == code_id)).first()
        if redemption is not None and redemption.status == RedemptionStatus.PENDING:
            redemptions.give_back(session, redemption, f"{why}: {reason}"[:500])
    return CodeStatus.FAILED.value


def issue_code(code_id: int) -> str:
    """Create one pending code in its shop (or find it there); returns the row's status."""
    with session_scope() as session:
        row = session.get(IssuedCode, code_id)
        if row is None or row.status != CodeStatus.PENDING:
            logger.debug("code already handled", extra={"code_row": code_id})
            return row.status.value if row else "missing"
        shop = session.get(Shop, row.shop_id)
        assert shop is not None
        row.attempts += 1
        spec = spec_from_json(row.spec)
        platform, shop_id, paused = shop.platform.value, shop.id, pause_reason(shop)
        credentials, missing = shop_credentials(shop)
    if (credentials := callable_credentials(shop_id, paused, credentials, missing)) is None:
        return "paused"
    if missing is not None:
        # No retry can fix this: the merchant has to add the credentials first.
        logger.warning("shop has no usable api credentials", extra={"code_row": code_id, "platform": platform})
        return _fail_code(code_id, missing, why="the code could not be created")
    try:
        result = once_more_after_401(shop_id, credentials, lambda creds: _create(platform, creds, spec))
    except PausedError:
        return "paused"
    except (PermanentError, ValueError) as exc:
        # ValueError: the client cannot express this spec (bad stored data); retrying cannot fix it.
        logger.warning("shop refused a code", extra={"code_row": code_id, "platform": platform})
        return _fail_code(code_id, str(exc))
    with session_scope() as session:
        row = session.get(IssuedCode, code_id)
        assert row is not None
        if row.status == CodeStatus.PENDING:
            row.status = CodeStatus.CREATED
            row.platform_id = result.platform_id
            row.error = None
            if row.ends_early_at is not None:
                # The member left the tier while the code was being created: switch it off now.
                after_commit(session, lambda: enqueue_deactivation(code_id))
            redemption = session.scalars(select(Redemption).where(Redemption.issued_code_id == code_id)).first()
            if redemption is not None and redemption.status == RedemptionStatus.PENDING:
                redemption.status = RedemptionStatus.CREATED
        return row.status.value


def deactivate_code(code_id: int) -> str:
    """Switch off in its shop a code marked to end early (a tier perk the member no longer has),
    or take back a bounce-back code whose order stopped counting (removed from the shop unless
    the shop counts a use: then it stays, and is recorded as used).

    Returns "deactivated" (a bounce-back code: "withdrawn" or "used"), or the reason nothing was
    sent: "missing", "not ending" (not marked), "pending" (not created yet: `issue_code` hands it
    over once it is), "failed" (never created, or switching it off failed for good, with the
    reason in `error`). Transient failures raise, and RQ retries.
    """
    with session_scope() as session:
        row = session.get(IssuedCode, code_id)
        if row is None:
            return "missing"
        if row.ends_early_at is None:
            return "not ending"
        if row.deactivated_at is not None:
            logger.debug("code already deactivated", extra={"code_row": code_id})
            return "deactivated"
        if row.status != CodeStatus.CREATED or row.platform_id is None:
            return row.status.value
        if row.error is not None:
            return CodeStatus.FAILED.value
        shop = session.get(Shop, row.shop_id)
        assert shop is not None
        platform, platform_id, ends_at = shop.platform.value, row.platform_id, row.ends_early_at
        shop_id, paused = shop.id, pause_reason(shop)
        withdraw = row.purpose == BOUNCE_BACK
        credentials, missing = shop_credentials(shop)
    if (credentials := callable_credentials(shop_id, paused, credentials, missing)) is None:
        return "paused"
    try:
        if missing is not None:
            raise PermanentError(missing)
        if withdraw:
            with platform_call(platform, "withdraw_discount_code"):
                gone = get_connector(platform).withdraw_discount_code(credentials, platform_id)
            return _withdrawn(code_id, gone)
        with platform_call(platform, "deactivate_discount_code"):
            get_connector(platform).deactivate_discount_code(credentials, platform_id, now=ends_at)
    except (PermanentError, ValueError) as exc:
        logger.warning("shop refused to deactivate a code", extra={"code_row": code_id, "platform": platform})
        with session_scope() as session:
            row = session.get(IssuedCode, code_id)
            assert row is not None
            if row.deactivated_at is None:
                row.error = f"could not switch the code off in the shop: {exc}"[:2000]
        return CodeStatus.FAILED.value
    with session_scope() as session:
        row = session.get(IssuedCode, code_id)
        assert row is not None
        if row.deactivated_at is None:
            row.deactivated_at = utcnow()
    return "deactivated"


def _withdrawn(code_id: int, gone: bool) -> str:
    """Record what the shop did with a bounce-back code taken back: removed ("withdrawn"), or
    kept because it counts a use ("used": the code stays, no longer marked to end)."""
    with session_scope() as session:
        row = session.get(IssuedCode, code_id)
        assert row is not None
        now = utcnow()
        if gone:
            if row.deactivated_at is None:
                row.deactivated_at = now
            return "withdrawn"
        row.used_at = row.used_at or now
        row.ends_early_at = None
        logger.info("bounce-back code was used; it stays", extra={"code_row": code_id})
    return "used"


def _fail_task(task_id: int, reason: str) -> str:
    """Record an order task the shop will never get as failed, with `reason` in its `error`."""
    with session_scope() as session:
        task = session.get(OrderTask, task_id)
        assert task is not None
        if task.status != CodeStatus.PENDING:
            return task.status.value
        task.status, task.error = CodeStatus.FAILED, reason[:2000]
    return CodeStatus.FAILED.value


def run_order_task(task_id: int) -> str:
    """Mark an order in its shop for a gift with purchase (the connector's `mark_gift`)."""
    from app.models import Order

    with session_scope() as session:
        task = session.get(OrderTask, task_id)
        if task is None or task.status != CodeStatus.PENDING:
            return task.status.value if task else "missing"
        shop = session.get(Shop, task.shop_id)
        order = session.get(Order, task.order_id)
        assert shop is not None and order is not None
        task.attempts += 1
        payload, platform, order_id = dict(task.payload), shop.platform.value, order.platform_id
        shop_id, paused = shop.id, pause_reason(shop)
        credentials, missing = shop_credentials(shop)
    if (credentials := callable_credentials(shop_id, paused, credentials, missing)) is None:
        return "paused"
    if missing is not None:
        logger.warning("shop has no usable api credentials", extra={"task": task_id, "platform": platform})
        return _fail_task(task_id, missing)
    try:
        with platform_call(platform, "mark_gift"):
            get_connector(platform).mark_gift(credentials, order_id, tag=payload["tag"], note=payload["note"])
    except (PermanentError, ValueError) as exc:
        return _fail_task(task_id, str(exc))
    with session_scope() as session:
        task = session.get(OrderTask, task_id)
        assert task is not None
        task.status, task.error = CodeStatus.CREATED, None
    return CodeStatus.CREATED.value


def requeue_pending(older_than_seconds: int = 0) -> int:
    """Enqueue codes and order tasks still pending: non-urgent codes, and any whose job was lost
    (Redis down) or ran out of retries, and codes still to be switched off in the shop. A code
    whose job is queued or scheduled is skipped."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    # Shops whose calls are paused (uninstalled, or waiting for re-authorisation) are left out.
    callable_shops = select(Shop.id).where(Shop.status == ShopStatus.ACTIVE, Shop.needs_reauth_at.is_(None))
    with session_scope() as session:
        code_ids = list(session.scalars(
            select(IssuedCode.id).where(IssuedCode.status == CodeStatus.PENDING, IssuedCode.updated_at <= cutoff,
                                        IssuedCode.shop_id.in_(callable_shops)).limit(5000)
        ))
        task_ids = list(session.scalars(
            select(OrderTask.id).where(OrderTask.status == CodeStatus.PENDING, OrderTask.updated_at <= cutoff,
                                       OrderTask.shop_id.in_(callable_shops)).limit(5000)
        ))
        ending_ids = list(session.scalars(
            select(IssuedCode.id).where(
                IssuedCode.ends_early_at.is_not(None), IssuedCode.deactivated_at.is_(None),
                IssuedCode.status == CodeStatus.CREATED, IssuedCode.error.is_(None),
                IssuedCode.updated_at <= cutoff, IssuedCode.shop_id.in_(callable_shops),
            ).limit(5000)
        ))
    queued = sum(1 for code_id in code_ids if enqueue_code(code_id))
    queued += sum(1 for task_id in task_ids if enqueue_order_task(task_id))
    queued += sum(1 for code_id in ending_ids if enqueue_deactivation(code_id))
    return queued
