"""The shape every "select what is due, handle each" sweep shares.

One indexed query picks the due ids; each id is then handled in its own transaction, so one bad
row never blocks the rest, and a sweep that runs twice does nothing the second time (each handler
re-checks under its own lock that the row is still due).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from app.db import session_scope


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
