"""Signed links for customers (rewards page, unsubscribe, double opt-in), usable without Flask.

Tokens are itsdangerous URL-safe timed signatures over {"shop", "customer"} with a salt per kind,
keyed by SECRET_KEY, so a link for one purpose or one customer never works for another.
"""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SALTS = {"customer-page": "customer-page", "unsubscribe": "unsubscribe", "doi": "double-opt-in"}
MAX_AGE = {"customer-page": 30 * 86400, "unsubscribe": 365 * 86400, "doi": 7 * 86400}
PATHS = {"customer-page": "/r/{token}", "unsubscribe": "/u/{token}", "doi": "/consent/confirm/{token}"}


class InvalidLinkError(ValueError):
    """The token is tampered with, for another purpose, or expired."""


def _serializer(secret: str, kind: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=SALTS[kind])


def make_token(secret: str, kind: str, shop_id: int, customer_id: int) -> str:
    """Return a signed token for (shop, customer) for one purpose."""
    return _serializer(secret, kind).dumps({"shop": shop_id, "customer": customer_id})


def read_token(secret: str, kind: str, token: str) -> tuple[int, int]:
    """Return (shop id, customer id) from a valid token.

    Raises:
        InvalidLinkError: tampered, other purpose, or older than the purpose's maximum age.
    """
    try:
        data: Any = _serializer(secret, kind).loads(token, max_age=MAX_AGE[kind])
    except SignatureExpired:
        raise InvalidLinkError("this link has expired") from None
    except BadSignature:
        raise InvalidLinkError("this link is not valid") from None
    if not isinstance(data, dict) or not isinstance(data.get("shop"), int) or not isinstance(data.get("customer"), int):
        raise InvalidLinkError("this link is not valid")
    return data["shop"], data["customer"]


def url(public_url: str, secret: str, kind: str, shop_id: int, customer_id: int) -> str:
    """Return the absolute link of a purpose for a customer."""
    return public_url.rstrip("/") + PATHS[kind].format(token=make_token(secret, kind, shop_id, customer_id))
