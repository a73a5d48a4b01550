"""Engine and sessions. Usable from Flask (init_app) and from RQ jobs (session_scope) alike.

SQLite runs in WAL mode with foreign keys on, and every transaction starts with BEGIN IMMEDIATE:
SQLite allows one writer at a time, and taking the write lock up front turns lock upgrades that
would fail with "database is locked" into plain waits (busy_timeout).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import ColumnProperty, Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from app import driver_sql

logger = logging.getLogger(__name__)

T = TypeVar("T")

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


def generated_columns(table: Any) -> list[Any]:
    """Return the columns the database fills in on INSERT: the primary key and server defaults.

    An `insert_object` statement RETURNING these is all the object needs back; every other
    column is what we sent.
    """
    return [c for c in table.c if c.primary_key or c.server_default is not None or c.server_onupdate is not None]


def insert_object(session: Session, stmt: Any, obj: Any) -> Any | None:
    """Insert a new ORM object with one prebuilt Core statement; return it persistent, or None.

    `stmt` is the table's `prebuilt_insert` (with ON CONFLICT DO NOTHING, None means the row
    existed). The object keeps the values it was given, as after a flush, and gets the
    generated ones plus SQLAlchemy's Python-side defaults (`last_inserted_params`); a column
    neither set nor defaulted is NULL. It then joins the
    session as if loaded, with nothing to flush. This is what the unit of work would do, for a
    third of its Python (an ORM INSERT ... RETURNING of an entity, or a flush, costs ~0.4-0.6 ms
    against ~0.1 ms for the statement itself). Unlike a flush it writes nothing else that is
    pending in the session.
    """
    values = inspect(obj).dict
    table = obj.__table__
    params = {c.key: values[c.key] for c in table.c if c.key in values}
    executed = driver_sql.execute(session.connection(), stmt, params)
    if not executed.rows:
        return None
    # Written straight into the instance's dict: make_transient_to_detached below resets the
    # attribute history anyway, as loading a row does.
    values.update(executed.rows[0])
    for key, value in executed.params.items():
        values.setdefault(key, value)
    for column in table.c:
        values.setdefault(column.key, None)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


def load_objects(session: Session, model: Any, stmt: Any, params: dict[str, Any]) -> list[Any]:
    """Return the `model` objects for the rows of the prebuilt `select(model)` statement `stmt`,
    as `session.scalars(stmt, params).all()` would, for a third of the ORM's Python: the row
    comes from `app.driver_sql` and joins the session as if loaded (as `insert_object` does). An
    object the session holds already is returned as it is there, unchanged by the row, as the
    ORM does without `populate_existing` (its expired attributes are filled in). For a mapper
    of plain columns (no relationship or deferred loading to set up)."""
    mapper = inspect(model)
    attrs = [(attr.key, attr.columns[0].key) for attr in mapper.column_attrs]
    pk = [column.key for column in mapper.primary_key]
    found = []
    for row in driver_sql.execute(session.connection(), stmt, params).rows:
        key = mapper.identity_key_from_primary_key([row[name] for name in pk])
        obj = session.identity_map.get(key)
        if obj is None:
            obj = mapper.class_manager.new_instance()
            inspect(obj).dict.update({attr: row[column] for attr, column in attrs})
            make_transient_to_detached(obj)
            session.add(obj)
        else:  # its expired attributes are loaded from the row, as the ORM would
            for attr in inspect(obj).unloaded:
                set_committed_value(obj, attr, row[mapper.attrs[attr].columns[0].key])
        found.append(obj)
    return found


# session.info keys for what one transaction learned about itself, each a set of row ids: the
# customers and orders it holds locked. Forgotten when the transaction ends.
LOCKED_CUSTOMERS = "locked_customers"
LOCKED_ORDERS = "locked_orders"
# Writes `defer` holds back until the commit, as (statement, parameters) pairs.
DEFERRED_WRITES = "deferred_writes"
_TRANSACTION_FACTS = (LOCKED_CUSTOMERS, LOCKED_ORDERS, DEFERRED_WRITES)


def note(session: Session, fact: str, row_id: int) -> None:
    """Remember `fact` (one of the keys above) about row `row_id` until the transaction ends."""
    session.info.setdefault(fact, set()).add(row_id)


def noted(session: Session, fact: str, row_id: int) -> bool:
    """Return True when this transaction noted `fact` about row `row_id`."""
    return row_id in session.info.get(fact, ())


@event.listens_for(Session, "after_transaction_end")
def _forget_transaction_facts(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction, not a savepoint
        for fact in _TRANSACTION_FACTS:
            session.info.pop(fact, None)


def defer(session: Session, stmt: Any, params: dict[str, Any]) -> None:
    """Run the Core write `stmt` when the transaction commits instead of now.

    For a write that nothing later in this transaction reads back: no RETURNING, no rowcount,
    and no later statement of the transaction selects or changes its rows (a proof row, a
    history row, a status stamp). `session_scope` runs the deferred writes in the order they
    came, after the ORM's flush and right before COMMIT. On PostgreSQL, in a session riding
    on a worker's batch connection, they go out with the COMMIT in one psycopg pipeline, so N
    deferred writes cost one round trip instead of N (a round trip costs ~0.3-0.7 ms of CPU
    and waiting here; bench/RESULTS.md). An error in one fails the commit, which rolls the
    whole transaction back, as if it had failed at once.

    Inside a savepoint the write runs at once: rolling the savepoint back must take it along.
    """
    if session.in_nested_transaction():
        session.execute(stmt, params)
        return
    if not session.in_transaction():
        session.begin()  # so that a rollback, which ends it, drops the write
    session.info.setdefault(DEFERRED_WRITES, []).append((stmt, params))


_PLAIN_INSERTS: dict[tuple[Any, str, tuple[str, ...] | None], Any] = {}


def _plain_insert(session: Session, obj: Any, conflict_on: tuple[str, ...] | None) -> tuple[Any, dict[str, Any]]:
    """The INSERT of the new ORM object `obj` without RETURNING (built once per table), and its
    parameters; with `conflict_on` (a unique key's columns) ON CONFLICT DO NOTHING."""
    table = obj.__table__
    dialect = session.get_bind().dialect.name
    key = (table, dialect, conflict_on)
    stmt = _PLAIN_INSERTS.get(key)
    if stmt is None:
        stmt = insert_for(dialect, table)
        if conflict_on is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict_on))
        stmt = _PLAIN_INSERTS[key] = stmt.inline()  # inline: no implicit RETURNING of the key
    values = inspect(obj).dict
    return stmt, {c.key: values[c.key] for c in table.c if c.key in values}


def defer_insert(session: Session, obj: Any, *, conflict_on: tuple[str, ...] | None = None) -> None:
    """Insert the new ORM object `obj` at commit (see `defer`), for a row that nothing reads
    back in this transaction. `obj` stays out of the session and gets no id. With `conflict_on`
    (a unique key's columns) the INSERT does nothing when that key exists already."""
    defer(session, *_plain_insert(session, obj, conflict_on))


def insert_behind(session: Session, obj: Any) -> None:
    """Insert the new ORM object `obj` with the transaction's next statement (see
    `app.driver_sql.write_behind`): later statements see its row; `obj` stays out of the
    session and gets no id. For a row whose key cannot exist yet, so the INSERT cannot fail
    but for a bug (which then fails the statement it went out with, and the transaction)."""
    _write_soon(session, session.connection(), *_plain_insert(session, obj, None))


def _write_soon(session: Session, conn: Connection, stmt: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Write behind (`app.driver_sql.write_behind`), but at once inside a savepoint: one may be
    there to catch the write's error, which must then come now, not with a later statement.
    Returns the parameters sent, with their Python defaults."""
    if session.in_nested_transaction():
        return driver_sql.execute(conn, stmt, params).params
    return driver_sql.write_behind(conn, stmt, params)


def commit(session: Session) -> None:
    """Commit `session` with its deferred writes (`defer`); on PostgreSQL and a connection the
    caller keeps (`session_scope(bind)`), they go in one pipeline with the COMMIT.

    Elsewhere `session.commit()` writes them (`_run_deferred_writes`), one round trip each.
    Pipelined only on a kept connection (a worker's batch): a session that checked out its own
    hands it back to the pool inside `session.commit()`, while still in the pipeline.
    """
    pipelined = (
        session.info.get(DEFERRED_WRITES)
        and isinstance(session.bind, Connection)
        and session.bind.dialect.name == "postgresql"
    )
    if not pipelined:
        session.commit()
        return
    writes = session.info.pop(DEFERRED_WRITES)
    changes = _locked_row_changes(session)
    if changes is None:
        session.flush()  # the unit of work reads its UPDATEs' rowcounts, so they cannot be pipelined
    conn = session.connection()
    driver = conn.connection.dbapi_connection
    assert driver is not None
    try:
        try:
            with driver.pipeline():
                cursor = driver.cursor()
                driver_sql.send_behind(conn, cursor)
                _write_changes(session, conn, changes or [], cursor=cursor)
                for stmt, params in writes:
                    driver_sql.execute(conn, stmt, params, cursor=cursor)
                # The COMMIT rides along; the pipeline's closing sync is the one round trip, and
                # it raises a write's error. (psycopg's commit() would sync once more before it.)
                cursor.execute("COMMIT")
        except conn.dialect.loaded_dbapi.Error as error:
            driver_sql.raise_wrapped(conn, "COMMIT", None, error)
        session.commit()  # psycopg finds its transaction ended and sends nothing; SQLAlchemy ends its own
    except BaseException:
        # A write that failed in the pipeline made the server skip the COMMIT behind it, so its
        # transaction is still open (aborted); SQLAlchemy saw a failed COMMIT and will not roll
        # back. Without this ROLLBACK the connection refuses the next transaction.
        try:
            driver.rollback()
        except Exception:  # noqa: BLE001 - the first error is the one to raise; a broken connection fails its next statement
            logger.warning("rollback after a failed pipelined commit failed", exc_info=True)
        raise


# Tables whose rows a transaction notes as locked (by id), so that their changes can be written
# without the unit of work: an UPDATE by primary key cannot miss a row this transaction holds,
# so nobody needs its rowcount (which a pipelined statement has not yet got).
_LOCKED_FACTS = {"customers": LOCKED_CUSTOMERS, "orders": LOCKED_ORDERS}
_ROW_UPDATES: dict[tuple[Any, frozenset[str]], Any] = {}


def _locked_row_changes(session: Session) -> list[tuple[Any, Any, dict[str, Any] | None]] | None:
    """Return what a flush would write, as (object, UPDATE, parameters) per dirty object (None,
    None for one whose changes cancel out), when all of it is column changes to rows this
    transaction holds locked (an order's snapshot, the customer's tier); None when anything
    else is pending (new or deleted objects, another table, a relationship, a version counter).
    The UPDATE is the flush's: the changed columns and the `onupdate` ones, by primary key."""
    if session.new or session.deleted:
        return None
    changes: list[tuple[Any, Any, dict[str, Any] | None]] = []
    for obj in session.dirty:
        state = inspect(obj)
        mapper = state.mapper
        table = mapper.local_table
        fact = _LOCKED_FACTS.get(table.name)
        if fact is None or mapper.version_id_col is not None or state.identity is None:
            return None
        (row_id,) = state.identity
        if not noted(session, fact, row_id):
            return None
        changed = {}
        # The attributes set since the object was loaded or flushed (what the unit of work looks
        # at too): a column whose value changed goes into the UPDATE; a relationship means no.
        for key in list(state.committed_state):
            attr = mapper.attrs[key]
            if not isinstance(attr, ColumnProperty):
                return None
            history = state.attrs[key].history
            if history.has_changes():
                changed[key] = history.added[0] if history.added else None
        changes.append((obj, *_row_update(mapper, changed, row_id)) if changed else (obj, None, None))
    return changes


def _row_update(mapper: Any, changed: dict[str, Any], row_id: Any) -> tuple[Any, dict[str, Any]]:
    table = mapper.local_table
    key = (table, frozenset(changed))
    stmt = _ROW_UPDATES.get(key)
    if stmt is None:
        (pk,) = table.primary_key.columns
        stmt = _ROW_UPDATES[key] = (
            table.update()
            .where(pk == bindparam("row_pk"))
            .values({mapper.attrs[name].columns[0]: bindparam(f"new_{name}") for name in changed})
        )
    params = {f"new_{name}": value for name, value in changed.items()}
    params["row_pk"] = row_id
    return stmt, params


def _settle(session: Session, obj: Any, onupdate: dict[str, Any]) -> None:
    """Mark `obj` written, as the unit of work does after its flush: the `onupdate` values the
    UPDATE computed go into the object, and nothing of it is pending any more."""
    state = inspect(obj)
    state.dict.update(onupdate)
    state._commit_all(state.dict, session.identity_map)  # what the unit of work calls after a flush


def flush(session: Session) -> None:
    """`session.flush()`, with a short way for the worker's common case: when all that is
    pending are column changes to rows this transaction holds locked, one prebuilt UPDATE per
    row on the driver (`app.driver_sql`) instead of the unit of work (bench/RESULTS.md, sixth
    pass); the objects then hold what a flush would have left in them."""
    changes = _locked_row_changes(session)
    if changes is None:
        session.flush()
        return
    _write_changes(session, session.connection(), changes)


def _write_changes(session: Session, conn: Connection, changes: list[tuple[Any, Any, dict[str, Any] | None]],
                   cursor: Any = None) -> None:
    """Send the UPDATEs of `_locked_row_changes` (in the commit's pipeline: on `cursor`) and
    settle their objects."""
    for obj, stmt, params in changes:
        onupdate = {}
        if stmt is not None:
            if cursor is not None:
                sent = driver_sql.execute(conn, stmt, params, cursor=cursor).params
            else:  # nobody waits for an UPDATE of a locked row
                sent = _write_soon(session, conn, stmt, params)
            onupdate = {c.key: sent[c.key] for c in stmt.table.c if c.onupdate is not None and c.key in sent}
        _settle(session, obj, onupdate)


@event.listens_for(Session, "before_commit")
def _run_deferred_writes(session: Session) -> None:
    # Writes them (after the ORM's flush) for every commit `commit` does not pipeline, and for a
    # caller's own `session.commit()`. A savepoint's release leaves them to the outer commit.
    if session.in_nested_transaction():
        return
    writes = session.info.pop(DEFERRED_WRITES, None)
    if writes:
        session.flush()
        conn = session.connection()
        for stmt, params in writes:
            conn.execute(stmt, params)


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
        commit(session)
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
    return insert_for(conn.dialect.name, table)


def insert_for(dialect_name: str, table: Any) -> Any:
    """Return an INSERT with `on_conflict_do_nothing` for a dialect named `dialect_name`."""
    return postgresql.insert(table) if dialect_name == "postgresql" else sqlite.insert(table)


class Prebuilt(Generic[T]):
    """A statement built once per dialect and then executed with parameters only.

    Building a statement (and its cache key) costs more Python than executing it; the hot worker
    path runs the same few dozen statements for every order, so it builds them once:
    `_STMT = Prebuilt(lambda dialect: select(...).where(X.id == bindparam("id")))`, then
    `session.execute(_STMT(session), {"id": 1})`.
    """

    def __init__(self, build: Callable[[str], T]) -> None:
        self._build = build
        self._built: dict[str, T] = {}

    def __call__(self, session: Session) -> T:
        name = session.get_bind().dialect.name
        try:
            return self._built[name]
        except KeyError:
            stmt = self._built[name] = self._build(name)
            return stmt


def prebuilt_insert(table: Any, conflict_on: list[str] | None = None) -> Prebuilt[Any]:
    """The INSERT `insert_object` runs: into `table`, RETURNING its `generated_columns`, and with
    `conflict_on` (a unique key's columns) ON CONFLICT DO NOTHING."""

    def build(dialect: str) -> Any:
        stmt = insert_for(dialect, table)
        if conflict_on is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=conflict_on)
        return stmt.returning(*generated_columns(table))

    return Prebuilt(build)


def for_update(dialect: str, stmt: Any) -> Any:
    """Return `stmt` locking its rows on PostgreSQL; on SQLite, BEGIN IMMEDIATE already serializes."""
    return stmt.with_for_update() if dialect == "postgresql" else stmt


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
