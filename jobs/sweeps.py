"""The shape every "select what is due, handle each" sweep shares.

One indexed query picks the due ids; each id is then handled in its own transaction, so one bad
row never blocks the rest, and a sweep that runs twice does nothing the second time (each handler
re-checks under its own lock that the row is still due).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import dialect_insert, session_scope
from app.models import JobCursor, utcnow


def cursor_position(session: Session, name: str) -> int:
    """Return where the resumable job `name` got to (0 before its first run)."""
    return session.scalar(select(JobCursor.position).where(JobCursor.name == name)) or 0


def advance_cursor(session: Session, name: str, position: int) -> None:
    """Move cursor `name` forward to `position`, creating it on first use; never back, so two runs
    at once both end right (the database settles it: one upsert, no read first)."""
    table = JobCursor.__table__
    stmt = dialect_insert(session, table).values(name=name, position=position, updated_at=utcnow())
    session.execute(stmt.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"position": stmt.excluded.position, "updated_at": stmt.excluded.updated_at},
        where=table.c.position < stmt.excluded.position,
    ))


def handle_each_due(
    due_ids: Callable[[Session, datetime, int], Sequence[int]],
    handle: Callable[[Session, int, datetime], bool],
    now: datetime,
    limit: int,
) -> int:
    """Run `handle(session, id, now)` for every id `due_ids` selects, each in its own transaction.

    Returns how many handlers reported a change (returned True).
    """
    with session_scope() as session:
        ids = list(due_ids(session, now, limit))
    changed = 0
    for item_id in ids:
        with session_scope() as session:
            if handle(session, item_id, now):
                changed += 1
    return changed
