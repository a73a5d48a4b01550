"""Reconciliation: an order change no webhook brought is fetched and processed once; one a webhook
already brought is the same delivery (WooCommerce, with the real order body)."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timezone

import responses
from sqlalchemy import func, select

from app.db import session_scope
from app.models import JobCursor, LedgerEntry, Shop, WebhookDelivery
from jobs.reconcile import reconcile_woocommerce
from tests.conftest import WOO_DOMAIN, fixture_bytes
from tests.jobs.test_points_flow import WOO_EMAIL, show

ORDERS = f"{WOO_DOMAIN}/wp-json/wc/v3/orders"
CREDS = {"consumer_key": "ck_0123456789abcdef0123456789abcdef01234567",
         "consumer_secret": "cs_0123456789abcdef0123456789abcdef01234567"}


def _as_the_api_answers(name: str) -> dict:  # type: ignore[type-arg]
    """The order of a real webhook body as GET orders lists it: the same state, plus `_links`."""
    order = json.loads(fixture_bytes("woocommerce", name))
    return {**order, "_links": {"self": [{"href": f"{ORDERS}/{order['id']}"}]}}


def _pages(*pages: list) -> None:  # type: ignore[type-arg]
    for page in pages:
        responses.get(ORDERS, json=page)


def _store(make_shop) -> int:  # type: ignore[no-untyped-def]
    shop_id = make_shop("woocommerce", credentials=CREDS)
    with session_scope() as s:
        s.get(Shop, shop_id).installed_at = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    return shop_id


@responses.activate
def test_an_order_whose_webhook_was_lost_is_brought_in_with_its_points(make_shop, work, runner):
    # given a store whose order.created webhook never reached us (the store gave up)
    shop_id = _store(make_shop)
    _pages([_as_the_api_answers("order_created.json")])

    # when the reconciliation runs and the worker processes what it found
    result = reconcile_woocommerce(shop_id)
    work()

    # then the order earned its 25 points, as the webhook would have
    assert result == {"seen": 1, "recovered": 1, "pages": 1}
    customer = show(runner, WOO_DOMAIN, WOO_EMAIL)
    assert (customer["pending"], [e["reason"] for e in customer["ledger"]]) == (25, ["earn"])
    # and it asked for changes since the install, less the overlap, in UTC with Z, oldest first
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(responses.calls[0].request.url).query))
    assert (query["modified_after"], query["orderby"], query["order"]) == ("2026-11-22T11:50:00Z", "modified", "asc")
    assert "dates_are_gmt" not in query
    # and the cursor moved to the newest change seen, and the shop says what was recovered
    with session_scope() as s:
        cursor = s.get(JobCursor, f"reconcile-{shop_id}")
        assert datetime.fromtimestamp(cursor.position, timezone.utc) == datetime(2026, 11, 22, 12, 40, 28,
                                                                                  tzinfo=timezone.utc)
        shop = s.get(Shop, shop_id)
        assert (shop.reconciled_recovered, shop.last_reconciled_at is not None) == (1, True)


@responses.activate
def test_a_state_the_webhook_already_brought_is_the_same_delivery(make_shop, post_webhook, work, runner):
    # given the real order.created webhook, delivered and processed
    shop_id = _store(make_shop)
    assert post_webhook("woocommerce", "order.created", fixture_bytes("woocommerce", "order_created.json")).status_code == 200
    work()

    # when the reconciliation reads the same order state back from the API, twice
    _pages([_as_the_api_answers("order_created.json")], [_as_the_api_answers("order_created.json")])
    first = reconcile_woocommerce(shop_id)
    again = reconcile_woocommerce(shop_id)
    work()

    # then it is one delivery, and one award
    assert (first["recovered"], again["recovered"]) == (0, 0)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
        assert s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.reason == "earn")) == 1
    assert show(runner, WOO_DOMAIN, WOO_EMAIL)["pending"] == 25


@responses.activate
def test_a_later_state_found_by_the_reconciliation_moves_the_points(make_shop, post_webhook, work, runner):
    # given the paid order delivered by webhook, and its refund that no webhook brought
    shop_id = _store(make_shop)
    assert post_webhook("woocommerce", "order.created", fixture_bytes("woocommerce", "order_created.json")).status_code == 200
    work()
    _pages([_as_the_api_answers("order_updated__partial_refund.json")])

    # when the reconciliation runs
    result = reconcile_woocommerce(shop_id)
    work()

    # then the refund's share of the points is taken back, once
    assert result["recovered"] == 1
    reasons = [e["reason"] for e in show(runner, WOO_DOMAIN, WOO_EMAIL)["ledger"]]
    assert reasons == ["earn", "refund"]
