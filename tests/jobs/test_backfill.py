"""Backfill: a shop's history comes in through the inbox as the merchant chose (points for the last
N days, or tiers and spend only), resumes after a crash, and sends nothing about the past."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import responses
from sqlalchemy import func, select

from app.db import session_scope
from app.models import (
    Backfill,
    Customer,
    IssuedCode,
    LedgerEntry,
    MessageStatus,
    ReminderMessage,
    Shop,
    TierChange,
    WebhookDelivery,
    utcnow,
)
from connectors.errors import TransientError
from jobs import backfill
from tests.conftest import FIXTURES, SHOPIFY_DOMAIN, WOO_DOMAIN, fixture_bytes
from tests.jobs.test_points_flow import SHOPIFY_EMAIL, WOO_EMAIL, show

SHOPIFY_GRAPHQL = f"https://{SHOPIFY_DOMAIN}/admin/api/2026-07/graphql.json"
WOO_ORDERS = f"{WOO_DOMAIN}/wp-json/wc/v3/orders"
WOO_CREDS = {"consumer_key": "ck_0123456789abcdef0123456789abcdef01234567",
             "consumer_secret": "cs_0123456789abcdef0123456789abcdef01234567"}
COST = {"requestedQueryCost": 1, "actualQueryCost": 1,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1999, "restoreRate": 100.0}}


@pytest.fixture(autouse=True)
def fresh_throttle(monkeypatch):  # type: ignore[no-untyped-def]
    """A cost throttle of its own, so no bucket of another test makes this one wait."""
    from connectors.shopify import client

    monkeypatch.setattr(client, "THROTTLE", client.CostThrottle())


def _page(*nodes: dict[str, Any], cursor: str | None = None) -> dict[str, Any]:
    base = json.loads((FIXTURES / "shopify_admin_api" / "orders__paid.json").read_text(encoding="utf-8"))
    base["data"]["orders"]["nodes"] = list(nodes)
    base["data"]["orders"]["pageInfo"] = {"hasNextPage": cursor is not None, "endCursor": cursor}
    return base


def _order(number: int, paid: datetime) -> dict[str, Any]:
    """Bob's paid order #1001 (587.00 after discounts) as the Admin API reads it, with its own id
    and dates."""
    page = json.loads((FIXTURES / "shopify_admin_api" / "orders__paid.json").read_text(encoding="utf-8"))
    node = copy.deepcopy(page["data"]["orders"]["nodes"][0])
    stamp = paid.strftime("%Y-%m-%dT%H:%M:%SZ")
    node.update(id=f"gid://shopify/Order/{number}", legacyResourceId=str(number), name=f"#{number}",
                createdAt=stamp, processedAt=stamp, updatedAt=stamp)
    return node


def _count(n: int) -> dict[str, Any]:
    return {"data": {"ordersCount": {"count": n, "precision": "EXACT"}}, "extensions": {"cost": COST}}


def _shopify_shop(make_shop, scopes: str = "read_orders,read_customers,write_discounts,write_orders") -> int:  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify", credentials={"access_token": "shpat_test"})
    with session_scope() as s:
        s.get(Shop, shop_id).granted_scopes = scopes
    return shop_id


def test_a_points_backfill_awards_the_window_and_keeps_the_rest_as_history(make_shop, work, runner):
    # given a Shopify shop and Bob's history: one order paid 10 days ago, one 50 days ago
    shop_id = _shopify_shop(make_shop)
    now = utcnow().replace(microsecond=0)
    recent, old = _order(5001, now - timedelta(days=10)), _order(5002, now - timedelta(days=50))

    # when the merchant backfills with points for the last 30 days... of orders from 60 days
    backfill.start(shop_id, days=30, tiers_only=False, now=now)
    with session_scope() as s:  # (the window read is the points window: widen what is read)
        s.scalars(select(Backfill)).one().since = now - timedelta(days=60)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_count(2))
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_page(old, recent))
        progress = backfill.run(shop_id)
        sent = [json.loads(call.request.body) for call in mock.calls]
    work()
    assert backfill.finish(shop_id) is True

    # then it asked for the orders created in the window, oldest first
    window = (f"created_at:>='{(now - timedelta(days=60)).strftime('%Y-%m-%dT%H:%M:%SZ')}' AND "
              f"created_at:<'{now.strftime('%Y-%m-%dT%H:%M:%SZ')}'")
    assert sent[0]["variables"] == {"query": window}
    assert (sent[1]["variables"]["query"], sent[1]["variables"]["sortKey"]) == (window, "CREATED_AT")
    assert (progress.status, progress.orders_read, progress.orders_new, progress.orders_total) == ("processing", 2, 2, 2)
    # and only the order paid in the last 30 days earned; the older one is history (0 points)
    customer = show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)
    earned = {e["order"]: e["delta"] for e in customer["ledger"]}
    assert earned == {"#5001": 587, "#5002": 0}
    assert customer["pending"] == 587
    # and Bob's tier comes from both orders (1174.00 of spend: Gold), recorded as the backfill's
    with session_scope() as s:
        bob = s.scalars(select(Customer).where(Customer.email == SHOPIFY_EMAIL)).one()
        assert bob.tier == "Gold" and bob.last_order_at == now - timedelta(days=10)
        assert bob.next_winback_at is None
        assert [c.reason for c in s.scalars(select(TierChange))] == ["backfill"]
        assert s.scalars(select(Backfill)).one().status == "done"
        assert {d.source for d in s.scalars(select(WebhookDelivery))} == {"backfill"}


def test_a_backfill_sends_nothing_about_the_past(make_shop, work, runner):
    # given a shop whose program would send everything it can: second-purchase code, points-earned
    # notices, double opt-in, tier notices, referrals, win-back
    shop_id = _shopify_shop(make_shop)
    result = runner.invoke(args=["program", "show", "--shop", SHOPIFY_DOMAIN])
    program = json.loads(result.output)["program"]
    program["reminders"]["notices"].update(points_earned=True, tier_change=True, second_purchase=True)
    program["reminders"]["consent"]["double_opt_in"] = True
    program["second_purchase"]["enabled"] = True
    program["referral"]["enabled"] = True
    set_program = runner.invoke(args=["program", "set", "--shop", SHOPIFY_DOMAIN, "--file", "-"],
                                input=json.dumps(program))
    assert set_program.exit_code == 0, set_program.output
    now = utcnow().replace(microsecond=0)

    # when two orders of the last 30 days (one 200 days before it lapsed) come in by backfill
    backfill.start(shop_id, days=30, tiers_only=False, now=now)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_count(2))
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_page(_order(5001, now - timedelta(days=20)),
                                                             _order(5002, now - timedelta(days=5))))
        backfill.run(shop_id)
    work()
    assert backfill.finish(shop_id) is True
    sweep = runner.invoke(args=["reminders", "sweep"])
    assert sweep.exit_code == 0, sweep.output
    work()

    # then the points are there, and nothing was sent or is due: no code was made, the only
    # reminder row is the suppressed opt-in request
    customer = show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)
    assert (customer["available"], customer["pending"]) == (587, 587)  # past and in the return window
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(IssuedCode)) == 0
        messages = [(m.campaign, m.status, m.reason) for m in s.scalars(select(ReminderMessage))]
        assert messages == [("doi", MessageStatus.SUPPRESSED, "backfill")]


def test_a_tiers_only_backfill_gives_no_points_now_or_later(make_shop, work, runner, post_webhook):
    # given a tiers-only backfill of Bob's order #1001 (paid, 587.00)
    shop_id = _shopify_shop(make_shop)
    backfill.start(shop_id, days=30, tiers_only=True)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_count(1))
        page = json.loads((FIXTURES / "shopify_admin_api" / "orders__paid.json").read_text(encoding="utf-8"))
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=page)
        backfill.run(shop_id)
    work()
    backfill.finish(shop_id)

    # when the order is refunded later (a live webhook)
    response = post_webhook("shopify", "refunds/create", fixture_bytes("shopify", "refunds_create.json"),
                            event_id="refund-later")
    assert response.status_code == 200
    work()

    # then Bob holds no points and never did, but his tier counts the spend
    customer = show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)
    assert (customer["pending"], customer["available"]) == (0, 0)
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", 0)]
    assert customer["ledger"][0]["why"] == "Order #1001 from before the program: no points (brought in for tiers and spend)"
    with session_scope() as s:
        assert s.scalars(select(Customer).where(Customer.email == SHOPIFY_EMAIL)).one().tier == "Silber"


def test_a_backfill_resumes_from_its_saved_cursor_after_a_crash(make_shop, work):
    # given a backfill whose second page failed (the shop timed out)
    shop_id = _shopify_shop(make_shop)
    now = utcnow().replace(microsecond=0)
    backfill.start(shop_id, days=30, tiers_only=False, now=now)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_count(3))
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_page(_order(5001, now - timedelta(days=9)), cursor="page-2"))
        mock.add(responses.POST, SHOPIFY_GRAPHQL, status=503)
        with pytest.raises(TransientError):
            backfill.run(shop_id)
    with session_scope() as s:
        row = s.scalars(select(Backfill)).one()
        assert (row.status, row.cursor, row.orders_read, row.error) == ("running", "page-2", 1, "shopify graphql: HTTP 503")

    # when it runs again
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_page(_order(5002, now - timedelta(days=8)),
                                                             _order(5003, now - timedelta(days=7))))
        progress = backfill.run(shop_id)
        after = json.loads(mock.calls[0].request.body)["variables"]["after"]
    work()

    # then it went on after the saved cursor (no count again, no page twice) and read all three
    assert after == "page-2"
    assert (progress.orders_read, progress.orders_new, progress.error) == (3, 3, None)
    assert backfill.finish(shop_id) is True
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.delta > 0)) == 3


def test_a_woocommerce_backfill_pages_the_store_by_creation_date(make_shop, work, runner):
    # given a WooCommerce store with the real order 11 (25.00, paid) in its history
    shop_id = make_shop("woocommerce", credentials=WOO_CREDS)
    order = json.loads(fixture_bytes("woocommerce", "order_created.json"))
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)

    # when a tiers-only backfill of everything runs
    backfill.start(shop_id, days=None, tiers_only=True, now=now)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.GET, WOO_ORDERS, json=[order], headers={"X-WP-Total": "1", "X-WP-TotalPages": "1"})
        progress = backfill.run(shop_id)
        query = mock.calls[0].request.params
    work()
    backfill.finish(shop_id)

    # then it asked for orders created before the start, oldest first, and the order is history
    assert (query["before"], query["orderby"], query["order"], query["page"]) == ("2026-11-30T12:00:00Z", "date", "asc", "1")
    assert "after" not in query
    assert (progress.orders_read, progress.orders_total) == (1, 1)
    customer = show(runner, WOO_DOMAIN, WOO_EMAIL)
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", 0)]
    with session_scope() as s:
        assert s.scalars(select(Customer).where(Customer.email == WOO_EMAIL)).one().tier == "Bronze"


@pytest.mark.sqlite_only
def test_shopify_history_beyond_60_days_needs_read_all_orders(make_shop, runner):
    # given a Shopify shop that granted the default scopes
    _shopify_shop(make_shop)

    # when the merchant asks for 90 days of points
    result = runner.invoke(args=["shops", "backfill", "--shop", SHOPIFY_DOMAIN, "--days", "90"])

    # then it is refused with what to do, and nothing starts
    assert result.exit_code == 1
    assert "read_all_orders" in result.output and "--days 60 or less" in result.output
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Backfill)) == 0


def test_the_backfill_command_shows_its_progress_and_the_status_keeps_it(make_shop, work, runner):
    # given a Shopify shop with three orders of history
    _shopify_shop(make_shop)
    now = utcnow()

    # when the merchant runs the command
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_count(3))
        mock.add(responses.POST, SHOPIFY_GRAPHQL, json=_page(*[_order(5000 + n, now - timedelta(days=n))
                                                                for n in (3, 2, 1)]))
        result = runner.invoke(args=["shops", "backfill", "--shop", SHOPIFY_DOMAIN, "--days", "30"])

    # then it showed a bar and a summary, and left the orders to the worker
    assert result.exit_code == 0, result.output
    assert "orders read" in result.output
    assert "processing: 3 of 3 orders read (100 %), 3 new (points), 3 waiting for the worker" in result.output
    # and once the worker is done and the sweep finished it, `shops status` says so
    work()
    assert backfill.finish_backfills() == 1
    status = runner.invoke(args=["shops", "status", "--shop", SHOPIFY_DOMAIN, "--no-check", "--json"])
    [health] = json.loads(status.output)
    assert health["backfill"].startswith("done: 3 of 3 orders read (100 %), 3 new (points), finished ")
