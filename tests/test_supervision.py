"""`make run` under supervisord: a killed worker or Redis comes back by itself, nothing lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import redis

from app.web.demo import SHOPIFY_SECRET, _post, shopify_order
from tests.conftest import free_port
from tests.test_run import PROJECT, _flask, _Output, _second_terminal, _wait

FIRST_ORDER = 7_000_000


class _Run:
    """A `make run` on a free port with its own instance folder, and what it started."""

    def __init__(self, instance: Path, env: dict[str, str] | None = None) -> None:
        self.instance = instance
        self.port = free_port()
        # The sweep re-enqueues deliveries whose enqueue failed while Redis was away after 3 s, not 60.
        env = _second_terminal(instance) | {"PORT": str(self.port), "REQUEUE_AFTER_SECONDS": "3"} | (env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "app.runner"], cwd=PROJECT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.output = _Output(self.proc.stdout)
        self.seen: set[psutil.Process] = set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def program(self, needle: str) -> psutil.Process | None:
        """Return the running process (direct child of supervisord) whose command line holds `needle`."""
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            self.seen.add(child)
            try:
                if needle in " ".join(child.cmdline()) and child.parent().name() != child.name():
                    return child
            except psutil.NoSuchProcess:
                continue
        return None

    def stop(self) -> str:
        """SIGTERM to the runner's group; then make sure nothing it started is left (SIGKILL)."""
        supervisord = psutil.Process(self.proc.pid).children()
        groups = set()
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            self.seen.add(child)
            if supervisord and child.ppid() == supervisord[0].pid:
                groups.add(child.pid)  # supervisord starts each program in a process group of its own
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        _, alive = psutil.wait_procs(list(self.seen), timeout=20)
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the group is gone: what the test wants
        log = self.output.close()
        assert alive == [], log
        return log


@pytest.fixture()
def make_run(tmp_path: Path) -> Iterator[_Run]:
    run = _Run(tmp_path)
    try:
        run.output.wait_for("admin page:", 90)
        demo = _flask(tmp_path, "demo")  # registers the demo shops (and posts the demo orders)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        yield run
    finally:
        run.stop()


def _post_order(run: _Run, order_id: int) -> int:
    body = shopify_order(order_id, email=f"c{order_id}@example.test", customer_id=order_id, subtotal="10.00",
                         status="paid", updated_at=datetime.now(UTC))
    return _post(run.base, "shopify", "orders/paid", body, SHOPIFY_SECRET, f"evt-{order_id}")


def _counts(database: Path, first: int, last: int) -> tuple[int, int, int]:
    """(deliveries processed, deliveries in all, earn entries) for the orders first..last."""
    ids = [str(i) for i in range(first, last + 1)]
    marks = ",".join("?" * len(ids))
    with closing(sqlite3.connect(database, timeout=30)) as db:
        earned = db.execute(
            "SELECT count(*) FROM ledger_entries e JOIN orders o ON e.source_type = 'order' "
            f"AND e.source_id = CAST(o.id AS TEXT) WHERE e.reason = 'earn' AND o.platform_id IN ({marks})",
            ids).fetchone()[0]
        statuses = [status for (status,) in db.execute(
            f"SELECT status FROM webhook_deliveries WHERE dedupe_key IN ({marks})", [f"orders/paid|event:evt-{i}" for i in ids])]
    return statuses.count("processed"), len(statuses), earned


def _restarted(run: _Run, needle: str, old_pid: int, seconds: float) -> psutil.Process:
    return _wait(lambda: (p := run.program(needle)) is not None and p.pid != old_pid and p, seconds,
                 f"a new {needle} process")


def test_a_killed_worker_comes_back_and_processes_what_arrives_next(make_run):
    # given the app running with its worker
    worker = make_run.program("rq worker")
    assert worker is not None

    # when the worker is killed with SIGKILL
    killed_at = time.monotonic()
    worker.send_signal(signal.SIGKILL)

    # then supervisord starts a new one
    _restarted(make_run, "rq worker", worker.pid, 30)
    make_run.output.wait_for("spawned: 'worker'", 5)
    # and an order posted after that earns its points
    assert _post_order(make_run, FIRST_ORDER) == 200
    _wait(lambda: _counts(make_run.instance / "stammkunde.db", FIRST_ORDER, FIRST_ORDER) == (1, 1, 1), 60,
          "the order processed")
    print(f"worker killed: order processed {time.monotonic() - killed_at:.1f} s after the kill")


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize(("_case", "away"), [("restarted at once", 0.0), ("away for 20 s", 20.0)])
def test_a_killed_redis_comes_back_and_every_delivery_is_processed_once(make_run, _case, away):
    # given a steady stream of signed orders, 5 a second for 10 s, all during the outage when Redis is away for longer
    database = make_run.instance / "stammkunde.db"
    redis_server = make_run.program("redis-server")
    assert redis_server is not None
    client = redis.Redis.from_url(json.loads((make_run.instance / "make-run.json").read_text())["redis_url"],
                                  socket_timeout=0.2, socket_connect_timeout=0.2)
    conf, conf_away = make_run.instance / "redis.conf", make_run.instance / "redis.conf.away"
    statuses: list[int] = []
    first, count = FIRST_ORDER + 100, 50
    killed_at = back_at = None
    for n in range(count):
        started = time.monotonic()
        # when redis-server is killed with SIGKILL 2 s in (and, for a longer outage, its config file
        # is taken away for `away` seconds: each restart fails at once and supervisord backs off)
        if n == 10:
            if away:
                conf.rename(conf_away)
            redis_server.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
        statuses.append(_post_order(make_run, first + n))
        if killed_at and back_at is None and _answers(client):
            back_at = time.monotonic()
        time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
    if away:
        time.sleep(max(0.0, away - (time.monotonic() - killed_at)))
        conf_away.rename(conf)

    # then the receiver answered every one with 200
    assert statuses == [200] * count
    # and Redis came back (a new redis-server, answering with the password)
    _restarted(make_run, "redis-server", redis_server.pid, 30)
    _wait(lambda: _answers(client), 30, "Redis answering")
    back_at = back_at or time.monotonic()
    client.close()
    # and in the end every delivery is processed exactly once: 0 lost, 0 doubled
    _wait(lambda: _counts(database, first, first + count - 1) == (count, count, count), 120,
          f"all {count} deliveries processed")
    done_at = time.monotonic()
    assert _counts(database, first, first + count - 1) == (count, count, count)
    restarts = [line for line in make_run.output.lines if "exited:" in line or "spawned:" in line]
    print(f"redis killed ({_case}): answering again after {back_at - killed_at:.1f} s, all {count} deliveries processed "
          f"once {done_at - killed_at:.1f} s after the kill; supervisord:\n" + "\n".join(restarts))


def test_the_embedded_redis_refuses_a_client_without_the_password(make_run):
    # given the embedded Redis's URL, as recorded for a second terminal
    url = json.loads((make_run.instance / "make-run.json").read_text())["redis_url"]
    with_password = redis.Redis.from_url(url)
    without = redis.Redis.from_url("redis://" + url.split("@", 1)[1])
    try:
        # when a client without the password runs a command, then it is refused
        with pytest.raises(redis.AuthenticationError):
            without.ping()
        # and with the password it is served
        assert with_password.ping() is True
    finally:
        with_password.close()
        without.close()
    # and the password is on no command line (every local user can read those)
    password = url.split("@", 1)[0].rsplit(":", 1)[1]
    make_run.program("redis-server")
    lines = [" ".join(proc.cmdline()) for proc in make_run.seen if proc.is_running()]
    assert lines and not [line for line in lines if password in line]


def test_the_supervisor_config_runs_the_procfile_lines_and_redis_first(tmp_path):
    # given the Procfile's lines and an embedded Redis
    import configparser
    import shlex

    from app.runner import START_RETRIES, embedded_redis, procfile_commands, supervisor_config

    commands = procfile_commands(PROJECT / "Procfile")
    redis_command, url = embedded_redis(tmp_path, 6399)

    # when the runner builds supervisord's configuration
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read_string(supervisor_config(tmp_path, commands, redis_command))

    # then each of web, worker and clock runs its Procfile line verbatim (supervisord's % escaped)
    for name, line in commands.items():
        section = parsed[f"program:{name}"]
        assert shlex.split(section["command"].replace("%%", "%")) == ["/bin/sh", "-c", f"exec {line}"]
        assert (section["autorestart"], section["startretries"]) == ("true", str(START_RETRIES))
    # and Redis starts before them and stops after them (lower priority), restarted the same way
    assert int(parsed["program:redis"]["priority"]) < min(int(parsed[f"program:{n}"]["priority"]) for n in commands)
    assert parsed["program:redis"]["startretries"] == str(START_RETRIES)
    # and its password is in a file only this user reads, not on its command line
    conf = tmp_path / "redis.conf"
    password = url.split("@", 1)[0].rsplit(":", 1)[1]
    assert conf.stat().st_mode & 0o077 == 0 and f"requirepass {password}" in conf.read_text()
    assert password not in parsed["program:redis"]["command"]
