"""Prometheus metrics: the counters the processes increment, and the gauges read at scrape time.

Counters (`prometheus_client`, ~1 µs an increment) are defined here once and incremented where
the event happens: the webhook receiver, the code jobs around platform calls, the mailers. Under
gunicorn (several processes) the library keeps each process's values in files under
PROMETHEUS_MULTIPROC_DIR, which it reads from the environment when it is first imported: the
runner and the Procfile set it for every process, and `/metrics` then adds up the files.

Gauges about the backlog (queue depths, deliveries waiting and the oldest one's age, codes
pending and failed) are not kept by any process: `BacklogCollector` asks the database and Redis
when Prometheus scrapes, with indexed queries only. No Flask here: jobs import this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from app.models import CodeStatus, DeliveryStatus, IssuedCode, WebhookDelivery
from connectors.errors import PermanentError, RateLimitedError, TransientError, UnauthorizedError

logger = logging.getLogger(__name__)

WEBHOOK_DELIVERIES = Counter(
    "stammkunde_webhook_deliveries",
    "Webhook deliveries received, by platform, topic and the status we answered",
    ["platform", "topic", "status"],
)
PLATFORM_API_ERRORS = Counter(
    "stammkunde_platform_api_errors",
    "Failed platform API calls by platform, operation and kind (rate_limited, transient, "
    "unauthorized, permanent)",
    ["platform", "operation", "kind"],
)
DELIVERIES_HANDLED = Counter(
    "stammkunde_deliveries_handled",
    "Deliveries the worker finished, by platform, topic and outcome (processed, failed)",
    ["platform", "topic", "outcome"],
)
DELIVERY_LAG = Histogram(
    "stammkunde_delivery_lag_seconds",
    "Seconds from a delivery's arrival to the commit of its processing",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
)
EMAILS = Counter(
    "stammkunde_emails",
    "E-mails handed to the transport, by transport (smtp, outbox) and outcome (sent, "
    "transient_error, permanent_error)",
    ["transport", "outcome"],
)


def error_kind(exc: BaseException) -> str | None:
    """Return the metric label for a connector failure, or None when it is no platform error."""
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, UnauthorizedError):
        return "unauthorized"
    if isinstance(exc, PermanentError):
        return "permanent"
    return None


@contextmanager
def platform_call(platform: str, operation: str) -> Iterator[None]:
    """Count a platform call's failure by kind; the exception goes on unchanged.

    Raises:
        Exception: whatever the call raised, after counting it.
    """
    try:
        yield
    except Exception as exc:
        kind = error_kind(exc)
        if kind is not None:
            PLATFORM_API_ERRORS.labels(platform, operation, kind).inc()
        raise


class BacklogCollector(Collector):
    """Gauges computed at scrape time: queue depths, waiting deliveries, codes pending and failed."""

    def __init__(self, engine: Callable[[], Engine], redis: Callable[[], Any], queue_names: tuple[str, ...]) -> None:
        self._engine = engine
        self._redis = redis
        self._queue_names = queue_names

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the backlog gauges; a source that cannot be reached is left out and logged."""
        yield from self._database()
        yield from self._queues()

    def _database(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._engine().connect() as conn:
                waiting = backlog(conn)
                # Two range counts on ix_issued_codes_status_created_at.
                codes = {
                    status: conn.scalar(select(func.count()).select_from(IssuedCode).where(IssuedCode.status == status))
                    for status in (CodeStatus.PENDING, CodeStatus.FAILED)
                }
        except SQLAlchemyError:
            logger.warning("metrics: database unreachable", exc_info=True)
            return
        yield GaugeMetricFamily(
            "stammkunde_deliveries_waiting", "Deliveries accepted and not yet handled (status received)",
            value=waiting["count"],
        )
        yield GaugeMetricFamily(
            "stammkunde_oldest_waiting_delivery_age_seconds",
            "Age of the oldest delivery still waiting to be handled (0 when none waits)",
            value=waiting["oldest_age_seconds"] or 0.0,
        )
        family = GaugeMetricFamily("stammkunde_codes", "Discount codes by status", labels=["status"])
        for status, count in codes.items():
            family.add_metric([status.value], count or 0)
        yield family

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        from redis.exceptions import RedisError
        from rq import Queue

        try:
            conn = self._redis()
            depths = {name: Queue(name, connection=conn).count for name in self._queue_names}
        except (RedisError, OSError, RuntimeError):  # RuntimeError: REDIS_URL not configured
            logger.warning("metrics: redis unreachable", exc_info=True)
            return
        family = GaugeMetricFamily("stammkunde_queue_jobs", "Jobs waiting in each RQ queue", labels=["queue"])
        for name, depth in depths.items():
            family.add_metric([name], depth)
        yield family


def backlog(conn: Any, now: datetime | None = None) -> dict[str, Any]:
    """Return the waiting deliveries: count, oldest id and its age in seconds (None when none waits).

    Both queries walk ix_webhook_deliveries_status_id (status, id): the oldest waiting delivery is
    the first id in the `received` range.
    """
    received = WebhookDelivery.status == DeliveryStatus.RECEIVED
    count = conn.scalar(select(func.count()).select_from(WebhookDelivery).where(received)) or 0
    oldest = conn.execute(
        select(WebhookDelivery.id, WebhookDelivery.received_at).where(received).order_by(WebhookDelivery.id).limit(1)
    ).first()
    if oldest is None:
        return {"count": count, "oldest_id": None, "oldest_age_seconds": None}
    received_at = oldest.received_at
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=timezone.utc)
    age = ((now or datetime.now(timezone.utc)) - received_at).total_seconds()
    return {"count": count, "oldest_id": oldest.id, "oldest_age_seconds": round(max(age, 0.0), 3)}


def exposition(multiproc_dir: str | None, collector: Collector) -> bytes:
    """Return the text exposition: this process's registry, or every process's files under
    `multiproc_dir` (gunicorn), plus the scrape-time `collector`."""
    if multiproc_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    registry.register(collector)
    return generate_latest(registry)


class _Forward(Collector):
    """Expose the default registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        yield from self._source.collect()
