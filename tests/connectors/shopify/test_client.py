"""The Shopify Admin GraphQL client against `responses`: every call and every failure class."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses

from connectors.errors import PermanentError, RateLimitedError, TransientError
from connectors.shopify import client, connector, consts
from connectors.types import DiscountCode, DiscountSpec

SHOP = "demo-laden.myshopify.com"
TOKEN = "shpat_test_token_0123456789"
CREDENTIALS = {"shop": SHOP, "access_token": TOKEN}
URL = f"https://{SHOP}/admin/api/2026-07/graphql.json"
NODE_ID = "gid://shopify/DiscountCodeNode/1057371231"
CUSTOMER_ID = "207119551"
STARTS_AT = datetime(2026, 7, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))  # 09:30 UTC
ENDS_AT = datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
# Shopify's answer to a duplicate code (DiscountErrorCode.TAKEN).
CODE_TAKEN = {
    "field": ["basicCodeDiscount", "code"],
    "message": "Code must be unique. Please try a different code.",
    "code": "TAKEN",
}


class FakeTime:
    """A clock that only moves when slept on (or told to), recording every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture(autouse=True)
def throttle(monkeypatch: pytest.MonkeyPatch, fake_time: FakeTime) -> client.CostThrottle:
    """A fresh throttle per test on the fake clock, so no test sleeps or sees another's bucket."""
    fresh = client.CostThrottle(clock=fake_time.clock, sleep=fake_time.sleep)
    monkeypatch.setattr(client, "THROTTLE", fresh)
    return fresh


@pytest.fixture
def shopify() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def cost(available: float = 1990, requested: float = 10, actual: float | None = 10,
         maximum: float = 2000, rate: float = 100) -> dict[str, Any]:
    """Return an `extensions.cost` block as Shopify sends it."""
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": maximum,
            "currentlyAvailable": available,
            "restoreRate": rate,
        },
    }


def answer(data: dict[str, Any], **cost_args: Any) -> dict[str, Any]:
    """Return a successful GraphQL body."""
    return {"data": data, "extensions": {"cost": cost(**cost_args)}}


def created(root: str, node_id: str = NODE_ID) -> dict[str, Any]:
    """Return the body of a discount mutation that created `node_id`."""
    return answer({root: {"codeDiscountNode": {"id": node_id}, "userErrors": []}})


def spec(**changes: Any) -> DiscountSpec:
    """Return a reward spec; `changes` override the defaults."""
    fields: dict[str, Any] = {
        "code": "SK-7F3A9C",
        "title": "Stammkunde: 15 % Treuerabatt",
        "kind": "percentage",
        "value": Decimal("15"),
        "currency": "EUR",
        "starts_at": STARTS_AT,
    }
    fields.update(changes)
    return DiscountSpec(**fields)


def sent(mock: responses.RequestsMock, index: int = 0) -> dict[str, Any]:
    """Return the JSON body of the index-th request."""
    return json.loads(mock.calls[index].request.body)


# ---- discount creation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "discount", "root", "argument", "expected"),
    [
        (
            "percentage for one customer, minimum and end date",
            spec(customer_id=CUSTOMER_ID, minimum_amount=Decimal("50.00"), ends_at=ENDS_AT),
            "discountCodeBasicCreate",
            "basicCodeDiscount",
            {
                "title": "Stammkunde: 15 % Treuerabatt",
                "code": "SK-7F3A9C",
                "startsAt": "2026-07-01T09:30:00Z",
                "endsAt": "2026-12-31T23:59:59Z",
                "context": {"customers": {"add": ["gid://shopify/Customer/207119551"]}},
                "combinesWith": {
                    "productDiscounts": False, "orderDiscounts": False, "shippingDiscounts": True,
                },
                "minimumRequirement": {"subtotal": {"greaterThanOrEqualToSubtotal": "50.00"}},
                "usageLimit": 1,
                "appliesOncePerCustomer": True,
                "customerGets": {"value": {"percentage": 0.15}, "items": {"all": True}},
            },
        ),
        (
            "fixed amount for everyone, unlimited uses",
            spec(kind="fixed_amount", value=Decimal("10.00"), usage_limit=None),
            "discountCodeBasicCreate",
            "basicCodeDiscount",
            {
                "title": "Stammkunde: 15 % Treuerabatt",
                "code": "SK-7F3A9C",
                "startsAt": "2026-07-01T09:30:00Z",
                "context": {"all": "ALL"},
                "combinesWith": {
                    "productDiscounts": False, "orderDiscounts": False, "shippingDiscounts": True,
                },
                "appliesOncePerCustomer": True,
                "customerGets": {
                    "value": {"discountAmount": {"amount": "10.00", "appliesOnEachItem": False}},
                    "items": {"all": True},
                },
            },
        ),
        (
            "lasting tier perk: no use limits, usable on every order, ends with the period",
            spec(customer_id=CUSTOMER_ID, usage_limit=None, once_per_customer=False,
                 ends_at=ENDS_AT),
            "discountCodeBasicCreate",
            "basicCodeDiscount",
            {
                "title": "Stammkunde: 15 % Treuerabatt",
                "code": "SK-7F3A9C",
                "startsAt": "2026-07-01T09:30:00Z",
                "endsAt": "2026-12-31T23:59:59Z",
                "context": {"customers": {"add": ["gid://shopify/Customer/207119551"]}},
                "combinesWith": {
                    "productDiscounts": False, "orderDiscounts": False, "shippingDiscounts": True,
                },
                "appliesOncePerCustomer": False,
                "customerGets": {"value": {"percentage": 0.15}, "items": {"all": True}},
            },
        ),
        (
            "free product by product and variant ids",
            spec(kind="free_product", value=Decimal("0"), product_ids=("632910392",),
                 variant_ids=("gid://shopify/ProductVariant/39072856",), usage_limit=3),
            "discountCodeBasicCreate",
            "basicCodeDiscount",
            {
                "title": "Stammkunde: 15 % Treuerabatt",
                "code": "SK-7F3A9C",
                "startsAt": "2026-07-01T09:30:00Z",
                "context": {"all": "ALL"},
                "combinesWith": {
                    "productDiscounts": False, "orderDiscounts": False, "shippingDiscounts": True,
                },
                "usageLimit": 3,
                "appliesOncePerCustomer": True,
                "customerGets": {
                    "value": {"percentage": 1.0},
                    "items": {"products": {
                        "productsToAdd": ["gid://shopify/Product/632910392"],
                        "productVariantsToAdd": ["gid://shopify/ProductVariant/39072856"],
                    }},
                },
            },
        ),
        (
            "combination offer for one customer: buy 2 beans, get a cup free, once per order",
            spec(kind="buy_x_get_y", value=Decimal("100"), customer_id=CUSTOMER_ID, ends_at=ENDS_AT,
                 buys_product_ids=("632910392",), buys_quantity=2, variant_ids=("39072856",), gets_quantity=1),
            "discountCodeBxgyCreate",
            "bxgyCodeDiscount",
            {
                "title": "Stammkunde: 15 % Treuerabatt",
                "code": "SK-7F3A9C",
                "startsAt": "2026-07-01T09:30:00Z",
                "endsAt": "2026-12-31T23:59:59Z",
                "context": {"customers": {"add": ["gid://shopify/Customer/207119551"]}},
                "combinesWith": {
                    "productDiscounts": False, "orderDiscounts": False, "shippingDiscounts": True,
                },
                "usageLimit": 1,
                "appliesOncePerCustomer": True,
                "customerBuys": {
                    "value": {"quantity": "2"},
                    "items": {"products": {"productsToAdd": ["gid://shopify/Product/632910392"]}},
                },
                "customerGets": {
                    "value": {"discountOnQuantity": {"quantity": "1", "effect": {"percentage": 1.0}}},
                    "items": {"products": {"productVariantsToAdd": ["gid://shopify/ProductVariant/39072856"]}},
                },
                "usesPerOrderLimit": 1,
            },
        ),
        (
            "free shipping for one customer with a minimum",
            spec(kind="free_shipping", value=Decimal("0"), customer_id=CUSTOMER_ID,
                 minimum_amount=Decimal("30")),
            "discountCodeFreeShippingCreate",
            "freeShippingCodeDiscount",
            {
                "title": "Stammkunde: 15 % Treuerabatt",
                "code": "SK-7F3A9C",
                "startsAt": "2026-07-01T09:30:00Z",
                "context": {"customers": {"add": ["gid://shopify/Customer/207119551"]}},
                "combinesWith": {
                    "productDiscounts": True, "orderDiscounts": True, "shippingDiscounts": False,
                },
                "minimumRequirement": {"subtotal": {"greaterThanOrEqualToSubtotal": "30"}},
                "usageLimit": 1,
                "appliesOncePerCustomer": True,
                "destination": {"all": True},
            },
        ),
    ],
)
def test_create_discount_code_sends_exact_variables(
    shopify: responses.RequestsMock, _case: str, discount: DiscountSpec, root: str, argument: str,
    expected: dict[str, Any],
):
    # given Shopify creates the discount
    shopify.add(responses.POST, URL, json=created(root))

    # when the client creates it
    result = client.create_discount_code(CREDENTIALS, discount)

    # then it sent the pinned document with exactly these variables, and returns the node
    assert sent(shopify) == {"query": client.DOCUMENTS[root], "variables": {argument: expected}}
    assert result == DiscountCode(code="SK-7F3A9C", platform_id=NODE_ID, created=True)


def test_request_carries_token_timeout_and_pinned_version(shopify: responses.RequestsMock):
    # given Shopify creates the discount
    shopify.add(responses.POST, URL, json=created("discountCodeBasicCreate"))

    # when the client creates it
    client.create_discount_code(CREDENTIALS, spec())

    # then the request went to the 2026-07 endpoint with the token header and a timeout
    request = shopify.calls[0].request
    assert consts.API_VERSION == "2026-07"
    assert request.url == URL
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert request.req_kwargs["timeout"] == client.TIMEOUT


@pytest.mark.parametrize(
    ("_case", "value", "wire"),
    [
        ("whole percent", Decimal("15"), '"percentage": 0.15'),
        ("trailing zeros", Decimal("15.00"), '"percentage": 0.15'),
        ("fraction of a percent", Decimal("12.5"), '"percentage": 0.125'),
        ("one third-ish", Decimal("33.33"), '"percentage": 0.3333'),
        ("everything", Decimal("100"), '"percentage": 1.0'),
    ],
)
def test_percentage_is_a_json_number_from_decimal_text(
    shopify: responses.RequestsMock, _case: str, value: Decimal, wire: str
):
    # given Shopify creates the discount
    shopify.add(responses.POST, URL, json=created("discountCodeBasicCreate"))

    # when a percentage code is created
    client.create_discount_code(CREDENTIALS, spec(value=value))

    # then the fraction appears on the wire as the short decimal number
    assert wire in shopify.calls[0].request.body.decode()


# ---- transport failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "exception"),
    [
        ("read timeout", requests.exceptions.ReadTimeout("read timed out")),
        ("connect timeout", requests.exceptions.ConnectTimeout("connect timed out")),
        ("connection refused", requests.exceptions.ConnectionError("refused")),
    ],
)
def test_network_failures_are_transient(
    shopify: responses.RequestsMock, _case: str, exception: Exception
):
    # given the request fails on the network
    shopify.add(responses.POST, URL, body=exception)

    # when / then
    with pytest.raises(TransientError) as raised:
        client.create_discount_code(CREDENTIALS, spec())
    assert not isinstance(raised.value, RateLimitedError)


@pytest.mark.parametrize("_case", [500, 502, 503, 504])
def test_server_errors_are_transient(shopify: responses.RequestsMock, _case: int):
    # given Shopify answers with a 5xx
    shopify.add(responses.POST, URL, status=_case, body="<html>oops</html>")

    # when / then
    with pytest.raises(TransientError, match=f"HTTP {_case}") as raised:
        client.create_discount_code(CREDENTIALS, spec())
    assert not isinstance(raised.value, RateLimitedError)


@pytest.mark.parametrize(
    ("_case", "headers", "retry_after"),
    [
        ("Retry-After in seconds", {"Retry-After": "4"}, 4.0),
        ("fractional Retry-After", {"Retry-After": "2.5"}, 2.5),
        ("no Retry-After", {}, 1.0),
        ("HTTP-date Retry-After", {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, 1.0),
    ],
)
def test_http_429_is_rate_limited(
    shopify: responses.RequestsMock, _case: str, headers: dict[str, str], retry_after: float
):
    # given Shopify answers 429
    shopify.add(responses.POST, URL, status=429, headers=headers, body="Too Many Requests")

    # when / then the wait comes from Retry-After, else one second
    with pytest.raises(RateLimitedError) as raised:
        client.create_discount_code(CREDENTIALS, spec())
    assert raised.value.retry_after == retry_after


def test_throttled_error_computes_retry_after_from_throttle_status(
    shopify: responses.RequestsMock, throttle: client.CostThrottle, fake_time: FakeTime
):
    # given Shopify refuses the query: 752 points requested, 666 available, 50 restored per second
    throttled = {
        "errors": [{
            "message": "Throttled",
            "extensions": {"code": "THROTTLED",
                           "documentation": "https://shopify.dev/api/usage/rate-limits"},
        }],
        "extensions": {"cost": cost(available=666, requested=752, actual=None, maximum=1000,
                                    rate=50)},
    }
    shopify.add(responses.POST, URL, status=200, json=throttled)

    # when the client calls
    with pytest.raises(RateLimitedError) as raised:
        client.create_discount_code(CREDENTIALS, spec())

    # then it is told to wait (752 - 666) / 50 seconds, and the bucket model learnt the state
    assert raised.value.retry_after == pytest.approx(1.72)
    assert throttle.status(SHOP) == {
        "maximumAvailable": 1000.0, "currentlyAvailable": 666.0, "restoreRate": 50.0,
    }
    assert throttle.expected_cost("DiscountCodeBasicCreate", 10) == 752.0
    assert fake_time.sleeps == []


@pytest.mark.parametrize(
    ("_case", "status"),
    [
        ("unauthorized (bad or expired token)", 401),
        ("forbidden (missing scope)", 403),
        ("not found (shop gone)", 404),
        ("payment required (shop frozen)", 402),
        ("unprocessable", 422),
        ("redirect (not followed)", 301),
    ],
)
def test_client_errors_are_permanent(shopify: responses.RequestsMock, _case: str, status: int):
    # given Shopify refuses the request
    headers = {"Location": "https://elsewhere.example/"} if status == 301 else {}
    shopify.add(responses.POST, URL, status=status, headers=headers,
                json={"errors": "[API] Invalid API key or access token"})

    # when / then
    with pytest.raises(PermanentError, match=f"HTTP {status}"):
        client.create_discount_code(CREDENTIALS, spec())
    assert len(shopify.calls) == 1


@pytest.mark.parametrize(
    ("_case", "errors", "error_class"),
    [
        (
            "access denied",
            [{"message": "Access denied for discountCodeBasicCreate field.",
              "extensions": {"code": "ACCESS_DENIED"}}],
            PermanentError,
        ),
        (
            "invalid variables",
            [{"message": "Variable $basicCodeDiscount of type DiscountCodeBasicInput! was "
                         "provided invalid value",
              "extensions": {"code": "INVALID_VARIABLE"}}],
            PermanentError,
        ),
        (
            "internal error",
            [{"message": "Internal error. Looks like something went wrong on our end.",
              "extensions": {"code": "INTERNAL_SERVER_ERROR"}}],
            TransientError,
        ),
    ],
)
def test_top_level_errors_are_typed(
    shopify: responses.RequestsMock, _case: str, errors: list[dict[str, Any]],
    error_class: type[Exception],
):
    # given Shopify answers 200 with top-level errors
    shopify.add(responses.POST, URL, json={"errors": errors, "extensions": {"cost": cost()}})

    # when / then
    with pytest.raises(error_class) as raised:
        client.create_discount_code(CREDENTIALS, spec())
    assert not isinstance(raised.value, RateLimitedError)
    assert errors[0]["message"][:30] in str(raised.value)


def test_non_json_success_is_transient(shopify: responses.RequestsMock):
    # given a 200 that is not JSON (a proxy page)
    shopify.add(responses.POST, URL, status=200, body="<html>maintenance</html>")

    # when / then
    with pytest.raises(TransientError):
        client.create_discount_code(CREDENTIALS, spec())


@pytest.mark.parametrize(
    ("_case", "credentials"),
    [
        ("not a myshopify domain", {"shop": "evil.example.com", "access_token": TOKEN}),
        ("url instead of domain", {"shop": f"https://{SHOP}/admin", "access_token": TOKEN}),
        ("no token", {"shop": SHOP, "access_token": ""}),
        ("no shop", {"access_token": TOKEN}),
    ],
)
def test_bad_credentials_are_refused_before_any_request(
    shopify: responses.RequestsMock, _case: str, credentials: dict[str, str]
):
    # when / then (no request registered: none may be sent)
    with pytest.raises(PermanentError, match="credentials"):
        client.create_discount_code(credentials, spec())


# ---- userErrors and idempotency ------------------------------------------------------------


def test_user_errors_raise_permanent_with_field_and_message(shopify: responses.RequestsMock):
    # given Shopify rejects the input
    shopify.add(responses.POST, URL, json=answer({"discountCodeBasicCreate": {
        "codeDiscountNode": None,
        "userErrors": [{"field": ["basicCodeDiscount", "endsAt"],
                        "message": "Ends at needs to be after starts_at",
                        "code": "END_DATE_BEFORE_START_DATE"}],
    }}))

    # when / then the error names field and message, and is raised, not returned
    with pytest.raises(PermanentError) as raised:
        client.create_discount_code(CREDENTIALS, spec())
    assert str(raised.value) == (
        "discountCodeBasicCreate: basicCodeDiscount.endsAt: Ends at needs to be after starts_at"
        " [END_DATE_BEFORE_START_DATE]"
    )


@pytest.mark.parametrize(
    ("_case", "kind", "root", "argument"),
    [
        ("basic", "percentage", "discountCodeBasicCreate", "basicCodeDiscount"),
        ("free shipping", "free_shipping", "discountCodeFreeShippingCreate",
         "freeShippingCodeDiscount"),
    ],
)
def test_taken_code_is_looked_up_not_duplicated(
    shopify: responses.RequestsMock, _case: str, kind: str, root: str, argument: str
):
    # given the code exists already (a retry after a lost answer)
    taken = {**CODE_TAKEN, "field": [argument, "code"]}
    shopify.add(responses.POST, URL, json=answer({root: {"codeDiscountNode": None,
                                                          "userErrors": [taken]}}))
    shopify.add(responses.POST, URL, json=answer({"codeDiscountNodeByCode": {"id": NODE_ID}},
                                                 requested=1, actual=1))

    # when the client creates it
    result = client.create_discount_code(CREDENTIALS, spec(kind=kind, value=Decimal("15")))

    # then it looked the code up and returns the existing discount
    assert sent(shopify, 1) == {
        "query": client.DOCUMENTS["codeDiscountNodeByCode"], "variables": {"code": "SK-7F3A9C"},
    }
    assert result == DiscountCode(code="SK-7F3A9C", platform_id=NODE_ID, created=False)


def test_taken_code_that_cannot_be_found_is_transient(shopify: responses.RequestsMock):
    # given the code is reported taken but the lookup finds nothing (yet)
    shopify.add(responses.POST, URL, json=answer({"discountCodeBasicCreate": {
        "codeDiscountNode": None, "userErrors": [CODE_TAKEN]}}))
    shopify.add(responses.POST, URL, json=answer({"codeDiscountNodeByCode": None}))

    # when / then
    with pytest.raises(TransientError, match="taken but not found"):
        client.create_discount_code(CREDENTIALS, spec())


def test_taken_code_with_other_user_errors_is_permanent(shopify: responses.RequestsMock):
    # given the code is taken and the input is wrong too
    shopify.add(responses.POST, URL, json=answer({"discountCodeBasicCreate": {
        "codeDiscountNode": None,
        "userErrors": [CODE_TAKEN, {"field": ["basicCodeDiscount", "customerGets"],
                                    "message": "Value is invalid", "code": "INVALID"}],
    }}))

    # when / then nothing is looked up
    with pytest.raises(PermanentError, match="TAKEN.*INVALID"):
        client.create_discount_code(CREDENTIALS, spec())


@pytest.mark.parametrize(
    ("_case", "changes", "message"),
    [
        ("unknown kind", {"kind": "bogo"}, "unknown discount kind"),
        ("percentage over 100", {"value": Decimal("150")}, "percentage"),
        ("zero amount", {"kind": "fixed_amount", "value": Decimal("0")}, "amount"),
        ("free product without product", {"kind": "free_product"}, "no product"),
        ("combination offer with nothing to buy", {"kind": "buy_x_get_y", "value": Decimal("100"),
                                                   "product_ids": ("1",), "buys_quantity": 2}, "no product.*to buy"),
        ("combination offer with nothing to get", {"kind": "buy_x_get_y", "value": Decimal("100"),
                                                   "buys_product_ids": ("1",), "buys_quantity": 2}, "to get"),
        ("combination offer without a quantity", {"kind": "buy_x_get_y", "value": Decimal("100"),
                                                  "buys_product_ids": ("1",), "product_ids": ("2",)}, "at least 1"),
        ("combination offer with a minimum", {"kind": "buy_x_get_y", "value": Decimal("50"), "buys_quantity": 1,
                                              "buys_product_ids": ("1",), "product_ids": ("2",),
                                              "minimum_amount": Decimal("20")}, "no minimum"),
        ("naive start", {"starts_at": datetime(2026, 7, 1)}, "timezone-aware"),
        ("customer id not numeric", {"customer_id": "bob@example.com"}, "Customer id"),
        ("zero usage limit", {"usage_limit": 0}, "usage limit"),
        ("negative minimum", {"minimum_amount": Decimal("-1")}, "money"),
    ],
)
def test_inexpressible_spec_is_a_value_error(
    shopify: responses.RequestsMock, _case: str, changes: dict[str, Any], message: str
):
    # when / then (no request is sent)
    with pytest.raises(ValueError, match=message):
        client.create_discount_code(CREDENTIALS, spec(**changes))


# ---- lookup --------------------------------------------------------------------------------


def test_find_discount_code_returns_the_node(shopify: responses.RequestsMock):
    # given the code exists
    shopify.add(responses.POST, URL, json=answer({"codeDiscountNodeByCode": {"id": NODE_ID}}))

    # when it is looked up
    result = client.find_discount_code(CREDENTIALS, "SK-7F3A9C")

    # then
    assert sent(shopify)["variables"] == {"code": "SK-7F3A9C"}
    assert result == DiscountCode(code="SK-7F3A9C", platform_id=NODE_ID, created=False)


def test_find_discount_code_not_found_is_none(shopify: responses.RequestsMock):
    # given no discount has the code
    shopify.add(responses.POST, URL, json=answer({"codeDiscountNodeByCode": None}))

    # when / then
    assert client.find_discount_code(CREDENTIALS, "NOPE") is None


# ---- deactivation --------------------------------------------------------------------------


def test_deactivate_discount_code_sends_the_node_id(shopify: responses.RequestsMock):
    # given Shopify deactivates the discount
    shopify.add(responses.POST, URL, json=created("discountCodeDeactivate"))

    # when the client switches it off
    result = client.deactivate_discount_code(CREDENTIALS, NODE_ID, now=ENDS_AT)

    # then the pinned document went out with the node's id
    assert result is None
    assert sent(shopify) == {
        "query": client.DOCUMENTS["discountCodeDeactivate"], "variables": {"id": NODE_ID},
    }


@pytest.mark.parametrize(
    ("_case", "payload", "message"),
    [
        ("user error", {"codeDiscountNode": None, "userErrors": [
            {"field": ["id"], "message": "Discount does not exist", "code": None}]},
         "discountCodeDeactivate: id: Discount does not exist"),
        ("no node", {"codeDiscountNode": None, "userErrors": []}, "no codeDiscountNode"),
    ],
)
def test_deactivate_discount_code_refusal_is_permanent(
    shopify: responses.RequestsMock, _case: str, payload: dict[str, Any], message: str
):
    # given Shopify does not deactivate it
    shopify.add(responses.POST, URL, json=answer({"discountCodeDeactivate": payload}))

    # when / then
    with pytest.raises(PermanentError, match=message):
        client.deactivate_discount_code(CREDENTIALS, NODE_ID, now=ENDS_AT)


def test_deactivate_refuses_an_id_that_is_not_a_discount_node(shopify: responses.RequestsMock):
    # when / then (nothing registered: no request may be sent)
    with pytest.raises(ValueError):
        client.deactivate_discount_code(CREDENTIALS, "gid://shopify/Order/1", now=ENDS_AT)


# ---- taking a bounce-back code back: read its uses, then delete it --------------------------

# The answers (their `data`), as the pinned schema shapes them: test_graphql_schema.py executes the
# documents against the schema with these and gets them back unchanged.
UNUSED = {"node": {"id": NODE_ID, "codeDiscount": {"__typename": "DiscountCodeBasic", "asyncUsageCount": 0}}}
USED = {"node": {"id": NODE_ID, "codeDiscount": {"__typename": "DiscountCodeBasic", "asyncUsageCount": 1}}}
GONE = {"node": None}
DELETED = {"discountCodeDelete": {"deletedCodeDiscountId": NODE_ID, "userErrors": []}}


def test_withdraw_reads_the_uses_then_deletes_the_discount(shopify: responses.RequestsMock):
    # given an unused discount that Shopify deletes
    shopify.add(responses.POST, URL, json=answer(UNUSED))
    shopify.add(responses.POST, URL, json=answer(DELETED))

    # when the code is taken back
    gone = client.withdraw_discount_code(CREDENTIALS, NODE_ID)

    # then both pinned documents went out with the node's id, and it is gone
    assert gone is True
    assert sent(shopify, 0) == {"query": client.DOCUMENTS["discountCodeUsage"], "variables": {"id": NODE_ID}}
    assert sent(shopify, 1) == {"query": client.DOCUMENTS["discountCodeDelete"], "variables": {"id": NODE_ID}}


def test_withdraw_leaves_a_used_discount_alone(shopify: responses.RequestsMock):
    # given Shopify counts a use
    shopify.add(responses.POST, URL, json=answer(USED))

    # when / then it is not deleted (only one request went out)
    assert client.withdraw_discount_code(CREDENTIALS, "1057371231") is False
    assert len(shopify.calls) == 1


def test_withdraw_of_a_deleted_discount_is_done(shopify: responses.RequestsMock):
    # given the discount no longer exists (an attempt whose answer was lost deleted it)
    shopify.add(responses.POST, URL, json=answer(GONE))

    # when / then
    assert client.withdraw_discount_code(CREDENTIALS, NODE_ID) is True


@pytest.mark.parametrize(
    ("_case", "payload", "message"),
    [
        ("user error", {"deletedCodeDiscountId": None, "userErrors": [
            {"field": ["id"], "message": "Discount does not exist", "code": None}]},
         "discountCodeDelete: id: Discount does not exist"),
        ("no id", {"deletedCodeDiscountId": None, "userErrors": []}, "no deletedCodeDiscountId"),
    ],
)
def test_withdraw_refusal_is_permanent(shopify: responses.RequestsMock, _case: str, payload: dict[str, Any],
                                       message: str):
    # given Shopify does not delete it
    shopify.add(responses.POST, URL, json=answer(UNUSED))
    shopify.add(responses.POST, URL, json=answer({"discountCodeDelete": payload}))

    # when / then
    with pytest.raises(PermanentError, match=message):
        client.withdraw_discount_code(CREDENTIALS, NODE_ID)


def test_withdraw_refuses_an_id_that_is_not_a_discount_node(shopify: responses.RequestsMock):
    # when / then (nothing registered: no request may be sent)
    with pytest.raises(ValueError):
        client.withdraw_discount_code(CREDENTIALS, "gid://shopify/Order/1")


# ---- order tags ----------------------------------------------------------------------------


def test_add_order_tags_sends_order_gid_and_tags(shopify: responses.RequestsMock):
    # given Shopify tags the order
    shopify.add(responses.POST, URL, json=answer({"tagsAdd": {
        "node": {"id": "gid://shopify/Order/450789469"}, "userErrors": []}}))

    # when the client tags it
    result = client.add_order_tags(CREDENTIALS, "450789469", ["stammkunde", " reward-redeemed "])

    # then
    assert result is None
    assert sent(shopify) == {
        "query": client.DOCUMENTS["tagsAdd"],
        "variables": {"id": "gid://shopify/Order/450789469",
                      "tags": ["stammkunde", "reward-redeemed"]},
    }


def test_add_order_tags_user_errors_are_permanent(shopify: responses.RequestsMock):
    # given the order does not exist (Shopify's answer for an unknown id)
    shopify.add(responses.POST, URL, json=answer({"tagsAdd": {
        "node": None, "userErrors": [{"field": ["id"], "message": "Order does not exist"}]}}))

    # when / then
    with pytest.raises(PermanentError, match="tagsAdd: id: Order does not exist"):
        client.add_order_tags(CREDENTIALS, "999999999999999", ["stammkunde"])


def test_mark_gift_tags_the_order(shopify: responses.RequestsMock):
    # given Shopify tags the order
    shopify.add(responses.POST, URL, json=answer({"tagsAdd": {
        "node": {"id": "gid://shopify/Order/450789469"}, "userErrors": []}}))

    # when a gift is marked (the note is WooCommerce's mark)
    client.mark_gift(CREDENTIALS, "450789469", tag="geschenk", note="Bitte Geschenk beilegen")

    # then the order got the gift's tag and nothing else
    assert sent(shopify)["variables"] == {"id": "gid://shopify/Order/450789469", "tags": ["geschenk"]}


def test_credentials_add_the_shop_domain():
    # when the stored credentials are given the shop
    creds = client.credentials("laden.myshopify.com", {"access_token": TOKEN})

    # then every call here can read them
    assert creds == {"access_token": TOKEN, "shop": "laden.myshopify.com"}


def test_add_order_tags_without_tags_sends_nothing(shopify: responses.RequestsMock):
    # when / then (no request registered: none may be sent)
    assert client.add_order_tags(CREDENTIALS, "450789469", []) is None


# ---- throttle ------------------------------------------------------------------------------


def test_throttle_waits_when_the_bucket_is_low(
    shopify: responses.RequestsMock, fake_time: FakeTime, throttle: client.CostThrottle
):
    # given the last answer left 4 points, restoring 100 per second, and the mutation costs 10
    shopify.add(responses.POST, URL, json=created("discountCodeBasicCreate"))
    shopify.add(responses.POST, URL, json=created("discountCodeBasicCreate"))
    client.THROTTLE.record(SHOP, "DiscountCodeBasicCreate", cost(available=4, requested=10))

    # when two codes are created back to back
    client.create_discount_code(CREDENTIALS, spec(code="SK-1"))
    client.create_discount_code(CREDENTIALS, spec(code="SK-2"))

    # then only the first waited, just long enough for 6 points: the answer refilled the model
    assert fake_time.sleeps == [pytest.approx(0.06)]
    assert throttle.waits == 1
    assert throttle.waited_seconds == pytest.approx(0.06)


def test_throttle_does_not_wait_when_the_bucket_is_full(
    shopify: responses.RequestsMock, fake_time: FakeTime
):
    # given answers that leave the bucket nearly full
    for _ in range(3):
        shopify.add(responses.POST, URL, json=created("discountCodeBasicCreate"))

    # when three codes are created back to back
    for index in range(3):
        client.create_discount_code(CREDENTIALS, spec(code=f"SK-{index}"))

    # then nobody waited
    assert fake_time.sleeps == []


def test_throttle_counts_points_restored_since_the_answer(
    throttle: client.CostThrottle, fake_time: FakeTime
):
    # given 4 points were left 0.05 s ago, restoring 100 per second (so 9 now)
    throttle.record(SHOP, "doc", cost(available=4, requested=10))
    fake_time.now += 0.05

    # when a 10-point request is admitted
    waited = throttle.wait(SHOP, "doc", 1)

    # then it waits for the one missing point only
    assert waited == pytest.approx(0.01)
    assert fake_time.sleeps == [pytest.approx(0.01)]


def test_throttle_caps_the_estimate_at_the_maximum(
    throttle: client.CostThrottle, fake_time: FakeTime
):
    # given an empty bucket of 100 points read an hour ago
    throttle.record(SHOP, "doc", cost(available=0, maximum=100, requested=100, rate=20))
    fake_time.now += 3600

    # when two full-bucket requests follow
    first = throttle.wait(SHOP, "doc", 1)
    second = throttle.wait(SHOP, "doc", 1)

    # then the first goes at once, and the second waits for a whole refill, not for nothing
    assert first == 0
    assert second == pytest.approx(5.0)


def test_throttle_uses_the_estimate_for_an_unseen_document(
    throttle: client.CostThrottle, fake_time: FakeTime
):
    # given a known bucket of 20 points and a document never sent before
    throttle.record(SHOP, "seen", cost(available=20, requested=5))

    # when a request estimated at 50 points is admitted
    waited = throttle.wait(SHOP, "unseen", 50)

    # then it waits for the 30 missing points
    assert throttle.expected_cost("unseen", 50) == 50
    assert waited == pytest.approx(0.3)


def test_throttle_does_not_wait_for_an_unknown_shop(
    throttle: client.CostThrottle, fake_time: FakeTime
):
    # given a bucket known only for another shop
    throttle.record("other.myshopify.com", "doc", cost(available=0))

    # when this shop's first request is admitted
    waited = throttle.wait(SHOP, "doc", 10)

    # then it goes at once
    assert waited == 0
    assert throttle.available(SHOP) is None


def test_throttle_refuses_a_wait_over_its_maximum(
    throttle: client.CostThrottle, fake_time: FakeTime
):
    # given an empty bucket restoring 1 point per second, and a 50-point request
    throttle.record(SHOP, "doc", cost(available=0, requested=50, rate=1))

    # when / then it raises instead of holding the worker for 50 s
    with pytest.raises(RateLimitedError) as raised:
        throttle.wait(SHOP, "doc", 10)
    assert raised.value.retry_after == pytest.approx(50.0)
    assert fake_time.sleeps == []


def test_throttle_queues_concurrent_requests(
    throttle: client.CostThrottle, fake_time: FakeTime
):
    # given an empty bucket restoring 100 points per second, and 10-point requests
    throttle.record(SHOP, "doc", cost(available=0, requested=10))
    delays: list[float] = []
    lock = threading.Lock()

    def admit() -> None:
        delay = throttle.reserve(SHOP, 10)
        with lock:
            delays.append(delay)

    # when eight threads ask at the same instant
    threads = [threading.Thread(target=admit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then each is booked one restore-slot after the previous one
    assert sorted(delays) == [pytest.approx(0.1 * n) for n in range(1, 9)]


# ---- logs and registry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "reply"),
    [
        ("timeout", {"body": requests.exceptions.ReadTimeout("timed out")}),
        ("server error", {"status": 500, "body": "boom"}),
        ("rate limited", {"status": 429, "body": "slow down"}),
        ("graphql error", {"json": {"errors": [{"message": "Access denied"}]}}),
        ("user error", {"json": answer({"discountCodeBasicCreate": {
            "codeDiscountNode": None,
            "userErrors": [{"field": ["basicCodeDiscount", "title"], "message": "bad"}]}})}),
    ],
)
def test_logs_carry_neither_token_nor_bodies(
    shopify: responses.RequestsMock, caplog: pytest.LogCaptureFixture, _case: str,
    reply: dict[str, Any],
):
    # given a failing call
    shopify.add(responses.POST, URL, **reply)
    caplog.set_level(logging.DEBUG, logger="connectors.shopify.client")

    # when it fails
    with pytest.raises((TransientError, PermanentError)):
        client.create_discount_code(CREDENTIALS, spec(customer_id=CUSTOMER_ID))

    # then nothing logged holds the token, the code or the customer
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (TOKEN, "SK-7F3A9C", CUSTOMER_ID):
        assert secret not in logged


def test_connector_delegates_to_the_client():
    # then the registered connector exposes the client's operations
    assert connector.create_discount_code is client.create_discount_code
    assert connector.find_discount_code is client.find_discount_code
    assert connector.mark_gift is client.mark_gift
    assert connector.credentials is client.credentials
    assert connector.deactivate_discount_code is client.deactivate_discount_code
    assert connector.withdraw_discount_code is client.withdraw_discount_code
    assert connector.platform == "shopify"


# ---- a member's tier as a customer tag -----------------------------------------------------

CUSTOMER_GID = f"gid://shopify/Customer/{CUSTOMER_ID}"


def tags_answer(root: str) -> dict[str, Any]:
    """Return Shopify's body for a tagsAdd/tagsRemove on the customer."""
    return answer({root: {"node": {"id": CUSTOMER_GID}, "userErrors": []}})


@pytest.mark.parametrize(
    ("_case", "label", "previous", "calls"),
    [
        ("first tier", "Stammkunde Silber", None, [("tagsAdd", ["Stammkunde Silber"])]),
        ("upgrade: new tag, then our old one off", "Stammkunde Gold", "Stammkunde Silber",
         [("tagsAdd", ["Stammkunde Gold"]), ("tagsRemove", ["Stammkunde Silber"])]),
        ("no tier any more: only our tag off", None, "Stammkunde Gold", [("tagsRemove", ["Stammkunde Gold"])]),
        ("written again (a re-sync)", "Stammkunde Gold", "Stammkunde Gold", [("tagsAdd", ["Stammkunde Gold"])]),
    ],
)
def test_member_tier_is_a_customer_tag(shopify: responses.RequestsMock, _case, label, previous, calls):
    # given Shopify takes the tag changes
    for root, _tags in calls:
        shopify.add(responses.POST, URL, json=tags_answer(root))

    # when the member's tier is shown
    client.set_customer_tier(CREDENTIALS, CUSTOMER_ID, label, previous=previous)

    # then exactly these documents went out, on the customer, touching no other tag
    assert [(sent(shopify, i)["query"], sent(shopify, i)["variables"]) for i in range(len(calls))] == [
        (client.DOCUMENTS[root], {"id": CUSTOMER_GID, "tags": tags}) for root, tags in calls]


def test_nothing_to_show_sends_nothing(shopify: responses.RequestsMock):
    # when there is neither a tag to add nor one of ours to remove, then no request is made
    client.set_customer_tier(CREDENTIALS, CUSTOMER_ID, None, previous=None)
    assert len(shopify.calls) == 0


@pytest.mark.parametrize(
    ("_case", "tier", "prefix", "label"),
    [("plain", "Gold", "Stammkunde", "Stammkunde Gold"),
     ("a comma would make two tags", "Gold, VIP", "Stammkunde", "Stammkunde Gold VIP"),
     ("white space", "  Platin ", "Treue  Club", "Treue Club Platin")],
)
def test_tier_label_is_one_recognisable_tag(_case, tier, prefix, label):
    assert connector.tier_label(tier, prefix=prefix) == label


def test_install_asks_for_the_scope_tier_tags_need():
    # tagsAdd/tagsRemove on a Customer need write_customers: it is among the scopes asked for
    assert "write_customers" in consts.SCOPES


def test_member_tier_refusal_is_permanent(shopify: responses.RequestsMock):
    # given the customer no longer exists in the shop
    shopify.add(responses.POST, URL, json=answer({"tagsAdd": {
        "node": None, "userErrors": [{"field": ["id"], "message": "Customer does not exist"}]}}))

    # when / then
    with pytest.raises(PermanentError, match="tagsAdd: id: Customer does not exist"):
        client.set_customer_tier(CREDENTIALS, CUSTOMER_ID, "Stammkunde Gold", previous=None)


def test_member_tier_refuses_what_is_not_a_customer_id(shopify: responses.RequestsMock):
    with pytest.raises(ValueError):
        client.set_customer_tier(CREDENTIALS, "gid://shopify/Order/1", "Stammkunde Gold", previous=None)
