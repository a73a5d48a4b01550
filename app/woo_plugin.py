"""The link with our WordPress plugin: the per-shop secret it signs with, the nonces it used,
and the settings the app writes into the store (no Flask here).

The secret is stored encrypted (`app.crypto`, `Shop.plugin_secret_enc`); `flask shops
plugin-secret` shows or rotates it. A rotation takes effect at once (the old secret stops
working): rotate when a secret may have leaked, and give the store the new one (the command
writes it into the store itself when the shop connected through wc-auth).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app import crypto
from app.db import dialect_insert
from app.models import PluginNonce, Shop
from connectors.woocommerce import consts as woo_consts

logger = logging.getLogger(__name__)

# Nonces are kept a little longer than the window in which their timestamp is accepted.
NONCE_RETENTION = timedelta(seconds=2 * woo_consts.PLUGIN_REPLAY_WINDOW_SECONDS)


def plugin_secret(shop: Shop, keys: str) -> str | None:
    """Return the shop's plugin secret, or None when it has none."""
    if shop.plugin_secret_enc is None:
        return None
    return crypto.decrypt(keys, shop.plugin_secret_enc)


def new_plugin_secret(shop: Shop, keys: str) -> str:
    """Give the shop a new random plugin secret (replacing any) and return it; the caller commits."""
    secret = secrets.token_urlsafe(32)
    shop.plugin_secret_enc = crypto.encrypt(keys, secret)
    return secret


def ensure_plugin_secret(shop: Shop, keys: str) -> str:
    """Return the shop's plugin secret, making one if it has none; the caller commits."""
    return plugin_secret(shop, keys) or new_plugin_secret(shop, keys)


def plugin_settings(shop: Shop, secret: str, public_url: str) -> dict[str, str]:
    """Return the plugin's three settings for this shop, by option name."""
    return {
        woo_consts.PLUGIN_OPTION_APP_URL: public_url.rstrip("/"),
        woo_consts.PLUGIN_OPTION_SHOP_ID: str(shop.id),
        woo_consts.PLUGIN_OPTION_SECRET: secret,
    }


def accept_nonce(session: Session, shop_id: int, nonce: str, now: datetime) -> bool:
    """Record a nonce of the shop's plugin; False when it was used before (a replay).

    The primary key settles two requests racing with one nonce: exactly one is accepted.
    """
    stmt = dialect_insert(session, PluginNonce.__table__).values(shop_id=shop_id, nonce=nonce, seen_at=now)
    inserted = session.execute(
        stmt.on_conflict_do_nothing(index_elements=["shop_id", "nonce"]).returning(PluginNonce.__table__.c.nonce)
    ).scalar()
    return inserted is not None


def purge_nonces(session: Session, now: datetime) -> int:
    """Delete the nonces too old to be replayed anyway; return how many."""
    result = session.execute(delete(PluginNonce).where(PluginNonce.seen_at < now - NONCE_RETENTION))
    return int(result.rowcount or 0)
