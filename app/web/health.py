"""`/healthz`, `/readyz` and `/metrics`: for load balancers, uptime monitors and Prometheus.

No log-in, no personal data, and cheap: `/healthz` touches nothing; `/readyz` and `/metrics` run a
few indexed queries and Redis reads (no table scans). `/readyz` answers 503 naming the checks that
fail (database, redis, worker); the backlog (queue depths, waiting deliveries and the oldest one's
age) is reported but does not make the app unready, since the receiver must keep accepting
deliveries while a backlog drains.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app import db, queues, telemetry

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """Liveness: the process answers requests."""
    return jsonify(status="ok")


def _redis() -> Any:
    url = current_app.config["REDIS_URL"]
    if not url:
        raise queues.RedisNotConfiguredError("REDIS_URL is not set")
    return queues.redis_connection(url)


def _check_database() -> tuple[bool, dict[str, Any]]:
    try:
        with db.get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            waiting = telemetry.backlog(conn)
    except SQLAlchemyError as exc:
        logger.warning("readyz: database unreachable", extra={"error_class": type(exc).__name__})
        return False, {"ok": False, "error": type(exc).__name__}
    return True, {"ok": True, "deliveries_waiting": waiting["count"], "oldest_waiting_delivery": {
        "id": waiting["oldest_id"], "age_seconds": waiting["oldest_age_seconds"]}}


def _check_redis_and_worker() -> tuple[dict[str, Any], dict[str, Any]]:
    from rq import Queue, Worker

    max_age = current_app.config["READY_HEARTBEAT_MAX_AGE_SECONDS"]
    try:
        conn = _redis()
        conn.ping()
        depths = {name: Queue(name, connection=conn).count for name in queues.QUEUE_NAMES}
        workers = Worker.all(connection=conn)
    except (RedisError, OSError, queues.RedisNotConfiguredError) as exc:
        logger.warning("readyz: redis unreachable", extra={"error_class": type(exc).__name__})
        failed = {"ok": False, "error": type(exc).__name__}
        return failed, {"ok": False, "error": "redis unreachable"}
    now = datetime.now(timezone.utc)
    ages = [
        (now - (w.last_heartbeat if w.last_heartbeat.tzinfo else w.last_heartbeat.replace(tzinfo=timezone.utc)))
        .total_seconds()
        for w in workers
        if w.last_heartbeat is not None
    ]
    newest = min(ages) if ages else None
    worker = {
        "ok": newest is not None and newest <= max_age,
        "workers": len(workers),
        "last_heartbeat_age_seconds": None if newest is None else round(max(newest, 0.0), 3),
        "max_age_seconds": max_age,
    }
    return {"ok": True, "queues": depths}, worker


@bp.get("/readyz")
def readyz() -> Any:
    """Readiness: database and Redis reachable, a worker's heartbeat seen recently; 503 otherwise."""
    _, database = _check_database()
    redis, worker = _check_redis_and_worker()
    checks = {"database": database, "redis": redis, "worker": worker}
    failing = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "ready" if not failing else "unready", "failing": failing, "checks": checks}
    return jsonify(body), 200 if not failing else 503


@bp.get("/metrics")
def metrics() -> Any:
    """Prometheus text exposition: the counters of every web process, and the backlog gauges."""
    from prometheus_client import CONTENT_TYPE_LATEST

    collector = telemetry.BacklogCollector(db.get_engine, _redis, queues.QUEUE_NAMES)
    payload = telemetry.exposition(current_app.config["PROMETHEUS_MULTIPROC_DIR"], collector)
    return payload, 200, {"Content-Type": CONTENT_TYPE_LATEST}


def init_app(app: Flask) -> None:
    """Register the blueprint; its views need no CSRF token and no log-in."""
    app.register_blueprint(bp)
