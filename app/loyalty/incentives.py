"""Incentives around orders: bonuses, the second-purchase code, gifts with purchase (no Flask here).

All are keyed so they happen once: bonus entries by their natural ledger key, codes by
(purpose, source_key), gift tasks by (order, kind, key).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.loyalty import codes, decide, ledger
from app.db import after_commit, dialect_insert
from app.models import Customer, IssuedCode, LedgerEntry, LotState, Order, OrderTask, PointLot, Shop, utcnow
from app.i18n import translations
from app.messaging.render import customer_language, format_money
from app.program import Program

logger = logging.getLogger(__name__)


_FIRST_PAID = (
    select(Order.id)
    .where(Order.customer_id == bindparam("customer_id"), Order.is_paid.is_(True))
    .order_by(Order.paid_at, Order.id)
    .limit(1)
)


def is_first_paid_order(session: Session, customer_id: int, order: Order) -> bool:
    """Return True when `order` is the customer's earliest paid order."""
    return session.scalars(_FIRST_PAID, {"customer_id": customer_id}).first() == order.id


@dataclass(frozen=True)
class Bonus:
    """A bonus to credit: a lot of its own and the entry that explains it (keyed by the customer)."""

    lot: decide.NewLot
    entry: decide.NewEntry


def bonus_plan(*, reason: str, source_id: str, points: int, version: int, available_at: datetime,
               expires_at: datetime | None, banned: bool, now: datetime) -> Bonus | None:
    """Return the lot and entry of a bonus of `points` (None for no points, or a banned
    customer): pending until `available_at`. Pure."""
    if points <= 0 or banned:
        return None
    state = LotState.AVAILABLE if available_at <= now else LotState.PENDING
    lot = decide.NewLot(points=points, state=state, earned_at=now, available_at=available_at, expires_at=expires_at,
                        rule={"rule": reason, "program_version": version, "points": points})
    pending = points if state == LotState.PENDING else 0
    entry = decide.NewEntry(reason, "customer", source_id, delta=points, pending_delta=pending,
                            available_delta=points - pending, detail={"points": points}, on_new_lot=True)
    return Bonus(lot, entry)


def write_bonus(session: Session, shop_id: int, customer_id: int, bonus: Bonus, *, order_id: int | None = None,
                now: datetime | None = None) -> LedgerEntry | None:
    """Write a planned bonus (None when its entry exists already: the ledger's key decides)."""
    now = now or utcnow()
    lot = PointLot(**ledger.lot_values(bonus.lot, shop_id=shop_id, customer_id=customer_id, order_id=order_id,
                                       now=now))
    entry = LedgerEntry(**ledger.entry_values(bonus.entry, shop_id=shop_id, customer_id=customer_id,
                                              order_id=order_id, delivery_id=None, lot_id=None, now=now))
    return ledger.append(session, entry, lot=lot)


def award_bonus(session: Session, shop: Shop, customer: Customer, *, reason: str, source_id: str, points: int,
                version: int, available_at: datetime, expires_at: datetime | None, order_id: int | None = None,
                now: datetime | None = None) -> LedgerEntry | None:
    """Credit a bonus once (its ledger key decides), as a lot of its own."""
    now = now or utcnow()
    bonus = bonus_plan(reason=reason, source_id=source_id, points=points, version=version, available_at=available_at,
                       expires_at=expires_at, banned=customer.banned_at is not None, now=now)
    if bonus is None:
        return None
    if ledger.find_entry(session, shop.id, "customer", source_id, reason) is not None:
        return None
    return write_bonus(session, shop.id, customer.id, bonus, order_id=order_id, now=now)


def first_order_bonus(customer: Any, program: Program, version: int, *, available_at: datetime,
                      expires_at: datetime | None, now: datetime) -> Bonus | None:
    """Return the first-order bonus of a customer's first paid order (once per customer). Pure."""
    return bonus_plan(reason="first_order_bonus", source_id=str(customer.id), points=program.earning.first_order_bonus,
                      version=version, available_at=available_at, expires_at=expires_at,
                      banned=customer.banned_at is not None, now=now)


def second_purchase_code(shop: Shop, customer: Any, program: Program) -> dict[str, Any] | None:
    """Return the code (`codes.record_code` keywords) a first paid order earns for the second
    one, or None when the offer is off or the customer banned. Pure."""
    offer = program.second_purchase
    if not offer.enabled or customer.banned_at is not None:
        return None
    return dict(
        purpose="second_purchase", source_key=str(customer.id), customer_id=customer.id,
        title=translations(customer_language(customer, shop)).gettext(
            "%(percent)s %% off your next order") % {"percent": offer.percent},
        kind="percentage", value=offer.percent,
        valid_days=offer.valid_days, platform_customer_id=customer.platform_id, customer_email=customer.email,
    )


def bounce_back_code(shop: Shop, customer: Any, order: decide.OrderFacts, program: Program,
                     won: decide.Award) -> dict[str, Any] | None:
    """Return the bounce-back code (`codes.record_code` keywords) the paid `order` earns for the
    customer's next purchase, or None (offer off, under the threshold, order gone, customer banned,
    or no customer account in the shop to restrict the code to). Pure.

    The code is keyed by the order (purpose "bounce_back", source key the order's id), so
    duplicate and out-of-order deliveries of the order record it once: the database's unique key
    decides. It is restricted to the customer (Shopify: the customer's context; WooCommerce: their
    e-mail), usable once, for `valid_days`, from `minimum_amount`.
    """
    offer = program.bounce_back
    if customer.banned_at is not None or not customer.platform_id or not decide.earns_bounce_back(order, won, program):
        return None
    language = customer_language(customer, shop)
    if offer.kind == "percentage":
        amount = f"{offer.value.normalize():f} %" if language == "de" else f"{offer.value.normalize():f}%"
    else:
        amount = format_money(offer.value, shop.currency, language)
    return dict(
        purpose=decide.BOUNCE_BACK, source_key=str(order.id), customer_id=customer.id,
        title=translations(language).gettext("%(amount)s off your next order") % {"amount": amount},
        kind=offer.kind, value=offer.value, valid_days=offer.valid_days, minimum_amount=offer.minimum_amount,
        platform_customer_id=customer.platform_id, customer_email=customer.email, usage_limit=1,
        once_per_customer=True,
    )


def bounce_back_for(session: Session, shop: Shop, customer: Customer, order: decide.OrderFacts, program: Program,
                    won: decide.Award) -> IssuedCode | None:
    """Record the order's bounce-back code once (see `bounce_back_code`); the code sweep creates
    it in the shop. Returns the row when one was written now."""
    spec = bounce_back_code(shop, customer, order, program, won)
    if spec is None:
        return None
    row, created = codes.record_code(session, shop, enqueue=False, **spec)
    return row if created else None


def after_first_paid_order(session: Session, shop: Shop, customer: Customer, order: Order, program: Program,
                           version: int, *, available_at: datetime, expires_at: datetime | None) -> None:
    """First order bonus and the second-purchase code (each once per customer)."""
    now = utcnow()
    bonus = first_order_bonus(customer, program, version, available_at=available_at, expires_at=expires_at, now=now)
    if bonus is not None and ledger.find_entry(session, shop.id, "customer", str(customer.id),
                                               "first_order_bonus") is None:
        write_bonus(session, shop.id, customer.id, bonus, order_id=order.id, now=now)
    spec = second_purchase_code(shop, customer, program)
    if spec is not None:
        codes.record_code(session, shop, enqueue=False, **spec)


def gift_tasks(shop_id: int, order_id: int, merchandise: Decimal | None, total_weight_grams: int | None,
               program: Program, now: datetime) -> list[dict[str, Any]]:
    """Return the tag/note tasks (column values) of every gift the order qualifies for. Pure."""
    tasks = []
    for gift in program.gifts:
        amount_ok = gift.min_amount is not None and (merchandise or 0) >= gift.min_amount
        weight_ok = gift.min_grams is not None and (total_weight_grams or 0) >= gift.min_grams
        if amount_ok or weight_ok:
            tasks.append(dict(
                shop_id=shop_id, order_id=order_id, kind="gift", key=gift.name,
                payload={"tag": gift.tag, "note": gift.note, "gift": gift.name},
                status="pending", attempts=0, created_at=now, updated_at=now,
            ))
    return tasks


def record_gift_tasks(session: Session, tasks: list[dict[str, Any]]) -> list[OrderTask]:
    """Write gift tasks once per order and gift; each new one is enqueued after the commit."""
    created = []
    for values in tasks:
        stmt = dialect_insert(session, OrderTask.__table__).values(**values)
        new_id = session.execute(
            stmt.on_conflict_do_nothing(index_elements=["order_id", "kind", "key"]).returning(OrderTask.__table__.c.id)
        ).scalar()
        if new_id is not None:
            after_commit(session, lambda task_id=new_id: enqueue_order_task(task_id))
            created.append(session.get(OrderTask, new_id))
    return created


def gifts_for(session: Session, shop: Shop, order: Order, program: Program) -> list[OrderTask]:
    """Record a tag/note task for every gift the order qualifies for (once per order and gift)."""
    return record_gift_tasks(
        session, gift_tasks(shop.id, order.id, order.merchandise, order.total_weight_grams, program, utcnow()))


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
