"""`flask backup --to PATH`: a consistent SQLite copy while another connection keeps writing."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from app import create_app
from app.migrate import upgrade


@pytest.fixture
def live_db(tmp_path: Path) -> Path:
    """A migrated SQLite database in WAL mode, with a table the test writes to and ~8 MB of rows."""
    path = tmp_path / "live.db"
    upgrade(f"sqlite:///{path}")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, filler BLOB NOT NULL)")
        conn.executemany("INSERT INTO probe (filler) VALUES (?)", ((b"x" * 4000,) for _ in range(2000)))
        conn.commit()
    return path


def _cli(database: str, *args: str):  # type: ignore[no-untyped-def]
    app = create_app({"TESTING": True, "DATABASE_URL": database})
    return app.test_cli_runner().invoke(args=list(args))


def test_backup_while_another_connection_writes(live_db: Path, tmp_path: Path):
    # given a writer committing one row after another on its own connection
    stop = threading.Event()
    committed: list[int] = []

    def write() -> None:
        with closing(sqlite3.connect(live_db, timeout=30)) as conn:
            while not stop.is_set():
                cur = conn.execute("INSERT INTO probe (filler) VALUES (?)", (b"y" * 4000,))
                conn.commit()
                committed.append(cur.lastrowid)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(committed) < 50:  # the writer is going
            threading.Event().wait(0.005)
        before = committed[-1]

        # when the backup runs meanwhile
        target = tmp_path / "copies" / "backup.db"
        result = _cli(f"sqlite:///{live_db}", "backup", "--to", str(target))
        after = committed[-1]
    finally:
        stop.set()
        writer.join(30)

    # then it says so, and the copy opens, passes its integrity check and holds every row committed
    # before it started, as one unbroken prefix (a snapshot, no torn writes), in one file
    assert result.exit_code == 0, result.output
    assert "backed up to" in result.output
    with closing(sqlite3.connect(target)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        count, newest = copy.execute("SELECT count(*), max(id) FROM probe").fetchone()
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert copy.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    assert before <= newest <= after + 1
    assert count == newest
    assert not list(target.parent.glob(".*partial*"))


def test_backup_refuses_an_existing_file(live_db: Path, tmp_path: Path):
    # given a file at the target
    target = tmp_path / "taken.db"
    target.write_bytes(b"keep me")

    # when a backup is asked to write there
    result = _cli(f"sqlite:///{live_db}", "backup", "--to", str(target))

    # then it refuses and the file is untouched
    assert result.exit_code == 1
    assert "exists already" in result.output
    assert target.read_bytes() == b"keep me"


def test_backup_refuses_postgresql_and_points_to_pg_dump(tmp_path: Path):
    # when the app runs on PostgreSQL (the command refuses before connecting)
    result = _cli("postgresql+psycopg://stammkunde@127.0.0.1:1/stammkunde", "backup", "--to", str(tmp_path / "x"))

    # then one line says what to use instead, and nothing is written
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and "pg_dump" in lines[0]
    assert not (tmp_path / "x").exists()
