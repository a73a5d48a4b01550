"""The contract every platform connector fulfils, and small sans-I/O helpers they share."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from connectors.errors import InvalidSignatureError, MissingSignatureError
from connectors.throttle import Throttle
from connectors.types import DiscountCode, DiscountSpec, ProductFacts, WebhookEvent


@runtime_checkable
class Connector(Protocol):
    """What the webhook view, the jobs and the domain need from a platform.

    Everything that differs between platforms is here, so nothing outside `connectors/` asks
    which platform a shop is on. `credentials` is whatever `credentials(...)` returned: each
    client reads its own shape.
    """

    platform: str
    SUPPORTED_TOPICS: tuple[str, ...]
    # The fields of the stored API credentials the client needs (e.g. ("access_token",)).
    REQUIRED_CREDENTIALS: tuple[str, ...]
    # How `flask shops add` takes those credentials (named in "add them with ..." messages).
    CREDENTIALS_OPTIONS: str
    # True when the shop's platform app signs every shop's webhooks with the app's client
    # secret (Shopify), so a shop without a secret of its own is checked against it.
    WEBHOOKS_SIGNED_BY_APP: bool
    # True when unpaid orders are the platform's only record of an unfinished checkout
    # (WooCommerce: no checkout topic; a pending or checkout-draft order stands for it).
    ORDERS_ARE_CHECKOUTS: bool

    # ---- webhooks, sans-I/O (connectors/<platform>/webhooks.py) ---------------------------------

    def normalize_shop(self, value: str) -> str:
        """Return the canonical shop identifier for a domain or base URL."""

    def shop_from_headers(self, headers: Mapping[str, str]) -> str | None:
        """Return the normalized shop the delivery claims to come from, or None."""

    def topic_from_headers(self, headers: Mapping[str, str]) -> str | None:
        """Return the delivery's topic, or None when the header is missing."""

    def is_ping(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Return True for an unsigned platform ping that must be answered 200."""

    def verify(
        self, headers: Mapping[str, str], body: bytes, *, secret: str, old_secret: str | None = None
    ) -> None:
        """Check the delivery's signature.

        Raises:
            MissingSignatureError: no signature header.
            InvalidSignatureError: the signature matches no accepted secret.
        """

    def delivery_key(self, headers: Mapping[str, str], body: bytes, payload: Any) -> str:
        """Return the dedupe key of this delivery (same event delivered twice -> same key)."""

    def parse_event(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Parse a verified delivery into the common model.

        Raises:
            MalformedPayloadError: a field we use is missing or of the wrong type.
            UnsupportedTopicError: the topic is not in SUPPORTED_TOPICS.
        """

    def delivery_headers(
        self, shop: str, topic: str, *, signature: str, event_id: str
    ) -> dict[str, str]:
        """Return the headers the platform sends with a delivery (the demo posts with them)."""

    # ---- the shop's addresses, no I/O ---------------------------------------------------------

    def storefront_url(self, shop: str) -> str:
        """Return the storefront's address for the shop's canonical identifier."""

    def discount_link(self, shop: str, code: str) -> str | None:
        """Return a storefront link that applies `code` to the visitor's cart, or None when the
        platform has none (the app then links to its own page showing the code)."""

    # ---- outbound calls (connectors/<platform>/client.py) ---------------------------------------

    def credentials(self, shop: str, stored: Mapping[str, Any], *, throttle: Throttle | None = None) -> dict[str, Any]:
        """Return what the client's calls take as `credentials`: the shop's stored API
        credentials plus its address, in the client's shape, and the `throttle` that paces the
        calls to the platform's rate limit (a client whose platform meters none ignores it)."""

    def create_discount_code(self, credentials: Any, spec: DiscountSpec) -> DiscountCode:
        """Create `spec` in the shop, or find it when it already exists.

        Raises:
            ValueError: the client cannot express `spec`.
            TransientError, RateLimitedError: retry later.
            PermanentError: the shop refused; retrying cannot help.
        """

    def credit_store_credit(self, credentials: Any, spec: DiscountSpec) -> DiscountCode:
        """Credit a "store credit" reward (`spec.value` in `spec.currency`) to the customer's
        account, once per `spec.code`; `platform_id` of the answer names the transaction.

        Raises:
            ValueError: the client cannot express `spec`.
            TransientError, RateLimitedError: retry later.
            PermanentError: the shop refused, or the platform has no store credit.
        """

    def find_discount_code(self, credentials: Any, code: str) -> DiscountCode | None:
        """Return the shop's discount code `code`, or None when the shop has no such code.

        Raises:
            TransientError, RateLimitedError: retry later.
            PermanentError: the shop refused the look-up.
        """

    def deactivate_discount_code(
        self, credentials: Any, platform_id: str, *, now: datetime
    ) -> None:
        """Switch off the code `platform_id` (as `DiscountCode.platform_id`) from `now`; idempotent.

        Raises:
            TransientError, RateLimitedError: retry later.
            PermanentError: the shop refused; retrying cannot help.
        """

    def withdraw_discount_code(self, credentials: Any, platform_id: str) -> bool:
        """Remove the code `platform_id` (as `DiscountCode.platform_id`) from the shop unless it
        was used: True when it is gone (removed now, or before), False when the shop counts a use
        (the code stays). Idempotent.

        Raises:
            ValueError: `platform_id` is not a code id of the platform.
            TransientError, RateLimitedError: retry later.
            PermanentError: the shop refused; retrying cannot help.
        """

    def check_credentials(self, credentials: Any) -> None:
        """Make the platform's cheapest authenticated call; return when the credentials work.

        Raises:
            TransientError, RateLimitedError: no answer (says nothing about the credentials).
            PermanentError: the shop refused them.
        """

    def tier_label(self, tier: str, *, prefix: str) -> str:
        """Return what the shop shows for a member in `tier` (no I/O): Shopify the customer tag
        "<prefix> <tier>", WooCommerce the value of the customer meta `stammkunde_tier`.

        Raises:
            ValueError: the label cannot be expressed (e.g. a Shopify tag over 255 characters).
        """

    def set_customer_tier(self, credentials: Any, customer_id: str, label: str | None, *,
                          previous: str | None) -> None:
        """Show `label` (from `tier_label`; None: no tier) on customer `customer_id` and take away
        `previous`, the label we wrote before, and nothing else of the shop's; idempotent.

        Raises:
            ValueError: `customer_id` is not a customer id of the platform.
            TransientError, RateLimitedError: retry later.
            PermanentError: the shop refused (e.g. no such customer); retrying cannot help.
        """

    def mark_gift(self, credentials: Any, order_id: str, *, tag: str, note: str) -> None:
        """Mark order `order_id` for a gift with purchase, the way the shop's staff see it
        (a Shopify order tag `tag`; a WooCommerce private order note `note`).

        Raises:
            ValueError: `order_id` is not an order id of the platform, or the mark is empty.
            TransientError, RateLimitedError: retry later.
            PermanentError: the shop refused (e.g. no such order).
        """

    def fetch_products(self, credentials: Any, product_ids: Sequence[str]) -> tuple[ProductFacts, ...]:
        """Return the collections or categories and tags of each of `product_ids` (one entry per
        id; `found` False for a product the shop does not know), for earning by product.

        Raises:
            ValueError: an id is not a product id of the platform.
            TransientError, RateLimitedError: retry later.
            PermanentError: the shop refused.
        """


def header(headers: Mapping[str, str], *names: str) -> str | None:
    """Return the first of `names` present in `headers`, compared case-insensitively."""
    getter = getattr(headers, "get", None)
    # werkzeug's Headers is already case-insensitive; a plain dict is not.
    lowered = None
    for name in names:
        value = getter(name) if getter else None
        if value is None:
            if lowered is None:
                lowered = {k.lower(): v for k, v in headers.items()}
            value = lowered.get(name.lower())
        if value is not None:
            return value
    return None


def hmac_sha256_base64(secret: str, body: bytes) -> str:
    """Return base64(HMAC-SHA256(body, secret)), the scheme Shopify and WooCommerce both use."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_hmac_base64(
    signature: str | None, body: bytes, *, secret: str, old_secret: str | None = None
) -> None:
    """Fail closed unless `signature` is the base64 HMAC-SHA256 of `body` under an accepted secret.

    Raises:
        MissingSignatureError: `signature` is missing or empty.
        InvalidSignatureError: no non-empty secret produces `signature`.
    """
    if not signature or not signature.strip():
        raise MissingSignatureError("signature header missing")
    given = signature.strip().encode("ascii", "replace")
    for candidate in (secret, old_secret):
        if not candidate:
            continue
        expected = hmac_sha256_base64(candidate, body).encode("ascii")
        if hmac.compare_digest(expected, given):
            return
    raise InvalidSignatureError("signature does not match")


def body_digest(body: bytes) -> str:
    """Return the hex sha256 of a body (part of dedupe keys)."""
    return hashlib.sha256(body).hexdigest()


# ---- normalizers shared by the parsers (the strict field readers are in connectors.fields) ----


def normalize_email(value: Any) -> str | None:
    """Return a stripped, lower-cased e-mail, or None when empty or not a string."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return text or None


def address_fingerprint(*parts: Any) -> str | None:
    """Return a sha256 of a normalized address (street, postcode, country), None if empty.

    Used to spot self-referrals by shipping address without storing the address. A lone
    surrogate (JSON allows "\ud800") is hashed as its code point, not refused.
    """
    cleaned = [" ".join(str(p).lower().split()) for p in parts if isinstance(p, str) and p.strip()]
    if not cleaned:
        return None
    return hashlib.sha256("|".join(cleaned).encode("utf-8", "surrogatepass")).hexdigest()
