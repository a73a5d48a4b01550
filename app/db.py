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

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None
_url: str | None = None


SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA synchronous=NORMAL",
)


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A connection asked for AUTOCOMMIT only reads (the webhook receiver's shop look-up): it
        # must not queue for the write lock, which a long write elsewhere may hold for seconds.
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for `url` with our SQLite pragmas or PostgreSQL pool settings."""
    # hide_parameters: an error's text (logged, or kept as a delivery's failure) never carries the
    # statement's values — e-mails, recovery links.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _setup_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, **kwargs)


def configure(url: str) -> Engine:
    """Point the module's engine and session factory at `url` (idempotent for the same URL)."""
    global _engine, _sessionmaker, _url
    if _engine is not None and _url == url:
        return _engine
    if _engine is not None:
        _engine.dispose(close=True)
    _engine = make_engine(url)
    _sessionmaker = sessionmaker(bind=_engine, expire_on_commit=False)
    _url = url
    return _engine


def get_engine() -> Engine:
    """Return the configured engine, configuring it from the environment on first use (jobs)."""
    if _engine is None:
        from app import config

        configure(config.settings()["DATABASE_URL"])
    assert _engine is not None
    return _engine


def dispose() -> None:
    """Close every pooled connection (process exit, tests)."""
    if _engine is not None:
        _engine.dispose()


def new_session(bind: Connection | None = None) -> Session:
    """Return a new session on the configured engine (or on `bind`, a connection kept by the caller)."""
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker() if bind is None else _sessionmaker(bind=bind)


def insert_row(session: Session, model: Any, values: dict[str, Any], *, conflict_on: list[str] | None = None,
               index_where: Any = None) -> Any | None:
    """INSERT one row of `model` and return its new ORM object (in the session, as if loaded).

    With `conflict_on` (the columns of a unique key, `index_where` for a partial one) the INSERT
    does nothing when the key exists and None is returned: the database settles the race, and
    the caller reads the row that won. Stock SQLAlchemy: an ORM-enabled
    `INSERT ... ON CONFLICT DO NOTHING RETURNING` (`session.scalars`).
    """
    stmt = dialect_insert(session, model).values(**values)
    if conflict_on is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=conflict_on, index_where=index_where)
    return session.scalars(stmt.returning(model)).first()


def after_commit(session: Session, callback: Any) -> None:
    """Run `callback()` once `session_scope` has committed (e.g. enqueue a job for a new row).

    Enqueueing only after the commit means a worker never looks for a row that is not there yet;
    a callback that fails (Redis down) leaves the row for the sweeps, which find it by status.
    """
    session.info.setdefault("after_commit", []).append(callback)


@contextmanager
def session_scope(bind: Connection | None = None) -> Iterator[Session]:
    """Yield a session that commits on success (then runs after-commit callbacks) or rolls back.

    With `bind`, the session's transaction runs on that connection (a worker keeps one for a
    batch instead of checking one out of the pool, with its pre-ping, per delivery).
    """
    session = new_session(bind)
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
    """Return an INSERT construct with `on_conflict_do_nothing` for the session's dialect
    (`table`: a Table or a mapped class, for an ORM-enabled INSERT)."""
    return dialect_insert_for(session.get_bind(), table)


def dialect_insert_for(conn: Any, table: Any) -> Any:
    """Return an INSERT with `on_conflict_do_nothing` for a Core connection's dialect."""
    return insert_for(conn.dialect.name, table)


def insert_for(dialect_name: str, table: Any) -> Any:
    """Return an INSERT with `on_conflict_do_nothing` for a dialect named `dialect_name`."""
    return postgresql.insert(table) if dialect_name == "postgresql" else sqlite.insert(table)


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
