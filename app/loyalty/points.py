"""Bring an order's points in line with its state: load the facts, decide, write (no Flask here).

`reconcile_order` is the only writer of order-related entries; what they are is decided in
`app.loyalty.decide` (pure). It is idempotent and convergent: the plan is decided under the
customer's lock from the entries the order already has, and the ledger's natural key
(shop, source_type, source_id, reason) refuses a second copy of any of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.loyalty import codes, decide, incentives, ledger, referrals, tier_tags, tiers
from app.db import insert_row
from app.models import Customer, LedgerEntry, LotState, Order, PointLot, Shop, TierChange, utcnow
from app.program import Program, current_program

logger = logging.getLogger(__name__)


class PlanConflictError(RuntimeError):
    """An entry of the plan existed already (another transaction wrote it meanwhile): the
    delivery is decided again in a transaction of its own (`jobs.deliveries`)."""


@dataclass(frozen=True)
class FirstOrderSteps:
    """What follows the first award of a customer created for this order, decided (see
    `first_order_steps`); the writers only write it."""

    bonus: incentives.Bonus | None
    codes: tuple[dict[str, Any], ...]  # `codes.record_code` keywords; none enqueued (the sweep hands them on)
    gifts: tuple[dict[str, Any], ...]  # order tasks' column values
    tier_change: dict[str, Any] | None  # a tier change's column values
    customer_fields: dict[str, Any]  # the customer's columns after the steps


def first_order_steps(shop: Shop, customer: Any, order: decide.OrderFacts, program: Program, version: int,
                      won: decide.Award, now: datetime) -> FirstOrderSteps:
    """Return everything that follows the first award of a customer created for this order (it
    is their first paid order; they have no codes, entries or tier yet): the first-order bonus
    and the second-purchase code, the order's bounce-back code, the member's own referral code,
    gifts with purchase and the tier the order reaches, with its perk codes. Pure: the same rules `after_payment` applies to
    any customer, decided without reading what a new customer cannot have.

    `customer`: the row, or any object with its columns (`app.loyalty.writer`).
    """
    bonus = incentives.first_order_bonus(customer, program, version, available_at=won.available_at,
                                         expires_at=won.expires_at, now=now)
    specs: list[dict[str, Any]] = []
    fields: dict[str, Any] = {}
    second = incentives.second_purchase_code(shop, customer, program)
    if second is not None:
        specs.append(second)
    bounce = incentives.bounce_back_code(shop, customer, order, program, won)
    if bounce is not None:
        specs.append(bounce)
    referral = referrals.referral_code(shop, customer, program)
    if referral is not None:
        specs.append(referral)
        fields["referral_code"] = codes.derive_code(shop.id, referral["purpose"], referral["source_key"])
    gifts = incentives.gift_tasks(shop.id, order.id, order.merchandise, order.total_weight_grams, program, now)
    change = None
    if program.tiers.levels:
        value = tiers.first_order_metric(program, order, max(won.points, 0), now)
        tier = tiers.upgrade_to(program, customer.tier, value)
        if tier is not None:
            change, tier_fields = tiers.tier_change(customer, tier, value, "upgrade", version, program, now)
            fields.update(tier_fields)
            specs.extend(tiers.perk_codes(shop, customer, tier, tier_fields["tier_period_ends_at"]))
    return FirstOrderSteps(bonus=bonus, codes=tuple(specs), gifts=tuple(gifts), tier_change=change,
                           customer_fields=fields)


def write_first_order_steps(session: Session, shop: Shop, customer: Customer, order_id: int,
                            steps: FirstOrderSteps, now: datetime) -> None:
    """Write `steps` row by row (the per-delivery path; `app.loyalty.writer` writes them in bulk)."""
    if steps.bonus is not None:
        incentives.write_bonus(session, shop.id, customer.id, steps.bonus, order_id=order_id, now=now)
    for spec in steps.codes:
        codes.record_code(session, shop, enqueue=False, **spec)
    incentives.record_gift_tasks(session, list(steps.gifts))
    if steps.tier_change is not None:
        session.add(TierChange(**steps.tier_change))
        tier_tags.mark_customers(session, shop.id, [customer], now)  # the shop shows the tier
        logger.info("tier changed", extra={"shop": shop.id, "customer": customer.id, "reason": "upgrade"})
    for name, value in steps.customer_fields.items():
        setattr(customer, name, value)


def after_payment(session: Session, shop: Shop, customer: Customer, order: Order, program: Program,
                  version: int, won: decide.Award, *, facts: decide.OrderFacts, new_customer: bool = False) -> None:
    """Everything that follows an order's first award, in this order (each step is keyed, so it
    happens once): the first-order bonus and second-purchase code, the order's bounce-back code,
    the referral the order's code names, the member's own referral code, gifts with purchase, a tier upgrade, and auto-redeem
    once points are available.

    `new_customer`: the caller created the customer for this order in this transaction (it is
    their only order; they have no codes or tier yet): the steps are `first_order_steps`.
    """
    now = utcnow()
    # The steps change the customer (referral code, tier) and add rows by their own INSERTs, so one
    # flush later writes the customer once instead of once per step.
    with session.no_autoflush:
        if new_customer:
            write_first_order_steps(session, shop, customer, order.id,
                                    first_order_steps(shop, customer, facts, program, version, won, now), now)
            referrals.record_referral(session, shop, order, customer, program, qualifies_at=won.available_at,
                                      now=now)
        else:
            if incentives.is_first_paid_order(session, customer.id, order):
                incentives.after_first_paid_order(
                    session, shop, customer, order, program, version, available_at=won.available_at,
                    expires_at=won.expires_at,
                )
            incentives.bounce_back_for(session, shop, customer, facts, program, won)
            # Any paid order that used a member's code is recorded (a repeat buyer is rejected as such).
            referrals.record_referral(session, shop, order, customer, program, qualifies_at=won.available_at,
                                      now=now)
            referrals.ensure_referral_code(session, shop, customer, program)
            incentives.gifts_for(session, shop, order, program)
            tiers.evaluate(session, shop, customer, program, version, now=now)
    if won.available_at <= now:
        from app.loyalty.redemptions import maybe_auto_redeem

        maybe_auto_redeem(session, shop, customer)


def order_facts(order: Order, *, timezone: str | None = None) -> decide.OrderFacts:
    """Return the loaded order row (with its refunds and lines) as the facts `decide` reads;
    `timezone`: the shop's (the date product rules are in force on)."""
    from app.loyalty.products import order_lines

    return decide.OrderFacts(
        id=order.id, number=order.number, currency=order.currency, is_paid=bool(order.is_paid),
        paid_at=order.paid_at, merchandise=order.merchandise, merchandise_tax=order.merchandise_tax,
        taxes_included=bool(order.taxes_included), gift_card_paid=order.gift_card_paid,
        tags=tuple(order.tags or ()), status=order.status, cancelled_at=order.cancelled_at,
        deleted_at=order.deleted_at, total_weight_grams=order.total_weight_grams or 0,
        refunds=tuple(
            decide.RefundFacts(r.id, r.platform_id, r.merchandise, r.platform_created_at or r.created_at,
                               detailed=r.detailed_at is not None,
                               lines=tuple((str(line_id), Decimal(amount)) for line_id, amount in r.lines or ()))
            for r in order.refunds
        ),
        lines=order_lines(order.lines),
        timezone=timezone,
    )


def with_product_facts(session: Session, shop: Shop, order: Order, facts: decide.OrderFacts,
                       program: Program, now: datetime) -> decide.OrderFacts:
    """Return `facts` with its lines' collections or categories and tags, looked up before
    (`app.loyalty.products`), and the product ids whose facts are missing or too old, when the
    program has a rule that reads them (one SELECT); else `facts` as they are."""
    from app.loyalty import products

    if not products.needs_lookup(program):
        return facts
    wanted = products.line_product_ids(order.lines)
    found = products.fresh_facts(session, shop.id, wanted, now)
    return replace(facts, lines=products.order_lines(order.lines, found),
                   unknown_products=tuple(pid for pid in wanted if pid not in found))


_ENTRIES = LedgerEntry.__table__
_LOTS = PointLot.__table__
_ORDER_ENTRIES = select(
    _ENTRIES.c.reason, _ENTRIES.c.source_type, _ENTRIES.c.source_id, _ENTRIES.c.delta, _ENTRIES.c.shortfall,
    _ENTRIES.c.lot_id,
).where(_ENTRIES.c.order_id == bindparam("order_id"), _ENTRIES.c.reason.in_(decide.ORDER_REASONS))
# The customer's open lots and the order's own (which may be reversed, to be given back).
_CUSTOMER_LOTS = select(
    _LOTS.c.id, _LOTS.c.points, _LOTS.c.remaining, _LOTS.c.state, _LOTS.c.earned_at, _LOTS.c.available_at,
    _LOTS.c.rule,
).where(
    _LOTS.c.customer_id == bindparam("customer_id"),
    ((_LOTS.c.state.in_([LotState.PENDING, LotState.AVAILABLE]) & (_LOTS.c.remaining > 0))
     | (_LOTS.c.id == bindparam("own_lot_id"))),
)
_UPDATE_LOT = (
    update(_LOTS).where(_LOTS.c.id == bindparam("lot_id"))
    .values(remaining=bindparam("new_remaining"), state=bindparam("new_state"), updated_at=bindparam("now"))
)


def reconcile_order(session: Session, shop: Shop, order: Order, *, delivery_id: int | None = None,
                    gift_card_source: str | None = None, new_order: bool = False,
                    new_customer: bool = False, customer: Customer | None = None, history: Any = None) -> None:
    """Append the entries that make this order's points match its current state.

    `gift_card_source`: the id of the gift-card transaction just stored (`app.loyalty.orders`).
    `new_order`: the caller inserted the order row in this transaction, so no entry refers to it
    yet (and if one did, the ledger's unique key would refuse the award). `new_customer`: the
    caller created its customer for it (see `after_payment`). `customer`: the order's customer,
    when the caller holds its row locked already (else it is locked here). `history`: the order
    comes from a backfill (`app.loyalty.orders.History`): it earns only if the backfill awards its
    payment date (else a zero `earn` entry marks it as history, so no later event awards it), and
    nothing of `after_payment` follows.

    Raises:
        PlanConflictError: an entry of the plan was written meanwhile by another transaction.
    """
    if order.customer_id is None:
        return
    if customer is None:
        customer = ledger.lock_customer(session, order.customer_id)
    version, program = current_program(session, shop)
    while True:
        now = utcnow()
        facts = order_facts(order, timezone=shop.timezone)
        entries: tuple[decide.EntryFacts, ...] = () if new_order else tuple(
            decide.EntryFacts(*row) for row in session.execute(_ORDER_ENTRIES, {"order_id": order.id})
        )
        earns = history is None or history.earns(order.paid_at)  # history that earns nothing reads none
        if order.is_paid and earns and not any(e.reason == "earn" and e.source_type == "order" for e in entries):
            facts = with_product_facts(session, shop, order, facts, program, now)  # the award reads them
        lots: tuple[decide.LotFacts, ...] = ()
        if decide.needs_lots(facts, entries, gift_card_source):
            own = next(e.lot_id for e in entries if e.reason == "earn" and e.source_type == "order")
            lots = tuple(decide.LotFacts(*row) for row in session.execute(
                _CUSTOMER_LOTS, {"customer_id": customer.id, "own_lot_id": own}))
        who = decide.CustomerFacts(customer.id, customer.tier, customer.banned_at is not None)
        plan = decide.plan_order(facts, who, entries, lots, program, version, now, gift_card_source=gift_card_source)
        if history is not None and plan.award is not None and not history.earns(order.paid_at):
            plan = decide.plan_history(facts)
        if plan.skipped:
            logger.log(logging.DEBUG if plan.skipped == "history" else logging.INFO, "order earns nothing",
                       extra={"shop": shop.id, "order_id": order.id, "why": plan.skipped})
        write_plan(session, shop.id, customer.id, order.id, delivery_id, plan, now)
        if decide.is_gone(facts):
            codes.withdraw_order_codes(session, shop.id, order.id, decide.gone_reason(facts), now)
        elif plan.award is not None and order.discount_codes:
            codes.note_used_codes(session, shop.id, customer.id, order.discount_codes, now)
        # A friend's order refunded or cancelled after its referral was rewarded reverses it.
        referrals.reverse_for_order(session, shop, order, now)
        if plan.award is not None and history is None:
            after_payment(session, shop, customer, order, program, version, plan.award, facts=facts,
                          new_customer=new_customer)
        if not plan.decide_again:
            return
        new_order = False


def write_plan(session: Session, shop_id: int, customer_id: int, order_id: int, delivery_id: int | None,
               plan: decide.OrderPlan, now: datetime) -> None:
    """Write `plan`: its new lot (one INSERT returning its id), its entries (one INSERT of all of
    them, skipping a natural key that exists), its lot changes (one UPDATE, executemany).

    Raises:
        PlanConflictError: the ledger's natural key refused an entry (written meanwhile).
    """
    if plan.empty:
        return
    session.flush()  # the order's snapshot goes before the rows that refer to it
    new_lot_id = None
    if plan.new_lot is not None:
        new_lot_id = insert_row(session, PointLot, ledger.lot_values(
            plan.new_lot, shop_id=shop_id, customer_id=customer_id, order_id=order_id, now=now)).id
    if plan.entries:
        rows = [ledger.entry_values(e, shop_id=shop_id, customer_id=customer_id, order_id=order_id,
                                    delivery_id=delivery_id, lot_id=new_lot_id, now=now) for e in plan.entries]
        written = session.execute(ledger.insert_entries(session), rows).all()
        if len(written) != len(rows):
            raise PlanConflictError(f"order {order_id}: a ledger entry of the plan exists already")
    if plan.lot_changes:
        session.execute(_UPDATE_LOT, [
            {"lot_id": c.lot_id, "new_remaining": c.remaining, "new_state": c.state, "now": now}
            for c in plan.lot_changes
        ])
        ledger.forget_lots(session, {c.lot_id for c in plan.lot_changes})
