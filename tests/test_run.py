"""`make run`'s process manager for real: Redis, migrations, web + worker + clock, clean stop."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import psutil
import requests

from tests.conftest import free_port

PROJECT = Path(__file__).resolve().parent.parent


def _wait_for(url: str, seconds: float) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return requests.get(url, timeout=5)
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _wait_until(check, seconds: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.3)


def test_run_starts_everything_on_port_and_stops_everything_on_sigterm(tmp_path):
    # given a fresh instance folder, a free port and no REDIS_URL
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY", "ENCRYPTION_KEY")}
    env.update(PORT=str(port), INSTANCE_PATH=str(tmp_path), STAMMKUNDE_ENV="development", PYTHONUNBUFFERED="1")
    runner = subprocess.Popen([sys.executable, "-m", "app.runner"], cwd=PROJECT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics_dir = None
    try:
        # when it has started
        page = _wait_for(f"http://127.0.0.1:{port}/admin/login", 60)
        children = psutil.Process(runner.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children if c.is_running())

        # then the admin page answers on PORT, the database was migrated and Redis runs embedded
        assert page.status_code == 200
        # and gunicorn answers the webhook path through the app's own receiver (unknown shop: 401)
        webhook = requests.post(f"http://127.0.0.1:{port}/webhooks/shopify", data=b"{}", timeout=10, headers={
            "X-Shopify-Shop-Domain": "nobody.myshopify.com", "X-Shopify-Hmac-Sha256": "AAAA",
            "X-Shopify-Topic": "orders/paid"})
        assert (webhook.status_code, webhook.json()["message"]) == (401, "unknown shop")
        assert (tmp_path / "stammkunde.db").exists() and (tmp_path / "redis").is_dir()
        assert "redis-server" in names and "gunicorn" in names and "rq worker" in names and "rq cron" in names
        # and the monitors see a ready app (the worker's heartbeat) and, from either gunicorn
        # worker, the delivery that one of them counted (multiprocess metrics in a folder of this run)
        _wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200, 30)
        counted = 'stammkunde_webhook_deliveries_total{platform="shopify",status="401",topic=""} 1.0'
        for _ in range(4):
            assert counted in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        metrics_dirs = {c.environ().get("PROMETHEUS_MULTIPROC_DIR") for c in children if c.is_running()} - {None}
        assert len(metrics_dirs) == 1
        metrics_dir = metrics_dirs.pop()
        assert Path(metrics_dir).is_dir()
    finally:
        # and when it gets SIGTERM, every process it started stops
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert alive == [], output
    assert runner.returncode is not None
    assert "stopped embedded redis-server" in output
    # and the metrics folder it made is gone
    assert metrics_dir is not None and not Path(metrics_dir).exists()


class _Output:
    """The runner's output, read line by line in a thread (so the test can react to a line)."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} within {seconds} s:\n" + "\n".join(self.lines))

    def close(self) -> str:
        self._thread.join(30)
        self._stream.close()
        return "\n".join(self.lines)


def _second_terminal(instance: Path) -> dict[str, str]:
    """The environment of a second terminal beside `make run`: no REDIS_URL, PORT or PUBLIC_URL."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY", "ENCRYPTION_KEY", "PORT", "PUBLIC_URL")}
    env.update(INSTANCE_PATH=str(instance), STAMMKUNDE_ENV="development", PYTHONUNBUFFERED="1")
    return env


def _flask(instance: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=PROJECT, input=stdin,
                          env=_second_terminal(instance), capture_output=True, text=True, timeout=60)


def _wait(predicate, seconds: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def _earned(database: Path) -> int:
    with closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT count(*) FROM ledger_entries WHERE reason = 'earn'").fetchone()[0]


def test_first_run_demo_commands_and_email_links_then_a_quiet_ctrl_c(tmp_path):
    # given `make run` on a free port with a fresh instance folder, no REDIS_URL and no PUBLIC_URL
    port = free_port()
    env = _second_terminal(tmp_path) | {"PORT": str(port)}
    runner = subprocess.Popen([sys.executable, "-m", "app.runner"], cwd=PROJECT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    output = _Output(runner.stdout)
    started: list[psutil.Process] = []
    try:
        # when it prints the admin URL, the web server answers there already
        admin_line = output.wait_for("admin page:", 90)
        # honcho writes its prefix and its line apart, so the runner's line may follow a prefix.
        admin_url = re.search(r"admin page:\s+(\S+)", admin_line).group(1)
        assert admin_url == f"http://127.0.0.1:{port}/admin/"
        assert requests.get(admin_url + "login", timeout=5).status_code == 200
        started = psutil.Process(runner.pid).children(recursive=True)
        run_file = tmp_path / "make-run.json"
        assert run_file.stat().st_mode & 0o077 == 0

        # and the demo, in a second terminal with nothing set, posts to that port
        demo = _flask(tmp_path, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert [line.split()[0] for line in demo.stdout.splitlines()[:9]] == ["200"] * 9
        printed = [line.strip() for line in demo.stdout.splitlines() if "customers show" in line]
        assert printed and all(line.startswith(".venv/bin/flask --app app ") for line in printed)
        assert f"http://127.0.0.1:{port}/admin/customers?q=example.test" in demo.stdout

        # and once the worker has awarded the points, a command beside `make run` enqueues on its Redis
        _wait(lambda: _earned(tmp_path / "stammkunde.db") >= 3, 30, "the worker awarding the demo orders")
        program = json.dumps({"reminders": {"notices": {"points_earned": True},
                                            "sending": {"quiet_start": "00:00", "quiet_end": "00:00"}}})
        applied = _flask(tmp_path, "program", "set", "--shop", "stammkunde-demo.myshopify.com", "--file", "-",
                         stdin=program)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        sweep = _flask(tmp_path, "reminders", "sweep")
        assert sweep.returncode == 0, sweep.stdout + sweep.stderr
        assert "send jobs enqueued: 0" not in sweep.stdout, sweep.stdout

        # then the worker's e-mail links to the web server (not the worker's own PORT), and the link opens
        message = _wait(lambda: sorted((tmp_path / "outbox").glob("*.eml")), 30, "an e-mail in the outbox")[0]
        parsed = email.message_from_bytes(message.read_bytes(), policy=email.policy.default)
        text = parsed.get_body(("plain",)).get_content()
        links = re.findall(r"https?://[^\s\"'<>]+", text)
        assert links and all(link.startswith(f"http://127.0.0.1:{port}/") for link in links if "127.0.0.1" in link)
        rewards = next(link for link in links if f"127.0.0.1:{port}/r/" in link)
        page = requests.get(rewards, timeout=10)
        assert page.status_code == 200 and "Stammkunde Demo (Shopify)" in page.text

        # and when Ctrl-C reaches the terminal's process group
        before_ctrl_c = len(output.lines)
        os.killpg(runner.pid, signal.SIGINT)
        runner.wait(60)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(10)
        for proc in started:
            if proc.is_running():
                proc.kill()
    log = output.close()
    after = "\n".join(log.splitlines()[before_ctrl_c:])

    # then everything stops quietly: no connection errors from a worker whose Redis went first
    for noise in ("Traceback", "ConnectionError", "could not connect to Redis"):
        assert noise not in after, after
    assert "stopped embedded redis-server" in after
    assert not (tmp_path / "make-run.json").exists()
    gone, alive = psutil.wait_procs(started, timeout=20)
    assert alive == []
    # and the admin URL came after the web server's start, not before
    assert log.index("admin page:") > log.index("Listening at: http://127.0.0.1:")
