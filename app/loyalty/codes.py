"""Discount codes we create in shops: derive, record (outbox), and hand to the code job.

A code row is written `pending` in the same transaction as whatever caused it (a redemption, a
first order, a referral), with a code string derived from its purpose and source, so a retried job
looks up that same code in the shop instead of creating a second one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from app.db import after_commit, insert_row
from app.loyalty.decide import BOUNCE_BACK
from app.models import CodeStatus, IssuedCode, Shop, utcnow
from connectors.types import DiscountSpec

logger = logging.getLogger(__name__)

PREFIXES = {
    "reward": "SK",
    "second_purchase": "WIEDER",
    "bounce_back": "DANKE",
    "referral": "FREUND",
    "tier_discount": "MITGLIED",
    "tier_shipping": "VERSAND",
    "cart": "KORB",
    "winback": "ZURUECK",
    "referral_step": "DANKE",  # a referral step's lasting member code (app.loyalty.referrals)
}


def _secret() -> str:
    from app import config

    return config.settings()["SECRET_KEY"]


def derive_code(shop_id: int, purpose: str, source_key: str, secret: str | None = None) -> str:
    """Return the code for (shop, purpose, source): stable for retries, unguessable for others."""
    secret = secret or _secret()
    digest = hmac.new(secret.encode(), f"{shop_id}:{purpose}:{source_key}".encode(), hashlib.sha256).digest()
    token = base64.b32encode(digest).decode().rstrip("=")[:10]
    return f"{PREFIXES.get(purpose, 'SK')}-{token}"


def spec_to_json(spec: DiscountSpec) -> dict[str, Any]:
    """Serialize a DiscountSpec for the outbox row (Decimals and times as strings)."""
    return {
        "code": spec.code,
        "title": spec.title,
        "kind": spec.kind,
        "value": str(spec.value),
        "currency": spec.currency,
        "starts_at": spec.starts_at.isoformat(),
        "ends_at": spec.ends_at.isoformat() if spec.ends_at else None,
        "minimum_amount": str(spec.minimum_amount) if spec.minimum_amount is not None else None,
        "customer_id": spec.customer_id,
        "customer_email": spec.customer_email,
        "product_ids": list(spec.product_ids),
        "variant_ids": list(spec.variant_ids),
        "usage_limit": spec.usage_limit,
        "once_per_customer": spec.once_per_customer,
        # a combination offer's condition (only on such codes, so other rows stay as they were)
        **({"buys_product_ids": list(spec.buys_product_ids), "buys_variant_ids": list(spec.buys_variant_ids),
            "buys_quantity": spec.buys_quantity, "gets_quantity": spec.gets_quantity, "buys_label": spec.buys_label}
           if spec.kind == "buy_x_get_y" else {}),
    }


def spec_from_json(data: dict[str, Any]) -> DiscountSpec:
    """Rebuild the DiscountSpec stored on an outbox row."""
    return DiscountSpec(
        code=data["code"],
        title=data["title"],
        kind=data["kind"],
        value=Decimal(data["value"]),
        currency=data["currency"],
        starts_at=datetime.fromisoformat(data["starts_at"]),
        ends_at=datetime.fromisoformat(data["ends_at"]) if data.get("ends_at") else None,
        minimum_amount=Decimal(data["minimum_amount"]) if data.get("minimum_amount") is not None else None,
        customer_id=data.get("customer_id"),
        customer_email=data.get("customer_email"),
        product_ids=tuple(data.get("product_ids") or ()),
        variant_ids=tuple(data.get("variant_ids") or ()),
        usage_limit=data.get("usage_limit"),
        once_per_customer=data.get("once_per_customer", True),
        buys_product_ids=tuple(data.get("buys_product_ids") or ()),
        buys_variant_ids=tuple(data.get("buys_variant_ids") or ()),
        buys_quantity=data.get("buys_quantity"),
        gets_quantity=data.get("gets_quantity"),
        buys_label=data.get("buys_label"),
    )


_CODE_KEY = ["shop_id", "purpose", "source_key"]  # one code per purpose and source
_READ_CODE = select(IssuedCode).where(
    IssuedCode.shop_id == bindparam("shop_id"),
    IssuedCode.purpose == bindparam("purpose"),
    IssuedCode.source_key == bindparam("source_key"),
)


def code_row(
    shop: Shop,
    *,
    purpose: str,
    source_key: str,
    customer_id: int | None,
    title: str,
    kind: str,
    value: Decimal,
    valid_days: int | None,
    platform_customer_id: str | None = None,
    customer_email: str | None = None,
    minimum_amount: Decimal | None = None,
    product_ids: tuple[str, ...] = (),
    variant_ids: tuple[str, ...] = (),
    usage_limit: int | None = 1,
    once_per_customer: bool = True,
    ends_at: datetime | None = None,
    now: datetime | None = None,
    buys_product_ids: tuple[str, ...] = (),
    buys_variant_ids: tuple[str, ...] = (),
    buys_quantity: int | None = None,
    gets_quantity: int | None = None,
    buys_label: str | None = None,
) -> dict[str, Any]:
    """Return the column values of a code's new pending row.

    The code ends `valid_days` from now, or at `ends_at` (a tier perk: its tier period's end).
    """
    now = now or utcnow()
    code = derive_code(shop.id, purpose, source_key)
    if ends_at is None and valid_days:
        ends_at = now + timedelta(days=valid_days)
    spec = DiscountSpec(
        code=code,
        title=title,
        kind=kind,
        value=value,
        currency=shop.currency,
        starts_at=now,
        ends_at=ends_at,
        minimum_amount=minimum_amount,
        customer_id=platform_customer_id,
        customer_email=customer_email,
        product_ids=product_ids,
        variant_ids=variant_ids,
        usage_limit=usage_limit,
        once_per_customer=once_per_customer,
        buys_product_ids=buys_product_ids,
        buys_variant_ids=buys_variant_ids,
        buys_quantity=buys_quantity,
        gets_quantity=gets_quantity,
        buys_label=buys_label,
    )
    return dict(
        shop_id=shop.id, customer_id=customer_id, purpose=purpose, source_key=source_key, code=code,
        spec=spec_to_json(spec), status=CodeStatus.PENDING, attempts=0, expires_at=ends_at,
        created_at=now, updated_at=now,
    )


def record_code(session: Session, shop: Shop, *, enqueue: bool = True, **spec: Any) -> tuple[IssuedCode, bool]:
    """Write the pending code row, once per (purpose, source_key); returns (row, created_now).

    A new code's job is enqueued after the surrounding transaction commits. `enqueue=False` for a
    code nobody waits for (a referral code, a second-purchase or tier perk code): the
    `jobs.codes.requeue_pending` sweep (every minute) hands those to the worker in bulk, instead
    of one Redis round trip each in the order's job. A code recorded before keeps its row; its
    string is the same, as both derive from the key.

    `spec`: the keywords of `code_row`.
    """
    values = code_row(shop, **spec)
    row = insert_row(session, IssuedCode, values, conflict_on=_CODE_KEY)
    created = row is not None
    if row is None:
        row = session.scalars(
            _READ_CODE, {"shop_id": shop.id, "purpose": values["purpose"], "source_key": values["source_key"]}
        ).one()
    if created and enqueue:
        enqueue_code_after_commit(session, row.id)
    return row, created


def enqueue_code_after_commit(session: Session, code_id: int) -> None:
    """Hand the code to the `codes` queue once the row is committed."""
    after_commit(session, lambda: enqueue_code(code_id))


def enqueue_deactivation(code_id: int) -> bool:
    """Enqueue the job that switches code `code_id` off in the shop (no-op when already queued)."""
    from app.queues import PLATFORM_RETRY, enqueue_once

    return enqueue_once("codes", "jobs.codes.deactivate_code", code_id, job_id=f"deactivate-code-{code_id}",
                        retry=PLATFORM_RETRY)


def end_codes_early(session: Session, codes: list[IssuedCode], now: datetime) -> None:
    """Mark codes to be switched off in the shop from `now`, and hand each to the job once the
    transaction commits (the row says so first: an outbox, like a new code)."""
    for row in codes:
        if row.ends_early_at is None:
            row.ends_early_at = now
            after_commit(session, lambda code_id=row.id: enqueue_deactivation(code_id))


def enqueue_code(code_id: int) -> bool:
    """Enqueue the job that creates code `code_id` in the shop (no-op when already queued)."""
    from app.queues import PLATFORM_RETRY, enqueue_once

    return enqueue_once("codes", "jobs.codes.issue_code", code_id, job_id=f"issue-code-{code_id}", retry=PLATFORM_RETRY)


def withdraw_order_codes(session: Session, shop_id: int, order_id: int, reason: str, now: datetime) -> list[int]:
    """Take back the bounce-back code an order earned, now that the order was cancelled, fully
    refunded or deleted (`reason`): unless it was used or refused, it is marked to be removed
    from the shop (`ends_early_at`, an outbox like a new code) and the job is handed over after
    the commit. One UPDATE; the `ends_early_at IS NULL` condition makes repeats (duplicate
    deliveries, a second reason) change nothing. Returns the ids marked now.
    """
    table = IssuedCode.__table__
    stmt = (
        update(table)
        .where(table.c.shop_id == shop_id, table.c.purpose == BOUNCE_BACK, table.c.source_key == str(order_id),
               table.c.ends_early_at.is_(None), table.c.used_at.is_(None), table.c.status != CodeStatus.FAILED)
        .values(ends_early_at=now, end_reason=reason, updated_at=now)
        .returning(table.c.id)
    )
    marked = list(session.scalars(stmt))
    for code_id in marked:
        logger.info("bounce-back code taken back", extra={"shop": shop_id, "order_id": order_id, "code_row": code_id,
                                                            "why": reason})
        after_commit(session, lambda code_id=code_id: enqueue_deactivation(code_id))
    return marked


def note_used_codes(session: Session, shop_id: int, customer_id: int, order_codes: Any, now: datetime) -> int:
    """Record that the customer's bounce-back codes named by a paid order's discount codes were
    used (compared case-insensitively: WooCommerce lower-cases codes), so they are never taken
    back. One UPDATE; returns how many were marked now."""
    wanted = sorted({c.strip().upper() for c in order_codes if isinstance(c, str) and c.strip()})
    if not wanted:
        return 0
    table = IssuedCode.__table__
    result = session.execute(
        update(table)
        .where(table.c.shop_id == shop_id, table.c.customer_id == customer_id, table.c.purpose == BOUNCE_BACK,
               func.upper(table.c.code).in_(wanted), table.c.used_at.is_(None))
        .values(used_at=now, updated_at=now)
    )
    return int(result.rowcount or 0)
