"""Reconciliation: an order change no webhook brought is fetched and processed once; one a webhook
already brought is the same delivery (WooCommerce, with the real order body; Shopify, with the
Admin API's order node of the webhook fixture's state)."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest
import responses
from sqlalchemy import func, select

from app.db import session_scope
from app.models import JobCursor, LedgerEntry, Shop, WebhookDelivery
from jobs.reconcile import reconcile_shopify, reconcile_woocommerce
from tests.conftest import FIXTURES, SHOPIFY_DOMAIN, WOO_DOMAIN, fixture_bytes
from tests.jobs.test_points_flow import SHOPIFY_EMAIL, WOO_EMAIL, show

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


# ---- Shopify -------------------------------------------------------------------------------------

SHOPIFY_GRAPHQL = f"https://{SHOPIFY_DOMAIN}/admin/api/2026-07/graphql.json"
SHOPIFY_INSTALLED = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def _shopify_shop(make_shop) -> int:  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify", credentials={"access_token": "shpat_test"})
    with session_scope() as s:
        s.get(Shop, shop_id).installed_at = SHOPIFY_INSTALLED
    return shop_id


def _orders_page(name: str) -> dict:  # type: ignore[type-arg]
    """A page of the Admin API's `orders` (tests/fixtures/shopify_admin_api, derived from the
    webhook fixture of the same order state: see its README)."""
    return json.loads((FIXTURES / "shopify_admin_api" / name).read_text(encoding="utf-8"))


@pytest.fixture
def fresh_throttle(monkeypatch):  # type: ignore[no-untyped-def]
    """A cost throttle of its own, so no bucket of another test makes this one wait."""
    from connectors.shopify import client

    monkeypatch.setattr(client, "THROTTLE", client.CostThrottle())


def test_a_shopify_order_whose_webhook_was_lost_comes_in_with_its_points(make_shop, work, runner, fresh_throttle):
    # given a Shopify shop that never got the webhooks of order #1001 (paid, 587.00 after discounts)
    shop_id = _shopify_shop(make_shop)

    # when the reconciliation runs and the worker processes what it found
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_orders_page("orders__paid.json"))
        result = reconcile_shopify(shop_id, now=SHOPIFY_INSTALLED + timedelta(minutes=30))
        sent = json.loads(mock.calls[0].request.body)
    work()

    # then the order earned its 587 points, as the orders/paid webhook would have (available at
    # once: it was paid in 2008, long past the return window)
    assert result == {"seen": 1, "recovered": 1, "pages": 1}
    customer = show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)
    assert (customer["available"], [e["reason"] for e in customer["ledger"]]) == (587, ["earn"])
    # and it asked for orders changed since the install less the overlap, oldest change first
    assert sent["variables"]["query"] == "updated_at:>'2026-11-22T11:50:00Z'"
    assert (sent["variables"]["sortKey"], sent["variables"]["after"]) == ("UPDATED_AT", None)
    assert sent["query"].startswith("query Orders(")
    # and the delivery is the poll's, keyed as the orders/updated webhook of that state
    with session_scope() as s:
        delivery = s.scalars(select(WebhookDelivery)).one()
        assert (delivery.topic, delivery.source, delivery.dedupe_key) == (
            "stammkunde/order", "reconcile", "orders/updated|order:450789469|2008-01-10T16:00:00Z|paid|open|refunds:0")
        shop = s.get(Shop, shop_id)
        assert (shop.reconciled_recovered, shop.last_reconciled_at is not None) == (1, True)


def test_a_shopify_webhook_and_a_poll_of_the_same_state_are_one_delivery(make_shop, post_webhook, work, runner,
                                                                         fresh_throttle):
    # given the orders/updated webhook of the paid order, delivered and processed
    shop_id = _shopify_shop(make_shop)
    body = fixture_bytes("shopify", "orders_paid.json")
    assert post_webhook("shopify", "orders/updated", body, event_id="evt-1").status_code == 200
    work()

    # when the reconciliation reads the same order state back from the Admin API, twice
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_orders_page("orders__paid.json"))
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_orders_page("orders__paid.json"))
        first = reconcile_shopify(shop_id)
        again = reconcile_shopify(shop_id)
    work()

    # then it is one delivery and one award
    assert (first["recovered"], again["recovered"]) == (0, 0)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
        assert s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.reason == "earn")) == 1
    assert show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)["available"] == 587


def test_a_shopify_refund_found_by_the_poll_takes_back_its_share(make_shop, post_webhook, work, runner,
                                                                 fresh_throttle):
    # given the paid order delivered by webhook (587 points), and a refund no webhook brought
    shop_id = _shopify_shop(make_shop)
    assert post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"),
                        event_id="evt-paid").status_code == 200
    work()

    # when the reconciliation finds the order partially refunded (391.33 of its merchandise)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_orders_page("orders__partially_refunded.json"))
        assert reconcile_shopify(shop_id)["recovered"] == 1
    work()

    # then the refund's share is taken back once, as the refunds/create webhook would have
    customer = show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)
    reasons = [e["reason"] for e in customer["ledger"]]
    assert reasons == ["earn", "refund"]
    # (the award's share of the refunded merchandise: 587 points x 391.33 / 587.00 awarded on)
    assert customer["ledger"][1]["delta"] == -391


def test_shopify_reconciliation_pages_with_the_cursor_and_keeps_its_place(make_shop, work, fresh_throttle):
    # given two pages of changed orders
    shop_id = _shopify_shop(make_shop)
    first = _orders_page("orders__paid.json")
    first["data"]["orders"]["pageInfo"] = {"hasNextPage": True, "endCursor": "cursor-1"}
    second = _orders_page("orders__partially_refunded.json")
    second["data"]["orders"]["nodes"][0]["updatedAt"] = "2026-11-22T12:05:00Z"  # the refund's change

    # when the reconciliation runs
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=first)
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=second)
        result = reconcile_shopify(shop_id, now=SHOPIFY_INSTALLED + timedelta(hours=1))
        afters = [json.loads(call.request.body)["variables"]["after"] for call in mock.calls]

    # then it asked for the second page after the first page's cursor, and stored both states
    assert afters == [None, "cursor-1"]
    assert result == {"seen": 2, "recovered": 2, "pages": 2}
    # and its cursor is the newest change it saw (the next run starts there, less the overlap)
    with session_scope() as s:
        position = s.get(JobCursor, f"reconcile-{shop_id}").position
    assert datetime.fromtimestamp(position, timezone.utc) == datetime(2026, 11, 22, 12, 5, tzinfo=timezone.utc)


# ---- WooCommerce refund detail (fact 32) ---------------------------------------------------------

WOO_REFUNDS = f"{ORDERS}/31/refunds"
KARLA = "karla.konsens@example.test"


def test_a_woocommerce_refund_takes_back_its_own_lines_share(make_shop, post_webhook, work, runner):
    # given order 31 (52.00 of merchandise + 8.00 shipping), delivered with refund 37 listed only
    # as its total (20.00): estimated at 20 x 52/60 = 17.33 of merchandise
    _store(make_shop)
    body = fixture_bytes("woocommerce", "order_updated__line_refund_with_shipping.json")
    assert post_webhook("woocommerce", "order.updated", body).status_code == 200

    # when the worker processes it, and the job it starts reads the store's refunds (capture 103)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.GET, WOO_REFUNDS, body=(FIXTURES / "woocommerce_api" / "refunds_list.json").read_bytes(),
                 content_type="application/json; charset=UTF-8")
        work()  # the order (earn 52, refund on the estimate) and then the refund-detail job
        work()  # the refund detail it put in the inbox

    # then the refund took back exactly its line's share, 20 of 52 points, in two steps that
    # say why; the estimate's 17 were corrected by 3 once the lines were known
    customer = show(runner, WOO_DOMAIN, KARLA)
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", 52), ("refund", -17), ("refund", -3)]
    assert customer["pending"] == 32
    assert customer["ledger"][2]["why"] == "Refund 37 on order 31: corrected to the refund's own lines"
    with session_scope() as s:
        sources = sorted((d.topic, d.source) for d in s.scalars(select(WebhookDelivery)))
    assert sources == [("order.updated", "webhook"), ("stammkunde/order_refunds", "reconcile")]


def test_a_woocommerce_refund_detail_read_again_changes_nothing(make_shop, post_webhook, work, runner):
    # given the refund detail of order 31 applied once
    shop_id = _store(make_shop)
    body = fixture_bytes("woocommerce", "order_updated__line_refund_with_shipping.json")
    assert post_webhook("woocommerce", "order.updated", body).status_code == 200
    refunds = (FIXTURES / "woocommerce_api" / "refunds_list.json").read_bytes()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.GET, WOO_REFUNDS, body=refunds, content_type="application/json; charset=UTF-8")
        work()
        work()

    # when the same order state arrives again (the reconciliation) and the detail is read again
    from jobs.reconcile import fetch_refund_detail

    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.GET, WOO_REFUNDS, body=refunds, content_type="application/json; charset=UTF-8")
        assert fetch_refund_detail(shop_id, "31") is None  # the same answer: a duplicate
    work()

    # then the balance is what it was
    customer = show(runner, WOO_DOMAIN, KARLA)
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", 52), ("refund", -17), ("refund", -3)]


def test_every_callable_shop_is_reconciled_on_schedule(make_shop, redis_url):
    # given an installed shop of each platform with API credentials, one without, one to re-authorise
    from app.queues import get_queue
    from app.models import utcnow
    from jobs.reconcile import reconcile_all

    shopify = _shopify_shop(make_shop)
    woo = _store(make_shop)
    make_shop("shopify", domain="ohne-schluessel.myshopify.com")
    waiting = make_shop("shopify", domain="neu-erlauben.myshopify.com", credentials={"access_token": "shpat_x"})
    with session_scope() as s:
        s.get(Shop, waiting).needs_reauth_at = utcnow()

    # when the clock's sweep runs
    assert reconcile_all() == 2

    # then one reconciliation per callable shop waits, each with its platform's job
    jobs = {job.id: job.func_name for job in get_queue("codes").get_jobs()}
    assert jobs == {f"reconcile-{shopify}": "jobs.reconcile.reconcile_shopify",
                    f"reconcile-{woo}": "jobs.reconcile.reconcile_woocommerce"}


@pytest.mark.sqlite_only
def test_a_clock_that_starts_after_the_app_was_down_reconciles_at_once(redis_url):
    # given the clock's schedule, loaded as `rq cron` loads it when the app starts again
    from redis import Redis
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=Redis.from_url(redis_url))
    scheduler.load_config_from_file("jobs/schedule.py")
    jobs = {job.func.__name__: job for job in scheduler.get_jobs()}

    # then the reconciliation and the WooCommerce webhook check are due at once, before any interval
    # has passed (RQ runs an interval job that never ran immediately), and then every few minutes
    for name in ("reconcile_all", "check_woocommerce_webhooks"):
        assert jobs[name].should_run(), name
        assert jobs[name].interval is not None and jobs[name].interval <= 600
