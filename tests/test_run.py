"""`make run`'s process manager for real: Redis, migrations, web + worker + clock, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def test_run_starts_everything_on_port_and_stops_everything_on_sigterm(tmp_path):
    # given a fresh instance folder, a free port and no REDIS_URL
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY", "ENCRYPTION_KEY")}
    env.update(PORT=str(port), INSTANCE_PATH=str(tmp_path), STAMMKUNDE_ENV="development", PYTHONUNBUFFERED="1")
    runner = subprocess.Popen([sys.executable, "-m", "app.runner"], cwd=PROJECT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    finally:
        # and when it gets SIGTERM, every process it started stops
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert alive == [], output
    assert runner.returncode is not None
    assert "stopped embedded redis-server" in output
