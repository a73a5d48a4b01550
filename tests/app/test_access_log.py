"""gunicorn's access log, as the Procfile runs it, keeps no tokens and no query strings."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app.gunicorn_logging import redact_path, redact_url
from tests.conftest import free_port

PROJECT = Path(__file__).resolve().parents[2]
TOKEN = "eyJzIjoxLCJjIjo0Mn0.Z3xQ.secret-signature"


@pytest.mark.parametrize(
    ("_case", "path", "logged"),
    [
        ("customer page", f"/r/{TOKEN}?x=1", "/r/[redacted]?[redacted]"),
        ("customer page action", f"/r/{TOKEN}/redeem", "/r/[redacted]/redeem"),
        ("unsubscribe", f"/u/{TOKEN}", "/u/[redacted]"),
        ("double opt-in", f"/consent/confirm/{TOKEN}", "/consent/confirm/[redacted]"),
        ("admin search", "/admin/customers?q=anna@example.test", "/admin/customers?[redacted]"),
        ("friend page (a code meant to be shared)", "/f/3/FREUND-ANNA", "/f/3/FREUND-ANNA"),
        ("a path that only starts alike", "/rewards/x", "/rewards/x"),
    ],
)
def test_paths_are_redacted(_case, path, logged):
    assert redact_path(path) == logged


def test_a_referer_keeps_its_host_and_loses_its_token():
    assert redact_url(f"https://shop.example/r/{TOKEN}?utm=1") == "https://shop.example/r/[redacted]?[redacted]"


def test_gunicorn_access_log_holds_neither_the_token_nor_the_query(tmp_path):
    # given gunicorn started by the Procfile's own web command, its access log in a file, with a
    # format that shows every atom built from the URL and the Referer
    port = free_port()
    log = tmp_path / "access.log"
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    web = next(line for line in (PROJECT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    command = shlex.split(web.removeprefix("web:").replace("${HOST:-127.0.0.1}:$PORT", f"127.0.0.1:{port}"))
    assert command[0] == "gunicorn" and command[command.index("--access-logfile") + 1] == "-"
    command[command.index("--access-logfile") + 1] = str(log)
    command[:1] = [sys.executable, "-m", "gunicorn", "--access-logformat",
                   '%(h)s "%(r)s" %(U)s %(q)s %(s)s "%(f)s" %({raw_uri}e)s %({referer}i)s']
    server = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still booting
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)

        # when a customer opens their page with a query, coming from another such page
        requests.get(f"http://127.0.0.1:{port}/r/{TOKEN}?x=1", timeout=10,
                     headers={"Referer": f"http://127.0.0.1:{port}/u/{TOKEN}?email=anna@example.test"})
        deadline = time.monotonic() + 10
        while "/r/" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "no access line"
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(20)

    # then the line names the route and the answer, and neither the token nor the query
    text = log.read_text()
    line = next(line for line in text.splitlines() if "/r/" in line)
    assert '"GET /r/[redacted]?[redacted] HTTP/1.1"' in line
    assert TOKEN.split(".")[-1] not in text and "x=1" not in text and "anna@example.test" not in text
