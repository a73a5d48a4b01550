"""What-if: the app with its webhook view's INSERT done the cheap way, to measure a suggested fix.

    gunicorn 'bench.whatif:create_app()'        (used by `python -m bench.ingest --whatif`)

This is NOT the app: it is `app.create_app()` with the `webhooks.receive` view replaced by a copy of
app/webhooks.py's view in which only the "record" step differs:

- the INSERT construct is built once per process (values are bound per call), not per request;
- it runs as ONE autocommit statement, `INSERT ... ON CONFLICT DO NOTHING RETURNING id`, which is
  atomic on its own: on SQLite no `BEGIN IMMEDIATE` is sent, so the write lock is held only while
  SQLite executes the statement (not while Python builds and binds it); on PostgreSQL there is no
  BEGIN and no COMMIT round trip;
- its engine has no `pool_pre_ping` (set BENCH_WHATIF_PRE_PING=1 to keep the ping and see its cost).

With BENCH_WHATIF=raw the record step goes further: the same single statement is sent through ONE
raw driver connection per worker process (sqlite3 / psycopg, opened after the fork, autocommit,
the app's SQLite pragmas), with the SQL string written once, i.e. the floor's INSERT plus the
dedupe key's ON CONFLICT and RETURNING; a database error answers 503 and drops the connection.

Everything else (shop cache, secrets, verify, topic check, json.loads, dedupe key, dispatcher,
answers) is the app's own code. Nothing in app/ is changed.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from flask import Flask, current_app, request
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError

from app.models import WebhookDelivery, utcnow
from app.shops import webhook_secrets
from app.webhooks import _answer, _kept_headers, _shops
from connectors import CONNECTORS
from connectors.errors import InvalidSignatureError, MissingSignatureError

logger = logging.getLogger("app.webhooks")

_state: dict[str, Any] = {}


def _engine(url: str) -> tuple[Engine, Any]:
    """An autocommit engine and the prebuilt INSERT for this process (created after the fork)."""
    if _state.get("pid") == os.getpid():
        return _state["engine"], _state["insert"]
    table = WebhookDelivery.__table__
    pre_ping = os.environ.get("BENCH_WHATIF_PRE_PING") == "1"
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               isolation_level="AUTOCOMMIT", pool_pre_ping=pre_ping)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:  # the app's pragmas
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        base = sqlite.insert(table)
    else:
        engine = create_engine(url, pool_size=5, max_overflow=10, isolation_level="AUTOCOMMIT",
                               pool_pre_ping=pre_ping)
        base = postgresql.insert(table)
    stmt = base.on_conflict_do_nothing(index_elements=["shop_id", "dedupe_key"]).returning(table.c.id)
    _state.update(pid=os.getpid(), engine=engine, insert=stmt)
    return engine, stmt


_RAW_COLUMNS = ("shop_id", "platform", "topic", "dedupe_key", "headers", "body", "status", "attempts", "received_at")


def _raw_insert(url: str, values: dict[str, Any]) -> int | None:
    """One autocommit INSERT ... ON CONFLICT DO NOTHING RETURNING id on this process's own connection."""
    if _state.get("raw_pid") != os.getpid():
        _state.update(raw_pid=os.getpid(), raw=None)
    if _state["raw"] is None:
        cols = ", ".join(_RAW_COLUMNS)
        if url.startswith("sqlite"):
            import sqlite3

            conn = sqlite3.connect(url.split("///", 1)[1], isolation_level=None, check_same_thread=False, timeout=30)
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
                conn.execute(f"PRAGMA {pragma}")
            marks = ", ".join("?" for _ in _RAW_COLUMNS)
            errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
        else:
            import psycopg
            from sqlalchemy.engine import make_url

            u = make_url(url)
            conn = psycopg.connect(dbname=u.database, user=u.username, host=u.query.get("host"),
                                   port=u.port, password=u.password, autocommit=True)
            marks = ", ".join("%s::json" if c == "headers" else "%s" for c in _RAW_COLUMNS)
            errors = (psycopg.Error,)
        sql = (f"INSERT INTO webhook_deliveries ({cols}) VALUES ({marks}) "
               "ON CONFLICT (shop_id, dedupe_key) DO NOTHING RETURNING id")
        _state.update(raw=conn, raw_sql=sql, raw_errors=errors, raw_sqlite=url.startswith("sqlite"))
    conn, sql = _state["raw"], _state["raw_sql"]
    params = dict(values, headers=json.dumps(values["headers"]))
    if _state["raw_sqlite"]:
        # What SQLAlchemy's SQLite DATETIME stores (UTCDateTime hands it naive UTC).
        params["received_at"] = values["received_at"].strftime("%Y-%m-%d %H:%M:%S.%f")
    try:
        row = conn.execute(sql, tuple(params[c] for c in _RAW_COLUMNS)).fetchone()
    except _state["raw_errors"] as exc:
        _state["raw"] = None
        try:
            conn.close()
        finally:
            raise OperationalError(sql, None, exc) from exc  # type: ignore[arg-type]
    return None if row is None else int(row[0])


def receive(platform: str) -> Any:
    """app.webhooks.receive, with the record step as one prebuilt autocommit statement."""
    connector = CONNECTORS.get(platform)
    if connector is None:
        return _answer(404, "unknown platform")
    body = request.get_data(cache=False)
    headers = request.headers
    if connector.is_ping(headers, body):
        return "", 200

    domain = connector.shop_from_headers(headers)
    try:
        shop = _shops.get(platform, domain, current_app.config["SHOP_CACHE_SECONDS"]) if domain else None
    except (OperationalError, DBAPIError):
        logger.exception("database unavailable", extra={"platform": platform})
        return _answer(503, "database unavailable, retry later")
    cfg = current_app.config
    if shop is None:
        secret, old = "", None
    else:
        secrets = webhook_secrets(
            shop,
            cfg["ENCRYPTION_KEY"],
            cfg["SHOPIFY_API_SECRET"] if platform == "shopify" else None,
            cfg["SHOPIFY_API_SECRET_OLD"] if platform == "shopify" else None,
            utcnow(),
        )
        secret, old = secrets.current or "", secrets.old
    try:
        connector.verify(headers, body, secret=secret, old_secret=old)
    except MissingSignatureError:
        return _answer(400, "missing signature")
    except InvalidSignatureError:
        if shop is None:
            return _answer(401, "unknown shop")
        if not secret:
            return _answer(500, "webhook secret not configured")
        return _answer(401, "invalid signature")
    assert shop is not None

    topic = connector.topic_from_headers(headers)
    if not topic:
        return _answer(400, "missing topic header")
    if topic not in connector.SUPPORTED_TOPICS:
        return _answer(200, "topic not handled")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _answer(400, "body is not JSON")
    if not isinstance(payload, dict):
        return _answer(400, "body is not a JSON object")
    key = connector.delivery_key(headers, body, payload)
    # --- the only difference: values first, then one autocommit statement ---
    values = {
        "shop_id": shop.id,
        "platform": platform,
        "topic": topic,
        "dedupe_key": key,
        "headers": _kept_headers(headers),
        "body": body,
        "status": "received",
        "attempts": 0,
        "received_at": utcnow(),
    }
    try:
        if os.environ.get("BENCH_WHATIF") == "raw":
            new_id = _raw_insert(cfg["DATABASE_URL"], values)
        else:
            engine, stmt = _engine(cfg["DATABASE_URL"])
            with engine.connect() as conn:
                new_id = conn.execute(stmt, values).scalar()
    except (OperationalError, DBAPIError):
        logger.exception("database unavailable", extra={"platform": platform, "shop": shop.id, "topic": topic})
        return _answer(503, "database unavailable, retry later")
    # --- end of the difference ---
    if new_id is None:
        return _answer(200, "duplicate")
    current_app.extensions["dispatcher"].notify(new_id)
    return _answer(200, "accepted")


def create_app() -> Flask:
    """The real app, with the webhook view swapped for the what-if one above."""
    from app import create_app as create_real_app

    app = create_real_app()
    app.view_functions["webhooks.receive"] = receive
    return app
