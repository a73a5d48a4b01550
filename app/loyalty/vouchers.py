"""Partner vouchers: pools of codes a partner gave the shop, offered as rewards (no Flask here).

A coffee roaster or a travel partner hands the shop a list of codes. The owner creates a pool,
uploads the list as CSV (`read_codes` parses it, `add_codes` appends it), and a `partner_voucher`
reward of the program names the pool. Each redemption claims exactly one unused code
(`claim_code`, one statement the database settles), in the transaction that takes the points; an
empty pool makes the reward unavailable (`sold_out`), never a redemption without a code. No shop
API is called: the code is the partner's, and it is mirrored as a `created` row of
`issued_codes` (purpose `partner_voucher`), so the customer's page, the storefront, the admin
and the data export show it like every other code.

The upload rule: a row that cannot be read (no code, a code with spaces or longer than 64
characters, an expiry that is not a date or already past, too many columns without a header)
refuses the whole file, every such row listed with its line number, and nothing is stored. A
code given twice in the file, or one the shop holds already (in any pool, or as a code it made),
is not an error: it is listed with its line and skipped, and the rest is appended.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from app.db import after_commit, dialect_insert, insert_row
from app.messaging.render import format_money
from app.models import (
    CodeStatus,
    Customer,
    IssuedCode,
    MessageStatus,
    Redemption,
    ReminderMessage,
    Shop,
    VoucherCode,
    VoucherPool,
    utcnow,
)
from app.program import Program, Reward

logger = logging.getLogger(__name__)

PURPOSE = "partner_voucher"  # issued_codes.purpose of a claimed partner code
CAMPAIGN = "voucher"  # reminder_messages.campaign of the e-mail carrying it
# A code is handed out only while it stays valid at least this long (so nobody pays points for
# a code that expires tonight); the count of codes left uses the same rule.
MIN_VALIDITY = timedelta(days=1)
MAX_CODE_LENGTH = 64
MAX_ROWS = 200_000  # per upload
INSERT_CHUNK = 5_000

CODE_HEADERS = frozenset({
    "code", "codes", "voucher", "vouchers", "voucher code", "voucher_code", "vouchercode", "coupon", "coupon code",
    "coupon_code", "couponcode", "promo code", "promo_code", "promocode", "gutschein", "gutscheine",
    "gutscheincode", "gutschein-code", "gutschein code", "rabattcode", "rabatt-code", "code_value",
})
EXPIRY_HEADERS = frozenset({
    "expires", "expires_at", "expires at", "expiry", "expiry date", "expiry_date", "expiration", "expiration date",
    "valid until", "valid_until", "valid to", "gültig bis", "gueltig bis", "gültig_bis", "ablaufdatum", "ablauf",
    "verfällt", "verfallsdatum",
})
_END_OF_DAY = time(23, 59, 59)
_GERMAN_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")


def _l(text: str) -> str:
    """Mark a text for the admin's catalog (babel-admin.cfg extracts `_l`); the admin translates
    it with its parameters when it shows it."""
    return text


# What an upload's problems say, by kind (English; the admin shows them in the staff's language).
TEXTS = {
    "empty_file": _l("the file is empty"),
    "no_code_column": _l("the first row names columns but none of them is the code (call it code, voucher, "
                         "coupon or Gutschein)"),
    "too_many_rows": _l("more than %(max)s rows: split the file"),
    "no_codes": _l("the file holds no codes"),
    "columns": _l("%(count)s columns; without a header row a line holds the code and optionally its expiry"),
    "no_code": _l("no code"),
    "too_long": _l("the code is longer than %(max)s characters"),
    "spaces": _l("%(code)s contains spaces or invisible characters"),
    "bad_date": _l("%(value)s is not a date (YYYY-MM-DD or DD.MM.YYYY)"),
    "expired": _l("%(code)s expired already (%(value)s)"),
    "repeated": _l("%(code)s repeats line %(first)s"),
    "ours": _l("%(code)s is already a code of this shop"),
    "in_pool": _l("%(code)s is already in the pool %(pool)s"),
}


class VoucherUploadError(ValueError):
    """The file cannot be read at all (empty, no code column, too many rows, no codes);
    `kind` and `params` name the text (TEXTS)."""

    def __init__(self, kind: str, **params: Any) -> None:
        super().__init__(TEXTS[kind] % params)
        self.kind, self.params = kind, params


@dataclass(frozen=True)
class CodeRow:
    """One readable row of an upload: its line in the file, the code and its expiry (or None)."""

    line: int
    code: str
    expires_at: datetime | None


@dataclass(frozen=True)
class RowProblem:
    """A row of an upload that was not stored, with its line number and why (`kind` of TEXTS,
    with its `params`)."""

    line: int
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """Return why, in English."""
        return TEXTS[self.kind] % self.params


@dataclass
class ReadCodes:
    """What `read_codes` found: readable rows, bad rows (which refuse the file) and codes the
    file gives twice (skipped)."""

    rows: list[CodeRow] = field(default_factory=list)
    errors: list[RowProblem] = field(default_factory=list)
    repeated: list[RowProblem] = field(default_factory=list)


@dataclass(frozen=True)
class UploadResult:
    """An upload: how many codes were added, and the rows skipped as duplicates (by line)."""

    added: int
    skipped: tuple[RowProblem, ...]


@dataclass(frozen=True)
class PoolView:
    """A pool as the admin shows it: codes left (claimable now), claimed, expired unused, and
    whether the rewards naming it see it as running low (`low_stock`: the highest threshold)."""

    id: int
    name: str
    partner: str | None
    total: int
    left: int
    claimed: int
    expired: int
    rewards: tuple[str, ...]
    low_stock: int | None

    @property
    def state(self) -> str:
        """Return "empty" (no code left), "low" (at or under a reward's threshold) or "ok"."""
        if self.left == 0:
            return "empty"
        if self.low_stock is not None and self.left <= self.low_stock:
            return "low"
        return "ok"


# --- reading an upload --------------------------------------------------------------------------


def _key(cell: str) -> str:
    return " ".join(cell.strip().lower().split())


def _expiry(raw: str, tz: ZoneInfo) -> datetime:
    """Return the moment a code given as valid until `raw` stops: a date means the last second
    of that day in the shop's time zone (so it is shown as that day); a date and time without
    zone is the shop's time.

    Raises:
        ValueError: not a date (YYYY-MM-DD, DD.MM.YYYY, or ISO 8601 with time).
    """
    text = raw.strip()
    german = _GERMAN_DATE.match(text)
    if german:
        day = date(int(german.group(3)), int(german.group(2)), int(german.group(1)))
        return datetime.combine(day, _END_OF_DAY, tzinfo=tz)
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), _END_OF_DAY, tzinfo=tz)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def read_codes(text: str, *, timezone: str, now: datetime) -> ReadCodes:
    """Parse an uploaded CSV of partner codes (pure). One code a row; comma, semicolon or tab.

    An optional first row names the columns: a code column (code, voucher, coupon, Gutschein …)
    and optionally an expiry column (expires, valid until, gültig bis …); other columns are
    ignored. Without it, the first column is the code and an optional second one its expiry.

    Raises:
        VoucherUploadError: an empty file, a header without a code column, or too many rows.
    """
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise VoucherUploadError("empty_file")
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","  # one column: nothing to sniff
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    tz = ZoneInfo(timezone)
    result = ReadCodes()
    first_line: dict[str, int] = {}
    code_col, expiry_col, headerless = 0, None, True
    for number, cells in enumerate(reader, start=1):
        if number == 1:
            keys = [_key(c) for c in cells]
            if any(k in CODE_HEADERS for k in keys) or any(k in EXPIRY_HEADERS for k in keys):
                code_col = next((i for i, k in enumerate(keys) if k in CODE_HEADERS), -1)
                if code_col < 0:
                    raise VoucherUploadError("no_code_column")
                expiry_col = next((i for i, k in enumerate(keys) if k in EXPIRY_HEADERS), None)
                headerless = False
                continue
            expiry_col = 1
        if number > MAX_ROWS + 1:
            raise VoucherUploadError("too_many_rows", max=MAX_ROWS)
        if not any(c.strip() for c in cells):
            continue
        if headerless and sum(1 for c in cells[2:] if c.strip()):
            result.errors.append(RowProblem(number, "columns", {"count": len(cells)}))
            continue
        code = cells[code_col].strip() if code_col < len(cells) else ""
        if not code:
            result.errors.append(RowProblem(number, "no_code"))
            continue
        if len(code) > MAX_CODE_LENGTH:
            result.errors.append(RowProblem(number, "too_long", {"max": MAX_CODE_LENGTH}))
            continue
        if any(ch.isspace() or not ch.isprintable() for ch in code):
            result.errors.append(RowProblem(number, "spaces", {"code": repr(code)}))
            continue
        raw_expiry = cells[expiry_col].strip() if expiry_col is not None and expiry_col < len(cells) else ""
        expires_at = None
        if raw_expiry:
            try:
                expires_at = _expiry(raw_expiry, tz)
            except ValueError:
                result.errors.append(RowProblem(number, "bad_date", {"value": repr(raw_expiry)}))
                continue
            if expires_at <= now:
                result.errors.append(RowProblem(number, "expired", {"code": code, "value": raw_expiry}))
                continue
        if code in first_line:
            result.repeated.append(RowProblem(number, "repeated", {"code": code, "first": first_line[code]}))
            continue
        first_line[code] = number
        result.rows.append(CodeRow(number, code, expires_at))
    if not result.rows and not result.errors and not result.repeated:
        raise VoucherUploadError("no_codes")
    return result


# --- pools and uploads ----------------------------------------------------------------------------


def create_pool(session: Session, shop: Shop, name: str, *, partner: str | None, created_by: str) -> VoucherPool | None:
    """Create the shop's pool called `name`; None when the shop has one of that name already
    (the unique key settles two owners creating it at once)."""
    now = utcnow()
    return insert_row(session, VoucherPool, {
        "shop_id": shop.id, "name": name, "partner": partner, "created_by": created_by, "created_at": now,
    }, conflict_on=["shop_id", "name"])


def pools_of(session: Session, shop_id: int) -> list[VoucherPool]:
    """Return the shop's pools by name."""
    return list(session.scalars(select(VoucherPool).where(VoucherPool.shop_id == shop_id).order_by(VoucherPool.name)))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def add_codes(session: Session, pool: VoucherPool, rows: Iterable[CodeRow], *, now: datetime | None = None) -> UploadResult:
    """Append the rows' codes to the pool in the caller's transaction; a code the shop holds
    already (in any pool, or as a code the program made) is skipped and reported by line.

    The database settles duplicates, also against an upload running at the same time: `INSERT …
    ON CONFLICT (shop_id, code) DO NOTHING RETURNING code`, in chunks of `INSERT_CHUNK` rows.
    """
    now = now or utcnow()
    rows = list(rows)
    table = VoucherCode.__table__
    ours: set[str] = set()
    for chunk in _chunks(rows, INSERT_CHUNK):
        ours.update(session.scalars(select(IssuedCode.code).where(
            IssuedCode.shop_id == pool.shop_id, IssuedCode.code.in_([r.code for r in chunk]))))
    fresh = [r for r in rows if r.code not in ours]
    inserted: set[str] = set()
    stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=["shop_id", "code"]).returning(
        table.c.code)
    for chunk in _chunks(fresh, INSERT_CHUNK):
        inserted.update(session.scalars(stmt, [
            {"shop_id": pool.shop_id, "pool_id": pool.id, "code": r.code, "expires_at": r.expires_at,
             "created_at": now} for r in chunk]))
    held = [r for r in fresh if r.code not in inserted]
    where: dict[str, str] = {}
    for chunk in _chunks([r.code for r in held], INSERT_CHUNK):
        where.update(session.execute(
            select(VoucherCode.code, VoucherPool.name).join(VoucherPool, VoucherPool.id == VoucherCode.pool_id)
            .where(VoucherCode.shop_id == pool.shop_id, VoucherCode.code.in_(chunk))).all())
    skipped = [RowProblem(r.line, "ours", {"code": r.code}) for r in rows if r.code in ours]
    skipped += [RowProblem(r.line, "in_pool", {"code": r.code, "pool": repr(where.get(r.code, "?"))}) for r in held]
    logger.info("voucher codes uploaded", extra={"shop": pool.shop_id, "pool": pool.id, "added": len(inserted),
                                                 "skipped": len(skipped)})
    return UploadResult(added=len(inserted), skipped=tuple(sorted(skipped, key=lambda p: p.line)))


# --- stock ------------------------------------------------------------------------------------------


def _claimable(now: datetime) -> Any:
    """SQL: an unclaimed code still valid for at least MIN_VALIDITY."""
    return and_(VoucherCode.redemption_id.is_(None),
                or_(VoucherCode.expires_at.is_(None), VoucherCode.expires_at > now + MIN_VALIDITY))


def voucher_rewards(program: Program) -> list[Reward]:
    """Return the program's partner_voucher rewards."""
    return [r for r in program.rewards if r.kind == "partner_voucher"]


def sold_out(session: Session, shop: Shop, program: Program, now: datetime | None = None) -> frozenset[str]:
    """Return the names of the pools the program's partner_voucher rewards name that have no code
    to hand out now (or that the shop does not have). No query when no reward names a pool."""
    named = {r.pool for r in voucher_rewards(program) if r.pool}
    if not named:
        return frozenset()
    now = now or utcnow()
    stocked = set(session.scalars(
        select(VoucherPool.name).where(
            VoucherPool.shop_id == shop.id, VoucherPool.name.in_(sorted(named)),
            exists().where(VoucherCode.pool_id == VoucherPool.id, _claimable(now)))))
    return frozenset(named - stocked)


def reward_in_stock(reward: Reward, empty: frozenset[str]) -> bool:
    """Return False for a partner_voucher reward whose pool has no code left (`sold_out`)."""
    return reward.kind != "partner_voucher" or reward.pool not in empty


def pool_views(session: Session, shop: Shop, program: Program, now: datetime | None = None) -> list[PoolView]:
    """Return the shop's pools with their counts and the rewards of `program` naming each."""
    now = now or utcnow()
    left = func.sum(case((_claimable(now), 1), else_=0))
    expired = func.sum(case((and_(VoucherCode.redemption_id.is_(None), VoucherCode.expires_at.is_not(None),
                                  VoucherCode.expires_at <= now + MIN_VALIDITY), 1), else_=0))
    counts = {
        pool_id: (int(total), int(l or 0), int(claimed), int(e or 0))
        for pool_id, total, l, claimed, e in session.execute(
            select(VoucherCode.pool_id, func.count(), left, func.count(VoucherCode.redemption_id), expired)
            .where(VoucherCode.shop_id == shop.id).group_by(VoucherCode.pool_id)).all()
    }
    views = []
    for pool in pools_of(session, shop.id):
        using = [r for r in voucher_rewards(program) if r.pool == pool.name]
        thresholds = [r.low_stock for r in using if r.active and r.low_stock is not None]
        total, n_left, claimed, n_expired = counts.get(pool.id, (0, 0, 0, 0))
        views.append(PoolView(id=pool.id, name=pool.name, partner=pool.partner, total=total, left=n_left,
                              claimed=claimed, expired=n_expired, rewards=tuple(r.name for r in using),
                              low_stock=max(thresholds) if thresholds else None))
    return views


def warnings(session: Session, shop: Shop, program: Program, now: datetime | None = None) -> list[PoolView]:
    """Return the pools an active reward offers that are empty or running low (for the admin)."""
    if not voucher_rewards(program):
        return []
    return [p for p in pool_views(session, shop, program, now) if p.rewards and p.low_stock is not None
            and p.state != "ok"]


# --- claiming ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """The code a redemption claimed."""

    id: int
    code: str
    expires_at: datetime | None


def claim_code(session: Session, shop: Shop, pool_name: str, redemption_id: int,
               now: datetime | None = None) -> Claimed | None:
    """Claim one unused code of the shop's pool `pool_name` for the redemption; None when none
    is left (or there is no such pool). Claimed codes stay claimed.

    One statement the database settles: `UPDATE voucher_codes SET redemption_id = … WHERE id =
    (SELECT id … WHERE unclaimed ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING …`. On
    PostgreSQL two transactions racing skip each other's locked row, so each gets a different code
    or none; SQLite leaves FOR UPDATE out, and every transaction there holds the database's write
    lock from its start (BEGIN IMMEDIATE, app.db), so claims run one after another.
    """
    now = now or utcnow()
    pool_id = session.scalar(select(VoucherPool.id).where(VoucherPool.shop_id == shop.id,
                                                           VoucherPool.name == pool_name))
    if pool_id is None:
        return None
    table = VoucherCode.__table__
    pick = (
        select(table.c.id)
        .where(table.c.pool_id == pool_id, table.c.redemption_id.is_(None),
               or_(table.c.expires_at.is_(None), table.c.expires_at > now + MIN_VALIDITY))
        .order_by(table.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = session.execute(
        update(table)
        .where(table.c.id == pick, table.c.redemption_id.is_(None))
        .values(redemption_id=redemption_id, claimed_at=now)
        .returning(table.c.id, table.c.code, table.c.expires_at)
    ).first()
    if row is None:
        logger.info("voucher pool empty", extra={"shop": shop.id, "pool": pool_id})
        return None
    return Claimed(id=row.id, code=row.code, expires_at=row.expires_at)


def record_claimed_code(session: Session, shop: Shop, customer: Customer, redemption: Redemption, reward: Reward,
                        claimed: Claimed, *, title: str, now: datetime) -> IssuedCode:
    """Mirror the claimed partner code as the redemption's code (`created`: it exists already,
    no job makes it), and schedule the e-mail that carries it (after the commit)."""
    spec = {
        "code": claimed.code, "title": title, "kind": PURPOSE,
        "value": str(reward.value) if reward.value is not None else "0", "currency": shop.currency,
        "starts_at": now.isoformat(), "ends_at": claimed.expires_at.isoformat() if claimed.expires_at else None,
        "minimum_amount": None, "customer_id": customer.platform_id, "customer_email": None,
        "product_ids": [], "variant_ids": [], "usage_limit": 1, "once_per_customer": True,
        "pool": reward.pool, "voucher_code_id": claimed.id,
    }
    code = insert_row(session, IssuedCode, {
        "shop_id": shop.id, "customer_id": customer.id, "purpose": PURPOSE, "source_key": str(redemption.id),
        "code": claimed.code, "spec": spec, "status": CodeStatus.CREATED, "attempts": 0,
        "expires_at": claimed.expires_at, "created_at": now, "updated_at": now,
    })
    assert code is not None
    _schedule_email(session, shop, customer, redemption, code, now)
    return code


def _schedule_email(session: Session, shop: Shop, customer: Customer, redemption: Redemption, code: IssuedCode,
                    now: datetime) -> None:
    """Write the (transactional) e-mail carrying the code, due now, and hand it to the send job
    once committed; the reminder sweep sends it should the hand-over fail."""
    stmt = dialect_insert(session, ReminderMessage.__table__).values(
        shop_id=shop.id, customer_id=customer.id, campaign=CAMPAIGN, subject_key=str(redemption.id), step=1,
        marketing=False, email=None, status=MessageStatus.SCHEDULED.value, due_at=now, attempts=0,
        code_id=code.id, context={"redemption_id": redemption.id, "reward": redemption.reward_name},
        created_at=now, updated_at=now,
    )
    message_id = session.execute(stmt.on_conflict_do_nothing(
        index_elements=["shop_id", "campaign", "subject_key", "step"]).returning(ReminderMessage.__table__.c.id)
    ).scalar()
    if message_id is not None:
        after_commit(session, lambda: _enqueue_send(message_id))


def _enqueue_send(message_id: int) -> bool:
    from app.queues import enqueue_once

    return enqueue_once("reminders", "jobs.reminders.send_reminder", message_id, job_id=f"send-reminder-{message_id}")


def value_text(spec: dict[str, Any], language: str) -> str:
    """Return what a partner code is worth in the customer's words: the reward's value in money
    when the program states one ("5,00 €"), else the reward's name."""
    value = Decimal(str(spec.get("value") or "0"))
    if value > 0:
        return format_money(value, str(spec.get("currency") or "EUR"), language)
    return str(spec.get("title") or "")

__all__ = [
    "CAMPAIGN", "Claimed", "CodeRow", "PURPOSE", "PoolView", "ReadCodes", "RowProblem", "UploadResult",
    "VoucherUploadError", "add_codes", "claim_code", "create_pool", "pools_of", "read_codes",
    "record_claimed_code", "reward_in_stock", "sold_out", "value_text", "voucher_rewards", "warnings",
]
