"""Prebuilt Core statements run on the driver's cursor, for the worker's hot path on PostgreSQL.

SQLAlchemy's executor costs ~180 µs of Python per statement on this kind of machine, on top of
the driver's ~80 µs (bench/RESULTS.md, sixth pass); a paid order runs a dozen statements. For a
statement built once at import (a `Prebuilt`, a module-level UPDATE), this module does once what
the executor does per call — compile for the dialect and the given parameter keys, look up the
bind and result processors of the column types — and then per call only what must be: Python
column defaults, bind processing, `cursor.execute`, result processing.

It keeps the executor's contract where it matters: the same SQL and parameters reach the driver
(types' bind processors and `UTCDateTime`'s checks included); a driver error is raised as the
same SQLAlchemy exception (`IntegrityError`, `OperationalError`...), and a lost connection
invalidates the SQLAlchemy connection, as the executor would. It skips the executor's statement
events and logging (the app's own listener below is for the write-behind queue).

On the way it saves round trips with psycopg's pipeline mode: a transaction's first statement
takes its BEGIN along, and `write_behind` queues a write nobody waits for until the next
statement goes out.

A statement this module cannot render the same way (SQL-side or context-dependent defaults,
expanding IN parameters, escaped bind names) is handed to `Connection.execute` instead.

It reads a compiled statement's bind and result processors where SQLAlchemy's executor reads
them (`SQLCompiler._bind_processors`, `_result_columns`), internals that pyproject.toml's
`sqlalchemy<2.2` holds still; `tests/app/test_driver_sql.py` compares both paths.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import Pool

# Compiled forms per (statement, dialect, parameter keys). Statements built per call would fill
# it without bound, so it stops caching at this size (those then take the executor's path).
_FORMS_MAX = 512
_forms: dict[tuple[Any, str, frozenset[str]], _Form | None] = {}
_forms_lock = threading.Lock()
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction open on the connection


@dataclass
class _Form:
    sql: str
    compiled: Any
    bind_processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    defaults: tuple[tuple[str, Callable[[], Any] | None, Any], ...]  # (key, callable or None, scalar)
    returns: bool
    # Result processors per RETURNING column, from the first cursor's description.
    result: tuple[tuple[str, Callable[[Any], Any] | None], ...] | None = field(default=None)


def _default(default: Any) -> tuple[Callable[[], Any] | None, Any] | None:
    """(callable, scalar) computing a column's Python-side default as the executor would; None
    for one that is not a plain value or a zero-argument callable (SQL, a sequence, a callable
    that wants the execution context)."""
    if default is None:
        return None
    if default.is_scalar:
        return None, default.arg
    if default.is_callable and default.arg is not getattr(default, "_fn", default.arg):
        fn = default.arg  # SQLAlchemy's wrapper `lambda ctx: fn()` of a zero-argument fn
        return (lambda: fn(None)), None
    return None


def _build(connection: Connection, stmt: Any, keys: frozenset[str]) -> _Form | None:
    compiled = stmt.compile(dialect=connection.dialect, column_keys=sorted(keys))
    if compiled.positional or compiled.literal_execute_params or compiled.post_compile_params or compiled.escaped_bind_names:
        return None
    # Columns whose Python default (INSERT) or onupdate (UPDATE) the executor would compute.
    defaults = []
    bind_names = set(compiled.bind_names.values())
    for columns, attr in ((compiled.insert_prefetch, "default"), (compiled.update_prefetch, "onupdate")):
        for column in columns:
            found = _default(getattr(column, attr))
            if found is None or column.key not in bind_names:
                return None
            defaults.append((column.key, *found))
    return _Form(
        sql=compiled.string,
        compiled=compiled,
        bind_processors=tuple(compiled._bind_processors.items()),
        defaults=tuple(defaults),
        returns=bool(compiled._result_columns),
    )


def _form(connection: Connection, stmt: Any, keys: frozenset[str]) -> _Form | None:
    key = (stmt, connection.dialect.name, keys)
    try:
        return _forms[key]
    except KeyError:
        pass
    form = _build(connection, stmt, keys)
    with _forms_lock:
        if len(_forms) < _FORMS_MAX:
            _forms[key] = form
    return form


def _parameters(form: _Form, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (the parameters with Python defaults, as `last_inserted_params` gives them; the
    driver's parameters, bind-processed)."""
    given = dict(params)
    for key, fn, value in form.defaults:
        given[key] = fn() if fn is not None else value
    compiled_params = form.compiled.construct_params(given)
    for key, process in form.bind_processors:
        if key in compiled_params:
            compiled_params[key] = process(compiled_params[key])
    return given, compiled_params


def raise_wrapped(connection: Connection, statement: str, params: Any, error: Exception, cursor: Any = None) -> NoReturn:
    """Raise the driver's `error` as SQLAlchemy's executor would: wrapped in SQLAlchemy's
    exception for it (`IntegrityError`, `OperationalError`...), a lost connection invalidated."""
    dialect = connection.dialect
    driver = connection.connection.dbapi_connection
    lost = dialect.is_disconnect(error, driver, cursor)
    if lost:
        connection.invalidate(error)
    raise sa_exc.DBAPIError.instance(
        statement, params, error, dialect.loaded_dbapi.Error,
        hide_parameters=connection.engine.hide_parameters, connection_invalidated=lost, dialect=dialect,
        ismulti=False,
    ) from error


@dataclass(frozen=True)
class Executed:
    """What `execute` ran: the rows RETURNING gave (as mappings of column name to value) and the
    parameters it sent, with Python defaults, before bind processing."""

    rows: list[dict[str, Any]]
    params: dict[str, Any]


def _prepared(connection: Connection, stmt: Any, params: dict[str, Any]) -> tuple[_Form, dict[str, Any], dict[str, Any]] | None:
    """(form, parameters with defaults, driver parameters), or None for the executor's path."""
    if connection.dialect.name != "postgresql":
        return None
    form = _form(connection, stmt, frozenset(params))
    if form is None:
        return None
    try:
        given, driver_params = _parameters(form, params)
    except Exception as error:  # a type's bind processor refused a value (a naive datetime, a float for money)
        raise sa_exc.StatementError(
            f"({type(error).__module__}.{type(error).__name__}) {error}", form.sql, params, error,
            hide_parameters=connection.engine.hide_parameters,
        ) from error
    return form, given, driver_params


def execute(connection: Connection, stmt: Any, params: dict[str, Any], *, cursor: Any = None) -> Executed:
    """Run the prebuilt Core statement `stmt` with `params` on `connection`'s driver cursor
    (PostgreSQL), or through `connection.execute` where this module cannot (see the module
    docstring). `connection` must be in a transaction already (a session's `connection()`).

    Writes queued by `write_behind` go out first, in one pipeline with this statement. So does
    psycopg's BEGIN when this is the transaction's first statement: in a pipeline, the results
    come back at its closing sync, one round trip for all.

    `cursor`: a driver cursor in a pipeline the caller opened, to use and leave open (the
    writes of one commit share one; their results arrive at the pipeline's sync).
    """
    prepared = _prepared(connection, stmt, params)
    if prepared is None:
        return _through_executor(connection, stmt, params)
    form, given, driver_params = prepared
    own_cursor = cursor is None
    driver = connection.connection.dbapi_connection
    queued = connection.info.pop(_BEHIND, None)
    if own_cursor:
        cursor = driver.cursor()
    sql = form.sql
    try:
        if not own_cursor:
            _send(cursor, queued)
            cursor.execute(form.sql, driver_params)
        elif queued or driver.info.transaction_status == _IDLE:
            if queued:
                sql = "; ".join([*(f.sql for f, _ in queued), form.sql])  # which one failed, the server says
            with driver.pipeline():
                _send(cursor, queued)
                cursor.execute(form.sql, driver_params)
        else:
            cursor.execute(form.sql, driver_params)
        rows = cursor.fetchall() if form.returns else []
        if rows:
            result = form.result
            if result is None:
                result = form.result = tuple(
                    (entry.keyname, entry.type._cached_result_processor(connection.dialect, described[1]))
                    for entry, described in zip(form.compiled._result_columns, cursor.description, strict=True)
                )
            rows = [
                {key: (process(value) if process is not None else value) for (key, process), value in zip(result, row, strict=True)}
                for row in rows
            ]
    except connection.dialect.loaded_dbapi.Error as error:
        raise_wrapped(connection, sql, driver_params, error, cursor)
    finally:
        if own_cursor:
            cursor.close()
    return Executed(rows, given)


# Writes `write_behind` queued, in the DBAPI connection's info (SQLAlchemy's `Connection.info`).
_BEHIND = "driver_sql.write_behind"


def write_behind(connection: Connection, stmt: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Queue the prebuilt write `stmt` (no RETURNING, no rowcount wanted) to go out with the
    connection's next statement, in the same pipeline: in the order written, so every later
    statement of the transaction sees it, as if it had run at once, one round trip sooner.

    The queue goes out with the next statement of `execute`, and before any statement of
    SQLAlchemy's executor (SAVEPOINT and RELEASE included) and before COMMIT (listeners below).
    A rollback drops it: of the transaction, or of a savepoint (what is queued then came after
    the SAVEPOINT, which sent what was queued before). A failing queued write fails the
    statement it went out with, and so the transaction. Not for a write inside a savepoint that
    is there to catch its error. Returns the parameters with their Python defaults
    (`Executed.params`). Elsewhere (SQLite, a statement `execute` hands to the executor) the
    write runs at once.
    """
    prepared = _prepared(connection, stmt, params)
    if prepared is None:
        return _through_executor(connection, stmt, params).params
    form, given, driver_params = prepared
    assert not form.returns, "a write that returns rows cannot wait"
    connection.info.setdefault(_BEHIND, []).append((form, driver_params))
    return given


def send_behind(connection: Connection, cursor: Any = None) -> None:
    """Send the writes `write_behind` queued on `connection` now (with `cursor`, in the caller's
    pipeline; else in a pipeline of their own, one round trip)."""
    queued = connection.info.pop(_BEHIND, None)
    if not queued:
        return
    try:
        if cursor is not None:
            _send(cursor, queued)
            return
        driver = connection.connection.dbapi_connection
        with driver.pipeline(), driver.cursor() as own:
            _send(own, queued)
    except connection.dialect.loaded_dbapi.Error as error:
        raise_wrapped(connection, "; ".join(f.sql for f, _ in queued), None, error, cursor)


def drop_behind(connection: Connection) -> None:
    """Forget the writes queued on `connection` (its transaction or savepoint rolled back)."""
    if not connection.invalidated:  # an invalidated one lost its queue with its record (`_forget`)
        connection.info.pop(_BEHIND, None)


def _send(cursor: Any, queued: list[tuple[_Form, dict[str, Any]]] | None) -> None:
    for form, driver_params in queued or ():
        cursor.execute(form.sql, driver_params)


@event.listens_for(Engine, "before_cursor_execute")
@event.listens_for(Engine, "commit")
def _send_first(conn: Connection, *_: Any) -> None:
    if not conn.invalidated and _BEHIND in conn.info:
        send_behind(conn)


# A savepoint's rollback drops all of the queue: it came after the SAVEPOINT, which sent what
# was queued before.
@event.listens_for(Engine, "rollback")
@event.listens_for(Engine, "rollback_savepoint")
def _drop(conn: Connection, *_: Any) -> None:
    drop_behind(conn)


# Three named parameters, as both events pass (reset: the reset state; invalidate: the
# exception). With `*args` SQLAlchemy takes the function for reset's pre-2.0 two-argument form
# and warns on every reset; under the tests' warnings-as-errors that warning failed the reset and
# the pool threw the connection away instead of keeping it.
@event.listens_for(Pool, "reset")
@event.listens_for(Pool, "invalidate")
def _forget(dbapi_connection: Any, record: Any, _state_or_error: Any) -> None:
    if record is not None:
        record.info.pop(_BEHIND, None)  # nothing queued outlives its checkout or its connection


def _through_executor(connection: Connection, stmt: Any, params: dict[str, Any]) -> Executed:
    result = connection.execute(stmt, params)
    rows = [dict(row._mapping) for row in result] if result.returns_rows else []
    if getattr(stmt, "is_insert", False):
        sent = result.last_inserted_params()
    elif getattr(stmt, "is_update", False):
        sent = result.last_updated_params()
    else:
        sent = params
    return Executed(rows, dict(sent))
