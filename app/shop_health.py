"""One shop's health in one place: installed, credentials, scopes, webhooks, token, traffic, codes.

No Flask here: `flask shops status` and the admin's shops list both call `shop_health`. The one
check that calls the platform (`check_credentials`) is cached on the shop row for
CREDENTIALS_CHECK_TTL, so the list costs no API call per view.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import shops
from app.loyalty import tier_tags
from app.models import (
    Backfill,
    CodeStatus,
    DeliveryStatus,
    IssuedCode,
    PlatformWebhook,
    Shop,
    ShopStatus,
    WebhookDelivery,
    utcnow,
)
from connectors.errors import ConnectorError, TransientError

logger = logging.getLogger(__name__)

CREDENTIALS_CHECK_TTL = timedelta(minutes=15)


def needed_scopes(shop: Shop) -> tuple[str, ...]:
    """Return the API scopes the shop's features need (Shopify; WooCommerce keys are read_write)."""
    from connectors.shopify import consts

    return consts.SCOPES if shop.platform.value == "shopify" else ()


def shop_health(session: Session, shop: Shop, *, keys: str, now: datetime | None = None) -> dict[str, Any]:
    """Return the shop's health as plain values (for JSON and for the admin)."""
    now = now or utcnow()
    last_delivery = session.scalar(select(func.max(WebhookDelivery.received_at))
                                   .where(WebhookDelivery.shop_id == shop.id))
    waiting = session.scalar(select(func.count()).select_from(IssuedCode)
                             .where(IssuedCode.shop_id == shop.id, IssuedCode.status == CodeStatus.PENDING))
    failed = session.scalar(select(func.count()).select_from(IssuedCode)
                            .where(IssuedCode.shop_id == shop.id, IssuedCode.status == CodeStatus.FAILED))
    hooks = session.execute(select(PlatformWebhook.topic, PlatformWebhook.status)
                            .where(PlatformWebhook.shop_id == shop.id)).all()
    missing_credentials = shops.missing_api_credentials(shop, keys)
    problems = []
    if shop.status != ShopStatus.ACTIVE:
        problems.append("not installed")
    if shop.needs_reauth_at is not None:
        problems.append("needs re-authorisation")
    if missing_credentials:
        problems.append("no usable API credentials")
    elif shop.credentials_error:
        problems.append("credentials refused by the shop")
    missing = shops.missing_scopes(shop, needed_scopes(shop)) if shop.granted_scopes is not None else []
    if missing:
        problems.append("scopes missing")
    inactive_hooks = sorted(topic for topic, status in hooks if status != "active")
    if inactive_hooks:
        problems.append("webhooks not active")
    return {
        "shop": shop.domain,
        "platform": shop.platform.value,
        "installed": shop.status == ShopStatus.ACTIVE,
        "installed_at": _iso(shop.installed_at),
        "uninstalled_at": _iso(shop.uninstalled_at),
        "needs_reauthorisation": shop.needs_reauth_at is not None,
        "credentials": "missing" if missing_credentials else (
            "refused" if shop.credentials_error else ("valid" if shop.credentials_checked_at else "not checked")),
        "credentials_error": missing_credentials or shop.credentials_error,
        "credentials_checked_at": _iso(shop.credentials_checked_at),
        "scopes_granted": sorted(filter(None, (shop.granted_scopes or "").split(","))),
        "scopes_missing": missing,
        "webhooks": {topic: status for topic, status in sorted(hooks)},
        "webhooks_inactive": inactive_hooks,
        "token_expires_at": _iso(shop.access_token_expires_at),
        "refresh_token_expires_at": _iso(shop.refresh_token_expires_at),
        "last_delivery_at": _iso(last_delivery),
        "last_reconciled_at": _iso(shop.last_reconciled_at),
        "reconciled_recovered": shop.reconciled_recovered or 0,
        "codes_waiting": int(waiting or 0),
        "backfill": backfill_line(session, shop.id),
        "codes_failed": int(failed or 0),
        **{f"tier_tags_{k}": v for k, v in tier_tags.counts(session, shop.id).items()},
        "ok": not problems,
        "problems": problems,
    }


def check_credentials(shop_id: int, *, keys: str, check: Any, now: datetime | None = None,
                      force: bool = False) -> bool:
    """Make one cheap API call with the shop's credentials, at most every CREDENTIALS_CHECK_TTL;
    record the outcome on the shop and return whether they work.

    `check(shop)` raises a ConnectorError when the platform refuses (see `jobs.shops`). A timeout
    or 5xx says nothing about the credentials: the previous outcome stays.
    """
    from app.db import session_scope

    now = now or utcnow()
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return False
        fresh = shop.credentials_checked_at is not None and shop.credentials_checked_at > now - CREDENTIALS_CHECK_TTL
        if fresh and not force:
            return shop.credentials_error is None
        if shops.missing_api_credentials(shop, keys):
            return False
    try:
        check(shop_id)
        error = None
    except TransientError:
        logger.info("credentials check inconclusive", extra={"shop": shop_id})
        return False
    except (ConnectorError, shops.ShopNeedsReauthorizationError) as exc:
        error = str(exc)[:500]
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is not None:
            shop.credentials_checked_at, shop.credentials_error = now, error
    return error is None


def backfill_line(session: Session, shop_id: int) -> str | None:
    """Return the shop's backfill progress as one line (stored facts only), or None."""
    row = session.scalars(select(Backfill).where(Backfill.shop_id == shop_id)).first()
    if row is None:
        return None
    what = "points" if row.mode == "points" else "tiers and spend only"
    total = f" of {row.orders_total}" if row.orders_total is not None else ""
    share = f" ({min(100, row.orders_read * 100 // row.orders_total)} %)" if row.orders_total else ""
    line = f"{row.status}: {row.orders_read}{total} orders read{share}, {row.orders_new} new ({what})"
    if row.status == "processing":
        waiting = session.scalar(select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.shop_id == shop_id, WebhookDelivery.source == "backfill",
            WebhookDelivery.status == DeliveryStatus.RECEIVED))
        line += f", {int(waiting or 0)} waiting for the worker"
    if row.finished_at is not None:
        line += f", finished {row.finished_at:%Y-%m-%d %H:%M} UTC"
    if row.error:
        line += f"; last error: {row.error}"
    return line


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
