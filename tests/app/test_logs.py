"""Log lines carry the ids passed in `extra=`, as key=value pairs or as one JSON object a line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SCRIPT = (
    "import logging; from app import create_app; create_app(); "
    "log = logging.getLogger('app.web.webhooks'); "
    "log.warning('invalid webhook signature', extra={'platform': 'shopify', 'shop': 7, 'topic': 'orders/paid'})\n"
    "try:\n    raise ValueError('boom')\nexcept ValueError:\n    log.exception('webhook receiver failed', extra={'shop': 7})"
)


def _stderr(tmp_path: Path, fmt: str) -> list[str]:
    env = {**os.environ, "LOG_FORMAT": fmt, "INSTANCE_PATH": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stderr.splitlines()


def test_json_lines_carry_the_extras(tmp_path):
    # when the app logs with LOG_FORMAT=json
    lines = [json.loads(line) for line in _stderr(tmp_path, "json")]

    # then each line is one object with the message and the ids, a traceback inside its line
    first, second = lines
    assert {k: first[k] for k in ("level", "logger", "message", "platform", "shop", "topic")} == {
        "level": "WARNING", "logger": "app.web.webhooks", "message": "invalid webhook signature",
        "platform": "shopify", "shop": 7, "topic": "orders/paid"}
    assert second["message"] == "webhook receiver failed" and second["shop"] == 7
    assert "ValueError: boom" in second["exception"]


def test_text_lines_carry_the_extras_as_pairs(tmp_path):
    # when the app logs with the default format
    lines = _stderr(tmp_path, "text")

    # then the ids follow the message as key=value pairs, and a traceback follows the line
    assert lines[0].endswith("WARNING app.web.webhooks invalid webhook signature platform=shopify shop=7 topic=orders/paid")
    assert lines[1].endswith("ERROR app.web.webhooks webhook receiver failed shop=7")
    assert lines[-1] == "ValueError: boom"
