"""Reference endpoints and a reference job, to put the app's numbers next to a floor.

- `create_bare()`:  POST /webhooks/shopify reads the body and answers 200. Nothing else.
- `create_floor()`: POST /webhooks/shopify does the physical minimum of a *durable* acknowledgement:
  HMAC-SHA256 of the body checked against X-Shopify-Hmac-Sha256 (constant-time), then ONE INSERT of
  the body into `bench_floor_inbox` on the same database as the app, committed, then 200. Raw driver
  (sqlite3 / psycopg), one connection per gunicorn worker, opened after the fork. SQLite gets the
  app's pragmas (WAL, synchronous=NORMAL, busy_timeout) and the INSERT runs in autocommit mode (its
  implicit transaction commits it); PostgreSQL runs it in autocommit mode, i.e. one round trip that
  is committed (synchronous_commit as configured on the server, on by default).
- `noop_job()`: the RQ job that does nothing, to measure RQ's own per-job cost.

Configured through the environment of the gunicorn process: BENCH_DATABASE (an `sqlite:///path` or a
`postgresql://` libpq URI) and BENCH_SECRET.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from typing import Any

from flask import Flask, request

FLOOR_TABLE = "bench_floor_inbox"


def create_bare() -> Flask:
    """Reference (a): a bare Flask endpoint returning 200."""
    app = Flask(__name__)

    @app.post("/webhooks/<platform>")
    def receive(platform: str) -> Any:
        request.get_data(cache=False)
        return "", 200

    return app


def floor_table_sql(kind: str) -> str:
    """DDL of the floor's inbox table (an id, a timestamp, the raw body)."""
    if kind == "sqlite":
        return (f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} "
                "(id INTEGER PRIMARY KEY, received_at REAL NOT NULL, body BLOB NOT NULL)")
    return (f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} "
            "(id BIGSERIAL PRIMARY KEY, received_at DOUBLE PRECISION NOT NULL, body BYTEA NOT NULL)")


class _Inbox:
    """One raw-driver connection per process (gunicorn forks after import, so open lazily)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pid: int | None = None
        self.conn: Any = None
        self.sql = ""

    def insert(self, body: bytes) -> None:
        if self.pid != os.getpid():
            self._connect()
        self.conn.execute(self.sql, (time.time(), body))

    def _connect(self) -> None:
        if self.url.startswith("sqlite:///"):
            import sqlite3

            conn = sqlite3.connect(self.url[len("sqlite:///"):], isolation_level=None,
                                   check_same_thread=False, timeout=30)
            # The same pragmas as app/db.py.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self.sql = f"INSERT INTO {FLOOR_TABLE} (received_at, body) VALUES (?, ?)"
        else:
            import psycopg

            conn = psycopg.connect(self.url, autocommit=True)
            self.sql = f"INSERT INTO {FLOOR_TABLE} (received_at, body) VALUES (%s, %s)"
        self.conn = conn
        self.pid = os.getpid()


def create_floor() -> Flask:
    """Reference (b): HMAC-SHA256 verify + one committed INSERT of the body, then 200."""
    app = Flask(__name__)
    secret = os.environ["BENCH_SECRET"].encode()
    inbox = _Inbox(os.environ["BENCH_DATABASE"])

    @app.post("/webhooks/<platform>")
    def receive(platform: str) -> Any:
        body = request.get_data(cache=False)
        given = (request.headers.get("X-Shopify-Hmac-Sha256") or "").encode()
        expected = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest())
        if not hmac.compare_digest(expected, given):
            return "", 401
        inbox.insert(body)
        return "", 200

    return app


def noop_job(*args: Any) -> None:
    """An RQ job that does nothing (RQ's per-job overhead)."""
    return


def create_bare_json() -> Flask:
    """Reference for the storefront: a bare Flask endpoint answering any GET with a small JSON."""
    from flask import jsonify

    app = Flask(__name__)

    @app.get("/", defaults={"path": ""})
    @app.get("/<path:path>")
    def answer(path: str) -> Any:
        return jsonify(available=0, pending=0)

    return app
