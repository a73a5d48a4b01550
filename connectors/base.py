"""The contract every platform connector fulfils, and small sans-I/O helpers they share."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from connectors.errors import InvalidSignatureError, MalformedPayloadError, MissingSignatureError
from connectors.types import DiscountCode, DiscountSpec, WebhookEvent


class Connector(Protocol):
    """What the webhook view, the jobs and the tests need from a platform."""

    platform: str
    SUPPORTED_TOPICS: tuple[str, ...]

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

    def create_discount_code(self, credentials: Any, spec: DiscountSpec) -> DiscountCode:
        """Create `spec` in the shop, or find it when it already exists."""

    def deactivate_discount_code(self, credentials: Any, platform_id: str, *, now: datetime) -> None:
        """Switch off the code `platform_id` (as `DiscountCode.platform_id`) from `now`; idempotent.

        Raises:
            TransientError, RateLimitedError: retry later.
            PermanentError: the shop refused; retrying cannot help.
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


# ---- strict field readers shared by the parsers (rule 11) --------------------------------


def require(data: Mapping[str, Any], key: str, topic: str, path: str = "") -> Any:
    """Return data[key] or raise MalformedPayloadError naming topic and field.

    Raises:
        MalformedPayloadError: the key is missing or null.
    """
    if not isinstance(data, Mapping):
        raise MalformedPayloadError(f"{topic}: {path or 'payload'} is not an object")
    value = data.get(key)
    if value is None:
        raise MalformedPayloadError(f"{topic}: {path}{key} missing")
    return value


def to_decimal(value: Any, topic: str, field_name: str) -> Decimal:
    """Parse a platform money value (string or number) into Decimal.

    Raises:
        MalformedPayloadError: the value is not a number.
    """
    if isinstance(value, bool) or value is None:
        raise MalformedPayloadError(f"{topic}: {field_name} is not a number")
    try:
        # str() first so that a JSON float 12.5 becomes Decimal("12.5"), not its binary value.
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise MalformedPayloadError(f"{topic}: {field_name} is not a number") from None
    if not result.is_finite():
        raise MalformedPayloadError(f"{topic}: {field_name} is not a number")
    return result


def to_id(value: Any, topic: str, field_name: str) -> str:
    """Return a platform id as str (ids are ints in JSON; we never do arithmetic on them).

    Raises:
        MalformedPayloadError: missing, or neither an int nor a non-empty string.
    """
    if isinstance(value, bool) or value is None or value == "":
        raise MalformedPayloadError(f"{topic}: {field_name} missing")
    if isinstance(value, int | str):
        return str(value)
    raise MalformedPayloadError(f"{topic}: {field_name} is not an id")


def to_datetime(value: Any, topic: str, field_name: str, *, naive_is_utc: bool = True) -> datetime:
    """Parse an ISO-8601 timestamp into an aware UTC datetime.

    A timestamp without an offset is taken as UTC (WooCommerce `*_gmt` fields carry none).

    Raises:
        MalformedPayloadError: not an ISO-8601 string.
    """
    if not isinstance(value, str) or not value:
        raise MalformedPayloadError(f"{topic}: {field_name} missing")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedPayloadError(f"{topic}: {field_name} is not a timestamp") from None
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise MalformedPayloadError(f"{topic}: {field_name} has no time zone")
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def normalize_email(value: Any) -> str | None:
    """Return a stripped, lower-cased e-mail, or None when empty or not a string."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return text or None


def address_fingerprint(*parts: Any) -> str | None:
    """Return a sha256 of a normalized address (street, postcode, country), None if empty.

    Used to spot self-referrals by shipping address without storing the address.
    """
    cleaned = [" ".join(str(p).lower().split()) for p in parts if isinstance(p, str) and p.strip()]
    if not cleaned:
        return None
    return hashlib.sha256("|".join(cleaned).encode("utf-8")).hexdigest()
