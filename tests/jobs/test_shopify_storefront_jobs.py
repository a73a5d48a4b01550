"""Shopify-only storefront jobs: customer metafields (metafieldsSet) and store credit rewards
(storeCreditAccountCredit), against `responses` with the real worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest
import responses
from sqlalchemy import select

from app.db import session_scope
from app.loyalty import storefront
from app.models import CustomerMetafields, Shop
from connectors.errors import RateLimitedError
from jobs.metafields import sweep_metafields, sync_metafields
from tests.factories import apply, order, program, report

GRAPHQL = "https://demo-laden.myshopify.com/admin/api/2026-07/graphql.json"
COST = {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0}}
KUNDIN = "kundin@example.test"
REWARDS = [
    {"name": "Gratisversand", "points": 300, "kind": "free_shipping"},
    {"name": "5 € Guthaben", "points": 500, "kind": "store_credit", "value": "5"},
    {"name": "50 € Gutschein", "points": 5000, "kind": "fixed_amount", "value": "50"},
]


def _shop(make_shop, **kw) -> int:  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify", credentials={"access_token": "shpat_test"}, **kw)
    program(shop_id, {"second_purchase": {"enabled": False}, "referral": {"enabled": False},
                      "earning": {"return_window_days": 0}, "rewards": REWARDS})
    return shop_id


def _metafields_answer(mock: responses.RequestsMock, sent: list[dict]) -> None:
    def answer(request):  # type: ignore[no-untyped-def]
        body = json.loads(request.body)
        sent.append(body)
        return 200, {}, json.dumps({"data": {"metafieldsSet": {
            "metafields": [{"id": f"gid://shopify/Metafield/{i}"} for i, _ in enumerate(body["variables"]["metafields"])],
            "userErrors": []}}, "extensions": {"cost": COST}})

    mock.add_callback(responses.POST, GRAPHQL, callback=answer)


def _by_owner(sent: list[dict]) -> dict[str, dict[str, tuple[str, str]]]:
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for body in sent:
        for m in body["variables"]["metafields"]:
            assert m["namespace"] == "stammkunde"
            out.setdefault(m["ownerId"], {})[m["key"]] = (m["type"], m["value"])
    return out


def test_metafields_are_written_once_and_then_only_what_changed(make_shop, work):
    # given a member with 600 points (Silber) in a Shopify shop
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "600.00", customer_id="207119551"))

    # when the clock's sweep runs and the worker syncs
    sent: list[dict] = []
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        _metafields_answer(mock, sent)
        assert sweep_metafields() == 1
        work()

    # then the shop holds points, pending, tier and the next reward, typed for Liquid
    assert _by_owner(sent) == {"gid://shopify/Customer/207119551": {
        "points": ("number_integer", "600"), "pending_points": ("number_integer", "0"),
        "tier": ("single_line_text_field", "Silber"),
        "next_reward": ("single_line_text_field", "50 € Gutschein"),
        "next_reward_points": ("number_integer", "4400")}}

    # when nothing changed and the sweep runs again, then no call is made (none is registered)
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        sweep_metafields()
        work()

    # when the member redeems 300 points and the sweep runs, only the changed values are written
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        storefront.redeem(s, shop, storefront.find_member(s, shop, "207119551"), "Gratisversand",
                          request_key=uuid.uuid4().hex)
    sent.clear()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, GRAPHQL, json={"data": {"discountCodeFreeShippingCreate": {
            "codeDiscountNode": {"id": "gid://shopify/DiscountCodeNode/1"}, "userErrors": []}},
            "extensions": {"cost": COST}})
        work()  # the code job
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        _metafields_answer(mock, sent)
        sweep_metafields()
        work()
    written = _by_owner(sent)
    # (300 points left: the next reward is now "5 € Guthaben", 200 away; tier and pending unchanged)
    assert written == {"gid://shopify/Customer/207119551": {
        "points": ("number_integer", "300"), "next_reward": ("single_line_text_field", "5 € Guthaben"),
        "next_reward_points": ("number_integer", "200")}}


def test_metafields_go_in_calls_of_at_most_25_without_splitting_a_customer(make_shop):
    # given 7 members (5 metafields each: 35 values)
    shop_id = _shop(make_shop)
    for n in range(7):
        apply(shop_id, order(str(n), "600.00", customer_id=str(1000 + n), email=f"k{n}@example.test"))
    sweep_metafields_without_enqueue()

    # when the shop is synced
    sent: list[dict] = []
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        _metafields_answer(mock, sent)
        written = sync_metafields(shop_id)

    # then two calls carry 25 and 10 metafields, each customer whole in one call
    assert written == 35
    assert [len(b["variables"]["metafields"]) for b in sent] == [25, 10]
    owners = [{m["ownerId"] for m in b["variables"]["metafields"]} for b in sent]
    assert not owners[0] & owners[1] and len(owners[0] | owners[1]) == 7


def sweep_metafields_without_enqueue() -> None:
    """Mark every customer changed, as the sweep does, without handing the sync to a worker."""
    from app.models import Customer, utcnow
    from jobs.metafields import mark_changed

    with session_scope() as s:
        mark_changed(s, set(s.scalars(select(Customer.id))), utcnow())


def test_throttled_sync_keeps_customers_marked_and_finishes_later(make_shop):
    # given a marked member, and Shopify answering THROTTLED with an empty bucket
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "600.00", customer_id="207119551"))
    sweep_metafields_without_enqueue()
    empty = {**COST, "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 0.0, "restoreRate": 100.0}}

    # when the sync runs
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, GRAPHQL, json={"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                                                 "extensions": {"cost": empty}})
        with pytest.raises(RateLimitedError):
            sync_metafields(shop_id)

    # then nothing is recorded as written, and a later run writes everything
    with session_scope() as s:
        row = s.scalars(select(CustomerMetafields)).one()
        assert (row.written, row.dirty_since is not None) == ({}, True)
    from connectors.shopify.client import THROTTLE

    THROTTLE.reset()
    sent: list[dict] = []
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        _metafields_answer(mock, sent)
        assert sync_metafields(shop_id) == 5
    with session_scope() as s:
        row = s.scalars(select(CustomerMetafields)).one()
        assert row.written["points"] == "600" and row.dirty_since is None


@pytest.mark.sqlite_only
def test_shop_without_the_write_customers_scope_gets_no_call(make_shop):
    # given a shop installed before the metafields needed write_customers
    shop_id = _shop(make_shop)
    with session_scope() as s:
        s.get(Shop, shop_id).granted_scopes = "read_orders,read_customers,write_discounts,write_orders"
    apply(shop_id, order("1", "600.00", customer_id="207119551"))
    sweep_metafields_without_enqueue()

    # when the sync runs, then nothing is sent (none is registered) and the member stays marked
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        assert sync_metafields(shop_id) == 0
    with session_scope() as s:
        assert s.scalars(select(CustomerMetafields)).one().dirty_since is not None


def test_store_credit_reward_is_credited_once_and_recorded_in_the_ledger(make_shop, work):
    # given a member with 600 points and a "5 € Guthaben" store credit reward
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "600.00", customer_id="207119551"))
    key = uuid.uuid4().hex

    # when they redeem it in the shop (twice, one request key) and the worker runs
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        member = storefront.find_member(s, shop, "207119551")
        first = storefront.redeem(s, shop, member, "5 € Guthaben", request_key=key)
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        again = storefront.redeem(s, shop, storefront.find_member(s, shop, "207119551"), "5 € Guthaben",
                                  request_key=key)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, GRAPHQL, json={"data": {"storeCreditAccountCredit": {
            "storeCreditAccountTransaction": {"id": "gid://shopify/StoreCreditAccountCreditTransaction/1"},
            "userErrors": []}}, "extensions": {"cost": COST}})
        work()
        sent = json.loads(mock.calls[0].request.body)

    # then 5.00 EUR were credited to that customer once, keyed by the redemption's code
    variables = sent["variables"]
    assert "@idempotent(key: $idempotencyKey)" in sent["query"]
    assert variables["id"] == "gid://shopify/Customer/207119551"
    assert variables["creditInput"]["creditAmount"] == {"amount": "5", "currencyCode": "EUR"}
    assert variables["idempotencyKey"].startswith("SK-")
    assert again.redemption_id == first.redemption_id

    # and the ledger took 500 points; the member sees it credited, never a code to type
    assert report(shop_id, KUNDIN)["available"] == 100
    assert [e["why"] for e in report(shop_id, KUNDIN)["ledger"]][-1] == "Redeemed for reward 5 € Guthaben"
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        view = storefront.member_view(s, shop, storefront.find_member(s, shop, "207119551"))
        [code] = view.codes
        assert (code.state, code.code, code.amount) == ("credited", None, storefront.Money(
            __import__("decimal").Decimal("5"), "EUR"))


def test_store_credit_the_shop_refuses_gives_the_points_back(make_shop, work):
    # given a redeemed store credit reward
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "600.00", customer_id="207119551"))
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        storefront.redeem(s, shop, storefront.find_member(s, shop, "207119551"), "5 € Guthaben",
                          request_key=uuid.uuid4().hex)

    # when Shopify refuses the credit (store credit not enabled for the shop)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, GRAPHQL, json={"data": {"storeCreditAccountCredit": {
            "storeCreditAccountTransaction": None,
            "userErrors": [{"field": ["id"], "message": "Store credit is not enabled", "code": "INVALID"}]}},
            "extensions": {"cost": COST}})
        work()

    # then the points are back, and the member sees the reward as failed
    assert report(shop_id, KUNDIN)["available"] == 600
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        view = storefront.member_view(s, shop, storefront.find_member(s, shop, "207119551"))
        assert [c.state for c in view.codes] == ["failed"]


def test_store_credit_reward_in_a_woocommerce_shop_is_refused_and_the_points_go_back(make_shop, work):
    # given a WooCommerce shop whose program (wrongly) offers store credit, redeemed by staff
    from app.loyalty import redemptions
    from app.loyalty.customers import find_by_email

    shop_id = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop_id, {"second_purchase": {"enabled": False}, "referral": {"enabled": False},
                      "earning": {"return_window_days": 0}, "rewards": REWARDS})
    apply(shop_id, order("1", "600.00", customer_id="31"))
    with session_scope() as s:
        redemptions.redeem(s, s.get(Shop, shop_id), find_by_email(s, shop_id, KUNDIN), "5 € Guthaben",
                           source="staff", actor="support@example.test")

    # when the worker runs (no call reaches the store)
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        work()

    # then the reward failed with the reason and the points are back
    assert report(shop_id, KUNDIN)["available"] == 600
    assert "WooCommerce has no store credit" in report(shop_id, KUNDIN)["ledger"][-1]["why"]
