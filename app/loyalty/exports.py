"""CSV exports of a shop's data for its owner (no Flask): customers with balances, the ledger of a period.

Rows are streamed in primary-key order, a batch at a time, each batch in its own short read, so an
export of a million customers holds one batch in memory and never blocks the workers. Every text cell goes through
`app.audit.formula_safe`, so a name such as `=HYPERLINK(...)` is not run by a spreadsheet.
Times are ISO 8601: UTC, and the shop's local time beside it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.audit import formula_safe
from app.loyalty.explain import describe
from app.models import Customer, LedgerEntry, LotState, Order, PointLot, Shop

BATCH = 2000
CUSTOMER_COLUMNS = (
    "customer_id", "platform_id", "email", "first_name", "last_name", "tier", "available_points",
    "pending_points", "banned", "accepts_marketing", "unsubscribed", "referral_code", "last_order_at_utc",
    "created_at_utc",
)
LEDGER_COLUMNS = (
    "entry_id", "time_utc", "time_local", "customer_id", "email", "reason", "points", "pending_change",
    "available_change", "not_taken_back", "order", "source", "by", "explanation",
)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)  # a number, never a formula ("-500" stays a number)
    return formula_safe(str(value))


def _lines(header: tuple[str, ...], rows: Iterator[list[Any]]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    yield out.getvalue()
    for row in rows:
        out.seek(0)
        out.truncate()
        writer.writerow([_text(cell) for cell in row])
        yield out.getvalue()


def _batches(session: Session, query: Any, id_column: Any) -> Iterator[Any]:
    """Yield the rows (plain rows, not ORM objects: they outlive their transaction) of `query` in `id_column` order, BATCH at a time, each batch read in its own
    short transaction (on SQLite a transaction holds the database's write lock; workers must not
    wait for an export)."""
    last = 0
    while True:
        rows = session.execute(query.where(id_column > last).order_by(id_column).limit(BATCH)).all()
        session.rollback()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def customers_csv(session: Session, shop: Shop) -> Iterator[str]:
    """Yield the shop's live customers (merged guest records left out) with their balances, as CSV lines."""
    query = select(*Customer.__table__.c).where(Customer.shop_id == shop.id, Customer.merged_into_id.is_(None))

    def rows() -> Iterator[list[Any]]:
        for batch in _batches(session, query, Customer.id):
            ids = [customer.id for customer in batch]
            balances = {
                customer_id: (int(available), int(pending))
                for customer_id, available, pending in session.execute(
                    select(
                        PointLot.customer_id,
                        func.sum(case((PointLot.state == LotState.AVAILABLE, PointLot.remaining), else_=0)),
                        func.sum(case((PointLot.state == LotState.PENDING, PointLot.remaining), else_=0)),
                    )
                    .where(PointLot.customer_id.in_(ids), PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]))
                    .group_by(PointLot.customer_id)
                ).all()
            }
            session.rollback()
            for customer in batch:
                available, pending = balances.get(customer.id, (0, 0))
                yield [customer.id, customer.platform_id, customer.email, customer.first_name, customer.last_name,
                       customer.tier, available, pending, customer.banned_at is not None,
                       customer.accepts_marketing, customer.unsubscribed_at is not None, customer.referral_code,
                       customer.last_order_at, customer.created_at]

    return _lines(CUSTOMER_COLUMNS, rows())


def ledger_csv(session: Session, shop: Shop, since: datetime, until: datetime) -> Iterator[str]:
    """Yield the shop's ledger entries recorded in [since, until), oldest first, as CSV lines."""
    zone = ZoneInfo(shop.timezone)
    query = (
        select(*LedgerEntry.__table__.c, Customer.email.label("email"), Order.number.label("number"))
        .join(Customer, Customer.id == LedgerEntry.customer_id)
        .outerjoin(Order, Order.id == LedgerEntry.order_id)
        .where(LedgerEntry.shop_id == shop.id, LedgerEntry.created_at >= since, LedgerEntry.created_at < until)
    )

    def rows() -> Iterator[list[Any]]:
        for batch in _batches(session, query, LedgerEntry.id):
            for entry in batch:
                email, number = entry.email, entry.number
                yield [entry.id, entry.created_at, entry.created_at.astimezone(zone), entry.customer_id, email,
                       entry.reason, entry.delta, entry.pending_delta, entry.available_delta, entry.shortfall,
                       number or (entry.detail or {}).get("order"), f"{entry.source_type}:{entry.source_id}",
                       entry.created_by, describe(entry, number)]

    return _lines(LEDGER_COLUMNS, rows())
