"""A referral step's lasting member code in the shop, on both platforms (issue 20, rule 2): made by
the code job restricted to the member (Shopify `discountCodeBasicCreate` with the customer in its
context, validated against the pinned schema; WooCommerce a coupon with `email_restrictions`), no
expiry and no use limits, and switched off when the referral that earned it is reversed.

Platform HTTP is mocked with `responses`; Redis, the RQ worker and the databases are real.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses
from graphql import build_schema, parse, validate
from sqlalchemy import select

from app.db import session_scope
from app.models import CodeStatus, Customer, IssuedCode
from jobs.codes import requeue_pending
from jobs.members import settle_referrals
from tests.conftest import FIXTURES, WOO_DOMAIN
from tests.connectors.shopify.test_graphql_schema import RULES, SCHEMA_FILE, coerce, deprecated_inputs
from tests.factories import T0, apply, order, program

SHOPIFY_GRAPHQL = "https://demo-laden.myshopify.com/admin/api/2026-07/graphql.json"
WOO_COUPONS = f"{WOO_DOMAIN}/wp-json/wc/v3/coupons"
COST = {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0}}
ANNA = "anna@example.test"
PROGRAM = {"second_purchase": {"enabled": False}, "earning": {"return_window_days": 14},
           "referral": {"referrer_points": 0, "monthly_cap": 10,
                        "steps": [{"count": 2, "member_discount_percent": "5"}]}}
WINDOW_OVER = T0 + timedelta(days=20)


@pytest.fixture(scope="module")
def schema():  # type: ignore[no-untyped-def]
    """The pinned Shopify Admin schema (see tests/fixtures/shopify_admin_graphql/README.md)."""
    return build_schema(SCHEMA_FILE.read_text(encoding="utf-8"), assume_valid=True, no_location=True)


def _two_rewarded_friends(shop: int, anna_id: str, time_machine) -> None:  # type: ignore[no-untyped-def]
    """Anna's referral code used by two friends whose window has passed, settled by the sweep."""
    time_machine.move_to(T0, tick=False)
    program(shop, PROGRAM)
    apply(shop, order("100", "50.00", email=ANNA, customer_id=anna_id, fingerprint="addr-anna",
                      paid_at=T0 - timedelta(days=30)))
    code = _referral_code()
    for n in (1, 2):
        apply(shop, _friend(code, n))
    time_machine.move_to(WINDOW_OVER, tick=False)
    assert settle_referrals() == 2


def _friend(code: str, n: int, **kw: Any):  # type: ignore[no-untyped-def]
    return order(str(200 + n), "40.00", email=f"friend{n}@example.test", customer_id=str(900 + n),
                 discount_codes=(code,), fingerprint=f"addr-{n}", paid_at=T0 + timedelta(hours=n), **kw)


def _step_code() -> IssuedCode:
    with session_scope() as s:
        return s.scalars(select(IssuedCode).where(IssuedCode.purpose == "referral_step")).one()


def test_shopify_step_code_is_restricted_to_the_member_and_switched_off_on_reversal(
        make_shop, work, time_machine, schema):
    # given a Shopify shop where Anna's 2nd rewarded friend reaches a lasting 5 % member code
    shop = make_shop("shopify", credentials={"access_token": "shpat_test"})
    _two_rewarded_friends(shop, "207119551", time_machine)
    sent: list[dict[str, Any]] = []

    def shopify(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        sent.append(body)
        if "discountCodeDeactivate" in body["query"]:
            data = {"discountCodeDeactivate": {"codeDiscountNode": {"id": body["variables"]["id"]}, "userErrors": []}}
        else:
            node = f"gid://shopify/DiscountCodeNode/{100 + len(sent)}"
            data = {"discountCodeBasicCreate": {"codeDiscountNode": {"id": node}, "userErrors": []}}
        return 200, {}, json.dumps({"data": data, "extensions": {"cost": COST}})

    # when the code job runs
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.POST, SHOPIFY_GRAPHQL, callback=shopify)
        requeue_pending()
        work()

    # then the shop holds the step's code for Anna only: no end, no use limits, reusable by her
    step = _step_code()
    assert step.status == CodeStatus.CREATED
    [created] = [b["variables"]["basicCodeDiscount"] for b in sent
                 if b["variables"].get("basicCodeDiscount", {}).get("code") == step.code]
    assert created["context"] == {"customers": {"add": ["gid://shopify/Customer/207119551"]}}
    assert created["customerGets"]["value"] == {"percentage": 0.05}
    assert created["appliesOncePerCustomer"] is False
    assert "endsAt" not in created and "usageLimit" not in created

    # when the 2nd friend's order is refunded after the reward, and the code job runs
    sent.clear()
    apply(shop, _friend(_referral_code(), 2, refunds=(("r", "40.00"),),
                        updated_at=WINDOW_OVER + timedelta(days=1)))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.POST, SHOPIFY_GRAPHQL, callback=shopify)
        requeue_pending()
        work()

    # then the code is switched off in the shop (discountCodeDeactivate of its node)
    assert [b["variables"] for b in sent] == [{"id": step.platform_id}]
    assert _step_code().deactivated_at is not None

    # and every document and variables sent are valid for the pinned schema
    for body in _all_bodies_of(shopify_calls=sent, created=created, step=step):
        assert [e.message for e in validate(schema, parse(body["query"]), rules=RULES)] == []
        assert coerce(schema, body["query"], body["variables"]) == []
        assert deprecated_inputs(schema, body["query"], body["variables"]) == []


def _referral_code() -> str:
    """Anna's referral code (her friends, members now, have their own)."""
    with session_scope() as s:
        return s.scalars(select(Customer.referral_code).where(Customer.email == ANNA)).one()


def _all_bodies_of(*, shopify_calls: list[dict[str, Any]], created: dict[str, Any], step: IssuedCode):
    """The deactivation sent, and the creation of the step code rebuilt as the client sends it."""
    from connectors.shopify import client
    from app.loyalty.codes import spec_from_json

    name, variables = client.discount_code_variables(spec_from_json(step.spec))
    assert variables["basicCodeDiscount"] == created
    return [*shopify_calls, {"query": client.DOCUMENTS[name], "variables": variables}]


def _woo_answer(sent: dict[str, Any], coupon_id: int) -> dict[str, Any]:
    """The coupon the store keeps for a POST coupons body: the real 201 of coupons_create.json
    (tests/fixtures/woocommerce_api/README.md) with the sent fields as the store normalizes them."""
    body = json.loads((FIXTURES / "woocommerce_api" / "coupons_create.json").read_text())
    expires = sent.get("date_expires")
    gmt = expires.removesuffix("Z") if expires else None
    return {**body, "id": coupon_id, "code": sent.get("code", body["code"]).lower(),
            "discount_type": sent.get("discount_type", body["discount_type"]),
            "amount": sent.get("amount", body["amount"]), "individual_use": sent.get("individual_use", True),
            "usage_limit": sent.get("usage_limit"), "usage_limit_per_user": sent.get("usage_limit_per_user"),
            "email_restrictions": [e.lower() for e in sent.get("email_restrictions", body["email_restrictions"])],
            "free_shipping": sent.get("free_shipping", False), "product_ids": sent.get("product_ids", []),
            "date_expires": gmt, "date_expires_gmt": gmt}


def test_woocommerce_step_coupon_is_restricted_by_email_and_expired_on_reversal(make_shop, work, time_machine):
    # given a WooCommerce shop where Anna's 2nd rewarded friend reaches a lasting 5 % member code
    shop = make_shop("woocommerce", credentials={"consumer_key": "ck_test", "consumer_secret": "cs_test"})
    _two_rewarded_friends(shop, "7", time_machine)
    sent: list[tuple[str, dict[str, Any]]] = []

    def store(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        sent.append((request.method, body))
        coupon_id = 40 + len(sent) if request.method == "POST" else int(urlsplit(request.url).path.rsplit("/", 1)[1])
        return (201 if request.method == "POST" else 200), {}, json.dumps(_woo_answer(body, coupon_id))

    # when the code job runs
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.POST, WOO_COUPONS, callback=store)
        requeue_pending()
        work()

    # then the store holds the step's coupon for Anna's e-mail only: no expiry, no use limits
    step = _step_code()
    assert step.status == CodeStatus.CREATED
    [coupon] = [b for method, b in sent if b.get("code") == step.code]
    assert coupon["email_restrictions"] == [ANNA]
    assert (coupon["discount_type"], coupon["amount"]) == ("percent", "5")
    assert not {"date_expires", "usage_limit", "usage_limit_per_user"} & set(coupon)

    # when the 2nd friend's order is cancelled after the reward, and the code job runs
    sent.clear()
    from connectors import types as ct

    time_machine.move_to(WINDOW_OVER + timedelta(days=1), tick=False)
    apply(shop, _friend(_referral_code(), 2, status=ct.OrderStatus.CANCELLED,
                        updated_at=WINDOW_OVER + timedelta(days=1)))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.PUT, f"{WOO_COUPONS}/{step.platform_id}", callback=store)
        requeue_pending()
        work()

    # then the coupon's expiry is set to the moment of the reversal
    assert sent == [("PUT", {"date_expires": "2026-11-22T10:00:00Z"})]
    assert (_step_code().error, _step_code().deactivated_at is not None) == (None, True)
