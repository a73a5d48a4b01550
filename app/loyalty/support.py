"""What support staff look at (reads only, no Flask): the customer list with its filters and
sorting, a customer's orders, spend and progress to the next tier, the running balance of the
ledger, and their ban history (from the staff audit log)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    CodeStatus,
    Customer,
    IssuedCode,
    LedgerEntry,
    LotState,
    Order,
    PointLot,
    Shop,
    StaffAuditEntry,
)
from app.program import Program

SORTS = ("email", "name", "available", "last_order", "created")
BAN_ACTIONS = ("customer.ban", "customer.unban")


@dataclass(frozen=True)
class CustomerFilters:
    """The customer list's filters; None means "any"."""

    shop_id: int | None = None
    tier: str | None = None
    banned: bool | None = None
    has_balance: bool | None = None
    failed_codes: bool | None = None


@dataclass(frozen=True)
class CustomerRow:
    customer: Customer
    shop: Shop
    available: int
    pending: int
    failed_codes: int


def _points_by_customer(state: LotState) -> Any:
    """Return a subquery of each customer's points in lots of `state` (customer_id, points)."""
    return (
        select(PointLot.customer_id, func.sum(PointLot.remaining).label("points"))
        .where(PointLot.state == state).group_by(PointLot.customer_id).subquery()
    )


def list_customers(session: Session, filters: CustomerFilters, *, shop_ids: frozenset[int] | None,
                   sort: str = "email", descending: bool = False, offset: int = 0,
                   limit: int = 50) -> tuple[list[CustomerRow], bool]:
    """Return one page of live customers of `shop_ids` (None: every shop) matching `filters`,
    sorted by `sort` (one of SORTS), and whether more follow."""
    available, pending = _points_by_customer(LotState.AVAILABLE), _points_by_customer(LotState.PENDING)
    failed = (
        select(IssuedCode.customer_id, func.count().label("n"))
        .where(IssuedCode.status == CodeStatus.FAILED).group_by(IssuedCode.customer_id).subquery()
    )
    available_points = func.coalesce(available.c.points, 0)
    query = (
        select(Customer, Shop, available_points, func.coalesce(pending.c.points, 0), func.coalesce(failed.c.n, 0))
        .join(Shop, Shop.id == Customer.shop_id)
        .outerjoin(available, available.c.customer_id == Customer.id)
        .outerjoin(pending, pending.c.customer_id == Customer.id)
        .outerjoin(failed, failed.c.customer_id == Customer.id)
        .where(Customer.merged_into_id.is_(None))
    )
    if shop_ids is not None:
        query = query.where(Customer.shop_id.in_(shop_ids))
    if filters.shop_id is not None:
        query = query.where(Customer.shop_id == filters.shop_id)
    if filters.tier is not None:
        query = query.where(Customer.tier == filters.tier) if filters.tier else query.where(Customer.tier.is_(None))
    if filters.banned is not None:
        query = query.where(Customer.banned_at.is_not(None) if filters.banned else Customer.banned_at.is_(None))
    if filters.has_balance is not None:
        query = query.where(available_points > 0 if filters.has_balance else available_points == 0)
    if filters.failed_codes is not None:
        has_failed = func.coalesce(failed.c.n, 0) > 0
        query = query.where(has_failed if filters.failed_codes else ~has_failed)
    name = func.lower(func.coalesce(Customer.last_name, "") + " " + func.coalesce(Customer.first_name, ""))
    keys = {
        "email": func.lower(func.coalesce(Customer.email, "")),
        "name": name,
        "available": available_points,
        "last_order": func.coalesce(Customer.last_order_at, Customer.created_at),
        "created": Customer.created_at,
    }
    key = keys.get(sort, keys["email"])
    query = query.order_by(key.desc() if descending else key.asc(), Customer.id.desc() if descending else Customer.id)
    rows = session.execute(query.offset(offset).limit(limit + 1)).all()
    page = [CustomerRow(c, s, int(a), int(p), int(f)) for c, s, a, p, f in rows[:limit]]
    return page, len(rows) > limit


def tiers_in_use(session: Session, shop_ids: frozenset[int] | None) -> list[str]:
    """Return the tier names customers of these shops hold, sorted."""
    query = select(Customer.tier).where(Customer.tier.is_not(None)).distinct()
    if shop_ids is not None:
        query = query.where(Customer.shop_id.in_(shop_ids))
    return sorted(t for t in session.scalars(query) if t)


def lifetime_spend(session: Session, program: Program, customer: Customer, now: datetime) -> Decimal:
    """Return the customer's spend over all time (paid, kept orders net of refunds; shop currency)."""
    from app.loyalty.tiers import metric_value

    lifetime = program.model_copy(update={"tiers": program.tiers.model_copy(update={"metric": "spend",
                                                                                    "window": "lifetime"})})
    return metric_value(session, lifetime, customer, now)


def tier_progress(session: Session, program: Program, customer: Customer, now: datetime) -> dict[str, Any]:
    """Return where the customer stands on the tier ladder: the value the program measures, the
    next tier and what is missing to reach it (None when at the top), and a percentage."""
    from app.loyalty.tiers import metric_value

    value = metric_value(session, program, customer, now)
    levels = list(program.tiers.levels)
    above = [t for t in levels if t.threshold > value]
    reached = [t for t in levels if t.threshold <= value]
    nxt = above[0] if above else None
    floor = reached[-1].threshold if reached else Decimal("0")
    percent = None
    if nxt is not None and nxt.threshold > floor:
        percent = int((value - floor) * 100 / (nxt.threshold - floor))
    return {
        "metric": program.tiers.metric,
        "window": program.tiers.window,
        "value": value,
        "next_tier": nxt.name if nxt else None,
        "next_threshold": nxt.threshold if nxt else None,
        "missing": (nxt.threshold - value) if nxt else None,
        "percent": 100 if nxt is None else max(0, min(100, percent or 0)),
    }


def orders_of(session: Session, customer: Customer) -> list[dict[str, Any]]:
    """Return the customer's orders, newest first, with the points each moved (net)."""
    points = dict(session.execute(
        select(LedgerEntry.order_id, func.sum(LedgerEntry.delta))
        .where(LedgerEntry.customer_id == customer.id, LedgerEntry.order_id.is_not(None))
        .group_by(LedgerEntry.order_id)
    ).all())
    rows = session.scalars(
        select(Order).where(Order.customer_id == customer.id)
        .order_by(func.coalesce(Order.platform_created_at, Order.created_at).desc(), Order.id.desc())
    ).all()
    return [
        {
            "id": o.id, "number": o.number or o.platform_id, "platform_id": o.platform_id,
            "created_at": o.platform_created_at or o.created_at, "paid_at": o.paid_at,
            "total": o.total, "merchandise": o.merchandise, "currency": o.currency,
            "status": o.status or o.platform_status or "", "discount_codes": list(o.discount_codes or []),
            "points": int(points.get(o.id, 0) or 0), "test": o.test,
        }
        for o in rows
    ]


def with_running_balance(ledger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the ledger lines (oldest first) each with the pending and available points after it."""
    pending = available = 0
    lines = []
    for line in ledger:
        pending += line["pending_delta"]
        available += line["available_delta"]
        lines.append({**line, "pending_after": pending, "available_after": available})
    return lines


def ban_history(session: Session, customer: Customer) -> list[StaffAuditEntry]:
    """Return every ban and lifting of the customer, oldest first: who, when, why."""
    return list(session.scalars(
        select(StaffAuditEntry)
        .where(StaffAuditEntry.shop_id == customer.shop_id, StaffAuditEntry.subject == f"customer {customer.id}",
               StaffAuditEntry.action.in_(BAN_ACTIONS))
        .order_by(StaffAuditEntry.id)
    ))




CUSTOMER_CSV_COLUMNS = ("customer_id", "platform_id", "email", "first_name", "last_name", "tier", "available",
                        "pending", "banned", "accepts_marketing", "last_order_at", "created_at")
LEDGER_CSV_COLUMNS = ("entry_id", "time", "customer_id", "email", "reason", "change", "pending_change",
                      "available_change", "order", "by", "why")


def customer_export_rows(session: Session, shop_id: int, zone: str) -> Any:
    """Yield one row per live customer of the shop with their balances (times in `zone`, ISO 8601)."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    available, pending = _points_by_customer(LotState.AVAILABLE), _points_by_customer(LotState.PENDING)
    query = (
        select(Customer, func.coalesce(available.c.points, 0), func.coalesce(pending.c.points, 0))
        .outerjoin(available, available.c.customer_id == Customer.id)
        .outerjoin(pending, pending.c.customer_id == Customer.id)
        .where(Customer.shop_id == shop_id, Customer.merged_into_id.is_(None))
        .order_by(Customer.id)
        .execution_options(yield_per=1000)
    )
    for c, points, waiting in session.execute(query):
        yield (c.id, c.platform_id, c.email, c.first_name, c.last_name, c.tier, int(points), int(waiting),
               "yes" if c.banned_at else "no",
               "" if c.accepts_marketing is None else ("yes" if c.accepts_marketing else "no"),
               c.last_order_at.astimezone(tz).isoformat() if c.last_order_at else "",
               c.created_at.astimezone(tz).isoformat())


def ledger_export_rows(session: Session, shop_id: int, start: datetime, end: datetime, zone: str,
                       language: str | None = None) -> Any:
    """Yield the shop's ledger entries from `start` (inclusive) to `end` (exclusive), oldest first."""
    from zoneinfo import ZoneInfo

    from app.loyalty.explain import describe

    tz = ZoneInfo(zone)
    query = (
        select(LedgerEntry, Customer.email, Order.number)
        .outerjoin(Customer, Customer.id == LedgerEntry.customer_id)
        .outerjoin(Order, Order.id == LedgerEntry.order_id)
        .where(LedgerEntry.shop_id == shop_id, LedgerEntry.created_at >= start, LedgerEntry.created_at < end)
        .order_by(LedgerEntry.id)
        .execution_options(yield_per=1000)
    )
    for entry, email, number in session.execute(query):
        yield (entry.id, entry.created_at.astimezone(tz).isoformat(), entry.customer_id, email, entry.reason,
               entry.delta, entry.pending_delta, entry.available_delta, number or "", entry.created_by or "",
               describe(entry, number, language))
