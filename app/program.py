"""A shop's loyalty program as one validated document, versioned per shop (no Flask here).

Every change creates a new `ProgramVersion`; the newest is in force from then on and older ones
stay, so each ledger entry can name the version and rule that produced it. The defaults are what a
German shop would accept out of the box.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.models import ProgramVersion, Shop


class ProgramError(ValueError):
    """The document is invalid; the message names each bad field.

    `problems` holds each one as (location, message), the location as pydantic gives it
    (("earning", "points_per_unit"), ("rewards", 0), () for the whole document), so a form can
    show each message beside the field it names.
    """

    def __init__(self, message: str, problems: tuple[tuple[tuple[str | int, ...], str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- Earning by product (issue 20, rule 5) -------------------------------------------------------

ProductEffect = Literal["exclude", "multiply"]


class ProductRule(_Strict):
    """An earning rule for some of an order's lines: they earn nothing (`exclude`) or
    `multiplier` times the points (`multiply`), from `valid_from` to `valid_until` (dates in the
    shop's time zone, both included; none = always).

    A line matches when it matches any of the listed products, variants, collections (Shopify),
    categories (WooCommerce), product tags or vendors (Shopify; WooCommerce core has no vendor).
    Ids are the platform's numeric ids; collections, categories, tags and vendors match by id,
    handle/slug or name, case-insensitively. Several matching rules: an exclusion wins, else the
    highest multiplier applies (they never multiply together).
    """

    name: str = Field(min_length=1, max_length=80)
    effect: ProductEffect = "multiply"
    multiplier: Decimal = Field(default=Decimal("2"), gt=0, le=10)
    product_ids: tuple[str, ...] = ()
    variant_ids: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    vendors: tuple[str, ...] = ()
    valid_from: date | None = None
    valid_until: date | None = None

    @field_validator("product_ids", "variant_ids")
    @classmethod
    def _numeric_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not v.strip().isdigit()]
        if bad:
            raise ValueError(f"not a numeric id: {', '.join(bad)}")
        return tuple(v.strip() for v in value)

    @model_validator(mode="after")
    def _matches_something(self) -> ProductRule:
        if not (self.product_ids or self.variant_ids or self.collections or self.categories or self.tags
                or self.vendors):
            raise ValueError("name at least one product, variant, collection, category, tag or vendor")
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self

    @property
    def needs_lookup(self) -> bool:
        """Return True when the rule reads what an order's lines do not carry (collections,
        categories, product tags), so the products must be looked up."""
        return bool(self.collections or self.categories or self.tags)

    def in_force(self, day: date) -> bool:
        """Return True when the rule applies to an order paid on `day` (the shop's date)."""
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_until is None or day <= self.valid_until)


class Earning(_Strict):
    """How orders and events earn points."""

    # Points per 1 unit of the shop currency, rounded down per order.
    points_per_unit: Decimal = Field(default=Decimal("1"), ge=0, le=1000)
    # Prices that include tax earn on the gross amount only when this is on.
    earn_on_gross: bool = False
    # Days points stay pending after payment (the return window); 0 = available at once.
    return_window_days: int = Field(default=14, ge=0, le=365)
    # Orders carrying any of these tags earn nothing (staff orders).
    excluded_order_tags: tuple[str, ...] = ("staff",)
    signup_bonus: int = Field(default=0, ge=0, le=1_000_000)
    first_order_bonus: int = Field(default=0, ge=0, le=1_000_000)
    # Only where the platform gives a birthday (neither Shopify nor WooCommerce core does).
    birthday_bonus: int = Field(default=0, ge=0, le=1_000_000)
    # A sanity limit: an order that would earn more is held as a failed delivery with the reason,
    # nothing awarded (a mistyped price or a test order of 10^9 €), until staff look at it.
    max_points_per_order: int = Field(default=1_000_000, ge=1, le=1_000_000_000)
    # Earning by product (issue 20, rule 5): rules for lines by product, variant, collection or
    # category, product tag or vendor; see `ProductRule`.
    product_rules: tuple[ProductRule, ...] = Field(default=(), max_length=50)


# "store_credit": an amount credited to the customer's store credit account (Shopify only).
RewardKind = Literal["fixed_amount", "percentage", "free_shipping", "free_product", "store_credit"]


class Reward(_Strict):
    """One entry of the rewards catalog."""

    name: str = Field(min_length=1, max_length=80)
    points: int = Field(gt=0, le=10_000_000)
    kind: RewardKind
    value: Decimal | None = Field(default=None, gt=0)  # amount off or credited, or percent off
    product_id: str | None = None
    variant_id: str | None = None
    minimum_amount: Decimal | None = Field(default=None, ge=0)
    valid_days: int = Field(default=30, ge=1, le=3650)
    tiers: tuple[str, ...] = ()  # member-only: redeemable only in these tiers
    active: bool = True

    @model_validator(mode="after")
    def _kind_needs(self) -> Reward:
        if self.kind in ("fixed_amount", "percentage", "store_credit") and self.value is None:
            raise ValueError(f"value is required for {self.kind}")
        if self.kind == "percentage" and self.value is not None and self.value > 100:
            raise ValueError("value of a percentage reward is at most 100")
        if self.kind == "free_product" and not (self.product_id or self.variant_id):
            raise ValueError("free_product needs product_id or variant_id")
        return self


class Tier(_Strict):
    """A tier: reached at `threshold` (spend in shop currency, or points) and its perks."""

    name: str = Field(min_length=1, max_length=64)
    threshold: Decimal = Field(ge=0)
    multiplier: Decimal = Field(default=Decimal("1"), ge=Decimal("0"), le=10)
    member_discount_percent: Decimal = Field(default=Decimal("0"), ge=0, le=100)
    free_shipping: bool = False


class Tiers(_Strict):
    """How customers move through tiers."""

    metric: Literal["spend", "points"] = "spend"
    window: Literal["lifetime", "rolling_12_months"] = "lifetime"
    # Downgrades only at the end of a period that starts when a tier is entered.
    period_months: int = Field(default=12, ge=1, le=60)
    levels: tuple[Tier, ...] = (
        Tier(name="Bronze", threshold=Decimal("0")),
        Tier(name="Silber", threshold=Decimal("250"), multiplier=Decimal("1.25")),
        Tier(name="Gold", threshold=Decimal("750"), multiplier=Decimal("1.5")),
        Tier(name="Platin", threshold=Decimal("2000"), multiplier=Decimal("2"), free_shipping=True),
    )

    @model_validator(mode="after")
    def _ascending(self) -> Tiers:
        names = [t.name for t in self.levels]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        thresholds = [t.threshold for t in self.levels]
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise ValueError("tier thresholds must strictly increase")
        return self


class Expiry(_Strict):
    """Points expire N months after earning (None = never)."""

    months: int | None = Field(default=None, ge=1, le=120)
    notice_days: int = Field(default=14, ge=0, le=365)


class SecondPurchase(_Strict):
    """After a first paid order, a code for the second one."""

    enabled: bool = True
    percent: Decimal = Field(default=Decimal("15"), gt=0, le=100)
    valid_days: int = Field(default=7, ge=1, le=365)


class Referral(_Strict):
    """Members' referral codes: a welcome discount for the friend, points for the member."""

    enabled: bool = True
    friend_discount_percent: Decimal = Field(default=Decimal("10"), gt=0, le=100)
    friend_minimum_amount: Decimal | None = Field(default=None, ge=0)
    referrer_points: int = Field(default=500, ge=0, le=10_000_000)
    monthly_cap: int = Field(default=5, ge=0, le=1000)


class Gift(_Strict):
    """A gift with purchase from an order amount or total weight; the order is tagged/noted."""

    name: str = Field(min_length=1, max_length=80)
    min_amount: Decimal | None = Field(default=None, gt=0)
    min_grams: int | None = Field(default=None, gt=0)
    tag: str = Field(default="geschenk", min_length=1, max_length=40)
    note: str = Field(default="Bitte Geschenk beilegen", max_length=500)

    @model_validator(mode="after")
    def _one_threshold(self) -> Gift:
        if (self.min_amount is None) == (self.min_grams is None):
            raise ValueError("give exactly one of min_amount and min_grams")
        return self


class Redemption(_Strict):
    """How rewards are redeemed."""

    # Redeem the cheapest reward by itself once the available balance reaches it.
    auto: bool = False
    # What one point is worth in the shop's currency, for the outstanding-points report (the
    # provision for unredeemed points). None: the value of the cheapest amount reward per point.
    point_value: Decimal | None = Field(default=None, gt=0, le=1000)


class CartReminders(_Strict):
    """Abandoned cart / checkout sequence."""

    enabled: bool = True
    idle_minutes: int = Field(default=60, ge=5, le=24 * 60)  # a cart counts as abandoned after this
    steps_hours: tuple[int, ...] = (1, 24, 72)  # after the last change of the cart
    incentive_step: int = Field(default=3, ge=0, le=10)  # 0 = never an incentive code
    incentive_percent: Decimal = Field(default=Decimal("10"), gt=0, le=100)
    incentive_valid_days: int = Field(default=3, ge=1, le=60)

    @model_validator(mode="after")
    def _steps(self) -> CartReminders:
        if not self.steps_hours or list(self.steps_hours) != sorted(set(self.steps_hours)):
            raise ValueError("steps_hours must be increasing and not empty")
        if self.steps_hours[0] * 60 < self.idle_minutes:
            raise ValueError("the first step cannot come before the cart counts as abandoned (idle_minutes)")
        if self.incentive_step > len(self.steps_hours):
            raise ValueError("incentive_step is after the last step")
        return self


class WinBack(_Strict):
    """Win-back from each customer's own rhythm."""

    enabled: bool = True
    factor: Decimal = Field(default=Decimal("1.5"), ge=1, le=10)  # overdue by this x their median gap
    min_days: int = Field(default=30, ge=1, le=3650)
    default_days: int = Field(default=90, ge=1, le=3650)  # with fewer than 3 orders
    incentive_percent: Decimal | None = Field(default=None, gt=0, le=100)
    incentive_valid_days: int = Field(default=14, ge=1, le=365)


class Notices(_Strict):
    """Which notices go out."""

    second_purchase: bool = True
    expiry: bool = True  # `expiry.notice_days` before points expire
    tier_change: bool = True
    points_earned: bool = False  # transactional; off unless the shop wants it


class Consent(_Strict):
    """Where consent comes from and what needs it."""

    # WooCommerce keeps marketing consent in a customer meta field of the shop's choosing.
    woocommerce_meta_key: str = Field(default="marketing_consent", min_length=1, max_length=100)
    woocommerce_meta_true_values: tuple[str, ...] = ("1", "yes", "true", "on", "subscribed")
    double_opt_in: bool = False  # our own confirmation e-mail for customers without consent
    # Transactional notices (points earned, expiry) go to customers without marketing consent.
    transactional_without_consent: bool = True


class Sending(_Strict):
    """Frequency cap and quiet hours (in the shop's time zone)."""

    cap_count: int = Field(default=1, ge=1, le=100)
    cap_hours: int = Field(default=16, ge=1, le=24 * 30)
    quiet_start: str = Field(default="21:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_end: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class Reminders(_Strict):
    """The scheduled side: reminders with consent, caps and quiet hours."""

    cart: CartReminders = CartReminders()
    winback: WinBack = WinBack()
    notices: Notices = Notices()
    consent: Consent = Consent()
    sending: Sending = Sending()
    attribution_days: int = Field(default=7, ge=1, le=90)


def _default_rewards() -> tuple[Reward, ...]:
    return (
        Reward(name="5 € Rabatt", points=500, kind="fixed_amount", value=Decimal("5")),
        Reward(name="10 % Rabatt", points=1000, kind="percentage", value=Decimal("10")),
        Reward(name="Gratisversand", points=300, kind="free_shipping"),
    )


class Program(_Strict):
    """The whole program of a shop."""

    earning: Earning = Earning()
    rewards: tuple[Reward, ...] = Field(default_factory=_default_rewards)
    tiers: Tiers = Tiers()
    expiry: Expiry = Expiry()
    second_purchase: SecondPurchase = SecondPurchase()
    referral: Referral = Referral()
    gifts: tuple[Gift, ...] = ()
    redemption: Redemption = Redemption()
    reminders: Reminders = Reminders()

    @model_validator(mode="after")
    def _consistent(self) -> Program:
        names = [r.name for r in self.rewards]
        if len(set(names)) != len(names):
            raise ValueError("reward names must be unique")
        tier_names = {t.name for t in self.tiers.levels}
        for reward in self.rewards:
            unknown = set(reward.tiers) - tier_names
            if unknown:
                raise ValueError(f"reward {reward.name!r} names unknown tiers {sorted(unknown)}")
        return self

    def reward(self, name: str) -> Reward | None:
        """Return the reward called `name` (case-insensitive), or None."""
        wanted = name.strip().casefold()
        return next((r for r in self.rewards if r.name.casefold() == wanted), None)

    def tier(self, name: str | None) -> Tier | None:
        """Return the tier called `name`, or None."""
        return next((t for t in self.tiers.levels if t.name == name), None)


def validate_document(document: Any) -> Program:
    """Validate a program document.

    Raises:
        ProgramError: naming every bad field ("earning.points_per_unit: ...").
    """
    try:
        return Program.model_validate(document)
    except ValidationError as exc:
        problems = tuple((tuple(err["loc"]), str(err["msg"])) for err in exc.errors())
        message = "; ".join(f"{'.'.join(str(p) for p in loc) or 'document'}: {msg}" for loc, msg in problems)
        raise ProgramError(message, problems) from None


_DEFAULT = Program()


@lru_cache(maxsize=256)
def _validated(document_json: str) -> Program:
    """Validate a saved document once per process (keyed by its canonical JSON text)."""
    return validate_document(json.loads(document_json))


# session.info key: shop id -> (version, Program) read by this session (or its worker batch).
_PROGRAMS = "programs"
_LATEST = (
    select(ProgramVersion.version, ProgramVersion.document)
    .where(ProgramVersion.shop_id == bindparam("shop_id"))
    .order_by(ProgramVersion.version.desc())
    .limit(1)
)


def share_program_cache(session: Session, known: dict[int, tuple[int, Program]]) -> None:
    """Let `session` use (and fill) `known` as its cache of programs in force, by shop id.

    The deliveries of one lane of a worker batch (about a second) share one, so each shop's
    program is read once per lane; a program saved meanwhile applies from the next batch.
    """
    session.info[_PROGRAMS] = known


def current_program(session: Session, shop: Shop) -> tuple[int, Program]:
    """Return the version number and program in force for `shop` (version 0 = the defaults).

    Remembered for the rest of the session's life (one delivery, one request), which asks often.
    """
    known = session.info.setdefault(_PROGRAMS, {})
    if shop.id in known:
        return known[shop.id]
    row = session.execute(_LATEST, {"shop_id": shop.id}).first()
    result = (0, _DEFAULT) if row is None else (row.version, _validated(json.dumps(row.document, sort_keys=True)))
    known[shop.id] = result
    return result


def program_versions(session: Session, shop: Shop) -> list[ProgramVersion]:
    """Return every saved version of the shop's program, newest first."""
    return list(
        session.scalars(
            select(ProgramVersion).where(ProgramVersion.shop_id == shop.id).order_by(ProgramVersion.version.desc())
        )
    )


def save_program(session: Session, shop: Shop, document: Any, *, created_by: str) -> ProgramVersion:
    """Validate `document` and store it as the shop's next version (nothing stored on error).

    The unique (shop, version) constraint makes two concurrent saves end in one error, not two
    versions with the same number.

    Raises:
        ProgramError: the document is invalid.
    """
    program = validate_document(document)
    version, _ = current_program(session, shop)
    row = ProgramVersion(
        shop_id=shop.id,
        version=version + 1,
        document=program.model_dump(mode="json"),
        created_by=created_by,
    )
    session.add(row)
    shop.program_version = row.version
    session.flush()
    session.info.get(_PROGRAMS, {}).pop(shop.id, None)
    return row
