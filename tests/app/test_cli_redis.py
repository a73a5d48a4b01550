"""`flask` commands beside `make run`: they find its Redis, or say in one line that they cannot.

`make run` records its embedded Redis in instance/make-run.json; app/config.py falls back to it
when REDIS_URL is unset, so a second terminal needs no extra variables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import func, select

from app import queues
from app.db import session_scope
from app.models import LedgerEntry, Redemption, ReminderMessage
from tests.conftest import WOO_DOMAIN, free_port
from tests.factories import apply, order, program

pytestmark = pytest.mark.sqlite_only  # none of these depends on which database

EMAIL = "kundin@example.test"
REWARD = "5 € Rabatt"


def _counts() -> tuple[int, int, int]:
    with session_scope() as s:
        return (s.scalar(select(func.count()).select_from(ReminderMessage)) or 0,
                s.scalar(select(func.count()).select_from(Redemption)) or 0,
                s.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


def _customer_with_points_and_a_due_notice(make_shop) -> None:  # type: ignore[no-untyped-def]
    """A WooCommerce customer with 600 available points, whose earned-points notice is due."""
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck", "consumer_secret": "cs"})
    program(shop, {"earning": {"return_window_days": 0}, "second_purchase": {"enabled": False},
                   "referral": {"enabled": False}, "reminders": {"notices": {"points_earned": True}}})
    apply(shop, order("1", "600.00"))


def _app_beside_make_run(instance: Path, database_url: str, redis_url: str, monkeypatch):  # type: ignore[no-untyped-def]
    """The app as `flask` builds it in a second terminal: no REDIS_URL, the run file of `make run`."""
    from app import create_app

    monkeypatch.setenv("INSTANCE_PATH", str(instance))
    monkeypatch.delenv("REDIS_URL", raising=False)
    (instance / "make-run.json").write_text(json.dumps(
        {"redis_url": redis_url, "web_url": "http://127.0.0.1:5000", "public_url": "http://127.0.0.1:5000"}))
    queues.configure(None)
    return create_app({"TESTING": True, "DATABASE_URL": database_url, "DISPATCH_INTERVAL_MS": 0,
                       "SHOP_CACHE_SECONDS": 0})


@pytest.fixture
def reset_queues() -> Iterator[None]:
    yield
    queues.configure(None)


@pytest.mark.parametrize("_case, args, queue", [
    ("reminder sweep", ["reminders", "sweep"], "reminders"),
    ("staff redemption", ["rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", REWARD], "codes"),
])
def test_commands_beside_make_run_enqueue_on_its_redis(_case, args, queue, app, make_shop, database_url, redis_url,
                                                       tmp_path, monkeypatch, reset_queues):
    # given `make run`'s run file naming its Redis, and no REDIS_URL in this terminal
    _customer_with_points_and_a_due_notice(make_shop)
    beside = _app_beside_make_run(tmp_path, database_url, redis_url, monkeypatch)
    assert beside.config["REDIS_URL"] == redis_url

    # when the command runs
    result = beside.test_cli_runner().invoke(args=args)

    # then it worked and its job waits on that Redis for the worker
    assert result.exit_code == 0, result.output
    assert Queue(queue, connection=Redis.from_url(redis_url)).count == 1


@pytest.mark.parametrize("_case, args", [
    ("reminder sweep", ["reminders", "sweep"]),
    ("staff redemption", ["rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", REWARD]),
    ("all sweeps", ["sweep"]),
    ("requeue deliveries", ["deliveries", "requeue"]),
])
def test_commands_without_redis_say_so_in_one_line_and_change_nothing(_case, args, app, make_shop):
    # given a due notice and points to redeem, and a Redis that does not answer (a stale run file's)
    _customer_with_points_and_a_due_notice(make_shop)
    before = _counts()
    queues.configure(f"redis://127.0.0.1:{free_port()}/0")

    # when the command runs
    result = app.test_cli_runner().invoke(args=args)

    # then it fails with one clear line, no traceback, and wrote nothing
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach Redis at 127.0.0.1:"), result.output
    assert "Traceback" not in result.output
    assert _counts() == before


def test_commands_without_any_redis_configured_say_how_to_get_one(app, make_shop):
    # given no REDIS_URL and no `make run` running
    _customer_with_points_and_a_due_notice(make_shop)
    before = _counts()
    queues.configure(None)
    app.config["REDIS_URL"] = None

    # when support runs the reminder sweep
    result = app.test_cli_runner().invoke(args=["reminders", "sweep"])

    # then one line says what to do, and nothing was written
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: no Redis: REDIS_URL is not set and no `make run` is running; start `make run` or set REDIS_URL. "
        "Nothing was changed."]
    assert _counts() == before


def test_a_stale_run_file_fails_at_once(app, make_shop, database_url, tmp_path, monkeypatch, reset_queues):
    # given a run file left by a `make run` that was killed (its Redis port is closed now)
    _customer_with_points_and_a_due_notice(make_shop)
    before = _counts()
    stale = _app_beside_make_run(tmp_path, database_url, f"redis://127.0.0.1:{free_port()}/0", monkeypatch)

    # when a command that needs Redis runs
    started = time.monotonic()
    result = stale.test_cli_runner().invoke(args=["rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL,
                                                  "--reward", REWARD])

    # then it fails at once with one line, and nothing was redeemed
    assert result.exit_code == 1 and time.monotonic() - started < 5
    assert len(result.output.strip().splitlines()) == 1 and "cannot reach Redis" in result.output
    assert _counts() == before
