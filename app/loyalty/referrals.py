"""The referral program: each member's code, friends' first orders, fraud rules, rewards.

No Flask here. A referral is recorded when a paid order used a member's referral code and is
decided at once when a fraud rule applies; otherwise it waits for the order's return window and is
rewarded by `settle` (scheduled) if the order was not refunded or cancelled by then.

Rewards that grow (the program's `referral.steps`): every rewarded referral gives
`referrer_points`, and takes the lowest free *place* among the member's rewarded referrals (1 =
the first). The step of that place, if any, adds its gift: extra points, or a lasting member code
(restricted to the member, no expiry, no use limits). Only referrals that passed every fraud rule
and their return window take a place; the place is settled by the database (a unique index on
(referrer, place), taken under the member's lock), so two settlements at the same moment cannot
both be "the 3rd".

A rewarded referral whose order is refunded or cancelled later is reversed (`reverse_for_order`,
from the order's own reconciliation): its points come back out through the ledger (never below
zero: what was spent is the recorded shortfall), its step's code is switched off in the shop
(uses already made stay made), and its place is freed. Places held by later referrals stay with
them, with what they gave (those friends did nothing wrong); the next referral rewarded takes the
freed place and gives that place's step again. So a member holds the gift of step N exactly while
N places are held, and a reversed referral no longer counts toward any step. A reversal is final:
an order restored afterwards does not reward the referral again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.loyalty import codes, decide, ledger
from app.db import dialect_insert
from app.models import (
    CodeStatus,
    Customer,
    IssuedCode,
    LedgerEntry,
    Order,
    Referral,
    ReferralStatus,
    Shop,
    ShopStatus,
    utcnow,
)
from app.i18n import translations
from app.messaging.render import customer_language
from app.program import Program
from connectors import get_connector

logger = logging.getLogger(__name__)


def referral_code(shop: Shop, customer: Any, program: Program) -> dict[str, Any] | None:
    """Return the member's referral code to create (`codes.record_code` keywords: a real code in
    the shop for the friend's discount), or None when the program is off, the customer banned,
    or they have one. Pure."""
    if not program.referral.enabled or customer.banned_at is not None or customer.referral_code:
        return None
    offer = program.referral
    return dict(
        purpose="referral", source_key=str(customer.id), customer_id=customer.id,
        # For the friend, whose language nobody knows yet: the shop's.
        title=translations(customer_language(None, shop)).gettext(
            "Welcome: %(percent)s %% off your first order") % {"percent": offer.friend_discount_percent},
        kind="percentage", value=offer.friend_discount_percent, valid_days=None,
        minimum_amount=offer.friend_minimum_amount, usage_limit=None,
    )


def ensure_referral_code(session: Session, shop: Shop, customer: Customer, program: Program) -> str | None:
    """Give a member their referral code (a real code in the shop for the friend's discount)."""
    spec = referral_code(shop, customer, program)
    if spec is None:
        return customer.referral_code
    row, _ = codes.record_code(session, shop, enqueue=False, **spec)
    customer.referral_code = row.code
    return row.code


FRIEND_PATH = "/f/{shop_id}/{code}"


def shop_url(shop: Shop) -> str:
    """Return the shop's storefront address (as its connector knows it)."""
    return get_connector(shop.platform.value).storefront_url(shop.domain)


def referral_link(shop: Shop, code: str, public_url: str) -> str:
    """Return the link a member shares with friends.

    Where the platform has a link that applies the code to the visitor's cart (Shopify's
    `/discount/<code>`), that one; otherwise (core WooCommerce has none: see the connector's
    `discount_link`) our friend page (`app.web.public`): it shows the discount and the code, and
    leads to the shop.
    """
    link = get_connector(shop.platform.value).discount_link(shop.domain, code)
    return link or public_url.rstrip("/") + FRIEND_PATH.format(shop_id=shop.id, code=quote(code, safe=""))


def referral_code_row(session: Session, customer: Customer) -> IssuedCode | None:
    """Return the outbox row of the member's referral code (pending, created or failed), or None."""
    return session.scalars(
        select(IssuedCode).where(
            IssuedCode.shop_id == customer.shop_id, IssuedCode.purpose == "referral",
            IssuedCode.source_key == str(customer.id),
        )
    ).first()


@dataclass(frozen=True)
class FriendOffer:
    """What a friend's page shows for a member's code: nothing about the member."""

    shop: Shop
    code: str
    kind: str
    value: Decimal
    currency: str
    minimum_amount: Decimal | None


def friend_offer(session: Session, shop_id: int, code: str) -> FriendOffer | None:
    """Return the offer behind a referral code that exists in an active shop, else None.

    A code that is unknown, not a referral code, or not created in the shop (pending or failed)
    gives None: the page must never show a code the shop would refuse.
    """
    shop = session.get(Shop, shop_id)
    if shop is None or shop.status != ShopStatus.ACTIVE:
        return None
    row = session.scalars(
        _REFERRAL_CODE, {"shop_id": shop.id, "codes": [code.strip().upper()]}
    ).first()
    if row is None or row.status != CodeStatus.CREATED:
        return None
    spec = row.spec
    minimum = spec.get("minimum_amount")
    return FriendOffer(
        shop=shop, code=row.code, kind=spec["kind"], value=Decimal(spec["value"]),
        currency=spec.get("currency") or shop.currency, minimum_amount=Decimal(minimum) if minimum else None,
    )


_REFERRAL_CODE = select(IssuedCode).where(
    # Our codes are stored upper-case, so this uses the (shop_id, code) index.
    IssuedCode.shop_id == bindparam("shop_id"),
    IssuedCode.code.in_(bindparam("codes", expanding=True)),
    IssuedCode.purpose == "referral",
)


def _referrer_for(session: Session, shop: Shop, order: Order) -> tuple[Customer, str] | None:
    # Referral codes are ours (`codes.derive_code`), so a code without their prefix is the shop's own.
    prefix = codes.PREFIXES["referral"] + "-"
    wanted = {code for c in (order.discount_codes or []) if c and (code := c.strip().upper()).startswith(prefix)}
    if not wanted:
        return None
    row = session.scalars(_REFERRAL_CODE, {"shop_id": shop.id, "codes": sorted(wanted)}).first()
    if row is None or row.customer_id is None:
        return None
    referrer = session.get(Customer, row.customer_id)
    return (referrer, row.code) if referrer is not None else None


def _reject_reason(session: Session, shop: Shop, program: Program, referrer: Customer, friend: Customer,
                   order: Order, now: datetime) -> str | None:
    if referrer.id == friend.id or (referrer.email and referrer.email == friend.email):
        return "self_referral"
    if order.shipping_address_fingerprint:
        same_address = session.scalar(
            select(func.count()).select_from(Order).where(
                Order.customer_id == referrer.id,
                Order.shipping_address_fingerprint == order.shipping_address_fingerprint,
            )
        )
        if same_address:
            return "self_referral"
    if referrer.banned_at is not None or friend.banned_at is not None:
        return "banned"
    earlier = session.scalar(
        select(func.count()).select_from(Order).where(
            Order.customer_id == friend.id, Order.is_paid.is_(True), Order.id != order.id,
            Order.paid_at <= (order.paid_at or now),
        )
    )
    if earlier:
        return "not_new_customer"
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    this_month = session.scalar(
        select(func.count()).select_from(Referral).where(
            Referral.referrer_id == referrer.id,
            Referral.created_at >= month_start,
            Referral.status.in_([ReferralStatus.PENDING, ReferralStatus.REWARDED]),
        )
    )
    if this_month >= program.referral.monthly_cap:
        return "monthly_cap"
    return None


def record_referral(session: Session, shop: Shop, order: Order, friend: Customer, program: Program,
                    qualifies_at: datetime, now: datetime | None = None) -> Referral | None:
    """Record that a paid order used a referral code (once per friend), deciding fraud at once."""
    if not program.referral.enabled:
        return None
    found = _referrer_for(session, shop, order)
    if found is None:
        return None
    referrer, code = found
    now = now or utcnow()
    ledger.lock_customer(session, referrer.id)  # serializes the monthly cap per referrer
    reason = _reject_reason(session, shop, program, referrer, friend, order, now)
    stmt = dialect_insert(session, Referral.__table__).values(
        shop_id=shop.id, referrer_id=referrer.id, referred_customer_id=friend.id, order_id=order.id, code=code,
        status=(ReferralStatus.REJECTED if reason else ReferralStatus.PENDING).value, reason=reason,
        qualifies_at=qualifies_at, created_at=now, updated_at=now,
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["shop_id", "referred_customer_id"]))
    referral = session.scalars(
        select(Referral).where(Referral.shop_id == shop.id, Referral.referred_customer_id == friend.id)
    ).one()
    if reason:
        logger.info("referral rejected", extra={"shop": shop.id, "referral": referral.id, "reason": reason})
    return referral


def settle(session: Session, referral_id: int, now: datetime | None = None) -> Referral | None:
    """Reward or reject a pending referral whose window has passed (idempotent)."""
    now = now or utcnow()
    referral = session.get(Referral, referral_id)
    if referral is None:
        return None
    ledger.lock_customer(session, referral.referrer_id)
    session.refresh(referral)
    if referral.status != ReferralStatus.PENDING or referral.qualifies_at > now:
        return referral
    order = session.get(Order, referral.order_id)
    shop = session.get(Shop, referral.shop_id)
    assert order is not None and shop is not None
    if not decide.still_counts(order) or order.refunds:  # any refund rejects the referral
        referral.status, referral.reason = ReferralStatus.REJECTED, "refunded"
        return referral
    from app.program import current_program

    version, program = current_program(session, shop)
    referrer = session.get(Customer, referral.referrer_id)
    assert referrer is not None
    if referrer.banned_at is not None:
        referral.status, referral.reason = ReferralStatus.REJECTED, "banned"
        return referral
    place = _take_place(session, referral)
    points = program.referral.referrer_points
    if points > 0:
        lot = ledger.new_lot(
            shop_id=shop.id, customer_id=referrer.id, points=points, earned_at=now, available_at=now, now=now,
            rule={"rule": "referral", "program_version": version, "points": points, "order": order.number},
        )
        ledger.credit(
            session,
            LedgerEntry(shop_id=shop.id, customer_id=referrer.id, delta=0, reason="referral",
                        source_type="referral", source_id=str(referral.id),
                        detail={"order": order.number, "place": place}),
            lot,
        )
    step = program.referral.step(place)
    if step is not None:
        _give_step(session, shop, referrer, referral, order, step, version, now)
    return referral


# --- rewards that grow: places and steps ---------------------------------------------------------

STEP_PURPOSE = "referral_step"  # the lasting member code of a step (`codes.PREFIXES`)
_PLACE_TRIES = 5


def _take_place(session: Session, referral: Referral) -> int:
    """Mark `referral` rewarded in the lowest place its member has free, and return the place.

    The caller holds the member's lock, so settlements of one member run one after another; the
    unique index on (referrer, place) is what guarantees it, whatever the caller: a place written
    meanwhile makes the UPDATE fail in its savepoint, and the next free place is taken.

    Status and place go in one UPDATE, the referral's only one in the transaction: PostgreSQL
    checks the foreign keys of a row updated a second time in the transaction that wrote it,
    which would wait for the friend's order and customer, held by a refund being applied.

    Raises:
        IntegrityError: no free place could be written in `_PLACE_TRIES` attempts.
    """
    for attempt in range(_PLACE_TRIES):
        held = set(session.scalars(
            select(Referral.place).where(Referral.referrer_id == referral.referrer_id, Referral.place.is_not(None))
        ))
        place = next(n for n in range(1, len(held) + 2) if n not in held)
        try:
            with session.begin_nested():
                referral.place, referral.status = place, ReferralStatus.REWARDED
                session.flush()
        except IntegrityError:
            session.expire_all()
            logger.info("referral place taken meanwhile", extra={"referral": referral.id, "attempt": attempt})
            if attempt == _PLACE_TRIES - 1:
                raise
            continue
        return place
    raise AssertionError("unreachable")


def restrictable(shop: Shop, customer: Any) -> bool:
    """Return True when the shop can restrict a code to `customer`: Shopify by the customer's
    id, WooCommerce by their e-mail (`email_restrictions`). A lasting code for anyone else would
    be a discount for everybody, so a step's code is made only for a member this is True of."""
    return bool(customer.platform_id) if shop.platform.value == "shopify" else bool(customer.email)


def step_code(shop: Shop, customer: Any, referral_id: int, place: int, percent: Decimal) -> dict[str, Any]:
    """Return the step's lasting member code (`codes.record_code` keywords): restricted to the
    member, no expiry, no use limits, one per referral (it goes when that referral is reversed). Pure."""
    texts = translations(customer_language(customer, shop))
    return dict(
        purpose=STEP_PURPOSE, source_key=str(referral_id), customer_id=customer.id,
        platform_customer_id=customer.platform_id, customer_email=customer.email,
        title=texts.ngettext("Thank you for %(count)s friend: %(percent)s %% member discount",
                             "Thank you for %(count)s friends: %(percent)s %% member discount", place)
        % {"count": place, "percent": f"{percent.normalize():f}"},
        kind="percentage", value=percent, valid_days=None, ends_at=None, usage_limit=None,
        once_per_customer=False,
    )


def _give_step(session: Session, shop: Shop, referrer: Customer, referral: Referral, order: Order,
               step: Any, version: int, now: datetime) -> None:
    """Write what the referral's step gives, explained in the ledger (which step, which order)."""
    detail: dict[str, Any] = {"order": order.number, "place": step.count}
    if step.points is not None:
        lot = ledger.new_lot(
            shop_id=shop.id, customer_id=referrer.id, points=step.points, earned_at=now, available_at=now, now=now,
            rule={"rule": "referral_step", "program_version": version, "points": step.points,
                  "order": order.number, "place": step.count},
        )
        ledger.credit(session, LedgerEntry(shop_id=shop.id, customer_id=referrer.id, delta=0, reason="referral_step",
                                           source_type="referral", source_id=str(referral.id), detail=detail), lot)
        return
    percent = step.member_discount_percent
    detail["percent"] = f"{percent.normalize():f}"
    if restrictable(shop, referrer):
        row, _ = codes.record_code(session, shop, enqueue=False,
                                   **step_code(shop, referrer, referral.id, step.count, percent))
        detail["code"] = row.code
    else:
        detail["code"] = None
        logger.info("referral step code not made: member cannot be restricted",
                    extra={"shop": shop.id, "referral": referral.id})
    ledger.append(session, LedgerEntry(
        shop_id=shop.id, customer_id=referrer.id, delta=0, pending_delta=0, available_delta=0,
        reason="referral_step_code", source_type="referral", source_id=str(referral.id), detail=detail))


_REFERRAL_OF_FRIEND = select(Referral).where(
    Referral.shop_id == bindparam("shop_id"), Referral.referred_customer_id == bindparam("friend_id"),
)


def reverse_for_order(session: Session, shop: Shop, order: Order, now: datetime | None = None) -> Referral | None:
    """Reverse the rewarded referral of `order` when the order no longer counts or has a refund
    (the test `settle` applies); returns the referral reversed now, else None. Idempotent: a
    referral is reversed once, and every entry it writes has its natural key.

    Call it after an order change was written; it reads only when the order is refunded or
    cancelled. Pending referrals are left to `settle`, which rejects them (it reads the order's
    refunds under the member's lock, which this takes too).
    """
    if order.customer_id is None or (decide.still_counts(order) and not order.refunds):
        return None
    found = session.scalars(_REFERRAL_OF_FRIEND, {"shop_id": shop.id, "friend_id": order.customer_id}).first()
    if found is None or found.order_id != order.id or found.status == ReferralStatus.REJECTED:
        return None
    now = now or utcnow()
    # The same lock as `settle`, taken even for a pending referral: a settlement running now
    # either sees this refund (and rejects), or has committed its reward before we read it here.
    ledger.lock_customer(session, found.referrer_id)
    session.refresh(found)
    if found.status != ReferralStatus.REWARDED:
        return None
    why = "refunded" if order.refunds else ("deleted" if order.deleted_at is not None else "cancelled")
    _take_back(session, shop, found, "referral", "referral_reversed", order, why)
    _take_back(session, shop, found, "referral_step", "referral_step_reversed", order, why)
    step_entry = ledger.find_entry(session, shop.id, "referral", str(found.id), "referral_step_code")
    if step_entry is not None:
        row = session.scalars(select(IssuedCode).where(
            IssuedCode.shop_id == shop.id, IssuedCode.purpose == STEP_PURPOSE, IssuedCode.source_key == str(found.id),
        )).first()
        if row is not None:
            codes.end_codes_early(session, [row], now)
        ledger.append(session, LedgerEntry(
            shop_id=shop.id, customer_id=found.referrer_id, delta=0, pending_delta=0, available_delta=0,
            reason="referral_step_code_reversed", source_type="referral", source_id=str(found.id),
            detail={**step_entry.detail, "why": why}))
    found.status, found.reason, found.place, found.reversed_at = ReferralStatus.REJECTED, "refunded", None, now
    logger.info("referral reversed", extra={"shop": shop.id, "referral": found.id})
    return found


def _take_back(session: Session, shop: Shop, referral: Referral, reason: str, reversal: str, order: Order,
               why: str) -> None:
    """Take back the points of the referral's `reason` entry, if it gave any (entry `reversal`)."""
    given = ledger.find_entry(session, shop.id, "referral", str(referral.id), reason)
    if given is None or given.delta <= 0:
        return
    ledger.debit(session, LedgerEntry(
        shop_id=shop.id, customer_id=referral.referrer_id, delta=0, reason=reversal, source_type="referral",
        source_id=str(referral.id), detail={"order": order.number, "place": given.detail.get("place"), "why": why},
    ), given.delta, own_lot_id=given.lot_id)


@dataclass(frozen=True)
class Progress:
    """How far a member is on the referral steps: rewarded referrals that count, the next step."""

    rewarded: int  # places held: rewarded referrals not reversed
    pending: int  # friends' orders still in their return window
    next_step: Any  # app.program.ReferralStep | None: the first step whose place is free
    to_go: int | None  # rewarded referrals still needed for it (free places up to it)


def progress(session: Session, customer: Customer, program: Program) -> Progress:
    """Return the member's rewarded referral count and their next step (one read).

    The next referral takes the lowest free place, so the next step is the first one whose place
    is free, and it is reached after as many rewarded referrals as there are free places up to it.
    """
    rows = session.execute(
        select(Referral.status, Referral.place).where(
            Referral.referrer_id == customer.id,
            Referral.status.in_([ReferralStatus.PENDING, ReferralStatus.REWARDED]),
        )
    ).all()
    held = {place for status, place in rows if status == ReferralStatus.REWARDED and place is not None}
    pending = sum(1 for status, _ in rows if status == ReferralStatus.PENDING)
    step = next((s for s in program.referral.steps if s.count not in held), None)
    to_go = None if step is None else step.count - sum(1 for place in held if place < step.count)
    return Progress(rewarded=len(held), pending=pending, next_step=step, to_go=to_go)


def due_referrals(session: Session, now: datetime, limit: int = 1000) -> list[int]:
    """Return ids of pending referrals whose window has passed (indexed)."""
    return list(
        session.scalars(
            select(Referral.id)
            .where(Referral.status == ReferralStatus.PENDING, Referral.qualifies_at <= now)
            .order_by(Referral.qualifies_at)
            .limit(limit)
        )
    )
