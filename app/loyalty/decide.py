"""Decide: what an order's state deserves in the ledger, as a plan (pure: no session, no I/O).

The writer (`app.loyalty.points.reconcile_order`) loads the facts of one order — the order with
its refunds, its customer, the entries it already has and, when points may be taken back, the
customer's open lots — calls `plan_order`, and writes the plan it returns. Nothing here chooses
how a row reaches the database.

The rules, in one place each:
- `still_counts` (and its SQL twin `counts_clause`): whether an order still counts — paid and not
  cancelled, refunded or deleted. Points, tiers and referrals all ask this one question.
- `award`: what a paid order earns (a new rule such as "double points on Sundays" goes here, and
  into its table test in tests/app/test_decide.py); an order worth more than the shop's sanity
  limit (`earning.max_points_per_order`) raises `PointsOverLimitError`, so its delivery ends
  failed with the reason and nothing is written. Product rules (`earning.product_rules`) weigh
  the order's lines on the same base (`earning.product_share`; rounded down once per order),
  the award's lot keeps each line's weight and the entry each line's points and rule, so a
  refund of a line takes back that line's own points (`earning.reversal_by_lines`); a rule that
  needs product facts that could not be looked up raises `ProductFactsMissingError`.
- `plan_order`: the entries that move the order's award to what it deserves now:
  - `earn` (one per order): when the order is paid, from the rule in force then; the lot keeps the
    rule, base and merchandise so later reversals use the original award, not today's rule;
  - `refund` (one per refund): takes back the award's share of the refunded merchandise so far
    (every refund already taken back, and the new ones up to this one), minus what reversals
    already took, so the total never depends on arrival order;
  - `cancel` (once): an order that stopped counting takes back the rest;
  - `restore` (once): an order that counts again gets back what `cancel` took;
  - `gift_card` (one per gift-card transaction that arrived after the award): the award moves to
    what the order deserves with the value gift cards paid now, refunds included.
  Reversals are measured against the award the order deserves now (`awarded`), so a refund after
  a gift-card move takes its share of the moved award.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.loyalty import earning
from app.models import LotState
from app.program import Program
from connectors.types import OrderStatus

REVERSAL_REASONS = ("refund", "cancel", "restore")
GIFT_CARD_REASON = "gift_card"
# Every entry that makes up what an order's award stands at.
ORDER_REASONS = ("earn", GIFT_CARD_REASON, *REVERSAL_REASONS)

# An order with one of these statuses no longer counts, whatever else it says.
GONE_STATUSES = (OrderStatus.CANCELLED.value, OrderStatus.REFUNDED.value)


# --- Whether an order still counts -------------------------------------------------------------

def is_gone(order: Any) -> bool:
    """Return True when the order was cancelled, fully refunded or deleted (any object with
    `deleted_at`, `cancelled_at` and `status`: an `Order` row or `OrderFacts`)."""
    return order.deleted_at is not None or order.cancelled_at is not None or order.status in GONE_STATUSES


def still_counts(order: Any, since: datetime | None = None) -> bool:
    """Return True when the order counts for points, tiers and referrals: paid and not gone
    (and, with `since`, paid at or after it)."""
    return (
        bool(order.is_paid)
        and not is_gone(order)
        and (since is None or (order.paid_at is not None and order.paid_at >= since))
    )


def counts_clause(model: Any) -> Any:
    """Return `still_counts` as a SQL condition on the `Order` model (`model`), for set-based reads."""
    from sqlalchemy import and_, or_

    return and_(
        model.is_paid.is_(True),
        model.deleted_at.is_(None),
        model.cancelled_at.is_(None),
        or_(model.status.is_(None), model.status.notin_(GONE_STATUSES)),
    )


# --- Facts -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RefundFacts:
    """One stored refund of the order (`OrderRefund`)."""

    id: int
    platform_id: str
    merchandise: Decimal
    happened_at: datetime  # the platform's time, else when we stored it
    # The refund's own lines gave `merchandise` (else it is an estimate from the order's totals).
    detailed: bool = False
    # The refunded merchandise per order line: (line id, amount); empty when the platform gave none.
    lines: tuple[tuple[str, Decimal], ...] = ()


@dataclass(frozen=True)
class OrderFacts:
    """The order as stored now (after this delivery's snapshot), with its refunds."""

    id: int
    number: str | None
    currency: str | None
    is_paid: bool
    paid_at: datetime | None
    merchandise: Decimal | None
    merchandise_tax: Decimal | None
    taxes_included: bool
    gift_card_paid: Decimal | None
    tags: tuple[str, ...]
    status: str | None
    cancelled_at: datetime | None
    deleted_at: datetime | None
    refunds: tuple[RefundFacts, ...] = ()
    total_weight_grams: int = 0
    # Its merchandise lines, with their products' collections/categories and tags when the
    # program's product rules need them (`earning.product_rules`); the shop's time zone dates them.
    lines: tuple[earning.LineAmounts, ...] = ()
    timezone: str | None = None
    # Product ids whose facts (collections, categories, tags) a product rule needs and that could
    # not be looked up: the order is not awarded until they are (`ProductFactsMissingError`).
    unknown_products: tuple[str, ...] = ()


@dataclass(frozen=True)
class CustomerFacts:
    """What the earning rules read of the order's customer."""

    id: int
    tier: str | None
    banned: bool


@dataclass(frozen=True)
class EntryFacts:
    """One ledger entry the order already has."""

    reason: str
    source_type: str
    source_id: str
    delta: int
    shortfall: int
    lot_id: int | None


@dataclass(frozen=True)
class LotFacts:
    """One of the customer's lots: the order's own, and every open one (points left)."""

    id: int
    points: int
    remaining: int
    state: LotState
    earned_at: datetime
    available_at: datetime
    rule: dict[str, Any]


# --- The plan ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewLot:
    """A lot to insert (the award's)."""

    points: int
    state: LotState
    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None
    rule: dict[str, Any]


@dataclass(frozen=True)
class NewEntry:
    """A ledger entry to insert; `lot_id` None with `on_new_lot` means the plan's `new_lot`."""

    reason: str
    source_type: str
    source_id: str
    delta: int
    pending_delta: int
    available_delta: int
    detail: dict[str, Any]
    shortfall: int = 0
    lot_id: int | None = None
    on_new_lot: bool = False


@dataclass(frozen=True)
class LotChange:
    """What a lot holds after the plan."""

    lot_id: int
    remaining: int
    state: LotState


@dataclass(frozen=True)
class Award:
    """What a paid order earns, and when (the steps after a payment need the dates)."""

    points: int
    base: Decimal
    multiplier: Decimal
    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None
    share: earning.ProductShare | None = None  # how its lines earned under product rules


@dataclass(frozen=True)
class OrderPlan:
    """The ledger changes one order needs now. `award` is set when the order earns for the first
    time (the steps after a payment follow); `decide_again` when reversals must be decided
    against the award's lot once it is written."""

    entries: tuple[NewEntry, ...] = ()
    new_lot: NewLot | None = None
    lot_changes: tuple[LotChange, ...] = ()
    award: Award | None = None
    decide_again: bool = False
    skipped: str | None = None  # why a paid order earned nothing (logged by the writer)

    @property
    def empty(self) -> bool:
        """Return True when there is nothing to write."""
        return not self.entries and self.new_lot is None and not self.lot_changes


# --- Earning -----------------------------------------------------------------------------------

class PointsOverLimitError(Exception):
    """An order would earn more than the shop's sanity limit (`earning.max_points_per_order`).

    The delivery that carried it ends failed with this text, and nothing of it is written.
    """

class ProductFactsMissingError(Exception):
    """A product rule needs a product's collections, categories or tags that could not be
    looked up: the order is not awarded (a rule is never ignored); its delivery is tried again
    (`jobs.deliveries`)."""


def paid_day(order: OrderFacts, now: datetime) -> date:
    """Return the day the order was paid, in the shop's time zone (product rules' validity)."""
    from zoneinfo import ZoneInfo

    when = order.paid_at or now
    return when.astimezone(ZoneInfo(order.timezone or "UTC")).date()


def add_months(when: datetime, months: int) -> datetime:
    """Return `when` plus calendar months (the 31st becomes the month's last day)."""
    month_index = when.month - 1 + months
    year, month = when.year + month_index // 12, month_index % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def window_end(paid_at: datetime, program: Program) -> datetime:
    """Return when the return window of an order paid at `paid_at` ends."""
    return paid_at + timedelta(days=program.earning.return_window_days)


def tier_multiplier(program: Program, tier: str | None) -> Decimal:
    """Return the points multiplier of a tier (1 without one)."""
    level = program.tier(tier)
    return level.multiplier if level else Decimal("1")


def amounts_of(order: OrderFacts) -> earning.OrderAmounts:
    """Return the parts of the order that decide its points."""
    return earning.OrderAmounts(
        merchandise=order.merchandise or Decimal("0"),
        merchandise_tax=order.merchandise_tax or Decimal("0"),
        taxes_included=order.taxes_included,
        gift_card_paid=order.gift_card_paid or Decimal("0"),
        tags=order.tags,
    )


def award(order: OrderFacts, customer: CustomerFacts, program: Program, now: datetime) -> Award | str:
    """Return what the paid `order` earns, or why it earns nothing ("banned", "excluded").

    Raises:
        PointsOverLimitError: the order would earn more than `earning.max_points_per_order`.
    """
    if customer.banned:
        return "banned"
    amounts = amounts_of(order)
    if earning.is_excluded(amounts, program.earning):
        return "excluded"
    base = earning.eligible_base(amounts, program.earning)
    multiplier = tier_multiplier(program, customer.tier)
    if order.unknown_products and any(r.needs_lookup for r in program.earning.product_rules):
        raise ProductFactsMissingError(
            f"order {order.number or order.id}: the collections, categories or tags of product(s) "
            f"{', '.join(order.unknown_products)} could not be looked up; the order's points wait for them")
    share = earning.product_share(order.lines, amounts, program.earning, paid_day(order, now))
    if share is None:
        points = earning.points_for(base, program.earning, multiplier)
    else:
        points = earning.points_by_product(base, program.earning, multiplier, share.eligible, share.weighted)
    limit = program.earning.max_points_per_order
    if points > limit:
        raise PointsOverLimitError(
            f"order {order.number or order.id} would earn {points} points, more than the shop's limit of "
            f"{limit} per order (program: earning.max_points_per_order); nothing was awarded"
        )
    earned_at = order.paid_at or now
    return Award(
        points=points,
        base=base,
        multiplier=multiplier,
        earned_at=earned_at,
        available_at=window_end(earned_at, program),
        expires_at=add_months(earned_at, program.expiry.months) if program.expiry.months else None,
        share=share,
    )


def _line_records(won: Award) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the lot rule's lines (weights to share the award and refunds by) and the entry
    detail's (each line's points and the rule it matched)."""
    assert won.share is not None
    shares = earning.apportion(won.points, [line.weight for line in won.share.lines])
    kept, shown = [], []
    for line, points in zip(won.share.lines, shares, strict=True):
        kept.append({"id": line.id, "merchandise": str(line.merchandise), "weight": str(line.weight),
                     "rule": line.rule, "effect": line.effect, "factor": str(line.factor)})
        shown.append({"id": line.id, "points": points, "rule": line.rule, "effect": line.effect,
                      "factor": str(line.factor), "matched": line.matched})
    return kept, shown


def _earn(order: OrderFacts, customer: CustomerFacts, program: Program, version: int, won: Award,
          now: datetime) -> tuple[NewEntry, NewLot | None]:
    detail = {"order": order.number, "base": str(won.base), "currency": order.currency,
              "multiplier": str(won.multiplier), "tier": customer.tier}
    source = ("earn", "order", str(order.id))
    kept: list[dict[str, Any]] | None = None
    if won.share is not None:
        kept, detail["lines"] = _line_records(won)
    if won.points <= 0:  # a zero award still marks the order as handled
        return NewEntry(*source, delta=0, pending_delta=0, available_delta=0, detail=detail), None
    state = LotState.AVAILABLE if won.available_at <= now else LotState.PENDING
    lot = NewLot(
        points=won.points, state=state, earned_at=won.earned_at, available_at=won.available_at,
        expires_at=won.expires_at,
        rule={
            "rule": "order",
            "program_version": version,
            "points_per_unit": str(program.earning.points_per_unit),
            "multiplier": str(won.multiplier),
            "tier": customer.tier,
            "earn_on_gross": program.earning.earn_on_gross,
            "base": str(won.base),
            "gift_card_paid": str(amounts_of(order).gift_card_paid),
            "merchandise": str(amounts_of(order).merchandise),
            "currency": order.currency,
            "return_window_days": program.earning.return_window_days,
            # Earned under product rules: each line's weight, so refunds take back a line's own points.
            **({"lines": kept, "eligible": str(won.share.eligible), "weighted": str(won.share.weighted)}
               if won.share is not None else {}),
        },
    )
    pending = won.points if state == LotState.PENDING else 0
    entry = NewEntry(*source, delta=won.points, pending_delta=pending, available_delta=won.points - pending,
                     detail=detail, on_new_lot=True)
    return entry, lot


# --- Taking back and giving back ---------------------------------------------------------------

@dataclass
class _Lots:
    """The customer's lots while a plan is decided: what each holds after the steps so far."""

    by_id: dict[int, LotFacts]
    changed: dict[int, LotFacts] = field(default_factory=dict)

    def take_back(self, points: int, own_lot_id: int) -> tuple[int, int, int, list[list[int]]]:
        """Remove up to `points`: the order's own lot first, then other pending lots, then available
        ones, oldest first. Returns (pending, available, shortfall, [[lot id, taken], ...])."""
        open_lots = [lot for lot in self.by_id.values()
                     if lot.state in (LotState.PENDING, LotState.AVAILABLE) and lot.remaining > 0]
        open_lots.sort(key=lambda lot: (lot.id != own_lot_id, lot.state != LotState.PENDING, lot.earned_at, lot.id))
        left, pending, available, moved = points, 0, 0, []
        for lot in open_lots:
            if left <= 0:
                break
            take = min(lot.remaining, left)
            left -= take
            if lot.state == LotState.PENDING:
                pending += take
            else:
                available += take
            remaining = lot.remaining - take
            self._set(replace(lot, remaining=remaining, state=LotState.REVERSED if remaining == 0 else lot.state))
            moved.append([lot.id, take])
        return pending, available, left, moved

    def give_back(self, points: int, lot_id: int, now: datetime) -> LotState:
        """Return `points` to the lot (a reversed one opens again); returns its state after."""
        lot = self.by_id[lot_id]
        state = lot.state
        if state == LotState.REVERSED:
            state = LotState.AVAILABLE if lot.available_at <= now else LotState.PENDING
        self._set(replace(lot, remaining=lot.remaining + points, state=state))
        return state

    def _set(self, lot: LotFacts) -> None:
        self.by_id[lot.id] = self.changed[lot.id] = lot


def needs_lots(order: OrderFacts, entries: tuple[EntryFacts, ...], gift_card_source: str | None) -> bool:
    """Return True when `plan_order` may take points back or give them back, i.e. needs the
    customer's lots: the order has an award and refunds, stopped counting, was cancelled before,
    or a gift-card transaction moves it. Otherwise the order's points stand as they are."""
    has_award = any(e.reason == "earn" and e.source_type == "order" and e.lot_id is not None for e in entries)
    cancelled = any(e.reason == "cancel" for e in entries)
    return has_award and (bool(order.refunds) or is_gone(order) or cancelled or gift_card_source is not None)


def plan_history(order: OrderFacts) -> OrderPlan:
    """Return the plan of a paid order from before the program that earns nothing (a backfill's
    choice): one zero `earn` entry, so the order counts as handled and no later event awards it."""
    return OrderPlan(entries=(NewEntry("earn", "order", str(order.id), delta=0, pending_delta=0, available_delta=0,
                                       detail={"order": order.number, "history": True}),),
                     skipped="history")


def plan_order(
    order: OrderFacts,
    customer: CustomerFacts | None,
    entries: tuple[EntryFacts, ...],
    lots: tuple[LotFacts, ...],
    program: Program,
    version: int,
    now: datetime,
    *,
    gift_card_source: str | None = None,
) -> OrderPlan:
    """Return the entries and lot changes that make the order's points match its current state.

    `entries`: the order's own entries; `lots`: the customer's lots when `needs_lots` says so
    (the award's lot among them). `gift_card_source`: the id of the gift-card transaction just
    stored; an award earned before it moves to what the order deserves now, in one entry keyed
    by it.

    Raises:
        PointsOverLimitError: see `award`.
    """
    key = {(e.source_type, e.source_id, e.reason): e for e in entries}
    earn = key.get(("order", str(order.id), "earn"))
    if earn is None:
        if not order.is_paid or order.merchandise is None or customer is None:
            return OrderPlan()
        won = award(order, customer, program, now)
        if isinstance(won, str):
            return OrderPlan(skipped=won)
        entry, lot = _earn(order, customer, program, version, won, now)
        again = lot is not None and (bool(order.refunds) or is_gone(order))
        return OrderPlan(entries=(entry,), new_lot=lot, award=won, decide_again=again)
    if not needs_lots(order, entries, gift_card_source):
        return OrderPlan()  # earned nothing, or nothing to take back or give back
    state = _Lots({lot.id: lot for lot in lots})
    own = state.by_id[earn.lot_id]
    awarded = earning.award_with_gift_cards(own.rule, order.gift_card_paid or Decimal("0"))
    if awarded is None:
        awarded = own.points
    merchandise = Decimal(own.rule["merchandise"])

    def taken(refunds: list[RefundFacts]) -> int:
        """What refunds take back of the award: each refunded line its own points' share when the
        award was earned under product rules and the refunds name their lines, else the share of
        the refunded merchandise."""
        refunded_now = sum((r.merchandise for r in refunds), Decimal("0"))
        if earning.rule_lines(own.rule) is None or any(r.merchandise > 0 and not r.lines for r in refunds):
            return earning.reversal_target(awarded, merchandise, refunded_now)
        by_line: dict[str, Decimal] = {}
        for r in refunds:
            for line_id, amount in r.lines:
                by_line[line_id] = by_line.get(line_id, Decimal("0")) + amount
        return earning.reversal_by_lines(own.rule, awarded, by_line)

    net = sum(e.delta - e.shortfall for e in entries if e.reason in ORDER_REASONS)
    done = awarded - net  # what reversals took of today's award
    planned: list[NewEntry] = []

    def debit(reason: str, source_type: str, source_id: str, points: int, detail: dict[str, Any]) -> None:
        pending, available, shortfall, moved = state.take_back(points, own.id)
        planned.append(NewEntry(
            reason, source_type, source_id, delta=-(pending + available), pending_delta=-pending,
            available_delta=-available, shortfall=shortfall, lot_id=own.id,
            detail={**detail, "requested": points, "lots": moved},
        ))

    def credit(reason: str, source_type: str, source_id: str, points: int, detail: dict[str, Any]) -> None:
        lot_state = state.give_back(points, own.id, now)
        pending = points if lot_state == LotState.PENDING else 0
        planned.append(NewEntry(reason, source_type, source_id, delta=points, pending_delta=pending,
                                available_delta=points - pending, lot_id=own.id, detail=detail))

    # Each new refund, in the order they happened, takes the share of what is refunded by then
    # (every refund already taken back included, whenever it happened) minus what is done; so the
    # refunds together take the share of their sum, whatever order they arrived in.
    new_refunds = [r for r in order.refunds if ("refund", str(r.id), "refund") not in key]
    counted = [r for r in order.refunds if r not in new_refunds]
    for refund in sorted(new_refunds, key=lambda r: (r.happened_at, r.id)):
        counted.append(refund)
        want = taken(counted) - done
        if want <= 0:
            continue
        debit("refund", "refund", str(refund.id), want,
              {"order": order.number, "refund": refund.platform_id, "refunded": str(refund.merchandise),
               "of": str(merchandise)})
        done += want

    gone = is_gone(order)
    cancel = key.get(("order", str(order.id), "cancel"))
    # A refund taken back on an estimate whose own lines arrived since (WooCommerce lists refund
    # totals only, fact 32): the refunds' reversals move to the share of the exact figures, in
    # one entry keyed by that refund (so once).
    corrected = [r for r in order.refunds if r.detailed and ("refund", str(r.id), "refund") in key
                 and ("refund_detail", str(r.id), "refund") not in key]
    if corrected and not gone and cancel is None:
        move = taken(list(order.refunds)) - done
        first = min(corrected, key=lambda r: (r.happened_at, r.id))
        detail = {"order": order.number, "refund": first.platform_id, "refunded": str(first.merchandise),
                  "of": str(merchandise), "detail": True}
        if move > 0:
            debit("refund", "refund_detail", str(first.id), move, detail)
            done += move
        elif move < 0:
            credit("refund", "refund_detail", str(first.id), -move, detail)
            done += move
    if gone and cancel is None and awarded - done > 0:
        why = "deleted" if order.deleted_at else (order.status or "cancelled")
        debit("cancel", "order", str(order.id), awarded - done, {"order": order.number, "why": why})
    elif not gone and cancel is not None and -cancel.delta > 0 and ("order", str(order.id), "restore") not in key:
        credit("restore", "order", str(order.id), -cancel.delta, {"order": order.number})

    if gift_card_source is not None and ("transaction", gift_card_source, GIFT_CARD_REASON) not in key:
        target = 0 if gone else awarded - taken(counted)
        move = target - (net + sum(e.delta - e.shortfall for e in planned))
        detail = {"order": order.number,
                  "gift_card_paid": str((order.gift_card_paid or Decimal("0")).quantize(Decimal("0.01"))),
                  "award": awarded, "currency": order.currency}
        if move < 0:
            debit(GIFT_CARD_REASON, "transaction", gift_card_source, -move, detail)
        elif move > 0:
            credit(GIFT_CARD_REASON, "transaction", gift_card_source, move, detail)

    changes = tuple(LotChange(lot.id, lot.remaining, lot.state) for lot in state.changed.values())
    return OrderPlan(entries=tuple(planned), lot_changes=changes)


# --- Bounce-back coupon ------------------------------------------------------------------------

BOUNCE_BACK = "bounce_back"  # the code's purpose; its source key is the order's id


def earns_bounce_back(order: OrderFacts, won: Award, program: Program) -> bool:
    """Return True when the paid `order`, just awarded `won`, earns a bounce-back code: the offer
    is on and the order reaches the threshold on the base it earns points on (`won.base`), and it
    still counts (an order that arrives cancelled or refunded earns no code to take back).

    Any paid order qualifies, not only a first one; once per order (the code's unique key).
    """
    offer = program.bounce_back
    return offer.enabled and not is_gone(order) and won.base >= offer.threshold


def gone_reason(order: OrderFacts) -> str:
    """Return why an order that no longer counts stopped counting: "deleted", "cancelled" or
    "refunded" (shown with a bounce-back code taken back for it)."""
    if order.deleted_at is not None:
        return "deleted"
    if order.cancelled_at is not None or order.status == OrderStatus.CANCELLED.value:
        return "cancelled"
    return "refunded"
