"""What support staff look at (reads only, no Flask): a customer's orders, spend and progress to
the next tier, the running balance of the ledger, their ban history (from the staff audit log),
and the CSV exports. Finding customers (search and the list) is `app.loyalty.directory`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Customer, CustomerBalance, LedgerEntry, Order, StaffAuditEntry
from app.program import Program

BAN_ACTIONS = ("customer.ban", "customer.unban")


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
    query = (
        select(Customer, CustomerBalance.available, CustomerBalance.pending)
        .join(CustomerBalance, CustomerBalance.customer_id == Customer.id)
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
