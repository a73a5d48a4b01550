"""Registering shops and resolving their webhook secrets (no Flask here)."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import crypto
from app.models import OAuthState, Platform, Shop, ShopStatus, utcnow
from app.rate_limits import shared_throttle
from connectors import get_connector

logger = logging.getLogger(__name__)

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


# ---- installing a Shopify shop, and keeping its expiring token fresh ---------------------------

# An install's `state` is good for this long after the merchant was sent to Shopify.
STATE_MAX_AGE = timedelta(minutes=15)
# A token is refreshed when it has less than this left, so a call never starts with a dying token.
REFRESH_MARGIN = timedelta(minutes=5)
# How long a worker's claim on a refresh lasts (the token request has a 25 s timeout).
REFRESH_CLAIM = timedelta(seconds=40)


class ShopNeedsReauthorizationError(RuntimeError):
    """The shop's grant is expired or revoked: its outgoing calls wait until the merchant installs again."""


class TokenRefreshBusyError(RuntimeError):
    """Another worker is refreshing the shop's token right now; retry in a moment."""


def new_install_state(session: Session, platform: str, shop_domain: str, now: datetime | None = None) -> str:
    """Record and return a single-use `state` nonce for an install of `shop_domain`."""
    nonce = secrets.token_urlsafe(32)
    session.add(OAuthState(nonce=nonce, platform=platform, shop_domain=shop_domain, created_at=now or utcnow()))
    session.flush()
    return nonce


def use_install_state(session: Session, nonce: str, platform: str, shop_domain: str,
                      now: datetime | None = None) -> bool:
    """Spend a `state` nonce: True only once, for its platform and shop, within STATE_MAX_AGE.

    A nonce presented with another shop is spent all the same (it was single-use anyway).
    """
    return spend_install_state(session, nonce, platform, now) == shop_domain


def spend_install_state(session: Session, nonce: str, platform: str, now: datetime | None = None) -> str | None:
    """Spend a `state` nonce whose shop the callback does not name (WooCommerce echoes only our
    nonce); returns the shop it was made for, once, within STATE_MAX_AGE, else None."""
    now = now or utcnow()
    return session.execute(
        update(OAuthState)
        .where(OAuthState.nonce == nonce, OAuthState.platform == platform, OAuthState.used_at.is_(None),
               OAuthState.created_at >= now - STATE_MAX_AGE)
        .values(used_at=now)
        .returning(OAuthState.shop_domain)
    ).scalar()


def connect_woocommerce_shop(session: Session, *, keys: str, store_url: str, consumer_key: str,
                             consumer_secret: str, now: datetime | None = None) -> tuple[Shop, bool]:
    """Create, or update, a WooCommerce shop with the key its admin granted through wc-auth.

    A new webhook secret is generated for the webhooks we create next (a previous one keeps
    working for OLD_SECRET_GRACE, so webhooks made before still verify). Returns (shop, created).
    """
    now = now or utcnow()
    shop, created = register_shop(
        session, keys=keys, platform="woocommerce", domain=store_url, webhook_secret=secrets.token_urlsafe(32),
        credentials={"consumer_key": consumer_key, "consumer_secret": consumer_secret}, now=now,
    )
    shop.status = ShopStatus.ACTIVE
    shop.uninstalled_at = None
    shop.installed_at = now
    session.flush()
    return shop, created


def install_shopify_shop(session: Session, *, keys: str, domain: str, grant: Any,
                         now: datetime | None = None) -> tuple[Shop, bool]:
    """Create, or re-activate, a Shopify shop with the token `grant` of a finished install.

    A shop installed before keeps its customers, ledger and program; its old token is replaced.
    `grant`: a `connectors.shopify.client.TokenGrant`. Returns (shop, created).
    """
    now = now or utcnow()
    stored = {"access_token": grant.access_token}
    if grant.refresh_token is not None:
        stored["refresh_token"] = grant.refresh_token
    shop, created = register_shop(session, keys=keys, platform="shopify", domain=domain, webhook_secret=None,
                                  credentials=stored, now=now)
    shop.access_token_expires_at = grant.expires_at
    shop.refresh_token_expires_at = grant.refresh_expires_at
    shop.granted_scopes = ",".join(grant.scopes)
    shop.status = ShopStatus.ACTIVE
    shop.uninstalled_at = None
    shop.needs_reauth_at = None
    shop.token_refresh_claimed_until = None
    shop.installed_at = now
    session.flush()
    return shop, created


def missing_scopes(shop: Shop, needed: tuple[str, ...]) -> list[str]:
    """Return the scopes the shop's features need that its install did not grant."""
    granted = set((shop.granted_scopes or "").split(","))
    # Shopify grants write_x without listing read_x (write implies read).
    implied = {"read_" + s[len("write_"):] for s in granted if s.startswith("write_")}
    return [s for s in needed if s not in granted | implied]


def fresh_credentials(
    shop_id: int,
    *,
    keys: str,
    refresh: Callable[[str, str, datetime], Any],
    now: Callable[[], datetime] = utcnow,
    force: bool = False,
) -> dict[str, Any]:
    """Return the shop's API credentials, refreshing an expiring Shopify token first.

    `refresh(shop_domain, refresh_token, now)` returns a new `TokenGrant` (the client's
    `refresh_access_token` with the app's key and secret bound). `force`: refresh even if the
    token looks fresh (the API just answered 401).

    Exactly one worker refreshes at a time: it claims the refresh in one UPDATE (the database
    settles the race), calls Shopify outside any transaction, and stores the new pair in one
    transaction. A worker that finds the claim taken waits briefly and re-reads; the new token is
    then there. Nothing holds a database lock during the call.

    Raises:
        ShopNeedsReauthorizationError: the grant is expired or revoked (the shop is marked).
        TokenRefreshBusyError: another worker's refresh did not finish in time (retry later).
        TransientError: Shopify did not answer the refresh (retry later).
    """
    from app.db import session_scope
    from connectors.errors import AuthorizationExpiredError

    deadline = time.monotonic() + REFRESH_CLAIM.total_seconds()
    while True:
        with session_scope() as session:
            shop = session.get(Shop, shop_id)
            if shop is None:
                raise UnknownShopError(f"no shop with id {shop_id}")
            stored = credentials(shop, keys)
            if shop.needs_reauth_at is not None:
                raise ShopNeedsReauthorizationError(f"shop {shop.domain} must be installed again")
            current = now()
            expiring = shop.access_token_expires_at is not None and \
                shop.access_token_expires_at - REFRESH_MARGIN <= current
            if not (expiring or force) or not stored.get("refresh_token"):
                return {**stored, "shop": shop.domain}
            seen_token = stored.get("access_token")
            claimed = session.execute(
                update(Shop)
                .where(Shop.id == shop_id,
                       (Shop.token_refresh_claimed_until.is_(None)) | (Shop.token_refresh_claimed_until < current))
                .values(token_refresh_claimed_until=current + REFRESH_CLAIM)
            ).rowcount == 1
            domain, refresh_token = shop.domain, stored["refresh_token"]
        if claimed:
            break
        # Another worker refreshes: wait for its new token (a forced refresh is satisfied by it too).
        while time.monotonic() < deadline:
            time.sleep(0.2)
            with session_scope() as session:
                shop = session.get(Shop, shop_id)
                assert shop is not None
                if credentials(shop, keys).get("access_token") != seen_token or shop.needs_reauth_at is not None:
                    force = False
                    break
                if shop.token_refresh_claimed_until is None or shop.token_refresh_claimed_until < now():
                    break  # the claim ended without a new token: try to claim it ourselves
        else:
            raise TokenRefreshBusyError(f"shop {domain}: another worker is refreshing its token")
    try:
        grant = refresh(domain, refresh_token, now())
    except AuthorizationExpiredError:
        with session_scope() as session:
            shop = session.get(Shop, shop_id)
            assert shop is not None
            shop.needs_reauth_at = now()
            shop.token_refresh_claimed_until = None
        logger.warning("shop needs re-authorisation", extra={"shop": shop_id})
        raise ShopNeedsReauthorizationError(f"shop {domain} must be installed again") from None
    except BaseException:
        with session_scope() as session:
            session.execute(update(Shop).where(Shop.id == shop_id).values(token_refresh_claimed_until=None))
        raise
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        shop.api_credentials_enc = crypto.encrypt(
            keys, json.dumps({"access_token": grant.access_token,
                              "refresh_token": grant.refresh_token or refresh_token}))
        shop.access_token_expires_at = grant.expires_at
        if grant.refresh_expires_at is not None:
            shop.refresh_token_expires_at = grant.refresh_expires_at
        shop.token_refresh_claimed_until = None
        logger.info("shop token refreshed", extra={"shop": shop_id})
        return {"access_token": grant.access_token, "refresh_token": grant.refresh_token or refresh_token,
                "shop": shop.domain}


def api_credentials(shop: Shop, keys: str) -> tuple[dict[str, Any], str | None]:
    """Return (what the platform connector's calls take as credentials, None), or ({}, why the
    shop's API cannot be called: see `missing_api_credentials`)."""
    missing = missing_api_credentials(shop, keys)
    if missing is not None:
        return {}, missing
    platform = shop.platform.value
    return get_connector(platform).credentials(shop.domain, credentials(shop, keys),
                                               throttle=shared_throttle(platform)), None
