"""Earning by product: looking up the products of an order's lines, on both platforms' clients
(`fetch_products`) against `responses` (Shopify: the schema-validated `nodes` document; WooCommerce:
`GET products?include=…`, documented shape)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
import responses

from connectors.errors import PermanentError, TransientError
from connectors.shopify import client as shopify_client
from connectors.types import ProductFacts
from connectors.woocommerce import client as woo_client

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHOP = "demo-laden.myshopify.com"
SHOPIFY_URL = f"https://{SHOP}/admin/api/2026-07/graphql.json"
SHOPIFY_CREDENTIALS = {"shop": SHOP, "access_token": "shpat_test_token_0123456789"}
STORE = "https://laden.example.test"
WOO_CREDENTIALS = {"url": STORE, "consumer_key": "ck_test", "consumer_secret": "cs_test"}
PRODUCTS_URL = f"{STORE}/wp-json/wc/v3/products"


@pytest.fixture(autouse=True)
def fresh_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A throttle of this test only, so no other test's bucket makes it wait."""
    monkeypatch.setattr(shopify_client, "THROTTLE", shopify_client.CostThrottle())


@responses.activate
def test_shopify_products_tags_and_collections_are_looked_up():
    # given the shop's answer to the `nodes` query: the iPod with its tags and collection, and
    # null for a product that was deleted
    responses.post(SHOPIFY_URL, body=(FIXTURES / "shopify_admin_api" / "nodes__products.json").read_bytes(),
                   content_type="application/json")

    # when the two products of an order are looked up
    facts = shopify_client.fetch_products(SHOPIFY_CREDENTIALS, ["632910392", "921728736"])

    # then the request is the validated document with both product gids ...
    [call] = responses.calls
    sent = json.loads(call.request.body)
    assert sent["query"] == shopify_client.DOCUMENTS["nodes"]
    assert sent["variables"] == {"ids": ["gid://shopify/Product/632910392", "gid://shopify/Product/921728736"],
                                 "collections": shopify_client.COLLECTIONS_FIRST}
    # ... and each product comes back with every name a rule may use
    assert facts == (
        ProductFacts("632910392", True, collections=("841564295", "ipods", "IPods"),
                     tags=("Emotive", "Flash Memory", "MP3", "Music")),
        ProductFacts("921728736", False),
    )


@responses.activate
def test_shopify_lookups_go_ten_products_at_a_time():
    # given an order with 12 products and an answer that names none of them (all deleted)
    def answer(request):  # type: ignore[no-untyped-def]
        ids = json.loads(request.body)["variables"]["ids"]
        return 200, {}, json.dumps({"data": {"nodes": [None] * len(ids)}})

    responses.add_callback(responses.POST, SHOPIFY_URL, callback=answer, content_type="application/json")

    # when they are looked up
    facts = shopify_client.fetch_products(SHOPIFY_CREDENTIALS, [str(n) for n in range(1, 13)])

    # then two queries asked for 10 and 2, and every product has an answer
    assert [len(json.loads(c.request.body)["variables"]["ids"]) for c in responses.calls] == [10, 2]
    assert [f.id for f in facts] == [str(n) for n in range(1, 13)] and not any(f.found for f in facts)


@pytest.mark.parametrize(("_case", "status", "error"), [
    ("the shop is down: retry later", 503, TransientError),
    ("the token is refused", 401, PermanentError),
])
@responses.activate
def test_a_shopify_lookup_that_fails_raises(_case: str, status: int, error: type[Exception]):
    responses.post(SHOPIFY_URL, status=status, json={"errors": "x"})
    with pytest.raises(error):
        shopify_client.fetch_products(SHOPIFY_CREDENTIALS, ["632910392"])


def test_a_shopify_product_id_must_be_one():
    with pytest.raises(ValueError):
        shopify_client.fetch_products(SHOPIFY_CREDENTIALS, ["gid://shopify/Customer/1"])


@responses.activate
def test_woocommerce_products_categories_and_tags_are_looked_up():
    # given the store's products answer (documented shape: no captured one exists) for 10 and 11
    responses.get(PRODUCTS_URL, body=(FIXTURES / "woocommerce_api_documented" / "products_list.json").read_bytes(),
                  content_type="application/json; charset=UTF-8")

    # when products 10, 11 and a deleted 12 are looked up
    facts = woo_client.fetch_products(WOO_CREDENTIALS, ["10", "11", "12"])

    # then one request named all three, and each category and tag comes with id, slug and name
    [call] = responses.calls
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(call.request.url).query)
    assert query["include"] == ["10,11,12"] and query["per_page"] == ["100"]
    assert facts == (
        ProductFacts("10", True, collections=("15", "kaffee", "Kaffee"), tags=("21", "bio", "Bio")),
        ProductFacts("11", True, collections=("16", "geschirr", "Geschirr"), tags=()),
        ProductFacts("12", False),
    )


@pytest.mark.parametrize(("_case", "kwargs", "error"), [
    ("the store is down", {"status": 503, "json": {"code": "x", "message": "down"}}, TransientError),
    ("the key may not read products", {"status": 401, "json": {"code": "woocommerce_rest_cannot_view",
                                                              "message": "Sorry, you cannot list resources."}},
     PermanentError),
    ("an answer that is no list of products", {"status": 200, "json": {"id": 10}}, PermanentError),
])
@responses.activate
def test_a_woocommerce_lookup_that_fails_raises(_case: str, kwargs: dict, error: type[Exception]):  # type: ignore[type-arg]
    responses.get(PRODUCTS_URL, **kwargs)
    with pytest.raises(error):
        woo_client.fetch_products(WOO_CREDENTIALS, ["10"])


def test_a_woocommerce_refund_names_the_lines_it_refunds():
    # given the captured refunds of order 31 (capture 103): refund 37 of one unit of line 2
    from decimal import Decimal

    from connectors.types import RefundLine
    from connectors.woocommerce import consts, webhooks

    refunds = json.loads((FIXTURES / "woocommerce_api" / "refunds_list.json").read_bytes())
    state = {"order_id": 31, "currency": "EUR", "prices_include_tax": False, "refunds": refunds}

    # when our refund-detail state is parsed
    details = webhooks.parse_refund_details(state, consts.REFUND_DETAILS)

    # then the refund names its order line (`_refunded_item_id`) with the merchandise refunded
    [refund] = details.refunds
    assert refund.lines == (RefundLine("2", Decimal("20.00")),)
