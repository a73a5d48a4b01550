"""Blueprint "webhooks": raw bytes -> verify -> record -> commit -> hand to dispatcher -> 2xx.

No platform API call and no ledger write happens here. The answer table (each line tested):

| case                                         | answer |
|----------------------------------------------|--------|
| WooCommerce ping (`webhook_id=N`, unsigned)  | 200    |
| missing signature header                     | 400    |
| unknown shop, or signature does not match    | 401    |
| shop known but no secret configured          | 500    |
| not POST                                     | 405    |
| body over MAX_CONTENT_LENGTH (1 MiB)         | 413    |
| topic header missing                         | 400    |
| known but unhandled topic                    | 200    |
| body is not a JSON object                    | 400    |
| duplicate delivery                           | 200    |
| database unavailable                         | 503    |
| accepted                                     | 200    |
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

import psycopg
from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError

from app import db
from app.models import Shop, utcnow
from app.shops import webhook_secrets
from connectors import CONNECTORS
from connectors.errors import InvalidSignatureError, MissingSignatureError

logger = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)

_KEPT_HEADER_PREFIXES = ("x-shopify-", "shopify-", "x-wc-webhook-")


def _answer(status: int, message: str) -> tuple[Any, int]:
    return jsonify({"status": status, "message": message}), status


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith(_KEPT_HEADER_PREFIXES)}


class _ShopCache:
    """Shop rows by (platform, domain) for a few seconds, so a hot webhook path skips a query."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[float, Shop]] = {}

    def get(self, platform: str, domain: str, ttl: float) -> Shop | None:
        key = (platform, domain)
        hit = self._rows.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        with db.get_engine().connect() as conn:
            row = conn.execute(
                select(Shop.__table__).where(Shop.platform == platform, Shop.domain == domain)
            ).first()
        if row is None:
            self._rows.pop(key, None)
            return None
        shop = Shop(**row._asdict())
        if ttl > 0:
            self._rows[key] = (now, shop)
        return shop


_shops = _ShopCache()

# The delivery INSERT, written once per dialect: this is the request's only write, and building
# it through SQLAlchemy's statement compiler and transaction machinery cost ~20x the INSERT itself
# (bench/RESULTS.md). ON CONFLICT ... DO NOTHING RETURNING id settles duplicates in the database.
_COLUMNS = "shop_id, platform, topic, dedupe_key, headers, body, status, attempts, received_at"
_INSERT = {
    "sqlite": f"INSERT INTO webhook_deliveries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'received', 0, ?) "
              "ON CONFLICT (shop_id, dedupe_key) DO NOTHING RETURNING id",
    "postgresql": f"INSERT INTO webhook_deliveries ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s::json, %s, 'received', "
                  "0, %s) ON CONFLICT (shop_id, dedupe_key) DO NOTHING RETURNING id",
}
_DRIVER_ERRORS = (sqlite3.OperationalError, psycopg.OperationalError, psycopg.InterfaceError)


def record_delivery(shop_id: int, platform: str, topic: str, key: str, headers: dict[str, str],
                    body: bytes) -> int | None:
    """Insert the delivery and commit; return its id, or None when it is a duplicate."""
    engine = db.get_engine()
    dialect = engine.dialect.name
    now = utcnow()
    # SQLite stores our UTC timestamps naive, in SQLAlchemy's text format (models.UTCDateTime).
    received = now.replace(tzinfo=None).isoformat(" ", "microseconds") if dialect == "sqlite" else now
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        # On SQLite the driver runs in autocommit mode (app.db), so this statement commits itself.
        cursor.execute(_INSERT[dialect], (shop_id, platform, topic, key, json.dumps(headers), body, received))
        row = cursor.fetchone()
        cursor.close()
        if dialect != "sqlite":
            raw.commit()
    except BaseException:
        if dialect != "sqlite":
            raw.invalidate()  # a broken PostgreSQL connection must not go back to the pool
        raise
    finally:
        raw.close()
    return None if row is None else int(row[0])


@bp.post("/webhooks/<platform>")
def receive(platform: str) -> Any:
    """Accept one platform delivery."""
    connector = CONNECTORS.get(platform)
    if connector is None:
        return _answer(404, "unknown platform")
    body = request.get_data(cache=False)  # raw bytes first (413 above MAX_CONTENT_LENGTH)
    headers = request.headers
    if connector.is_ping(headers, body):
        return "", 200

    domain = connector.shop_from_headers(headers)
    try:
        shop = _shops.get(platform, domain, current_app.config["SHOP_CACHE_SECONDS"]) if domain else None
    except (OperationalError, DBAPIError):
        logger.exception("database unavailable", extra={"platform": platform})
        return _answer(503, "database unavailable, retry later")
    cfg = current_app.config
    if shop is None:
        secret, old = "", None  # still check the header, so a missing one is 400 as the table says
    else:
        secrets = webhook_secrets(
            shop,
            cfg["ENCRYPTION_KEY"],
            cfg["SHOPIFY_API_SECRET"] if platform == "shopify" else None,
            cfg["SHOPIFY_API_SECRET_OLD"] if platform == "shopify" else None,
            utcnow(),
        )
        secret, old = secrets.current or "", secrets.old
    try:
        # With no shop or no secret this still tells a missing header (400) from a bad one.
        connector.verify(headers, body, secret=secret, old_secret=old)
    except MissingSignatureError:
        return _answer(400, "missing signature")
    except InvalidSignatureError:
        if shop is None:
            logger.info("delivery for unknown shop", extra={"platform": platform})
            return _answer(401, "unknown shop")
        if not secret:
            logger.error("no webhook secret configured", extra={"platform": platform, "shop": shop.id})
            return _answer(500, "webhook secret not configured")
        logger.warning("invalid webhook signature", extra={"platform": platform, "shop": shop.id})
        return _answer(401, "invalid signature")
    assert shop is not None

    topic = connector.topic_from_headers(headers)
    if not topic:
        return _answer(400, "missing topic header")
    if topic not in connector.SUPPORTED_TOPICS:
        logger.info("unhandled topic", extra={"platform": platform, "shop": shop.id, "topic": topic})
        return _answer(200, "topic not handled")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _answer(400, "body is not JSON")
    if not isinstance(payload, dict):
        return _answer(400, "body is not a JSON object")
    key = connector.delivery_key(headers, body, payload)
    try:
        new_id = record_delivery(shop.id, platform, topic, key, _kept_headers(headers), body)
    except (OperationalError, DBAPIError, *_DRIVER_ERRORS):
        logger.exception("database unavailable", extra={"platform": platform, "shop": shop.id, "topic": topic})
        return _answer(503, "database unavailable, retry later")
    if new_id is None:
        logger.info("duplicate delivery", extra={"platform": platform, "shop": shop.id, "topic": topic})
        return _answer(200, "duplicate")
    current_app.extensions["dispatcher"].notify(new_id)
    return _answer(200, "accepted")
