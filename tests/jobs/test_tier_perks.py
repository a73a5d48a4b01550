"""Tier perks as lasting member codes: no use limits, one period long, switched off in the shop
when the member leaves the tier or a new period starts (issue 14).

Platform HTTP is mocked with `responses`; Redis, the RQ worker and the databases are real.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import responses
from sqlalchemy import select

from app.db import session_scope
from app.models import CodeStatus, Customer, IssuedCode
from jobs.codes import requeue_pending
from jobs.members import review_tiers
from tests.conftest import WOO_DOMAIN
from tests.factories import T0, apply, order, program

SHOPIFY_GRAPHQL = "https://demo-laden.myshopify.com/admin/api/2026-07/graphql.json"
WOO_COUPONS = f"{WOO_DOMAIN}/wp-json/wc/v3/coupons"
COST = {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0}}
TIERS = {"levels": [
    {"name": "Bronze", "threshold": "0"},
    {"name": "Silber", "threshold": "300", "member_discount_percent": "5", "free_shipping": True},
    {"name": "Gold", "threshold": "1000", "member_discount_percent": "10", "free_shipping": True},
]}
PROGRAM = {"second_purchase": {"enabled": False}, "referral": {"enabled": False},
           "earning": {"return_window_days": 0}, "tiers": TIERS}


class FakeShopify:
    """Answers the discount mutations as Shopify does, and keeps which codes are live."""

    def __init__(self) -> None:
        self.live: dict[str, dict[str, Any]] = {}  # node id -> the discount input
        self.next_id = 100

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        variables = body["variables"]
        if "discountCodeDeactivate" in body["query"]:
            self.live.pop(variables["id"])
            data = {"discountCodeDeactivate": {"codeDiscountNode": {"id": variables["id"]}, "userErrors": []}}
        else:
            (argument, discount), = variables.items()
            root = {"basicCodeDiscount": "discountCodeBasicCreate",
                    "freeShippingCodeDiscount": "discountCodeFreeShippingCreate"}[argument]
            self.next_id += 1
            node = f"gid://shopify/DiscountCodeNode/{self.next_id}"
            self.live[node] = discount
            data = {root: {"codeDiscountNode": {"id": node}, "userErrors": []}}
        return 200, {}, json.dumps({"data": data, "extensions": {"cost": COST}})


def run_shop(work, fake) -> None:  # type: ignore[no-untyped-def]
    """Hand every pending code and deactivation to the worker, against the fake shop."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, SHOPIFY_GRAPHQL, callback=fake)
        requeue_pending()
        work()


def live_by_kind(fake: FakeShopify) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for discount in fake.live.values():
        kind = "free_shipping" if "destination" in discount else "percentage"
        kinds.setdefault(kind, []).append(discount)
    return kinds


def period_end(shop: int) -> str:
    with session_scope() as s:
        customer = s.scalars(select(Customer).where(Customer.shop_id == shop)).one()
        return customer.tier_period_ends_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_perks_last_the_tier_period_and_follow_upgrades_and_renewals(make_shop, work, time_machine):
    # given Silber (5 %, free shipping) and Gold (10 %, free shipping) in a Shopify shop
    time_machine.move_to(T0, tick=False)
    shop = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop, PROGRAM)
    fake = FakeShopify()

    # when a customer reaches Silber
    apply(shop, order("1", "400.00", customer_id="207119551"))
    run_shop(work, fake)

    # then they hold one member discount and one free-shipping code, usable on every order
    # (no per-customer or total limit) until the tier period ends, for them only
    kinds = live_by_kind(fake)
    assert sorted(kinds) == ["free_shipping", "percentage"]
    [discount], [shipping] = kinds["percentage"], kinds["free_shipping"]
    assert discount["customerGets"]["value"] == {"percentage": 0.05}
    for code in (discount, shipping):
        assert code["appliesOncePerCustomer"] is False
        assert "usageLimit" not in code
        assert code["endsAt"] == period_end(shop) == "2027-11-01T10:00:00Z"
        assert code["context"] == {"customers": {"add": ["gid://shopify/Customer/207119551"]}}

    # when they reach Gold
    time_machine.move_to(T0 + timedelta(days=30), tick=False)
    apply(shop, order("2", "700.00", customer_id="207119551", paid_at=T0 + timedelta(days=30)))
    run_shop(work, fake)

    # then the Silber codes are switched off in the shop and Gold's are the only live ones
    kinds = live_by_kind(fake)
    assert [len(kinds["percentage"]), len(kinds["free_shipping"])] == [1, 1]
    assert kinds["percentage"][0]["customerGets"]["value"] == {"percentage": 0.1}
    assert discount["code"] not in {c["code"] for c in fake.live.values()}
    gold_end = period_end(shop)
    assert kinds["percentage"][0]["endsAt"] == gold_end == "2027-12-01T10:00:00Z"

    # when the period ends and the review keeps them in Gold for a new period
    time_machine.move_to("2027-12-01T10:00:01+00:00", tick=False)
    assert review_tiers() == 0
    run_shop(work, fake)

    # then the old Gold codes are off, and new ones last until the new period's end
    kinds = live_by_kind(fake)
    assert [len(kinds["percentage"]), len(kinds["free_shipping"])] == [1, 1]
    assert kinds["percentage"][0]["endsAt"] == period_end(shop) == "2028-12-01T10:00:01Z"
    with session_scope() as s:
        rows = list(s.scalars(select(IssuedCode).order_by(IssuedCode.id)))
    assert [(r.purpose, r.status, r.deactivated_at is not None) for r in rows] == [
        ("tier_discount", CodeStatus.CREATED, True), ("tier_shipping", CodeStatus.CREATED, True),
        ("tier_discount", CodeStatus.CREATED, True), ("tier_shipping", CodeStatus.CREATED, True),
        ("tier_discount", CodeStatus.CREATED, False), ("tier_shipping", CodeStatus.CREATED, False),
    ]


def test_woocommerce_perk_coupon_lasts_and_is_expired_when_the_member_leaves(make_shop, work, time_machine):
    # given a WooCommerce shop whose member reached Silber, then had the order refunded
    time_machine.move_to(T0, tick=False)
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    program(shop, {**PROGRAM, "tiers": {"levels": TIERS["levels"][1:2]}})
    apply(shop, order("1", "400.00", customer_id="7"))
    sent: list[dict[str, Any]] = []

    def store(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        sent.append(body)
        expires = body["date_expires"].removesuffix("Z")
        answer = {"id": 40 + len(sent), "code": body.get("code", "sk").lower(), "date_expires_gmt": expires,
                  "discount_type": body.get("discount_type"), "amount": body.get("amount"),
                  "individual_use": body.get("individual_use"), "usage_limit": None,
                  "usage_limit_per_user": None, "email_restrictions": body.get("email_restrictions"),
                  "free_shipping": body.get("free_shipping", False)}
        return (201 if request.method == "POST" else 200), {}, json.dumps(answer)

    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.POST, WOO_COUPONS, callback=store)
        requeue_pending()
        work()
    # then the coupons have no use limits and expire at the period's end
    assert [("usage_limit_per_user" in b, "usage_limit" in b, b["date_expires"]) for b in sent] == [
        (False, False, "2027-11-01T10:00:00Z"), (False, False, "2027-11-01T10:00:00Z")]

    # when the order is refunded and the period-end review drops them out of the tier
    apply(shop, order("1", "400.00", customer_id="7", refunds=(("r1", "400.00"),), updated_at=T0 + timedelta(days=2)))
    time_machine.move_to("2027-11-01T10:00:01+00:00", tick=False)
    assert review_tiers() == 1
    sent.clear()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.PUT, WOO_COUPONS + "/41", callback=store)
        mock.add_callback(responses.PUT, WOO_COUPONS + "/42", callback=store)
        requeue_pending()
        work()

    # then both coupons were given an expiry of now in the shop
    assert sent == [{"date_expires": "2027-11-01T10:00:01Z"}] * 2
    with session_scope() as s:
        assert all(r.deactivated_at is not None and r.error is None for r in s.scalars(select(IssuedCode)))
