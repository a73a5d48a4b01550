"""Support's view of the machinery: a webhook delivery in full (headers with secrets redacted,
body, the orders and ledger lines it produced) with replay, and the job queues (depths, failed
jobs with their error, retry). Routes of the "admin" blueprint (app.web.admin).

A delivery belongs to a shop (404 for staff of other shops). Jobs carry no shop of their own,
so the queues page is for administrators only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from app import db
from app.models import LedgerEntry, Order, Shop, WebhookDelivery
from app.queues import QUEUE_NAMES, RedisNotConfiguredError, get_queue
from app.web.access import audit, can_see, current_access
from app.web.admin import bp

logger = logging.getLogger(__name__)

# Header names (lower case) whose values are credentials: never shown, whatever the platform.
_SECRET_WORDS = ("hmac", "signature", "secret", "token", "authorization", "cookie", "api-key", "password")
FAILED_JOBS_SHOWN = 100


def redact_headers(headers: dict[str, str]) -> list[tuple[str, str, bool]]:
    """Return (name, value, redacted) for each header, sorted by name, credentials blanked."""
    shown = []
    for name in sorted(headers or {}, key=str.lower):
        secret = any(word in name.lower() for word in _SECRET_WORDS)
        shown.append((name, "" if secret else str(headers[name]), secret))
    return shown


def _body_text(body: bytes | None) -> tuple[str, bool]:
    """Return the body as text (pretty JSON when it is JSON) and whether it was JSON."""
    raw = bytes(body or b"")
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=True), True
    except ValueError:
        return text, False


@bp.get("/deliveries/<int:delivery_id>")
def delivery(delivery_id: int) -> Any:
    """One delivery: its state, headers (credentials redacted), body, and what it produced."""
    session = db.request_session()
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or not can_see(row.shop_id):
        abort(404)
    shop = session.get(Shop, row.shop_id)
    entries = session.scalars(
        select(LedgerEntry).where(LedgerEntry.delivery_id == row.id).order_by(LedgerEntry.id)).all()
    order_ids = {e.order_id for e in entries if e.order_id}
    orders = session.scalars(select(Order).where(Order.id.in_(order_ids)).order_by(Order.id)).all() if order_ids else []
    body, is_json = _body_text(row.body)
    session.commit()
    return render_template("admin/delivery.html", delivery=row, shop=shop, headers=redact_headers(row.headers),
                           body=body, is_json=is_json, entries=entries, orders=orders)


def _queues() -> list[Queue]:
    return [get_queue(name) for name in QUEUE_NAMES]


def _require_admin() -> None:
    if not current_access().is_admin:
        abort(403)


@bp.get("/jobs")
def jobs() -> Any:
    """Queue depths and the failed jobs of each queue (RQ's failed registry), newest first."""
    _require_admin()
    try:
        queues = _queues()
        depths = [{"name": q.name, "waiting": q.count, "failed": FailedJobRegistry(queue=q).count} for q in queues]
        failed = []
        for q in queues:
            registry = FailedJobRegistry(queue=q)
            ids = registry.get_job_ids(0, FAILED_JOBS_SHOWN - 1, desc=True)
            for job in Job.fetch_many(ids, connection=q.connection):
                if job is None:
                    continue
                result = job.latest_result()
                error = (result.exc_string or "") if result is not None else ""
                failed.append({"id": job.id, "queue": q.name, "func": job.func_name, "ended_at": job.ended_at,
                               "error": error.strip().splitlines()[-1] if error.strip() else "",
                               "traceback": error})
        unavailable = None
    except (RedisError, RedisNotConfiguredError) as exc:
        logger.warning("job queues not reachable", extra={"error_class": type(exc).__name__})
        depths, failed, unavailable = [], [], type(exc).__name__
    return render_template("admin/jobs.html", depths=depths, failed=failed, unavailable=unavailable)


@bp.post("/jobs/<queue_name>/<job_id>/retry")
def retry_job(queue_name: str, job_id: str) -> Any:
    """Put a failed job back on its queue (RQ requeue), once."""
    _require_admin()
    if queue_name not in QUEUE_NAMES:
        abort(404)
    try:
        FailedJobRegistry(queue=get_queue(queue_name)).requeue(job_id)
    except NoSuchJobError:
        flash(_("Job %(id)s is not among the failed jobs any more (retried already, or expired).", id=job_id), "error")
        return redirect(url_for("admin.jobs"))
    except (RedisError, RedisNotConfiguredError):
        flash(_("The job queue (Redis) is not reachable; nothing was retried."), "error")
        return redirect(url_for("admin.jobs"))
    with db.session_scope() as session:
        audit(session, shop_id=None, action="job.retry", subject=f"job {job_id}", before={"queue": queue_name,
              "state": "failed"}, after={"state": "queued"})
    logger.info("failed job retried", extra={"job_id": job_id, "staff": current_user.staff_id})
    flash(_("Job %(id)s is queued again.", id=job_id), "success")
    return redirect(url_for("admin.jobs"))
