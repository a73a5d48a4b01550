"""A shop's loyalty program as one validated document, versioned per shop (no Flask here).

Every change creates a new `ProgramVersion`; the newest is in force from then on and older ones
stay, so each ledger entry can name the version and rule that produced it. The defaults are what a
German shop would accept out of the box.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, Literal

from babel.numbers import get_currency_precision
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.models import ProgramVersion, Shop, VoucherPool

# A partner_voucher reward warns in the admin when its pool has this few codes left (unless it says).
DEFAULT_LOW_STOCK = 10


class ProgramError(ValueError):
    """The document is invalid; the message names each bad field.

    `problems` holds each one as (location, message), the location as pydantic gives it
    (("earning", "points_per_unit"), ("rewards", 0), () for the whole document), so a form can
    show each message beside the field it names. `errors` holds pydantic's own account of the
    same problems, in the same order (each with its `type` and `ctx`), so the admin can word them
    in its user's language (app.web.program_errors).
    """

    def __init__(self, message: str, problems: tuple[tuple[tuple[str | int, ...], str], ...] = (),
                 errors: tuple[ErrorDetails, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems
        self.errors = errors


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
            raise PydanticCustomError("ids_not_numeric", "not a numeric id: {ids}", {"ids": ", ".join(bad)})
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
# "buy_x_get_y": a combination offer ("Kombination"): buy `buys_quantity` of the products or variants
# `buys_product_ids`/`buys_variant_ids`, get `gets_quantity` of `product_id`/`variant_id` `value`
# percent cheaper (100 or none = free).
# "partner_voucher": one unused code from the shop's voucher pool named by `pool` (a partner's codes,
# uploaded in the admin); no code is made in the shop.
RewardKind = Literal["fixed_amount", "percentage", "free_shipping", "free_product", "store_credit", "buy_x_get_y",
                     "partner_voucher"]
# Reward kinds only some platforms can give.
PLATFORM_KINDS: dict[str, frozenset[str]] = {"store_credit": frozenset({"shopify"})}
# Rewards paid in money: what a point is worth is derived from the cheapest of them.
AMOUNT_KINDS = ("fixed_amount", "store_credit")


class Reward(_Strict):
    """One entry of the rewards catalog."""

    name: str = Field(min_length=1, max_length=80)
    points: int = Field(gt=0, le=10_000_000)
    kind: RewardKind
    value: Decimal | None = Field(default=None, gt=0)  # amount off or credited, or percent off
    product_id: str | None = None
    variant_id: str | None = Field(default=None, validate_default=True)
    minimum_amount: Decimal | None = Field(default=None, ge=0)
    valid_days: int = Field(default=30, ge=1, le=3650)
    tiers: tuple[str, ...] = ()  # member-only: redeemable only in these tiers
    active: bool = True
    # buy_x_get_y only (validated with the field's name below): what must be bought, and the
    # names the customer reads ("Kaufe 2 × Espresso-Bohnen, erhalte 1 × Tasse gratis").
    buys_product_ids: tuple[str, ...] = Field(default=(), validate_default=True)
    buys_variant_ids: tuple[str, ...] = Field(default=(), validate_default=True)
    buys_quantity: int | None = Field(default=None, ge=1, le=100, validate_default=True)
    buys_label: str | None = Field(default=None, max_length=80, validate_default=True)
    gets_quantity: int | None = Field(default=None, ge=1, le=100, validate_default=True)
    gets_label: str | None = Field(default=None, max_length=80, validate_default=True)
    # partner_voucher only: the voucher pool's name, and how few codes left count as running low.
    pool: str | None = Field(default=None, min_length=1, max_length=80, validate_default=True)
    low_stock: int | None = Field(default=None, ge=0, le=1_000_000, validate_default=True)

    @field_validator("pool")
    @classmethod
    def _pool_for_vouchers(cls, pool: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "partner_voucher" and not (pool or "").strip():
            raise ValueError("a partner_voucher reward names its voucher pool")
        if kind is not None and kind != "partner_voucher" and pool is not None:
            raise ValueError("only a partner_voucher reward names a voucher pool")
        return pool.strip() if pool is not None else None

    @field_validator("low_stock")
    @classmethod
    def _low_stock_for_vouchers(cls, low_stock: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if kind is not None and kind != "partner_voucher" and low_stock is not None:
            raise ValueError("only a partner_voucher reward has a low-stock threshold")
        if kind == "partner_voucher" and low_stock is None:
            return DEFAULT_LOW_STOCK
        return low_stock

    @model_validator(mode="after")
    def _kind_needs(self) -> Reward:
        if self.kind in ("fixed_amount", "percentage", "store_credit") and self.value is None:
            raise PydanticCustomError("value_required", "value is required for {kind}", {"kind": self.kind})
        if self.kind in ("percentage", "buy_x_get_y") and self.value is not None and self.value > 100:
            raise PydanticCustomError("percentage_over_100", "value of a percentage reward is at most 100")
        if self.kind == "free_product" and not (self.product_id or self.variant_id):
            raise PydanticCustomError("product_missing", "free_product needs product_id or variant_id")
        if self.kind == "partner_voucher" and (self.product_id or self.variant_id or self.minimum_amount is not None):
            raise ValueError("a partner_voucher reward is the partner's code: no product or minimum amount")
        return self

    # --- combination offers (buy_x_get_y): each missing or stray field is named ---

    @field_validator("variant_id", mode="after")
    @classmethod
    def _gets_something(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == "buy_x_get_y" and not value and not info.data.get("product_id"):
            raise ValueError("name the product (product_id) or variant the customer gets cheaper")
        return value

    @field_validator("buys_product_ids", mode="after")
    @classmethod
    def _buys_something(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        bxgy = info.data.get("kind") == "buy_x_get_y"
        if any(not item.strip() for item in value):
            raise ValueError("a product id is empty")
        if not bxgy and value:
            raise ValueError("only a buy_x_get_y reward names products to buy")
        return value

    @field_validator("buys_variant_ids", mode="after")
    @classmethod
    def _buys_variants(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if any(not item.strip() for item in value):
            raise ValueError("a variant id is empty")
        if value and info.data.get("kind") != "buy_x_get_y":
            raise ValueError("only a buy_x_get_y reward names variants to buy")
        if info.data.get("kind") == "buy_x_get_y" and not value and not info.data.get("buys_product_ids"):
            raise ValueError("name the products or variants (at least one) that must be bought")
        return value

    @field_validator("buys_quantity", "gets_quantity", mode="after")
    @classmethod
    def _quantity(cls, value: int | None, info: ValidationInfo) -> int | None:
        bxgy = info.data.get("kind") == "buy_x_get_y"
        if bxgy and value is None and info.field_name == "buys_quantity":
            raise ValueError("required for buy_x_get_y: how many must be bought")
        if not bxgy and value is not None:
            raise ValueError("only a buy_x_get_y reward has quantities")
        return value

    @field_validator("buys_label", "gets_label", mode="after")
    @classmethod
    def _label(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = value.strip() if value is not None else None
        bxgy = info.data.get("kind") == "buy_x_get_y"
        if bxgy and not value:
            raise ValueError("required for buy_x_get_y: the product's name as the customer reads it")
        if not bxgy and value:
            raise ValueError("only a buy_x_get_y reward has product names")
        return value or None

    @field_validator("minimum_amount", mode="after")
    @classmethod
    def _no_minimum_for_bxgy(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if value is not None and info.data.get("kind") == "buy_x_get_y":
            raise ValueError("a buy_x_get_y reward has no minimum order amount (the products to buy are its condition)")
        return value

    @property
    def percent_off(self) -> Decimal:
        """Return how much cheaper a buy_x_get_y reward makes its product, in percent (100 = free)."""
        return self.value if self.value is not None else Decimal("100")


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
            raise PydanticCustomError("tier_names_not_unique", "tier names must be unique")
        thresholds = [t.threshold for t in self.levels]
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise PydanticCustomError("tier_thresholds_not_increasing", "tier thresholds must strictly increase")
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


class BounceBack(_Strict):
    """Bounce-back coupon: a paid order at or over `threshold` earns a code for the customer's
    next purchase (once per order; taken back if the order is cancelled or fully refunded
    before the code is used).

    The threshold is measured on the same base as points (`earning`): merchandise after
    discounts, without shipping, tips, gift cards and value paid by gift card, and without tax
    unless `earning.earn_on_gross` is on; so "from 50 €" means what the order earns points on.
    It is judged once, when the order is paid: a later partial refund does not take the code
    back, even below the threshold (only cancellation or a full refund does).
    """

    enabled: bool = False
    threshold: Decimal = Field(default=Decimal("50"), gt=0, le=1_000_000)
    kind: Literal["fixed_amount", "percentage"] = "fixed_amount"
    value: Decimal = Field(default=Decimal("5"), gt=0, le=1_000_000)  # amount off, or percent off
    # The order the code is used on must reach this (the shop checks it); None = no minimum.
    minimum_amount: Decimal | None = Field(default=None, ge=0, le=1_000_000)
    valid_days: int = Field(default=30, ge=1, le=365)
    # E-mail the code: inside the order's points-earned e-mail when that notice is on
    # (`reminders.notices.points_earned`), else in an e-mail of its own.
    send_email: bool = True

    @field_validator("value")
    @classmethod
    def _percent_at_most_100(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        if info.data.get("kind") == "percentage" and value > 100:
            raise ValueError("a percentage is at most 100")
        return value


class ReferralStep(_Strict):
    """A reward that grows with referrals: what the member's `count`-th rewarded referral gives
    on top of `referrer_points` (exactly one of `points` and `member_discount_percent`).

    `member_discount_percent`: a lasting member code: restricted to the member, no expiry, no
    use limits (the member uses it on every order), switched off in the shop if the referral
    that earned it is reversed.
    """

    count: int = Field(ge=1, le=1000)
    points: int | None = Field(default=None, gt=0, le=10_000_000)
    member_discount_percent: Decimal | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _one_gift(self) -> ReferralStep:
        if (self.points is None) == (self.member_discount_percent is None):
            raise ValueError("a step gives exactly one of points and member_discount_percent")
        return self


class Referral(_Strict):
    """Members' referral codes: a welcome discount for the friend, points for the member.

    Every rewarded referral gives `referrer_points`; `steps` add to that for the member's Nth
    rewarded referral (`app.loyalty.referrals`). A program without steps is the flat reward.
    """

    enabled: bool = True
    friend_discount_percent: Decimal = Field(default=Decimal("10"), gt=0, le=100)
    friend_minimum_amount: Decimal | None = Field(default=None, ge=0)
    referrer_points: int = Field(default=500, ge=0, le=10_000_000)
    monthly_cap: int = Field(default=5, ge=0, le=1000)
    steps: tuple[ReferralStep, ...] = Field(default=(), max_length=50)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[ReferralStep, ...]) -> tuple[ReferralStep, ...]:
        for index in range(1, len(steps)):
            if steps[index].count <= steps[index - 1].count:
                raise PydanticCustomError(
                    "step_counts_not_increasing",
                    "step counts must be unique and increasing: step {step} has count {count}, after {previous}",
                    {"step": index + 1, "count": steps[index].count, "previous": steps[index - 1].count})
        return steps

    def step(self, count: int) -> ReferralStep | None:
        """Return the step the member's `count`-th rewarded referral reaches, or None."""
        return next((s for s in self.steps if s.count == count), None)


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
            raise PydanticCustomError("gift_threshold", "give exactly one of min_amount and min_grams")
        return self


class Redemption(_Strict):
    """How rewards are redeemed."""

    # Redeem the cheapest reward by itself once the available balance reaches it.
    auto: bool = False
    # What one point is worth in the shop's currency, shown wherever points are shown and used by
    # the outstanding-points report. None: the value of the cheapest amount reward per point
    # (`Program.point_worth`).
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
            raise PydanticCustomError("steps_not_increasing", "steps_hours must be increasing and not empty")
        if self.steps_hours[0] * 60 < self.idle_minutes:
            raise PydanticCustomError("first_step_too_early",
                                      "the first step cannot come before the cart counts as abandoned (idle_minutes)")
        if self.incentive_step > len(self.steps_hours):
            raise PydanticCustomError("incentive_step_after_last", "incentive_step is after the last step")
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


class TierInShop(_Strict):
    """The member's tier written to the shop, for the shop's own perks and segments: a Shopify
    customer tag "<tag_prefix> <tier>" (only our own tag is ever removed), a WooCommerce customer
    meta `stammkunde_tier`. Off: nothing more is written, and our tags are removed as members change
    (or at once with `flask shops sync-tiers`)."""

    enabled: bool = True
    # Makes our tags recognisable among the shop's own ("Stammkunde Gold").
    tag_prefix: str = Field(default="Stammkunde", min_length=1, max_length=40)

    @field_validator("tag_prefix")
    @classmethod
    def _one_tag(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the tag prefix must not be blank")
        if "," in value:
            raise ValueError("the tag prefix must not contain a comma (Shopify splits tags at commas)")
        return value


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
    bounce_back: BounceBack = BounceBack()
    referral: Referral = Referral()
    gifts: tuple[Gift, ...] = ()
    redemption: Redemption = Redemption()
    reminders: Reminders = Reminders()
    tier_in_shop: TierInShop = TierInShop()

    @model_validator(mode="after")
    def _consistent(self) -> Program:
        names = [r.name for r in self.rewards]
        if len(set(names)) != len(names):
            raise PydanticCustomError("reward_names_not_unique", "reward names must be unique")
        tier_names = {t.name for t in self.tiers.levels}
        for reward in self.rewards:
            unknown = set(reward.tiers) - tier_names
            if unknown:
                raise PydanticCustomError("reward_tiers_unknown", "reward {name} names unknown tiers {tiers}",
                                          {"name": repr(reward.name), "tiers": str(sorted(unknown))})
        return self

    def reward(self, name: str) -> Reward | None:
        """Return the reward called `name` (case-insensitive), or None."""
        wanted = name.strip().casefold()
        return next((r for r in self.rewards if r.name.casefold() == wanted), None)

    def tier(self, name: str | None) -> Tier | None:
        """Return the tier called `name`, or None."""
        return next((t for t in self.tiers.levels if t.name == name), None)

    def point_worth(self, platform: str | None = None) -> PointWorth | None:
        """Return what one point is worth in the shop's currency: as `redemption.point_value`
        states, else the value per point of the cheapest active amount reward (fixed amount off or
        store credit; the fewest points, then the larger amount, then the name) that `platform`
        can give (None: any platform); None when neither gives a value. The one definition the
        storefront, the customer page, the e-mails and the liability report use.
        """
        stated = self.redemption.point_value
        if stated is not None:
            return PointWorth(stated, "program")
        candidates = [
            r for r in self.rewards
            if r.active and r.kind in AMOUNT_KINDS and r.value is not None
            and (platform is None or platform in PLATFORM_KINDS.get(r.kind, frozenset({platform})))
        ]
        if not candidates:
            return None
        cheapest = min(candidates, key=lambda r: (r.points, -(r.value or 0), r.name))
        assert cheapest.value is not None
        return PointWorth(cheapest.value / cheapest.points, "reward", cheapest)


@dataclass(frozen=True)
class PointWorth:
    """What one point is worth (`Program.point_worth`): `amount` in the shop's currency, exact (a
    derived value may have more places than the currency: 5 € for 500 points is 0.01, 5 € for 300
    points 0.0166…); `source` "program" (stated) or "reward" (derived from `reward`)."""

    amount: Decimal
    source: Literal["program", "reward"]
    reward: Reward | None = None

    def of(self, points: int, currency: str) -> Decimal:
        """Return what `points` are worth, rounded half up to the currency's smallest unit
        (cents for EUR, whole yen for JPY): the figure every surface shows after "≈"."""
        places = get_currency_precision(currency.upper())
        return (self.amount * points).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def validate_document(document: Any) -> Program:
    """Validate a program document.

    Raises:
        ProgramError: naming every bad field ("earning.points_per_unit: ...").
    """
    try:
        return Program.model_validate(document)
    except ValidationError as exc:
        errors = tuple(exc.errors(include_url=False, include_input=False))
        problems = tuple((tuple(err["loc"]), str(err["msg"])) for err in errors)
        message = "; ".join(f"{'.'.join(str(p) for p in loc) or 'document'}: {msg}" for loc, msg in problems)
        raise ProgramError(message, problems, errors) from None


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
    _check_voucher_pools(session, shop, program)
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


def _check_voucher_pools(session: Session, shop: Shop, program: Program) -> None:
    """Refuse a program whose partner_voucher rewards name a pool the shop does not have.

    A pool the owner has not created is a mistake in the document (a typo, a pool not made yet),
    so it is an error at the field, like any other. Pools are never deleted, so a saved program
    cannot lose its pool later; should one be missing anyway, the reward is shown as unavailable.

    Raises:
        ProgramError: naming each such reward's `pool` field.
    """
    named = {r.pool for r in program.rewards if r.kind == "partner_voucher" and r.pool}
    if not named:
        return
    known = set(session.scalars(select(VoucherPool.name).where(VoucherPool.shop_id == shop.id,
                                                               VoucherPool.name.in_(sorted(named)))))
    problems = tuple(
        (("rewards", i, "pool"), f"no voucher pool called {r.pool!r} in this shop (create it under Vouchers first)")
        for i, r in enumerate(program.rewards)
        if r.kind == "partner_voucher" and r.pool not in known
    )
    if problems:
        message = "; ".join(f"{'.'.join(str(p) for p in loc)}: {msg}" for loc, msg in problems)
        raise ProgramError(message, problems)
