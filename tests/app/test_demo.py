"""`flask --app app demo`: signed webhooks through the real HTTP endpoint, then correct balances.

The app is served over loopback HTTP by werkzeug's server (the demo posts with `requests`, as it
does against `make run`), and a real RQ worker processes what it enqueued.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from app.web.demo import SHOPIFY_DOMAIN as SHOPIFY
from app.web.demo import WOO_URL as WOO
from app.models import Shop
from tests.conftest import free_port

pytestmark = pytest.mark.sqlite_only  # none of these depends on which database


@pytest.fixture
def served(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Serve the app on a free loopback port; yield its base URL."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(10)


def _show(runner, shop: str, email: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    result = runner.invoke(args=["customers", "show", "--shop", shop, "--email", email, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_demo_posts_signed_webhooks_and_the_balances_come_out_right(served, runner, work):
    # given the app answering on HTTP, with no shops yet

    # when the demo registers its shops and posts its deliveries, and the worker runs
    result = runner.invoke(args=["demo", "--url", served])
    work()

    # then every delivery was accepted (the duplicate too, as a duplicate) ...
    assert result.exit_code == 0, result.output
    statuses = [line.split()[0] for line in result.output.splitlines()[:9]]
    assert statuses == ["200"] * 9

    # ... and each customer's points say what happened (1 point per EUR, pending for 14 days)
    anna = _show(runner, SHOPIFY, "anna@example.test")
    assert (anna["pending"], anna["available"]) == (196, 0)  # 587 earned once, 391 reversed
    assert [e["reason"] for e in anna["ledger"]] == ["earn", "refund"]
    ben = _show(runner, SHOPIFY, "ben@example.test")  # the guest order
    assert (ben["pending"], ben["available"]) == (120, 0)
    carla = _show(runner, SHOPIFY, "carla@example.test")  # refund first, order after
    assert (carla["pending"], carla["available"]) == (196, 0)
    jana = _show(runner, WOO, "jana@example.test")  # WooCommerce, 5.00 of 25.00 refunded
    assert (jana["pending"], jana["available"]) == (20, 0)


def test_demo_refuses_to_start_when_the_app_does_not_answer_and_registers_nothing(app, runner, session):
    # given no app answering at the URL (a port nobody listens on)
    url = f"http://127.0.0.1:{free_port()}"

    # when the demo runs
    result = runner.invoke(args=["demo", "--url", url])

    # then it says so in one line, and no demo shop was half set up
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: the app does not answer at {url}: start it with `make run` first (or pass --url)"]
    assert session.scalar(select(func.count()).select_from(Shop)) == 0


def test_demo_finds_the_app_make_run_recorded(app, served, runner):
    # given `make run` recorded its web URL (app.config's WEB_URL comes from instance/make-run.json)
    app.config["WEB_URL"] = served

    # when the demo runs without --url
    result = runner.invoke(args=["demo"])

    # then it posted there
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()[:9]] == ["200"] * 9
    assert f"{served}/admin/customers?q=example.test" in result.output


def test_demo_runs_again_and_its_printed_commands_run_as_printed(served, runner, work):
    # given the demo ran once and the worker processed it
    assert runner.invoke(args=["demo", "--url", served]).exit_code == 0
    work()

    # when it runs a second time
    again = runner.invoke(args=["demo", "--url", served])
    work()

    # then it succeeds, changes no balance (every delivery is a duplicate) ...
    assert again.exit_code == 0, again.output
    assert (_show(runner, SHOPIFY, "anna@example.test")["pending"], _show(runner, WOO, "jana@example.test")["pending"]) == (196, 20)
    # ... and each command it prints runs from the checkout exactly as printed
    printed = [line.strip() for line in again.output.splitlines() if "customers show" in line]
    assert len(printed) == 4
    for line in printed:
        program, *args = shlex.split(line)
        assert program == ".venv/bin/flask" and args[:2] == ["--app", "app"]
        shown = runner.invoke(args=args[2:])
        assert shown.exit_code == 0 and "available" in shown.output, shown.output
