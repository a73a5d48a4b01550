"""Earning rules as pure functions (no I/O, no Flask)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from app.program import Earning


@dataclass(frozen=True)
class OrderAmounts:
    """The parts of an order that decide its points, all in the shop currency."""

    merchandise: Decimal
    merchandise_tax: Decimal
    taxes_included: bool
    gift_card_paid: Decimal
    tags: tuple[str, ...] = ()


def eligible_base(amounts: OrderAmounts, earning: Earning) -> Decimal:
    """Return the amount that earns: merchandise after discounts, less tax and gift-card value.

    Shipping, tips and gift-card purchases are never part of `merchandise`; tax is removed unless
    prices include tax and the shop earns on gross; value paid by gift card or store credit is
    removed. Never negative.
    """
    base = amounts.merchandise
    if amounts.taxes_included and not earning.earn_on_gross:
        base -= amounts.merchandise_tax
    base -= amounts.gift_card_paid
    return max(base, Decimal("0"))


def is_excluded(amounts: OrderAmounts, earning: Earning) -> bool:
    """Return True when the order carries a tag that excludes it from earning (staff orders)."""
    excluded = {t.strip().lower() for t in earning.excluded_order_tags}
    return any(t.strip().lower() in excluded for t in amounts.tags)


def points_for(base: Decimal, earning: Earning, multiplier: Decimal = Decimal("1")) -> int:
    """Return the points for an eligible base: base x rate x multiplier, rounded down."""
    return _floor_points(base, earning.points_per_unit, multiplier)


def _floor_points(base: Decimal, points_per_unit: Decimal, multiplier: Decimal) -> int:
    raw = base * points_per_unit * multiplier
    return int(raw.to_integral_value(rounding=ROUND_FLOOR))


def award_with_gift_cards(rule: Mapping[str, Any], gift_card_paid: Decimal) -> int | None:
    """Return what an order's award deserves now that `gift_card_paid` is what gift cards paid.

    `rule` is the award's lot rule: its base (after the gift-card value known when it was earned),
    that gift-card value, rate and multiplier, so the award moves on the rule it was earned under.
    None for a lot that did not record the gift-card value it was earned with (nothing to move).
    """
    if "gift_card_paid" not in rule:
        return None
    before_gift_cards = Decimal(rule["base"]) + Decimal(rule["gift_card_paid"])
    base = max(before_gift_cards - gift_card_paid, Decimal("0"))
    return _floor_points(base, Decimal(rule["points_per_unit"]), Decimal(rule["multiplier"]))


def reversal_target(points: int, base: Decimal, refunded: Decimal) -> int:
    """Return how many of an award's `points` a refund of `refunded` (out of `base`) takes back.

    Proportional to the refunded share and rounded down, so a customer never loses more than the
    share; a refund of the whole base (or more) takes back everything.
    """
    if points <= 0:
        return 0
    if base <= 0 or refunded >= base:
        return points
    if refunded <= 0:
        return 0
    share = Decimal(points) * refunded / base
    return min(points, int(share.to_integral_value(rounding=ROUND_FLOOR)))
