"""What an order deserves in points, and the ledger entries that get it there (no Flask here).

`reconcile_order` is the only writer of order-related entries. It is idempotent and convergent:
- `earn` (one per order): when the order is paid, from the rule in force then; the lot keeps the
  rule, base and merchandise so later reversals use the original award, not today's rule;
- `refund` (one per refund): takes back the award's share of the cumulative refunded merchandise,
  minus what earlier reversals already took, so the total never depends on arrival order;
- `cancel` (once): a cancelled, deleted or fully refunded order takes back the rest;
- `restore` (once): an order restored after deletion / un-cancelled gets back what `cancel` took;
- `gift_card` (one per gift-card transaction that arrived after the award): the award moves to
  what the order deserves with the value gift cards paid now (less for a payment, more for a
  gift-card refund), refunds included, so arrival order never changes the balance.

Reversals are measured against the award the order deserves now (`awarded`), so a refund after
a gift-card move takes its share of the moved award.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.loyalty import incentives, ledger, referrals, earning as rewards, tiers
from app.db import NEW_ORDERS, forget, noted
from app.models import Customer, LedgerEntry, Order, PointLot, Shop, utcnow
from app.program import current_program
from connectors.types import OrderStatus

logger = logging.getLogger(__name__)

REVERSAL_REASONS = ("refund", "cancel", "restore")
GIFT_CARD_REASON = "gift_card"
# Every entry that makes up what an order's award stands at.
ORDER_REASONS = ("earn", GIFT_CARD_REASON, *REVERSAL_REASONS)


def _is_gone(order: Order) -> bool:
    return (
        order.deleted_at is not None
        or order.cancelled_at is not None
        or order.status in (OrderStatus.CANCELLED.value, OrderStatus.REFUNDED.value)
    )


def _award(session: Session, shop: Shop, order: Order, customer: Customer, delivery_id: int | None, *,
           new_order: bool) -> LedgerEntry | None:
    """Write the order's earn entry (and lot), then everything a first payment starts.

    `new_order`: this transaction inserted the order row, so no earn entry can exist for it yet.
    """
    if customer.banned_at is not None:
        logger.info("banned customer earns nothing", extra={"shop": shop.id, "order_id": order.id})
        return None
    version, program = current_program(session, shop)
    amounts = rewards.OrderAmounts(
        merchandise=order.merchandise or Decimal("0"),
        merchandise_tax=order.merchandise_tax or Decimal("0"),
        taxes_included=order.taxes_included,
        gift_card_paid=order.gift_card_paid or Decimal("0"),
        tags=tuple(order.tags or ()),
    )
    if rewards.is_excluded(amounts, program.earning):
        logger.info("order excluded from earning by tag", extra={"shop": shop.id, "order_id": order.id})
        return None
    base = rewards.eligible_base(amounts, program.earning)
    multiplier = tiers.multiplier(program, customer)
    points = rewards.points_for(base, program.earning, multiplier)
    now = utcnow()
    earned_at = order.paid_at or now
    available_at = incentives.window_end(earned_at, program)
    expires_at = tiers.add_months(earned_at, program.expiry.months) if program.expiry.months else None
    entry = LedgerEntry(
        shop_id=shop.id,
        customer_id=customer.id,
        order_id=order.id,
        delivery_id=delivery_id,
        delta=0,
        reason="earn",
        source_type="order",
        source_id=str(order.id),
        detail={"order": order.number, "base": str(base), "currency": order.currency,
                "multiplier": str(multiplier), "tier": customer.tier},
    )
    if points > 0:
        lot = ledger.new_lot(
            shop_id=shop.id,
            customer_id=customer.id,
            order_id=order.id,
            points=points,
            earned_at=earned_at,
            available_at=available_at,
            expires_at=expires_at,
            now=now,
            rule={
                "rule": "order",
                "program_version": version,
                "points_per_unit": str(program.earning.points_per_unit),
                "multiplier": str(multiplier),
                "tier": customer.tier,
                "earn_on_gross": program.earning.earn_on_gross,
                "base": str(base),
                "gift_card_paid": str(amounts.gift_card_paid),
                "merchandise": str(amounts.merchandise),
                "currency": order.currency,
                "return_window_days": program.earning.return_window_days,
            },
        )
        written = ledger.credit(session, entry, lot, key_is_new=new_order)
    else:
        written = ledger.append(session, entry, key_is_new=new_order)  # a zero award still marks the order as handled
    if written is None:
        return None
    # The order and the new entry are flushed (the ledger's savepoint did it); the steps below
    # change the customer (referral code, tier) and add rows by their own INSERTs, so one flush
    # later writes the customer once instead of once per step.
    with session.no_autoflush:
        if incentives.is_first_paid_order(session, customer.id, order):
            incentives.after_first_paid_order(
                session, shop, customer, order, program, version, available_at=available_at, expires_at=expires_at
            )
        # Any paid order that used a member's code is recorded (a repeat buyer is rejected as such).
        referrals.record_referral(session, shop, order, customer, program, qualifies_at=available_at, now=now)
        referrals.ensure_referral_code(session, shop, customer, program)
        incentives.gifts_for(session, shop, order, program)
        tiers.evaluate(session, shop, customer, program, version, now=now, order=order)
    if available_at <= now:
        from app.loyalty.redemptions import maybe_auto_redeem

        maybe_auto_redeem(session, shop, customer)
    return written


def _net_so_far(session: Session, order: Order) -> int:
    """Return where the order's entries put its award: earned, moved by gift cards, less what
    reversals asked for (taken plus the recorded shortfall)."""
    delta, shortfall = session.execute(
        select(
            func.coalesce(func.sum(LedgerEntry.delta), 0),
            func.coalesce(func.sum(LedgerEntry.shortfall), 0),
        ).where(LedgerEntry.order_id == order.id, LedgerEntry.reason.in_(ORDER_REASONS))
    ).one()
    return int(delta) - int(shortfall)


def _entry(shop: Shop, order: Order, customer_id: int, delivery_id: int | None, **kw) -> LedgerEntry:  # type: ignore[no-untyped-def]
    return LedgerEntry(shop_id=shop.id, customer_id=customer_id, order_id=order.id, delivery_id=delivery_id, delta=0, **kw)


def reconcile_order(session: Session, shop: Shop, order: Order, *, delivery_id: int | None = None,
                    gift_card_source: str | None = None) -> None:
    """Append the entries that make this order's points match its current state.

    `gift_card_source`: the id of the gift-card transaction just stored (`app.loyalty.orders`); an award
    earned before it moves to what the order deserves now, in one entry keyed by it.
    """
    if order.customer_id is None:
        return
    ledger.lock_customer(session, order.customer_id)
    new_order = noted(session, NEW_ORDERS, order.id)
    if new_order:
        # Inserted by this transaction, so no entry refers to it yet (and if one did, the
        # ledger's unique key would refuse the award).
        forget(session, NEW_ORDERS, order.id)
        earn = None
    else:
        earn = ledger.find_entry(session, shop.id, "order", str(order.id), "earn")
    if earn is None:
        if not order.is_paid or order.merchandise is None:
            return
        customer = session.get(Customer, order.customer_id)
        assert customer is not None
        earn = _award(session, shop, order, customer, delivery_id, new_order=new_order)
        if earn is None:
            return
        if not order.refunds and not _is_gone(order):
            return  # just earned: nothing refunded or cancelled to take back yet
    if earn.lot_id is None:
        return  # the order earned nothing, so there is nothing to take back
    lot = session.get(PointLot, earn.lot_id)
    assert lot is not None
    # What the award deserves with what gift cards paid by now (the earn's own points for a lot
    # earned before the rule recorded its gift-card value).
    awarded = rewards.award_with_gift_cards(lot.rule, order.gift_card_paid or Decimal("0"))
    if awarded is None:
        awarded = lot.points
    merchandise = Decimal(lot.rule["merchandise"])
    customer_id = earn.customer_id
    done = awarded - _net_so_far(session, order)  # what reversals took of today's award

    # Refunds in the order they happened; each takes its cumulative share minus what is done.
    refunded = Decimal("0")
    for refund in sorted(order.refunds, key=lambda r: (r.platform_created_at or r.created_at, r.id)):
        refunded += refund.merchandise
        if ledger.find_entry(session, shop.id, "refund", str(refund.id), "refund") is not None:
            continue
        want = rewards.reversal_target(awarded, merchandise, refunded) - done
        if want <= 0:
            continue
        entry = ledger.debit(
            session,
            _entry(
                shop, order, customer_id, delivery_id,
                reason="refund", source_type="refund", source_id=str(refund.id),
                detail={"order": order.number, "refund": refund.platform_id,
                        "refunded": str(refund.merchandise), "of": str(merchandise)},
            ),
            want,
            own_lot_id=lot.id,
        )
        if entry is not None:
            done += want

    gone = _is_gone(order)
    cancel = ledger.find_entry(session, shop.id, "order", str(order.id), "cancel")
    if gone and cancel is None and awarded - done > 0:
        why = "deleted" if order.deleted_at else (order.status or "cancelled")
        ledger.debit(
            session,
            _entry(shop, order, customer_id, delivery_id, reason="cancel", source_type="order",
                   source_id=str(order.id), detail={"order": order.number, "why": why}),
            awarded - done,
            own_lot_id=lot.id,
        )
    elif not gone and cancel is not None and -cancel.delta > 0:
        restored = ledger.find_entry(session, shop.id, "order", str(order.id), "restore")
        if restored is None:
            ledger.restore(
                session,
                _entry(shop, order, customer_id, delivery_id, reason="restore", source_type="order",
                       source_id=str(order.id), detail={"order": order.number}),
                -cancel.delta,
                lot=lot,
            )

    if gift_card_source is not None:
        target = 0 if gone else awarded - rewards.reversal_target(awarded, merchandise, refunded)
        _move_for_gift_cards(session, shop, order, customer_id, delivery_id, lot, gift_card_source,
                             target - _net_so_far(session, order), awarded)


def _move_for_gift_cards(session: Session, shop: Shop, order: Order, customer_id: int, delivery_id: int | None,
                         lot: PointLot, source: str, points: int, awarded: int) -> None:
    """Move the award by `points` (taken back when negative, given back to its lot when positive)."""
    if points == 0:
        return
    entry = _entry(
        shop, order, customer_id, delivery_id, reason=GIFT_CARD_REASON, source_type="transaction",
        source_id=source,
        detail={"order": order.number,
                "gift_card_paid": str((order.gift_card_paid or Decimal("0")).quantize(Decimal("0.01"))),
                "award": awarded, "currency": order.currency},
    )
    if points < 0:
        ledger.debit(session, entry, -points, own_lot_id=lot.id)
    else:
        ledger.restore(session, entry, points, lot=lot)
