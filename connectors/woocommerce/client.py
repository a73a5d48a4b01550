"""Outbound WooCommerce REST v3 calls: create, find, deactivate or delete a coupon, add an order note (rule 12).

The only module that imports the `woocommerce` package (wc-api-python). Its `API` answers raw
`requests` responses; every one is translated here into data or into one of
`TransientError`, `RateLimitedError` and `PermanentError`: error bodies are never returned.

Authentication is the package's own: HTTP Basic with consumer key and secret over https, and
one-legged OAuth 1.0a (HMAC-SHA256, query parameters) over plain http, where a real store
answers 401 to Basic auth.
https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication

`credentials` is a mapping with "url" (the store base URL), "consumer_key" and
"consumer_secret". Keys, secrets, request URLs (which carry the key over http), bodies, codes,
e-mails and notes are never logged nor put into exception messages or their chained causes.
"""

from __future__ import annotations

import logging
import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from woocommerce import API

from connectors.errors import PermanentError, RateLimitedError, TransientError
from connectors.throttle import Throttle
from connectors.types import DiscountCode, DiscountSpec, ProductFacts
from connectors.woocommerce.consts import (
    API_VERSION,
    DEFAULT_RETRY_AFTER,
    DISCOUNT_TYPE_FIXED_CART,
    DISCOUNT_TYPE_PERCENT,
    META_BUYS_IDS,
    META_BUYS_LABEL,
    META_BUYS_QUANTITY,
    ERROR_COUPON_CODE_EXISTS,
    ERROR_COUPON_INVALID_ID,
    ERROR_CUSTOMER_INVALID_ID,
    ERROR_SETTING_GROUP_INVALID,
    PLATFORM,
    PLUGIN_SETTINGS_GROUP,
    REQUEST_TIMEOUT,
    TIER_META_KEY,
)
from connectors.woocommerce.webhooks import normalize_shop

logger = logging.getLogger(__name__)

_AUTH_HINT = (
    "check the consumer key/secret (Read/Write permission) and that the store uses https"
)
_REST_HINT = "is the REST API at <store>/wp-json/? (WordPress permalinks must not be 'Plain')"
_DIGITS = re.compile(r"[0-9]+")
_MAX_MESSAGE = 200


# ---- public calls ------------------------------------------------------------------------


def credentials(shop: str, stored: Mapping[str, Any], *, throttle: Throttle | None = None) -> dict[str, Any]:
    """Return what every call here takes as `credentials`: the stored `consumer_key` and
    `consumer_secret` plus the store base URL as "url".

    `throttle` is not used: WooCommerce's REST API (v3) meters nothing (only its Store API, which
    we do not call, has an opt-in limiter), so there is no bucket to share; a 429 from a host's
    own limiter is raised as `RateLimitedError` with its Retry-After, and the job retries.
    """
    return {**stored, "url": shop}


def create_discount_code(credentials: Mapping[str, str], spec: DiscountSpec) -> DiscountCode:
    """Create `spec` as a WooCommerce coupon, or return the coupon that already has its code.

    `POST coupons`. A 400 `woocommerce_rest_coupon_code_already_exists` (a retry after the
    first attempt did create it) is resolved with `find_discount_code` and comes back with
    `created=False`. WooCommerce lower-cases codes, so `DiscountCode.code` is the code as the
    shop stores it, which may differ in case from `spec.code`.

    Raises:
        ValueError: `spec` cannot be expressed as a coupon (checked before any request).
        TransientError: timeout, connection failure, 5xx, or an unreadable 2xx body.
        RateLimitedError: 429; `retry_after` in seconds.
        PermanentError: bad credentials or URL, 401/403, other 4xx, a redirect, the shop
            says the code exists but no coupon with it can be found, or the coupon the shop
            answers (created or found) does not hold what was asked: its expiry
            (`date_expires_gmt`), usage limits, e-mail restriction, amount, type, products,
            minimum or free shipping. The coupon then exists in the shop but is not reported
            as ours.
    """
    body = _coupon_body(spec)
    shop, api = _client(credentials)
    operation = "create coupon"
    response = _send(api, shop, operation, "POST", "coupons", data=body)
    if response.status_code == 400 and _error_fields(response)[0] == ERROR_COUPON_CODE_EXISTS:
        logger.info(
            "woocommerce coupon code exists; looking it up", extra=_extra(shop, operation, 400)
        )
        lookup = "find coupon"
        found = _find_coupon(api, shop, lookup, spec.code)
        if found is None:
            raise PermanentError(
                "WooCommerce create coupon: the shop says the code exists but the coupon "
                "lookup finds none"
            )
        result = _discount_code(found, lookup, created=False)
        # A coupon found on retry is ours only if it does what we asked (a first attempt under
        # the old body, or someone else's coupon with this code, would not).
        _check_coupon(found, body, shop, lookup)
        return result
    payload = _json(response, shop, operation)
    result = _discount_code(payload, operation, created=True)
    _check_coupon(payload, body, shop, operation)
    return result


def find_discount_code(credentials: Mapping[str, str], code: str) -> DiscountCode | None:
    """Return the shop's coupon with `code` (compared case-insensitively), or None.

    `GET coupons?code=<code lower-cased>`; the result has `created=False`.

    Raises:
        ValueError: `code` is empty (an empty filter would list every coupon).
        TransientError: timeout, connection failure, 5xx, or an unreadable 2xx body.
        RateLimitedError: 429; `retry_after` in seconds.
        PermanentError: bad credentials or URL, 401/403, other 4xx, or a redirect.
    """
    if not isinstance(code, str) or not code.strip():
        raise ValueError("code is empty")
    shop, api = _client(credentials)
    operation = "find coupon"
    found = _find_coupon(api, shop, operation, code)
    return None if found is None else _discount_code(found, operation, created=False)


def deactivate_discount_code(credentials: Mapping[str, str], platform_id: str, *, now: datetime) -> None:
    """Switch a coupon off by setting its expiry to `now` (a perk of a tier the member left).

    `PUT coupons/<id>` with `date_expires` in UTC with "Z" (the only form the store honours,
    see `_coupon_body`), then the answer's `date_expires_gmt` is checked. Idempotent: a second
    call sets the same expiry. A coupon that no longer exists (404) is switched off already.

    Raises:
        ValueError: `platform_id` is not a WooCommerce coupon id, or `now` is naive.
        TransientError: timeout, connection failure, 5xx, or an unreadable 2xx body.
        RateLimitedError: 429; `retry_after` in seconds.
        PermanentError: bad credentials or URL, 401/403, other 4xx, a redirect, or the store
            answers another expiry.
    """
    coupon = str(platform_id) if not isinstance(platform_id, bool) else ""
    if not _DIGITS.fullmatch(coupon) or int(coupon) == 0:
        raise ValueError("platform_id is not a WooCommerce coupon id")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    shop, api = _client(credentials)
    operation = "deactivate coupon"
    body = {"date_expires": _utc_z(now)}
    response = _send(api, shop, operation, "PUT", f"coupons/{int(coupon)}", data=body)
    if response.status_code == 404 and _error_fields(response)[0] == ERROR_COUPON_INVALID_ID:
        logger.info("woocommerce coupon to deactivate is gone", extra=_extra(shop, operation, 404))
        return
    payload = _json(response, shop, operation)
    if not isinstance(payload, Mapping):
        raise TransientError(f"WooCommerce {operation}: unexpected response (not a coupon)")
    _check_fields(payload, {"date_expires_gmt": _utc_seconds(now)}, shop, operation)


def withdraw_discount_code(credentials: Mapping[str, str], platform_id: str) -> bool:
    """Delete a coupon unless it was used; True when it is gone, False when the store counts a use.

    `GET coupons/<id>` first: a 404 `woocommerce_rest_shop_coupon_invalid_id` means it is gone
    already (a retry after a lost answer), a `usage_count` above 0 that it was used, and it
    stays. Otherwise `DELETE coupons/<id>?force=true`: deleted for good (live capture 045; a
    later GET answers 404, capture 046). Without `force` the store only moves the coupon to the
    trash, from where it can be restored and used (captures 047 and 049), so `force` is always
    sent. The DELETE answers the coupon as it was: if it counts a use by then (used between the
    two calls), False. A 404 to the DELETE means another attempt deleted it: True.

    Raises:
        ValueError: `platform_id` is not a WooCommerce coupon id.
        TransientError: timeout, connection failure, 5xx, or an unreadable 2xx body.
        RateLimitedError: 429; `retry_after` in seconds.
        PermanentError: bad credentials or URL, 401/403, other 4xx, or a redirect.
    """
    coupon = str(platform_id) if not isinstance(platform_id, bool) else ""
    if not _DIGITS.fullmatch(coupon) or int(coupon) == 0:
        raise ValueError("platform_id is not a WooCommerce coupon id")
    shop, api = _client(credentials)
    for method, operation, params in (("GET", "read coupon", {}), ("DELETE", "delete coupon", {"force": "true"})):
        response = _send(api, shop, operation, method, f"coupons/{int(coupon)}", params=params)
        if response.status_code == 404 and _error_fields(response)[0] == ERROR_COUPON_INVALID_ID:
            logger.info("woocommerce coupon to withdraw is gone", extra=_extra(shop, operation, 404))
            return True
        payload = _json(response, shop, operation)
        uses = payload.get("usage_count") if isinstance(payload, Mapping) else None
        if not isinstance(uses, int) or isinstance(uses, bool):
            raise TransientError(f"WooCommerce {operation}: unexpected response (no coupon usage_count)")
        if uses > 0:
            return False
    return True


def add_order_note(
    credentials: Mapping[str, str], order_id: str | int, note: str, *, customer_note: bool = False
) -> None:
    """Add a note to an order; `customer_note=True` makes WooCommerce e-mail it to the customer.

    `POST orders/<order_id>/notes`. Any 2xx is success and the body is not read: a note is not
    idempotent, so a 201 with a garbled body must not turn into a retry and a second note.

    Raises:
        ValueError: `order_id` is not a positive integer id, or `note` is empty.
        TransientError: timeout, connection failure, or 5xx.
        RateLimitedError: 429; `retry_after` in seconds.
        PermanentError: bad credentials or URL, 401/403, 404 (no such order), other 4xx,
            or a redirect.
    """
    order = str(order_id) if not isinstance(order_id, bool) else ""
    if not _DIGITS.fullmatch(order) or int(order) == 0:
        raise ValueError("order_id is not a WooCommerce order id")
    if not isinstance(note, str) or not note.strip():
        raise ValueError("note is empty")
    shop, api = _client(credentials)
    operation = "add order note"
    data = {"note": note, "customer_note": bool(customer_note)}
    response = _send(api, shop, operation, "POST", f"orders/{order}/notes", data=data)
    _raise_for_status(response, shop, operation)


def mark_gift(credentials: Mapping[str, str], order_id: str, *, tag: str, note: str) -> None:
    """Add the private order note `note` for a gift with purchase (core WooCommerce has no
    order tags, so `tag` is unused).

    Raises:
        ValueError, TransientError, RateLimitedError, PermanentError: see `add_order_note`.
    """
    add_order_note(credentials, order_id, note)


def tier_label(tier: str, *, prefix: str) -> str:
    """Return the value of the customer meta `stammkunde_tier` for a member in `tier`: the tier's
    name (the meta's key already says whose it is, so `prefix` is not used)."""
    return tier


def set_customer_tier(credentials: Mapping[str, str], customer_id: str, label: str | None, *,
                      previous: str | None) -> None:
    """Set the customer meta `stammkunde_tier` to `label` ("" for no tier; `previous` is not
    needed: the key is ours and holds one value), and check that the store kept it.

    `PUT customers/<id>` `{"meta_data": [{"key": "stammkunde_tier", "value": ...}]}`: WooCommerce
    updates the meta with that key (without an `id` it matches by key) and answers the customer
    with every meta of theirs, WordPress' own among them (live captures 100-101). The REST API has
    no way to delete one meta key, so "no tier" is the empty value. Idempotent.

    Raises:
        ValueError: `customer_id` is not a WooCommerce customer id.
        TransientError: timeout, connection failure, 5xx, or an unreadable 2xx body.
        RateLimitedError: 429; `retry_after` in seconds.
        PermanentError: bad credentials or URL, 401/403, 404 (no such customer), other 4xx, a
            redirect, or an answer whose `stammkunde_tier` is not what was sent.
    """
    customer = str(customer_id) if not isinstance(customer_id, bool) else ""
    if not _DIGITS.fullmatch(customer) or int(customer) == 0:
        raise ValueError("customer_id is not a WooCommerce customer id")
    value = label or ""
    shop, api = _client(credentials)
    operation = "set customer tier"
    response = _send(api, shop, operation, "PUT", f"customers/{int(customer)}",
                     data={"meta_data": [{"key": TIER_META_KEY, "value": value}]})
    if response.status_code == 404 and _error_fields(response)[0] == ERROR_CUSTOMER_INVALID_ID:
        raise PermanentError(f"WooCommerce {operation}: the store has no customer {int(customer)}")
    payload = _json(response, shop, operation)
    if customer_meta(payload, TIER_META_KEY) != value:
        raise PermanentError(f"WooCommerce {operation}: the store did not keep {TIER_META_KEY}")


def customer_meta(customer: Any, key: str) -> str | None:
    """Return the value of the customer's meta `key` in a REST customer (the last one, as
    WordPress reads a single value), or None when it has none or the answer is not a customer."""
    items = customer.get("meta_data") if isinstance(customer, Mapping) else None
    if not isinstance(items, list):
        return None
    values = [item.get("value") for item in items if isinstance(item, Mapping) and item.get("key") == key]
    return values[-1] if values and isinstance(values[-1], str) else None


# ---- the coupon body ---------------------------------------------------------------------


def _coupon_body(spec: DiscountSpec) -> dict[str, Any]:
    """Return the `POST coupons` JSON body for `spec`.

    - percentage: "percent" with the percentage as amount.
    - fixed_amount: "fixed_cart" (in the store currency: a coupon has none of its own).
    - free_shipping: "fixed_cart", amount "0", `free_shipping` true. WooCommerce only honours it
      where the merchant's Free shipping method requires "A valid free shipping coupon".
    - free_product: "percent", amount "100", `product_ids` = the spec's product and variant
      ids, `limit_usage_to_x_items` 1: one unit of a listed product is free whatever its price
      (WooCommerce applies the limit to the dearest matching item first). "fixed_product" would
      need the price, and with no product ids the coupon would free any item, so they are
      required. The customer still has to put the product in the cart.

    - buy_x_get_y: "percent" with the spec's percentage, `product_ids` = what the customer gets,
      `limit_usage_to_x_items` = how many of it. WooCommerce core has no "requires X in the cart"
      condition, so the products to buy, their number and name go into the coupon's `meta_data`
      (META_BUYS_*, strings); the Stammkunde plugin refuses the coupon through the
      `woocommerce_coupon_is_valid` filter until the cart holds them. The store stores meta as sent
      (live capture 100/101: customer `meta_data` comes back with the value sent), and the answer
      is checked for it like every other field.

    Every coupon is `individual_use`; once per customer (`usage_limit_per_user` 1) unless
    `spec.once_per_customer` is False, and with no total limit when `spec.usage_limit` is None.
    Product ids restrict the other kinds too when given. `starts_at`, `currency` and
    `customer_id` have no coupon field: the coupon is valid at once, and only `customer_email`
    (`email_restrictions`) ties it to a customer.

    `ends_at` is sent as `date_expires` in UTC with a "Z": the store ignores
    `date_expires_gmt` on write (the coupon gets no expiry at all), and reads a `date_expires`
    without an offset in the site's own time zone (live captures 030-037 and 058-062 in the
    project's WooCommerce reference). The store keeps whole seconds, so the sub-second part is
    dropped. A naive `ends_at` is taken as UTC.

    Raises:
        ValueError: unknown kind, a negative or non-finite value, a percentage above 100, a
            free product without ids, an id that is not numeric, or a usage limit below 1.
    """
    if not isinstance(spec.code, str) or not spec.code.strip():
        raise ValueError("spec.code is empty")
    product_ids = [_numeric_id(v) for v in (*spec.product_ids, *spec.variant_ids)]
    if spec.kind == "percentage":
        if _amount(spec.value, "value") > 100:
            raise ValueError("spec.value is a percentage above 100")
        discount_type, amount = DISCOUNT_TYPE_PERCENT, _money(spec.value, "value")
    elif spec.kind == "fixed_amount":
        discount_type, amount = DISCOUNT_TYPE_FIXED_CART, _money(spec.value, "value")
    elif spec.kind == "free_shipping":
        discount_type, amount = DISCOUNT_TYPE_FIXED_CART, "0"
    elif spec.kind == "free_product":
        if not product_ids:
            raise ValueError("free_product needs product_ids or variant_ids")
        discount_type, amount = DISCOUNT_TYPE_PERCENT, "100"
    elif spec.kind == "buy_x_get_y":
        if not product_ids:
            raise ValueError("buy_x_get_y needs product_ids or variant_ids to get")
        if not 0 < _amount(spec.value, "value") <= 100:
            raise ValueError("spec.value of buy_x_get_y is a percentage above 0 and at most 100")
        discount_type, amount = DISCOUNT_TYPE_PERCENT, _money(spec.value, "value")
    else:
        raise ValueError(f"unknown discount kind {spec.kind!r}")

    body: dict[str, Any] = {
        "code": spec.code,
        "discount_type": discount_type,
        "amount": amount,
        "individual_use": True,
    }
    if spec.usage_limit is not None:
        if isinstance(spec.usage_limit, bool) or spec.usage_limit < 1:
            raise ValueError("spec.usage_limit is below 1")
        body["usage_limit"] = spec.usage_limit
    if spec.once_per_customer:
        body["usage_limit_per_user"] = 1
    if spec.customer_email:
        body["email_restrictions"] = [spec.customer_email]
    if spec.minimum_amount is not None:
        body["minimum_amount"] = _money(spec.minimum_amount, "minimum_amount")
    if spec.ends_at is not None:
        body["date_expires"] = _utc_z(spec.ends_at)
    if product_ids:
        body["product_ids"] = product_ids
    if spec.kind == "free_shipping":
        body["free_shipping"] = True
    if spec.kind == "free_product":
        body["limit_usage_to_x_items"] = 1
    if spec.kind == "buy_x_get_y":
        body["limit_usage_to_x_items"] = _quantity(spec.gets_quantity or 1, "gets_quantity")
        buys = [str(_numeric_id(v)) for v in (*spec.buys_product_ids, *spec.buys_variant_ids)]
        if not buys:
            raise ValueError("buy_x_get_y needs buys_product_ids or buys_variant_ids")
        if not spec.buys_label or not spec.buys_label.strip():
            raise ValueError("buy_x_get_y needs buys_label (the customer's message names it)")
        body["meta_data"] = [
            {"key": META_BUYS_IDS, "value": ",".join(buys)},
            {"key": META_BUYS_QUANTITY, "value": str(_quantity(spec.buys_quantity, "buys_quantity"))},
            {"key": META_BUYS_LABEL, "value": spec.buys_label.strip()},
        ]
    body["description"] = spec.title
    return body


def _amount(value: Decimal, name: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValueError(f"spec.{name} is not a non-negative Decimal")
    return value


def _money(value: Decimal, name: str) -> str:
    # WooCommerce wants amounts as strings; format "f" never gives an exponent ("1E+1").
    return format(_amount(value, name), "f")


def _quantity(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"spec.{name} must be a whole number of at least 1")
    return value


def _numeric_id(value: Any) -> int:
    text = str(value).strip()
    if not _DIGITS.fullmatch(text):
        raise ValueError("product and variant ids must be numeric WooCommerce ids")
    return int(text)


def _utc_seconds(value: datetime) -> datetime:
    """Return `value` in UTC without its sub-second part (a naive value is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).replace(microsecond=0)


def _utc_z(value: datetime) -> str:
    # "2026-12-31T23:59:59Z": the store honours an explicit offset on `date_expires`.
    return _utc_seconds(value).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- webhooks by API -----------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    """One of the store's webhooks as `GET/POST/PUT webhooks` answer it."""

    id: str
    topic: str
    status: str  # "active", "paused" or "disabled" (the store disables one after 6 failures)
    delivery_url: str


def create_webhook(credentials: Mapping[str, str], topic: str, delivery_url: str, secret: str) -> Webhook:
    """Create an active webhook for `topic` signed with `secret` (`POST webhooks`).

    The store pings `delivery_url` at once (form `webhook_id=<n>`, unsigned); the ping's answer
    does not stop the creation (live capture 091/130).

    Raises:
        ValueError: an empty topic, URL or secret.
        TransientError, RateLimitedError, PermanentError: as for coupons.
    """
    if not topic or not delivery_url or not secret:
        raise ValueError("topic, delivery_url and secret are required")
    shop, api = _client(credentials)
    body = {"name": f"Stammkunde {topic}", "topic": topic, "delivery_url": delivery_url, "secret": secret,
            "status": "active"}
    return _webhook(_json(_send(api, shop, "create webhook", "POST", "webhooks", data=body), shop, "create webhook"),
                    "create webhook")


def get_webhook(credentials: Mapping[str, str], webhook_id: str) -> Webhook | None:
    """Return the store's webhook `webhook_id`, or None when it no longer exists (404).

    Raises:
        ValueError: `webhook_id` is not numeric.
        TransientError, RateLimitedError, PermanentError: as for coupons.
    """
    shop, api = _client(credentials)
    response = _send(api, shop, "get webhook", "GET", f"webhooks/{_numeric_id(webhook_id)}")
    if response.status_code == 404:
        return None
    return _webhook(_json(response, shop, "get webhook"), "get webhook")


def activate_webhook(credentials: Mapping[str, str], webhook_id: str) -> Webhook:
    """Switch a disabled webhook on again (`PUT webhooks/<id>` `{"status": "active"}`).

    The store keeps its failure count (only a delivered event resets it), so one more failure
    disables it again at once (live captures 094-097).

    Raises:
        ValueError: `webhook_id` is not numeric.
        TransientError, RateLimitedError, PermanentError: as for coupons; also an answer that
            is not active.
    """
    shop, api = _client(credentials)
    operation = "activate webhook"
    hook = _webhook(_json(_send(api, shop, operation, "PUT", f"webhooks/{_numeric_id(webhook_id)}",
                                data={"status": "active"}), shop, operation), operation)
    if hook.status != "active":
        raise PermanentError(f"WooCommerce {operation}: the store answered status {hook.status!r}")
    return hook


def _webhook(payload: Any, operation: str) -> Webhook:
    if not isinstance(payload, Mapping) or not all(
        isinstance(payload.get(k), str) for k in ("topic", "status", "delivery_url")
    ) or not isinstance(payload.get("id"), int):
        raise PermanentError(f"WooCommerce {operation}: the answer is not a webhook")
    return Webhook(id=str(payload["id"]), topic=payload["topic"], status=payload["status"],
                   delivery_url=payload["delivery_url"])


def list_orders_modified_after(credentials: Mapping[str, str], after: datetime, *, page: int,
                               per_page: int = 100) -> list[dict[str, Any]]:
    """Return one page of the orders modified after `after`, oldest change first (`GET orders`).

    `modified_after` is exclusive at one-second resolution and is sent in UTC with "Z" (honoured
    without `dates_are_gmt`, which would shift it by the site's offset, live captures 109-112).
    Pages are asked for by number, each request signed anew: the `Link` URLs repeat the first
    request's OAuth parameters (fact 30). A page past the end is `[]` (stop there; its totals
    are 0).

    Raises:
        ValueError: `after` is naive, or `page`/`per_page` out of range (1..100 per page).
        TransientError, RateLimitedError, PermanentError: as for coupons; also an answer that
            is not a list of orders.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be timezone-aware")
    if page < 1 or not 1 <= per_page <= 100:
        raise ValueError("page must be 1 or more and per_page 1 to 100")
    shop, api = _client(credentials)
    operation = "list orders"
    params = {"modified_after": _utc_z(after), "orderby": "modified", "order": "asc", "per_page": str(per_page),
              "page": str(page), "status": "any"}
    payload = _json(_send(api, shop, operation, "GET", "orders", params=params), shop, operation)
    if not isinstance(payload, list) or not all(isinstance(o, dict) and isinstance(o.get("id"), int) for o in payload):
        raise PermanentError(f"WooCommerce {operation}: the answer is not a list of orders")
    return payload


def list_orders_created(credentials: Mapping[str, str], *, after: datetime | None, before: datetime, page: int,
                        per_page: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """Return one page of the orders created in (`after`, `before`), oldest first, and the store's
    count of them (`X-WP-Total`, None when absent) - the history a backfill reads.

    Both bounds are sent in UTC with "Z" (as `modified_after`, live captures 109-112); `before`
    fixes the end, so orders created meanwhile (they come by webhook) do not shift the pages.
    Pages are asked for by number, each request signed anew (fact 30); a page past the end is `[]`.

    Raises:
        ValueError: a naive bound, or `page`/`per_page` out of range (1..100 per page).
        TransientError, RateLimitedError, PermanentError: as for coupons; also an answer that
            is not a list of orders.
    """
    for bound in (after, before):
        if bound is not None and (bound.tzinfo is None or bound.utcoffset() is None):
            raise ValueError("after and before must be timezone-aware")
    if page < 1 or not 1 <= per_page <= 100:
        raise ValueError("page must be 1 or more and per_page 1 to 100")
    shop, api = _client(credentials)
    operation = "list orders"
    params = {"before": _utc_z(before), "orderby": "date", "order": "asc", "per_page": str(per_page),
              "page": str(page), "status": "any"}
    if after is not None:
        params["after"] = _utc_z(after)
    response = _send(api, shop, operation, "GET", "orders", params=params)
    payload = _json(response, shop, operation)
    if not isinstance(payload, list) or not all(isinstance(o, dict) and isinstance(o.get("id"), int) for o in payload):
        raise PermanentError(f"WooCommerce {operation}: the answer is not a list of orders")
    total = response.headers.get("X-WP-Total")
    return payload, int(total) if isinstance(total, str) and total.isdigit() and payload else None


def list_refunds(credentials: Mapping[str, str], order_id: str) -> list[dict[str, Any]]:
    """Return the refunds of an order with their lines (`GET orders/<id>/refunds`, newest first).

    The order body lists a refund only as {id, reason, total} (fact 32); here each refund has its
    `line_items` (negative quantity and totals, `_refunded_item_id` naming the order's line) and
    its shipping and fee lines (live captures 102-103).

    Raises:
        ValueError: `order_id` is not a number.
        TransientError, RateLimitedError, PermanentError: as for coupons; also an answer that is
            not a list of refunds.
    """
    shop, api = _client(credentials)
    operation = "list refunds"
    path = f"orders/{_numeric_id(order_id)}/refunds"
    payload = _json(_send(api, shop, operation, "GET", path, params={"per_page": "100"}), shop, operation)
    if not isinstance(payload, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), int) for r in payload):
        raise PermanentError(f"WooCommerce {operation}: the answer is not a list of refunds")
    return payload


def fetch_products(credentials: Mapping[str, str], product_ids: Sequence[str]) -> tuple[ProductFacts, ...]:
    """Return the categories and tags of each product (`GET products?include=…`, up to 100 ids
    per request); a product the answer does not list (deleted or trashed) comes back with
    `found` False. A category or tag is named by its id, slug and name.

    No captured answer exists: the shape is the REST v3 product's documented one
    (https://woocommerce.github.io/woocommerce-rest-api-docs/#product-properties: `categories`
    and `tags` are lists of {id, name, slug}). WooCommerce core has no vendor.

    Raises:
        ValueError: an id is not a number.
        TransientError, RateLimitedError, PermanentError: as for coupons; also an answer that is
            not a list of products.
    """
    shop, api = _client(credentials)
    operation = "list products"
    ids = list(dict.fromkeys(str(_numeric_id(product_id)) for product_id in product_ids))
    listed: dict[str, ProductFacts] = {}
    for start in range(0, len(ids), 100):
        chunk = ids[start:start + 100]
        params = {"include": ",".join(chunk), "per_page": "100"}
        payload = _json(_send(api, shop, operation, "GET", "products", params=params), shop, operation)
        if not isinstance(payload, list) or not all(isinstance(p, dict) and isinstance(p.get("id"), int)
                                                    for p in payload):
            raise PermanentError(f"WooCommerce {operation}: the answer is not a list of products")
        for product in payload:
            listed[str(product["id"])] = ProductFacts(
                id=str(product["id"]), found=True,
                collections=_term_names(product.get("categories"), operation),
                tags=_term_names(product.get("tags"), operation),
            )
    return tuple(listed.get(product_id, ProductFacts(id=product_id, found=False)) for product_id in ids)


def _term_names(terms: Any, operation: str) -> tuple[str, ...]:
    """Return every name of a product's categories or tags ({id, name, slug} each)."""
    if terms is None:
        return ()
    if not isinstance(terms, list) or not all(isinstance(t, dict) for t in terms):
        raise PermanentError(f"WooCommerce {operation}: categories or tags are not a list of objects")
    return tuple(str(v) for t in terms for v in (t.get("id"), t.get("slug"), t.get("name"))
                 if isinstance(v, int | str) and not isinstance(v, bool) and str(v))


def check_credentials(credentials: Mapping[str, str]) -> None:
    """Make a cheap authenticated call (`GET webhooks?per_page=1`); return when the key works.

    Raises:
        TransientError, RateLimitedError: as for coupons (they say nothing about the key).
        PermanentError: the key is refused (401/403) or the REST API is not where it should be.
    """
    shop, api = _client(credentials)
    _raise_for_status(_send(api, shop, "check key", "GET", "webhooks", params={"per_page": "1"}), shop, "check key")


def update_plugin_settings(credentials: Mapping[str, str], values: Mapping[str, str]) -> bool:
    """Write our WordPress plugin's settings into the store; False when the plugin is not active.

    `POST settings/stammkunde/batch` `{"update": [{"id": option, "value": value}, ...]}`: the
    plugin registers the group for WooCommerce's REST settings API
    (`WC_REST_Setting_Options_Controller`). A store without it answers 404
    `rest_setting_setting_group_invalid`. Values are never logged.

    Raises:
        TransientError, RateLimitedError, PermanentError: as for coupons; also a batch answer
            in which a setting is missing, carries an error or holds another value.
    """
    shop, api = _client(credentials)
    operation = "update plugin settings"
    body = {"update": [{"id": key, "value": value} for key, value in values.items()]}
    response = _send(api, shop, operation, "POST", f"settings/{PLUGIN_SETTINGS_GROUP}/batch", data=body)
    if response.status_code == 404 and _error_fields(response)[0] == ERROR_SETTING_GROUP_INVALID:
        logger.info("woocommerce store has no stammkunde plugin settings", extra=_extra(shop, operation, 404))
        return False
    payload = _json(response, shop, operation)
    items = payload.get("update") if isinstance(payload, Mapping) else None
    held = {item.get("id"): item for item in items if isinstance(item, Mapping)} if isinstance(items, list) else {}
    for key, value in values.items():
        item = held.get(key)
        if item is None or "error" in item or item.get("value") != value:
            raise PermanentError(f"WooCommerce {operation}: the store did not keep the setting {key}")
    return True


def connect_url(store_url: str, *, app_name: str, user_id: str, return_url: str, callback_url: str) -> str:
    """Return the store's `/wc-auth/v1/authorize` URL that asks its admin for a read/write key.

    The store POSTs the key to `callback_url` (which must be https: the store refuses http before
    anything else) with our `user_id` echoed, and sends the admin back to `return_url`.
    https://woocommerce.github.io/woocommerce-rest-api-docs/#rest-api-keys (live captures 116-125)

    Raises:
        ValueError: `callback_url` is not https.
    """
    if not callback_url.startswith("https://"):
        raise ValueError("WooCommerce only sends keys to an https callback_url")
    query = urllib.parse.urlencode({"app_name": app_name, "scope": "read_write", "user_id": user_id,
                                    "return_url": return_url, "callback_url": callback_url})
    return normalize_shop(store_url).rstrip("/") + "/wc-auth/v1/authorize?" + query


# ---- checking what the store answers ------------------------------------------------------


def coupon_answer_mismatches(body: Mapping[str, Any], answer: Mapping[str, Any]) -> list[str]:
    """Return the names of the fields where the store's coupon `answer` differs from `body`.

    Sans-I/O. The expiry and both usage limits are always compared (not sent = none = null in
    the answer); the other fields only when sent. The asked expiry is `date_expires` (with "Z"
    or an offset; without one taken as UTC, which a store in another time zone does not do)
    or `date_expires_gmt` (UTC, which the store ignores on write). Compared as the store
    normalizes: amounts with two decimals ("5" -> "5.00"), e-mails lower-cased, unset limits
    as null, `date_expires_gmt` "Y-m-dTH:i:s" in UTC (live captures 032-039 and 058-061).
    """
    expected = _expected_fields(body)
    return [name for name, want in expected.items() if not _same(name, want, answer.get(name))]


def _expected_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return what a coupon made from `body` must answer, field by field."""
    asked = body.get("date_expires", body.get("date_expires_gmt"))
    expected: dict[str, Any] = {
        "date_expires_gmt": None if asked is None else _parse_utc(str(asked)),
        "usage_limit": body.get("usage_limit"),
        "usage_limit_per_user": body.get("usage_limit_per_user"),
    }
    for name in ("discount_type", "amount", "individual_use", "email_restrictions",
                 "minimum_amount", "product_ids", "free_shipping", "limit_usage_to_x_items", "meta_data"):
        if name in body:
            expected[name] = body[name]
    return expected


def _parse_utc(text: str) -> datetime | None:
    """Parse a WooCommerce date ("Z", an offset, or none = UTC); None when unreadable."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _utc_seconds(parsed)


def _check_coupon(payload: Any, body: Mapping[str, Any], shop: str, operation: str) -> None:
    """Raise unless the coupon the store answered holds what `body` asked for.

    Raises:
        TransientError: the answer is not a coupon object.
        PermanentError: a field differs (named in the message, with both values, never the
            code or e-mail).
    """
    if not isinstance(payload, Mapping):
        raise TransientError(f"WooCommerce {operation}: unexpected response (not a coupon)")
    _check_fields(payload, _expected_fields(body), shop, operation)


def _check_fields(
    payload: Mapping[str, Any], expected: Mapping[str, Any], shop: str, operation: str
) -> None:
    """Compare each expected field with the answer (see `coupon_answer_mismatches`).

    Raises:
        PermanentError: a field differs.
    """
    wrong = [name for name, want in expected.items() if not _same(name, want, payload.get(name))]
    if not wrong:
        return
    logger.warning(
        "woocommerce coupon answer differs from the request",
        extra={**_extra(shop, operation), "fields": wrong},
    )
    details = "; ".join(
        f"{name}: asked {_shown(name, expected[name])}, store has {_shown(name, payload.get(name))}"
        for name in wrong
    )
    coupon_id = payload.get("id")
    raise PermanentError(
        f"WooCommerce {operation}: the store's coupon (id {coupon_id}) does not hold what was "
        f"asked ({details})"
    )


def _same(name: str, want: Any, have: Any) -> bool:
    if name == "date_expires_gmt":
        if want is None or have is None:
            return want is None and have is None
        return isinstance(have, str) and _parse_utc(have) == want
    if name in ("amount", "minimum_amount"):
        try:
            return Decimal(str(have)) == Decimal(str(want))
        except ArithmeticError:
            return False
    if name == "email_restrictions":
        if not isinstance(have, list):
            return False
        return sorted(str(e).lower() for e in have) == sorted(str(e).lower() for e in want)
    if name == "product_ids":
        return isinstance(have, list) and sorted(have) == sorted(want)
    if name == "meta_data":
        # Each meta sent must be there with the value sent (the store adds ids, and may hold
        # meta of its own).
        if not isinstance(have, list):
            return False
        held = {m.get("key"): m.get("value") for m in have if isinstance(m, Mapping)}
        return all(held.get(m["key"]) == m["value"] for m in want)
    if isinstance(want, bool) or want is None:
        return have is want
    return have == want and not isinstance(have, bool)


def _shown(name: str, value: Any) -> str:
    # E-mails are personal data: only their number is shown.
    if name == "email_restrictions":
        return f"{len(value)} e-mail(s)" if isinstance(value, list) else repr(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return repr(value)


# ---- transport and error translation ----------------------------------------------------


def _find_coupon(api: API, shop: str, operation: str, code: str) -> Mapping[str, Any] | None:
    """Return the store's coupon object with `code` (compared case-insensitively), or None.

    Raises:
        TransientError, RateLimitedError, PermanentError: as `_json`; a list is expected.
    """
    wanted = code.strip().lower()
    response = _send(api, shop, operation, "GET", "coupons", params={"code": wanted})
    payload = _json(response, shop, operation)
    if not isinstance(payload, list):
        raise TransientError(f"WooCommerce {operation}: unexpected response (not a list)")
    for item in payload:
        if isinstance(item, Mapping) and str(item.get("code", "")).lower() == wanted:
            return item
    return None


def _client(credentials: Mapping[str, str]) -> tuple[str, API]:
    """Return (normalized store URL, API) for `credentials`.

    Raises:
        PermanentError: a field is missing or empty, or the URL is not http(s).
    """
    try:
        url = normalize_shop(credentials["url"])
        key = credentials["consumer_key"]
        secret = credentials["consumer_secret"]
    except (KeyError, TypeError, ValueError):
        raise PermanentError(
            "WooCommerce credentials need an http(s) url, consumer_key and consumer_secret"
        ) from None
    if not (isinstance(key, str) and key and isinstance(secret, str) and secret):
        raise PermanentError("WooCommerce credentials need consumer_key and consumer_secret")
    # API picks Basic auth for an https URL and OAuth 1.0a for http; normalize_shop lower-cases
    # the scheme, which the package checks case-sensitively.
    return url, API(url, key, secret, version=API_VERSION, timeout=REQUEST_TIMEOUT)


def _send(
    api: API,
    shop: str,
    operation: str,
    method: str,
    endpoint: str,
    *,
    data: Mapping[str, Any] | None = None,
    params: Mapping[str, str] | None = None,
) -> requests.Response:
    """Send one request; translate transport failures.

    Redirects are not followed: requests would turn a redirected POST into a GET (a "create"
    that lists coupons) and drop Basic auth on a host change.

    Raises:
        TransientError: timeout or connection failure.
        PermanentError: the request could not be built or sent (bad URL and the like).
    """
    try:
        if method == "GET":
            return api.get(endpoint, params=dict(params or {}), allow_redirects=False)
        if method == "PUT":
            return api.put(endpoint, dict(data or {}), allow_redirects=False)
        if method == "DELETE":
            return api.delete(endpoint, params=dict(params or {}), allow_redirects=False)
        return api.post(endpoint, dict(data or {}), allow_redirects=False)
    # `from None`: the requests exception's text holds the URL, and over http the URL holds
    # the consumer key. Only the exception's class name is kept.
    except requests.Timeout as exc:
        logger.warning("woocommerce api call timed out", extra=_extra(shop, operation))
        raise TransientError(f"WooCommerce {operation}: {type(exc).__name__}") from None
    except (
        requests.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    ) as exc:
        logger.warning("woocommerce api call failed to connect", extra=_extra(shop, operation))
        raise TransientError(f"WooCommerce {operation}: {type(exc).__name__}") from None
    except requests.RequestException as exc:
        logger.warning("woocommerce api call could not be sent", extra=_extra(shop, operation))
        raise PermanentError(
            f"WooCommerce {operation}: {type(exc).__name__}; check the store url"
        ) from None


def _raise_for_status(response: requests.Response, shop: str, operation: str) -> None:
    """Return for a 2xx; raise the matching error otherwise.

    Raises:
        RateLimitedError: 429.
        TransientError: 5xx.
        PermanentError: 401/403, 3xx, 404 and every other status.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    code, message = _error_fields(response)
    extra = {**_extra(shop, operation, status), "error_code": code}
    logger.warning("woocommerce api call failed", extra=extra)
    where = f"WooCommerce {operation}: HTTP {status}"
    if status == 429:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        raise RateLimitedError(f"{where} rate limited", retry_after=retry_after)
    if status >= 500:
        raise TransientError(where)
    detail = f"{where} {code}: {message}" if code else f"{where} (no WooCommerce error body)"
    if status in (401, 403):
        raise PermanentError(f"{detail}; {_AUTH_HINT}")
    if 300 <= status < 400:
        raise PermanentError(f"{where} redirect; store the final store URL (https?)")
    if status == 404 and code in (None, "rest_no_route"):
        raise PermanentError(f"{detail}; {_REST_HINT}")
    raise PermanentError(detail)


def _json(response: requests.Response, shop: str, operation: str) -> Any:
    """Return the parsed JSON of a 2xx response.

    Raises:
        TransientError: the 2xx body is not JSON (a PHP notice printed before it, a cache page).
        RateLimitedError, TransientError, PermanentError: as `_raise_for_status`.
    """
    _raise_for_status(response, shop, operation)
    try:
        return response.json()
    except ValueError:
        logger.warning("woocommerce api answered 2xx without json", extra=_extra(shop, operation))
        raise TransientError(f"WooCommerce {operation}: 2xx body is not JSON") from None


def _error_fields(response: requests.Response) -> tuple[str | None, str | None]:
    """Return WooCommerce's error (`code`, `message`), or (None, None) for a non-JSON body."""
    try:
        payload = response.json()
    except ValueError:
        return None, None
    if not isinstance(payload, Mapping) or not isinstance(payload.get("code"), str):
        return None, None
    message = payload.get("message")
    text = " ".join(message.split())[:_MAX_MESSAGE] if isinstance(message, str) else ""
    return payload["code"][:_MAX_MESSAGE], text


def _retry_after(value: str | None) -> float:
    """Return the seconds a Retry-After header asks for (delta or HTTP date), default 5."""
    if not value:
        return DEFAULT_RETRY_AFTER
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return max(seconds, 0.0)


def _discount_code(payload: Any, operation: str, *, created: bool) -> DiscountCode:
    """Build a DiscountCode from a REST coupon.

    Raises:
        TransientError: the coupon has no usable id or code (a retry resolves through lookup).
    """
    if isinstance(payload, Mapping):
        coupon_id, code = payload.get("id"), payload.get("code")
        if isinstance(coupon_id, int) and not isinstance(coupon_id, bool) and coupon_id > 0:
            if isinstance(code, str) and code:
                return DiscountCode(code=code, platform_id=str(coupon_id), created=created)
    raise TransientError(f"WooCommerce {operation}: unexpected response (no coupon id/code)")


def _extra(shop: str, operation: str, status: int | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"platform": PLATFORM, "shop": shop, "operation": operation}
    if status is not None:
        extra["http_status"] = status
    return extra
