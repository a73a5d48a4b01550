"""What a customer sees and does in the shop itself: balance, tier, rewards, codes, redeem (no Flask).

The one core behind every storefront surface: the Shopify app proxy page and its JSON API
(`app.web.proxy`), the widget, and the WooCommerce plugin's signed API. Everything here reads with
indexed queries (customer by (shop, platform id), lots by (customer, state), entries by
(customer, id), codes and redemptions by customer) and never calls a platform on the request
path. Redeeming goes through `app.loyalty.redemptions.redeem`, the mechanism the staff, the
e-mail link and automatic redemption use: points first, the code by a job, exactly once.

Texts come from the customer page's catalogs (`app.i18n`), in the language the caller names
("de" or "en"; `language_for` picks it like every other customer-facing text does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, case, func, or_, select
from sqlalchemy.orm import Session

from app.i18n import translations
from app.loyalty import decide, earning, explain, ledger, products, redemptions, tiers, vouchers
from app.loyalty.referrals import progress as referral_progress
from app.loyalty.referrals import referral_code_row, referral_link
from app.messaging.render import customer_language, format_money, format_number, spoken_language, worth_text
from app.models import (
    CodeStatus,
    Customer,
    IssuedCode,
    LedgerEntry,
    LotState,
    Order,
    PointLot,
    Redemption,
    RedemptionStatus,
    Shop,
    utcnow,
)
from app.program import PLATFORM_KINDS as program_platform_kinds
from app.program import Program, Reward, current_program

HISTORY_LINES = 50
CODE_LINES = 50
_MERGE_HOPS = 5
# A storefront request key: what a browser or plugin sends per click (a UUID fits).
_REQUEST_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
# Currencies whose hundredth is called a cent, so a point's value reads "1 Punkt = 1 Cent".
_CENT_CURRENCIES = frozenset({"EUR", "USD", "CAD", "AUD", "NZD"})
# Reward kinds only some platforms can give (one list, in app.program).
PLATFORM_KINDS = program_platform_kinds


class StorefrontError(ValueError):
    """A storefront request that cannot be done; `message` says why in the customer's language,
    `reason` in a word a script can test ("unknown_reward", "not_enough_points", "banned",
    "tier", "bad_request_key", "currency", "not_a_member", "sold_out")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- views -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Money:
    """An amount in a currency (ISO code)."""

    amount: Decimal
    currency: str


@dataclass(frozen=True)
class PointValue:
    """What one point is worth when redeemed ("1 Punkt = 1 Cent"): as the program states it
    (`source` "program") or derived from its cheapest amount reward ("reward"); see
    `Program.point_worth`. `money` is exact; amounts of points are rounded half up to the cent."""

    money: Money
    text: str
    source: str = "reward"


@dataclass(frozen=True)
class Maturing:
    """Pending points and when they become available (the return window ends)."""

    points: int
    available_at: datetime


@dataclass(frozen=True)
class BalanceView:
    """A member's points: available now, pending (and when they mature)."""

    available: int
    pending: int
    maturing: tuple[Maturing, ...]

    @property
    def next_available_at(self) -> datetime | None:
        """Return when the next pending points become available, or None."""
        return self.maturing[0].available_at if self.maturing else None


@dataclass(frozen=True)
class RewardView:
    """One reward of the catalog as this customer sees it."""

    id: str
    name: str
    points: int
    kind: str
    amount: Money | None  # fixed_amount, store_credit
    percent: Decimal | None  # percentage
    affordable: bool
    missing: int  # points still needed (0 when affordable)
    # What a combination offer gives, in the customer's words ("Kaufe 2 × X, erhalte Y gratis").
    description: str | None = None
    # False: a partner voucher whose pool has no code left; it cannot be redeemed (not affordable).
    in_stock: bool = True


@dataclass(frozen=True)
class TierLevel:
    """A tier of the program: reached at `threshold` (money when the metric is spend)."""

    name: str
    threshold: Decimal
    threshold_money: Money | None
    multiplier: Decimal
    member_discount_percent: Decimal
    free_shipping: bool


@dataclass(frozen=True)
class TierView:
    """Where a member stands: their tier, and what reaching the next one needs."""

    name: str | None
    until: datetime | None  # the tier is kept at least until then
    metric: str  # "spend" | "points"
    value: Decimal  # spend (shop currency) or points counted so far
    value_money: Money | None
    next_name: str | None
    next_threshold: Decimal | None
    missing: Decimal | None  # what is still needed for the next tier
    missing_money: Money | None


@dataclass(frozen=True)
class CodeView:
    """One code made for the member. `code` is given only when it can be used in the shop."""

    id: int
    purpose: str  # reward | tier_discount | tier_shipping | second_purchase | cart | winback
    reward: str | None
    kind: str
    state: str  # usable | pending | failed | expired | ended | credited
    code: str | None
    amount: Money | None
    expires_at: datetime | None
    created_at: datetime
    description: str | None = None  # a combination offer: what the code gives


@dataclass(frozen=True)
class HistoryLine:
    """One ledger entry, newest first, with the sentence that says why."""

    at: datetime
    points: int
    pending_points: int
    available_points: int
    reason: str
    why: str


@dataclass(frozen=True)
class ReferralStepView:
    """The member's next referral step: reached at their `count`-th rewarded friend, `to_go`
    rewarded friends from now; it gives `points` or a lasting `member_discount_percent` code."""

    count: int
    to_go: int
    points: int | None
    member_discount_percent: Decimal | None


@dataclass(frozen=True)
class ReferralView:
    """The member's invitation: the link once the code exists in the shop, else its status."""

    status: str  # created | pending | failed
    link: str | None
    friend_discount_percent: Decimal
    referrer_points: int
    rewarded: int = 0  # friends whose referral was rewarded (and not reversed)
    next_step: ReferralStepView | None = None  # the program's next referral step, if any is left


@dataclass(frozen=True)
class ProgramView:
    """What the program offers (the logged-out page, and the "how it works" of a member's)."""

    shop_name: str
    language: str
    currency: str
    points_per_unit: Decimal
    earn_text: str
    point_value: PointValue | None
    return_window_days: int
    signup_bonus: int
    first_order_bonus: int
    rewards: tuple[RewardView, ...]
    tiers: tuple[TierLevel, ...]
    tier_metric: str
    referral_friend_discount_percent: Decimal | None
    referral_points: int | None


@dataclass(frozen=True)
class MemberView:
    """Everything a logged-in member sees about their points."""

    shop_name: str
    language: str
    currency: str
    customer_id: str | None  # the platform's customer id
    banned: bool
    balance: BalanceView
    tier: TierView
    rewards: tuple[RewardView, ...]  # open to their tier, cheapest first
    affordable: tuple[RewardView, ...]
    next_reward: RewardView | None  # the cheapest one they cannot afford yet
    codes: tuple[CodeView, ...]
    history: tuple[HistoryLine, ...]
    referral: ReferralView | None
    point_value: PointValue | None
    program: ProgramView
    available_value: Money | None = None  # what the available points are worth (to the cent)
    available_value_text: str | None = None  # "1.250 Punkte ≈ 12,50 €"


@dataclass(frozen=True)
class BalanceSummary:
    """The few facts a launcher shows on every page (the cheapest read: the balance endpoint)."""

    language: str
    available: int
    pending: int
    next_available_at: datetime | None
    tier: str | None
    next_reward: RewardView | None
    affordable_count: int
    point_value: PointValue | None
    available_value: Money | None = None  # what the available points are worth (to the cent)
    available_value_text: str | None = None  # "1.250 Punkte ≈ 12,50 €"


@dataclass(frozen=True)
class RedeemResult:
    """A storefront redemption: new, or the one a repeated request key already made."""

    redemption_id: int
    reward_id: str
    reward: str
    points: int
    status: str  # pending (code being created) | created | failed (points given back)
    code: str | None  # once the shop holds it (never for store credit)
    amount: Money | None
    available: int  # the member's available points now
    repeated: bool


# --- reads -------------------------------------------------------------------------------------

# Programs in force by (shop, its program version): saving a program stores version n + 1 and sets
# the shop's `program_version` to it, so the key of a saved version never goes stale. A shop still
# on the defaults (version 0) has the same key before and after its first save, so that entry
# lives DEFAULTS_CACHE_SECONDS only. (The shop's `created_at` is in the key too: a restored or test
# database may reuse shop ids.)
DEFAULTS_CACHE_SECONDS = 5.0
_PROGRAMS: dict[tuple[int, Any, int], tuple[float, Program]] = {}
_PROGRAMS_MAX = 512


def _program(session: Session, shop: Shop) -> Program:
    """Return the program in force for `shop`: a saved version read once per process, the
    defaults once per DEFAULTS_CACHE_SECONDS."""
    key = (shop.id, shop.created_at, shop.program_version)
    now = time.monotonic()
    hit = _PROGRAMS.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    version, program = current_program(session, shop)
    if version == shop.program_version or version == 0:
        if len(_PROGRAMS) >= _PROGRAMS_MAX:
            _PROGRAMS.clear()
        _PROGRAMS[key] = (float("inf") if version else now + DEFAULTS_CACHE_SECONDS, program)
    return program


_BALANCE = (
    select(PointLot.state, func.coalesce(func.sum(PointLot.remaining), 0))
    .where(PointLot.customer_id == bindparam("customer_id"),
           or_(PointLot.state == LotState.PENDING, PointLot.state == LotState.AVAILABLE))
    .group_by(PointLot.state)
)


# --- looking members up ------------------------------------------------------------------------


_BY_PLATFORM_ID = select(Customer).where(
    Customer.shop_id == bindparam("shop_id"), Customer.platform_id == bindparam("platform_id")
)


def find_member(session: Session, shop: Shop, platform_customer_id: str) -> Customer | None:
    """Return the shop's customer with this platform id (following guest merges), or None.

    A redacted customer, or one merged into an account of another shop, is no member.
    """
    platform_customer_id = (platform_customer_id or "").strip()
    if not platform_customer_id:
        return None
    customer = session.scalars(_BY_PLATFORM_ID, {"shop_id": shop.id, "platform_id": platform_customer_id}).first()
    hops = 0
    while customer is not None and customer.merged_into_id is not None and hops < _MERGE_HOPS:
        customer = session.get(Customer, customer.merged_into_id)
        hops += 1
    if customer is None or customer.shop_id != shop.id or customer.merged_into_id is not None:
        return None
    if customer.redacted_at is not None:
        return None
    return customer


def language_for(shop: Shop, customer: Customer | None, requested: str | None = None) -> str:
    """Return "de" or "en": the language the storefront asked for when we write in it, else the
    customer's own, else the shop's."""
    return spoken_language(requested) or customer_language(customer, shop)


# --- the program -------------------------------------------------------------------------------


def reward_id(reward: Reward) -> str:
    """Return the reward's id: stable while its name stays (names are unique, case-insensitive)."""
    return _name_id(reward.name)


def _name_id(name: str) -> str:
    return hashlib.sha256(name.casefold().encode()).hexdigest()[:12]


def _offered(shop: Shop, program: Program) -> list[Reward]:
    """Return the active rewards this shop's platform can give, cheapest first."""
    platform = shop.platform.value
    return sorted(
        (r for r in program.rewards if r.active and platform in PLATFORM_KINDS.get(r.kind, {platform})
         and redemptions.shop_cannot_give(shop, r) is None),
        key=lambda r: (r.points, r.name),
    )


def _reward_view(shop: Shop, reward: Reward, available: int | None, language: str | None = None,
                 empty: frozenset[str] = frozenset()) -> RewardView:
    """`empty`: the shop's empty voucher pools (`vouchers.sold_out`)."""
    money_kinds = ("fixed_amount", "store_credit")
    in_stock = vouchers.reward_in_stock(reward, empty)
    can = available is not None and reward.points <= available and in_stock
    return RewardView(
        id=reward_id(reward),
        name=reward.name,
        points=reward.points,
        kind=reward.kind,
        amount=Money(reward.value, shop.currency) if reward.kind in money_kinds and reward.value else None,
        percent=reward.value if reward.kind == "percentage" else None,
        affordable=can,
        missing=0 if available is None else max(reward.points - available, 0),
        description=combination_text(reward, language) if reward.kind == "buy_x_get_y" else None,
        in_stock=in_stock,
    )


def point_value(shop: Shop, program: Program, language: str) -> PointValue | None:
    """Return what a point is worth (`Program.point_worth` for the shop's platform: as stated,
    else the rate of the cheapest reward paid in money), or None when nothing gives a value."""
    worth = program.point_worth(shop.platform.value)
    if worth is None:
        return None
    value = worth.amount.normalize()
    return PointValue(money=Money(value, shop.currency), text=_point_value_text(value, shop.currency, language),
                      source=worth.source)


def points_value(shop: Shop, program: Program, points: int, language: str) -> tuple[Money, str] | None:
    """Return what `points` are worth (rounded half up to the currency's smallest unit) and the
    line that says so ("1.250 Punkte ≈ 12,50 €", the money formatted by Babel for the language),
    or None when the program gives a point no value."""
    worth = program.point_worth(shop.platform.value)
    if worth is None:
        return None
    amount = worth.of(points, shop.currency)
    return Money(amount, shop.currency), worth_text(points, amount, shop.currency, language)


def combination_text(reward: Reward | dict[str, Any], language: str | None) -> str:
    """Say what a combination offer gives, in the customer's language: "Kaufe 2 × Espresso,
    erhalte 1 × Tasse gratis" / "… erhalte 1 × Tasse 50 % günstiger"."""
    data = reward.model_dump(mode="json") if isinstance(reward, Reward) else reward
    t = translations(spoken_language(language) or "de")
    percent = Decimal(str(data.get("value") or "100"))
    words = {"buys": data.get("buys_quantity") or 1, "buys_label": data.get("buys_label") or "",
             "gets": data.get("gets_quantity") or 1, "gets_label": data.get("gets_label") or ""}
    if percent >= 100:
        return t.gettext("Buy %(buys)s × %(buys_label)s, get %(gets)s × %(gets_label)s free") % words
    number = format_number(percent.normalize(), language or "de",
                           max(0, -percent.normalize().as_tuple().exponent))  # type: ignore[operator]
    return t.gettext("Buy %(buys)s × %(buys_label)s, get %(gets)s × %(gets_label)s %(percent)s%% off") % {
        **words, "percent": number}


def _point_value_text(value: Decimal, currency: str, language: str) -> str:
    t = translations(language)
    if currency.upper() in _CENT_CURRENCIES and value < 1:
        cents = (value * 100).normalize()
        places = max(0, -cents.as_tuple().exponent)  # type: ignore[operator]
        number = format_number(cents, language, places)
        return t.ngettext("1 point = %(num)s cent", "1 point = %(num)s cents", 1 if cents == 1 else 2) % {
            "num": number
        }
    places = max(2, -value.as_tuple().exponent)  # type: ignore[operator]
    amount = format_number(value, language, places)
    return t.gettext("1 point = %(amount)s") % {"amount": _money_text(amount, currency, language)}


def _money_text(number: str, currency: str, language: str) -> str:
    """Put a formatted number beside its currency the way `format_money` does."""
    one = format_number(Decimal("1"), language, 2)
    sample = format_money(Decimal("1"), currency, language)
    return sample.replace(one, number, 1) if one in sample else f"{number} {currency}"


def _tier_levels(shop: Shop, program: Program) -> tuple[TierLevel, ...]:
    spend = program.tiers.metric == "spend"
    return tuple(
        TierLevel(
            name=t.name,
            threshold=t.threshold,
            threshold_money=Money(t.threshold, shop.currency) if spend else None,
            multiplier=t.multiplier,
            member_discount_percent=t.member_discount_percent,
            free_shipping=t.free_shipping,
        )
        for t in program.tiers.levels
    )


def _program_view(shop: Shop, program: Program, language: str, empty: frozenset[str] = frozenset()) -> ProgramView:
    t = translations(language)
    rate = program.earning.points_per_unit
    earn_text = t.gettext("%(points)s points per %(amount)s spent") % {
        "points": format_number(rate.normalize(), language, max(0, -rate.normalize().as_tuple().exponent)),  # type: ignore[operator]
        "amount": format_money(Decimal("1"), shop.currency, language),
    }
    referral = program.referral
    return ProgramView(
        shop_name=shop.name or shop.domain,
        language=language,
        currency=shop.currency,
        points_per_unit=rate,
        earn_text=earn_text,
        point_value=point_value(shop, program, language),
        return_window_days=program.earning.return_window_days,
        signup_bonus=program.earning.signup_bonus,
        first_order_bonus=program.earning.first_order_bonus,
        rewards=tuple(_reward_view(shop, r, None, language, empty) for r in _offered(shop, program) if not r.tiers),
        tiers=_tier_levels(shop, program),
        tier_metric=program.tiers.metric,
        referral_friend_discount_percent=referral.friend_discount_percent if referral.enabled else None,
        referral_points=referral.referrer_points if referral.enabled else None,
    )


def program_view(session: Session, shop: Shop, *, locale: str | None = None) -> ProgramView:
    """Return what the shop's program offers, for a visitor who is not logged in."""
    program = _program(session, shop)
    return _program_view(shop, program, language_for(shop, None, locale), vouchers.sold_out(session, shop, program))


# --- a member ----------------------------------------------------------------------------------


_MATURING = (
    select(PointLot.available_at, func.sum(PointLot.remaining))
    .where(PointLot.customer_id == bindparam("customer_id"), PointLot.state == LotState.PENDING,
           PointLot.remaining > 0)
    .group_by(PointLot.available_at)
    .order_by(PointLot.available_at)
    .limit(20)
)


def _balance(session: Session, customer: Customer) -> BalanceView:
    """The member's balance by lot state (what `ledger.balance` sums, as one prebuilt statement),
    and when pending points mature."""
    by_state = {state: int(total) for state, total in session.execute(_BALANCE, {"customer_id": customer.id})}
    pending, available = by_state.get(LotState.PENDING, 0), by_state.get(LotState.AVAILABLE, 0)
    maturing: tuple[Maturing, ...] = ()
    if pending:
        maturing = tuple(
            Maturing(points=int(points), available_at=at)
            for at, points in session.execute(_MATURING, {"customer_id": customer.id}).all()
        )
    return BalanceView(available=available, pending=pending, maturing=maturing)


def _open_rewards(shop: Shop, program: Program, customer: Customer) -> list[Reward]:
    return [r for r in _offered(shop, program) if not r.tiers or customer.tier in r.tiers]


def _tier_view(session: Session, shop: Shop, program: Program, customer: Customer, now: datetime) -> TierView:
    value = tiers.metric_value(session, program, customer, now)
    spend = program.tiers.metric == "spend"
    levels = program.tiers.levels
    current = program.tier(customer.tier)
    floor = current.threshold if current is not None else None
    upcoming = [t for t in levels if (floor is None or t.threshold > floor) and t.threshold > value]
    nxt = upcoming[0] if upcoming else None
    missing = max(nxt.threshold - value, Decimal("0")) if nxt is not None else None
    return TierView(
        name=customer.tier,
        until=customer.tier_period_ends_at,
        metric=program.tiers.metric,
        value=value,
        value_money=Money(value, shop.currency) if spend else None,
        next_name=nxt.name if nxt is not None else None,
        next_threshold=nxt.threshold if nxt is not None else None,
        missing=missing,
        missing_money=Money(missing, shop.currency) if spend and missing is not None else None,
    )


def _code_state(row: IssuedCode, kind: str, now: datetime) -> str:
    if row.status == CodeStatus.FAILED:
        return "failed"
    if row.status == CodeStatus.PENDING:
        return "pending"
    if kind == "store_credit":
        return "credited"
    if row.deactivated_at is not None or (row.ends_early_at is not None and row.ends_early_at <= now):
        return "ended"
    if row.used_at is not None:
        return "ended"  # a used bounce-back code (once only): no longer valid
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "usable"


def _codes(session: Session, shop: Shop, customer: Customer, now: datetime,
           language: str | None = None) -> tuple[CodeView, ...]:
    rows = session.scalars(
        select(IssuedCode)
        .where(IssuedCode.customer_id == customer.id, IssuedCode.purpose != "referral")
        .order_by(IssuedCode.id.desc())
        .limit(CODE_LINES)
    ).all()
    redeemed = session.execute(
        select(Redemption.issued_code_id, Redemption.reward_name, Redemption.reward)
        .where(Redemption.customer_id == customer.id)
    ).all()
    rewards = {code_id: name for code_id, name, _ in redeemed}
    offers = {code_id: reward for code_id, _, reward in redeemed
              if isinstance(reward, dict) and reward.get("kind") == "buy_x_get_y"}
    views = []
    for row in rows:
        spec = row.spec or {}
        kind = str(spec.get("kind", ""))
        state = _code_state(row, kind, now)
        value = spec.get("value")
        views.append(CodeView(
            id=row.id,
            purpose=row.purpose,
            reward=rewards.get(row.id),
            kind=kind,
            state=state,
            code=row.code if state == "usable" else None,
            amount=Money(Decimal(value), shop.currency) if kind in ("fixed_amount", "store_credit") and value else None,
            expires_at=row.expires_at,
            created_at=row.created_at,
            description=combination_text(offers[row.id], language) if row.id in offers else None,
        ))
    return tuple(views)


def _history(session: Session, customer: Customer, language: str) -> tuple[HistoryLine, ...]:
    entries = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.customer_id == customer.id)
        .order_by(LedgerEntry.id.desc())
        .limit(HISTORY_LINES)
    ).all()
    order_ids = {e.order_id for e in entries if e.order_id}
    numbers = dict(session.execute(select(Order.id, Order.number).where(Order.id.in_(order_ids))).all()) if order_ids else {}
    return tuple(
        HistoryLine(
            at=e.created_at,
            points=e.delta,
            pending_points=e.pending_delta,
            available_points=e.available_delta,
            reason=e.reason,
            why=explain.describe(e, numbers.get(e.order_id) if e.order_id else None, language, for_customer=True),
        )
        for e in entries
    )


def referral_view(session: Session, shop: Shop, customer: Customer, program: Program,
                  public_url: str) -> ReferralView | None:
    """Return the member's invitation (its link once the code exists in the shop), or None when
    referrals are off, the member is banned or has no code."""
    offer = program.referral
    if not offer.enabled or customer.banned_at is not None or not customer.referral_code:
        return None
    row = referral_code_row(session, customer)
    if row is None:
        return None
    created = row.status == CodeStatus.CREATED
    now = referral_progress(session, customer, program)
    step = now.next_step
    return ReferralView(
        status=row.status.value,
        link=referral_link(shop, row.code, public_url) if created else None,
        friend_discount_percent=offer.friend_discount_percent,
        referrer_points=offer.referrer_points,
        rewarded=now.rewarded,
        next_step=None if step is None or now.to_go is None else ReferralStepView(
            count=step.count, to_go=now.to_go, points=step.points,
            member_discount_percent=step.member_discount_percent),
    )


def member_view(session: Session, shop: Shop, customer: Customer, *, locale: str | None = None,
                now: datetime | None = None, public_url: str | None = None) -> MemberView:
    """Return everything the member sees: balance, tier progress, rewards, codes, history,
    invitation and what a point is worth. `public_url`: this app's address for the friend page
    of shops without a discount link (default: the PUBLIC_URL setting)."""
    now = now or utcnow()
    if public_url is None:
        from app import config

        public_url = config.settings()["PUBLIC_URL"]
    language = language_for(shop, customer, locale)
    program = _program(session, shop)
    balance = _balance(session, customer)
    banned = customer.banned_at is not None
    empty = vouchers.sold_out(session, shop, program, now)
    open_rewards = [_reward_view(shop, r, balance.available, language, empty)
                    for r in _open_rewards(shop, program, customer)]
    affordable = tuple(r for r in open_rewards if r.affordable) if not banned else ()
    return MemberView(
        shop_name=shop.name or shop.domain,
        language=language,
        currency=shop.currency,
        customer_id=customer.platform_id,
        banned=banned,
        balance=balance,
        tier=_tier_view(session, shop, program, customer, now),
        rewards=tuple(open_rewards),
        affordable=affordable,
        next_reward=next((r for r in open_rewards if r.missing > 0), None),
        codes=_codes(session, shop, customer, now, language),
        history=_history(session, customer, language),
        referral=referral_view(session, shop, customer, program, public_url),
        point_value=point_value(shop, program, language),
        program=_program_view(shop, program, language, empty),
        **_available_value(shop, program, balance.available, language),
    )


def _available_value(shop: Shop, program: Program, available: int, language: str) -> dict[str, Any]:
    worth = points_value(shop, program, available, language)
    return {"available_value": worth[0], "available_value_text": worth[1]} if worth is not None else {}


def balance_summary(session: Session, shop: Shop, customer: Customer | None, *,
                    locale: str | None = None) -> BalanceSummary:
    """Return what a launcher shows on every page; zero points for a visitor we do not know yet.

    Two indexed reads beyond the program (the balance by lot state, the earliest pending date).
    """
    language = language_for(shop, customer, locale)
    program = _program(session, shop)
    if customer is None:
        balance = BalanceView(available=0, pending=0, maturing=())
        rewards = [r for r in _offered(shop, program) if not r.tiers]
        tier = None
    else:
        balance = _balance(session, customer)
        rewards = _open_rewards(shop, program, customer)
        tier = customer.tier
    banned = customer is not None and customer.banned_at is not None
    empty = vouchers.sold_out(session, shop, program)
    affordable = [] if banned else [r for r in rewards if r.points <= balance.available
                                    and vouchers.reward_in_stock(r, empty)]
    nxt = next((r for r in rewards if r.points > balance.available), None)
    return BalanceSummary(
        language=language,
        available=balance.available,
        pending=balance.pending,
        next_available_at=balance.next_available_at,
        tier=tier,
        next_reward=_reward_view(shop, nxt, balance.available, language, empty) if nxt is not None else None,
        affordable_count=len(affordable),
        point_value=point_value(shop, program, language),
        **_available_value(shop, program, balance.available, language),
    )


@dataclass(frozen=True)
class Launcher:
    """What the launcher shows a visitor or member, and in which language."""

    member: bool
    language: str
    summary: BalanceSummary


_AVAILABLE = case((PointLot.state == LotState.AVAILABLE, PointLot.remaining), else_=0)
_PENDING = case((PointLot.state == LotState.PENDING, PointLot.remaining), else_=0)
# The member and their balance in one indexed read: the customer by (shop, platform id), their
# open lots by (customer, state).
_LAUNCHER = (
    select(Customer.id, Customer.tier, Customer.banned_at, Customer.locale, Customer.merged_into_id,
           Customer.redacted_at,
           func.coalesce(func.sum(_AVAILABLE), 0).label("available"),
           func.coalesce(func.sum(_PENDING), 0).label("pending"),
           func.min(case((and_(PointLot.state == LotState.PENDING, PointLot.remaining > 0), PointLot.available_at)))
           .label("next_available_at"))
    .select_from(Customer)
    # (two equalities rather than IN: an IN list is re-rendered on every execution)
    .outerjoin(PointLot, and_(PointLot.customer_id == Customer.id,
                              or_(PointLot.state == LotState.PENDING, PointLot.state == LotState.AVAILABLE)))
    .where(Customer.shop_id == bindparam("shop_id"), Customer.platform_id == bindparam("platform_id"))
    .group_by(Customer.id, Customer.tier, Customer.banned_at, Customer.locale, Customer.merged_into_id,
              Customer.redacted_at)
)


def launcher(session: Session, shop: Shop, platform_customer_id: str, *, locale: str | None = None) -> Launcher:
    """Return `balance_summary` for the customer with this platform id ("" = a visitor), with the
    member and their balance read in one statement (the widget asks on every page view)."""
    row = None
    if platform_customer_id:
        # On the session's connection as a Core statement: the ORM adds nothing to a row of columns.
        row = session.connection().execute(
            _LAUNCHER, {"shop_id": shop.id, "platform_id": platform_customer_id}).first()
    if row is not None and (row.merged_into_id is not None or row.redacted_at is not None):
        member = find_member(session, shop, platform_customer_id)  # merged: the account's balance
        language = language_for(shop, member, locale)
        return Launcher(member is not None, language, balance_summary(session, shop, member, locale=language))
    if row is None:
        language = language_for(shop, None, locale)
        return Launcher(False, language, balance_summary(session, shop, None, locale=language))
    language = spoken_language(locale) or spoken_language(row.locale) or customer_language(None, shop)
    program = _program(session, shop)
    available, pending = int(row.available), int(row.pending)
    rewards = [r for r in _offered(shop, program) if not r.tiers or row.tier in r.tiers]
    nxt = next((r for r in rewards if r.points > available), None)
    banned = row.banned_at is not None
    empty = vouchers.sold_out(session, shop, program)
    return Launcher(True, language, BalanceSummary(
        language=language,
        available=available,
        pending=pending,
        next_available_at=row.next_available_at if pending else None,
        tier=row.tier,
        next_reward=_reward_view(shop, nxt, available, language, empty) if nxt is not None else None,
        affordable_count=0 if banned else sum(1 for r in rewards if r.points <= available
                                              and vouchers.reward_in_stock(r, empty)),
        point_value=point_value(shop, program, language),
        **_available_value(shop, program, available, language),
    ))


# --- customer metafields (Shopify) -------------------------------------------------------------

# The namespace a theme reads: `customer.metafields.stammkunde.points` (not app-reserved, so any
# theme's Liquid can show it).
METAFIELD_NAMESPACE = "stammkunde"
METAFIELD_TYPES = {
    "points": "number_integer",
    "pending_points": "number_integer",
    "tier": "single_line_text_field",
    "next_reward": "single_line_text_field",
    "next_reward_points": "number_integer",  # points still needed for it
}


def metafield_values(session: Session, shop: Shop, customer: Customer) -> dict[str, str]:
    """Return the member's loyalty metafields as Shopify stores them (text). A tier or next
    reward the member does not have is left out (Shopify keeps no empty text metafield)."""
    summary = balance_summary(session, shop, customer, locale=shop.language)
    values = {"points": str(summary.available), "pending_points": str(summary.pending)}
    if summary.tier:
        values["tier"] = summary.tier
    if summary.next_reward is not None:
        values["next_reward"] = summary.next_reward.name
        values["next_reward_points"] = str(summary.next_reward.missing)
    return values


def metafield_changes(written: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """Return the values that differ from what the shop holds (only those are written)."""
    return {key: value for key, value in values.items() if written.get(key) != value}


# --- the cart ----------------------------------------------------------------------------------


_LATEST_TAXED_ORDER = (
    select(Order.merchandise, Order.merchandise_tax, Order.taxes_included)
    .where(Order.shop_id == bindparam("shop_id"), Order.is_paid.is_(True))
    .order_by(Order.paid_at.desc())
    .limit(1)
)


# A cart's lines the endpoints take (Shopify's cart and WooCommerce's allow more, but a cart that
# long earns by its subtotal alone: the answer is then no less honest, only not by product).
MAX_CART_LINES = 250
_CART_ID = re.compile(r"[0-9]{1,20}")
_CART_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,4})?")


@dataclass(frozen=True)
class CartLine:
    """One line of a cart as the storefront gives it: its amount after discounts (with the tax
    it includes, `tax`, when the caller knows it), its product and variant ids and its vendor
    (Shopify gives one; WooCommerce core has none)."""

    amount: Decimal
    product_id: str | None = None
    variant_id: str | None = None
    vendor: str | None = None
    tax: Decimal | None = None


@dataclass(frozen=True)
class CartPoints:
    """What a cart earns. `estimate` True: a product rule reads collections, categories or tags
    of a product in the cart that no order has made us look up yet (`unknown_products`), so the
    points are counted as if no such rule matched it."""

    points: int
    estimate: bool = False
    unknown_products: tuple[str, ...] = ()


def cart_lines(raw: Any) -> tuple[CartLine, ...]:
    """Return the cart lines of a request's `lines` (JSON: a list of objects with "amount" and
    any of "product_id", "variant_id", "vendor", "tax"; ids as digits, amounts as decimal
    strings). A variant id "0" (WooCommerce's simple product) is no variant.

    Raises:
        ValueError: the lines are not that shape; the message names the field.
    """
    if not isinstance(raw, list):
        raise ValueError("lines must be a list")
    if len(raw) > MAX_CART_LINES:
        raise ValueError(f"lines: at most {MAX_CART_LINES}")
    result = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ValueError(f"lines[{i}] must be an object")
        unknown = set(item) - {"amount", "product_id", "variant_id", "vendor", "tax"}
        if unknown:
            raise ValueError(f"lines[{i}]: unknown field(s) {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name in ("amount", "tax"):
            value = item.get(name)
            if value is None and name == "tax":
                continue
            text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
            if not _CART_AMOUNT.fullmatch(text):
                raise ValueError(f"lines[{i}].{name} must be an amount like 12.50")
            values[name] = Decimal(text)
        if "tax" in values and values["tax"] > values["amount"]:
            raise ValueError(f"lines[{i}].tax is more than its amount")
        for name in ("product_id", "variant_id"):
            value = item.get(name)
            if value is None:
                continue
            text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
            if not _CART_ID.fullmatch(text):
                raise ValueError(f"lines[{i}].{name} must be a numeric id")
            if text.strip("0"):
                values[name] = text
        vendor = item.get("vendor")
        if vendor is not None:
            if not isinstance(vendor, str) or len(vendor) > 255:
                raise ValueError(f"lines[{i}].vendor must be a text of at most 255 characters")
            values["vendor"] = vendor.strip() or None
        result.append(CartLine(**values))
    return tuple(result)


def cart_points(session: Session, shop: Shop, customer: Customer | None, subtotal: Decimal | None, currency: str,
                *, tax: Decimal | None = None, lines: tuple[CartLine, ...] = ()) -> int:
    """Return the points an order of this cart would earn (`cart_estimate` without its flag)."""
    return cart_estimate(session, shop, customer, subtotal, currency, tax=tax, lines=lines).points


def cart_estimate(session: Session, shop: Shop, customer: Customer | None, subtotal: Decimal | None, currency: str,
                  *, tax: Decimal | None = None, lines: tuple[CartLine, ...] = (),
                  now: datetime | None = None) -> CartPoints:
    """Return the points an order of this cart would earn, by the rules orders earn by
    (`decide.award`: eligible base x rate x the member's tier multiplier, its lines weighed by
    the program's product rules through `earning.product_share` / `earning.points_by_product`,
    rounded down once).

    `subtotal`: the merchandise after discounts, in the shop currency, without shipping (None:
    the sum of the lines). `tax`: the tax it includes when the caller knows it (WooCommerce's
    Store API does; else the sum of the lines' taxes when each line gives one); when None and
    the shop's orders include tax, the share of tax of its latest paid order is assumed (Shopify's
    cart does not tell), for each line without its own tax too. `lines`: the cart's lines; the
    product rules match their product, variant and vendor, and collections, categories or tags
    as the products' cached facts (`product_facts`, of any age; the storefront never asks the
    platform) say. Without lines the cart earns as without product rules. Bonuses for a first
    order or sign-up are not included.

    Raises:
        StorefrontError: a currency other than the shop's ("currency"), or a negative or
            missing amount ("amount").
    """
    language = language_for(shop, customer)
    if currency.upper() != shop.currency.upper():
        raise StorefrontError("currency", translations(language).gettext(
            "Points are counted in %(currency)s; convert the cart to it first.") % {"currency": shop.currency})
    if subtotal is None and lines:
        subtotal = sum((line.amount for line in lines), Decimal("0"))
    if tax is None and lines and all(line.tax is not None for line in lines):
        tax = sum((line.tax or Decimal("0") for line in lines), Decimal("0"))
    if subtotal is None or subtotal < 0 or (tax is not None and (tax < 0 or tax > subtotal)) or any(
            line.amount < 0 or (line.tax is not None and not Decimal("0") <= line.tax <= line.amount)
            for line in lines):
        raise StorefrontError("amount", translations(language).gettext("The cart amount is not valid."))
    if customer is not None and customer.banned_at is not None:
        return CartPoints(0)
    program = _program(session, shop)
    taxes_included = tax is not None
    if tax is None and not program.earning.earn_on_gross:
        latest = session.execute(_LATEST_TAXED_ORDER, {"shop_id": shop.id}).first()
        if latest is not None and latest.taxes_included and latest.merchandise:
            share = (latest.merchandise_tax or Decimal("0")) / latest.merchandise
            tax, taxes_included = (subtotal * share).quantize(Decimal("0.01")), True
    amounts = earning.OrderAmounts(
        merchandise=subtotal,
        merchandise_tax=tax or Decimal("0"),
        taxes_included=taxes_included,
        gift_card_paid=Decimal("0"),
    )
    base = earning.eligible_base(amounts, program.earning)
    multiplier = decide.tier_multiplier(program, customer.tier if customer else None)
    if not program.earning.product_rules or not lines:
        return CartPoints(earning.points_for(base, program.earning, multiplier))
    # The lines as stored order lines are, so they meet the rules as an order's lines do.
    tax_share = (tax or Decimal("0")) / subtotal if taxes_included and subtotal > 0 else Decimal("0")
    stored = [
        {"id": str(i), "merchandise": str(line.amount),
         "tax": str(line.tax if line.tax is not None else (line.amount * tax_share).quantize(Decimal("0.01"))),
         "product_id": line.product_id, "variant_id": line.variant_id, "vendor": line.vendor}
        for i, line in enumerate(lines)
    ]
    unknown: tuple[str, ...] = ()
    found: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    now = now or utcnow()
    if products.needs_lookup(program):
        wanted = products.line_product_ids(stored)
        found = products.fresh_facts(session, shop.id, wanted, now, max_age=None)
        unknown = tuple(pid for pid in wanted if pid not in found)
    day = now.astimezone(ZoneInfo(shop.timezone or "UTC")).date()
    share = earning.product_share(products.order_lines(stored, found), amounts, program.earning, day)
    if share is None:
        points = earning.points_for(base, program.earning, multiplier)
    else:
        points = earning.points_by_product(base, program.earning, multiplier, share.eligible, share.weighted)
    return CartPoints(points, bool(unknown), unknown)


# --- redeeming ---------------------------------------------------------------------------------


def why_refused(program: Program, customer: Customer, reward: Reward | None, available: int, language: str,
                *, in_stock: bool = True) -> str:
    """Say in the customer's language why a redemption was refused (the customer page, too).
    `in_stock=False`: the reward's voucher pool has no code left."""
    t = translations(language)
    if customer.banned_at is not None:
        return t.gettext("Your account cannot redeem rewards at the moment. Please contact the shop.")
    if reward is None or not reward.active:
        return t.gettext("This reward is not available any more.")
    if not in_stock:
        return t.gettext("“%(reward)s” is sold out at the moment. No points were taken.") % {"reward": reward.name}
    if reward.tiers and customer.tier not in reward.tiers:
        return t.gettext("“%(reward)s” is only for the tiers %(tiers)s.") % {
            "reward": reward.name, "tiers": ", ".join(reward.tiers)}
    if available < reward.points:
        return t.gettext("You do not have enough points for “%(reward)s”.") % {"reward": reward.name}
    return t.gettext("The reward could not be redeemed. Please try again.")


def _refusal_reason(customer: Customer, reward: Reward | None, available: int) -> str:
    if customer.banned_at is not None:
        return "banned"
    if reward is None or not reward.active:
        return "unknown_reward"
    if reward.tiers and customer.tier not in reward.tiers:
        return "tier"
    if available < reward.points:
        return "not_enough_points"
    return "refused"


def find_reward(shop: Shop, program: Program, reward_key: str) -> Reward | None:
    """Return the active reward with this id (`reward_id`) or name, that the shop can give."""
    for reward in _offered(shop, program):
        if reward_id(reward) == reward_key:
            return reward
    by_name = program.reward(reward_key) if reward_key else None
    return by_name if by_name is not None and by_name in _offered(shop, program) else None


def _result(session: Session, shop: Shop, customer: Customer, redemption: Redemption, *, repeated: bool,
            available: int | None = None) -> RedeemResult:
    code = session.get(IssuedCode, redemption.issued_code_id) if redemption.issued_code_id else None
    kind = str(redemption.reward.get("kind", "")) if redemption.reward else ""
    value = redemption.reward.get("value") if redemption.reward else None
    state = _code_state(code, kind, utcnow()) if code is not None else None
    return RedeemResult(
        redemption_id=redemption.id,
        reward_id=_name_id(redemption.reward_name),
        reward=redemption.reward_name,
        points=redemption.points,
        status=redemption.status.value,
        code=code.code if code is not None and state == "usable" else None,
        amount=Money(Decimal(str(value)), shop.currency) if kind in ("fixed_amount", "store_credit") and value else None,
        available=available if available is not None else ledger.balance(session, customer.id).available,
        repeated=repeated,
    )


def redeem(session: Session, shop: Shop, customer: Customer, reward_key: str, *, request_key: str,
           locale: str | None = None) -> RedeemResult:
    """Redeem a reward for the member through the one mechanism (`redemptions.redeem`: points
    first, the code by a job after commit); the same `request_key` redeems once.

    `reward_key`: the reward's id (`reward_id`) or its name. The caller commits.

    Raises:
        StorefrontError: a malformed request key, an unknown or unaffordable reward, a reward for
            other tiers, or a banned member (the message in the member's language).
    """
    language = language_for(shop, customer, locale)
    if not _REQUEST_KEY.fullmatch(request_key or ""):
        raise StorefrontError("bad_request_key", translations(language).gettext(
            "The reward could not be redeemed. Please try again."))
    key = f"storefront-{customer.id}-{request_key}"
    earlier = session.scalars(
        select(Redemption).where(Redemption.shop_id == shop.id, Redemption.idempotency_key == key)
    ).first()
    if earlier is not None:
        return _result(session, shop, customer, earlier, repeated=True)
    _, program = current_program(session, shop)
    reward = find_reward(shop, program, reward_key)
    try:
        if reward is None:
            raise redemptions.RedemptionError("unknown reward")
        redemption = redemptions.redeem(session, shop, customer, reward.name, source="storefront",
                                        idempotency_key=key)
    except redemptions.RedemptionError as exc:
        # Nothing of this request may stay (a refused spend can follow the redemption's insert).
        session.rollback()
        available = ledger.balance(session, customer.id).available
        sold_out = isinstance(exc, redemptions.VoucherSoldOutError)
        raise StorefrontError(
            "sold_out" if sold_out and customer.banned_at is None else _refusal_reason(customer, reward, available),
            why_refused(program, customer, reward, available, language, in_stock=not sold_out),
        ) from None
    return _result(session, shop, customer, redemption, repeated=False)


def redemption_state(session: Session, shop: Shop, customer: Customer, redemption_id: int) -> RedeemResult | None:
    """Return one of the member's redemptions as it stands now (the widget asks until the code
    exists), or None when it is not theirs."""
    redemption = session.get(Redemption, redemption_id)
    if redemption is None or redemption.customer_id != customer.id or redemption.shop_id != shop.id:
        return None
    return _result(session, shop, customer, redemption, repeated=True)


# --- JSON --------------------------------------------------------------------------------------


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    names = _FIELD_NAMES.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        out = {name: _plain(getattr(value, name)) for name in names}
        if isinstance(value, BalanceView):
            out["next_available_at"] = _plain(value.next_available_at)
        return out
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def as_json(view: Any) -> dict[str, Any]:
    """Return a view as plain JSON data: money as {"amount": "5.00", "currency": "EUR"} with the
    amount a string (never a float), times as ISO 8601 with their UTC offset."""
    data = _plain(view)
    assert isinstance(data, dict)
    return data


__all__ = [
    "BalanceSummary", "BalanceView", "CodeView", "HistoryLine", "MemberView", "Money", "PointValue",
    "ProgramView", "RedeemResult", "RedemptionStatus", "ReferralStepView", "ReferralView", "RewardView",
    "CartLine", "CartPoints", "StorefrontError",
    "TierView", "as_json", "balance_summary", "cart_estimate", "cart_lines", "cart_points", "find_member", "find_reward", "language_for",
    "member_view", "point_value", "points_value", "combination_text", "program_view", "redeem", "redemption_state", "referral_view",
    "reward_id", "why_refused",
]
