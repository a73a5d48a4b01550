"""`POST /webhooks/<platform>`: raw bytes -> verify -> record -> commit -> hand to dispatcher -> 2xx.

This is the app's hot path, and it is a plain WSGI app in front of Flask (`WebhookReceiver`):
Flask's request context, session, CSRF, log-in and Babel hooks serve the admin pages and cost more
than the delivery's own work (bench/RESULTS.md). The row is written by `app.inbox.record_delivery`
(one committed INSERT); no platform API call and no ledger write happens here. The answer table
(each line tested):

| case                                         | answer |
|----------------------------------------------|--------|
| WooCommerce ping (`webhook_id=N`, unsigned)  | 200    |
| missing signature header                     | 400    |
| unknown shop, or signature does not match    | 401    |
| shop erased since its row was read (cached)  | 401    |
| shop known but no secret configured          | 500    |
| not POST                                     | 405    |
| body over MAX_CONTENT_LENGTH (1 MiB)         | 413    |
| topic header missing                         | 400    |
| unknown platform, or a path below it         | 404    |
| known but unhandled topic                    | 200    |
| body is not a JSON object                    | 400    |
| duplicate delivery                           | 200    |
| database unavailable                         | 503    |
| accepted                                     | 200    |
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length, get_input_stream

from app import db, inbox
from app.telemetry import WEBHOOK_DELIVERIES
from app.models import Shop, utcnow
from app.shops import webhook_secrets
from connectors import CONNECTORS
from connectors.errors import InvalidSignatureError, MissingSignatureError

logger = logging.getLogger(__name__)

PREFIX = "/webhooks/"
# The platform headers a worker needs (topic, ids, versions), as WSGI environ keys.
_KEPT_ENVIRON_PREFIXES = ("HTTP_X_SHOPIFY_", "HTTP_SHOPIFY_", "HTTP_X_WC_WEBHOOK_")

Answer = tuple[str, list[tuple[str, str]], bytes]
# Where `receive` leaves the delivery's topic for the metrics label (set once the signature holds).
_TOPIC_KEY = "stammkunde.topic"


@functools.cache
def _answer(status: int, message: str) -> Answer:
    """The (status line, headers, body) of a JSON answer; built once per kind of answer."""
    body = json.dumps({"status": status, "message": message}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if status == 405:
        headers.append(("Allow", "POST"))
    return f"{status} {HTTPStatus(status).phrase}", headers, body


_PING: Answer = ("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "0")], b"")


def _kept_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The platform's headers, named as werkzeug names them ("X-Shopify-Topic")."""
    return {
        key[5:].replace("_", "-").title(): value
        for key, value in environ.items()
        if key.startswith(_KEPT_ENVIRON_PREFIXES)
    }


def _parse_json(body: bytes) -> Any:
    """Parse the body (orjson, ~5x faster on a 4 KB order); what orjson refuses, the stdlib decides.

    orjson is stricter than the stdlib (it refuses NaN and Infinity), and the answer must not
    depend on the parser: a body the stdlib accepts is accepted, unless it nests deeper than
    Python's recursion limit (RecursionError) or holds a lone UTF-16 surrogate ("\\ud800", which
    the stdlib accepts but no database can store: UnicodeEncodeError, a ValueError). The caller
    answers both with 400.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = json.loads(body)
        _require_unicode(payload)
        return payload


def _require_unicode(payload: Any) -> None:
    """Raise UnicodeEncodeError when a key or string anywhere in `payload` is not valid Unicode."""
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


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
        # Autocommit: a plain read, no transaction, so it never waits for SQLite's write lock.
        with db.get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
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


def cached_shop(platform: str, domain: str, ttl: float) -> Shop | None:
    """Return the shop row (a detached copy, at most `ttl` seconds old) for a hot read path: the
    webhook receiver and the app proxy's reads."""
    return _shops.get(platform, domain, ttl)

def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    """Return the raw body; a body over `limit` bytes, declared or streamed, raises 413."""
    if get_content_length(environ) is not None or "wsgi.input_terminated" not in environ:
        # werkzeug refuses a declared length over the limit and never reads past the declared one.
        return get_input_stream(environ, max_content_length=limit).read()
    # A chunked body the server de-chunks: one byte over the limit tells it is too large.
    body = environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


class WebhookReceiver:
    """WSGI middleware: `POST /webhooks/<platform>` is answered here, every other path by `fallback`.

    It reads the app's config and dispatcher on every request (tests and the benchmarks change them
    after `create_app`), so it holds the Flask app rather than copies.
    """

    def __init__(self, app: Any, fallback: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.fallback = fallback

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.fallback(environ, start_response)
        platform = path[len(PREFIX):]
        try:
            status, headers, body = self.receive(environ, platform)
        except Exception:
            if self.app.config.get("PROPAGATE_EXCEPTIONS") or self.app.testing:
                raise
            logger.exception("webhook receiver failed")
            status, headers, body = _answer(500, "internal error, retry later")
        # Labels stay few: an unknown platform or topic is counted as "other".
        WEBHOOK_DELIVERIES.labels(
            platform if platform in CONNECTORS else "other", environ.get(_TOPIC_KEY, ""), status[:3]
        ).inc()
        start_response(status, headers)
        return [body]

    def receive(self, environ: dict[str, Any], platform: str) -> Answer:
        """Accept one platform delivery; return the answer of the table above."""
        connector = CONNECTORS.get(platform)
        if connector is None or "/" in platform:
            return _answer(404, "unknown platform")
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(405, "method not allowed")
        cfg = self.app.config
        try:
            body = _read_body(environ, cfg["MAX_CONTENT_LENGTH"])  # raw bytes first
        except RequestEntityTooLarge:
            return _answer(413, "body too large")
        headers = EnvironHeaders(environ)
        if connector.is_ping(headers, body):
            return _PING

        domain = connector.shop_from_headers(headers)
        try:
            shop = _shops.get(platform, domain, cfg["SHOP_CACHE_SECONDS"]) if domain else None
        except (OperationalError, DBAPIError):
            logger.exception("database unavailable", extra={"platform": platform})
            return _answer(503, "database unavailable, retry later")
        if shop is None:
            secret, old = "", None  # still check the header, so a missing one is 400 as the table says
        else:
            # A platform whose app signs every shop's webhooks (Shopify) falls back to the app's secret.
            shopify = connector.WEBHOOKS_SIGNED_BY_APP
            secrets = webhook_secrets(
                shop,
                cfg["ENCRYPTION_KEY"],
                cfg["SHOPIFY_API_SECRET"] if shopify else None,
                cfg["SHOPIFY_API_SECRET_OLD"] if shopify else None,
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
        environ[_TOPIC_KEY] = topic if topic in connector.SUPPORTED_TOPICS else "other"
        if topic not in connector.SUPPORTED_TOPICS:
            logger.info("unhandled topic", extra={"platform": platform, "shop": shop.id, "topic": topic})
            return _answer(200, "topic not handled")
        try:
            payload = _parse_json(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _answer(400, "body is not JSON")
        if not isinstance(payload, dict):
            return _answer(400, "body is not a JSON object")
        key = connector.delivery_key(headers, body, payload)
        try:
            new_id = inbox.record_delivery(shop.id, platform, topic, key, _kept_headers(environ), body)
        except inbox.ShopGoneError:
            logger.info("delivery for a shop erased meanwhile", extra={"platform": platform, "shop": shop.id})
            return _answer(401, "unknown shop")
        except (OperationalError, DBAPIError, *inbox.DRIVER_ERRORS):
            logger.exception("database unavailable", extra={"platform": platform, "shop": shop.id, "topic": topic})
            return _answer(503, "database unavailable, retry later")
        if new_id is None:
            logger.info("duplicate delivery", extra={"platform": platform, "shop": shop.id, "topic": topic})
            return _answer(200, "duplicate")
        self.app.extensions["dispatcher"].notify(new_id)
        return _answer(200, "accepted")


def init_app(app: Any) -> None:
    """Put the receiver in front of the Flask app (so the test client goes through it too)."""
    app.wsgi_app = WebhookReceiver(app, app.wsgi_app)  # type: ignore[method-assign]
