"""Outstanding points at a date: the liability a shop carries for unredeemed points (no Flask).

The figure a tax adviser needs for the provision for unredeemed points: how many points were
outstanding (pending and available) at an instant, what they are worth in money, how old they
were, and when they expire. Everything comes from the ledger entries recorded before that instant,
so a report for a past date does not change as later orders, redemptions or expiries arrive.

- **Totals**: the sums of the entries' `pending_delta` and `available_delta` (exact).
- **Per lot** (for ages and expiry): what each lot held at the instant, replayed from the entries:
  an entry on a lot (award, restore, gift-card credit, expiry) moves that lot by its delta; an entry
  that took points from lots (redemption, refund, cancellation, negative adjustment) lists them in
  `detail["lots"]` as `[lot id, points]`; a failed reward's `redeem_refund` gives back what its
  redemption took. Any difference between the lots and the totals is reported, never hidden
  (`unplaced`).
- **Value of a point**: the program in force at the instant states it (`redemption.point_value`),
  else it is the value per point of the cheapest amount reward (fixed amount or store credit, the
  fewest points); with neither, the money figures are None and the report says why.

Two statements differ by database (JSON arrays are read by `json_each` on SQLite and
`json_array_elements` on PostgreSQL); both live in `_lot_pairs`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, case, cast, func, literal, select, true, union_all
from sqlalchemy.orm import Session, aliased

from app.loyalty.decide import add_months
from app.models import LedgerEntry, PointLot, ProgramVersion, Shop
from app.program import Program, validate_document

# Age of points by when they were earned, in months before the report's instant.
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-3 months", 0, 3),
    ("3-6 months", 3, 6),
    ("6-12 months", 6, 12),
    ("over 12 months", 12, None),
)
MONTHS_AHEAD = 12
_CENTS = Decimal("0.01")


@dataclass(frozen=True)
class PointValue:
    """What one point is worth, and where that figure comes from."""

    amount: Decimal | None  # in the shop's currency; None when the program gives no way to value it
    currency: str
    source: str  # "program" | "reward" | "none"
    reward: str | None = None  # the reward it was derived from
    reward_points: int | None = None
    reward_value: Decimal | None = None
    program_version: int = 0

    def of(self, points: int) -> Decimal | None:
        """Return the money value of `points` (to the cent, half up), or None without a value."""
        if self.amount is None:
            return None
        return (self.amount * points).quantize(_CENTS, rounding=ROUND_HALF_UP)

    def explain(self) -> str:
        """Return one sentence saying how the value was found (English: the CLI, CSV and JSON;
        the admin words the same fields in its user's language)."""
        if self.source == "program":
            return f"1 point = {self.amount} {self.currency}, as the program (version {self.program_version}) states."
        if self.source == "reward":
            return (f"1 point = {self.amount} {self.currency}: the cheapest amount reward, "
                    f"{self.reward!r}, gives {self.reward_value} {self.currency} for {self.reward_points} points "
                    f"(program version {self.program_version}).")
        return ("No money value: the program in force (version "
                f"{self.program_version}) has no amount reward and states no point value "
                "(set redemption.point_value).")


@dataclass(frozen=True)
class Bucket:
    """Points in one group (an age or an expiry month) and their value.

    `label` is the group's English name, as the CSV, the JSON and `flask report liability` print
    it (stable); a page words the group from the other fields in its reader's language.
    """

    label: str
    points: int
    value: Decimal | None
    # an age: earned between `months_from` and `months_to` months before the instant (None: no limit)
    months_from: int | None = None
    months_to: int | None = None
    # an expiry: expires in the calendar month `month` ("YYYY-MM", shop time), or after it (`later`)
    month: str | None = None
    later: bool = False


@dataclass(frozen=True)
class Liability:
    """Outstanding points of one shop at an instant."""

    shop_id: int
    shop_domain: str
    at: datetime  # the instant (UTC); entries recorded before it count
    timezone: str
    currency: str
    pending: int
    available: int
    customers: int  # customers holding outstanding points
    point_value: PointValue
    ages: tuple[Bucket, ...]
    expiring: tuple[Bucket, ...]  # the next MONTHS_AHEAD calendar months (shop time), then later
    expiry_overdue: int  # past their expiry at the instant, not yet taken by the expiry sweep
    no_expiry: int
    unplaced: int  # outstanding points the ledger does not place in a lot (0 when consistent)

    @property
    def total(self) -> int:
        """Return pending plus available points."""
        return self.pending + self.available

    @property
    def value(self) -> Decimal | None:
        """Return the money value of all outstanding points."""
        return self.point_value.of(self.total)

    def local_at(self) -> datetime:
        """Return the instant in the shop's time zone."""
        return self.at.astimezone(ZoneInfo(self.timezone))


def end_of_day(shop: Shop, day: date) -> datetime:
    """Return the instant a report "at `day`" is taken: the end of that day in the shop's time zone (UTC)."""
    zone = ZoneInfo(shop.timezone)
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(timezone.utc)


def program_at(session: Session, shop: Shop, at: datetime) -> tuple[int, Program]:
    """Return the program version in force at `at` (version 0: the defaults)."""
    row = session.execute(
        select(ProgramVersion.version, ProgramVersion.document)
        .where(ProgramVersion.shop_id == shop.id, ProgramVersion.created_at < at)
        .order_by(ProgramVersion.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0, Program()
    return row.version, validate_document(row.document)


def point_value(program: Program, version: int, currency: str) -> PointValue:
    """Return what a point is worth under `program` (`Program.point_worth`: as stated, else from
    the cheapest amount reward), with where the figure comes from."""
    worth = program.point_worth()
    if worth is None:
        return PointValue(None, currency, "none", program_version=version)
    if worth.reward is None:
        return PointValue(worth.amount, currency, "program", program_version=version)
    return PointValue(worth.amount, currency, "reward", reward=worth.reward.name,
                      reward_points=worth.reward.points, reward_value=worth.reward.value, program_version=version)


def _lot_pairs(session: Session, entry: Any) -> tuple[Any, Any, Any]:
    """Return (table-valued function, lot id, points) reading `entry.detail["lots"]` pairs.

    The one place where the statement differs by database: SQLite's `json_each` takes a path,
    PostgreSQL's `json_array_elements` takes the array itself.
    """
    if session.get_bind().dialect.name == "sqlite":
        pairs = func.json_each(entry.detail, "$.lots").table_valued("value")
        return pairs, cast(func.json_extract(pairs.c.value, "$[0]"), Integer), \
            cast(func.json_extract(pairs.c.value, "$[1]"), Integer)
    pairs = func.json_array_elements(entry.detail.op("->")(literal("lots"))).table_valued("value")
    return pairs, cast(pairs.c.value.op("->>")(literal(0)), Integer), cast(pairs.c.value.op("->>")(literal(1)), Integer)


def _has_lots(session: Session, entry: Any) -> Any:
    """SQL: the entry lists the lots it took points from."""
    if session.get_bind().dialect.name == "sqlite":
        return func.json_type(entry.detail, "$.lots").is_not(None)
    return entry.detail.op("->")(literal("lots")).is_not(None)


def _per_lot(session: Session, shop_id: int, at: datetime) -> Any:
    """Subquery (lot_id, points): what each lot held at `at`, replayed from the entries before it."""
    e = aliased(LedgerEntry)
    before = and_(e.shop_id == shop_id, e.created_at < at)
    own = select(e.lot_id.label("lot_id"), e.delta.label("points")).where(
        before, e.lot_id.is_not(None), ~_has_lots(session, e))
    pairs, lot_id, points = _lot_pairs(session, e)
    taken = select(lot_id.label("lot_id"), (-points).label("points")).select_from(e).join(pairs, true()).where(before)
    spent = aliased(LedgerEntry)
    back_pairs, back_lot, back_points = _lot_pairs(session, spent)
    given_back = (
        select(back_lot.label("lot_id"), back_points.label("points"))
        .select_from(e)
        .join(spent, and_(spent.shop_id == e.shop_id, spent.source_type == "redemption",
                          spent.source_id == e.source_id, spent.reason == "redeem"))
        .join(back_pairs, true())
        .where(before, e.reason == "redeem_refund")
    )
    moves = union_all(own, taken, given_back).subquery()
    return (
        select(moves.c.lot_id, func.sum(moves.c.points).label("points"))
        .group_by(moves.c.lot_id)
        .having(func.sum(moves.c.points) != 0)
        .subquery()
    )


def _month_starts(shop: Shop, at: datetime, months: int) -> list[datetime]:
    """Return the starts (UTC) of the calendar months (shop time) after the one holding `at`, `months` + 1 of them."""
    local = at.astimezone(ZoneInfo(shop.timezone))
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return [datetime.combine(add_months(first, n).date(), time(0), tzinfo=ZoneInfo(shop.timezone)).astimezone(timezone.utc)
            for n in range(1, months + 2)]


def outstanding_points(session: Session, shop: Shop, at: datetime, *, months_ahead: int = MONTHS_AHEAD) -> Liability:
    """Return the shop's outstanding points at the instant `at` (timezone-aware), from the ledger.

    Raises:
        ValueError: `at` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("the report's instant must be timezone-aware")
    at = at.astimezone(timezone.utc)
    pending, available = session.execute(
        select(func.coalesce(func.sum(LedgerEntry.pending_delta), 0), func.coalesce(func.sum(LedgerEntry.available_delta), 0))
        .where(LedgerEntry.shop_id == shop.id, LedgerEntry.created_at < at)
    ).one()
    version, program = program_at(session, shop, at)
    value = point_value(program, version, shop.currency)

    per_lot = _per_lot(session, shop.id, at)
    age_edges = [add_months(at, -months) for _, months, _ in AGE_BUCKETS[1:]]  # 3, 6, 12 months back
    age = case(*((PointLot.earned_at > edge, i) for i, edge in enumerate(age_edges)), else_=len(age_edges))
    month_starts = _month_starts(shop, at, months_ahead)
    expiry = case(
        (PointLot.expires_at.is_(None), -2),
        (PointLot.expires_at <= at, -1),
        *((PointLot.expires_at < start, i) for i, start in enumerate(month_starts)),
        else_=len(month_starts),
    )
    lots = (
        select(age.label("age"), expiry.label("expiry"), per_lot.c.points, PointLot.customer_id)
        .select_from(per_lot)
        .join(PointLot, PointLot.id == per_lot.c.lot_id)
        .subquery()
    )
    rows = session.execute(
        select(lots.c.age, lots.c.expiry, func.sum(lots.c.points)).group_by(lots.c.age, lots.c.expiry)
    ).all()
    customers = int(session.scalar(
        select(func.count(func.distinct(lots.c.customer_id))).where(lots.c.points > 0)
    ) or 0)
    by_age = [0] * len(AGE_BUCKETS)
    by_month = [0] * (len(month_starts) + 1)
    overdue = no_expiry = placed = 0
    for age_index, expiry_index, points in rows:
        points, age_index, expiry_index = int(points), int(age_index), int(expiry_index)
        placed += points
        by_age[age_index] += points
        if expiry_index == -2:
            no_expiry += points
        elif expiry_index == -1:
            overdue += points
        else:
            by_month[expiry_index] += points
    zone = ZoneInfo(shop.timezone)
    month_labels = [(start - timedelta(days=1)).astimezone(zone).strftime("%Y-%m") for start in month_starts]
    expiring = [Bucket(label, by_month[i], value.of(by_month[i]), month=label) for i, label in enumerate(month_labels)]
    expiring.append(Bucket(f"after {month_labels[-1]}", by_month[-1], value.of(by_month[-1]),
                           month=month_labels[-1], later=True))
    total = int(pending) + int(available)
    return Liability(
        shop_id=shop.id, shop_domain=shop.domain, at=at, timezone=shop.timezone, currency=shop.currency,
        pending=int(pending), available=int(available), customers=customers, point_value=value,
        ages=tuple(Bucket(label, by_age[i], value.of(by_age[i]), months_from=start, months_to=end)
                   for i, (label, start, end) in enumerate(AGE_BUCKETS)),
        expiring=tuple(expiring),
        expiry_overdue=overdue, no_expiry=no_expiry, unplaced=total - placed,
    )


def _money(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def liability_rows(report: Liability) -> list[list[str]]:
    """Return the report as rows (section, item, points, value, currency) for CSV and the CLI."""
    currency = report.currency
    rows = [
        ["summary", "shop", report.shop_domain, "", ""],
        ["summary", "at (UTC)", report.at.isoformat(), "", ""],
        ["summary", f"at ({report.timezone})", report.local_at().isoformat(), "", ""],
        ["summary", "point value", _money(report.point_value.amount), "", currency],
        ["summary", "point value source", report.point_value.explain(), "", ""],
        ["summary", "customers with points", str(report.customers), "", ""],
        ["outstanding", "pending", str(report.pending), _money(report.point_value.of(report.pending)), currency],
        ["outstanding", "available", str(report.available), _money(report.point_value.of(report.available)), currency],
        ["outstanding", "total", str(report.total), _money(report.value), currency],
    ]
    rows += [["age", b.label, str(b.points), _money(b.value), currency] for b in report.ages]
    rows.append(["expiry", "overdue (expiry sweep pending)", str(report.expiry_overdue),
                 _money(report.point_value.of(report.expiry_overdue)), currency])
    rows += [["expiry", b.label, str(b.points), _money(b.value), currency] for b in report.expiring]
    rows.append(["expiry", "no expiry", str(report.no_expiry), _money(report.point_value.of(report.no_expiry)), currency])
    if report.unplaced:
        rows.append(["check", "points not placed in a lot", str(report.unplaced),
                     _money(report.point_value.of(report.unplaced)), currency])
    return rows


def _is_number(cell: str) -> bool:
    try:
        Decimal(cell)
    except ArithmeticError:
        return False
    return cell.strip() == cell and cell not in ("NaN", "Infinity", "-Infinity", "sNaN")


def liability_csv(report: Liability) -> str:
    """Return the report as CSV text (a header line, then `liability_rows`)."""
    from app.audit import safe_cell

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "item", "points", "value", "currency"])
    for row in liability_rows(report):
        writer.writerow([cell if _is_number(cell) else safe_cell(cell) for cell in row])
    return out.getvalue()


def liability_json(report: Liability) -> str:
    """Return the report as a JSON document (amounts as strings)."""
    def bucket(b: Bucket) -> dict[str, Any]:
        return {"label": b.label, "points": b.points, "value": _money(b.value) or None}

    return json.dumps({
        "shop": report.shop_domain, "at": report.at.isoformat(), "at_local": report.local_at().isoformat(),
        "timezone": report.timezone, "currency": report.currency,
        "point_value": _money(report.point_value.amount) or None, "point_value_source": report.point_value.explain(),
        "customers": report.customers, "pending": report.pending, "available": report.available, "total": report.total,
        "value": _money(report.value) or None,
        "ages": [bucket(b) for b in report.ages],
        "expiry_overdue": report.expiry_overdue, "expiring": [bucket(b) for b in report.expiring],
        "no_expiry": report.no_expiry, "unplaced": report.unplaced,
    }, indent=2, ensure_ascii=False)
