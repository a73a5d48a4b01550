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
    engine, stmt = _engine(cfg["DATABASE_URL"])
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
