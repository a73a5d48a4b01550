"""Earning by product from real deliveries, end to end: signed POST -> inbox -> RQ worker ->
product lookup -> ledger, on both platforms (SQLite and PostgreSQL, a real redis-server and
SimpleWorker). Shopify's shop API is the in-memory fake (its HTTP shape:
tests/connectors/test_product_facts.py); WooCommerce's is served by `responses`."""

from __future__ import annotations

import itertools
import json

import pytest
import responses
from sqlalchemy import select

from app.db import session_scope
from app.models import DeliveryStatus, LedgerEntry, ProductFacts as ProductFactsRow, WebhookDelivery
from connectors.errors import TransientError
from connectors.types import ProductFacts
from tests.conftest import FIXTURES, SHOPIFY_DOMAIN, WOO_DOMAIN, fixture_bytes
from tests.connectors.fake import install_fake_connector
from tests.factories import program
from tests.jobs.test_points_flow import SHOPIFY_EMAIL, show

# Shopify's example order: three iPods of product 632910392 (195.66, 195.67, 195.67 after
# TENOFF); the red one (variant 457924702) earns nothing, every iPod (product tag) double.
SHOPIFY_RULES = {"earning": {"product_rules": [
    {"name": "iPods doppelt", "tags": ["ipod"], "multiplier": "2"},
    {"name": "Rot ohne Punkte", "effect": "exclude", "variant_ids": ["457924702"]},
]}}
IPOD = ProductFacts("632910392", True, collections=("841564295", "ipods", "IPods"), tags=("iPod", "Music"))


@pytest.fixture
def shopify_shop(make_shop, monkeypatch):  # type: ignore[no-untyped-def]
    fake = install_fake_connector(monkeypatch, "shopify")
    fake.products[IPOD.id] = IPOD
    shop_id = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop_id, SHOPIFY_RULES)
    return fake


def post(post_webhook, platform: str, topic: str, body: bytes, n: int) -> None:  # type: ignore[no-untyped-def]
    response = post_webhook(platform, topic, body, event_id=f"{topic}-{n}")
    assert response.status_code == 200, response.get_json()


def test_shopify_lines_earn_by_their_products_tags_and_variants(shopify_shop, post_webhook, work, runner):
    # when the paid order arrives
    post(post_webhook, "shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), 0)
    work()

    # then its product's tags were looked up once and kept, and the lines earned by them:
    # 2 x (195.66 + 195.67) + 0 for the red one = 782 (not 587)
    assert shopify_shop.product_lookups == [("632910392",)]
    customer = show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)
    [earn] = customer["ledger"]
    assert earn["delta"] == 782
    assert "(2× on iPods doppelt: 782 points; Rot ohne Punkte: no points)" in earn["why"]
    with session_scope() as s:
        [row] = s.scalars(select(ProductFactsRow)).all()
        assert row.tags == ["iPod", "Music"] and row.found


@pytest.mark.parametrize("arrival", list(itertools.permutations(["paid", "refund"])))
def test_shopify_refund_takes_back_the_refunded_lines_own_points(shopify_shop, post_webhook, work, runner, arrival):
    # given the paid order (782: 391 on each of two doubled lines, 0 on the red one) and its
    # refund of the red iPod and the black one, in either arrival order
    bodies = {"paid": ("orders/paid", fixture_bytes("shopify", "orders_paid.json")),
              "refund": ("refunds/create", fixture_bytes("shopify", "refunds_create.json"))}
    for n, name in enumerate(arrival):
        post(post_webhook, "shopify", *bodies[name], n)
        work()

    # then the refund took back the black iPod's own 391 (double) and nothing for the red one
    # (the share of the refunded merchandise would have been 521)
    customer = show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", 782), ("refund", -391)]
    assert customer["pending"] + customer["available"] == 391


def test_a_duplicate_delivery_changes_nothing(shopify_shop, post_webhook, work, runner):
    body = fixture_bytes("shopify", "orders_paid.json")
    post(post_webhook, "shopify", "orders/paid", body, 0)
    post(post_webhook, "shopify", "orders/paid", body, 0)  # the same event id: refused as a duplicate
    post(post_webhook, "shopify", "orders/updated", body, 1)  # another event of the same state
    work()
    customer = show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", 782)]
    assert shopify_shop.product_lookups == [("632910392",)]  # looked up once: then kept


def test_a_lookup_that_fails_leaves_the_delivery_for_a_retry(shopify_shop, post_webhook, work, runner):
    # given the shop's API down for the next lookup
    shopify_shop.fail("fetch_products", TransientError("shopify graphql: HTTP 503"))

    # when the paid order arrives
    post(post_webhook, "shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), 0)
    work()

    # then nothing is awarded (never without the rule), and the delivery waits, saying why
    with session_scope() as s:
        [delivery] = s.scalars(select(WebhookDelivery)).all()
        assert delivery.status == DeliveryStatus.RECEIVED and delivery.attempts == 1
        assert "could not be looked up" in delivery.error and "632910392" in delivery.error
        delivery_id = delivery.id
        assert s.scalars(select(LedgerEntry)).all() == []  # nor anything else of it: rolled back

    # when it is tried again (the requeue sweep), the API back
    from jobs.deliveries import process_deliveries

    assert process_deliveries([delivery_id]) == {"processed": 1}

    # then it earns by its rules
    assert [(e["reason"], e["delta"]) for e in show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)["ledger"]] == [
        ("earn", 782)]


def test_rules_that_need_no_lookup_make_no_call(make_shop, monkeypatch, post_webhook, work, runner):
    # given a rule by variant only
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop_id, {"earning": {"product_rules": [SHOPIFY_RULES["earning"]["product_rules"][1]]}})

    post(post_webhook, "shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), 0)
    work()

    # then the red iPod earns nothing, the others as usual, and the shop was not asked anything
    assert [e["delta"] for e in show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)["ledger"]] == [391]
    assert fake.calls == [c for c in fake.calls if c[0] != "fetch_products"]


# ---- WooCommerce: categories, looked up with GET products ------------------------------------

WOO_CREDS = {"consumer_key": "ck_0123456789abcdef0123456789abcdef01234567",
             "consumer_secret": "cs_0123456789abcdef0123456789abcdef01234567"}
PRODUCTS = f"{WOO_DOMAIN}/wp-json/wc/v3/products"
REFUNDS = f"{WOO_DOMAIN}/wp-json/wc/v3/orders/31/refunds"
KARLA = "karla.konsens@example.test"


def order_31_before_its_refund() -> bytes:
    """Order 31 (coffee 40.00, a mug 12.00, shipping 8.00) as it was when paid, before refund 37."""
    order = json.loads(fixture_bytes("woocommerce", "order_updated__line_refund_with_shipping.json"))
    order.update(refunds=[], date_modified_gmt="2026-12-02T01:40:00")
    return json.dumps(order).encode()


@pytest.mark.parametrize(("_case", "rule", "earned", "taken"), [
    ("coffee doubled: its refunded half takes back double", {"name": "Kaffee doppelt", "categories": ["kaffee"],
                                                             "multiplier": "2"}, 92, 40),
    ("coffee excluded: its refund takes back nothing", {"name": "Kein Kaffee", "effect": "exclude",
                                                        "categories": ["Kaffee"]}, 12, 0),
])
def test_woocommerce_lines_earn_by_category_and_refunds_take_their_own(make_shop, post_webhook, work, runner,
                                                                       _case, rule, earned, taken):
    # given a store whose program has a rule on the coffee category (products are looked up
    # with GET products: documented answer, tests/fixtures/woocommerce_api_documented/products_list.json)
    shop_id = make_shop("woocommerce", credentials=WOO_CREDS)
    program(shop_id, {"earning": {"product_rules": [rule]}})
    products = (FIXTURES / "woocommerce_api_documented" / "products_list.json").read_bytes()
    refunds = (FIXTURES / "woocommerce_api" / "refunds_list.json").read_bytes()

    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.GET, PRODUCTS, body=products, content_type="application/json; charset=UTF-8")
        # when order 31 is paid
        post(post_webhook, "woocommerce", "order.updated", order_31_before_its_refund(), 0)
        work()
        # then the coffee line earned by its rule, the mug as usual; shipping earns nothing
        customer = show(runner, WOO_DOMAIN, KARLA)
        assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [("earn", earned)]

        # when one of the two coffee packs is refunded (the order lists the refund as a total;
        # the job reads its lines, capture 103)
        mock.add(responses.GET, REFUNDS, body=refunds, content_type="application/json; charset=UTF-8")
        post(post_webhook, "woocommerce", "order.updated",
             fixture_bytes("woocommerce", "order_updated__line_refund_with_shipping.json"), 1)
        work()  # the order: the refund taken on the estimate, and the refund-detail job
        work()  # the refund's lines

    # then, once the lines are known, the refund took back the coffee line's own points for
    # half of it: double when doubled, nothing when excluded
    customer = show(runner, WOO_DOMAIN, KARLA)
    assert customer["ledger"][0]["delta"] == earned
    assert -sum(e["delta"] for e in customer["ledger"] if e["reason"] == "refund") == taken
    assert customer["pending"] + customer["available"] == earned - taken


def test_history_that_earns_nothing_looks_nothing_up(shopify_shop, make_shop, work, runner):
    # given the shop's past order brought in by a backfill that awards nothing of the past
    from app.inbox import record_delivery
    from jobs.deliveries import process_deliveries, prefetch_products

    body = fixture_bytes("shopify", "orders_paid.json")
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": SHOPIFY_DOMAIN,
               "X-Shopify-Event-Id": "history-1"}
    with session_scope() as s:
        from app.models import Shop

        shop_id = s.scalars(select(Shop.id)).one()
    delivery_id = record_delivery(shop_id, "shopify", "orders/paid", "orders/paid|event:history-1", headers, body,
                                  source="backfill")

    # when the worker takes it
    assert prefetch_products([delivery_id]) == 0
    assert process_deliveries([delivery_id]) == {"processed": 1}

    # then no product was looked up, and the order is stored as history (no points, no failure)
    assert shopify_shop.product_lookups == []
    [entry] = show(runner, SHOPIFY_DOMAIN, SHOPIFY_EMAIL)["ledger"]
    assert entry["delta"] == 0 and "from before the program" in entry["why"]
