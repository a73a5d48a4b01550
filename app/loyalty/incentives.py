"""Incentives around orders: bonuses, the second-purchase code, gifts with purchase (no Flask here).

All are keyed so they happen once: bonus entries by their natural ledger key, codes by
(purpose, source_key), gift tasks by (order, kind, key).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.loyalty import codes, ledger
from app.db import after_commit, dialect_insert
from app.models import Customer, LedgerEntry, Order, OrderTask, Shop, utcnow
from app.i18n import translations
from app.messaging.render import customer_language
from app.program import Program

logger = logging.getLogger(__name__)


_FIRST_PAID = (
    select(Order.id)
    .where(Order.customer_id == bindparam("customer_id"), Order.is_paid.is_(True))
    .order_by(Order.paid_at, Order.id)
    .limit(1)
)


def is_first_paid_order(session: Session, customer_id: int, order: Order, *, new_customer: bool = False) -> bool:
    """Return True when `order` is the customer's earliest paid order (`new_customer`: the caller
    created the customer for this order in this transaction, so it has no other)."""
    if new_customer:
        return order.is_paid
    return session.scalars(_FIRST_PAID, {"customer_id": customer_id}).first() == order.id


def award_bonus(session: Session, shop: Shop, customer: Customer, *, reason: str, source_id: str, points: int,
                version: int, available_at: datetime, expires_at: datetime | None, order_id: int | None = None,
                now: datetime | None = None) -> LedgerEntry | None:
    """Credit a bonus once (its ledger key decides), as a lot of its own."""
    if points <= 0 or customer.banned_at is not None:
        return None
    if ledger.find_entry(session, shop.id, "customer", source_id, reason) is not None:
        return None
    now = now or utcnow()
    lot = ledger.new_lot(
        shop_id=shop.id, customer_id=customer.id, order_id=order_id, points=points, earned_at=now,
        available_at=available_at, expires_at=expires_at, now=now,
        rule={"rule": reason, "program_version": version, "points": points},
    )
    entry = LedgerEntry(
        shop_id=shop.id, customer_id=customer.id, order_id=order_id, delta=0, reason=reason,
        source_type="customer", source_id=source_id, detail={"points": points},
    )
    return ledger.credit(session, entry, lot)


def after_first_paid_order(session: Session, shop: Shop, customer: Customer, order: Order, program: Program,
                           version: int, *, available_at: datetime, expires_at: datetime | None) -> None:
    """First order bonus and the second-purchase code (each once per customer)."""
    award_bonus(
        session, shop, customer, reason="first_order_bonus", source_id=str(customer.id),
        points=program.earning.first_order_bonus, version=version, available_at=available_at,
        expires_at=expires_at, order_id=order.id,
    )
    offer = program.second_purchase
    if offer.enabled and customer.banned_at is None:
        codes.record_code(
            session, shop, enqueue=False, purpose="second_purchase", source_key=str(customer.id), customer_id=customer.id,
            title=translations(customer_language(customer, shop)).gettext(
                "%(percent)s %% off your next order") % {"percent": offer.percent},
            kind="percentage", value=offer.percent,
            valid_days=offer.valid_days, platform_customer_id=customer.platform_id, customer_email=customer.email,
        )


def gifts_for(session: Session, shop: Shop, order: Order, program: Program) -> list[OrderTask]:
    """Record a tag/note task for every gift the order qualifies for (once per order and gift)."""
    created = []
    for gift in program.gifts:
        amount_ok = gift.min_amount is not None and (order.merchandise or 0) >= gift.min_amount
        weight_ok = gift.min_grams is not None and (order.total_weight_grams or 0) >= gift.min_grams
        if not (amount_ok or weight_ok):
            continue
        now = utcnow()
        stmt = dialect_insert(session, OrderTask.__table__).values(
            shop_id=shop.id, order_id=order.id, kind="gift", key=gift.name,
            payload={"tag": gift.tag, "note": gift.note, "gift": gift.name},
            status="pending", attempts=0, created_at=now, updated_at=now,
        )
        new_id = session.execute(
            stmt.on_conflict_do_nothing(index_elements=["order_id", "kind", "key"]).returning(OrderTask.__table__.c.id)
        ).scalar()
        if new_id is not None:
            after_commit(session, lambda task_id=new_id: enqueue_order_task(task_id))
            created.append(session.get(OrderTask, new_id))
    return created


def enqueue_order_task(task_id: int) -> bool:
    """Enqueue the job that tags/notes the order in the shop."""
    from app.queues import PLATFORM_RETRY, enqueue_once

    return enqueue_once("codes", "jobs.codes.run_order_task", task_id, job_id=f"order-task-{task_id}", retry=PLATFORM_RETRY)


def signup_bonus(session: Session, shop: Shop, customer: Customer, program: Program, version: int) -> None:
    """Award the sign-up bonus once when an account appears."""
    now = utcnow()
    award_bonus(
        session, shop, customer, reason="signup_bonus", source_id=str(customer.id),
        points=program.earning.signup_bonus, version=version, available_at=now, expires_at=None, now=now,
    )
