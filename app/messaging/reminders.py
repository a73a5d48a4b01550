"""Reminders that bring customers back: what is due, and whether it may go now (no Flask here).

Scheduling state lives on indexed columns so sweeps read only what is due:
- checkouts.next_reminder_at / next_step / sequence (cart sequence, restarted when the cart changes);
- customers.next_winback_at (from each customer's own order rhythm, refreshed at every paid order);
- point_lots.expires_at (expiry notices), recent issued codes, tier changes and earn entries.
A sweep turns due items into `ReminderMessage` rows (unique per campaign, subject and step) and
enqueues one send job per due row; `decide` is what that job asks before it sends.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import String, and_, bindparam, cast, exists, func, select, tuple_
from sqlalchemy.orm import Session

from app.messaging import consent
from app.db import dialect_insert
from app.models import (
    Checkout,
    CodeStatus,
    Customer,
    IssuedCode,
    LedgerEntry,
    LotState,
    MessageStatus,
    Order,
    PointLot,
    ReminderMessage,
    Shop,
    ShopStatus,
    TierChange,
    WebhookDelivery,
    utcnow,
)
from app.program import Program, Sending, WinBack, current_program
from connectors import types as ct

logger = logging.getLogger(__name__)

MARKETING = {"cart": True, "winback": True, "second_purchase": True, "tier_change": True,
             "expiry": False, "points_earned": False, "doi": False, "bounce_back": True}
MARKETING["voucher"] = False  # a redeemed partner voucher's code (app.loyalty.vouchers), sent at once
BATCH = 1000
STALE_CLAIM = timedelta(minutes=10)


# ---- scheduling state, updated as events arrive ------------------------------------------


def cart_fingerprint(checkout: ct.Checkout | ct.Order) -> str:
    """Return a hash of what is in the cart (lines and total): a change restarts the sequence."""
    lines = sorted((li.variant_id or li.product_id or li.id, li.quantity) for li in checkout.line_items)
    return hashlib.sha256(repr((lines, str(checkout.total))).encode()).hexdigest()


def schedule_cart(row: Checkout, program: Program) -> None:
    """Set when the checkout's next reminder step is due (None when the sequence is over)."""
    rules = program.reminders.cart
    if not rules.enabled or row.completed_at is not None or row.sequence_started_at is None or not row.email:
        row.next_reminder_at = None
        return
    if row.next_step > len(rules.steps_hours):
        row.next_reminder_at = None
        return
    due = row.sequence_started_at + timedelta(hours=rules.steps_hours[row.next_step - 1])
    idle_from = (row.platform_updated_at or row.sequence_started_at) + timedelta(minutes=rules.idle_minutes)
    row.next_reminder_at = max(due, idle_from)


def note_cart_content(row: Checkout, fingerprint: str, changed_at: datetime, program: Program) -> None:
    """Start a new reminder sequence when the cart's content changed (or on first sight)."""
    if row.content_fingerprint != fingerprint:
        if row.content_fingerprint is not None:
            row.sequence = (row.sequence or 1) + 1
        row.content_fingerprint = fingerprint
        row.sequence_started_at = changed_at
        row.next_step = 1
    schedule_cart(row, program)


_PAID_AT = select(Order.paid_at).where(
    Order.customer_id == bindparam("customer_id"), Order.is_paid.is_(True), Order.paid_at.is_not(None)
)


def winback_fields(paid: list[datetime], rules: WinBack) -> dict[str, datetime | None]:
    """Return the customer's `last_order_at` and `next_winback_at` from the times of their paid
    orders (ascending, at least one). Pure.

    With 3+ orders the expected gap is the median gap between them, and the win-back is due when
    overdue by `factor` x that gap (at least `min_days`); with fewer, `default_days` after the last.
    """
    if not rules.enabled:
        return {"last_order_at": paid[-1], "next_winback_at": None}
    if len(paid) >= 3:
        gaps = [(b - a).total_seconds() for a, b in zip(paid, paid[1:])]
        wait = max(timedelta(seconds=float(rules.factor) * statistics.median(gaps)), timedelta(days=rules.min_days))
    else:
        wait = timedelta(days=rules.default_days)
    return {"last_order_at": paid[-1], "next_winback_at": paid[-1] + wait}


def schedule_winback(session: Session, customer: Customer, program: Program, *, paid_now: Order | None = None,
                     new_customer: bool = False) -> None:
    """Refresh last_order_at and next_winback_at from the customer's paid orders (`winback_fields`).

    `paid_now` is the order whose payment calls this; with `new_customer` (the caller created the
    customer for it in this transaction) it is their only one.
    """
    if paid_now is not None and paid_now.paid_at is not None and new_customer:
        paid = [paid_now.paid_at]
    else:
        paid = sorted(t for t in session.scalars(_PAID_AT, {"customer_id": customer.id}) if t is not None)
    if not paid:
        return
    for name, value in winback_fields(paid, program.reminders.winback).items():
        setattr(customer, name, value)


def suppress_for_history(session: Session, customer: Customer) -> None:
    """Keep the double opt-in request from a customer first seen in a shop's backfilled history:
    its row is written `suppressed` (reason `backfill`), so no sweep schedules one."""
    now = utcnow()
    stmt = dialect_insert(session, ReminderMessage.__table__).values(
        shop_id=customer.shop_id, customer_id=customer.id, campaign="doi", subject_key=str(customer.id), step=1,
        marketing=MARKETING["doi"], email=None, status=MessageStatus.SUPPRESSED.value, reason="backfill",
        due_at=now, attempts=0, context={}, created_at=now, updated_at=now,
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["shop_id", "campaign", "subject_key", "step"]))


# ---- quiet hours and cap ---------------------------------------------------------------------


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(now: datetime, tz_name: str, sending: Sending) -> datetime | None:
    """Return when quiet hours end if `now` falls inside them (shop time zone, DST-aware), else None."""
    tz = ZoneInfo(tz_name)
    local = now.astimezone(tz)
    start, end = _clock(sending.quiet_start), _clock(sending.quiet_end)
    t = local.time()
    inside = (start <= t or t < end) if start > end else (start <= t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    # Build the local wall-clock end and let zoneinfo pick the right offset for that day.
    return datetime.combine(day, end, tzinfo=tz).astimezone(now.tzinfo)


def cap_until(session: Session, customer_id: int, now: datetime, sending: Sending) -> datetime | None:
    """Return when the marketing frequency cap lets the next e-mail go, or None if it may go now."""
    window_start = now - timedelta(hours=sending.cap_hours)
    sent = list(session.scalars(
        select(ReminderMessage.sent_at)
        .where(ReminderMessage.customer_id == customer_id, ReminderMessage.marketing.is_(True),
               ReminderMessage.status.in_([MessageStatus.SENT, MessageStatus.SENDING]),
               ReminderMessage.sent_at > window_start)
        .order_by(ReminderMessage.sent_at)
    ))
    if len(sent) < sending.cap_count:
        return None
    return sent[len(sent) - sending.cap_count] + timedelta(hours=sending.cap_hours)


# ---- the sweep ---------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one sweep did."""

    created: dict[str, int]
    enqueued: list[int]

    def summary(self) -> str:
        """Return one line a person can read."""
        parts = [f"{k}: {v}" for k, v in sorted(self.created.items()) if v]
        return f"new messages ({', '.join(parts) or 'none'}); send jobs enqueued: {len(self.enqueued)}"


class _Programs:
    def __init__(self, session: Session) -> None:
        self.session, self._cache = session, {}

    def __call__(self, shop_id: int) -> tuple[Shop, Program]:
        if shop_id not in self._cache:
            shop = self.session.get(Shop, shop_id)
            assert shop is not None
            self._cache[shop_id] = (shop, current_program(self.session, shop)[1])
        return self._cache[shop_id]


def _add_message(session: Session, *, shop_id: int, campaign: str, subject_key: str, step: int,
                 customer_id: int | None, email: str | None, due_at: datetime, checkout_id: int | None = None,
                 context: dict | None = None) -> bool:
    now = utcnow()
    stmt = dialect_insert(session, ReminderMessage.__table__).values(
        shop_id=shop_id, customer_id=customer_id, campaign=campaign, subject_key=subject_key, step=step,
        marketing=MARKETING[campaign], email=email, checkout_id=checkout_id, status=MessageStatus.SCHEDULED.value,
        due_at=due_at, attempts=0, context=context or {}, created_at=now, updated_at=now,
    )
    result = session.execute(
        stmt.on_conflict_do_nothing(index_elements=["shop_id", "campaign", "subject_key", "step"])
        .returning(ReminderMessage.__table__.c.id)
    )
    return result.scalar() is not None


def _keyset(session: Session, query, columns, batch: int = BATCH) -> Iterator[list]:  # type: ignore[no-untyped-def]
    """Yield rows of `query` ordered by `columns` (due column, id), `batch` at a time.

    Paging on the due column's index keeps each page proportional to what is due, even with a
    large backlog; comparing against the last values read means moving a processed row's due
    time (to the next step, or NULL) never disturbs the walk.
    """
    last = None
    while True:
        page = query if last is None else query.where(tuple_(*columns) > tuple(last))
        rows = session.execute(page.order_by(*columns).limit(batch)).all()
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][: len(columns)])


def sweep_carts(session: Session, at: datetime, programs: _Programs) -> int:
    """Create the due cart-reminder steps and advance each checkout to its next step."""
    created = 0
    query = select(Checkout.next_reminder_at, Checkout.id).where(Checkout.next_reminder_at <= at)
    for rows in _keyset(session, query, (Checkout.next_reminder_at, Checkout.id)):
        for _, checkout_id in rows:
            row = session.get(Checkout, checkout_id)
            assert row is not None
            _, program = programs(row.shop_id)
            if row.next_reminder_at is None or row.next_reminder_at > at:
                continue
            created += _add_message(
                session, shop_id=row.shop_id, campaign="cart", subject_key=f"{row.id}:{row.sequence}",
                step=row.next_step, customer_id=row.customer_id, email=row.email, due_at=row.next_reminder_at,
                checkout_id=row.id, context={"sequence": row.sequence},
            )
            row.next_step += 1
            schedule_cart(row, program)
        session.commit()
    return created


def sweep_winbacks(session: Session, at: datetime, programs: _Programs) -> int:
    """Create one win-back per lapse for customers whose rhythm says they are overdue."""
    created = 0
    query = select(Customer.next_winback_at, Customer.id).where(
        Customer.next_winback_at <= at, Customer.merged_into_id.is_(None)
    )
    for rows in _keyset(session, query, (Customer.next_winback_at, Customer.id)):
        for _, customer_id in rows:
            customer = session.get(Customer, customer_id)
            assert customer is not None
            if customer.next_winback_at is None or customer.next_winback_at > at or customer.last_order_at is None:
                continue
            created += _add_message(
                session, shop_id=customer.shop_id, campaign="winback",
                subject_key=f"{customer.id}:{customer.last_order_at.isoformat()}", step=1,
                customer_id=customer.id, email=customer.email, due_at=customer.next_winback_at,
            )
            customer.next_winback_at = None  # one per lapse; the next paid order schedules anew
        session.commit()
    return created


def _utc_day(session: Session, column):  # type: ignore[no-untyped-def]
    """SQL: the UTC date of a timestamp as YYYY-MM-DD (what `expires_at.date().isoformat()` gives)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)  # SQLite stores UTC as text


def _no_message(campaign: str, subject) -> object:  # type: ignore[no-untyped-def]
    """SQL condition: no message of `campaign` exists yet for this subject key."""
    return ~exists().where(
        ReminderMessage.campaign == campaign, ReminderMessage.subject_key == cast(subject, String)
    )


def sweep_notices(session: Session, at: datetime, programs: _Programs) -> dict[str, int]:
    """Second-purchase nudges, expiry notices, tier-change and points-earned notices, and the
    bounce-back codes' own e-mails.

    Each reads only recent or soon-expiring rows that have no message yet (indexed), so a sweep's
    cost follows what is new, not the size of the shop.
    """
    created = {"second_purchase": 0, "expiry": 0, "tier_change": 0, "points_earned": 0}
    week = at - timedelta(days=7)
    for code_id, shop_id, customer_id in session.execute(
        select(IssuedCode.id, IssuedCode.shop_id, IssuedCode.customer_id)
        .where(IssuedCode.purpose == "second_purchase", IssuedCode.status == CodeStatus.CREATED,
               IssuedCode.created_at >= week, _no_message("second_purchase", IssuedCode.id))
    ).all():
        _, program = programs(shop_id)
        if program.reminders.notices.second_purchase:
            created["second_purchase"] += _add_message(
                session, shop_id=shop_id, campaign="second_purchase", subject_key=str(code_id), step=1,
                customer_id=customer_id, email=None, due_at=at, context={"code_id": code_id})
    for shop_id in session.scalars(select(Shop.id)):
        _, program = programs(shop_id)
        if not program.reminders.notices.expiry or not program.expiry.months:
            continue
        horizon = at + timedelta(days=program.expiry.notice_days)
        lots = (
            select(PointLot.customer_id, func.min(PointLot.expires_at).label("expires_at"))
            .where(PointLot.shop_id == shop_id, PointLot.expires_at > at, PointLot.expires_at <= horizon,
                   PointLot.remaining > 0, PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]))
            .group_by(PointLot.customer_id)
            .subquery()
        )
        # Only customers not yet told about this expiry day (the subject key, rebuilt in SQL).
        key = cast(lots.c.customer_id, String) + ":" + _utc_day(session, lots.c.expires_at)
        for customer_id, expires_at in session.execute(
            select(lots.c.customer_id, lots.c.expires_at).where(~exists().where(
                ReminderMessage.shop_id == shop_id, ReminderMessage.campaign == "expiry",
                ReminderMessage.subject_key == key))
        ).all():
            created["expiry"] += _add_message(
                session, shop_id=shop_id, campaign="expiry",
                subject_key=f"{customer_id}:{expires_at.date().isoformat()}", step=1, customer_id=customer_id,
                email=None, due_at=at, context={"expires_on": expires_at.date().isoformat()})
    for change_id, shop_id, customer_id in session.execute(
        select(TierChange.id, TierChange.shop_id, TierChange.customer_id)
        # Entering the first tier (from none) is not news; moving up is.
        .where(TierChange.created_at >= week, TierChange.reason == "upgrade", TierChange.from_tier.is_not(None),
               _no_message("tier_change", TierChange.id))
    ).all():
        _, program = programs(shop_id)
        if program.reminders.notices.tier_change:
            created["tier_change"] += _add_message(
                session, shop_id=shop_id, campaign="tier_change", subject_key=str(change_id), step=1,
                customer_id=customer_id, email=None, due_at=at, context={"tier_change_id": change_id})
    shops_with_earned_notices = [
        shop_id for shop_id in session.scalars(select(Shop.id)) if programs(shop_id)[1].reminders.notices.points_earned
    ]
    for entry_id, shop_id, customer_id in [] if not shops_with_earned_notices else session.execute(
        select(LedgerEntry.id, LedgerEntry.shop_id, LedgerEntry.customer_id)
        .where(LedgerEntry.reason == "earn", LedgerEntry.created_at >= at - timedelta(days=2),
               LedgerEntry.delta > 0, _no_message("points_earned", LedgerEntry.id),
               # Points a backfill gave for past orders are not news.
               ~exists().where(WebhookDelivery.id == LedgerEntry.delivery_id, WebhookDelivery.source == "backfill"))
    ).all():
        _, program = programs(shop_id)
        if program.reminders.notices.points_earned:
            created["points_earned"] += _add_message(
                session, shop_id=shop_id, campaign="points_earned", subject_key=str(entry_id), step=1,
                customer_id=customer_id, email=None, due_at=at, context={"entry_id": entry_id})
    created["bounce_back"] = sweep_bounce_back(session, at, programs)
    created["doi"] = 0
    for shop_id in session.scalars(select(Shop.id)):
        _, program = programs(shop_id)
        if not program.reminders.consent.double_opt_in:
            continue
        for customer_id, email in session.execute(
            select(Customer.id, Customer.email).where(
                Customer.shop_id == shop_id, Customer.created_at >= week, Customer.email.is_not(None),
                Customer.accepts_marketing.is_not(True), Customer.unsubscribed_at.is_(None),
                Customer.merged_into_id.is_(None), _no_message("doi", Customer.id))
        ).all():
            created["doi"] += _add_message(
                session, shop_id=shop_id, campaign="doi", subject_key=str(customer_id), step=1,
                customer_id=customer_id, email=email, due_at=at)
    session.commit()
    return created


def bounce_back_goes_with_points(program: Program, earned: int | None, earned_by_backfill: bool) -> bool:
    """Return True when an order's bounce-back code goes inside the order's points-earned e-mail
    (that notice is on, and the order earned points it is sent for), else it gets an e-mail of
    its own. Pure."""
    return program.reminders.notices.points_earned and bool(earned) and earned > 0 and not earned_by_backfill


def sweep_bounce_back(session: Session, at: datetime, programs: _Programs) -> int:
    """Create the own e-mail of each new bounce-back code that exists in the shop, is not taken
    back or used, and does not go with its order's points-earned e-mail (see
    `bounce_back_goes_with_points`); the code's id is the message's subject, so once per code."""
    from app.loyalty.decide import BOUNCE_BACK

    created = 0
    rows = session.execute(
        select(IssuedCode.id, IssuedCode.shop_id, IssuedCode.customer_id, IssuedCode.source_key)
        .where(IssuedCode.purpose == BOUNCE_BACK, IssuedCode.status == CodeStatus.CREATED,
               IssuedCode.created_at >= at - timedelta(days=7), IssuedCode.ends_early_at.is_(None),
               IssuedCode.used_at.is_(None), _no_message("bounce_back", IssuedCode.id))
    ).all()
    for code_id, shop_id, customer_id, order_id in rows:
        _, program = programs(shop_id)
        if not program.bounce_back.send_email:
            continue
        # The order's award (its natural key), and whether a backfill brought it.
        earned = session.execute(
            select(LedgerEntry.delta, WebhookDelivery.source)
            .outerjoin(WebhookDelivery, WebhookDelivery.id == LedgerEntry.delivery_id)
            .where(LedgerEntry.shop_id == shop_id, LedgerEntry.source_type == "order",
                   LedgerEntry.source_id == order_id, LedgerEntry.reason == "earn")
        ).first()
        if earned is not None and bounce_back_goes_with_points(program, earned[0], earned[1] == "backfill"):
            continue
        created += _add_message(session, shop_id=shop_id, campaign="bounce_back", subject_key=str(code_id), step=1,
                                customer_id=customer_id, email=None, due_at=at, context={"code_id": code_id})
    return created


def due_messages(session: Session, at: datetime) -> list[int]:
    """Return ids of scheduled messages that are due, after releasing stale claims (indexed)."""
    stale = session.scalars(
        select(ReminderMessage).where(ReminderMessage.status == MessageStatus.SENDING,
                                      ReminderMessage.claimed_at < at - STALE_CLAIM)
    ).all()
    for message in stale:
        # The worker died between the SMTP handover and recording it: send again (same Message-ID).
        message.status = MessageStatus.SCHEDULED
        message.reason = "stale_claim"
    session.commit()
    return list(session.scalars(
        select(ReminderMessage.id)
        .where(ReminderMessage.status == MessageStatus.SCHEDULED, ReminderMessage.due_at <= at)
        .order_by(ReminderMessage.due_at, ReminderMessage.id)
    ))


def sweep(session: Session, at: datetime) -> tuple[dict[str, int], list[int]]:
    """Run every campaign's selection as of `at`; returns (new messages per campaign, due ids)."""
    programs = _Programs(session)
    created = {"cart": sweep_carts(session, at, programs), "winback": sweep_winbacks(session, at, programs)}
    created.update(sweep_notices(session, at, programs))
    return created, due_messages(session, at)


# ---- deciding a send ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What to do with a due message now."""

    action: str  # send | suppress | defer
    reason: str | None = None
    until: datetime | None = None


def _ordered_since(session: Session, customer_id: int | None, email: str | None, since: datetime) -> bool:
    conditions = [Order.is_paid.is_(True), Order.paid_at >= since]
    if customer_id is not None:
        who = Order.customer_id == customer_id
    elif email:
        who = Order.email == email
    else:
        return False
    return bool(session.scalar(select(func.count()).select_from(Order).where(and_(who, *conditions))))


def expiring_on(day: str | None) -> tuple:  # type: ignore[type-arg]
    """SQL conditions: a lot expires on this UTC day (a range, so the expires_at index serves)."""
    start = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    return (PointLot.expires_at >= start, PointLot.expires_at < start + timedelta(days=1))


def stop_reason(session: Session, message: ReminderMessage, customer: Customer | None) -> str | None:
    """Return why a campaign's message must not go any more (ordered, cart changed, ...), or None."""
    if message.campaign == "cart":
        checkout = session.get(Checkout, message.checkout_id) if message.checkout_id else None
        if checkout is None:
            return "no_checkout"
        if checkout.completed_at is not None:
            return "ordered"
        if checkout.sequence != message.context.get("sequence"):
            return "cart_changed"
        started = checkout.sequence_started_at or checkout.created_at
        if _ordered_since(session, checkout.customer_id, checkout.email, started):
            return "ordered"
    elif message.campaign == "winback" and customer is not None:
        lapse_started = message.subject_key.split(":", 1)[1]
        if customer.last_order_at is not None and customer.last_order_at.isoformat() != lapse_started:
            return "ordered"
    elif message.campaign == "second_purchase" and customer is not None:
        paid = session.scalar(select(func.count()).select_from(Order).where(
            Order.customer_id == customer.id, Order.is_paid.is_(True)))
        if paid and paid >= 2:
            return "ordered"
    elif message.campaign == "bounce_back":
        code = session.get(IssuedCode, message.context.get("code_id"))
        if code is None or code.ends_early_at is not None:
            return "code_withdrawn"
        if code.used_at is not None:
            return "code_used"
    elif message.campaign == "expiry" and customer is not None:
        expiring = session.scalar(select(func.coalesce(func.sum(PointLot.remaining), 0)).where(
            PointLot.customer_id == customer.id, PointLot.remaining > 0,
            PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]),
            *expiring_on(message.context.get("expires_on"))))
        if not expiring:
            return "nothing_expiring"
    return None


def decide(session: Session, message: ReminderMessage, customer: Customer | None, shop: Shop, program: Program,
           now: datetime) -> Decision:
    """Send, suppress (with the reason) or defer (cap, quiet hours) a due message."""
    if shop.status != ShopStatus.ACTIVE:
        return Decision("suppress", "shop_uninstalled")  # its data stays until shop/redact; no mail
    if customer is None:
        return Decision("suppress", "no_customer")
    stop = stop_reason(session, message, customer)
    if stop:
        return Decision("suppress", stop)
    blocked = consent.may_receive(
        customer, marketing=message.marketing,
        # Asking for consent (double opt-in) cannot itself need consent.
        transactional_without_consent=message.campaign == "doi"
        or program.reminders.consent.transactional_without_consent,
    )
    if message.campaign == "doi" and customer.accepts_marketing:
        blocked = "already_consented"
    if blocked:
        return Decision("suppress", blocked)
    sending = program.reminders.sending
    if message.marketing:
        cap = cap_until(session, customer.id, now, sending)
        if cap is not None:
            return Decision("defer", "cap", cap)
    # The e-mail answering the customer's own redemption (a partner voucher's code) is not held back.
    quiet = quiet_until(now, shop.timezone, sending) if message.campaign != "voucher" else None
    if quiet is not None:
        return Decision("defer", "quiet_hours", quiet)
    return Decision("send")


# ---- attribution ---------------------------------------------------------------------------------


_ATTRIBUTABLE = (
    select(ReminderMessage, IssuedCode.code)
    .outerjoin(IssuedCode, IssuedCode.id == ReminderMessage.code_id)
    .where(ReminderMessage.customer_id == bindparam("customer_id"), ReminderMessage.status == MessageStatus.SENT,
           ReminderMessage.marketing.is_(True), ReminderMessage.attributed_order_id.is_(None),
           ReminderMessage.sent_at <= bindparam("paid_at"))
    .order_by(ReminderMessage.sent_at.desc())
)


def attribute_order(session: Session, customer: Customer, order: Order, program: Program, *,
                    new_customer: bool = False) -> ReminderMessage | None:
    """Credit a paid order to the reminder that used its code, else the latest within the window.

    `new_customer`: the caller created the customer in this transaction (never sent a reminder).
    """
    if order.paid_at is None or new_customer:
        return None
    codes = {c.upper() for c in (order.discount_codes or [])}
    window = order.paid_at - timedelta(days=program.reminders.attribution_days)
    candidates = session.execute(_ATTRIBUTABLE, {"customer_id": customer.id, "paid_at": order.paid_at}).all()
    chosen = next((m for m, code in candidates if code and code.upper() in codes), None)
    if chosen is None:
        chosen = next((m for m, _ in candidates if m.sent_at and m.sent_at >= window), None)
    if chosen is None:
        return None
    chosen.attributed_order_id = order.id
    chosen.attributed_revenue = order.total
    chosen.attributed_at = utcnow()
    return chosen


def history(session: Session, customer: Customer) -> list[dict[str, object]]:
    """Return what was sent, scheduled and suppressed (and why) for a customer, oldest first."""
    rows = session.execute(
        select(ReminderMessage, IssuedCode.code, IssuedCode.status, Order.number)
        .outerjoin(IssuedCode, IssuedCode.id == ReminderMessage.code_id)
        .outerjoin(Order, Order.id == ReminderMessage.attributed_order_id)
        .where(ReminderMessage.customer_id == customer.id)
        .order_by(ReminderMessage.due_at, ReminderMessage.id)
    ).all()
    return [
        {
            "campaign": m.campaign,
            "step": m.step,
            "status": m.status.value,
            "reason": m.reason,
            "time": (m.sent_at or m.due_at).isoformat(),
            # A code that does not exist in the shop is not shown as one: only its status.
            "code": code if code_status == CodeStatus.CREATED else None,
            "code_status": code_status.value if code_status is not None else None,
            "attributed_order": number,
            "attributed_revenue": str(m.attributed_revenue) if m.attributed_revenue is not None else None,
            "error": m.error,
        }
        for m, code, code_status, number in rows
    ]
