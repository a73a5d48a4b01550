"""A fake connector: a shop's API in memory, for job tests where the HTTP shape is not the point.

It stands in for one real connector and keeps that connector's sans-I/O side (webhooks, shop
addresses, credential fields, platform facts), so a shop registered on that platform behaves the
same; only the outbound calls are replaced. It records what the jobs asked the shop to do and
can be told to fail. Install it visibly, for one test:

    fake = install_fake_connector(monkeypatch, "woocommerce")

which puts it into `connectors.CONNECTORS` with `monkeypatch.setitem` (undone after the test).
The tests in tests/connectors/test_contract.py check it fulfils `connectors.base.Connector`
like the real ones, so a test using it cannot pass against a contract the jobs do not have.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

import connectors
from connectors.base import Connector
from connectors.types import DiscountCode, DiscountSpec, ProductFacts, WebhookEvent


class FakeConnector:
    """`real`'s webhooks and platform facts, with the shop's API kept in memory."""

    def __init__(self, real: Connector) -> None:
        self.real = real
        self.platform = real.platform
        self.SUPPORTED_TOPICS = real.SUPPORTED_TOPICS
        self.REQUIRED_CREDENTIALS = real.REQUIRED_CREDENTIALS
        self.CREDENTIALS_OPTIONS = real.CREDENTIALS_OPTIONS
        self.WEBHOOKS_SIGNED_BY_APP = real.WEBHOOKS_SIGNED_BY_APP
        self.ORDERS_ARE_CHECKOUTS = real.ORDERS_ARE_CHECKOUTS
        # code -> the spec it was created with (what the shop holds)
        self.codes: dict[str, DiscountSpec] = {}
        # code -> the store credit spec it credited (Shopify's storeCreditAccountCredit)
        self.credits: dict[str, DiscountSpec] = {}
        # platform id -> the `now` it was switched off at
        self.deactivated: dict[str, datetime] = {}
        # platform ids removed from the shop (`withdraw_discount_code`) ...
        self.withdrawn: set[str] = set()
        # ... and those the shop counts a use of (a test says so), which it keeps
        self.used: set[str] = set()
        # (order id, tag, note) per gift marked
        self.gifts: list[tuple[str, str, str]] = []
        # customer id -> the tier labels the shop shows for them (Shopify can show several tags)
        self.tier_labels: dict[str, set[str]] = {}
        # every outbound call: (operation, credentials, argument)
        self.calls: list[tuple[str, Mapping[str, Any], Any]] = []
        # product id -> its collections/categories and tags (what the shop's catalogue says)
        self.products: dict[str, ProductFacts] = {}
        # the product ids of each `fetch_products` call
        self.product_lookups: list[tuple[str, ...]] = []
        # operation -> the exceptions its next calls raise, in order (see `fail`)
        self.failures: dict[str, list[Exception]] = {}

    # ---- what the test tells it ------------------------------------------------------------

    def fail(self, operation: str, *errors: Exception) -> None:
        """Make the next calls of `operation` ("create_discount_code", "mark_gift", ...) raise
        `errors`, one per call; later calls succeed."""
        self.failures.setdefault(operation, []).extend(errors)

    def _call(self, operation: str, credentials: Mapping[str, Any], argument: Any) -> None:
        self.calls.append((operation, credentials, argument))
        pending = self.failures.get(operation)
        if pending:
            raise pending.pop(0)

    # ---- the real connector's sans-I/O side --------------------------------------------------

    def normalize_shop(self, value: str) -> str:
        return self.real.normalize_shop(value)

    def shop_from_headers(self, headers: Mapping[str, str]) -> str | None:
        return self.real.shop_from_headers(headers)

    def topic_from_headers(self, headers: Mapping[str, str]) -> str | None:
        return self.real.topic_from_headers(headers)

    def is_ping(self, headers: Mapping[str, str], body: bytes) -> bool:
        return self.real.is_ping(headers, body)

    def verify(
        self, headers: Mapping[str, str], body: bytes, *, secret: str, old_secret: str | None = None
    ) -> None:
        self.real.verify(headers, body, secret=secret, old_secret=old_secret)

    def delivery_key(self, headers: Mapping[str, str], body: bytes, payload: Any) -> str:
        return self.real.delivery_key(headers, body, payload)

    def parse_event(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        return self.real.parse_event(headers, body)

    def delivery_headers(self, shop: str, topic: str, *, signature: str, event_id: str) -> dict[str, str]:
        return self.real.delivery_headers(shop, topic, signature=signature, event_id=event_id)

    def storefront_url(self, shop: str) -> str:
        return self.real.storefront_url(shop)

    def discount_link(self, shop: str, code: str) -> str | None:
        return self.real.discount_link(shop, code)

    # ---- the shop's API, in memory -----------------------------------------------------------

    def credentials(self, shop: str, stored: Mapping[str, Any], *, throttle: Any = None) -> dict[str, Any]:
        return {**stored, "shop": shop}

    def create_discount_code(self, credentials: Any, spec: DiscountSpec) -> DiscountCode:
        self._call("create_discount_code", credentials, spec)
        created = spec.code not in self.codes
        self.codes.setdefault(spec.code, spec)
        return DiscountCode(code=spec.code, platform_id=f"fake-{spec.code}", created=created)

    def credit_store_credit(self, credentials: Any, spec: DiscountSpec) -> DiscountCode:
        self._call("credit_store_credit", credentials, spec)
        self.credits.setdefault(spec.code, spec)  # idempotent on the code, as Shopify's @idempotent
        return DiscountCode(code=spec.code, platform_id=f"fake-credit-{spec.code}", created=True)

    def find_discount_code(self, credentials: Any, code: str) -> DiscountCode | None:
        self._call("find_discount_code", credentials, code)
        return DiscountCode(code=code, platform_id=f"fake-{code}", created=False) if code in self.codes else None

    def deactivate_discount_code(self, credentials: Any, platform_id: str, *, now: datetime) -> None:
        self._call("deactivate_discount_code", credentials, platform_id)
        self.deactivated.setdefault(platform_id, now)

    def withdraw_discount_code(self, credentials: Any, platform_id: str) -> bool:
        self._call("withdraw_discount_code", credentials, platform_id)
        if platform_id in self.used:
            return False
        self.withdrawn.add(platform_id)
        return True

    def mark_gift(self, credentials: Any, order_id: str, *, tag: str, note: str) -> None:
        self._call("mark_gift", credentials, order_id)
        self.gifts.append((order_id, tag, note))

    def tier_label(self, tier: str, *, prefix: str) -> str:
        return self.real.tier_label(tier, prefix=prefix)

    def set_customer_tier(self, credentials: Any, customer_id: str, label: str | None, *,
                          previous: str | None) -> None:
        self._call("set_customer_tier", credentials, (customer_id, label, previous))
        shown = self.tier_labels.setdefault(customer_id, set())
        if label is not None:
            shown.add(label)
        if previous is not None and previous != label:
            shown.discard(previous)

    def check_credentials(self, credentials: Any) -> None:
        self._call("check_credentials", credentials)

    def fetch_products(self, credentials: Any, product_ids: Any) -> tuple[ProductFacts, ...]:
        self._call("fetch_products", credentials, tuple(product_ids))
        self.product_lookups.append(tuple(product_ids))
        return tuple(self.products.get(pid, ProductFacts(id=pid, found=False)) for pid in product_ids)


def install_fake_connector(monkeypatch: pytest.MonkeyPatch, platform: str) -> FakeConnector:
    """Put a fake in `connectors.CONNECTORS[platform]` for this test and return it."""
    fake = FakeConnector(real=connectors.CONNECTORS[platform])
    monkeypatch.setitem(connectors.CONNECTORS, platform, fake)
    return fake
