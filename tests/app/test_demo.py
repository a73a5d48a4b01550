"""`flask --app app demo`: signed webhooks through the real HTTP endpoint, then correct balances.

The app is served over loopback HTTP by werkzeug's server (the demo posts with `requests`, as it
does against `make run`), and a real RQ worker processes what it enqueued.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from app.demo import SHOPIFY_DOMAIN as SHOPIFY
from app.demo import WOO_URL as WOO
from tests.conftest import free_port


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
