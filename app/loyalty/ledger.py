"""The points ledger: append-only entries over point lots (no Flask here).

Every change is one `LedgerEntry`, unique on (shop, source_type, source_id, reason), written in the
same transaction as the lot changes it explains. Balances are the sums of lot `remaining` by state,
which always equal the sums of the entries' bucket deltas.

Concurrency: callers lock the customer row (`lock_customer`) before changing any of its lots; on
SQLite every transaction already holds the database write lock (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.loyalty.decide import NewEntry, NewLot
from app.models import Customer, LedgerEntry, LotState, PointLot, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Balance:
    """A customer's points by bucket."""

    pending: int
    available: int

    @property
    def total(self) -> int:
        """Return pending plus available points."""
        return self.pending + self.available


@dataclass(frozen=True)
class Taken:
    """What taking points back removed, by bucket, and what it could not take."""

    pending: int
    available: int
    shortfall: int
    lots: tuple[tuple[int, int], ...]  # (lot id, points taken)


def lock_customer(session: Session, customer_id: int) -> Customer:
    """Return the customer row, read afresh and locked for the rest of the transaction.

    PostgreSQL: SELECT ... FOR UPDATE. SQLite: every transaction already holds the database's
    write lock (BEGIN IMMEDIATE), and SQLAlchemy's dialect leaves FOR UPDATE out. A caller that
    holds the customer locked already (read FOR UPDATE or inserted in this transaction) passes
    the row on instead of calling this again.
    """
    return session.scalars(
        select(Customer).where(Customer.id == customer_id).with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def balance(session: Session, customer_id: int) -> Balance:
    """Return the customer's pending and available points."""
    rows = session.execute(
        select(PointLot.state, func.coalesce(func.sum(PointLot.remaining), 0))
        .where(PointLot.customer_id == customer_id)
        .where(PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]))
        .group_by(PointLot.state)
    ).all()
    by_state = {state: int(total) for state, total in rows}
    return Balance(
        pending=by_state.get(LotState.PENDING, 0), available=by_state.get(LotState.AVAILABLE, 0)
    )


_FIND_ENTRY = select(LedgerEntry).where(
    LedgerEntry.shop_id == bindparam("shop_id"),
    LedgerEntry.source_type == bindparam("source_type"),
    LedgerEntry.source_id == bindparam("source_id"),
    LedgerEntry.reason == bindparam("reason"),
)


def find_entry(session: Session, shop_id: int, source_type: str, source_id: str, reason: str) -> LedgerEntry | None:
    """Return the entry with this natural key, if it exists."""
    return session.scalars(
        _FIND_ENTRY, {"shop_id": shop_id, "source_type": source_type, "source_id": source_id, "reason": reason}
    ).first()


def _once(session: Session, change: Callable[[], None], entry: LedgerEntry) -> LedgerEntry | None:
    """Apply `change` and insert `entry` in one savepoint; None (and nothing changed) on a duplicate."""
    try:
        with session.begin_nested():
            change()
            session.add(entry)
            session.flush()
    except IntegrityError:
        session.expire_all()
        logger.debug("ledger entry already recorded", extra={"shop": entry.shop_id, "reason": entry.reason})
        return None
    return entry


def spend_oldest_first(session: Session, customer_id: int, points: int) -> list[tuple[int, int]]:
    """Take `points` from available lots, oldest first; returns (lot id, points) taken.

    Raises:
        InsufficientPointsError: fewer points are available (nothing is changed).
    """
    lots = session.scalars(
        select(PointLot)
        .where(PointLot.customer_id == customer_id, PointLot.state == LotState.AVAILABLE, PointLot.remaining > 0)
        .order_by(PointLot.earned_at, PointLot.id)
    ).all()
    if sum(lot.remaining for lot in lots) < points:
        raise InsufficientPointsError("not enough available points")
    left, taken = points, []
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        lot.remaining -= take
        if lot.remaining == 0:
            lot.state = LotState.SPENT
        taken.append((lot.id, take))
        left -= take
    return taken


class InsufficientPointsError(ValueError):
    """Fewer available points than asked for."""


def append(session: Session, entry: LedgerEntry, *, lot: PointLot | None = None) -> LedgerEntry | None:
    """Insert `entry` (and a new `lot`) unless an entry with its natural key already exists.

    Runs in a savepoint so a duplicate leaves the surrounding transaction usable; returns None for
    a duplicate (the database decided: it was already recorded).
    """
    session.flush()  # what is pending goes out before the savepoint, which a duplicate rolls back
    try:
        with session.begin_nested():
            if lot is not None:
                session.add(lot)
                session.flush()
                entry.lot_id = lot.id
            session.add(entry)
    except IntegrityError:
        if lot is not None and lot in session:
            session.expunge(lot)  # its row went with the savepoint
        logger.debug(
            "ledger entry already recorded",
            extra={"shop": entry.shop_id, "reason": entry.reason, "source_type": entry.source_type},
        )
        return None
    return entry


def insert_entries(session: Session) -> Any:
    """Return the INSERT of ledger entries (executemany) that skips an entry whose natural key
    exists and returns the ids of those written: fewer ids than rows means a key existed."""
    table = LedgerEntry.__table__
    return (
        dialect_insert(session, table)
        .on_conflict_do_nothing(index_elements=["shop_id", "source_type", "source_id", "reason"])
        .returning(table.c.id)
    )


def lot_values(lot: NewLot, *, shop_id: int, customer_id: int, order_id: int | None,
               now: datetime) -> dict[str, Any]:
    """Return the column values of a planned lot (`app.loyalty.decide.NewLot`)."""
    return dict(
        shop_id=shop_id, customer_id=customer_id, order_id=order_id, points=lot.points, remaining=lot.points,
        state=lot.state, earned_at=lot.earned_at, available_at=lot.available_at, expires_at=lot.expires_at,
        rule=lot.rule, created_at=now, updated_at=now,
    )


def entry_values(entry: NewEntry, *, shop_id: int, customer_id: int, order_id: int | None,
                 delivery_id: int | None, lot_id: int | None, now: datetime) -> dict[str, Any]:
    """Return the column values of a planned entry (`app.loyalty.decide.NewEntry`); `lot_id` is
    the id of the plan's new lot when the entry is on it."""
    return dict(
        shop_id=shop_id, customer_id=customer_id, order_id=order_id, delivery_id=delivery_id,
        lot_id=lot_id if entry.on_new_lot else entry.lot_id, delta=entry.delta,
        pending_delta=entry.pending_delta, available_delta=entry.available_delta, shortfall=entry.shortfall,
        reason=entry.reason, source_type=entry.source_type, source_id=entry.source_id, detail=entry.detail,
        created_by=None, created_at=now,
    )


def forget_lots(session: Session, lot_ids: set[int]) -> None:
    """Expire the session's copies of lots a Core UPDATE changed, so a later read sees the row."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, PointLot) and obj.id in lot_ids:
            session.expire(obj)


def new_lot(
    *,
    shop_id: int,
    customer_id: int,
    points: int,
    earned_at: datetime,
    available_at: datetime,
    rule: dict[str, Any],
    order_id: int | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> PointLot:
    """Build (not insert) a lot that is pending until `available_at`."""
    now = now or utcnow()
    state = LotState.AVAILABLE if available_at <= now else LotState.PENDING
    return PointLot(
        shop_id=shop_id,
        customer_id=customer_id,
        order_id=order_id,
        points=points,
        remaining=points,
        state=state,
        earned_at=earned_at,
        available_at=available_at,
        expires_at=expires_at,
        rule=rule,
    )


def credit(session: Session, entry: LedgerEntry, lot: PointLot) -> LedgerEntry | None:
    """Record new points: `lot` holds them, `entry` explains them (None when already recorded)."""
    entry.delta = lot.points
    if lot.state == LotState.PENDING:
        entry.pending_delta, entry.available_delta = lot.points, 0
    else:
        entry.pending_delta, entry.available_delta = 0, lot.points
    return append(session, entry, lot=lot)


def take_back(session: Session, customer_id: int, points: int, *, own_lot_id: int | None) -> Taken:
    """Remove up to `points` from the customer's lots without going below zero.

    Order: the lot the points came from, then other pending lots, then available lots, oldest
    first. What cannot be taken (already spent) is the shortfall. Mutates lots; the caller writes
    the entry in the same transaction.
    """
    lots = session.scalars(
        select(PointLot)
        .where(PointLot.customer_id == customer_id)
        .where(PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]))
        .where(PointLot.remaining > 0)
        .order_by(PointLot.earned_at, PointLot.id)
    ).all()
    ordered = sorted(
        lots,
        key=lambda lot: (lot.id != own_lot_id, lot.state != LotState.PENDING, lot.earned_at, lot.id),
    )
    left = points
    pending = available = 0
    moved: list[tuple[int, int]] = []
    for lot in ordered:
        if left <= 0:
            break
        take = min(lot.remaining, left)
        lot.remaining -= take
        left -= take
        if lot.state == LotState.PENDING:
            pending += take
        else:
            available += take
        if lot.remaining == 0:
            lot.state = LotState.REVERSED
        moved.append((lot.id, take))
    return Taken(pending=pending, available=available, shortfall=left, lots=tuple(moved))


def debit(session: Session, entry: LedgerEntry, points: int, *, own_lot_id: int | None) -> LedgerEntry | None:
    """Take back `points` (a reversal) and record `entry`; None when the entry already exists.

    The lot changes and the entry share one savepoint, so a duplicate changes nothing.
    """
    def change() -> None:
        taken = take_back(session, entry.customer_id, points, own_lot_id=own_lot_id)
        entry.delta = -(taken.pending + taken.available)
        entry.pending_delta = -taken.pending
        entry.available_delta = -taken.available
        entry.shortfall = taken.shortfall
        entry.lot_id = own_lot_id
        entry.detail = {**(entry.detail or {}), "requested": points, "lots": [list(m) for m in taken.lots]}

    return _once(session, change, entry)


def restore(session: Session, entry: LedgerEntry, points: int, *, lot: PointLot) -> LedgerEntry | None:
    """Give back `points` that a reversal took (an order restored or un-cancelled)."""
    def change() -> None:
        lot.remaining += points
        if lot.state == LotState.REVERSED:
            lot.state = LotState.AVAILABLE if lot.available_at <= utcnow() else LotState.PENDING
        entry.delta = points
        entry.lot_id = lot.id
        if lot.state == LotState.PENDING:
            entry.pending_delta, entry.available_delta = points, 0
        else:
            entry.pending_delta, entry.available_delta = 0, points

    return _once(session, change, entry)


def mature_lot(session: Session, lot_id: int, *, now: datetime | None = None) -> LedgerEntry | None:
    """Make a pending lot available once its return window has passed (None when not due/done)."""
    now = now or utcnow()
    lot = session.get(PointLot, lot_id)
    if lot is None:
        return None
    lock_customer(session, lot.customer_id)
    session.refresh(lot)
    if lot.state != LotState.PENDING or lot.available_at > now:
        return None
    entry = LedgerEntry(
        shop_id=lot.shop_id,
        customer_id=lot.customer_id,
        lot_id=lot.id,
        order_id=lot.order_id,
        delta=0,
        pending_delta=-lot.remaining,
        available_delta=lot.remaining,
        reason="available",
        source_type="lot",
        source_id=str(lot.id),
        detail={"points": lot.remaining},
    )
    def change() -> None:
        lot.state = LotState.AVAILABLE

    return _once(session, change, entry)


def due_lot_ids(session: Session, now: datetime, limit: int = 1000) -> list[int]:
    """Return ids of pending lots whose return window has passed (indexed by state, available_at)."""
    return list(
        session.scalars(
            select(PointLot.id)
            .where(PointLot.state == LotState.PENDING, PointLot.available_at <= now)
            .order_by(PointLot.available_at, PointLot.id)
            .limit(limit)
        )
    )


def expire_lot(session: Session, lot_id: int, *, now: datetime | None = None) -> LedgerEntry | None:
    """Expire what is left of a lot whose expiry date has passed (None when not due or done)."""
    now = now or utcnow()
    lot = session.get(PointLot, lot_id)
    if lot is None:
        return None
    lock_customer(session, lot.customer_id)
    session.refresh(lot)
    if lot.expires_at is None or lot.expires_at > now or lot.remaining <= 0:
        return None
    if lot.state not in (LotState.PENDING, LotState.AVAILABLE):
        return None
    points = lot.remaining
    entry = LedgerEntry(
        shop_id=lot.shop_id,
        customer_id=lot.customer_id,
        lot_id=lot.id,
        order_id=lot.order_id,
        delta=-points,
        pending_delta=-points if lot.state == LotState.PENDING else 0,
        available_delta=-points if lot.state == LotState.AVAILABLE else 0,
        reason="expired",
        source_type="lot",
        source_id=str(lot.id),
        detail={"points": points, "expires_at": lot.expires_at.isoformat()},
    )
    def change() -> None:
        lot.remaining = 0
        lot.state = LotState.EXPIRED

    return _once(session, change, entry)


def expired_lot_ids(session: Session, now: datetime, limit: int = 1000) -> list[int]:
    """Return ids of lots past their expiry that still hold points, oldest expiry first."""
    return list(
        session.scalars(
            select(PointLot.id)
            .where(
                PointLot.expires_at <= now,
                PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]),
                PointLot.remaining > 0,
            )
            .order_by(PointLot.expires_at, PointLot.id)
            .limit(limit)
        )
    )


class AdjustmentError(ValueError):
    """A manual adjustment is not possible (e.g. taking more than is available)."""


# The most points one manual adjustment may add or remove. Support corrects mistakes and grants
# goodwill (tens to thousands of points); a million is far above that and far below what the
# BIGINT columns and the sums of balances can hold, so a typo cannot break a customer's balance.
MAX_ADJUSTMENT = 1_000_000


def adjust(session: Session, *, shop_id: int, customer_id: int, points: int, note: str, actor: str,
           key: str, now: datetime | None = None) -> LedgerEntry | None:
    """Add or remove points by hand, with the reason support gave (once per `key`).

    Added points are available at once; removed points come from available lots, oldest first,
    and never more than is available.

    Raises:
        AdjustmentError: zero points, more than MAX_ADJUSTMENT either way, no reason, or more
            points removed than available.
    """
    if points == 0:
        raise AdjustmentError("an adjustment needs a non-zero number of points")
    if abs(points) > MAX_ADJUSTMENT:
        raise AdjustmentError(
            f"an adjustment is at most {MAX_ADJUSTMENT:,} points either way, got {points:+,}".replace(",", " ")
        )
    if not note.strip():
        raise AdjustmentError("an adjustment needs a reason")
    now = now or utcnow()
    lock_customer(session, customer_id)
    entry = LedgerEntry(
        shop_id=shop_id, customer_id=customer_id, delta=0, reason="adjust", source_type="adjustment",
        source_id=key, created_by=actor, detail={"note": note.strip()},
    )
    if points > 0:
        lot = new_lot(shop_id=shop_id, customer_id=customer_id, points=points, earned_at=now, available_at=now,
                      now=now, rule={"rule": "adjust", "by": actor, "note": note.strip()})
        return credit(session, entry, lot)
    if find_entry(session, shop_id, "adjustment", key, "adjust") is not None:
        return None
    try:
        taken = spend_oldest_first(session, customer_id, -points)
    except InsufficientPointsError:
        available = balance(session, customer_id).available
        raise AdjustmentError(f"cannot remove {-points} points: only {available} available") from None
    entry.delta, entry.available_delta = points, points
    entry.detail = {**entry.detail, "lots": [list(t) for t in taken]}
    return append(session, entry)
