"""Tiers in the shop: a member's tier written to the shop so its own perks and segments can use it
(no Flask here).

Shopify shows it as a customer tag "<prefix> <tier>" ("Stammkunde Gold"), WooCommerce as the
customer meta `stammkunde_tier` (the connectors' `tier_label` / `set_customer_tier`). The desired
state is the customer's `tier` under the program's `tier_in_shop`: every tier change marks the
member's `CustomerTierTag` row pending in its own transaction (`mark`, on both the per-delivery
and the bulk path), and `jobs.tier_tags` writes what is wanted *when it runs*, so duplicate and
out-of-order deliveries end in the final tier, written once. The row keeps the label we wrote,
so only our own tag is ever removed (a renamed tier or prefix removes our old tag, never the
shop's).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.models import CustomerTierTag, TierTagStatus
from app.program import Program

GUEST_REASON = "guest checkout: the shop has no customer account to write the tier to"
REDACTED_REASON = "the customer's data was erased at the shop's request"


def row_values(shop_id: int, customer_id: int, platform_id: str | None, now: datetime) -> dict[str, Any]:
    """Return the row of a member whose tier just changed: pending, or skipped with the reason
    when the shop has no account to write to (a guest). Pure."""
    skipped = platform_id is None
    return {"customer_id": customer_id, "shop_id": shop_id,
            "status": TierTagStatus.SKIPPED if skipped else TierTagStatus.PENDING,
            "error": GUEST_REASON if skipped else None, "generation": 1, "attempts": 0, "marked_at": now}


def mark(session: Session, rows: list[dict[str, Any]]) -> None:
    """Record (from `row_values`) that the shop may have to show these members' tiers anew: one
    upsert; a member marked before gets a new generation, so a write already under way for the
    older one does not mark the row written."""
    if not rows:
        return
    table = CustomerTierTag.__table__
    stmt = dialect_insert(session, table)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[table.c.customer_id],
        set_={"status": stmt.excluded.status, "error": stmt.excluded.error, "attempts": 0,
              "marked_at": stmt.excluded.marked_at, "generation": table.c.generation + 1},
    ), rows)


def mark_customers(session: Session, shop_id: int, customers: Iterable[Any], now: datetime) -> None:
    """`mark` for customer rows (or objects with `id` and `platform_id`)."""
    mark(session, [row_values(shop_id, c.id, c.platform_id, now) for c in customers])


def wanted_label(connector: Any, program: Program, tier: str | None) -> str | None:
    """Return what the shop should show for a member in `tier` (None: nothing of ours). Pure.

    Raises:
        ValueError: the connector cannot express the label (see `tier_label`).
    """
    if tier is None or not program.tier_in_shop.enabled:
        return None
    return connector.tier_label(tier, prefix=program.tier_in_shop.tag_prefix)


def customer_state(session: Session, connector: Any, program: Program, customer: Any) -> dict[str, Any]:
    """Return how the member's tier stands in the shop, for the customer pages: `status`
    (written, pending, failed, skipped, off, or "not written" for a tier from before the shop had
    this), what the shop shows from us (`written`), what it should (`wanted`), and why (`error`)."""
    row = session.get(CustomerTierTag, customer.id)
    try:
        wanted = wanted_label(connector, program, customer.tier)
    except ValueError as exc:
        wanted = None
        error = str(exc)
    else:
        error = None
    state = {"status": None, "written": None, "wanted": wanted, "error": error, "written_at": None,
             "attempts": 0, "enabled": program.tier_in_shop.enabled, "why": None}
    if row is None:
        if wanted is not None:
            state["status"] = "not written"
        elif not program.tier_in_shop.enabled:
            state["status"] = "off"
        return state
    state.update(status=row.status.value, written=row.written, error=row.error or error,
                 written_at=row.written_at, attempts=row.attempts)
    if row.status == TierTagStatus.SKIPPED:
        state["why"] = "guest" if row.error == GUEST_REASON else "redacted" if row.error == REDACTED_REASON else None
    if row.status == TierTagStatus.WRITTEN and row.written is None and not program.tier_in_shop.enabled:
        state["status"] = "off"
    return state


def counts(session: Session, shop_id: int) -> dict[str, int]:
    """Return how many members' tiers wait to be written to the shop and how many failed."""
    rows = dict(session.execute(
        select(CustomerTierTag.status, func.count())
        .where(CustomerTierTag.shop_id == shop_id,
               CustomerTierTag.status.in_([TierTagStatus.PENDING, TierTagStatus.FAILED]))
        .group_by(CustomerTierTag.status)).all())
    return {"pending": int(rows.get(TierTagStatus.PENDING, 0)), "failed": int(rows.get(TierTagStatus.FAILED, 0))}
