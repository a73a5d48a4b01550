"""WooCommerce REST v3 client: request shapes, auth schemes and error translation, network off.

Response bodies are the real ones in tests/fixtures/woocommerce_api/ (see its README).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests
import responses

from connectors.errors import PermanentError, RateLimitedError, TransientError
from connectors.types import DiscountCode, DiscountSpec
from connectors.woocommerce import client, connector, consts

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "woocommerce_api"

# The local test store the fixtures were captured from, with its (test-only) REST keys.
HTTP_STORE = "http://127.0.0.1:8888"
HTTP_CREDENTIALS = {
    "url": HTTP_STORE,
    "consumer_key": "ck_0123456789abcdef0123456789abcdef01234567",
    "consumer_secret": "cs_0123456789abcdef0123456789abcdef01234567",
}
HTTPS_STORE = "https://laden.example"
HTTPS_CREDENTIALS = {
    "url": HTTPS_STORE + "/",
    "consumer_key": "ck_https_test_key",
    "consumer_secret": "cs_https_test_secret",
}
API = "/wp-json/wc/v3/"
CET = timezone(timedelta(hours=1))

# The request line and body of the real 201 (10-create-coupon.request.http), sent with OAuth 1.0a.
CAPTURED_REQUEST_TARGET = (
    "/wp-json/wc/v3/coupons?oauth_consumer_key=ck_0123456789abcdef0123456789abcdef01234567"
    "&oauth_timestamp=1795351230&oauth_nonce=de4e84bdbc3f1edf15ce7183dea92c786db4d8d9"
    "&oauth_signature_method=HMAC-SHA256"
    "&oauth_signature=IQGedRbLliMVTk5%2BMBwyd4gqjkjpTRpGnviA%2ByLtB%2FQ%3D"
)
CAPTURED_REQUEST_BODY = {
    "code": "LOYALTY-JANE-500",
    "discount_type": "fixed_cart",
    "amount": "5.00",
    "individual_use": True,
    "usage_limit": 1,
    "usage_limit_per_user": 1,
    "email_restrictions": ["jane.doe@example.test"],
    "description": "Loyalty reward: 500 points",
}
STORED = DiscountCode(code="loyalty-jane-500", platform_id="12", created=True)

# WooCommerce error bodies as its REST controllers build them.
UNAUTHORIZED = {
    "code": "woocommerce_rest_authentication_error",
    "message": "Consumer key is invalid.",
    "data": {"status": 401},
}
NO_ROUTE = {
    "code": "rest_no_route",
    "message": "No route was found matching the URL and request method.",
    "data": {"status": 404},
}
INVALID_PARAM = {
    "code": "rest_invalid_param",
    "message": "Invalid parameter(s): discount_type",
    "data": {"status": 400, "params": {"discount_type": "discount_type is not one of ..."}},
}
ORDER_NOT_FOUND = {
    "code": "woocommerce_rest_shop_order_invalid_id",
    "message": "Invalid order ID.",
    "data": {"status": 404},
}
NOTE_CREATED = {
    "id": 281,
    "author": "WooCommerce",
    "date_created": "2026-11-22T12:41:00",
    "date_created_gmt": "2026-11-22T12:41:00",
    "note": "Stammkunde: 25 points earned.",
    "customer_note": False,
}


def fixture_bytes(name: str) -> bytes:
    """Return the exact bytes of tests/fixtures/woocommerce_api/<name>."""
    return (FIXTURES / name).read_bytes()


def utc(*parts: int) -> datetime:
    """Return an aware UTC datetime."""
    return datetime(*parts, tzinfo=timezone.utc)


def make_spec(**changes: Any) -> DiscountSpec:
    """Return the spec whose coupon the live store accepted (10-create-coupon), with changes."""
    fields: dict[str, Any] = {
        "code": "LOYALTY-JANE-500",
        "title": "Loyalty reward: 500 points",
        "kind": "fixed_amount",
        "value": Decimal("5.00"),
        "currency": "EUR",
        "starts_at": utc(2026, 11, 22, 12, 40),
        "customer_email": "jane.doe@example.test",
    }
    fields.update(changes)
    return DiscountSpec(**fields)


def woocommerce_signature(method: str, url: str, consumer_secret: str) -> tuple[str, str]:
    """Return (expected, given) OAuth 1.0a signatures of a request as WooCommerce checks them.

    A port of `check_oauth_signature` in woocommerce `includes/class-wc-rest-authentication.php`:
    the query as PHP's $_GET sees it (last duplicate wins), sorted by key, each key and value
    RFC 3986 encoded, each `k=v` encoded again, joined with %26, HMAC under `secret&`.
    """
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    given = params.pop("oauth_signature", "")
    encode = lambda value: quote(value, safe="~")  # noqa: E731 - PHP rawurlencode
    pairs = [(encode(k), encode(v)) for k, v in sorted(params.items(), key=lambda kv: kv[0])]
    query = "%26".join(encode(f"{k}={v}") for k, v in pairs)
    base_uri = encode(f"{parts.scheme}://{parts.netloc}{parts.path}")
    algorithm = params["oauth_signature_method"].removeprefix("HMAC-").lower()
    digest = hmac.new(
        f"{consumer_secret}&".encode(), f"{method}&{base_uri}&{query}".encode(), algorithm
    ).digest()
    return base64.b64encode(digest).decode(), given


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """A `responses` mock that fails the test if a registered response is not requested."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def add_created(mocked: responses.RequestsMock, store: str) -> None:
    """Register the real 201 of POST coupons."""
    mocked.add(
        responses.POST,
        store + API + "coupons",
        body=fixture_bytes("coupons_create.json"),
        status=201,
        content_type="application/json; charset=UTF-8",
    )


def add_duplicate(mocked: responses.RequestsMock, store: str) -> None:
    """Register the real 400 `woocommerce_rest_coupon_code_already_exists` of POST coupons."""
    mocked.add(
        responses.POST,
        store + API + "coupons",
        body=fixture_bytes("coupons_create__code_already_exists.json"),
        status=400,
        content_type="application/json; charset=UTF-8",
    )


def sent_json(call: Any) -> Any:
    """Return the JSON body a recorded call sent."""
    return json.loads(call.request.body)


def store_answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    """Answer POST coupons as the live store does (README "Round 3" facts), on a UTC site.

    The real 201 of coupons_create.json with the sent fields as the store keeps them: the code
    and e-mails lower-cased, amounts with two decimals, unset limits null, `date_expires` with
    an offset honoured, and `date_expires_gmt` ignored (no expiry at all).
    """
    sent = json.loads(request.body)
    answer = json.loads(fixture_bytes("coupons_create.json"))
    expires = sent.get("date_expires")
    gmt = (
        datetime.fromisoformat(expires.replace("Z", "+00:00")).astimezone(timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%S") if expires else None
    )
    answer.update(
        code=sent["code"].lower(),
        discount_type=sent["discount_type"],
        amount=f"{Decimal(sent['amount']):.2f}",
        description=sent.get("description", ""),
        individual_use=sent.get("individual_use", False),
        usage_limit=sent.get("usage_limit"),
        usage_limit_per_user=sent.get("usage_limit_per_user"),
        limit_usage_to_x_items=sent.get("limit_usage_to_x_items"),
        # meta comes back as sent, each with an id of its own (capture 100/101, customer meta)
        meta_data=[{"id": 40 + i, **meta} for i, meta in enumerate(sent.get("meta_data", []))],
        free_shipping=sent.get("free_shipping", False),
        product_ids=sent.get("product_ids", []),
        minimum_amount=f"{Decimal(sent.get('minimum_amount', '0')):.2f}",
        email_restrictions=[e.lower() for e in sent.get("email_restrictions", [])],
        date_expires=gmt,
        date_expires_gmt=gmt,
    )
    return 201, {}, json.dumps(answer)


# ---- create: the body per kind -----------------------------------------------------------


def test_create_sends_the_body_the_real_store_accepted(mocked):
    # given the live store answers with its real 201
    add_created(mocked, HTTP_STORE)

    # when the spec of that capture is created
    result = client.create_discount_code(HTTP_CREDENTIALS, make_spec())

    # then the body is the captured one, and the code comes back as the shop stored it
    assert sent_json(mocked.calls[0]) == CAPTURED_REQUEST_BODY
    assert mocked.calls[0].request.headers["Content-Type"].startswith("application/json")
    assert result == STORED


@pytest.mark.parametrize(
    ("_case", "changes", "expected"),
    [
        (
            "percentage, unlimited uses, anyone",
            {"kind": "percentage", "value": Decimal("10"), "usage_limit": None,
             "customer_email": None},
            {"code": "LOYALTY-JANE-500", "discount_type": "percent", "amount": "10",
             "individual_use": True, "usage_limit_per_user": 1,
             "description": "Loyalty reward: 500 points"},
        ),
        (
            "lasting tier perk: no use limits, ends with the tier period",
            {"kind": "percentage", "value": Decimal("5"), "usage_limit": None,
             "once_per_customer": False, "ends_at": utc(2027, 11, 22, 12, 40)},
            {"code": "LOYALTY-JANE-500", "discount_type": "percent", "amount": "5",
             "individual_use": True, "email_restrictions": ["jane.doe@example.test"],
             "date_expires": "2027-11-22T12:40:00Z",
             "description": "Loyalty reward: 500 points"},
        ),
        (
            "fixed amount with minimum and expiry in another zone",
            {"minimum_amount": Decimal("25"),
             "ends_at": datetime(2027, 1, 31, 23, 59, 59, 999, tzinfo=CET)},
            {**CAPTURED_REQUEST_BODY, "minimum_amount": "25",
             "date_expires": "2027-01-31T22:59:59Z"},
        ),
        (
            "fixed amount with a naive expiry taken as UTC",
            {"value": Decimal("1E+1"), "ends_at": datetime(2027, 1, 31, 12, 0)},
            {**CAPTURED_REQUEST_BODY, "amount": "10", "date_expires": "2027-01-31T12:00:00Z"},
        ),
        (
            "free shipping",
            {"kind": "free_shipping", "value": Decimal("0"), "title": "Gratisversand"},
            {**CAPTURED_REQUEST_BODY, "amount": "0", "free_shipping": True,
             "description": "Gratisversand"},
        ),
        (
            "free product from product and variant ids",
            {"kind": "free_product", "value": Decimal("0"), "product_ids": ("71",),
             "variant_ids": ("73", "74")},
            {**CAPTURED_REQUEST_BODY, "discount_type": "percent", "amount": "100",
             "product_ids": [71, 73, 74], "limit_usage_to_x_items": 1},
        ),
        (
            "combination offer: buy 2 of a product or variation, get 1 of another free",
            {"kind": "buy_x_get_y", "value": Decimal("100"), "product_ids": ("10",), "buys_product_ids": ("71",),
             "buys_variant_ids": ("73",), "buys_quantity": 2, "gets_quantity": 1, "buys_label": "Espresso-Bohnen"},
            {**CAPTURED_REQUEST_BODY, "discount_type": "percent", "amount": "100", "product_ids": [10],
             "limit_usage_to_x_items": 1,
             "meta_data": [{"key": "_stammkunde_buys_ids", "value": "71,73"},
                           {"key": "_stammkunde_buys_quantity", "value": "2"},
                           {"key": "_stammkunde_buys_label", "value": "Espresso-Bohnen"}]},
        ),
        (
            "combination offer: buy 3, get 2 half price",
            {"kind": "buy_x_get_y", "value": Decimal("50"), "variant_ids": ("11",), "buys_product_ids": ("71",),
             "buys_quantity": 3, "gets_quantity": 2, "buys_label": "Tassen"},
            {**CAPTURED_REQUEST_BODY, "discount_type": "percent", "amount": "50", "product_ids": [11],
             "limit_usage_to_x_items": 2,
             "meta_data": [{"key": "_stammkunde_buys_ids", "value": "71"},
                           {"key": "_stammkunde_buys_quantity", "value": "3"},
                           {"key": "_stammkunde_buys_label", "value": "Tassen"}]},
        ),
        (
            "percentage restricted to products",
            {"kind": "percentage", "value": Decimal("15.5"), "product_ids": ("71",)},
            {**CAPTURED_REQUEST_BODY, "discount_type": "percent", "amount": "15.5",
             "product_ids": [71]},
        ),
    ],
)
def test_create_sends_coupon_for_each_kind(mocked, _case, changes, expected):
    # given the shop creates the coupon as the live store does
    mocked.add_callback(responses.POST, HTTPS_STORE + API + "coupons", callback=store_answer)

    # when a spec of that kind is created
    result = client.create_discount_code(HTTPS_CREDENTIALS, make_spec(**changes))

    # then exactly that JSON was sent to POST coupons, and the store's answer was accepted
    assert len(mocked.calls) == 1
    assert mocked.calls[0].request.method == "POST"
    assert sent_json(mocked.calls[0]) == expected
    assert result == STORED


@pytest.mark.parametrize(
    ("_case", "changes", "message"),
    [
        ("unknown kind", {"kind": "bogo"}, "unknown discount kind"),
        ("combination offer with nothing to get", {"kind": "buy_x_get_y", "value": Decimal("100"),
                                                   "buys_product_ids": ("71",), "buys_quantity": 2,
                                                   "buys_label": "Bohnen"}, "to get"),
        ("combination offer with nothing to buy", {"kind": "buy_x_get_y", "value": Decimal("100"),
                                                   "product_ids": ("10",), "buys_quantity": 2,
                                                   "buys_label": "Bohnen"}, "needs buys_product_ids"),
        ("combination offer without a quantity", {"kind": "buy_x_get_y", "value": Decimal("100"),
                                                  "product_ids": ("10",), "buys_product_ids": ("71",),
                                                  "buys_label": "Bohnen"}, "buys_quantity"),
        ("combination offer without a name for the message", {"kind": "buy_x_get_y", "value": Decimal("100"),
                                                             "product_ids": ("10",), "buys_product_ids": ("71",),
                                                             "buys_quantity": 2}, "buys_label"),
        ("combination offer above 100 %", {"kind": "buy_x_get_y", "value": Decimal("120"), "product_ids": ("10",),
                                           "buys_product_ids": ("71",), "buys_quantity": 2,
                                           "buys_label": "Bohnen"}, "at most 100"),
        ("percentage above 100", {"kind": "percentage", "value": Decimal("101")}, "above 100"),
        ("negative amount", {"value": Decimal("-5")}, "non-negative"),
        ("not a number", {"value": Decimal("NaN")}, "non-negative"),
        ("free product without products", {"kind": "free_product"}, "needs product_ids"),
        ("product id not numeric", {"product_ids": ("gid://x/1",)}, "numeric"),
        ("usage limit zero", {"usage_limit": 0}, "usage_limit"),
        ("empty code", {"code": " "}, "code is empty"),
    ],
)
def test_create_rejects_a_spec_it_cannot_express_before_any_request(
    mocked, _case, changes, message
):
    # given a spec WooCommerce cannot hold (and no response registered: a request would fail)
    spec = make_spec(**changes)

    # when / then it is refused locally
    with pytest.raises(ValueError, match=message):
        client.create_discount_code(HTTPS_CREDENTIALS, spec)
    assert len(mocked.calls) == 0


# ---- auth schemes ------------------------------------------------------------------------


CALLS: dict[str, tuple[str, str, Callable[[dict[str, str]], Any], dict[str, Any]]] = {
    "create coupon": (
        responses.POST,
        "coupons",
        lambda creds: client.create_discount_code(creds, make_spec()),
        {"body": fixture_bytes("coupons_create.json"), "status": 201,
         "content_type": "application/json"},
    ),
    "find coupon": (
        responses.GET,
        "coupons",
        lambda creds: client.find_discount_code(creds, "LOYALTY-JANE-500"),
        {"json": [json.loads(fixture_bytes("coupons_create.json"))]},
    ),
    "add order note": (
        responses.POST,
        "orders/11/notes",
        lambda creds: client.add_order_note(creds, "11", "Stammkunde: 25 points earned."),
        {"json": NOTE_CREATED, "status": 201},
    ),
    "deactivate coupon": (
        responses.PUT,
        "coupons/12",
        lambda creds: client.deactivate_discount_code(creds, "12", now=utc(2027, 3, 1, 9, 30)),
        {"json": {**json.loads(fixture_bytes("coupons_create.json")),
                  "date_expires": "2027-03-01T09:30:00", "date_expires_gmt": "2027-03-01T09:30:00"}},
    ),
}


@pytest.mark.parametrize("_case", sorted(CALLS))
def test_https_uses_basic_auth(mocked, _case):
    # given an https store
    method, endpoint, call, answer = CALLS[_case]
    mocked.add(method, HTTPS_STORE + API + endpoint, **answer)

    # when the call is made
    call(HTTPS_CREDENTIALS)

    # then the keys travel as HTTP Basic auth, with no OAuth parameters, under the pinned timeout
    request = mocked.calls[0].request
    token = base64.b64encode(b"ck_https_test_key:cs_https_test_secret").decode()
    assert request.headers["Authorization"] == f"Basic {token}"
    assert "oauth_" not in request.url
    assert request.url.startswith(HTTPS_STORE + API + endpoint)
    assert request.req_kwargs["timeout"] == consts.REQUEST_TIMEOUT


@pytest.mark.parametrize("_case", sorted(CALLS))
def test_http_signs_with_oauth1_query_parameters(mocked, _case):
    # given a plain-http store, where WooCommerce answers 401 to Basic auth
    method, endpoint, call, answer = CALLS[_case]
    mocked.add(method, HTTP_STORE + API + endpoint, **answer)

    # when the call is made
    call(HTTP_CREDENTIALS)

    # then there is no Authorization header, and a query signature WooCommerce accepts
    request = mocked.calls[0].request
    query = dict(parse_qsl(urlsplit(request.url).query))
    assert "Authorization" not in request.headers
    assert query["oauth_signature_method"] == "HMAC-SHA256"
    assert query["oauth_consumer_key"] == HTTP_CREDENTIALS["consumer_key"]
    expected, given = woocommerce_signature(
        method, request.url, HTTP_CREDENTIALS["consumer_secret"]
    )
    assert given == expected
    assert request.req_kwargs["timeout"] == consts.REQUEST_TIMEOUT


def test_signature_check_accepts_the_captured_request():
    # given the request the live store answered 201 (so WooCommerce accepted its signature)
    url = HTTP_STORE + CAPTURED_REQUEST_TARGET

    # when the ported check recomputes it
    expected, given = woocommerce_signature("POST", url, HTTP_CREDENTIALS["consumer_secret"])

    # then it agrees with the store, so the OAuth test above is checked against the real rule
    assert given == expected == "IQGedRbLliMVTk5+MBwyd4gqjkjpTRpGnviA+yLtB/Q="


# ---- create: an existing code ------------------------------------------------------------


def test_duplicate_code_is_looked_up_and_returned_as_not_created(mocked):
    # given the real "already exists" 400, and a shop that lists the coupon lower-cased
    add_duplicate(mocked, HTTPS_STORE)
    mocked.add(
        responses.GET,
        HTTPS_STORE + API + "coupons",
        json=[json.loads(fixture_bytes("coupons_create.json"))],
    )

    # when the code is created again
    result = client.create_discount_code(HTTPS_CREDENTIALS, make_spec())

    # then it is looked up by its lower-cased code, and reported as found, not created
    assert [c.request.method for c in mocked.calls] == ["POST", "GET"]
    assert dict(parse_qsl(urlsplit(mocked.calls[1].request.url).query)) == {
        "code": "loyalty-jane-500"
    }
    assert result == DiscountCode(code="loyalty-jane-500", platform_id="12", created=False)


def test_duplicate_code_that_lookup_cannot_find_is_permanent(mocked):
    # given the shop says the code exists, but its listing has no such coupon
    add_duplicate(mocked, HTTPS_STORE)
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons", json=[])

    # when / then
    with pytest.raises(PermanentError, match="code exists"):
        client.create_discount_code(HTTPS_CREDENTIALS, make_spec())


@pytest.mark.parametrize(
    ("_case", "listed", "expected"),
    [
        ("none", [], None),
        ("another code only", [{"id": 9, "code": "loyalty-jane-5000"}], None),
        (
            "stored in another case",
            [{"id": 9, "code": "loyalty-jane-5000"}, {"id": 12, "code": "Loyalty-Jane-500"}],
            DiscountCode(code="Loyalty-Jane-500", platform_id="12", created=False),
        ),
    ],
)
def test_find_matches_the_code_case_insensitively(mocked, _case, listed, expected):
    # given what the shop lists for the code
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons", json=listed)

    # when the code is looked up
    result = client.find_discount_code(HTTPS_CREDENTIALS, "LOYALTY-JANE-500")

    # then only a coupon with that very code counts
    assert result == expected


def test_find_refuses_an_empty_code(mocked):
    # given no response registered: an empty filter would list every coupon
    # when / then
    with pytest.raises(ValueError):
        client.find_discount_code(HTTPS_CREDENTIALS, "")


# ---- order notes -------------------------------------------------------------------------


@pytest.mark.parametrize(("_case", "customer_note"), [("private", False), ("to customer", True)])
def test_order_note_is_posted(mocked, _case, customer_note):
    # given the shop accepts the note
    mocked.add(responses.POST, HTTPS_STORE + API + "orders/11/notes", json=NOTE_CREATED, status=201)

    # when a note is added
    result = client.add_order_note(
        HTTPS_CREDENTIALS, "11", "Stammkunde: 25 points earned.", customer_note=customer_note
    )

    # then it was sent as WooCommerce expects
    assert result is None
    assert sent_json(mocked.calls[0]) == {
        "note": "Stammkunde: 25 points earned.",
        "customer_note": customer_note,
    }


def test_mark_gift_adds_a_private_note(mocked):
    # given the shop accepts the note
    mocked.add(responses.POST, HTTPS_STORE + API + "orders/11/notes", json=NOTE_CREATED, status=201)

    # when a gift is marked (core WooCommerce has no order tags)
    client.mark_gift(HTTPS_CREDENTIALS, "11", tag="geschenk", note="Bitte Geschenk beilegen")

    # then the note is private: staff see it, the customer gets no e-mail
    assert sent_json(mocked.calls[0]) == {"note": "Bitte Geschenk beilegen", "customer_note": False}


def test_credentials_add_the_store_url():
    # when the stored credentials are given the store
    creds = client.credentials(HTTPS_STORE, {"consumer_key": "ck_1", "consumer_secret": "cs_1"})

    # then every call here can read them
    assert creds == {"consumer_key": "ck_1", "consumer_secret": "cs_1", "url": HTTPS_STORE}


def test_order_note_on_unknown_order_is_permanent(mocked):
    # given the order does not exist
    mocked.add(
        responses.POST, HTTPS_STORE + API + "orders/999/notes", json=ORDER_NOT_FOUND, status=404
    )

    # when / then WooCommerce's code and message are in the error
    with pytest.raises(PermanentError, match="woocommerce_rest_shop_order_invalid_id: Invalid"):
        client.add_order_note(HTTPS_CREDENTIALS, 999, "note")


def test_order_note_ignores_an_unreadable_2xx_body(mocked):
    # given a 201 whose body a PHP notice garbled
    mocked.add(
        responses.POST, HTTPS_STORE + API + "orders/11/notes", body="<br />Notice: {", status=201
    )

    # when the note is added, then it counts as added (a retry would post it twice)
    assert client.add_order_note(HTTPS_CREDENTIALS, "11", "note") is None


@pytest.mark.parametrize(
    ("_case", "order_id", "note"),
    [("path in id", "11/../coupons", "n"), ("zero", "0", "n"), ("bool", True, "n"),
     ("empty note", "11", "  ")],
)
def test_order_note_refuses_bad_arguments(mocked, _case, order_id, note):
    # when / then nothing is sent
    with pytest.raises(ValueError):
        client.add_order_note(HTTPS_CREDENTIALS, order_id, note)


# ---- failures, for every call ------------------------------------------------------------

FAILURES: dict[str, tuple[dict[str, Any], type[Exception], str, float | None]] = {
    "read timeout": ({"body": requests.exceptions.ReadTimeout()}, TransientError, "ReadTimeout",
                     None),
    "connect timeout": ({"body": requests.exceptions.ConnectTimeout()}, TransientError,
                        "ConnectTimeout", None),
    "connection refused": ({"body": requests.exceptions.ConnectionError()}, TransientError,
                           "ConnectionError", None),
    "500 html": ({"status": 500, "body": "<html>Error establishing a database connection"},
                 TransientError, "HTTP 500", None),
    "503 json": ({"status": 503, "json": {"code": "x", "message": "y"}}, TransientError,
                 "HTTP 503", None),
    "429 retry-after seconds": ({"status": 429, "headers": {"Retry-After": "17"}},
                                RateLimitedError, "HTTP 429", 17.0),
    "429 without retry-after": ({"status": 429}, RateLimitedError, "HTTP 429", 5.0),
    "429 unreadable retry-after": ({"status": 429, "headers": {"Retry-After": "soon"}},
                                   RateLimitedError, "HTTP 429", 5.0),
    "401 bad key": ({"status": 401, "json": UNAUTHORIZED}, PermanentError,
                    "woocommerce_rest_authentication_error: Consumer key is invalid.; check the "
                    "consumer key/secret", None),
    "403 firewall page": ({"status": 403, "body": "<html>Forbidden"}, PermanentError,
                          "HTTP 403 (no WooCommerce error body); check the consumer key/secret",
                          None),
    "404 no route": ({"status": 404, "json": NO_ROUTE}, PermanentError,
                     "HTTP 404 rest_no_route: No route was found", None),
    "400 invalid parameter": ({"status": 400, "json": INVALID_PARAM}, PermanentError,
                              "HTTP 400 rest_invalid_param: Invalid parameter", None),
    "301 to https": ({"status": 301, "headers": {"Location": "https://laden.example/"}},
                     PermanentError, "redirect", None),
}


@pytest.mark.parametrize(
    ("_case", "operation", "failure"),
    [(f"{op}: {failure}", op, failure) for op in sorted(CALLS) for failure in FAILURES],
)
def test_failure_is_translated(mocked, _case, operation, failure):
    # given the store fails this way
    method, endpoint, call, _answer = CALLS[operation]
    answer, error, message, retry_after = FAILURES[failure]
    mocked.add(method, HTTPS_STORE + API + endpoint, **answer)

    # when the call is made
    with pytest.raises(error) as raised:
        call(HTTPS_CREDENTIALS)

    # then it raises the typed error, names the call, and follows no redirect
    assert f"WooCommerce {operation}" in str(raised.value)
    assert message in str(raised.value)
    if error is RateLimitedError:
        assert raised.value.retry_after == retry_after
    assert len(mocked.calls) == 1


def test_retry_after_http_date_is_converted_to_seconds(mocked):
    # given a 429 that gives a date about a minute ahead
    when = datetime.now(timezone.utc) + timedelta(seconds=60)
    headers = {"Retry-After": format_datetime(when, usegmt=True)}
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons", status=429, headers=headers)

    # when / then
    with pytest.raises(RateLimitedError) as raised:
        client.find_discount_code(HTTPS_CREDENTIALS, "x")
    assert 50 <= raised.value.retry_after <= 60


@pytest.mark.parametrize(
    ("_case", "operation", "body"),
    [
        ("create: php notice before json", "create coupon", b"<b>Notice</b>: {\"id\":12}"),
        ("create: json without id", "create coupon", b'{"code":"x"}'),
        ("find: html cache page", "find coupon", b"<html>cached</html>"),
        ("find: not a list", "find coupon", b'{"id":12}'),
    ],
)
def test_unreadable_2xx_is_transient(mocked, _case, operation, body):
    # given a 2xx whose body is not the expected JSON
    method, endpoint, call, _answer = CALLS[operation]
    mocked.add(method, HTTPS_STORE + API + endpoint, body=body, status=200)

    # when / then a retry may fix it (create resolves through the duplicate lookup)
    with pytest.raises(TransientError):
        call(HTTPS_CREDENTIALS)


@pytest.mark.parametrize(
    ("_case", "credentials"),
    [
        ("no url", {"consumer_key": "ck", "consumer_secret": "cs"}),
        ("ftp url", {**HTTPS_CREDENTIALS, "url": "ftp://laden.example"}),
        ("empty secret", {**HTTPS_CREDENTIALS, "consumer_secret": ""}),
    ],
)
def test_unusable_credentials_are_permanent(mocked, _case, credentials):
    # when / then nothing is sent
    with pytest.raises(PermanentError, match="credentials"):
        client.find_discount_code(credentials, "x")


def test_upper_case_https_scheme_still_uses_basic_auth(mocked):
    # given a URL typed with an upper-case scheme (the package checks "https" case-sensitively)
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons", json=[])

    # when
    client.find_discount_code({**HTTPS_CREDENTIALS, "url": "HTTPS://Laden.Example"}, "x")

    # then
    assert mocked.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_errors_and_logs_carry_no_secrets_or_personal_data(mocked, caplog):
    # given an http store (key in the URL) whose connection fails with the URL in the message,
    # as requests' own exceptions do
    def refuse(request: requests.PreparedRequest) -> Any:
        raise requests.exceptions.ConnectionError(f"Max retries exceeded with url: {request.url}")

    mocked.add_callback(responses.POST, HTTP_STORE + API + "coupons", callback=refuse)
    caplog.set_level(logging.DEBUG, logger="connectors.woocommerce.client")

    # when
    with pytest.raises(TransientError) as raised:
        client.create_discount_code(HTTP_CREDENTIALS, make_spec())

    # then neither the traceback nor the logs hold the key, the secret, the code or the e-mail
    printed = "".join(traceback.format_exception(raised.value))
    logged = " ".join(f"{r.getMessage()} {sorted(vars(r).items())}" for r in caplog.records)
    assert caplog.records
    for text in (printed, logged):
        for secret in ("ck_0123", "cs_0123", "oauth_signature", "LOYALTY-JANE", "jane.doe"):
            assert secret not in text


def test_connector_delegates_to_the_client():
    # then the registry's connector exposes the client calls
    assert connector.create_discount_code is client.create_discount_code
    assert connector.find_discount_code is client.find_discount_code
    assert connector.deactivate_discount_code is client.deactivate_discount_code
    assert connector.withdraw_discount_code is client.withdraw_discount_code
    assert connector.mark_gift is client.mark_gift
    assert connector.credentials is client.credentials


def test_fixtures_are_the_captured_bytes():
    # then the fixtures are byte-exact copies (see the README for their source and digests)
    digests = {
        name: hashlib.sha256(fixture_bytes(name)).hexdigest()
        for name in sorted(p.name for p in FIXTURES.glob("*.json"))
    }
    assert digests == {
        "refunds_list.json":
            "391155868da12641dbe7fa7200397a808f0147b19ed0ad682f3ea13855ca0b27",
        "webhooks_create.json":
            "e8e888b2a8776b6181e06eb3341fa24c0c23e2e01f5d87b3f0062e4a9810a44b",
        "webhooks_get__disabled.json":
            "8e60fbc099b736cb0b19e2eac227142e8f2c3fbeb288d9d05c9841480c910360",
        "webhooks_update__active.json":
            "ec3b1ab5ee9225ffe2baefe4ffe4a65710a6de23952d9c8e010d5b59d9cc4706",
        "coupons_create.json":
            "8d4791981c94402576d4611c466048d6aeb29c4edf6546a2d8596823c5c9526b",
        "coupons_create__code_already_exists.json":
            "c13ac4f471328ac997dec99d7034870b566079fc2e76094e82b0a07446978761",
        "coupons_create__expires_zulu.request.json":
            "e22a4c0092b126ae00db4ee6d2ad059eaa03a3b71e898cd4bd9375b0d516a00d",
        "coupons_create__expires_zulu.json":
            "6c44e032bed76ec07ccd8092c90f2cdd90c242e1f2ac741bedfd0a7f544b8b2c",
        "coupons_create__expires_gmt_only.request.json":
            "283c01787558357dfa42c96cd304544ba930bbcaab4b0f5847afe4e893b3b2a6",
        "coupons_create__expires_gmt_only.json":
            "98429edc42e1b26dead55a022f427d84980606a865c36227a26030b4397b9164",
        "coupons_create__restrictions.request.json":
            "0d9278d072416b162ff10ad37144683aba875e7a4c8cf6d6d1781151988319de",
        "coupons_create__restrictions.json":
            "b87db813b6f148ef8e10060e951275bc472417996a71801b0945de9ac1ad62dc",
        "coupons_create__berlin_expires_local.request.json":
            "b3ebbbbc7627565a71e52798f949a1d4cb542f104c7d1f54daa7e8bcb9e24326",
        "coupons_create__berlin_expires_local.json":
            "f3b119daad718817f8ae37bb9c92d5c00a5e4d20b4f447206a64119e4e05eab7",
        "coupons_create__berlin_expires_zulu.request.json":
            "ae09ed43de23dc62587c5d8982ebb546ece5bb63a144118f39bf807625baffbc",
        "coupons_create__berlin_expires_zulu.json":
            "e6212d4455c77a0eede6003a2c136e925874758aab522426e20a3f603aaab84e",
        "coupons_create__berlin_expires_gmt_only.request.json":
            "ce2df1f9cc68efe2e7a24aa60d32d64a3bd243918d07c6261e7a6141338591ee",
        "coupons_create__berlin_expires_gmt_only.json":
            "b9a34d3cec695763591d47834682a5462c7e3b7af94ad25d685cd0763de76481",
        "coupons_get__invalid_id.json":
            "c24f1cf0ffd89cc97e3bb30528377aab4de3b0d16e5d0cf95ccea1cbe47d6eb0",
        "coupons_delete__force.json":
            "a02366edc13d77c9f520bf519ab343d337373ff947a9a4d5cb8a977e9e8596ef",
        "coupons_get__trashed.json":
            "dd5724c23b5b82aaea2029cba91ad72c12762060dd8405b04805713cb48a553c",
        "coupons_create__free_product_one_unit.request.json":
            "4f0da118fcc27fe5d4de31f7ec3ee39c879f479c3615891f72eac61a2a82181e",
        "coupons_create__free_product_one_unit.json":
            "79367c6855dca19f5a2872ba0cd865a8e9af7899497fda44eb5b4b258edce160",
        "customers_create__with_meta.request.json":
            "2cea27d8cdb530b453fda90172fe8fd16144ea26fc214a7cd7dc283825c31b2f",
        "customers_get__with_meta.json":
            "d54f17961f1167ac5d548560fb0338ef14010ee3f824f04d092f2efd79278016",
    }


# ---- the store's answer, checked against real captured pairs (README "Round 3") ----------

END_OF_2026 = utc(2026, 12, 31, 23, 59, 59)


def fixture_json(name: str) -> Any:
    """Return the parsed JSON of tests/fixtures/woocommerce_api/<name>."""
    return json.loads(fixture_bytes(name))


@pytest.mark.parametrize(
    ("_case", "capture", "mismatches"),
    [
        ("first capture: no expiry asked, none kept", "coupons_create", []),
        ("UTC site, date_expires with Z: kept", "coupons_create__expires_zulu", []),
        ("Berlin site, date_expires with Z: kept", "coupons_create__berlin_expires_zulu", []),
        ("UTC site, date_expires_gmt only: ignored", "coupons_create__expires_gmt_only",
         ["date_expires_gmt"]),
        ("Berlin site, date_expires_gmt only: ignored", "coupons_create__berlin_expires_gmt_only",
         ["date_expires_gmt"]),
        ("Berlin site, date_expires without offset: read as local time",
         "coupons_create__berlin_expires_local", ["date_expires_gmt"]),
        ("restrictions: e-mail lower-cased, amounts with two decimals",
         "coupons_create__restrictions", []),
        ("one free unit of a product: product_ids and limit_usage_to_x_items kept as sent",
         "coupons_create__free_product_one_unit", []),
    ],
)
def test_store_answer_is_checked_against_what_was_sent(_case, capture, mismatches):
    # given a request the live store got and the coupon it answered
    sent = (
        CAPTURED_REQUEST_BODY if capture == "coupons_create"
        else fixture_json(f"{capture}.request.json")
    )
    answer = fixture_json(f"{capture}.json")

    # when the answer is compared with the request
    result = client.coupon_answer_mismatches(sent, answer)

    # then only a lost or shifted expiry counts, never the store's own normalization
    assert result == mismatches


def test_combination_offer_answer_without_its_condition_is_refused():
    # given the live store's answer to the one-free-unit coupon (042: product_ids [10] and
    # limit_usage_to_x_items 1 kept, meta_data []), and the same request carrying a combination
    # offer's condition as coupon meta
    sent = {**fixture_json("coupons_create__free_product_one_unit.request.json"),
            "meta_data": [{"key": consts.META_BUYS_IDS, "value": "71"},
                          {"key": consts.META_BUYS_QUANTITY, "value": "2"},
                          {"key": consts.META_BUYS_LABEL, "value": "Espresso-Bohnen"}]}
    answer = fixture_json("coupons_create__free_product_one_unit.json")

    # when the store kept no meta, the coupon would give the product without the purchase
    assert client.coupon_answer_mismatches(sent, answer) == ["meta_data"]

    # and when it kept the meta as sent (with ids of its own, as capture 100 shows for customers)
    kept = {**answer, "meta_data": [{"id": 39 + i, **m} for i, m in enumerate(sent["meta_data"])]}
    assert client.coupon_answer_mismatches(sent, kept) == []


def test_expiry_is_sent_as_date_expires_in_utc_with_z_as_the_store_honours_it(mocked):
    # given the store answers what it answered in Berlin to the "Z" request (059); that request
    # sent no individual_use, which we always send and the store keeps as sent (038)
    answer = {**fixture_json("coupons_create__berlin_expires_zulu.json"), "individual_use": True}
    mocked.add(responses.POST, HTTP_STORE + API + "coupons", status=201, json=answer)
    spec = make_spec(code="SK-MEZ-ZULU", ends_at=datetime(2027, 1, 1, 0, 59, 59, 500, tzinfo=CET),
                     usage_limit=None, once_per_customer=False, customer_email=None)

    # when a coupon ending at that instant (given in another zone) is created
    result = client.create_discount_code(HTTP_CREDENTIALS, spec)

    # then the expiry went out exactly as in the capture the store honoured, and the coupon
    # (whose local date_expires reads 2027-01-01T00:59:59) is accepted as created
    sent = sent_json(mocked.calls[0])
    captured = fixture_json("coupons_create__berlin_expires_zulu.request.json")
    assert sent["date_expires"] == captured["date_expires"] == "2026-12-31T23:59:59Z"
    assert "date_expires_gmt" not in sent
    assert result == DiscountCode(code="sk-mez-zulu", platform_id="25", created=True)


def test_coupon_the_store_keeps_without_the_asked_expiry_is_a_failure(mocked):
    # given the store answers as it did to the old body (date_expires_gmt only: no expiry, 061)
    mocked.add(
        responses.POST, HTTP_STORE + API + "coupons", status=201,
        body=fixture_bytes("coupons_create__berlin_expires_gmt_only.json"),
        content_type="application/json; charset=UTF-8",
    )

    # when a coupon ending at the end of 2026 is created
    with pytest.raises(PermanentError) as raised:
        client.create_discount_code(HTTP_CREDENTIALS, make_spec(ends_at=END_OF_2026))

    # then it is not reported as created: the message names the lost expiry and the coupon id
    message = str(raised.value)
    assert "date_expires_gmt: asked 2026-12-31T23:59:59Z, store has None" in message
    assert "(id 27)" in message
    assert "jane.doe" not in message and "SK-MEZ" not in message.upper()


def test_restricted_email_is_compared_ignoring_case(mocked):
    # given the store lower-cases the e-mail restriction (038/039)
    mocked.add_callback(responses.POST, HTTPS_STORE + API + "coupons", callback=store_answer)

    # when a code restricted to a mixed-case address is created
    result = client.create_discount_code(
        HTTPS_CREDENTIALS, make_spec(customer_email="Jane.DOE@Example.TEST")
    )

    # then it was sent as given and the lower-cased answer is accepted
    assert sent_json(mocked.calls[0])["email_restrictions"] == ["Jane.DOE@Example.TEST"]
    assert result == STORED


@pytest.mark.parametrize(
    ("_case", "stored_changes", "error"),
    [
        ("expiry as asked", {"date_expires_gmt": "2026-12-31T23:59:59"}, None),
        ("no expiry (an attempt under the old body)", {}, "date_expires_gmt"),
        ("no per-customer limit", {"date_expires_gmt": "2026-12-31T23:59:59",
                                   "usage_limit_per_user": None}, "usage_limit_per_user"),
    ],
)
def test_coupon_found_on_retry_is_checked_like_a_created_one(mocked, _case, stored_changes, error):
    # given the code exists already, and the shop lists the coupon as stored
    add_duplicate(mocked, HTTPS_STORE)
    listed = {**json.loads(fixture_bytes("coupons_create.json")), **stored_changes}
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons", json=[listed])

    # when the code is created again with an expiry
    spec = make_spec(ends_at=END_OF_2026)
    if error is None:
        result = client.create_discount_code(HTTPS_CREDENTIALS, spec)
        # then the coupon that holds what was asked is ours
        assert result == DiscountCode(code="loyalty-jane-500", platform_id="12", created=False)
    else:
        # then a coupon that does not hold it is a failure, not ours
        with pytest.raises(PermanentError, match=f"find coupon: .*{error}: asked"):
            client.create_discount_code(HTTPS_CREDENTIALS, spec)


# ---- deactivating a coupon ---------------------------------------------------------------


def test_deactivate_sets_the_expiry_to_now_and_checks_it(mocked):
    # given the store keeps the expiry it is sent
    method, endpoint, call, answer = CALLS["deactivate coupon"]
    mocked.add(method, HTTPS_STORE + API + endpoint, **answer)

    # when the coupon is switched off
    assert call(HTTPS_CREDENTIALS) is None

    # then the coupon got an expiry of now, in UTC with "Z"
    assert mocked.calls[0].request.method == "PUT"
    assert sent_json(mocked.calls[0]) == {"date_expires": "2027-03-01T09:30:00Z"}


def test_deactivate_fails_when_the_store_keeps_another_expiry(mocked):
    # given the store answers without the expiry (as it does to date_expires_gmt)
    mocked.add(responses.PUT, HTTPS_STORE + API + "coupons/12",
               body=fixture_bytes("coupons_create.json"), status=200)

    # when / then
    with pytest.raises(PermanentError, match="date_expires_gmt: asked 2027-03-01T09:30:00Z"):
        client.deactivate_discount_code(HTTPS_CREDENTIALS, "12", now=utc(2027, 3, 1, 9, 30))


def test_deactivate_of_a_deleted_coupon_is_done(mocked):
    # given the coupon was deleted in the shop (the real 404 of 046)
    mocked.add(responses.PUT, HTTPS_STORE + API + "coupons/15", status=404,
               body=fixture_bytes("coupons_get__invalid_id.json"))

    # when / then it counts as switched off
    assert client.deactivate_discount_code(HTTPS_CREDENTIALS, "15", now=utc(2027, 3, 1)) is None


@pytest.mark.parametrize(
    ("_case", "platform_id", "now"),
    [("not an id", "gid://shopify/DiscountCodeNode/1", utc(2027, 3, 1)),
     ("zero", "0", utc(2027, 3, 1)), ("naive now", "12", datetime(2027, 3, 1))],
)
def test_deactivate_refuses_bad_arguments(mocked, _case, platform_id, now):
    # when / then nothing is sent
    with pytest.raises(ValueError):
        client.deactivate_discount_code(HTTPS_CREDENTIALS, platform_id, now=now)


# ---- taking a bounce-back code back: DELETE coupon (captures 045-049) ------------------------


def test_withdraw_reads_the_coupon_then_deletes_it_for_good(mocked):
    # given the store holds the unused coupon 15 and deletes it when asked (the real 200 of 045)
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons/15", body=fixture_bytes("coupons_delete__force.json"))
    mocked.add(responses.DELETE, HTTPS_STORE + API + "coupons/15", body=fixture_bytes("coupons_delete__force.json"))

    # when the code is taken back
    gone = client.withdraw_discount_code(HTTPS_CREDENTIALS, "15")

    # then it is gone, deleted with force (not to the trash, from where it could be restored)
    assert gone is True
    assert [c.request.method for c in mocked.calls] == ["GET", "DELETE"]
    assert dict(parse_qsl(urlsplit(mocked.calls[1].request.url).query)) == {"force": "true"}


def test_withdraw_over_http_signs_the_force_parameter_with_oauth(mocked):
    # given the plain-http test store the captures come from
    mocked.add(responses.GET, HTTP_STORE + API + "coupons/15", body=fixture_bytes("coupons_delete__force.json"))
    mocked.add(responses.DELETE, HTTP_STORE + API + "coupons/15", body=fixture_bytes("coupons_delete__force.json"))

    # when the code is taken back
    assert client.withdraw_discount_code(HTTP_CREDENTIALS, "15") is True

    # then the DELETE carries force=true inside the OAuth 1.0a query, as in capture 045
    query = dict(parse_qsl(urlsplit(mocked.calls[1].request.url).query))
    assert query["force"] == "true" and query["oauth_signature_method"] == "HMAC-SHA256"
    assert query["oauth_consumer_key"] == HTTP_CREDENTIALS["consumer_key"]


def test_a_trashed_coupon_is_not_gone_so_force_is_needed():
    # given what the store answers for a coupon deleted without force (049)
    trashed = fixture_json("coupons_get__trashed.json")

    # then it still exists, in the trash (which is why the client always sends force=true)
    assert trashed["status"] == "trash" and trashed["code"] == "sk-exp-gmtonly"


def test_withdraw_leaves_a_used_coupon_alone(mocked):
    # given the store counts a use of the coupon (no capture has one: 045's body with usage_count 1)
    used = {**fixture_json("coupons_delete__force.json"), "usage_count": 1, "used_by": ["7"]}
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons/15", json=used)

    # when / then it is not deleted, and the answer says it was used
    assert client.withdraw_discount_code(HTTPS_CREDENTIALS, "15") is False
    assert [c.request.method for c in mocked.calls] == ["GET"]


def test_withdraw_of_a_coupon_used_meanwhile_says_so(mocked):
    # given the coupon is unused when read, and the DELETE answers it with a use (used in between)
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons/15", body=fixture_bytes("coupons_delete__force.json"))
    mocked.add(responses.DELETE, HTTPS_STORE + API + "coupons/15",
               json={**fixture_json("coupons_delete__force.json"), "usage_count": 1})

    # when / then the use is reported
    assert client.withdraw_discount_code(HTTPS_CREDENTIALS, "15") is False


@pytest.mark.parametrize("_case", ["gone before the read", "gone before the delete"])
def test_withdraw_of_a_deleted_coupon_is_done(mocked, _case):
    # given the coupon was deleted already (the real 404 of 046), e.g. by an attempt whose answer was lost
    if _case == "gone before the delete":
        mocked.add(responses.GET, HTTPS_STORE + API + "coupons/15", body=fixture_bytes("coupons_delete__force.json"))
    mocked.add(responses.GET if _case == "gone before the read" else responses.DELETE,
               HTTPS_STORE + API + "coupons/15", status=404, body=fixture_bytes("coupons_get__invalid_id.json"))

    # when / then it counts as taken back
    assert client.withdraw_discount_code(HTTPS_CREDENTIALS, "15") is True


def test_withdraw_failures_are_typed(mocked):
    # given the store fails, then refuses the key
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons/15", status=503)
    mocked.add(responses.GET, HTTPS_STORE + API + "coupons/16", status=401, json=UNAUTHORIZED)

    # when / then
    with pytest.raises(TransientError):
        client.withdraw_discount_code(HTTPS_CREDENTIALS, "15")
    with pytest.raises(PermanentError, match="401"):
        client.withdraw_discount_code(HTTPS_CREDENTIALS, "16")
    with pytest.raises(ValueError):
        client.withdraw_discount_code(HTTPS_CREDENTIALS, "gid://shopify/DiscountCodeNode/1")


# ---- refunds with their lines (fact 32) ---------------------------------------------------


def test_refunds_of_an_order_are_read_with_their_lines(mocked):
    # given the store's real answer for order 31's refunds (live capture 103)
    body = (FIXTURES / "refunds_list.json").read_bytes()
    mocked.add(responses.GET, HTTP_STORE + API + "orders/31/refunds", body=body, status=200,
               content_type="application/json; charset=UTF-8")

    # when they are read
    refunds = client.list_refunds(HTTP_CREDENTIALS, "31")

    # then each comes with its lines, signed like every request over http
    [refund] = refunds
    assert (refund["id"], refund["amount"], refund["line_items"][0]["total"]) == (37, "20.00", "-20.00")
    assert "oauth_signature" in mocked.calls[0].request.params


def test_refunds_answer_that_is_not_a_list_is_permanent(mocked):
    mocked.add(responses.GET, HTTP_STORE + API + "orders/31/refunds", json={"id": 37}, status=200)
    with pytest.raises(PermanentError, match="not a list of refunds"):
        client.list_refunds(HTTP_CREDENTIALS, "31")


# ---- a member's tier as customer meta (live captures 100-101) -------------------------------


def customer_answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    """Answer PUT customers/2 as the store answers a customer (the real body of capture 101),
    holding the meta that was sent: updated by key, with an id, among WordPress' own meta."""
    customer = json.loads(fixture_bytes("customers_get__with_meta.json"))
    for item in json.loads(request.body)["meta_data"]:
        kept = [m for m in customer["meta_data"] if m["key"] != item["key"]]
        customer["meta_data"] = [*kept, {"id": 40, "key": item["key"], "value": item["value"]}]
    return 200, {}, json.dumps(customer)


def test_captured_customer_meta_is_read_by_its_key():
    # given the store's real answer for a customer with meta (WordPress' own meta first)
    customer = fixture_json("customers_get__with_meta.json")
    sent = fixture_json("customers_create__with_meta.request.json")

    # then the meta comes back as it was sent, found by key among the others
    assert sent["meta_data"] == [{"key": "marketing_consent", "value": "yes"}]
    assert client.customer_meta(customer, "marketing_consent") == "yes"
    assert client.customer_meta(customer, "default_password_nag") == "1"
    assert client.customer_meta(customer, consts.TIER_META_KEY) is None


@pytest.mark.parametrize(("_case", "label", "stored"), [("a tier", "Gold", "Gold"), ("no tier any more", None, "")])
def test_member_tier_is_written_as_customer_meta_and_checked(mocked, _case, label, stored):
    # given the store keeps the meta it is sent
    mocked.add_callback(responses.PUT, HTTP_STORE + API + "customers/2", callback=customer_answer)

    # when the member's tier is written (the previous label plays no part: the key is ours)
    client.set_customer_tier(HTTP_CREDENTIALS, "2", label, previous="Silber")

    # then one PUT sent the meta in the shape of the captured write, and only our key
    assert mocked.calls[0].request.method == "PUT"
    assert sent_json(mocked.calls[0]) == {"meta_data": [{"key": "stammkunde_tier", "value": stored}]}
    assert connector.tier_label("Gold", prefix="Stammkunde") == "Gold"


def test_member_tier_fails_when_the_store_does_not_keep_it(mocked):
    # given a store that answers the customer without our meta (a plugin filtering it away)
    mocked.add(responses.PUT, HTTP_STORE + API + "customers/2", body=fixture_bytes("customers_get__with_meta.json"))

    # when / then
    with pytest.raises(PermanentError, match="did not keep stammkunde_tier"):
        client.set_customer_tier(HTTP_CREDENTIALS, "2", "Gold", previous=None)


@pytest.mark.parametrize(
    ("_case", "answer", "error"),
    [
        ("rate limited", {"status": 429, "headers": {"Retry-After": "7"}, "json": {}}, RateLimitedError),
        ("server error", {"status": 503, "body": "busy"}, TransientError),
        # WooCommerce's customers controller: 404 woocommerce_rest_invalid_id (not captured live)
        ("no such customer", {"status": 404, "json": {"code": "woocommerce_rest_invalid_id",
                                                      "message": "Invalid resource ID.", "data": {"status": 404}}},
         PermanentError),
    ],
)
def test_member_tier_failures_are_typed(mocked, _case, answer, error):
    # given the store answers with a failure
    mocked.add(responses.PUT, HTTP_STORE + API + "customers/2", **answer)

    # when / then the job gets the typed error (it retries the first two, records the last)
    with pytest.raises(error):
        client.set_customer_tier(HTTP_CREDENTIALS, "2", "Gold", previous=None)


@pytest.mark.parametrize(("_case", "customer_id"), [("a guest's 0", "0"), ("a gid", "gid://shopify/Customer/2")])
def test_member_tier_refuses_what_is_not_a_customer_id(mocked, _case, customer_id):
    # when / then nothing is sent
    with pytest.raises(ValueError):
        client.set_customer_tier(HTTP_CREDENTIALS, customer_id, "Gold", previous=None)
