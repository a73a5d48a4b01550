"""Codes created in the shop by the real worker: success, permanent refusal, transient failure.

Where the platform's HTTP shape is part of what is tested, it is mocked with `responses` (every
registered call must fire); elsewhere the shop's API is the in-memory fake of
tests/connectors/fake.py, put into the registry by the `fake_woo` fixture or
`install_fake_connector`. Redis, the RQ worker and the database (SQLite and PostgreSQL) are real.
"""

from __future__ import annotations

import json
import re
from datetime import timezone

import pytest
import responses
from sqlalchemy import select

from app.db import session_scope
from app.models import CodeStatus, IssuedCode, OrderTask
from connectors.errors import PermanentError, RateLimitedError, TransientError
from tests.conftest import FIXTURES, WOO_DOMAIN
from tests.connectors.fake import FakeConnector, install_fake_connector
from tests.factories import apply, order, program

WOO_COUPONS = f"{WOO_DOMAIN}/wp-json/wc/v3/coupons"
EMAIL = "kundin@example.test"
WOO_CREDS = {"consumer_key": "ck_test", "consumer_secret": "cs_test"}


@pytest.fixture
def fake_woo(monkeypatch: pytest.MonkeyPatch) -> FakeConnector:
    """The WooCommerce API in memory, as `connectors.CONNECTORS["woocommerce"]` for this test."""
    return install_fake_connector(monkeypatch, "woocommerce")


def cli(runner, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=[*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _woo_shop_with_points(make_shop, points: str = "600.00") -> int:  # type: ignore[no-untyped-def]
    shop = make_shop("woocommerce", credentials=WOO_CREDS)
    program(shop, {"earning": {"return_window_days": 0}, "second_purchase": {"enabled": False},
                   "referral": {"enabled": False}})
    apply(shop, order("1", points))
    return shop


def _stored_coupon(sent: dict) -> dict:
    """The coupon the live store keeps for a POST coupons body (the real 201 of
    coupons_create.json with the sent fields as the store normalizes them: see
    tests/fixtures/woocommerce_api/README.md)."""
    from datetime import datetime, timezone
    from decimal import Decimal

    body = json.loads((FIXTURES / "woocommerce_api" / "coupons_create.json").read_text())
    expires = sent.get("date_expires")  # honoured with "Z"; date_expires_gmt is ignored
    gmt = (datetime.fromisoformat(expires.replace("Z", "+00:00")).astimezone(timezone.utc)
           .strftime("%Y-%m-%dT%H:%M:%S") if expires else None)
    return {**body, "code": sent["code"].lower(), "discount_type": sent["discount_type"],
            "amount": f"{Decimal(sent['amount']):.2f}", "individual_use": sent.get("individual_use", False),
            "usage_limit": sent.get("usage_limit"), "usage_limit_per_user": sent.get("usage_limit_per_user"),
            "email_restrictions": [e.lower() for e in sent.get("email_restrictions", [])],
            "free_shipping": sent.get("free_shipping", False), "product_ids": sent.get("product_ids", []),
            "limit_usage_to_x_items": sent.get("limit_usage_to_x_items"),
            # meta as sent, each with an id (capture 100/101 in the WooCommerce reference)
            "meta_data": [{"id": 40 + i, **m} for i, m in enumerate(sent.get("meta_data", []))],
            "date_expires": gmt, "date_expires_gmt": gmt}


def _store(mock: responses.RequestsMock, seen: list[dict] | None = None) -> None:
    """Register POST coupons answered as the live store does; bodies sent go to `seen`."""
    def answer(request):  # type: ignore[no-untyped-def]
        sent = json.loads(request.body)
        if seen is not None:
            seen.append(sent)
        return 201, {}, json.dumps(_stored_coupon(sent))

    mock.add_callback(responses.POST, WOO_COUPONS, callback=answer)


def test_staff_redemption_creates_the_code_in_woocommerce(make_shop, runner, work):
    # given a customer with 600 available points
    _woo_shop_with_points(make_shop)

    # when support redeems the 500-point reward
    pending = cli(runner, "rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", "5 € Rabatt")

    # then the points are gone at once and the code is pending
    assert (pending["status"], pending["code"]) == ("pending", None)
    assert cli(runner, "customers", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)["available"] == 100

    # and when the worker runs, the coupon is created in the shop, restricted to the customer
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        _store(mock)
        work()
        sent = json.loads(mock.calls[0].request.body)
    assert sent["email_restrictions"] == [EMAIL]
    assert (sent["discount_type"], sent["amount"], sent["usage_limit"]) == ("fixed_cart", "5", 1)
    [row] = cli(runner, "rewards", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)
    assert row["status"] == "created"
    assert re.fullmatch(r"SK-[A-Z2-7]{10}", row["code"])
    assert sent["code"] == row["code"]
    # and the coupon expires when the code does, as WooCommerce honours it (UTC with "Z")
    with session_scope() as s:
        expires_at = s.scalars(select(IssuedCode.expires_at)).one()
    assert expires_at is not None
    assert sent["date_expires"] == expires_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "date_expires_gmt" not in sent


def test_permanent_refusal_gives_the_points_back(make_shop, runner, work, fake_woo):
    # given a redemption whose coupon the shop refuses (invalid data, not retryable)
    _woo_shop_with_points(make_shop)
    cli(runner, "rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", "5 € Rabatt")
    fake_woo.fail("create_discount_code", PermanentError("rest_invalid_param: Invalid parameter(s): amount"))

    # when the worker tries
    work()

    # then the redemption failed, the points are back, and the ledger says why
    [row] = cli(runner, "rewards", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)
    assert row["status"] == "failed"
    customer = cli(runner, "customers", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)
    assert customer["available"] == 600
    assert [e["reason"] for e in customer["ledger"]] == ["earn", "redeem", "redeem_refund"]
    assert "rest_invalid_param" in customer["ledger"][-1]["why"]


@pytest.mark.parametrize(
    "_case, failure",
    [
        # (which HTTP answers are transient is the clients' business: tests/connectors/*/test_client.py)
        ("server error or timeout", TransientError("503 from the shop")),
        ("rate limited", RateLimitedError("429 from the shop", retry_after=2)),
    ],
)
def test_transient_failure_retries_without_spending_twice(_case, failure, make_shop, runner, work, redis_url,
                                                          fake_woo):
    # given a redemption
    _woo_shop_with_points(make_shop)
    cli(runner, "rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", "5 € Rabatt")

    # when the first attempt fails transiently
    fake_woo.fail("create_discount_code", failure)
    work()

    # then the job waits for a retry (scheduled with backoff), the code is still pending,
    # and the points were deducted exactly once
    from redis import Redis
    from rq import Queue

    scheduled = Queue("codes", connection=Redis.from_url(redis_url)).scheduled_job_registry.get_job_ids()
    assert len(scheduled) == 1
    with session_scope() as s:
        code = s.scalars(select(IssuedCode)).one()
    assert code.status == CodeStatus.PENDING
    assert cli(runner, "customers", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)["available"] == 100

    # and when the retry runs and the shop answers, the code is created once
    from jobs.codes import issue_code

    assert issue_code(code.id) == "created"
    assert issue_code(code.id) == "created"  # a late duplicate job does nothing
    assert [op for op, _creds, _arg in fake_woo.calls] == ["create_discount_code"] * 2
    assert list(fake_woo.codes) == [code.code]
    assert cli(runner, "customers", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)["available"] == 100


def test_code_that_already_exists_is_found_not_duplicated(make_shop, runner, work):
    # given a redemption whose first attempt created the coupon but the answer was lost
    _woo_shop_with_points(make_shop)
    cli(runner, "rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", "5 € Rabatt")
    seen: list[dict] = []

    def created_then_lost(request):  # type: ignore[no-untyped-def]
        seen.append(json.loads(request.body))
        raise __import__("requests").exceptions.ReadTimeout("created, answer lost")

    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.POST, WOO_COUPONS, callback=created_then_lost)
        work()
    with session_scope() as s:
        code_id = s.scalars(select(IssuedCode.id)).one()

    # when the retry is told the code exists, it looks it up (WooCommerce stores it lower-cased)
    from jobs.codes import issue_code

    duplicate = json.loads((FIXTURES / "woocommerce_api" / "coupons_create__code_already_exists.json").read_text())
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, WOO_COUPONS, json=duplicate, status=400)
        mock.add(responses.GET, WOO_COUPONS, json=[_stored_coupon(seen[0])], status=200)
        assert issue_code(code_id) == "created"

    # then the redemption is complete with the existing code
    [row] = cli(runner, "rewards", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)
    assert row["status"] == "created"


def test_coupon_the_shop_keeps_without_its_expiry_fails_and_gives_the_points_back(make_shop, runner, work):
    # given a redemption, and a store that drops the expiry (as it does to date_expires_gmt)
    _woo_shop_with_points(make_shop)
    cli(runner, "rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", "5 € Rabatt")

    def without_expiry(request):  # type: ignore[no-untyped-def]
        answer = {**_stored_coupon(json.loads(request.body)), "date_expires": None, "date_expires_gmt": None}
        return 201, {}, json.dumps(answer)

    # when the worker creates the coupon
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.POST, WOO_COUPONS, callback=without_expiry)
        work()

    # then the code is not shown as created: it failed with the reason, and the points are back
    [row] = cli(runner, "rewards", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)
    assert row["status"] == "failed"
    with session_scope() as s:
        assert "date_expires_gmt: asked" in s.scalars(select(IssuedCode.error)).one()
    assert cli(runner, "customers", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)["available"] == 600


GIFT = {"name": "Probe", "min_amount": "50", "note": "Bitte Probe beilegen", "tag": "geschenk"}
CREDENTIALS = {"woocommerce": WOO_CREDS, "shopify": {"access_token": "shpat_test"}}


@pytest.mark.parametrize(("_case", "platform"), [("woocommerce", "woocommerce"), ("shopify", "shopify")])
def test_gift_with_purchase_marks_the_order(_case, platform, make_shop, work, monkeypatch):
    # given a shop with a gift from 50.00 (its API in memory: how each platform marks the order
    # is the clients' business, tests/connectors/*/test_client.py `test_mark_gift_*`)
    fake = install_fake_connector(monkeypatch, platform)
    shop = make_shop(platform, credentials=CREDENTIALS[platform])
    program(shop, {"second_purchase": {"enabled": False}, "referral": {"enabled": False}, "gifts": [GIFT]})

    # when a qualifying order is paid
    apply(shop, order("77", "60.00"))
    work()

    # then the shop was asked to mark that order with the gift, with its credentials, and the task is done
    assert fake.gifts == [("77", "geschenk", "Bitte Probe beilegen")]
    [(_op, credentials, _order)] = fake.calls
    assert credentials == {**CREDENTIALS[platform], "shop": fake.normalize_shop(
        WOO_DOMAIN if platform == "woocommerce" else "demo-laden.myshopify.com")}
    with session_scope() as s:
        assert s.scalars(select(OrderTask)).one().status == CodeStatus.CREATED


@pytest.mark.parametrize(
    ("_case", "failure", "status", "error"),
    [
        ("refused", PermanentError("woocommerce_rest_shop_order_invalid_id: Invalid ID"), CodeStatus.FAILED,
         "woocommerce_rest_shop_order_invalid_id: Invalid ID"),
        ("bad stored order id", ValueError("order_id is not a WooCommerce order id"), CodeStatus.FAILED,
         "order_id is not a WooCommerce order id"),
    ],
)
def test_gift_the_shop_refuses_fails_the_task_with_the_reason(_case, failure, status, error, make_shop, work,
                                                               fake_woo):
    # given a gift the shop will refuse to mark
    shop = make_shop("woocommerce", credentials=WOO_CREDS)
    program(shop, {"second_purchase": {"enabled": False}, "referral": {"enabled": False}, "gifts": [GIFT]})
    fake_woo.fail("mark_gift", failure)

    # when a qualifying order is paid and the worker runs
    apply(shop, order("77", "60.00"))
    work()

    # then the task failed once and for all, with the shop's reason
    with session_scope() as s:
        task = s.scalars(select(OrderTask)).one()
        assert (task.status, task.error, task.attempts) == (status, error, 1)
    assert fake_woo.gifts == []


def test_gift_transient_failure_is_retried(make_shop, work, redis_url, fake_woo):
    # given a gift whose first marking times out
    shop = make_shop("woocommerce", credentials=WOO_CREDS)
    program(shop, {"second_purchase": {"enabled": False}, "referral": {"enabled": False}, "gifts": [GIFT]})
    fake_woo.fail("mark_gift", TransientError("timeout"))

    # when a qualifying order is paid and the worker runs
    apply(shop, order("77", "60.00"))
    work()

    # then the task waits for its retry
    from redis import Redis
    from rq import Queue

    assert len(Queue("codes", connection=Redis.from_url(redis_url)).scheduled_job_registry.get_job_ids()) == 1
    with session_scope() as s:
        task_id = s.scalars(select(OrderTask.id)).one()
        assert s.get(OrderTask, task_id).status == CodeStatus.PENDING

    # and when it runs again, the order is marked once
    from jobs.codes import run_order_task

    assert run_order_task(task_id) == "created"
    assert run_order_task(task_id) == "created"  # a late duplicate does nothing
    assert fake_woo.gifts == [("77", "geschenk", "Bitte Probe beilegen")]


def test_redis_down_at_redemption_leaves_the_code_for_the_sweep(make_shop, runner, work, redis_server, fake_woo):
    # given Redis goes down between a redemption's check and its commit (the admin page redeems
    # without asking Redis first; the CLI refuses up front, see tests/app/test_cli_redis.py)
    shop_id = _woo_shop_with_points(make_shop)
    redis_server["stop"]()
    from app.loyalty.customers import find_by_email
    from app.models import Shop
    from app.loyalty.redemptions import redeem

    with session_scope() as s:
        redeem(s, s.get(Shop, shop_id), find_by_email(s, shop_id, EMAIL), "5 € Rabatt", source="staff", actor="test")
    [pending] = cli(runner, "rewards", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)
    assert pending["status"] == "pending"

    # when Redis is back and the sweep runs
    redis_server["restart"]()
    from jobs.codes import requeue_pending

    assert requeue_pending(older_than_seconds=0) == 1
    work()

    # then the code exists
    [row] = cli(runner, "rewards", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)
    assert row["status"] == "created"


SHOPIFY_GRAPHQL = "https://demo-laden.myshopify.com/admin/api/2026-07/graphql.json"
COST = {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0}}


def test_shopify_reward_code_is_created_through_graphql(make_shop, runner, work):
    # given a Shopify customer (platform id 207119551) with 600 available points
    shop = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop, {"earning": {"return_window_days": 0}, "second_purchase": {"enabled": False},
                   "referral": {"enabled": False}})
    apply(shop, order("1", "600.00", customer_id="207119551"))
    pending = cli(runner, "rewards", "redeem", "--shop", "demo-laden.myshopify.com", "--email", EMAIL,
                  "--reward", "5 € Rabatt")
    assert pending["status"] == "pending"

    # when the worker runs against Shopify
    node = {"id": "gid://shopify/DiscountCodeNode/1"}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, status=200, json={
            "data": {"discountCodeBasicCreate": {"codeDiscountNode": node, "userErrors": []}},
            "extensions": {"cost": COST}})
        work()
        sent = json.loads(mock.calls[0].request.body)
        token = mock.calls[0].request.headers["X-Shopify-Access-Token"]

    # then a 5.00 code restricted to that customer exists
    basic = sent["variables"]["basicCodeDiscount"]
    assert basic["context"] == {"customers": {"add": ["gid://shopify/Customer/207119551"]}}
    assert basic["customerGets"]["value"]["discountAmount"]["amount"] in ("5", "5.00")
    assert (basic["usageLimit"], token) == (1, "shpat_test")
    [row] = cli(runner, "rewards", "show", "--shop", "demo-laden.myshopify.com", "--email", EMAIL)
    assert row["status"] == "created" and row["code"] == basic["code"]


COMBINATION = {"name": "Kaffee-Kombi", "points": 400, "kind": "buy_x_get_y", "buys_product_ids": ["71"],
               "buys_quantity": 2, "buys_label": "Espresso-Bohnen", "product_id": "10", "gets_label": "Tasse",
               "valid_days": 14}


def test_combination_offer_is_redeemed_as_a_woocommerce_coupon_with_its_condition(make_shop, runner, work):
    # given a customer with 600 points, a "buy 2 × Espresso-Bohnen, get a cup free" offer, and
    # a store that connected the plugin (which checks what must be bought)
    from app import woo_plugin
    from app.models import Shop
    from tests.conftest import TEST_ENCRYPTION_KEY

    shop = _woo_shop_with_points(make_shop)
    program(shop, {"earning": {"return_window_days": 0}, "second_purchase": {"enabled": False},
                   "referral": {"enabled": False}, "rewards": [COMBINATION]})
    with session_scope() as s:
        woo_plugin.new_plugin_secret(s.get(Shop, shop), TEST_ENCRYPTION_KEY)

    # when support redeems it and the worker runs against the store
    pending = cli(runner, "rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", "Kaffee-Kombi")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        _store(mock)
        work()
        sent = json.loads(mock.calls[0].request.body)

    # then the points are spent once, and the coupon gives the cup free (one unit) to this customer,
    # carrying what must be bought for the plugin's check
    assert pending["status"] == "pending"
    assert cli(runner, "customers", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)["available"] == 200
    assert (sent["discount_type"], sent["amount"], sent["product_ids"], sent["limit_usage_to_x_items"]) == (
        "percent", "100", [10], 1)
    assert sent["email_restrictions"] == [EMAIL] and sent["usage_limit"] == 1
    assert sent["meta_data"] == [{"key": "_stammkunde_buys_ids", "value": "71"},
                                 {"key": "_stammkunde_buys_quantity", "value": "2"},
                                 {"key": "_stammkunde_buys_label", "value": "Espresso-Bohnen"}]
    [row] = cli(runner, "rewards", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)
    assert row["status"] == "created" and row["code"] == sent["code"]


def test_combination_offer_is_refused_in_a_woocommerce_store_without_the_plugin(make_shop, runner):
    # given a store that never connected the plugin, and a customer with 600 points
    shop = _woo_shop_with_points(make_shop)
    program(shop, {"earning": {"return_window_days": 0}, "second_purchase": {"enabled": False},
                   "referral": {"enabled": False}, "rewards": [COMBINATION]})

    # when support tries to redeem the offer
    result = runner.invoke(args=["rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward",
                                 "Kaffee-Kombi", "--json"])

    # then it is refused with the reason, and no points are spent
    assert result.exit_code != 0
    assert "need the Stammkunde plugin" in result.output
    assert cli(runner, "customers", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)["available"] == 600


def test_combination_offer_is_redeemed_as_a_shopify_bxgy_code_valid_for_the_schema(make_shop, runner, work):
    from graphql import build_schema

    from tests.connectors.shopify.test_graphql_schema import SCHEMA_FILE, coerce, deprecated_inputs

    # given a Shopify customer (207119551) with 600 points and a "buy 2, get one half price" offer
    shop = make_shop("shopify", credentials={"access_token": "shpat_test"})
    offer = {**COMBINATION, "value": "50", "buys_product_ids": ["632910392"], "product_id": None,
             "variant_id": "39072856"}
    program(shop, {"earning": {"return_window_days": 0}, "second_purchase": {"enabled": False},
                   "referral": {"enabled": False}, "rewards": [offer]})
    apply(shop, order("1", "600.00", customer_id="207119551"))
    cli(runner, "rewards", "redeem", "--shop", "demo-laden.myshopify.com", "--email", EMAIL, "--reward", "Kaffee-Kombi")

    # when the worker runs against Shopify
    node = {"id": "gid://shopify/DiscountCodeNode/7"}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, status=200, json={
            "data": {"discountCodeBxgyCreate": {"codeDiscountNode": node, "userErrors": []}},
            "extensions": {"cost": COST}})
        work()
        sent = json.loads(mock.calls[0].request.body)

    # then a BXGY code for that customer was sent, valid for the pinned schema
    schema = build_schema(SCHEMA_FILE.read_text(encoding="utf-8"), assume_valid=True, no_location=True)
    assert coerce(schema, sent["query"], sent["variables"]) == []
    assert deprecated_inputs(schema, sent["query"], sent["variables"]) == []
    bxgy = sent["variables"]["bxgyCodeDiscount"]
    assert bxgy["context"] == {"customers": {"add": ["gid://shopify/Customer/207119551"]}}
    assert bxgy["customerBuys"] == {"value": {"quantity": "2"},
                                    "items": {"products": {"productsToAdd": ["gid://shopify/Product/632910392"]}}}
    assert bxgy["customerGets"] == {
        "value": {"discountOnQuantity": {"quantity": "1", "effect": {"percentage": 0.5}}},
        "items": {"products": {"productVariantsToAdd": ["gid://shopify/ProductVariant/39072856"]}}}
    assert (bxgy["usageLimit"], bxgy["usesPerOrderLimit"], "endsAt" in bxgy) == (1, 1, True)
    [row] = cli(runner, "rewards", "show", "--shop", "demo-laden.myshopify.com", "--email", EMAIL)
    assert row["status"] == "created" and row["code"] == bxgy["code"]
    assert cli(runner, "customers", "show", "--shop", "demo-laden.myshopify.com", "--email", EMAIL)["available"] == 200


def test_shopify_gift_tags_the_order(make_shop, work):
    # given a Shopify shop with a gift from 1.2 kg
    shop = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop, {"second_purchase": {"enabled": False}, "referral": {"enabled": False},
                   "gifts": [{"name": "Probe", "min_grams": 1200, "tag": "geschenk"}]})

    # when a 1.2 kg order is paid
    apply(shop, order("450789469", "20.00", grams=1200))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, status=200, json={
            "data": {"tagsAdd": {"node": {"id": "gid://shopify/Order/450789469"}, "userErrors": []}},
            "extensions": {"cost": COST}})
        work()
        sent = json.loads(mock.calls[0].request.body)

    # then tagsAdd put the gift tag on that order
    assert sent["variables"] == {"id": "gid://shopify/Order/450789469", "tags": ["geschenk"]}


def test_a_code_nobody_waits_for_is_written_once_with_its_transaction_and_left_to_the_sweep(make_shop, monkeypatch):
    # given a shop
    from decimal import Decimal

    from app.loyalty import codes
    from app.models import Shop

    shop_id = make_shop("shopify")
    spec = {"purpose": "second_purchase", "source_key": "c-1", "customer_id": None, "title": "15 %",
            "kind": "percentage", "value": Decimal(15), "valid_days": 7}
    enqueued: list[int] = []
    monkeypatch.setattr(codes, "enqueue_code", enqueued.append)

    def rows() -> list[tuple[str, str]]:
        with session_scope() as s:
            return [(r.code, r.spec["title"]) for r in s.scalars(select(IssuedCode))]

    # when a transaction records the code and rolls back, then one records it and commits
    with pytest.raises(RuntimeError), session_scope() as s:
        codes.record_code(s, s.get(Shop, shop_id), enqueue=False, **spec)
        raise RuntimeError("the order failed")
    assert rows() == []
    with session_scope() as s:
        row, created = codes.record_code(s, s.get(Shop, shop_id), enqueue=False, **spec)
        code = row.code

    # then one pending row holds the code the call returned, and no job was enqueued for it
    # (`jobs.codes.requeue_pending` hands it to the worker)
    assert created
    assert rows() == [(code, "15 %")]
    assert code == codes.derive_code(shop_id, "second_purchase", "c-1")
    assert enqueued == []

    # and recording it again keeps the first row (same code, first spec)
    with session_scope() as s:
        again, created = codes.record_code(s, s.get(Shop, shop_id), enqueue=False, **{**spec, "title": "20 %"})
        assert (again.code, created) == (code, False)
    assert rows() == [(code, "15 %")]
    with session_scope() as s:
        assert s.scalar(select(IssuedCode.status)) == CodeStatus.PENDING


# ---- a shop without usable API credentials (issue 14) -------------------------------------


@pytest.mark.parametrize(
    ("_case", "platform", "domain", "credentials"),
    [
        ("woocommerce registered without keys", "woocommerce", WOO_DOMAIN, None),
        ("woocommerce with a key but no secret", "woocommerce", WOO_DOMAIN, {"consumer_key": "ck_test"}),
        ("shopify registered without --api-token", "shopify", "demo-laden.myshopify.com", None),
    ],
)
def test_code_for_a_shop_without_credentials_fails_with_the_reason_and_gives_points_back(
    _case, platform, domain, credentials, make_shop, runner, work, monkeypatch
):
    # given a customer with 600 points in a shop registered without (complete) API credentials
    fake = install_fake_connector(monkeypatch, platform)
    shop = make_shop(platform, credentials=credentials)
    program(shop, {"earning": {"return_window_days": 0}, "second_purchase": {"enabled": False},
                   "referral": {"enabled": False}})
    apply(shop, order("1", "600.00", customer_id="207119551"))

    # when support redeems a reward and the worker runs
    cli(runner, "rewards", "redeem", "--shop", domain, "--email", EMAIL, "--reward", "5 € Rabatt")
    work()
    assert fake.calls == []  # nothing reached the shop

    # then the code failed once and for all, saying what to do, and the points are back
    with session_scope() as s:
        row = s.scalars(select(IssuedCode)).one()
        assert (row.status, row.attempts) == (CodeStatus.FAILED, 1)
        assert row.error == (f"the shop has no API credentials: add them with `flask shops add "
                             f"--platform {platform} --domain {domain} "
                             + ("--api-token <Admin API access token>`" if platform == "shopify"
                                else "--consumer-key <ck_...> --consumer-secret <cs_...>`"))
    [shown] = cli(runner, "rewards", "show", "--shop", domain, "--email", EMAIL)
    assert shown["status"] == "failed"
    customer = cli(runner, "customers", "show", "--shop", domain, "--email", EMAIL)
    assert customer["available"] == 600
    assert [e["reason"] for e in customer["ledger"]] == ["earn", "redeem", "redeem_refund"]
    assert "the shop has no API credentials" in customer["ledger"][-1]["why"]


def test_code_for_a_shop_whose_credentials_cannot_be_decrypted_fails_instead_of_retrying(
    make_shop, runner, work, redis_url, fake_woo
):
    # given credentials stored under an encryption key the app no longer has
    from cryptography.fernet import Fernet

    from app import crypto
    from app.models import Shop

    shop = _woo_shop_with_points(make_shop)
    with session_scope() as s:
        s.get(Shop, shop).api_credentials_enc = crypto.encrypt(Fernet.generate_key().decode(), json.dumps(WOO_CREDS))
    cli(runner, "rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", "5 € Rabatt")

    # when the worker runs
    work()
    assert fake_woo.calls == []  # nothing reached the shop

    # then no retry is scheduled: the code failed with the reason, and the points are back
    from redis import Redis
    from rq import Queue

    assert Queue("codes", connection=Redis.from_url(redis_url)).scheduled_job_registry.get_job_ids() == []
    with session_scope() as s:
        row = s.scalars(select(IssuedCode)).one()
        assert row.status == CodeStatus.FAILED
        assert row.error.startswith("the shop's API credentials cannot be decrypted with ENCRYPTION_KEY")
    assert cli(runner, "customers", "show", "--shop", WOO_DOMAIN, "--email", EMAIL)["available"] == 600


@pytest.mark.parametrize(("_case", "platform"), [("woocommerce note", "woocommerce"), ("shopify tag", "shopify")])
def test_order_task_for_a_shop_without_credentials_fails_with_the_reason(_case, platform, make_shop, work,
                                                                        monkeypatch):
    # given a shop with a gift with purchase, registered without API credentials
    fake = install_fake_connector(monkeypatch, platform)
    shop = make_shop(platform)
    program(shop, {"second_purchase": {"enabled": False}, "referral": {"enabled": False},
                   "gifts": [{"name": "Probe", "min_amount": "50", "note": "Bitte Probe beilegen", "tag": "geschenk"}]})

    # when a qualifying order is paid and the worker runs
    apply(shop, order("77", "60.00"))
    work()
    assert fake.calls == []  # nothing reached the shop

    # then the task failed, saying the shop has no API credentials
    with session_scope() as s:
        task = s.scalars(select(OrderTask)).one()
        assert task.status == CodeStatus.FAILED
        assert task.error.startswith("the shop has no API credentials: add them with `flask shops add")


# ---- switching a code off in the shop (the job's decisions; the HTTP is in test_tier_perks) --


def _created_code_marked_to_end(make_shop, runner, work) -> int:  # type: ignore[no-untyped-def]
    """Redeem a reward in a WooCommerce shop, let the worker create it, and mark it to end now."""
    from app.models import utcnow

    _woo_shop_with_points(make_shop)
    cli(runner, "rewards", "redeem", "--shop", WOO_DOMAIN, "--email", EMAIL, "--reward", "5 € Rabatt")
    work()
    with session_scope() as s:
        row = s.scalars(select(IssuedCode)).one()
        assert row.status == CodeStatus.CREATED
        row.ends_early_at = utcnow()
        return row.id


def test_code_marked_to_end_is_switched_off_once(make_shop, runner, work, fake_woo):
    # given a code the shop holds, marked to end
    code_id = _created_code_marked_to_end(make_shop, runner, work)
    from jobs.codes import deactivate_code

    # when the job runs twice
    assert deactivate_code(code_id) == "deactivated"
    assert deactivate_code(code_id) == "deactivated"

    # then the shop was asked once, for the id it gave the code, from the marked time
    with session_scope() as s:
        row = s.get(IssuedCode, code_id)
        assert row.deactivated_at is not None
        assert fake_woo.deactivated == {row.platform_id: row.ends_early_at}
    assert [op for op, _c, _a in fake_woo.calls].count("deactivate_discount_code") == 1


@pytest.mark.parametrize(
    ("_case", "failure", "answer"),
    [("refused", PermanentError("rest_forbidden"), "failed"), ("timeout", TransientError("slow"), None)],
)
def test_code_the_shop_cannot_switch_off(_case, failure, answer, make_shop, runner, work, fake_woo):
    # given a code marked to end, and a shop that fails to switch it off
    code_id = _created_code_marked_to_end(make_shop, runner, work)
    fake_woo.fail("deactivate_discount_code", failure)
    from jobs.codes import deactivate_code

    # when the job runs
    if answer is None:
        # then a transient failure raises, so RQ retries ...
        with pytest.raises(TransientError):
            deactivate_code(code_id)
        with session_scope() as s:
            assert s.get(IssuedCode, code_id).error is None
        # ... and the retry switches it off
        assert deactivate_code(code_id) == "deactivated"
    else:
        # then a refusal is recorded with the reason, and not tried again
        assert deactivate_code(code_id) == answer
        with session_scope() as s:
            assert s.get(IssuedCode, code_id).error == "could not switch the code off in the shop: rest_forbidden"
        assert deactivate_code(code_id) == "failed"
        assert [op for op, _c, _a in fake_woo.calls].count("deactivate_discount_code") == 1


def test_shopify_code_jobs_pace_by_the_bucket_every_worker_shares(make_shop, runner, work, redis_url):
    from redis import Redis

    from app.rate_limits import RedisThrottle
    from connectors.throttle import BucketStatus

    # given a Shopify customer with points for two rewards, and one code created by the worker
    shop = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop, {"earning": {"return_window_days": 0}, "second_purchase": {"enabled": False},
                   "referral": {"enabled": False}})
    apply(shop, order("1", "1200.00", customer_id="207119551"))
    redeem = ("rewards", "redeem", "--shop", "demo-laden.myshopify.com", "--email", EMAIL, "--reward", "5 € Rabatt")
    cli(runner, *redeem)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, SHOPIFY_GRAPHQL, status=200, json={
            "data": {"discountCodeBasicCreate": {"codeDiscountNode": {"id": "gid://shopify/DiscountCodeNode/1"},
                                                 "userErrors": []}},
            "extensions": {"cost": COST}})
        work()

    # then the worker's answer is the shop's model in Redis, for every worker to pace by
    other_worker = RedisThrottle(Redis.from_url(redis_url), platform="shopify")
    model = other_worker.status("demo-laden.myshopify.com")
    assert model is not None and (model["maximum"], model["available"], model["rate"]) == (2000, 1990, 100)

    # when another worker's answer leaves the bucket empty, restoring a point every 2 s, and a code is due
    ticket = other_worker.acquire("demo-laden.myshopify.com", "DiscountCodeBasicCreate", 10)
    other_worker.settle(ticket, requested=10, actual=10,
                        status=BucketStatus(maximum=2000, available=0, restore_rate=0.5))
    cli(runner, *redeem)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        work()
        calls = len(mock.calls)

    # then this worker does not send it to be refused: no request, the code waits for a retry
    assert calls == 0
    statuses = sorted(row["status"] for row in cli(runner, "rewards", "show", "--shop", "demo-laden.myshopify.com",
                                                       "--email", EMAIL))
    assert statuses == ["created", "pending"]
