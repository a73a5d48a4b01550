"""Processing the webhook inbox: parse, dispatch by resource, mark processed or failed."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError
from sqlalchemy.orm import Session, make_transient_to_detached

from app.loyalty import customers, incentives, orders
from app import privacy
from app.loyalty.checkouts import apply_checkout
from app.loyalty.decide import ProductFactsMissingError
from app.loyalty.points import PlanConflictError
from app.db import after_commit, get_engine, new_session, session_scope
from app.models import DeliveryStatus, Shop, ShopStatus, WebhookDelivery, utcnow
from app.program import current_program, share_program_cache
from connectors import get_connector
from connectors import types as ct
from connectors.errors import MalformedPayloadError, UnsupportedTopicError
from jobs.sweeps import advance_cursor, cursor_position

logger = logging.getLogger(__name__)

# A delivery whose processing hit a transient database error is retried this often before it is
# marked failed for a person to look at.
MAX_ATTEMPTS = 5


def _handle(session, shop: Shop, delivery_id: int, event: ct.WebhookEvent,  # type: ignore[no-untyped-def]
            source: str = "webhook") -> None:
    resource = event.resource
    if isinstance(resource, ct.Order):
        restored = event.topic == "order.restored"
        # A backfilled order is history: it sends nothing about the past (`orders.History`).
        history = orders.history_for(session, shop.id) if source == "backfill" else None
        orders.apply_order(session, shop, resource, delivery_id=delivery_id, restored=restored, history=history)
    elif isinstance(resource, ct.Refund):
        orders.apply_refund(session, shop, resource, delivery_id=delivery_id)
    elif isinstance(resource, ct.RefundDetails):
        orders.apply_refund_details(session, shop, resource, delivery_id=delivery_id)
    elif isinstance(resource, ct.OrderTransaction):
        orders.apply_transaction(session, shop, resource, delivery_id=delivery_id)
    elif isinstance(resource, ct.Customer):
        customer = customers.upsert_customer(session, shop, resource)
        if customer is not None and event.topic in ("customers/create", "customer.created"):
            version, program = current_program(session, shop)
            incentives.signup_bonus(session, shop, customer, program, version)
    elif isinstance(resource, ct.Checkout):
        apply_checkout(session, shop, resource)
    elif isinstance(resource, ct.Deleted):
        if resource.kind == "order":
            orders.apply_deletion(session, shop, resource.id, delivery_id=delivery_id)
    elif isinstance(resource, ct.AppUninstalled):
        shop.status = ShopStatus.UNINSTALLED
        shop.uninstalled_at = utcnow()
    elif isinstance(resource, ct.CustomerRedaction):
        privacy.redact_customer(session, shop, resource)
    elif isinstance(resource, ct.ShopRedaction):
        privacy.redact_shop(session, shop)
    elif isinstance(resource, ct.CustomerDataRequest):
        privacy.record_data_request(session, shop, resource, delivery_id)
    else:  # pragma: no cover - the connector contract lists every resource type
        raise TypeError(f"no handler for {type(resource).__name__}")


_DELIVERIES = WebhookDelivery.__table__
# Locked (PostgreSQL; SQLite's dialect leaves FOR UPDATE out, its transactions hold the write
# lock): another worker skips a delivery in hand.
_READ = select(
    _DELIVERIES.c.shop_id, _DELIVERIES.c.platform, _DELIVERIES.c.topic, _DELIVERIES.c.headers,
    _DELIVERIES.c.body, _DELIVERIES.c.status, _DELIVERIES.c.received_at, _DELIVERIES.c.source,
).where(_DELIVERIES.c.id == bindparam("id")).with_for_update(skip_locked=True)
_FINISH = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("delivery_id"))
    .values(attempts=_DELIVERIES.c.attempts + 1, status=bindparam("status"), error=bindparam("error"),
            processed_at=bindparam("processed_at"))
)


class BatchMemo:
    """What the deliveries of one lane of a batch (one job, about a second) share: their shops'
    rows and programs, read once instead of once per delivery. A shop that uninstalls in this
    lane is read again; whatever must not act on a stale copy reads the row (`redact_shop`)."""

    def __init__(self) -> None:
        self.shops: dict[int, dict[str, Any]] = {}
        self.programs: dict[int, Any] = {}  # shop id -> (version, Program), as app.program caches

    def shop(self, session: Session, shop_id: int) -> Shop | None:
        values = self.shops.get(shop_id)
        if values is None:
            shop = session.get(Shop, shop_id)
            if shop is not None:
                self.shops[shop_id] = {a.key: getattr(shop, a.key) for a in _SHOP_COLUMNS}
            return shop
        shop = Shop(**values)  # every column is an immutable value (str, int, bytes, enum, datetime)
        make_transient_to_detached(shop)
        # The copy joins the session as if loaded (no SELECT); a session that holds the shop
        # already (an earlier delivery of the same group) returns its own instance.
        return session.merge(shop, load=False)


_SHOP_COLUMNS = Shop.__mapper__.column_attrs


# ---- earning by product: the products' facts, looked up before deciding ------------------------

_GROUP_SHOPS = select(_DELIVERIES.c.shop_id).where(
    _DELIVERIES.c.id.in_(bindparam("ids", expanding=True)), _DELIVERIES.c.status == DeliveryStatus.RECEIVED,
).distinct()
_GROUP_BODIES = select(
    _DELIVERIES.c.shop_id, _DELIVERIES.c.platform, _DELIVERIES.c.headers, _DELIVERIES.c.body, _DELIVERIES.c.source,
).where(_DELIVERIES.c.id.in_(bindparam("ids", expanding=True)), _DELIVERIES.c.status == DeliveryStatus.RECEIVED,
        _DELIVERIES.c.shop_id.in_(bindparam("shop_ids", expanding=True)))


def prefetch_products(delivery_ids: list[int], *, bind: Connection | None = None,
                      memo: BatchMemo | None = None) -> int:
    """Look up the collections or categories and tags of the products of the paid orders among
    `delivery_ids` that are not awarded yet, in shops whose program has a product rule that
    reads them, and keep them (`app.loyalty.products`); returns how many products were looked up.

    Runs before the deliveries' transaction, so no platform call happens while rows are locked.
    A lookup that fails is logged and left: the order's decision then finds the facts missing
    and raises `decide.ProductFactsMissingError`, which leaves the delivery for a later try
    (`_record_error`), so no award ever goes without a rule.
    """
    from app.loyalty import products
    from app.models import LedgerEntry, Order

    now = utcnow()
    wanted: dict[int, list[str]] = {}
    platforms: dict[int, str] = {}
    with _reading(bind) as session:
        if memo is not None:
            share_program_cache(session, memo.programs)
        shop_ids = []
        for shop_id in session.scalars(_GROUP_SHOPS, {"ids": delivery_ids}):
            shop = memo.shop(session, shop_id) if memo is not None else session.get(Shop, shop_id)
            if shop is not None and products.needs_lookup(current_program(session, shop)[1]):
                shop_ids.append(shop_id)
        if not shop_ids:
            return 0
        paid: dict[int, dict[str, list[str]]] = {}
        histories: dict[int, orders.History] = {}
        for row in session.execute(_GROUP_BODIES, {"ids": delivery_ids, "shop_ids": shop_ids}).mappings():
            try:
                event = get_connector(row["platform"]).parse_event(row["headers"], row["body"])
            except (MalformedPayloadError, UnsupportedTopicError):
                continue  # recorded as failed when it is processed
            if not (isinstance(event.resource, ct.Order) and event.resource.is_paid):
                continue
            if row["source"] == "backfill":
                if row["shop_id"] not in histories:
                    histories[row["shop_id"]] = orders.history_for(session, row["shop_id"])
                if not histories[row["shop_id"]].earns(orders.paid_fields(event.resource)["paid_at"]):
                    continue  # history that earns nothing needs no product facts (`orders.History`)
            paid.setdefault(row["shop_id"], {})[event.resource.id] = products.order_product_ids(event.resource)
            platforms[row["shop_id"]] = row["platform"]
        for shop_id, by_order in paid.items():
            awarded = set(session.scalars(
                select(Order.platform_id).join(LedgerEntry, (LedgerEntry.order_id == Order.id)
                                               & (LedgerEntry.reason == "earn") & (LedgerEntry.source_type == "order"))
                .where(Order.shop_id == shop_id, Order.platform_id.in_(list(by_order)))))
            ids = list(dict.fromkeys(pid for order_id, pids in by_order.items() if order_id not in awarded
                                     for pid in pids))
            fresh = products.fresh_facts(session, shop_id, ids, now)
            missing = [pid for pid in ids if pid not in fresh]
            if missing:
                wanted[shop_id] = missing
    looked_up = 0
    for shop_id, ids in wanted.items():
        from app import shops as shop_accounts
        from connectors.errors import ConnectorError
        from jobs.shops import api_credentials

        try:
            facts = get_connector(platforms[shop_id]).fetch_products(api_credentials(shop_id), ids)
        except (ConnectorError, ValueError, shop_accounts.UnknownShopError, shop_accounts.ShopNeedsReauthorizationError,
                shop_accounts.TokenRefreshBusyError) as exc:
            # Not hidden: the orders wait for these facts and their deliveries say so.
            logger.warning("product facts could not be looked up; the orders wait for them",
                           extra={"shop": shop_id, "products": len(ids), "error_type": type(exc).__name__})
            continue
        with session_scope(bind) as session:
            products.store_facts(session, shop_id, facts, now)
        looked_up += len(facts)
    return looked_up


@contextmanager
def _reading(bind: Connection | None) -> Iterator[Session]:
    """Yield a session for reads only, ended by a rollback (no COMMIT for a read)."""
    session = new_session(bind)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def process_delivery(delivery_id: int, *, bind: Connection | None = None, memo: BatchMemo | None = None) -> str:
    """Process one delivery in its own transaction; returns its resulting status.

    A plan decided on facts another transaction changed meanwhile (`points.PlanConflictError`,
    the ledger's unique key refused an entry) rolls back, and the delivery is decided once more
    in a new transaction on fresh facts; a second conflict propagates. Called on its own (not
    from a lane, which looked them up for its group), it first looks up the products' facts an
    earning rule needs (`prefetch_products`).
    """
    if memo is None:
        prefetch_products([delivery_id], bind=bind)
    try:
        return _process_delivery(delivery_id, bind=bind, memo=memo)
    except PlanConflictError:
        logger.info("ledger plan met an entry written meanwhile; deciding again", extra={"delivery": delivery_id})
        return _process_delivery(delivery_id, bind=bind, memo=memo)


def _process_delivery(delivery_id: int, *, bind: Connection | None, memo: BatchMemo | None) -> str:
    """Process one delivery in its own transaction (see `process_delivery` and `_apply`)."""
    with session_scope(bind) as session:
        return _apply(session, delivery_id, memo)


def _apply(session: Session, delivery_id: int, memo: BatchMemo | None) -> str:
    """Process one delivery in the session's transaction; returns its resulting status.

    A delivery that is no longer `received` (done, failed, or taken by another worker) is
    skipped; one whose shop was erased meanwhile is deleted. A malformed payload marks it failed
    with the reason (visible and replayable); other errors propagate (the caller's transaction
    rolls back).
    """
    conn = session.connection()
    delivery = conn.execute(_READ, {"id": delivery_id}).mappings().first()
    if delivery is None or delivery["status"] != DeliveryStatus.RECEIVED:
        logger.debug("delivery already handled", extra={"delivery": delivery_id})
        return "skipped"
    if memo is None:
        shop = session.get(Shop, delivery["shop_id"])
    else:
        shop = memo.shop(session, delivery["shop_id"])
        share_program_cache(session, memo.programs)
    if shop is None:
        # Its shop is gone. The inbox's key to shops cascades and refuses such a row on every
        # database (migration 0013), so this is a guard: the body holds that shop's
        # customers' data, and nothing may be created for a shop that is not there.
        conn.execute(delete(_DELIVERIES).where(_DELIVERIES.c.id == delivery_id))
        logger.info("delivery of an erased shop deleted",
                    extra={"delivery": delivery_id, "shop": delivery["shop_id"]})
        return "deleted"
    try:
        event = get_connector(delivery["platform"]).parse_event(delivery["headers"], delivery["body"])
    except (MalformedPayloadError, UnsupportedTopicError) as exc:
        conn.execute(_FINISH, {"delivery_id": delivery_id, "status": DeliveryStatus.FAILED, "error": str(exc),
                               "processed_at": None})
        logger.warning(
            "delivery rejected by parser",
            extra={"delivery": delivery_id, "shop": shop.id, "topic": delivery["topic"]},
        )
        after_commit(session, lambda: _count(delivery, "failed"))
        return DeliveryStatus.FAILED.value
    _handle(session, shop, delivery_id, event, delivery["source"])
    if memo is not None and isinstance(event.resource, ct.AppUninstalled | ct.ShopRedaction):
        memo.shops.pop(shop.id, None)
    session.execute(_FINISH, {"delivery_id": delivery_id, "status": DeliveryStatus.PROCESSED, "error": None,
                              "processed_at": utcnow()})
    after_commit(session, lambda: _count(delivery, "processed"))
    return DeliveryStatus.PROCESSED.value


# A group's deliveries, read at once and locked (see _READ).
_READ_GROUP = select(
    _DELIVERIES.c.id, _DELIVERIES.c.shop_id, _DELIVERIES.c.platform, _DELIVERIES.c.topic, _DELIVERIES.c.headers,
    _DELIVERIES.c.body, _DELIVERIES.c.status, _DELIVERIES.c.received_at, _DELIVERIES.c.source,
).where(_DELIVERIES.c.id.in_(bindparam("ids", expanding=True))).order_by(_DELIVERIES.c.id).with_for_update(
    skip_locked=True)


def _apply_group(session: Session, delivery_ids: list[int], memo: BatchMemo) -> Counter[str]:
    """Process a group of deliveries in the session's transaction; returns their outcomes.

    The group is read in one SELECT and parsed. The paid orders of new customers that no other
    delivery of the group concerns are written together by `app.loyalty.writer` and marked
    processed in one UPDATE; every other delivery goes through `_apply`, one after another in
    the order of the ids (it reads its row again; a delivery that failed to parse is recorded
    as failed there).
    """
    from app.loyalty import writer

    rows = session.execute(_READ_GROUP, {"ids": delivery_ids}).mappings().all()
    share_program_cache(session, memo.programs)
    events: dict[int, tuple[Any, ct.WebhookEvent]] = {}
    for row in rows:
        if row["status"] != DeliveryStatus.RECEIVED:
            continue
        try:
            events[row["id"]] = (row, get_connector(row["platform"]).parse_event(row["headers"], row["body"]))
        except (MalformedPayloadError, UnsupportedTopicError):
            continue  # recorded as failed by _apply
    outcome: Counter[str] = Counter()
    written: list[int] = []
    for shop_id, candidates in _bulk_candidates(events).items():
        shop = memo.shop(session, shop_id)
        if shop is None:
            continue
        version, program = current_program(session, shop)
        done, _ = writer.write_new_orders(session, shop, version, program, candidates)
        written.extend(done)
    if written:
        now = utcnow()
        session.execute(_FINISH, [{"delivery_id": delivery_id, "status": DeliveryStatus.PROCESSED, "error": None,
                                   "processed_at": now} for delivery_id in written])
        finished = [events[delivery_id][0] for delivery_id in written]
        after_commit(session, lambda: [_count(delivery, "processed") for delivery in finished])
        outcome["processed"] += len(written)
    done_ids = set(written)
    for delivery_id in delivery_ids:
        if delivery_id not in done_ids:
            outcome[_apply(session, delivery_id, memo)] += 1
    return outcome


def _concerns(resource: Any) -> set[tuple[str, str]] | None:
    """Return what a delivery's resource names (orders, customers, e-mails, checkouts), or None
    when it concerns the whole shop (uninstall, erasure, data request)."""
    names: set[tuple[str, Any]] = set()
    if isinstance(resource, ct.Order):
        names |= {("order", resource.id), ("checkout", f"order-{resource.id}"),
                  ("checkout", resource.checkout_token), ("email", resource.email)}
        if resource.customer is not None:
            names |= {("customer", resource.customer.id), ("email", resource.customer.email)}
    elif isinstance(resource, ct.Refund | ct.OrderTransaction | ct.RefundDetails):
        names.add(("order", resource.order_id))
    elif isinstance(resource, ct.Customer):
        names |= {("customer", resource.id), ("email", resource.email)}
    elif isinstance(resource, ct.Checkout):
        names |= {("checkout", resource.id), ("email", resource.email)}
        if resource.customer is not None:
            names |= {("customer", resource.customer.id), ("email", resource.customer.email)}
    elif isinstance(resource, ct.Deleted):
        names.add((resource.kind, resource.id))
    else:
        return None
    return {(kind, value) for kind, value in names if value}


def _bulk_candidates(events: dict[int, tuple[Any, ct.WebhookEvent]]) -> dict[int, list[Any]]:
    """Return, by shop, the order snapshots the bulk writer may take: those whose order,
    customer, e-mail and checkout no other delivery of the group names (in a shop none of whose
    deliveries concerns the whole shop), so their order relative to the others cannot matter,
    and that are not history brought by a backfill."""
    from app.loyalty.writer import NewOrder

    named: dict[int, Counter[tuple[str, str]]] = {}
    whole_shop: set[int] = set()
    concerns: dict[int, set[tuple[str, str]]] = {}
    for delivery_id, (row, event) in events.items():
        names = _concerns(event.resource)
        if names is None:
            whole_shop.add(row["shop_id"])
            continue
        concerns[delivery_id] = names
        named.setdefault(row["shop_id"], Counter()).update(names)
    candidates: dict[int, list[Any]] = {}
    for delivery_id, names in concerns.items():
        row, event = events[delivery_id]
        shop_id = row["shop_id"]
        # A backfilled order is history (`orders.History`), handled by the per-delivery path.
        if (isinstance(event.resource, ct.Order) and shop_id not in whole_shop and row["source"] != "backfill"
                and all(named[shop_id][name] == 1 for name in names)):
            candidates.setdefault(shop_id, []).append(NewOrder(delivery_id, event.resource))
    return candidates


def _count(delivery: Any, outcome: str) -> None:
    """Count a finished delivery and its lag (`app.telemetry`), once its transaction committed."""
    from app import telemetry

    telemetry.DELIVERIES_HANDLED.labels(delivery["platform"], delivery["topic"], outcome).inc()
    if outcome == "processed" and delivery["received_at"] is not None:
        received = delivery["received_at"]
        if isinstance(received, str):  # SQLite's raw column: UTC text (models.UTCDateTime)
            received = datetime.fromisoformat(received)
        if received.tzinfo is None:
            received = received.replace(tzinfo=timezone.utc)
        telemetry.DELIVERY_LAG.observe(max((utcnow() - received).total_seconds(), 0.0))


def failure_text(exc: BaseException) -> str:
    """Return what a person reads about a failure, without the data it was about.

    A database error's text carries the statement's parameters (`[parameters: ...]`) and the
    server's DETAIL lines (PostgreSQL: "Key (email)=(anna@…) already exists"): e-mails, recovery
    links. Only the driver's error class and its first line are kept.
    """
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        first_line = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        return f"{type(exc).__name__} ({type(exc.orig).__name__}): {first_line}"[:2000]
    if isinstance(exc, StatementError):
        return f"{type(exc).__name__}: the statement could not be run"[:2000]
    return f"{type(exc).__name__}: {exc}"[:2000]


def _record_error(delivery_id: int, exc: BaseException) -> str:
    # A product's facts that could not be looked up (`prefetch_products`) are retried like a
    # database that did not answer: the delivery stays for the requeue sweep, up to MAX_ATTEMPTS.
    transient = isinstance(exc, OperationalError | ProductFactsMissingError)
    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return "missing"
        delivery.attempts += 1
        delivery.error = failure_text(exc)
        if not transient or delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
            facts = {"platform": delivery.platform, "topic": delivery.topic, "received_at": None}
            after_commit(session, lambda: _count(facts, "failed"))
        return delivery.status.value


# A job's deliveries are written WRITE_TOGETHER at a time in one transaction: one COMMIT (and,
# on SQLite, one hold of the write lock) for all of them instead of one each. A transaction that
# fails for any of them (an error, a race on a natural key, a lock conflict) rolls back, and its
# deliveries are then processed each in its own transaction, so one bad delivery never fails its
# neighbours, and exactly-once rests on the database's unique keys either way. New customers'
# paid orders of a group are written in bulk (`_apply_group`, `app.loyalty.writer`). On SQLite
# the receiver waits for the write lock while a group is written: 50 such orders hold it about
# 40 ms (0.8 ms of worker CPU each, bench/RESULTS.md); 50 that go one by one, ~0.2 s.
WRITE_TOGETHER = 50

# PostgreSQL: a batch is also worked through by lanes (threads, each with its own connection and
# its own transactions), so that some compute while the others wait for the server; a lane is as
# safe as a second worker process, and the rows the transactions lock settle any overlap (a
# deadlock between two lanes fails one group, whose deliveries then go one by one). SQLite lets
# one writer in at a time, so it keeps one lane.
POSTGRES_LANES = 4


def process_deliveries(delivery_ids: list[int]) -> dict[str, int]:
    """Process a batch; one failure never fails the rest.

    Deliveries are written in groups (`WRITE_TOGETHER`, one transaction each), falling back to
    one transaction per delivery for a group that fails. A failure is recorded on its delivery
    (status, reason) for the admin to show and replay; a transient database error leaves it
    `received` for the requeue sweep, up to MAX_ATTEMPTS. On PostgreSQL the batch is dealt out
    to `POSTGRES_LANES` lanes, alternately in the order of the ids.
    """
    lanes = min(POSTGRES_LANES, len(delivery_ids)) if get_engine().dialect.name == "postgresql" else 1
    if lanes <= 1:
        return dict(_lane(delivery_ids))
    with ThreadPoolExecutor(lanes, thread_name_prefix="delivery-lane") as pool:
        outcomes = list(pool.map(_lane, [delivery_ids[k::lanes] for k in range(lanes)]))
    return dict(sum(outcomes, Counter()))


def _lane(delivery_ids: list[int]) -> Counter[str]:
    """Process `delivery_ids` in groups, one after another, on one connection."""
    outcome: Counter[str] = Counter()
    # One connection serves the lane, so the pool's checkout, pre-ping and reset-on-return happen
    # once per batch. A connection that broke is invalidated by SQLAlchemy and reconnects on its
    # next use.
    memo = BatchMemo()
    with get_engine().connect() as conn:
        for start in range(0, len(delivery_ids), WRITE_TOGETHER):
            group = delivery_ids[start:start + WRITE_TOGETHER]
            prefetch_products(group, bind=conn, memo=memo)  # platform calls before the group's locks
            try:
                with session_scope(conn) as session:
                    counts = _apply_group(session, group, memo)
                outcome.update(counts)
                continue
            except Exception as exc:  # noqa: BLE001 - each delivery is processed again on its own below
                logger.info("a group of deliveries could not be written together; one by one instead",
                            extra={"deliveries": len(group), "error_type": type(exc).__name__})
            for delivery_id in group:
                outcome[_one(conn, delivery_id, memo)] += 1
    return outcome


def _one(conn: Connection, delivery_id: int, memo: BatchMemo) -> str:
    """Process one delivery in its own transaction, recording a failure on it."""
    try:
        return process_delivery(delivery_id, bind=conn, memo=memo)
    except Exception as exc:  # noqa: BLE001 - recorded on the delivery and logged, not hidden
        logger.error("delivery processing failed", extra={"delivery": delivery_id, "error_type": type(exc).__name__})
        return _record_error(delivery_id, exc)


def requeue_stuck_deliveries(older_than_seconds: int | None = None, batch_size: int = 200) -> int:
    """Enqueue deliveries still `received` after a while (Redis was down, a process died).

    Returns how many were enqueued. Safe to run any time: processing skips anything done.
    """
    from app import config
    from app.dispatch import enqueue_batch

    if older_than_seconds is None:
        older_than_seconds = config.settings()["REQUEUE_AFTER_SECONDS"]
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with session_scope() as session:
        ids = list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.status == DeliveryStatus.RECEIVED, WebhookDelivery.received_at <= cutoff)
                .order_by(WebhookDelivery.id)
                .limit(10_000)
            )
        )
    for start in range(0, len(ids), batch_size):
        enqueue_batch(ids[start : start + batch_size])
    if ids:
        logger.info("requeued stuck deliveries", extra={"count": len(ids)})
    return len(ids)


class DeliveryPurgedError(RuntimeError):
    """The delivery's body was emptied by the retention sweep, so there is nothing to replay."""


def replay_delivery(delivery_id: int) -> bool:
    """Put a failed (or processed) delivery back to `received` and enqueue it; False if unknown.

    Raises:
        DeliveryPurgedError: the retention sweep emptied its body.
    """
    from app.dispatch import enqueue_batch

    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return False
        if delivery.purged_at is not None:
            raise DeliveryPurgedError(
                f"delivery {delivery_id} cannot be replayed: its body was removed on "
                f"{delivery.purged_at:%Y-%m-%d} (DELIVERY_RETENTION_DAYS)"
            )
        delivery.status = DeliveryStatus.RECEIVED
        delivery.error = None
    enqueue_batch([delivery_id])
    return True


PURGE_CURSOR = "webhook_deliveries.purge"


def purge_delivery_bodies(now: datetime | None = None, batch_size: int = 1000) -> int:
    """Empty the body, headers and failure text of deliveries received more than
    DELIVERY_RETENTION_DAYS ago.

    They hold the customer's personal data (name, addresses, e-mail) and are needed only to
    process or replay the delivery. The row stays: ledger entries name the delivery that caused
    them, and its dedupe key still refuses a duplicate. Only processed and failed deliveries are
    emptied. Returns how many were.

    The sweep walks ids upward from where its last run stopped (`job_cursors`), so a run reads
    only rows it has not passed yet and the inbox needs no index for it (an index would cost
    every webhook). It stops at the first delivery that is too recent, or still waiting for a
    worker.
    """
    from app import config

    days = config.settings()["DELIVERY_RETENTION_DAYS"]
    if days <= 0:
        return 0
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    purged = 0
    while True:
        with session_scope() as session:
            after = cursor_position(session, PURGE_CURSOR)
            # Locked (PostgreSQL), so a replay cannot turn a row back to `received` meanwhile.
            rows = session.execute(
                select(_DELIVERIES.c.id, _DELIVERIES.c.status, _DELIVERIES.c.received_at)
                .where(_DELIVERIES.c.id > after)
                .order_by(_DELIVERIES.c.id)
                .limit(batch_size)
                .with_for_update()
            ).all()
            ids: list[int] = []
            blocked = False
            for row in rows:
                if row.received_at >= cutoff:
                    blocked = True
                    break
                if row.status == DeliveryStatus.RECEIVED:
                    logger.warning("retention sweep waits for an old delivery still to be processed",
                                   extra={"delivery": row.id})
                    blocked = True
                    break
                ids.append(row.id)
            if ids:
                purged += session.execute(
                    update(_DELIVERIES)
                    .where(_DELIVERIES.c.id.in_(ids), _DELIVERIES.c.purged_at.is_(None))
                    .values(body=b"", headers={}, error=None, purged_at=now)
                ).rowcount
                advance_cursor(session, PURGE_CURSOR, ids[-1])
        if blocked or len(rows) < batch_size:
            break
    if purged:
        logger.info("delivery bodies purged", extra={"count": purged, "retention_days": days})
    return purged
