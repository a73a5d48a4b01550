"""`flask backup --to PATH`: a consistent copy of a SQLite database while the app keeps writing.

SQLite's online backup API (`sqlite3.Connection.backup`) copies every page in one step inside one
read transaction, so the copy is the database as of one commit; in WAL mode the app's writers go
on meanwhile. The copy is written beside the target and renamed into place only after
`PRAGMA integrity_check` says ok, so a half-written file never has the target's name. The copy
is switched to a rollback journal, so it is one self-contained file. PostgreSQL is refused:
pg_dump makes its consistent backups. No Flask here.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(RuntimeError):
    """The backup cannot be made; the message says why and what to do instead."""


def sqlite_path(database_url: str) -> Path:
    """Return the SQLite file of `database_url`.

    Raises:
        BackupError: not a SQLite file database (PostgreSQL: use pg_dump).
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise BackupError(
            f"flask backup copies SQLite databases only; this one is {url.get_backend_name()}: use pg_dump "
            '(e.g. pg_dump --format=custom --file=stammkunde.dump "$DATABASE_URL")'
        )
    if not url.database or url.database == ":memory:":
        raise BackupError("flask backup needs a SQLite file database, not an in-memory one")
    return Path(url.database)


def backup_sqlite(database_url: str, target: Path) -> int:
    """Copy the database to `target` (which must not exist); return the copy's size in bytes.

    Raises:
        BackupError: not SQLite, the source is missing, the target exists, or the copy is damaged.
    """
    source = sqlite_path(database_url)
    if not source.is_file():
        raise BackupError(f"no database file at {source}")
    if target.exists():
        raise BackupError(f"{target} exists already; choose a new file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        # The source connection only reads (a read transaction for the one backup step).
        with closing(sqlite3.connect(source, timeout=30)) as src, \
                closing(sqlite3.connect(partial)) as dst:
            src.backup(dst, pages=-1)  # all pages in one step: one snapshot, never restarted
            dst.execute("PRAGMA journal_mode=DELETE")
            result = dst.execute("PRAGMA integrity_check").fetchall()
        if result != [("ok",)]:
            raise BackupError(f"the copy failed its integrity check: {result[:3]}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size
