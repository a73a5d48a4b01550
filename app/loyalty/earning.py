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
    if "weighted" in rule and Decimal(rule["eligible"]) > 0:  # earned under product rules
        raw = (base * Decimal(rule["points_per_unit"]) * Decimal(rule["multiplier"]) * Decimal(rule["weighted"])
               / Decimal(rule["eligible"]))
        return int(raw.to_integral_value(rounding=ROUND_FLOOR))
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


# --- Earning by product (issue 20, rule 5) ---------------------------------------------------------
#
# An order still earns on one base, as above (merchandise after discounts, without tax unless the
# shop earns on gross, less what gift cards paid); product rules only weigh its lines. Each line's
# eligible amount (its merchandise, less its own tax unless the shop earns on gross) counts with
# its rule's factor: 0 for an exclusion, the multiplier, else 1. The order's points are
#
#     floor(base x points_per_unit x tier multiplier x sum(eligible_i x factor_i) / sum(eligible_i))
#
# multiplied out before the one division and rounded down ONCE per order, so a program without
# product rules (every factor 1) gives exactly the points of `points_for`. The award is then
# shared among the lines by largest remainder in proportion to eligible_i x factor_i (`apportion`):
# the lines' points add up to the award, an excluded line holds 0 and a doubled line twice its
# share. What the lines do not cover of the order's merchandise (lines the snapshot left out)
# counts as one more line with factor 1 ("rest"), so a missing line never earns more or less.


@dataclass(frozen=True)
class LineAmounts:
    """One merchandise line of an order (gift-card lines are not merchandise), with what the
    rules match on: its product's collections (Shopify) or categories (WooCommerce) and tags
    come from the looked-up product (`app.loyalty.products`), lower-cased."""

    id: str
    merchandise: Decimal  # the line's part of the order's merchandise (after discounts, same tax basis)
    tax: Decimal
    product_id: str | None = None
    variant_id: str | None = None
    vendor: str | None = None
    collections: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class LineShare:
    """How one line earns under the product rules."""

    id: str
    merchandise: Decimal
    weight: Decimal  # eligible amount x factor
    factor: Decimal
    rule: str | None  # the rule's name, None when no rule matched
    effect: str | None  # "exclude" | "multiply"
    matched: str | None  # what matched: "product", "variant", "collection", "category", "tag", "vendor"


@dataclass(frozen=True)
class ProductShare:
    """The order's lines under the product rules; `weighted / eligible` scales the order's base."""

    lines: tuple[LineShare, ...]
    eligible: Decimal
    weighted: Decimal


def _folded(values: tuple[str, ...]) -> set[str]:
    return {v.strip().casefold() for v in values if v.strip()}


def rule_match(rule: Any, line: LineAmounts) -> str | None:
    """Return what of `line` the product rule matches ("product", "collection", ...), or None."""
    if line.product_id is not None and line.product_id in rule.product_ids:
        return "product"
    if line.variant_id is not None and line.variant_id in rule.variant_ids:
        return "variant"
    if line.vendor and line.vendor.strip().casefold() in _folded(rule.vendors):
        return "vendor"
    if _folded(rule.collections) & set(line.collections):
        return "collection"
    if _folded(rule.categories) & set(line.categories):
        return "category"
    if _folded(rule.tags) & set(line.tags):
        return "tag"
    return None


def line_rule(line: LineAmounts, rules: tuple[Any, ...], day: Any) -> tuple[Decimal, Any, str | None]:
    """Return (factor, rule, what matched) for a line: an exclusion among the rules in force on
    `day` wins (factor 0), else the highest multiplier (the first of equals), else (1, None, None)."""
    best: tuple[Decimal, Any, str | None] = (Decimal("1"), None, None)
    for rule in rules:
        if not rule.in_force(day):
            continue
        matched = rule_match(rule, line)
        if matched is None:
            continue
        if rule.effect == "exclude":
            return Decimal("0"), rule, matched
        if best[1] is None or rule.multiplier > best[0]:
            best = (rule.multiplier, rule, matched)
    return best


def line_eligible(line: LineAmounts, amounts: OrderAmounts, earning: Earning) -> Decimal:
    """Return a line's eligible amount: its merchandise less its tax (unless the shop earns on
    gross or prices exclude tax), never negative."""
    value = line.merchandise
    if amounts.taxes_included and not earning.earn_on_gross:
        value -= line.tax
    return max(value, Decimal("0"))


def product_share(lines: tuple[LineAmounts, ...], amounts: OrderAmounts, earning: Earning,
                  day: Any) -> ProductShare | None:
    """Return the order's lines under `earning.product_rules` in force on `day`, or None when no
    line matches a rule (the order earns exactly as without product rules)."""
    rules = earning.product_rules
    if not rules or not lines:
        return None
    shares: list[LineShare] = []
    matched_any = False
    for line in lines:
        factor, rule, matched = line_rule(line, rules, day)
        matched_any = matched_any or rule is not None
        eligible = line_eligible(line, amounts, earning)
        shares.append(LineShare(line.id, line.merchandise, eligible * factor, factor,
                                rule.name if rule is not None else None,
                                rule.effect if rule is not None else None, matched))
    if not matched_any:
        return None
    covered = sum((line_eligible(line, amounts, earning) for line in lines), Decimal("0"))
    whole = amounts.merchandise - (amounts.merchandise_tax if amounts.taxes_included and not earning.earn_on_gross
                                   else Decimal("0"))
    rest = whole - covered
    if rest > 0:  # lines the snapshot did not list earn as any line does
        shares.append(LineShare("rest", rest, rest, Decimal("1"), None, None, None))
        covered += rest
    weighted = sum((s.weight for s in shares), Decimal("0"))
    return ProductShare(tuple(shares), covered, weighted)


def points_by_product(base: Decimal, earning: Earning, multiplier: Decimal, eligible: Decimal,
                      weighted: Decimal) -> int:
    """Return base x rate x multiplier x weighted / eligible, rounded down once (the division
    last, so a whole number stays whole)."""
    if eligible <= 0:
        return points_for(base, earning, multiplier)
    raw = base * earning.points_per_unit * multiplier * weighted / eligible
    return int(raw.to_integral_value(rounding=ROUND_FLOOR))


def apportion(points: int, weights: list[Decimal]) -> list[int]:
    """Share `points` among weights by largest remainder (ties to the earlier); the shares add up
    to `points` (all 0 when every weight is 0)."""
    total = sum(weights, Decimal("0"))
    if points <= 0 or total <= 0:
        return [0] * len(weights)
    quotas = [Decimal(points) * w / total for w in weights]
    shares = [int(q.to_integral_value(rounding=ROUND_FLOOR)) for q in quotas]
    left = points - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def rule_lines(rule: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Return the per-line record an award's lot rule keeps (None: earned without product rules)."""
    lines = rule.get("lines")
    return lines if isinstance(lines, list) else None


def line_points(rule: Mapping[str, Any], awarded: int) -> dict[str, int]:
    """Return each line's share of `awarded` (the award as it stands now, after any gift-card
    move), by the weights the award was earned with."""
    lines = rule_lines(rule) or []
    shares = apportion(awarded, [Decimal(line["weight"]) for line in lines])
    return {line["id"]: share for line, share in zip(lines, shares, strict=True)}


def reversal_by_lines(rule: Mapping[str, Any], awarded: int, refunded: Mapping[str, Decimal]) -> int:
    """Return how many of `awarded` the refunded amounts per line (`refunded`: line id -> refunded
    merchandise so far) take back: each line its own points' share of what of it was refunded
    (rounded down per line; a line refunded in full gives back all its points). An excluded line
    gives back nothing, a doubled line twice as much."""
    lines = {line["id"]: line for line in rule_lines(rule) or []}
    if "rest" in lines:  # a line the award did not list is part of the rest it earned as
        unlisted = sum((a for line_id, a in refunded.items() if line_id not in lines), Decimal("0"))
        refunded = {**refunded, "rest": refunded.get("rest", Decimal("0")) + unlisted}
    total = 0
    for line_id, points in line_points(rule, awarded).items():
        amount = refunded.get(line_id)
        if amount is None or points <= 0:
            continue
        total += reversal_target(points, Decimal(lines[line_id]["merchandise"]), amount)
    return min(total, awarded)
