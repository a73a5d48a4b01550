"""The inbox's write path: one committed INSERT per accepted webhook delivery. No Flask here.

`app.web.webhooks` answers the HTTP request and calls `record_delivery`; the row it writes is
what a worker later processes (`jobs.deliveries`). This is the hot path of ingest, so the INSERT
skips SQLAlchemy's statement compiler, session and pool (together ~20x the INSERT's own cost;
bench/RESULTS.md):

- `record_delivery` runs one pre-written `INSERT ... ON CONFLICT DO NOTHING` in autocommit mode;
  the database settles duplicates.
- `DriverPool` keeps plain driver connections for it (a checkout is a list pop, no pre-ping).
- On SQLite, `SQLiteWriterLock` queues this machine's writers in the kernel (a file lock), and a
  background thread checkpoints the WAL now and then, so no request waits for a checkpoint.
- The inbox's key to `shops` is checked on every database (migration 0013): a delivery for a
  shop erased after the receiver read it is refused (`ShopGoneError`), and erasing a shop
  deletes its deliveries by the cascade. On PostgreSQL the check costs ~20-36 µs of server CPU
  per delivery (bench/RESULTS.md).

The rest of the app reads and writes through `app.db`'s engine and sessions; this module only
borrows that engine's URL and dialect.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import nullcontext
from typing import Any

import psycopg
import psycopg.errors
from sqlalchemy import Engine, event

from app import db
from app.models import utcnow

logger = logging.getLogger(__name__)

# What a driver connection raises when the database is unreachable or the connection broke; the
# receiver answers 503 to them (the platform retries).
DRIVER_ERRORS = (sqlite3.OperationalError, psycopg.OperationalError, psycopg.InterfaceError)

# On SQLite a webhook waits at most this long for the machine's writer lock and then as long again
# for the database itself (busy_timeout), then the receiver answers 503 and the platform retries:
# under Shopify's 5 s, so a database held by a long write gets a prompt 503 instead of a timeout.
WRITER_WAIT_SECONDS = 2.0
SQLITE_BUSY_TIMEOUT_MS = 2000


class WriterBusyError(sqlite3.OperationalError):
    """The SQLite writer lock was not free within WRITER_WAIT_SECONDS (answered 503, like a
    locked database)."""

# What the INSERT raises when its shop is gone: the only key it can violate is the one to `shops`
# (a duplicate is settled by ON CONFLICT), but the SQLite error is told apart by its code.
_FOREIGN_KEY_ERRORS = (sqlite3.IntegrityError, psycopg.errors.ForeignKeyViolation)


def _is_foreign_key_error(error: Exception) -> bool:
    if isinstance(error, sqlite3.IntegrityError):
        return error.sqlite_errorname == "SQLITE_CONSTRAINT_FOREIGNKEY"
    return True


class ShopGoneError(LookupError):
    """The delivery's shop no longer exists (erased after the receiver read it)."""


# The delivery INSERT, written once per dialect: this is the request's only write, and building
# it through SQLAlchemy's statement compiler and transaction machinery cost ~20x the INSERT itself
# (bench/RESULTS.md). ON CONFLICT ... DO NOTHING settles duplicates in the database. SQLite tells
# a new row by rowcount and lastrowid (RETURNING would hold its write lock for one more step).
_COLUMNS = "shop_id, platform, topic, dedupe_key, headers, body, status, attempts, received_at, source"
_INSERT = {
    "sqlite": f"INSERT INTO webhook_deliveries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'received', 0, ?, ?) "
              "ON CONFLICT (shop_id, dedupe_key) DO NOTHING",
    "postgresql": f"INSERT INTO webhook_deliveries ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s::json, %s, 'received', "
                  "0, %s, %s) ON CONFLICT (shop_id, dedupe_key) DO NOTHING RETURNING id",
}
# Where a delivery came from (`WebhookDelivery.source`).
SOURCES = ("webhook", "reconcile", "backfill")


def record_delivery(shop_id: int, platform: str, topic: str, key: str, headers: dict[str, str],
                    body: bytes, *, source: str = "webhook") -> int | None:
    """Insert the delivery (committed when this returns); return its id, or None for a duplicate.

    `source`: "webhook" (the receiver), "reconcile" or "backfill" (our own reads of the platform,
    `jobs.reconcile` and `jobs.backfill`, with the same dedupe key as a webhook of that state).

    One autocommit statement on a driver connection that is not pinged first (`DriverPool`).
    A kept PostgreSQL connection can be stale (the server restarted): that attempt fails, the
    connection is closed, and the INSERT is tried once more on a new one. Retrying is safe because
    of ON CONFLICT: had the first attempt committed after all, the second finds a duplicate, and
    the requeue sweep hands the `received` row to a worker.

    Raises:
        ShopGoneError: the shop was erased after the caller read it (the inbox's key to `shops`
            refuses the row, on every database: migration 0013); nothing was stored.
        One of `DRIVER_ERRORS` when the database cannot be reached.
    """
    pool = get_driver_pool()
    sqlite = pool.dialect == "sqlite"
    now = utcnow()
    # SQLite stores our UTC timestamps naive, in SQLAlchemy's text format (models.UTCDateTime).
    received = now.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else now
    if source not in SOURCES:
        raise ValueError(f"unknown delivery source {source!r}")
    params = (shop_id, platform, topic, key, json.dumps(headers), body, received, source)
    attempts = 1 if sqlite else 2
    for attempt in range(1, attempts + 1):
        conn = pool.acquire()
        try:
            if sqlite:
                with pool.write_lock:
                    cursor = conn.execute(_INSERT["sqlite"], params)
                new_id = cursor.lastrowid if cursor.rowcount == 1 else None
                pool.wrote()
            else:
                row = conn.execute(_INSERT["postgresql"], params).fetchone()
                new_id = None if row is None else int(row[0])
        except _FOREIGN_KEY_ERRORS as error:
            if not _is_foreign_key_error(error):
                conn.close()
                raise
            pool.release(conn)  # an autocommit statement that failed leaves the connection as it was
            raise ShopGoneError(shop_id) from error
        except DRIVER_ERRORS:
            conn.close()  # a broken connection must not be kept
            if attempt == attempts:
                raise
            logger.info("kept database connection failed; retrying once on a new one", exc_info=True)
            continue
        except BaseException:
            conn.close()
            raise
        pool.release(conn)
        return new_id
    raise AssertionError("unreachable")  # pragma: no cover


class SQLiteWriterLock:
    """Queues this machine's writers of one SQLite file in the kernel, not in SQLite's busy handler.

    SQLite lets one writer in at a time, and a writer that finds the file locked sleeps in its
    busy handler for 1, 2, 5, 10, 15, 20, 25… ms before it looks again, so two web workers that
    collide lose milliseconds while the lock is free again after ~0.1 ms (bench/RESULTS.md: that
    was the tail latency and a tenth of the ingest rate). A blocking `flock` on a file beside the
    database wakes the next writer as soon as the holder lets go. Threads of one process queue on
    a threading lock first (flock does not exclude threads sharing a descriptor).
    """

    def __init__(self, database_path: str) -> None:
        self.path = database_path + ".writer-lock"
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None

    def __enter__(self) -> None:
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        if not self._thread_lock.acquire(timeout=WRITER_WAIT_SECONDS):
            raise WriterBusyError("the inbox's writer lock was not free in time")
        try:
            if self._pid != os.getpid():  # a descriptor inherited over fork shares the parent's lock
                self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
            # Free at once almost always (another worker's INSERT holds it ~0.1 ms); otherwise look
            # again after 0.2, 0.4, … ms (at most 5 ms apart) until the wait runs out.
            pause = 0.0002
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[arg-type]
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise WriterBusyError("the inbox's writer lock was not free in time") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.005)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        """Close the lock file's descriptor (it is reopened on next use)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None


class DriverPool:
    """Plain driver connections in autocommit mode, for the one-statement webhook INSERT.

    SQLAlchemy's pool costs more per checkout than that INSERT's own Python work (events, reset
    on return, and on PostgreSQL the pre-ping round trip; bench/RESULTS.md). Here a checkout is a
    list pop (atomic under the GIL, so safe across threads), idle connections are capped, and a
    broken connection is closed by the caller instead of being pinged before every use. The pool
    forgets connections inherited over fork (they belong to the parent).
    """

    MAX_IDLE = 8
    # SQLite: these connections never checkpoint inside a write (that would hold `write_lock`
    # while the WAL is copied into the database file). Every CHECKPOINT_EVERY writes of a process
    # wake a background thread that runs a PASSIVE checkpoint, which blocks no writer, and no
    # request waits for it (sqlite3 lets other threads run meanwhile).
    CHECKPOINT_EVERY = 256

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._idle: list[Any] = []
        self._pid = os.getpid()
        self._writes = 0
        self._checkpoint_wake = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self.closed = False
        path = engine.url.database if self.dialect == "sqlite" else None
        # Hold `write_lock` around each write (nothing to hold for PostgreSQL).
        self.write_lock: Any = SQLiteWriterLock(path) if path and path != ":memory:" else nullcontext()

    def acquire(self) -> Any:
        """Return an idle connection, or a new one."""
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            return self._connect()

    def release(self, conn: Any) -> None:
        """Give a healthy connection back (closed instead when the pool is full or closed)."""
        if len(self._idle) < self.MAX_IDLE and self._pid == os.getpid() and not self.closed:
            self._idle.append(conn)
        else:
            conn.close()

    def wrote(self) -> None:
        """Note one committed write; now and then, wake the SQLite checkpoint thread."""
        if self.dialect != "sqlite":
            return
        self._writes += 1
        if self._writes % self.CHECKPOINT_EVERY == 0:
            thread = self._checkpointer
            if thread is None or not thread.is_alive():  # none yet, or the parent's (after fork)
                thread = self._checkpointer = threading.Thread(
                    target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True
                )
                thread.start()
            self._checkpoint_wake.set()

    def _checkpoint_loop(self) -> None:
        while True:
            self._checkpoint_wake.wait()
            self._checkpoint_wake.clear()
            if self.closed:
                return
            conn = self.acquire()
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except Exception:  # noqa: BLE001 - logged; the next wake-up tries again
                logger.warning("WAL checkpoint failed", exc_info=True)
                conn.close()
                continue
            self.release(conn)

    def close(self) -> None:
        """Close every idle connection of this process and stop the checkpoint thread."""
        self.closed = True
        self._checkpoint_wake.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(5)
        idle, self._idle = self._idle, []
        if self._pid == os.getpid():  # a parent's connections are the parent's to close
            for conn in idle:
                conn.close()
        if isinstance(self.write_lock, SQLiteWriterLock):
            self.write_lock.close()

    def _connect(self) -> Any:
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        if self.dialect == "sqlite":
            conn = dialect.loaded_dbapi.connect(*cargs, **{**cparams, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                                            "check_same_thread": False})
            conn.isolation_level = None  # autocommit: each statement commits itself
            for pragma in (*db.SQLITE_PRAGMAS, "PRAGMA wal_autocheckpoint=0",
                           f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"):
                conn.execute(pragma)
            return conn
        return dialect.loaded_dbapi.connect(*cargs, **cparams, autocommit=True)


_pool: DriverPool | None = None
_pool_lock = threading.Lock()


def get_driver_pool() -> DriverPool:
    """Return the driver pool on `app.db`'s engine (see `DriverPool`).

    The pool lives as long as that engine's connections: disposing of the engine (`db.dispose`,
    or `db.configure` moving to another database) closes it, and the next call opens a new one.
    """
    global _pool
    pool = _pool
    if pool is not None and not pool.closed:
        return pool
    with _pool_lock:
        if _pool is None or _pool.closed:
            engine = db.get_engine()
            _pool = DriverPool(engine)
            if not event.contains(engine, "engine_disposed", _close_pool_of):  # on this engine, not the class
                event.listen(engine, "engine_disposed", _close_pool_of)
        return _pool


def _close_pool_of(engine: Engine) -> None:
    pool = _pool
    if pool is not None and pool.engine is engine:
        pool.close()
