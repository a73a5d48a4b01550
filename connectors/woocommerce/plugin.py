"""Signing of our WordPress plugin's server-to-server calls, sans I/O (rule 8).

The plugin (`connectors/woocommerce/wordpress-plugin/stammkunde/includes/class-stammkunde-signer.php`)
signs every call to `/api/woocommerce/v1/...` with the shop's own plugin secret::

    canonical = "stammkunde-v1\\n" METHOD "\\n" PATH "\\n" TIMESTAMP "\\n" NONCE "\\n" hex(sha256(BODY))
    signature = base64(HMAC-SHA256(secret, canonical))

PATH is the path with its query string as sent; TIMESTAMP is Unix seconds and must lie within
`PLUGIN_REPLAY_WINDOW_SECONDS` of our clock; NONCE (16-64 letters, digits, "-" or "_") is
accepted once per shop, which the caller records (the database settles it). Both sides are
checked against one test vector (`wordpress-plugin/tests/signing-vector.json`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.errors import InvalidSignatureError, MissingSignatureError
from connectors.woocommerce.consts import (
    PLUGIN_HEADER_NONCE,
    PLUGIN_HEADER_SHOP,
    PLUGIN_HEADER_SIGNATURE,
    PLUGIN_HEADER_TIMESTAMP,
    PLUGIN_REPLAY_WINDOW_SECONDS,
    PLUGIN_SIGNATURE_VERSION,
)

_SHOP_ID = re.compile(r"[1-9][0-9]{0,17}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class StaleRequestError(InvalidSignatureError):
    """The request's timestamp lies outside the replay window."""


@dataclass(frozen=True)
class SignedHeaders:
    """The plugin's signing headers, well-formed (not yet verified)."""

    shop_id: int
    timestamp: int
    nonce: str
    signature: str


def canonical_request(method: str, path: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    """Return the bytes that are signed."""
    lines = (PLUGIN_SIGNATURE_VERSION, method.upper(), path, str(int(timestamp)), nonce,
             hashlib.sha256(body).hexdigest())
    return "\n".join(lines).encode("utf-8")


def sign_request(secret: str, method: str, path: str, timestamp: int, nonce: str, body: bytes) -> str:
    """Return the base64 HMAC-SHA256 signature of a request (what the plugin sends)."""
    digest = hmac.new(secret.encode("utf-8"), canonical_request(method, path, timestamp, nonce, body),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def read_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """Return the signing headers of a request, checked for form only.

    Raises:
        MissingSignatureError: a header is missing or malformed.
    """
    shop, timestamp, nonce, signature = (
        (headers.get(name) or "").strip()
        for name in (PLUGIN_HEADER_SHOP, PLUGIN_HEADER_TIMESTAMP, PLUGIN_HEADER_NONCE, PLUGIN_HEADER_SIGNATURE)
    )
    if not (_SHOP_ID.fullmatch(shop) and _TIMESTAMP.fullmatch(timestamp) and _NONCE.fullmatch(nonce) and signature):
        raise MissingSignatureError("plugin request: signing headers missing or malformed")
    return SignedHeaders(shop_id=int(shop), timestamp=int(timestamp), nonce=nonce, signature=signature)


def verify_request(signed: SignedHeaders, method: str, path: str, body: bytes, *, secret: str, now: float,
                   window: int = PLUGIN_REPLAY_WINDOW_SECONDS) -> None:
    """Check a request's signature (constant-time) and its timestamp against `now` (Unix seconds).

    The nonce's single use is the caller's to record.

    Raises:
        InvalidSignatureError: no secret, or the signature does not match.
        StaleRequestError: the timestamp is more than `window` seconds from `now`.
    """
    if not secret:
        raise InvalidSignatureError("plugin request: the shop has no plugin secret")
    expected = sign_request(secret, method, path, signed.timestamp, signed.nonce, body)
    if not hmac.compare_digest(expected.encode("ascii"), signed.signature.encode("utf-8", "replace")):
        raise InvalidSignatureError("plugin request: signature does not match")
    if abs(now - signed.timestamp) > window:
        raise StaleRequestError("plugin request: timestamp outside the replay window")
