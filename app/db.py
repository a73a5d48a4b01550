"""Engine and sessions. Usable from Flask (init_app) and from RQ jobs (session_scope) alike.

SQLite runs in WAL mode with foreign keys on, and every transaction starts with BEGIN IMMEDIATE:
SQLite allows one writer at a time, and taking the write lock up front turns lock upgrades that
would fail with "database is locked" into plain waits (busy_timeout).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

_engine: Engine | None = None
_ingest_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None
_url: str | None = None


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for `url` with our SQLite pragmas or PostgreSQL pool settings."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _setup_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, **kwargs)


def configure(url: str) -> Engine:
    """Point the module's engine and session factory at `url` (idempotent for the same URL)."""
    global _engine, _ingest_engine, _sessionmaker, _url
    if _engine is not None and _url == url:
        return _engine
    if _engine is not None:
        _engine.dispose(close=True)
    if _ingest_engine is not None:
        _ingest_engine.dispose(close=True)
        _ingest_engine = None
    _engine = make_engine(url)
    _sessionmaker = sessionmaker(bind=_engine, expire_on_commit=False)
    _url = url
    return _engine


def get_engine() -> Engine:
    """Return the configured engine, configuring it from the environment on first use (jobs)."""
    if _engine is None:
        from app import config

        configure(config.load()["DATABASE_URL"])
    assert _engine is not None
    return _engine


def get_ingest_engine() -> Engine:
    """Return the engine for the webhook INSERT: one statement, one round trip, no transaction.

    On SQLite this is the main engine (its driver connections run in autocommit mode, see
    `_setup_sqlite`). On PostgreSQL it is a second pool in AUTOCOMMIT mode without pre-ping, so an
    INSERT is one round trip instead of four (pre-ping, BEGIN, INSERT, COMMIT); the caller retries
    once on a broken pooled connection instead (`app.webhooks.record_delivery`).
    """
    global _ingest_engine
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        return engine
    if _ingest_engine is None:
        _ingest_engine = create_engine(
            engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_reset_on_return=None,
            pool_size=5, max_overflow=10, pool_recycle=3600,
        )
    return _ingest_engine


def dispose() -> None:
    """Close every pooled connection of both engines (process exit, tests)."""
    for engine in (_engine, _ingest_engine):
        if engine is not None:
            engine.dispose()


def new_session() -> Session:
    """Return a new session on the configured engine."""
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker()


def after_commit(session: Session, callback: Any) -> None:
    """Run `callback()` once `session_scope` has committed (e.g. enqueue a job for a new row).

    Enqueueing only after the commit means a worker never looks for a row that is not there yet;
    a callback that fails (Redis down) leaves the row for the sweeps, which find it by status.
    """
    session.info.setdefault("after_commit", []).append(callback)


@contextmanager
def session_scope() -> Iterator[Session]:
    """Yield a session that commits on success (then runs after-commit callbacks) or rolls back."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        session.info.pop("after_commit", None)
        raise
    finally:
        session.close()
    for callback in session.info.pop("after_commit", []):
        try:
            callback()
        except Exception:  # noqa: BLE001 - the committed row is found later by a sweep
            logger.warning("after-commit step failed; a sweep will retry it", exc_info=True)


def dialect_insert(session: Session, table: Any) -> Any:
    """Return an INSERT construct with `on_conflict_do_nothing` for the session's dialect."""
    return dialect_insert_for(session.get_bind(), table)


def dialect_insert_for(conn: Any, table: Any) -> Any:
    """Return an INSERT with `on_conflict_do_nothing` for a Core connection's dialect."""
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def is_postgres(session: Session) -> bool:
    """Return True when the session talks to PostgreSQL."""
    return session.get_bind().dialect.name == "postgresql"


def init_app(app: Any) -> None:
    """Configure the engine from the Flask app and close request sessions at teardown."""
    from flask import g

    configure(app.config["DATABASE_URL"])

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def request_session() -> Session:
    """Return the session of the current Flask request (created on first use)."""
    from flask import g

    if "db_session" not in g:
        g.db_session = new_session()
    return g.db_session
