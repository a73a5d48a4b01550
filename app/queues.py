"""RQ queues on Redis: connection, job ids, and the queue names the worker listens to."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError

QUEUE_NAMES = ("webhooks", "points", "codes", "reminders")
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_url: str | None = None


class RedisNotConfiguredError(RuntimeError):
    """No REDIS_URL is configured for this process."""


def job_id(*parts: object) -> str:
    """Return an RQ-safe deterministic job id from parts (anything unsafe is hashed)."""
    raw = "-".join(str(p) for p in parts)
    if _SAFE.search(raw):
        safe = _SAFE.sub("_", raw)[:80]
        return f"{safe}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"
    return raw


@lru_cache(maxsize=4)
def redis_connection(url: str) -> Redis:
    """Return a Redis client for `url`, with short timeouts so a dead Redis fails fast."""
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def configure(url: str | None) -> None:
    """Set the Redis URL this process enqueues to."""
    global _url
    _url = url


def connection() -> Redis:
    """Return this process's Redis: the running job's connection inside a worker, else REDIS_URL's.

    Raises:
        RedisNotConfiguredError: outside a worker with no REDIS_URL configured.
    """
    job = get_current_job()
    if job is not None:
        return job.connection
    global _url
    if _url is None:
        from app import config

        _url = config.settings()["REDIS_URL"]
    if not _url:
        raise RedisNotConfiguredError("REDIS_URL is not set")
    return redis_connection(_url)


def get_queue(name: str) -> Queue:
    """Return queue `name` on this process's Redis (`connection`).

    Raises:
        RedisNotConfiguredError: outside a worker with no REDIS_URL configured.
    """
    return Queue(name, connection=connection())


def ping() -> None:
    """Check that this process's Redis answers (before a command writes rows it will enqueue).

    Raises:
        RedisNotConfiguredError: no REDIS_URL is configured.
        redis.exceptions.RedisError: Redis does not answer (refused, timed out, wrong password).
    """
    get_queue(QUEUE_NAMES[0]).connection.ping()


def redis_location() -> str:
    """Return host:port/db of the configured Redis for messages (never its password)."""
    from urllib.parse import urlsplit

    if not _url:
        return "(not configured)"
    parts = urlsplit(_url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"


def init_app(app) -> None:  # type: ignore[no-untyped-def]
    """Take the Redis URL from the Flask config."""
    configure(app.config.get("REDIS_URL"))


# Platform calls retry with backoff (RQ's scheduler, `rq worker --with-scheduler`).
PLATFORM_RETRY = Retry(max=5, interval=[10, 60, 300, 900, 3600])


def enqueue_once(queue_name: str, func: str, *args: object, job_id: str, retry: Retry | None = None) -> bool:
    """Enqueue `func(*args)` under a deterministic id unless that job already exists.

    Returns False when it was already queued, scheduled or running. Finished jobs keep no hash
    (result_ttl=0), so a sweep can enqueue the same id again later; the database row's status is
    the real guard against doing the work twice.
    """
    try:
        get_queue(queue_name).enqueue(
            func, *args, job_id=job_id, unique=True, retry=retry, result_ttl=0, failure_ttl=3600
        )
    except DuplicateJobError:
        return False
    return True
