"""The staff audit log: who did what to which subject, and the state before and after (no Flask).

Each entry is written in the same transaction as the action it records, so an action that is
rolled back leaves no entry and an entry never lacks its action. Owners read their shops' entries
on the admin's audit page and download them as CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.models import StaffAuditEntry, utcnow

CSV_COLUMNS = ("id", "time_utc", "shop_id", "staff", "action", "subject", "before", "after")


def record(session: Session, *, shop_id: int | None, staff_id: int | None, staff_email: str, action: str,
           subject: str, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> StaffAuditEntry:
    """Add one entry to the audit log (flushed with the caller's transaction)."""
    entry = StaffAuditEntry(
        shop_id=shop_id, staff_id=staff_id, staff_email=staff_email, action=action, subject=subject,
        before=before, after=after, created_at=utcnow(),
    )
    session.add(entry)
    session.flush()
    return entry


def entries_query(shop_ids: frozenset[int] | None, shop_id: int | None = None) -> Select[tuple[StaffAuditEntry]]:
    """Return the query for entries of `shop_ids` (None: every entry, account-level ones too),
    optionally of one shop, newest first."""
    query = select(StaffAuditEntry)
    if shop_ids is not None:
        query = query.where(StaffAuditEntry.shop_id.in_(shop_ids))
    if shop_id is not None:
        query = query.where(StaffAuditEntry.shop_id == shop_id)
    return query.order_by(StaffAuditEntry.id.desc())


def safe_cell(value: object) -> str:
    """Return `value` as CSV cell text that a spreadsheet shows rather than runs: text starting
    like a formula gets an apostrophe (OWASP CSV injection). Numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


_cell = safe_cell


def _json(value: dict[str, Any] | None) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def to_csv(rows: Iterable[StaffAuditEntry]) -> str:
    """Return the entries as CSV (UTF-8 text, a header line, times in UTC ISO 8601)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([
            row.id, row.created_at.isoformat(), "" if row.shop_id is None else row.shop_id,
            _cell(row.staff_email), _cell(row.action), _cell(row.subject),
            _cell(_json(row.before)), _cell(_json(row.after)),
        ])
    return out.getvalue()
