"""Registering shops and resolving their webhook secrets (no Flask here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import crypto
from app.models import Platform, Shop, utcnow
from connectors import get_connector

# How long the previous webhook secret keeps working after a rotation.
OLD_SECRET_GRACE = timedelta(days=3)


class UnknownShopError(LookupError):
    """No shop is registered under that platform and domain."""


@dataclass(frozen=True)
class Secrets:
    """The secrets a delivery may be signed with."""

    current: str | None
    old: str | None


def normalize(platform: str, domain: str) -> str:
    """Return the canonical shop identifier the platform's connector uses."""
    return get_connector(platform).normalize_shop(domain)


def find_shop(session: Session, platform: str, domain: str) -> Shop | None:
    """Return the shop for an already-normalized domain, or None."""
    return session.scalars(select(Shop).where(Shop.platform == platform, Shop.domain == domain)).first()


def get_shop(session: Session, domain: str, platform: str | None = None) -> Shop:
    """Return the shop a person names by domain or base URL (any platform when not given).

    Raises:
        UnknownShopError: no such shop.
    """
    platforms = [platform] if platform else [p.value for p in Platform]
    for name in platforms:
        shop = find_shop(session, name, normalize(name, domain))
        if shop is not None:
            return shop
    raise UnknownShopError(f"no shop registered for {domain!r}")


def register_shop(
    session: Session,
    *,
    keys: str,
    platform: str,
    domain: str,
    webhook_secret: str | None,
    currency: str | None = None,
    name: str | None = None,
    timezone: str | None = None,
    language: str | None = None,
    credentials: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[Shop, bool]:
    """Create or update a shop; returns (shop, created).

    A new webhook secret on an existing shop rotates: the previous one stays valid for
    OLD_SECRET_GRACE so deliveries signed before the switch still verify.
    """
    now = now or utcnow()
    canonical = normalize(platform, domain)
    shop = find_shop(session, platform, canonical)
    created = shop is None
    if shop is None:
        shop = Shop(platform=Platform(platform), domain=canonical, name=name or canonical)
        session.add(shop)
    if currency:
        shop.currency = currency.upper()
    if name:
        shop.name = name
    if timezone:
        shop.timezone = timezone
    if language:
        shop.language = language
    if webhook_secret:
        previous = decrypt_or_none(keys, shop.webhook_secret_enc)
        if previous is not None and previous != webhook_secret:
            shop.webhook_secret_old_enc = shop.webhook_secret_enc
            shop.webhook_secret_old_until = now + OLD_SECRET_GRACE
        if previous != webhook_secret:
            shop.webhook_secret_enc = crypto.encrypt(keys, webhook_secret)
    if credentials:
        shop.api_credentials_enc = crypto.encrypt(keys, json.dumps(credentials))
    session.flush()
    return shop, created


def decrypt_or_none(keys: str, token: bytes | None) -> str | None:
    """Decrypt a stored secret, or None when none is stored."""
    return None if token is None else crypto.decrypt(keys, bytes(token))


def webhook_secrets(shop: Shop, keys: str, app_secret: str | None, app_secret_old: str | None, now: datetime) -> Secrets:
    """Return the secrets deliveries of `shop` may be signed with.

    A per-shop secret (WooCommerce, or a Shopify shop's own admin webhooks) wins; otherwise the
    platform app's client secret (Shopify apps sign every shop's webhooks with it).
    """
    current = decrypt_or_none(keys, shop.webhook_secret_enc)
    old = None
    if shop.webhook_secret_old_enc is not None and (
        shop.webhook_secret_old_until is None or shop.webhook_secret_old_until > now
    ):
        old = decrypt_or_none(keys, shop.webhook_secret_old_enc)
    if current is None:
        return Secrets(current=app_secret, old=app_secret_old)
    return Secrets(current=current, old=old)


def credentials(shop: Shop, keys: str) -> dict[str, Any]:
    """Return the shop's decrypted API credentials ({} when none are stored)."""
    raw = decrypt_or_none(keys, shop.api_credentials_enc)
    return json.loads(raw) if raw else {}


def missing_api_credentials(shop: Shop, keys: str) -> str | None:
    """Return why the shop's API credentials cannot be used (for a row's `error`), or None.

    Stored credentials that no key in `keys` opens count as unusable, as does a field the
    platform needs that is missing or empty. The answer names the command that adds them (it
    updates a registered shop) and holds no secret.
    """
    platform = shop.platform.value
    connector = get_connector(platform)
    command = f"flask shops add --platform {platform} --domain {shop.domain} {connector.CREDENTIALS_OPTIONS}"
    try:
        stored = credentials(shop, keys)
    except crypto.SecretDecryptionError:
        return ("the shop's API credentials cannot be decrypted with ENCRYPTION_KEY: "
                f"restore the key, or add them again with `{command}`")
    needed = connector.REQUIRED_CREDENTIALS
    if not isinstance(stored, dict) or any(
        not isinstance(stored.get(name), str) or not stored[name].strip() for name in needed
    ):
        return f"the shop has no API credentials: add them with `{command}`"
    return None


def has_api_credentials(shop: Shop, keys: str) -> bool:
    """Return True when the shop holds credentials its platform's API calls can use."""
    return missing_api_credentials(shop, keys) is None


def api_credentials(shop: Shop, keys: str) -> tuple[dict[str, Any], str | None]:
    """Return (what the platform connector's calls take as credentials, None), or ({}, why the
    shop's API cannot be called: see `missing_api_credentials`)."""
    missing = missing_api_credentials(shop, keys)
    if missing is not None:
        return {}, missing
    return get_connector(shop.platform.value).credentials(shop.domain, credentials(shop, keys)), None
