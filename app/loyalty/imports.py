"""Importing balances from the loyalty app a merchant leaves (no Flask here).

`read_balances` turns a CSV export into rows (pure: no database), accepting the layouts of the
common exports; `import_balances` matches each row to a customer of the shop by e-mail and writes
one `import` ledger entry per customer. The ledger's natural key (shop, "import", customer id,
"import") makes a re-run add nothing: a customer imported once keeps that entry.

Layouts (`FORMATS`, chosen by `--format` or detected from the header):
- smile: `email`, `points` (Smile.io's import/export template);
- loyaltylion: `customer ID`, `email`, `points`, `enrolled` (LoyaltyLion's import sheet; the
  customer ID and `enrolled` columns are ignored);
- yith: no header, e-mail then points (YITH WooCommerce Points and Rewards' "email and points" export);
- generic: a header naming `email` (or e-mail, mail) and `points` (or balance, points_balance), and
  optionally `tier` and `referral_code` (German headers too: E-Mail, Punkte, Stufe).
Comma, semicolon (German spreadsheet programs) and tab separators are recognised.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.loyalty import ledger
from app.models import CodeStatus, Customer, IssuedCode, LedgerEntry, Shop, utcnow
from app.program import Program

# Header names each field may have (compared lower-cased, spaces and dashes as "_").
EMAIL_HEADERS = ("email", "e_mail", "mail", "customer_email", "email_address")
POINTS_HEADERS = ("points", "balance", "points_balance", "current_points", "points_approved", "punkte", "punktestand")
TIER_HEADERS = ("tier", "loyalty_tier", "vip_tier", "stufe")
REFERRAL_HEADERS = ("referral_code", "referral", "referral_coupon")
FORMATS = ("auto", "smile", "loyaltylion", "yith", "generic")
# One import may not give a customer more than this (the same bound as a manual adjustment).
MAX_POINTS = ledger.MAX_ADJUSTMENT

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class ImportFormatError(ValueError):
    """The file cannot be read as any supported layout (the message says why)."""


@dataclass(frozen=True)
class BalanceRow:
    """One readable row: a line number of the file, an e-mail and points (tier and code optional)."""

    line: int
    email: str
    points: int
    tier: str | None = None
    referral_code: str | None = None


@dataclass(frozen=True)
class RowProblem:
    """A row that was not imported, and why."""

    line: int
    email: str | None
    reason: str


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    imported: list[tuple[int, str, int]] = field(default_factory=list)  # (line, e-mail, points)
    already: list[tuple[int, str]] = field(default_factory=list)  # imported by an earlier run
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def points(self) -> int:
        """Return the points the imported rows added."""
        return sum(points for _, _, points in self.imported)


def _key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower().lstrip("\ufeff"))


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    for index, name in enumerate(header):
        if _key(name) in names:
            return index
    return None


def read_balances(text: str, fmt: str = "auto") -> tuple[list[BalanceRow], list[RowProblem]]:
    """Return the readable rows of a balances CSV and the problems of the others.

    Raises:
        ImportFormatError: an unknown format, an empty file, or no e-mail and points columns.
    """
    if fmt not in FORMATS:
        raise ImportFormatError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise ImportFormatError("the file is empty")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    lines = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    first = [cell.strip() for cell in lines[0]] if lines else []
    headerless = fmt == "yith" or (fmt == "auto" and len(first) >= 2 and _EMAIL.fullmatch(first[0] or ""))
    if headerless:
        email_col, points_col, tier_col, code_col, start = 0, 1, None, None, 0
    else:
        email_col, points_col = _column(first, EMAIL_HEADERS), _column(first, POINTS_HEADERS)
        tier_col, code_col, start = _column(first, TIER_HEADERS), _column(first, REFERRAL_HEADERS), 1
        if email_col is None or points_col is None:
            raise ImportFormatError(
                "no e-mail and points columns: the first row must name them (e.g. email,points), "
                "or the file has no header and starts with an e-mail and points")
    rows: list[BalanceRow] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    for number, cells in enumerate(lines[start:], start=start + 1):
        if not any(cell.strip() for cell in cells):
            continue
        cell = (lambda i: cells[i].strip() if i is not None and i < len(cells) else "")  # noqa: E731
        email, raw_points = cell(email_col).lower(), cell(points_col)
        if not _EMAIL.fullmatch(email):
            problems.append(RowProblem(number, email or None, "no valid e-mail"))
            continue
        if not re.fullmatch(r"-?\d+", raw_points):
            problems.append(RowProblem(number, email, f"points must be a whole number, got {raw_points!r}"))
            continue
        points = int(raw_points)
        if points < 0 or points > MAX_POINTS:
            problems.append(RowProblem(number, email, f"points must be 0 to {MAX_POINTS}, got {points}"))
            continue
        if email in seen:
            problems.append(RowProblem(number, email, f"the same e-mail as line {seen[email]}"))
            continue
        seen[email] = number
        rows.append(BalanceRow(number, email, points, cell(tier_col) or None, cell(code_col) or None))
    return rows, problems


def import_balances(session: Session, shop: Shop, program: Program, rows: list[BalanceRow], *, actor: str,
                    source: str, dry_run: bool, now: datetime | None = None) -> ImportReport:
    """Give each row's customer their points in one `import` entry (once per customer, ever).

    A row that matches no customer of the shop, names a tier the program does not have, or a
    referral code when the customer already has another, is reported and skipped. `source`
    (the file's name) is kept in the entry's detail. With `dry_run` nothing is written.
    """
    now = now or utcnow()
    report = ImportReport()
    tiers = {t.name.lower(): t.name for t in program.tiers.levels}
    for row in rows:
        customer = session.scalars(
            select(Customer).where(Customer.shop_id == shop.id, func.lower(Customer.email) == row.email,
                                   Customer.merged_into_id.is_(None))
            .order_by(Customer.platform_id.is_(None), Customer.id)
        ).first()
        if customer is None:
            report.problems.append(RowProblem(row.line, row.email, "no customer of the shop has this e-mail"))
            continue
        tier = None
        if row.tier is not None:
            tier = tiers.get(row.tier.lower())
            if tier is None:
                report.problems.append(RowProblem(row.line, row.email, f"the program has no tier {row.tier!r}"))
                continue
        if row.referral_code and customer.referral_code and customer.referral_code.lower() != row.referral_code.lower():
            report.problems.append(RowProblem(
                row.line, row.email, f"already has the referral code {customer.referral_code}"))
            continue
        if ledger.find_entry(session, shop.id, "import", str(customer.id), "import") is not None:
            report.already.append((row.line, row.email))
            continue
        report.imported.append((row.line, row.email, row.points))
        if dry_run:
            continue
        if tier is not None and customer.tier != tier:
            from app.loyalty.tiers import add_months

            customer.tier, customer.tier_since = tier, now
            customer.tier_period_ends_at = add_months(now, program.tiers.period_months)
        if row.referral_code and not customer.referral_code:
            _keep_referral_code(session, shop, customer, row.referral_code, now)
        entry = LedgerEntry(shop_id=shop.id, customer_id=customer.id, delta=0, reason="import", source_type="import",
                            source_id=str(customer.id), created_by=actor,
                            detail={"file": source, "line": row.line, "tier": tier})
        if row.points > 0:
            lot = ledger.new_lot(shop_id=shop.id, customer_id=customer.id, points=row.points, earned_at=now,
                                 available_at=now, now=now, rule={"rule": "import", "file": source})
            ledger.lock_customer(session, customer.id)
            ledger.credit(session, entry, lot)
        else:
            ledger.append(session, entry)
    return report


def _keep_referral_code(session: Session, shop: Shop, customer: Customer, code: str, now: datetime) -> None:
    """Adopt the member's referral code from the previous app: it exists in the shop already."""
    customer.referral_code = code
    session.add(IssuedCode(
        shop_id=shop.id, customer_id=customer.id, purpose="referral", source_key=str(customer.id), code=code,
        spec={"code": code, "imported": True}, status=CodeStatus.CREATED, attempts=0, created_at=now,
        updated_at=now,
    ))
