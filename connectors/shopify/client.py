"""Outbound calls to the Shopify Admin GraphQL API, over `requests` (STYLE rules 2, 12, 13, 14).

One function per platform operation. Every request has an explicit timeout, goes to the API
version pinned in `consts.API_VERSION` and never follows redirects (the access token travels in a
custom header that `requests` would not strip on a cross-host redirect).

Failures are typed (`connectors.errors`):

- timeout, connection error, HTTP 5xx, a 2xx that is not JSON, a top-level
  `INTERNAL_SERVER_ERROR` -> `TransientError`;
- HTTP 429 -> `RateLimitedError(retry_after)`, from `Retry-After` (default 1 s);
- top-level error `THROTTLED` -> `RateLimitedError(retry_after)`, computed from
  `extensions.cost.throttleStatus`;
- HTTP 401 -> `UnauthorizedError` (a `PermanentError` the caller may answer with one token refresh);
- HTTP 403/404, any other 3xx/4xx, any other top-level error, and `userErrors`
  -> `PermanentError`.

Creating a discount code is idempotent (STYLE rule 14): the codes are deterministic, so when
Shopify answers "code already taken" the code is looked up and returned with `created=False`.

Before each request a per-shop model of Shopify's cost bucket (a `connectors.throttle.Throttle`)
sleeps just long enough for the request's expected cost to be available, so we slow down before
being refused; after it, the model learns the answer's `extensions.cost`. The throttle comes with
the credentials (`credentials(shop, stored, throttle=...)`: the app hands in one kept in Redis and
shared by every worker); without one, the process's own `THROTTLE` paces the calls.
https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits

Nothing here logs the access token, a request or a response body.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import requests

import shopify

from connectors.errors import (
    AuthorizationExpiredError,
    PermanentError,
    RateLimitedError,
    TransientError,
    UnauthorizedError,
)
from connectors.shopify.consts import (
    ACCESS_TOKEN_HEADER,
    ADMIN_GRAPHQL_URL,
    API_VERSION,
    OAUTH_ACCESS_TOKEN_URL,
    OAUTH_AUTHORIZE_URL,
    PLATFORM,
)
from connectors.throttle import BucketStatus, Throttle
from connectors.types import DiscountCode, DiscountSpec, ProductFacts

logger = logging.getLogger(__name__)

# (connect, read) seconds for every Admin API request.
TIMEOUT = (5.0, 20.0)
# Used when a 429 carries no usable Retry-After, as Shopify's own `shopifyapp` package does.
DEFAULT_RETRY_AFTER = 1.0
# The throttle sleeps at most this long before a request; a longer wait is raised as
# RateLimitedError so the job is retried later instead of holding a worker.
MAX_THROTTLE_WAIT = 10.0
DEFAULT_COST_ESTIMATE = 10.0

_SHOP_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
_NUMERIC_ID = re.compile(r"[0-9]+")
_OPERATION = re.compile(r"\s*(?:query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)")

# ---- documents ------------------------------------------------------------------------------

# Every document the client can send, keyed by the root field it calls. The schema test
# (tests/connectors/shopify/test_graphql_schema.py) validates each one, and the variables the
# helpers below build, against the pinned 2026-07 schema.
DOCUMENTS: dict[str, str] = {
    # The cheapest authenticated call, for the shop-health check (cost 1).
    # https://shopify.dev/docs/api/admin-graphql/2026-07/queries/shop
    "shop": """\
query ShopCheck {
  shop {
    id
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/queries/webhookSubscriptions
    "webhookSubscriptions": """\
query WebhookSubscriptions($first: Int!, $after: String) {
  webhookSubscriptions(first: $first, after: $after) {
    nodes {
      id
      topic
      uri
    }
    pageInfo {
      hasNextPage
      endCursor
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/webhookSubscriptionCreate
    "webhookSubscriptionCreate": """\
mutation WebhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription {
      id
      topic
      uri
    }
    userErrors {
      field
      message
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/webhookSubscriptionDelete
    "webhookSubscriptionDelete": """\
mutation WebhookSubscriptionDelete($id: ID!) {
  webhookSubscriptionDelete(id: $id) {
    deletedWebhookSubscriptionId
    userErrors {
      field
      message
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/discountCodeBasicCreate
    "discountCodeBasicCreate": """\
mutation DiscountCodeBasicCreate($basicCodeDiscount: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $basicCodeDiscount) {
    codeDiscountNode {
      id
    }
    userErrors {
      field
      message
      code
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/discountCodeFreeShippingCreate
    "discountCodeFreeShippingCreate": """\
mutation DiscountCodeFreeShippingCreate(
  $freeShippingCodeDiscount: DiscountCodeFreeShippingInput!
) {
  discountCodeFreeShippingCreate(freeShippingCodeDiscount: $freeShippingCodeDiscount) {
    codeDiscountNode {
      id
    }
    userErrors {
      field
      message
      code
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/discountCodeBxgyCreate
    # (a combination offer: buy X, get Y cheaper)
    "discountCodeBxgyCreate": """\
mutation DiscountCodeBxgyCreate($bxgyCodeDiscount: DiscountCodeBxgyInput!) {
  discountCodeBxgyCreate(bxgyCodeDiscount: $bxgyCodeDiscount) {
    codeDiscountNode {
      id
    }
    userErrors {
      field
      message
      code
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/queries/codeDiscountNodeByCode
    # (case-insensitive lookup).
    "codeDiscountNodeByCode": """\
query CodeDiscountNodeByCode($code: String!) {
  codeDiscountNodeByCode(code: $code) {
    id
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/discountCodeDeactivate
    # (a tier perk of a member who left the tier; the code stays in the admin, expired).
    "discountCodeDeactivate": """\
mutation DiscountCodeDeactivate($id: ID!) {
  discountCodeDeactivate(id: $id) {
    codeDiscountNode {
      id
    }
    userErrors {
      field
      message
      code
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/queries/node (a code discount's uses;
    # `codeDiscountNode(id:)` is deprecated in 2026-07). `asyncUsageCount` is counted
    # asynchronously: a use seconds old may not show yet.
    "discountCodeUsage": """\
query DiscountCodeUsage($id: ID!) {
  node(id: $id) {
    id
    ... on DiscountCodeNode {
      codeDiscount {
        __typename
        ... on DiscountCodeBasic {
          asyncUsageCount
        }
        ... on DiscountCodeFreeShipping {
          asyncUsageCount
        }
        ... on DiscountCodeBxgy {
          asyncUsageCount
        }
        ... on DiscountCodeApp {
          asyncUsageCount
        }
      }
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/discountCodeDelete
    # (a bounce-back code whose order was cancelled or refunded before it was used: deleted,
    # so no customer can use it; deactivation would leave it to be switched on again).
    "discountCodeDelete": """\
mutation DiscountCodeDelete($id: ID!) {
  discountCodeDelete(id: $id) {
    deletedCodeDiscountId
    userErrors {
      field
      message
      code
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/tagsAdd
    "tagsAdd": """\
mutation TagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node {
      id
    }
    userErrors {
      field
      message
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/tagsRemove
    # (our own tier tag of a member who left the tier; needs write_customers on a Customer).
    "tagsRemove": """\
mutation TagsRemove($id: ID!, $tags: [String!]!) {
  tagsRemove(id: $id, tags: $tags) {
    node {
      id
    }
    userErrors {
      field
      message
    }
  }
}
""",
    # Orders changed (reconciliation) or created (backfill) in a window, oldest first, with what
    # the order parser reads (`webhooks.parse_polled_order`). Lines and refunds come in
    # bounded first pages; `list_orders` completes an order that has more with the two documents
    # below. https://shopify.dev/docs/api/admin-graphql/2026-07/queries/orders
    "orders": """\
query Orders($first: Int!, $after: String, $query: String!, $sortKey: OrderSortKeys!) {
  orders(first: $first, after: $after, query: $query, sortKey: $sortKey) {
    nodes {
      ...PolledOrder
    }
    pageInfo {
      hasNextPage
      endCursor
    }
  }
}
""" + "{ORDER}{LINE}{MONEY}",
    # How many orders a backfill will read (its progress bar); cost 1.
    # https://shopify.dev/docs/api/admin-graphql/2026-07/queries/ordersCount
    "ordersCount": """\
query OrdersCount($query: String!) {
  ordersCount(query: $query, limit: null) {
    count
    precision
  }
}
""",
    # Earning by product: the tags and collections of the products of an order's lines, which the
    # order webhook does not carry (a line has product_id, variant_id, vendor and gift_card only).
    # https://shopify.dev/docs/api/admin-graphql/2026-07/queries/nodes
    # https://shopify.dev/docs/api/admin-graphql/2026-07/objects/Product (tags, collections)
    "nodes": """\
query ProductFacts($ids: [ID!]!, $collections: Int!) {
  nodes(ids: $ids) {
    ... on Product {
      id
      tags
      collections(first: $collections) {
        nodes {
          id
          handle
          title
        }
        pageInfo {
          hasNextPage
        }
      }
    }
  }
}
""",
    # The rest of an order's lines (more than the first page of `orders` holds).
    # https://shopify.dev/docs/api/admin-graphql/2026-07/queries/order
    "order": """\
query OrderLineItems($id: ID!, $after: String) {
  order(id: $id) {
    lineItems(first: 50, after: $after) {
      nodes {
        ...PolledLineItem
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
}
""" + "{LINE}{MONEY}",
    # An order with more refunds than the first page of `orders` holds, or a refund with more
    # lines: its refunds again, each with up to 50 lines.
    # https://shopify.dev/docs/api/admin-graphql/2026-07/queries/order
    "orderRefunds": """\
query OrderRefunds($id: ID!) {
  order(id: $id) {
    refunds(first: 15) {
      id
      createdAt
      totalRefundedSet {
        ...ShopMoney
      }
      refundLineItems(first: 50) {
        nodes {
          subtotalSet {
            ...ShopMoney
          }
          lineItem {
            isGiftCard
          }
        }
        pageInfo {
          hasNextPage
        }
      }
    }
  }
}
""" + "{MONEY}",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/storeCreditAccountCredit
    # (a "store credit" reward; needs write_store_credit_account_transactions). `@idempotent`
    # makes a retry with the same key (the reward's derived code) credit once.
    # https://shopify.dev/docs/api/usage/idempotent-requests
    "storeCreditAccountCredit": """\
mutation StoreCreditAccountCredit($id: ID!, $creditInput: StoreCreditAccountCreditInput!, $idempotencyKey: String!) {
  storeCreditAccountCredit(id: $id, creditInput: $creditInput) @idempotent(key: $idempotencyKey) {
    storeCreditAccountTransaction {
      id
    }
    userErrors {
      field
      message
      code
    }
  }
}
""",
    # https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/metafieldsSet
    # (customer metafields a theme reads; at most 25 per call; needs write_customers).
    "metafieldsSet": """\
mutation MetafieldsSet($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) {
    metafields {
      id
    }
    userErrors {
      field
      message
      code
    }
  }
}
""",
}

# Fragments of the order documents (one definition of what we read of an order).
_ORDER_FRAGMENTS = {
    "{ORDER}": """\
fragment PolledOrder on Order {
  id
  legacyResourceId
  name
  createdAt
  updatedAt
  processedAt
  cancelledAt
  displayFinancialStatus
  currencyCode
  presentmentCurrencyCode
  taxesIncluded
  test
  email
  customerLocale
  tags
  discountCodes
  totalWeight
  checkoutToken
  subtotalPriceSet {
    ...ShopMoney
  }
  totalPriceSet {
    ...ShopMoney
  }
  totalShippingPriceSet {
    ...ShopMoney
  }
  shippingAddress {
    address1
    zip
    countryCodeV2
  }
  customer {
    id
    firstName
    lastName
    locale
    createdAt
    updatedAt
    tags
    defaultEmailAddress {
      emailAddress
      marketingState
      marketingUpdatedAt
    }
  }
  lineItems(first: %(lines)d) {
    nodes {
      ...PolledLineItem
    }
    pageInfo {
      hasNextPage
      endCursor
    }
  }
  refunds(first: %(refunds)d) {
    id
    createdAt
    totalRefundedSet {
      ...ShopMoney
    }
    refundLineItems(first: %(refund_lines)d) {
      nodes {
        subtotalSet {
          ...ShopMoney
        }
        lineItem {
          id
          isGiftCard
        }
      }
      pageInfo {
        hasNextPage
      }
    }
  }
}
""",
    "{LINE}": """\
fragment PolledLineItem on LineItem {
  id
  quantity
  isGiftCard
  vendor
  product {
    id
  }
  variant {
    id
  }
  originalUnitPriceSet {
    ...ShopMoney
  }
  discountAllocations {
    allocatedAmountSet {
      ...ShopMoney
    }
  }
  taxLines {
    priceSet {
      ...ShopMoney
    }
  }
}
""",
    "{MONEY}": """\
fragment ShopMoney on MoneyBag {
  shopMoney {
    amount
    currencyCode
  }
}
""",
}

# How many lines, refunds and refund lines the `orders` page asks for per order. Shopify
# budgets a query by what it could return (a connection costs 2 + first x its node), and refuses
# one over 1000 points; an order with more is completed by `order`/`orderRefunds` (rare). The
# requested cost of a page is 3 + ORDERS_PAGE_SIZE x 271 points = 816 (bench/throttle_server.py's
# `query_cost` computes it by those rules); its actual cost follows what came back (about 50
# points for an order with three lines and no refund).
# https://shopify.dev/docs/api/usage/rate-limits#cost-calculation
ORDER_LINES_FIRST = 10
ORDER_REFUNDS_FIRST = 3
REFUND_LINES_FIRST = 10
ORDERS_PAGE_SIZE = 3
_fragment_values = {"lines": ORDER_LINES_FIRST, "refunds": ORDER_REFUNDS_FIRST, "refund_lines": REFUND_LINES_FIRST}
for _name in ("orders", "order", "orderRefunds"):
    _document = DOCUMENTS[_name]
    for _placeholder, _fragment in _ORDER_FRAGMENTS.items():
        _document = _document.replace(_placeholder, "\n" + (_fragment % _fragment_values if "%(" in _fragment else _fragment))
    DOCUMENTS[_name] = _document
del _name, _document, _placeholder, _fragment

# metafieldsSet takes at most this many metafields per call.
METAFIELDS_PER_CALL = 25

# What a reward code combines with (DiscountCombinesWithInput). A reward is an order or product
# discount that must not stack with the shop's other order/product codes (one reward per order,
# no "reward + sale code" surprises), but may go with a free-shipping code. A free-shipping reward
# combines with order and product discounts, never with another shipping discount.
COMBINES_WITH: dict[str, dict[str, bool]] = {
    "fixed_amount": {"productDiscounts": False, "orderDiscounts": False, "shippingDiscounts": True},
    "percentage": {"productDiscounts": False, "orderDiscounts": False, "shippingDiscounts": True},
    "free_product": {"productDiscounts": False, "orderDiscounts": False, "shippingDiscounts": True},
    "free_shipping": {"productDiscounts": True, "orderDiscounts": True, "shippingDiscounts": False},
    "buy_x_get_y": {"productDiscounts": False, "orderDiscounts": False, "shippingDiscounts": True},
}

_HUNDRED = Decimal(100)
_ZERO = Decimal(0)


# ---- cost-based throttle --------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    maximum: float
    available: float
    restore_rate: float
    read_at: float

    def available_at(self, now: float) -> float:
        return min(self.maximum, self.available + self.restore_rate * (now - self.read_at))


class CostThrottle:
    """A thread-safe, per-shop model of Shopify's query-cost bucket that waits before a request.

    Every response's `extensions.cost.throttleStatus` {maximumAvailable, currentlyAvailable,
    restoreRate} is stored with the time it was read. Before a request, the points available now
    are estimated as `currentlyAvailable + restoreRate * elapsed` (capped at the maximum); when
    that is below the request's expected cost, the caller sleeps just long enough. The expected
    cost is the last `requestedQueryCost` seen for that operation (Shopify needs the requested cost
    available before it runs a query, and refunds the unused part afterwards), else its
    `actualQueryCost`, else the caller's estimate. Each admitted request books its cost in the
    model, so concurrent callers in this process queue up instead of all going at once.

    It sees only this process's answers: with more than one process calling a shop, hand the
    client a shared throttle instead (`app.rate_limits.RedisThrottle`).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = MAX_THROTTLE_WAIT,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._costs: dict[str, float] = {}
        self.waits = 0  # requests that had to wait
        self.waited_seconds = 0.0  # total time slept

    def expected_cost(self, operation: str, estimate: float) -> float:
        """Return the cost to budget for `operation`: the last one seen, else `estimate`."""
        with self._lock:
            return self._costs.get(operation, float(estimate))

    def available(self, shop: str) -> float | None:
        """Return the estimated points available now for `shop`, or None before any response."""
        with self._lock:
            bucket = self._buckets.get(shop)
            return None if bucket is None else bucket.available_at(self._clock())

    def status(self, shop: str) -> dict[str, float] | None:
        """Return the last throttle status stored for `shop` (for benchmarks and the admin)."""
        with self._lock:
            bucket = self._buckets.get(shop)
            if bucket is None:
                return None
            return {
                "maximumAvailable": bucket.maximum,
                "currentlyAvailable": bucket.available_at(self._clock()),
                "restoreRate": bucket.restore_rate,
            }

    def reserve(self, shop: str, cost: float) -> float:
        """Book `cost` points for `shop` and return how many seconds to wait before sending.

        Raises:
            RateLimitedError: the wait would exceed `max_wait`; nothing is booked.
        """
        with self._lock:
            bucket = self._buckets.get(shop)
            if bucket is None or bucket.restore_rate <= 0:
                return 0.0
            now = self._clock()
            # A request can never need more than a full bucket.
            cost = min(float(cost), bucket.maximum)
            available = bucket.available_at(now)
            delay = max(0.0, (cost - available) / bucket.restore_rate)
            if delay > self.max_wait:
                raise RateLimitedError(
                    "shopify: cost bucket too low to wait for", retry_after=delay
                )
            # At now + delay exactly `cost` is available (or more, if delay is 0); take it.
            bucket.available = available + bucket.restore_rate * delay - cost
            bucket.read_at = now + delay
            return delay

    def wait(self, shop: str, operation: str, estimate: float) -> float:
        """Sleep until a request of `operation` fits the bucket; return the seconds slept.

        Raises:
            RateLimitedError: the wait would exceed `max_wait`.
        """
        delay = self.reserve(shop, self.expected_cost(operation, estimate))
        if delay > 0:
            with self._lock:
                self.waits += 1
                self.waited_seconds += delay
            logger.debug(
                "shopify graphql request delayed by cost throttle",
                extra={"platform": PLATFORM, "shop": shop, "wait_seconds": delay},
            )
            self._sleep(delay)
        return delay

    def record(self, shop: str, operation: str, cost: Any) -> None:
        """Store a response's `extensions.cost` for `shop` and `operation`; ignore junk."""
        if not isinstance(cost, Mapping):
            return
        seen = _number(cost.get("requestedQueryCost"))
        if seen is None:
            seen = _number(cost.get("actualQueryCost"))
        status = cost.get("throttleStatus")
        bucket = None
        if isinstance(status, Mapping):
            maximum = _number(status.get("maximumAvailable"))
            available = _number(status.get("currentlyAvailable"))
            rate = _number(status.get("restoreRate"))
            if maximum is not None and available is not None and rate is not None:
                bucket = _Bucket(maximum, available, rate, 0.0)
        with self._lock:
            if seen is not None:
                self._costs[operation] = seen
            if bucket is not None:
                bucket.read_at = self._clock()
                self._buckets[shop] = bucket

    def acquire(self, shop: str, operation: str, estimate: float) -> tuple[str, str]:
        """`connectors.throttle.Throttle.acquire` for this process: wait, return (shop, operation).

        Raises:
            RateLimitedError: the wait would exceed `max_wait`.
        """
        self.wait(shop, operation, estimate)
        return shop, operation

    def settle(self, ticket: tuple[str, str], *, requested: float | None, actual: float | None,
               status: BucketStatus | None) -> None:
        """`connectors.throttle.Throttle.settle`: store the answer's cost and bucket state."""
        shop, operation = ticket
        cost: dict[str, Any] = {"requestedQueryCost": requested, "actualQueryCost": actual}
        if status is not None:
            cost["throttleStatus"] = {"maximumAvailable": status.maximum,
                                      "currentlyAvailable": status.available,
                                      "restoreRate": status.restore_rate}
        self.record(shop, operation, cost)

    def reset(self) -> None:
        """Forget every shop's bucket and every document's cost."""
        with self._lock:
            self._buckets.clear()
            self._costs.clear()
            self.waits = 0
            self.waited_seconds = 0.0


# The throttle of calls whose credentials carry none (a process without the app's shared one).
THROTTLE = CostThrottle()

_local = threading.local()


def _session() -> requests.Session:
    """Return this thread's HTTP session, so calls to a shop reuse one TLS connection."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


# ---- transport ------------------------------------------------------------------------------


def graphql(
    credentials: Mapping[str, Any],
    document: str,
    variables: Mapping[str, Any] | None,
    *,
    cost_estimate: float = DEFAULT_COST_ESTIMATE,
    throttle: Throttle | None = None,
) -> dict[str, Any]:
    """POST one GraphQL document to the shop's Admin API and return its `data`.

    The request is paced by `throttle`, else by the one in `credentials`, else by `THROTTLE`;
    it is settled with the answer's cost, or with nothing when no answer came.

    Raises:
        TransientError: timeout, connection error, HTTP 5xx, unreadable body, internal error.
        RateLimitedError: HTTP 429 or a THROTTLED error (or a throttle wait over its maximum).
        PermanentError: bad credentials, HTTP 401/403/404 or other 3xx/4xx, GraphQL errors.
    """
    shop, token = _credentials(credentials)
    limiter = throttle if throttle is not None else credentials.get("throttle")
    if limiter is None:
        limiter = THROTTLE
    operation = _operation_name(document)
    extra = {"platform": PLATFORM, "shop": shop, "operation": operation}
    ticket = limiter.acquire(shop, operation, cost_estimate)
    payload: Any = None
    try:
        response = _post(shop, token, document, variables, extra)
        payload = _json_or_none(response) if response.status_code == 429 or 200 <= response.status_code < 300 \
            else None
    finally:
        limiter.settle(ticket, **_cost_fields(_cost(payload)))
    cost = _cost(payload)

    status = response.status_code
    extra["status"] = status
    if status == 429:
        retry_after = _retry_after_header(response.headers.get("Retry-After"))
        if retry_after is None:
            retry_after = _throttle_retry_after(cost)
        logger.warning("shopify graphql rate limited", extra=extra)
        raise RateLimitedError("shopify graphql: HTTP 429", retry_after=retry_after)
    if status >= 500:
        logger.warning("shopify graphql server error", extra=extra)
        raise TransientError(f"shopify graphql: HTTP {status}")
    if status == 401:
        logger.warning("shopify graphql token refused", extra=extra)
        raise UnauthorizedError("shopify graphql: HTTP 401 (access token refused)")
    if not 200 <= status < 300:
        logger.warning("shopify graphql request refused", extra=extra)
        raise PermanentError(f"shopify graphql: HTTP {status}")

    if not isinstance(payload, Mapping):
        logger.warning("shopify graphql response unreadable", extra=extra)
        raise TransientError("shopify graphql: response is not a JSON object")
    errors = payload.get("errors")
    if errors:
        _raise_top_level_errors(errors, cost, extra)
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PermanentError("shopify graphql: response has no data")
    return data


def _post(shop: str, token: str, document: str, variables: Mapping[str, Any] | None,
          extra: dict[str, Any]) -> requests.Response:
    """Send the request; translate transport failures (no answer) into typed errors."""
    try:
        return _session().post(
            ADMIN_GRAPHQL_URL.format(shop=shop, version=API_VERSION),
            json={"query": document, "variables": dict(variables or {})},
            headers={ACCESS_TOKEN_HEADER: token, "Accept": "application/json"},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
    except requests.Timeout:
        logger.warning("shopify graphql request timed out", extra=extra)
        raise TransientError("shopify graphql: timeout") from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        logger.warning("shopify graphql connection failed", extra=extra)
        raise TransientError("shopify graphql: connection failed") from None
    except requests.RequestException as exc:
        raise PermanentError(f"shopify graphql: request failed ({type(exc).__name__})") from None


def _cost_fields(cost: Any) -> dict[str, Any]:
    """Return `Throttle.settle`'s keywords from an `extensions.cost` block (None: no answer)."""
    requested = actual = None
    status = None
    if isinstance(cost, Mapping):
        requested = _number(cost.get("requestedQueryCost"))
        actual = _number(cost.get("actualQueryCost"))
        throttle_status = cost.get("throttleStatus")
        if isinstance(throttle_status, Mapping):
            maximum = _number(throttle_status.get("maximumAvailable"))
            available = _number(throttle_status.get("currentlyAvailable"))
            rate = _number(throttle_status.get("restoreRate"))
            if maximum is not None and available is not None and rate is not None:
                status = BucketStatus(maximum=maximum, available=available, restore_rate=rate)
    return {"requested": requested, "actual": actual, "status": status}


def _raise_top_level_errors(errors: Any, cost: Any, extra: dict[str, Any]) -> None:
    """Raise the typed error for a response's top-level `errors`."""
    items = errors if isinstance(errors, list) else [errors]
    codes = set()
    messages = []
    for item in items:
        if isinstance(item, Mapping):
            extensions = item.get("extensions")
            if isinstance(extensions, Mapping) and isinstance(extensions.get("code"), str):
                codes.add(extensions["code"])
            messages.append(str(item.get("message", "")))
        else:
            messages.append(str(item))
    if "THROTTLED" in codes:
        # https://shopify.dev/docs/api/usage/rate-limits: `{"errors": [{"message": "Throttled",
        # "extensions": {"code": "THROTTLED"}}], "extensions": {"cost": {...}}}`.
        logger.warning("shopify graphql throttled", extra=extra)
        retry_after = _throttle_retry_after(cost)
        raise RateLimitedError("shopify graphql: THROTTLED", retry_after=retry_after)
    summary = "; ".join(m for m in messages if m)[:500] or "unknown error"
    if "INTERNAL_SERVER_ERROR" in codes:
        logger.warning("shopify graphql internal error", extra=extra)
        raise TransientError(f"shopify graphql: {summary}")
    logger.warning("shopify graphql errors", extra={**extra, "error_codes": sorted(codes)})
    raise PermanentError(f"shopify graphql: {summary}")


# ---- operations -----------------------------------------------------------------------------


def credentials(shop: str, stored: Mapping[str, Any], *, throttle: Throttle | None = None) -> dict[str, Any]:
    """Return what every call here takes as `credentials`: the stored `access_token` plus the
    shop's domain as "shop", and the `throttle` that paces calls to it (see `graphql`)."""
    out = {**stored, "shop": shop}
    if throttle is not None:
        out["throttle"] = throttle
    return out


def create_discount_code(credentials: Mapping[str, str], spec: DiscountSpec) -> DiscountCode:
    """Create `spec` as a code discount, or return the existing one when the code is taken.

    Raises:
        ValueError: `spec` cannot be expressed (unknown kind, bad value, naive datetime, bad id).
        TransientError: see `graphql`; also a taken code that the lookup cannot find (yet).
        RateLimitedError: see `graphql`.
        PermanentError: see `graphql`; also any `userErrors` other than "code taken".
    """
    name, variables = discount_code_variables(spec)
    data = graphql(credentials, DOCUMENTS[name], variables)
    payload = _payload(data, name)
    user_errors = _user_errors(payload)
    if user_errors:
        if all(_is_code_taken(error) for error in user_errors):
            # The code is deterministic per redemption: a retry after a lost answer lands here.
            logger.info(
                "shopify discount code already exists; looking it up",
                extra={"platform": PLATFORM, "shop": _shop(credentials)},
            )
            existing = find_discount_code(credentials, spec.code)
            if existing is None:
                raise TransientError(f"{name}: code reported taken but not found")
            return existing
        raise PermanentError(_user_errors_message(name, user_errors))
    node = payload.get("codeDiscountNode")
    if not isinstance(node, Mapping) or not isinstance(node.get("id"), str):
        raise PermanentError(f"{name}: no codeDiscountNode in the answer")
    return DiscountCode(code=spec.code, platform_id=node["id"], created=True)


def find_discount_code(credentials: Mapping[str, str], code: str) -> DiscountCode | None:
    """Return the code discount that has `code` (case-insensitive), or None.

    Raises:
        TransientError, RateLimitedError, PermanentError: see `graphql`.
    """
    name, variables = discount_lookup_variables(code)
    data = graphql(credentials, DOCUMENTS[name], variables)
    node = data.get(name)
    if node is None:
        return None
    if not isinstance(node, Mapping) or not isinstance(node.get("id"), str):
        raise PermanentError(f"{name}: malformed node in the answer")
    return DiscountCode(code=code, platform_id=node["id"], created=False)


def deactivate_discount_code(
    credentials: Mapping[str, str], platform_id: str, *, now: datetime
) -> None:
    """Switch a code discount off at once (`discountCodeDeactivate`); idempotent.

    `now` is part of the connector contract (WooCommerce sets it as the expiry); Shopify sets
    the discount's end to the moment it handles the call.

    Raises:
        ValueError: `platform_id` is not a DiscountCodeNode id.
        TransientError, RateLimitedError: see `graphql`.
        PermanentError: see `graphql`; also `userErrors` (e.g. the discount does not exist) or
            an answer without the node.
    """
    name, variables = discount_deactivate_variables(platform_id)
    data = graphql(credentials, DOCUMENTS[name], variables)
    payload = _payload(data, name)
    user_errors = _user_errors(payload)
    if user_errors:
        raise PermanentError(_user_errors_message(name, user_errors))
    node = payload.get("codeDiscountNode")
    if not isinstance(node, Mapping) or node.get("id") != variables["id"]:
        raise PermanentError(f"{name}: no codeDiscountNode in the answer")


def withdraw_discount_code(credentials: Mapping[str, str], platform_id: str) -> bool:
    """Delete a code discount unless it was used; True when it is gone, False when used.

    First `node(id:)` reads the discount's `asyncUsageCount`: no node means it is gone already
    (a retry after a lost answer), a count above 0 means it was used and stays. Otherwise
    `discountCodeDelete` removes it, and the answer must name the deleted id.

    Raises:
        ValueError: `platform_id` is not a DiscountCodeNode id.
        TransientError, RateLimitedError: see `graphql`.
        PermanentError: see `graphql`; also `userErrors`, a node that is not a code discount, or
            an answer without the deleted id.
    """
    name, variables = discount_usage_variables(platform_id)
    data = graphql(credentials, DOCUMENTS[name], variables)
    node = data.get("node")
    if node is None:
        return True
    discount = node.get("codeDiscount") if isinstance(node, Mapping) else None
    uses = discount.get("asyncUsageCount") if isinstance(discount, Mapping) else None
    if not isinstance(uses, int) or isinstance(uses, bool):
        raise PermanentError(f"{name}: the node is not a code discount with a usage count")
    if uses > 0:
        return False
    name, variables = discount_delete_variables(platform_id)
    data = graphql(credentials, DOCUMENTS[name], variables)
    payload = _payload(data, name)
    user_errors = _user_errors(payload)
    if user_errors:
        raise PermanentError(_user_errors_message(name, user_errors))
    if payload.get("deletedCodeDiscountId") != variables["id"]:
        raise PermanentError(f"{name}: no deletedCodeDiscountId in the answer")
    return True


def add_order_tags(credentials: Mapping[str, str], order_id: str, tags: Sequence[str]) -> None:
    """Add `tags` to the order (existing tags are kept); no request when `tags` is empty.

    Raises:
        ValueError: `order_id` is not a Shopify order id, or a tag is empty.
        TransientError, RateLimitedError: see `graphql`.
        PermanentError: see `graphql`; also `userErrors` (e.g. the order does not exist).
    """
    name, variables = order_tags_variables(order_id, tags)
    if not variables["tags"]:
        return
    data = graphql(credentials, DOCUMENTS[name], variables)
    user_errors = _user_errors(_payload(data, name))
    if user_errors:
        raise PermanentError(_user_errors_message(name, user_errors))


def mark_gift(credentials: Mapping[str, str], order_id: str, *, tag: str, note: str) -> None:
    """Tag the order `tag` for a gift with purchase (staff filter orders by tag; `note` is unused).

    Raises:
        ValueError, TransientError, RateLimitedError, PermanentError: see `add_order_tags`.
    """
    add_order_tags(credentials, order_id, [tag])


def tier_label(tier: str, *, prefix: str) -> str:
    """Return the customer tag that shows a member's `tier`: "<prefix> <tier>" ("Stammkunde Gold").

    Shopify reads a comma in a tag as a separator between two tags (`tagsAdd`), so commas become
    spaces, and runs of white space one space: the label is always exactly one tag.
    https://shopify.dev/docs/api/admin-graphql/2026-07/mutations/tagsAdd

    Raises:
        ValueError: the label would be empty or longer than 255 characters.
    """
    label = " ".join(f"{prefix} {tier}".replace(",", " ").split())
    if not label or len(label) > 255:
        raise ValueError("a customer tag has 1 to 255 characters")
    return label


def set_customer_tier(credentials: Mapping[str, str], customer_id: str, label: str | None, *,
                      previous: str | None) -> None:
    """Show the member's tier as the customer tag `label` and remove `previous`, the tag we wrote
    before (never any other tag): `tagsAdd` of `label` (None: no tier), then `tagsRemove` of
    `previous` when it differs. Both are idempotent (adding a tag the customer has, or removing
    one they lack, changes nothing), so a retry after a lost answer does no harm; the caller
    calls only when the shop should change, or to write the tag again (a re-sync).

    Raises:
        ValueError: `customer_id` is not a Shopify customer id, or a tag is empty.
        TransientError, RateLimitedError: see `graphql`.
        PermanentError: see `graphql`; also `userErrors` (e.g. the customer no longer exists).
    """
    gid = customer_gid(customer_id)
    if label is not None:
        _tags(credentials, "tagsAdd", gid, [label])
    if previous is not None and previous != label:
        _tags(credentials, "tagsRemove", gid, [previous])


def _tags(credentials: Mapping[str, str], name: str, gid: str, tags: Sequence[str]) -> None:
    _, variables = customer_tags_variables(name, gid, tags)
    data = graphql(credentials, DOCUMENTS[name], variables)
    user_errors = _user_errors(_payload(data, name))
    if user_errors:
        raise PermanentError(_user_errors_message(name, user_errors))


# Products per `nodes` call, and collections per product: Shopify budgets a query by what it
# could return (each product's connection 2 + first), so 10 x (1 + 2 + 60) = 630 points stay
# under the 1000-point limit per query. A product in more collections than that has the rest
# left out, with a warning (`fetch_products`).
PRODUCTS_PER_CALL = 10
COLLECTIONS_FIRST = 60


def fetch_products(credentials: Mapping[str, str], product_ids: Sequence[str]) -> tuple[ProductFacts, ...]:
    """Return the tags and collections of each product (one `nodes` query per PRODUCTS_PER_CALL;
    a collection is named by its id, handle and title). A product the shop does not know (its
    node is null) comes back with `found` False.

    Raises:
        ValueError: an id is not a Shopify product id.
        TransientError, RateLimitedError, PermanentError: see `graphql`; also an answer that is
            not a list of nodes.
    """
    found: list[ProductFacts] = []
    ids = list(dict.fromkeys(product_ids))
    for start in range(0, len(ids), PRODUCTS_PER_CALL):
        chunk = ids[start:start + PRODUCTS_PER_CALL]
        name, variables = product_facts_variables(chunk)
        data = graphql(credentials, DOCUMENTS[name], variables, cost_estimate=len(chunk) * 3.0)
        nodes = data.get("nodes")
        if not isinstance(nodes, list) or len(nodes) != len(chunk):
            raise PermanentError("nodes: the answer does not list one node per product id")
        for product_id, node in zip(chunk, nodes, strict=True):
            found.append(_product_facts(product_id, node, _shop(credentials)))
    return tuple(found)


def _product_facts(product_id: str, node: Any, shop: str) -> ProductFacts:
    """Return the facts of one `nodes` answer entry (None: no such product)."""
    if node is None:
        return ProductFacts(id=product_id, found=False)
    if not isinstance(node, Mapping) or not isinstance(node.get("tags"), list):
        raise PermanentError("nodes: a product node without tags")
    connection = node.get("collections")
    if not isinstance(connection, Mapping) or not isinstance(connection.get("nodes"), list):
        raise PermanentError("nodes: a product node without collections")
    info = connection.get("pageInfo")
    if isinstance(info, Mapping) and info.get("hasNextPage"):
        logger.warning("product in more collections than are read; the rest are left out",
                       extra={"platform": PLATFORM, "shop": shop, "product": product_id})
    names: list[str] = []
    for collection in connection["nodes"]:
        if not isinstance(collection, Mapping):
            raise PermanentError("nodes: a collection that is not an object")
        gid = str(collection.get("id") or "")
        names.extend(v for v in (gid.rsplit("/", 1)[-1], collection.get("handle"), collection.get("title"))
                     if isinstance(v, str) and v)
    tags = tuple(t for t in node["tags"] if isinstance(t, str) and t)
    return ProductFacts(id=product_id, found=True, collections=tuple(names), tags=tags)


# ---- variables (the schema test calls these directly) ---------------------------------------


def product_facts_variables(product_ids: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that read the products' tags and collections.

    Raises:
        ValueError: an id is not a Shopify product id.
    """
    return "nodes", {"ids": [_gid("Product", product_id) for product_id in product_ids],
                     "collections": COLLECTIONS_FIRST}


@dataclass(frozen=True)
class MetafieldValue:
    """One metafield to write on a resource: `owner` is its gid, `type` a Shopify metafield type."""

    owner: str
    namespace: str
    key: str
    type: str
    value: str


def store_credit_variables(spec: DiscountSpec) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that credit `spec.value` (in `spec.currency`) to
    the customer's store credit account, once per `spec.code` (the idempotency key).

    Raises:
        ValueError: no customer, a value that is not a positive amount, or a naive expiry.
    """
    if not spec.customer_id:
        raise ValueError("store credit needs the customer's Shopify id")
    credit: dict[str, Any] = {
        "creditAmount": {"amount": _money_text(spec.value), "currencyCode": spec.currency.upper()},
        "notify": True,
    }
    if spec.ends_at is not None:
        credit["expiresAt"] = _datetime_text(spec.ends_at)
    return "storeCreditAccountCredit", {
        "id": _gid("Customer", spec.customer_id), "creditInput": credit, "idempotencyKey": spec.code,
    }


def credit_store_credit(credentials: Mapping[str, str], spec: DiscountSpec) -> DiscountCode:
    """Credit a "store credit" reward to the customer's account (created if they have none);
    returns the transaction's id as `platform_id`. A retry with the same code credits once.

    Raises:
        ValueError: see `store_credit_variables`.
        TransientError, RateLimitedError: see `graphql`.
        PermanentError: see `graphql`; also any `userErrors` (a currency the shop does not take,
            a customer who is gone, store credit not enabled).
    """
    name, variables = store_credit_variables(spec)
    data = graphql(credentials, DOCUMENTS[name], variables)
    payload = _payload(data, name)
    user_errors = _user_errors(payload)
    if user_errors:
        raise PermanentError(_user_errors_message(name, user_errors))
    transaction = payload.get("storeCreditAccountTransaction")
    if not isinstance(transaction, Mapping) or not isinstance(transaction.get("id"), str):
        raise PermanentError(f"{name}: no transaction in the answer")
    return DiscountCode(code=spec.code, platform_id=transaction["id"], created=True)


def metafields_variables(values: Sequence[MetafieldValue]) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that set `values` (at most 25).

    Raises:
        ValueError: none or more than 25 values, or an owner that is not a Shopify gid.
    """
    if not values or len(values) > METAFIELDS_PER_CALL:
        raise ValueError(f"metafieldsSet takes 1 to {METAFIELDS_PER_CALL} metafields, got {len(values)}")
    for value in values:
        if not value.owner.startswith("gid://shopify/"):
            raise ValueError("metafield owner must be a Shopify gid")
    return "metafieldsSet", {"metafields": [
        {"ownerId": v.owner, "namespace": v.namespace, "key": v.key, "type": v.type, "value": v.value}
        for v in values
    ]}


def set_metafields(credentials: Mapping[str, str], values: Sequence[MetafieldValue]) -> None:
    """Write up to 25 metafields in one call (all or nothing: Shopify applies none on an error).

    Raises:
        ValueError: see `metafields_variables`.
        TransientError, RateLimitedError: see `graphql` (the throttle waits before the call).
        PermanentError: see `graphql`; also any `userErrors`.
    """
    name, variables = metafields_variables(values)
    data = graphql(credentials, DOCUMENTS[name], variables)
    user_errors = _user_errors(_payload(data, name))
    if user_errors:
        raise PermanentError(_user_errors_message(name, user_errors))


def customer_gid(customer_id: str) -> str:
    """Return the gid of a Shopify customer id (numeric or gid).

    Raises:
        ValueError: not a Shopify customer id.
    """
    return _gid("Customer", customer_id)


def discount_code_variables(spec: DiscountSpec) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that create `spec`.

    Raises:
        ValueError: unknown kind, non-positive value, percentage over 100, free product without
            products, naive datetime, malformed id, empty code or title, usage limit below 1.
    """
    if spec.kind not in COMBINES_WITH:
        raise ValueError(f"unknown discount kind {spec.kind!r}")
    if not spec.code or not spec.code.strip():
        raise ValueError("discount code is empty")
    if not spec.title or not spec.title.strip():
        raise ValueError("discount title is empty")
    discount: dict[str, Any] = {
        "title": spec.title,
        "code": spec.code,
        "startsAt": _datetime_text(spec.starts_at),
    }
    if spec.ends_at is not None:
        discount["endsAt"] = _datetime_text(spec.ends_at)
    if spec.customer_id:
        discount["context"] = {"customers": {"add": [_gid("Customer", spec.customer_id)]}}
    else:
        discount["context"] = {"all": "ALL"}
    discount["combinesWith"] = dict(COMBINES_WITH[spec.kind])
    if spec.minimum_amount is not None:
        discount["minimumRequirement"] = {
            "subtotal": {"greaterThanOrEqualToSubtotal": _money_text(spec.minimum_amount)}
        }
    if spec.usage_limit is not None:  # None = unlimited: leave the field out
        if spec.usage_limit < 1:
            raise ValueError("usage limit must be at least 1")
        discount["usageLimit"] = spec.usage_limit
    # False for a tier perk: the member uses it on every order while they hold the tier.
    discount["appliesOncePerCustomer"] = bool(spec.once_per_customer)

    if spec.kind == "free_shipping":
        discount["destination"] = {"all": True}
        return "discountCodeFreeShippingCreate", {"freeShippingCodeDiscount": discount}
    if spec.kind == "buy_x_get_y":
        return "discountCodeBxgyCreate", {"bxgyCodeDiscount": _bxgy_discount(discount, spec)}
    discount["customerGets"] = _CUSTOMER_GETS[spec.kind](spec)
    return "discountCodeBasicCreate", {"basicCodeDiscount": discount}


def discount_deactivate_variables(platform_id: str) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that deactivate the code discount.

    Raises:
        ValueError: `platform_id` is not a DiscountCodeNode id (gid or number).
    """
    return "discountCodeDeactivate", {"id": _gid("DiscountCodeNode", platform_id)}


def discount_usage_variables(platform_id: str) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that read a code discount's uses.

    Raises:
        ValueError: `platform_id` is not a DiscountCodeNode id (gid or number).
    """
    return "discountCodeUsage", {"id": _gid("DiscountCodeNode", platform_id)}


def discount_delete_variables(platform_id: str) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that delete the code discount.

    Raises:
        ValueError: `platform_id` is not a DiscountCodeNode id (gid or number).
    """
    return "discountCodeDelete", {"id": _gid("DiscountCodeNode", platform_id)}


def discount_lookup_variables(code: str) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that look `code` up."""
    return "codeDiscountNodeByCode", {"code": code}


def order_tags_variables(order_id: str, tags: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that add `tags` to the order.

    Raises:
        ValueError: `order_id` is not a Shopify order id, `tags` is a bare string, or a tag is
            empty.
    """
    if isinstance(tags, str):
        raise ValueError("tags must be a sequence of strings, not a string")
    cleaned = [tag.strip() for tag in tags]
    if any(not tag for tag in cleaned):
        raise ValueError("empty tag")
    return "tagsAdd", {"id": _gid("Order", order_id), "tags": cleaned}


def customer_tags_variables(name: str, customer_id: str, tags: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key ("tagsAdd" or "tagsRemove") and the variables that add or remove
    `tags` on the customer.

    Raises:
        ValueError: another operation, not a Shopify customer id, a bare string, or an empty tag.
    """
    if name not in ("tagsAdd", "tagsRemove"):
        raise ValueError(f"not a tags operation: {name}")
    if isinstance(tags, str):
        raise ValueError("tags must be a sequence of strings, not a string")
    cleaned = [tag.strip() for tag in tags]
    if not cleaned or any(not tag for tag in cleaned):
        raise ValueError("empty tag")
    return name, {"id": customer_gid(customer_id), "tags": cleaned}


def _percentage_gets(spec: DiscountSpec) -> dict[str, Any]:
    if not _ZERO < spec.value <= _HUNDRED:
        raise ValueError("percentage must be above 0 and at most 100")
    # DiscountCustomerGetsValueInput.percentage is a Float from 0.00 to 1.00. The fraction is
    # computed in Decimal and turned into a float through its text, so 15 % is sent as 0.15.
    fraction = spec.value / _HUNDRED
    return {"value": {"percentage": float(str(fraction))}, "items": {"all": True}}


def _fixed_amount_gets(spec: DiscountSpec) -> dict[str, Any]:
    if spec.value <= _ZERO:
        raise ValueError("amount must be above 0")
    # The amount is in the shop's currency; one amount off the order, not off each item.
    return {
        "value": {
            "discountAmount": {"amount": _money_text(spec.value), "appliesOnEachItem": False}
        },
        "items": {"all": True},
    }


def _free_product_gets(spec: DiscountSpec) -> dict[str, Any]:
    products: dict[str, list[str]] = {}
    if spec.product_ids:
        products["productsToAdd"] = [_gid("Product", pid) for pid in spec.product_ids]
    if spec.variant_ids:
        products["productVariantsToAdd"] = [_gid("ProductVariant", vid) for vid in spec.variant_ids]
    if not products:
        raise ValueError("free product discount names no product or variant")
    return {"value": {"percentage": 1.0}, "items": {"products": products}}


def _bxgy_discount(discount: dict[str, Any], spec: DiscountSpec) -> dict[str, Any]:
    """Turn the common code fields into a DiscountCodeBxgyInput: the customer buys
    `buys_quantity` of the products/variants `buys_*` and gets `gets_quantity` of
    `product_ids`/`variant_ids` `value` percent cheaper, once per order (`usesPerOrderLimit` 1).

    BXGY takes no `minimumRequirement` (its condition is what is bought), and its value is only
    `discountOnQuantity` with a percentage effect from 0.00 to 1.00 (the schema's note: "BXGY
    doesn't support percentage/discountAmount" directly). Quantities are UnsignedInt64, sent as
    text as Shopify's examples do.

    Raises:
        ValueError: a minimum amount, nothing to buy or to get, a quantity below 1, or a
            percentage not above 0 and at most 100.
    """
    if spec.minimum_amount is not None:
        raise ValueError("a buy-x-get-y discount has no minimum amount")
    buys = _bxgy_items(spec.buys_product_ids, spec.buys_variant_ids, "to buy")
    gets = _bxgy_items(spec.product_ids, spec.variant_ids, "to get")
    buys_quantity, gets_quantity = spec.buys_quantity, spec.gets_quantity or 1
    if not isinstance(buys_quantity, int) or buys_quantity < 1 or gets_quantity < 1:
        raise ValueError("buy-x-get-y quantities must be at least 1")
    if not _ZERO < spec.value <= _HUNDRED:
        raise ValueError("percentage must be above 0 and at most 100")
    fraction = float(str(spec.value / _HUNDRED))
    return {
        **discount,
        "customerBuys": {"value": {"quantity": str(buys_quantity)}, "items": buys},
        "customerGets": {
            "value": {"discountOnQuantity": {"quantity": str(gets_quantity), "effect": {"percentage": fraction}}},
            "items": gets,
        },
        "usesPerOrderLimit": 1,
    }


def _bxgy_items(product_ids: Sequence[str], variant_ids: Sequence[str], what: str) -> dict[str, Any]:
    products: dict[str, list[str]] = {}
    if product_ids:
        products["productsToAdd"] = [_gid("Product", pid) for pid in product_ids]
    if variant_ids:
        products["productVariantsToAdd"] = [_gid("ProductVariant", vid) for vid in variant_ids]
    if not products:
        raise ValueError(f"buy-x-get-y discount names no product or variant {what}")
    return {"products": products}


_CUSTOMER_GETS: dict[str, Callable[[DiscountSpec], dict[str, Any]]] = {
    "percentage": _percentage_gets,
    "fixed_amount": _fixed_amount_gets,
    "free_product": _free_product_gets,
}


# ---- helpers --------------------------------------------------------------------------------


def _credentials(credentials: Mapping[str, str]) -> tuple[str, str]:
    shop = _shop(credentials)
    token = credentials.get("access_token")
    if not isinstance(token, str) or not token:
        raise PermanentError("shopify credentials: access_token missing")
    return shop, token


def _shop(credentials: Mapping[str, str]) -> str:
    shop = credentials.get("shop")
    normalized = shop.strip().lower() if isinstance(shop, str) else ""
    # The token is sent to this host, so only a shop's own myshopify.com domain is accepted.
    if not _SHOP_DOMAIN.fullmatch(normalized):
        raise PermanentError("shopify credentials: shop is not a *.myshopify.com domain")
    return normalized


def _operation_name(document: str) -> str:
    match = _OPERATION.match(document)
    return match.group(1) if match else "anonymous"


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _cost(payload: Any) -> Any:
    if not isinstance(payload, Mapping):
        return None
    extensions = payload.get("extensions")
    return extensions.get("cost") if isinstance(extensions, Mapping) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _retry_after_header(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date: not worth parsing, the default is close enough
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _throttle_retry_after(cost: Any) -> float:
    """Seconds until the requested cost is back: (requested - available) / restoreRate."""
    if isinstance(cost, Mapping) and isinstance(cost.get("throttleStatus"), Mapping):
        status = cost["throttleStatus"]
        requested = _number(cost.get("requestedQueryCost"))
        available = _number(status.get("currentlyAvailable"))
        rate = _number(status.get("restoreRate"))
        if requested is not None and available is not None and rate:
            needed = requested - available
            if needed > 0:
                return needed / rate
    return DEFAULT_RETRY_AFTER


def _payload(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    payload = data.get(name)
    if not isinstance(payload, Mapping):
        raise PermanentError(f"{name}: no payload in the answer")
    return payload


def _user_errors(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    errors = payload.get("userErrors") or []
    return [e if isinstance(e, Mapping) else {"message": str(e)} for e in errors]


def _user_errors_message(name: str, errors: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for error in errors:
        field = error.get("field")
        path = ".".join(str(p) for p in field) if isinstance(field, list) and field else "-"
        code = f" [{error['code']}]" if error.get("code") else ""
        parts.append(f"{path}: {error.get('message', '')}{code}")
    return f"{name}: " + "; ".join(parts)


def _is_code_taken(error: Mapping[str, Any]) -> bool:
    """True for Shopify's duplicate-code answer.

    `{"field": ["basicCodeDiscount", "code"], "code": "TAKEN",
    "message": "Code must be unique. Please try a different code."}` (DiscountErrorCode.TAKEN,
    "The input value is already taken").
    """
    field = error.get("field")
    on_code = isinstance(field, list) and bool(field) and field[-1] == "code"
    if not on_code:
        return False
    message = str(error.get("message", "")).lower()
    return error.get("code") == "TAKEN" or "must be unique" in message


def _gid(resource: str, value: str) -> str:
    """Return `gid://shopify/<resource>/<id>` for a numeric id or that gid itself."""
    prefix = f"gid://shopify/{resource}/"
    text = str(value).strip()
    if text.startswith(prefix):
        text = text[len(prefix) :]
    if not _NUMERIC_ID.fullmatch(text):
        raise ValueError(f"not a Shopify {resource} id")
    return prefix + text


def _datetime_text(value: datetime) -> str:
    """Return an aware datetime as ISO-8601 UTC with a Z ("2026-07-01T09:30:00Z")."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("discount dates must be timezone-aware")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money_text(value: Decimal) -> str:
    """Return a Decimal as plain text for Shopify's Decimal scalar ("10.00", never "1E+1")."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError("money must be a finite Decimal")
    if value <= _ZERO:
        raise ValueError("money must be above 0")
    return format(value, "f")


# ---- install: the authorization code grant with expiring offline tokens ----------------------

# An install or callback query older than this is refused (ShopifyAPI's replay window), and one
# from the future by more than the clock skew too.
INSTALL_QUERY_MAX_AGE = 24 * 60 * 60
INSTALL_QUERY_MAX_SKEW = 5 * 60


@dataclass(frozen=True)
class TokenGrant:
    """What Shopify's token endpoint granted: the access token, its scopes and expiries."""

    access_token: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    refresh_token: str | None
    refresh_expires_at: datetime | None


def is_shop_domain(value: str) -> bool:
    """Return True for a shop's own `<name>.myshopify.com` domain (lower-case, no scheme)."""
    return bool(_SHOP_DOMAIN.fullmatch(value))


def valid_install_query(params: Mapping[str, Any], secret: str, *, now: float | None = None) -> bool:
    """Return True when an install or callback query carries a valid `hmac` and a fresh `timestamp`.

    The HMAC is ShopifyAPI's `Session.validate_hmac` (hex HMAC-SHA256 over the other parameters,
    sorted, with Shopify's escaping; checked against Shopify's published vectors in the tests),
    with the app's secret given per call instead of the library's class-wide `setup`.
    """
    if not secret or not isinstance(params.get("hmac"), str):
        return False
    timestamp = params.get("timestamp")
    if not isinstance(timestamp, str) or not timestamp.isdigit():
        return False
    now = time.time() if now is None else now
    if not now - INSTALL_QUERY_MAX_AGE <= int(timestamp) <= now + INSTALL_QUERY_MAX_SKEW:
        return False
    session_class = type("AppSession", (shopify.Session,), {"secret": secret})
    return bool(session_class.validate_hmac(dict(params)))


def authorize_url(shop: str, api_key: str, scopes: Sequence[str], redirect_uri: str, state: str) -> str:
    """Return the URL that asks the merchant to grant `scopes` (an offline, i.e. shop-wide, grant)."""
    if not is_shop_domain(shop):
        raise ValueError("shop is not a *.myshopify.com domain")
    query = urllib.parse.urlencode(
        {"client_id": api_key, "scope": ",".join(scopes), "redirect_uri": redirect_uri, "state": state}
    )
    return OAUTH_AUTHORIZE_URL.format(shop=shop) + "?" + query


def exchange_code(shop: str, api_key: str, api_secret: str, code: str, *, now: datetime) -> TokenGrant:
    """Trade the callback's `code` for an expiring offline token (`expiring=1`) and its refresh token.

    Raises:
        TransientError: timeout, connection error, HTTP 5xx or an unreadable answer.
        PermanentError: the code was refused (used, expired, other app) or the answer lacks a token.
    """
    return _token_request(
        shop, {"client_id": api_key, "client_secret": api_secret, "code": code, "expiring": "1"},
        "exchange code", now,
    )


def refresh_access_token(shop: str, api_key: str, api_secret: str, refresh_token: str, *,
                         now: datetime) -> TokenGrant:
    """Trade a refresh token for a new access token and a new refresh token (the old pair ends).

    Raises:
        AuthorizationExpiredError: the refresh token is expired or revoked (HTTP 400/401/403).
        TransientError: timeout, connection error, HTTP 5xx or an unreadable answer.
        PermanentError: any other refusal.
    """
    return _token_request(
        shop, {"client_id": api_key, "client_secret": api_secret, "grant_type": "refresh_token",
               "refresh_token": refresh_token},
        "refresh token", now,
    )


def _token_request(shop: str, form: dict[str, str], operation: str, now: datetime) -> TokenGrant:
    if not is_shop_domain(shop):
        raise PermanentError("shopify oauth: shop is not a *.myshopify.com domain")
    extra = {"platform": PLATFORM, "shop": shop, "operation": operation}
    try:
        response = _session().post(
            OAUTH_ACCESS_TOKEN_URL.format(shop=shop), data=form, headers={"Accept": "application/json"},
            timeout=TIMEOUT, allow_redirects=False,
        )
    except requests.Timeout:
        logger.warning("shopify oauth request timed out", extra=extra)
        raise TransientError(f"shopify oauth {operation}: timeout") from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        logger.warning("shopify oauth connection failed", extra=extra)
        raise TransientError(f"shopify oauth {operation}: connection failed") from None
    except requests.RequestException as exc:
        raise PermanentError(f"shopify oauth {operation}: request failed ({type(exc).__name__})") from None
    status = response.status_code
    if status >= 500:
        logger.warning("shopify oauth server error", extra={**extra, "status": status})
        raise TransientError(f"shopify oauth {operation}: HTTP {status}")
    if status in (400, 401, 403) and "refresh_token" in form:
        logger.warning("shopify refresh token refused", extra={**extra, "status": status})
        raise AuthorizationExpiredError(f"shopify oauth {operation}: HTTP {status} (refresh token expired or revoked)")
    if not 200 <= status < 300:
        logger.warning("shopify oauth request refused", extra={**extra, "status": status})
        raise PermanentError(f"shopify oauth {operation}: HTTP {status}")
    payload = _json_or_none(response)
    if not isinstance(payload, Mapping) or not isinstance(payload.get("access_token"), str) \
            or not payload["access_token"]:
        raise TransientError(f"shopify oauth {operation}: no access_token in the answer")
    scope = payload.get("scope")
    scopes = tuple(sorted(s for s in (scope.split(",") if isinstance(scope, str) else ()) if s))
    refresh = payload.get("refresh_token")
    return TokenGrant(
        access_token=payload["access_token"],
        scopes=scopes,
        expires_at=_expiry(now, payload.get("expires_in")),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        refresh_expires_at=_expiry(now, payload.get("refresh_token_expires_in")),
    )


def _expiry(now: datetime, seconds: Any) -> datetime | None:
    number = _number(seconds)
    return None if number is None or number <= 0 else now + timedelta(seconds=number)


# ---- webhook subscriptions --------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookSubscription:
    """One of the shop's webhook subscriptions as the Admin API lists it."""

    id: str
    topic: str  # the GraphQL enum value, e.g. "ORDERS_PAID"
    uri: str


def list_webhook_subscriptions(credentials: Mapping[str, str]) -> list[WebhookSubscription]:
    """Return every webhook subscription our app has in the shop (all pages).

    Raises:
        TransientError, RateLimitedError, PermanentError: see `graphql`.
    """
    found: list[WebhookSubscription] = []
    after: str | None = None
    while True:
        name, variables = webhook_list_variables(after)
        data = graphql(credentials, DOCUMENTS[name], variables)
        connection = data.get("webhookSubscriptions")
        if not isinstance(connection, Mapping) or not isinstance(connection.get("nodes"), list):
            raise PermanentError("webhookSubscriptions: malformed answer")
        for node in connection["nodes"]:
            if not isinstance(node, Mapping) or not all(isinstance(node.get(k), str) for k in ("id", "topic", "uri")):
                raise PermanentError("webhookSubscriptions: malformed node")
            found.append(WebhookSubscription(id=node["id"], topic=node["topic"], uri=node["uri"]))
        page = connection.get("pageInfo")
        if not isinstance(page, Mapping) or not page.get("hasNextPage"):
            return found
        after = page.get("endCursor")
        if not isinstance(after, str):
            raise PermanentError("webhookSubscriptions: next page without a cursor")


def webhook_list_variables(after: str | None) -> tuple[str, dict[str, Any]]:
    """Return the query name and variables of one page (100) of our webhook subscriptions."""
    return "webhookSubscriptions", {"first": 100, "after": after}


def webhook_delete_variables(subscription_id: str) -> tuple[str, dict[str, Any]]:
    """Return the mutation name and variables that delete one webhook subscription."""
    return "webhookSubscriptionDelete", {"id": subscription_id}


def webhook_subscription_variables(topic: str, uri: str) -> tuple[str, dict[str, Any]]:
    """Return the mutation name and variables that subscribe `uri` to `topic` (a GraphQL enum value)."""
    return "webhookSubscriptionCreate", {"topic": topic, "webhookSubscription": {"uri": uri, "format": "JSON"}}


def create_webhook_subscription(credentials: Mapping[str, str], topic: str, uri: str) -> WebhookSubscription:
    """Subscribe `uri` to `topic` at the pinned API version.

    Raises:
        TransientError, RateLimitedError, PermanentError: see `graphql`; also `userErrors`.
    """
    name, variables = webhook_subscription_variables(topic, uri)
    payload = _payload(graphql(credentials, DOCUMENTS[name], variables), name)
    errors = _user_errors(payload)
    if errors:
        raise PermanentError(_user_errors_message(name, errors))
    node = payload.get("webhookSubscription")
    if not isinstance(node, Mapping) or not isinstance(node.get("id"), str):
        raise PermanentError(f"{name}: no webhookSubscription in the answer")
    return WebhookSubscription(id=node["id"], topic=str(node.get("topic", topic)), uri=str(node.get("uri", uri)))


def delete_webhook_subscription(credentials: Mapping[str, str], subscription_id: str) -> None:
    """Delete one of our webhook subscriptions.

    Raises:
        TransientError, RateLimitedError, PermanentError: see `graphql`; also `userErrors`.
    """
    name, variables = webhook_delete_variables(subscription_id)
    payload = _payload(graphql(credentials, DOCUMENTS[name], variables), name)
    errors = _user_errors(payload)
    if errors:
        raise PermanentError(_user_errors_message(name, errors))


def shop_check_variables() -> tuple[str, dict[str, Any]]:
    """Return the query name and (no) variables of the credentials check."""
    return "shop", {}


def check_credentials(credentials: Mapping[str, str]) -> None:
    """Make the cheapest authenticated call; return when the token works.

    Raises:
        TransientError, RateLimitedError: see `graphql` (they say nothing about the token).
        PermanentError: the token is refused (HTTP 401/403) or the answer has no shop.
    """
    name, variables = shop_check_variables()
    data = graphql(credentials, DOCUMENTS[name], variables, cost_estimate=1)
    if not isinstance(data.get("shop"), Mapping):
        raise PermanentError("shop: no shop in the answer")


# ---- orders: reconciliation and backfill ------------------------------------------------------


@dataclass(frozen=True)
class OrdersPage:
    """One page of `orders`: the order nodes as Shopify sent them (each complete: every line and
    refund), and where the next page starts (None after the last)."""

    nodes: tuple[dict[str, Any], ...]
    next_cursor: str | None


def orders_query(*, updated_after: datetime | None = None, created_from: datetime | None = None,
                 created_before: datetime | None = None) -> str:
    """Return Shopify search syntax for orders updated after / created in a window (UTC, seconds).

    `updated_at:>` is exclusive; the callers step back an overlap and dedupe.
    https://shopify.dev/docs/api/usage/search-syntax
    """
    parts = []
    if updated_after is not None:
        parts.append(f"updated_at:>'{_datetime_text(updated_after)}'")
    if created_from is not None:
        parts.append(f"created_at:>='{_datetime_text(created_from)}'")
    if created_before is not None:
        parts.append(f"created_at:<'{_datetime_text(created_before)}'")
    return " AND ".join(parts)


def orders_page_variables(query: str, after: str | None, *, sort_key: str = "UPDATED_AT",
                          first: int = ORDERS_PAGE_SIZE) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables of one page of orders, oldest first by `sort_key`
    (`UPDATED_AT` for the reconciliation, `CREATED_AT` for a backfill)."""
    return "orders", {"first": first, "after": after, "query": query, "sortKey": sort_key}


def order_lines_variables(order_gid: str, after: str | None) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables of the next 50 lines of an order."""
    return "order", {"id": _gid("Order", order_gid), "after": after}


def order_refunds_variables(order_gid: str) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables of an order's refunds with up to 50 lines each."""
    return "orderRefunds", {"id": _gid("Order", order_gid)}


# What a page is budgeted at before its first answer tells the throttle the real requested cost.
ORDERS_PAGE_COST_ESTIMATE = 1000.0


def list_orders(credentials: Mapping[str, str], query: str, after: str | None, *,
                sort_key: str = "UPDATED_AT", first: int = ORDERS_PAGE_SIZE) -> OrdersPage:
    """Read one page of orders matching `query` after the page cursor `after`, every order complete.

    Raises:
        TransientError, RateLimitedError, PermanentError: see `graphql`; PermanentError also for a
            malformed answer and for an order with more refunds than `orderRefunds` reads (15).
    """
    name, variables = orders_page_variables(query, after, sort_key=sort_key, first=first)
    data = graphql(credentials, DOCUMENTS[name], variables, cost_estimate=ORDERS_PAGE_COST_ESTIMATE)
    connection = data.get("orders")
    if not isinstance(connection, Mapping) or not isinstance(connection.get("nodes"), list):
        raise PermanentError("orders: malformed answer")
    nodes = []
    for node in connection["nodes"]:
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            raise PermanentError("orders: malformed node")
        nodes.append(_complete_order(credentials, node))
    page = connection.get("pageInfo")
    next_cursor = None
    if isinstance(page, Mapping) and page.get("hasNextPage"):
        next_cursor = page.get("endCursor")
        if not isinstance(next_cursor, str):
            raise PermanentError("orders: next page without a cursor")
    return OrdersPage(nodes=tuple(nodes), next_cursor=next_cursor)


def _complete_order(credentials: Mapping[str, str], node: dict[str, Any]) -> dict[str, Any]:
    """Fetch what the page left out of an order (lines past the first page, more refunds or
    refund lines) and put it in the node, so the stored node is the whole order."""
    lines = node.get("lineItems")
    if isinstance(lines, Mapping) and isinstance(lines.get("pageInfo"), Mapping) and lines["pageInfo"].get("hasNextPage"):
        all_lines = list(lines.get("nodes") or [])
        after = lines["pageInfo"].get("endCursor")
        while True:
            name, variables = order_lines_variables(node["id"], after)
            more = graphql(credentials, DOCUMENTS[name], variables)
            connection = (more.get("order") or {}).get("lineItems") if isinstance(more.get("order"), Mapping) else None
            if not isinstance(connection, Mapping) or not isinstance(connection.get("nodes"), list):
                raise PermanentError("order: malformed line items")
            all_lines.extend(connection["nodes"])
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                break
            after = info.get("endCursor")
        node = {**node, "lineItems": {"nodes": all_lines, "pageInfo": {"hasNextPage": False, "endCursor": None}}}
    refunds = node.get("refunds")
    if isinstance(refunds, list) and (len(refunds) >= ORDER_REFUNDS_FIRST or any(
            isinstance(r, Mapping) and ((r.get("refundLineItems") or {}).get("pageInfo") or {}).get("hasNextPage")
            for r in refunds)):
        name, variables = order_refunds_variables(node["id"])
        more = graphql(credentials, DOCUMENTS[name], variables)
        order = more.get("order")
        again = order.get("refunds") if isinstance(order, Mapping) else None
        if not isinstance(again, list):
            raise PermanentError("orderRefunds: malformed answer")
        if len(again) >= 15 or any(((r.get("refundLineItems") or {}).get("pageInfo") or {}).get("hasNextPage")
                                   for r in again if isinstance(r, Mapping)):
            raise PermanentError(f"orderRefunds: order {node['id']} has more refunds or refund lines than we read")
        node = {**node, "refunds": again}
    return node


def orders_count_variables(query: str) -> tuple[str, dict[str, Any]]:
    """Return the DOCUMENTS key and the variables that count the orders matching `query`."""
    return "ordersCount", {"query": query}


def count_orders(credentials: Mapping[str, str], query: str) -> int | None:
    """Return how many orders match `query` (None when Shopify gives no exact count).

    Raises:
        TransientError, RateLimitedError, PermanentError: see `graphql`.
    """
    name, variables = orders_count_variables(query)
    data = graphql(credentials, DOCUMENTS[name], variables, cost_estimate=1)
    count = data.get(name)
    if not isinstance(count, Mapping) or isinstance(count.get("count"), bool) or not isinstance(count.get("count"), int):
        raise PermanentError(f"{name}: malformed answer")
    return count["count"] if count.get("precision") == "EXACT" else None
