"""Earning by product as tables: an order's lines under the program's product rules, facts in,
plan out (app.loyalty.earning, app.loyalty.decide; no database)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from app.loyalty import decide, earning
from app.loyalty.decide import CustomerFacts, EntryFacts, LotFacts, OrderFacts, RefundFacts
from app.loyalty.earning import LineAmounts
from app.loyalty.explain import product_rules_text
from app.models import LotState
from app.program import Program, ProgramError, validate_document

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)
PAID = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
D = Decimal
CUSTOMER = CustomerFacts(id=3, tier=None, banned=False)

# A German shop's order, prices with tax: a novel under the fixed book price (7 % VAT), a summer
# shirt (19 %) and a gift card sold as a product (no VAT when sold: a voucher).
BOOK = LineAmounts("1", D("21.40"), D("1.40"), product_id="501", vendor="Verlag Nord", tags=("buch",))
SHIRT = LineAmounts("2", D("59.50"), D("9.50"), product_id="502", variant_id="9021", vendor="Nordlicht",
                    collections=("sommer", "4711"), categories=("sommer", "4711"))
VOUCHER = LineAmounts("3", D("25.00"), D("0"), product_id="503", tags=("gutschein",))
LINES = (BOOK, SHIRT, VOUCHER)


def order(lines=LINES, **kw) -> OrderFacts:  # type: ignore[no-untyped-def]
    merchandise = sum((line.merchandise for line in lines), D("0"))
    tax = sum((line.tax for line in lines), D("0"))
    values = dict(id=7, number="#1001", currency="EUR", is_paid=True, paid_at=PAID, merchandise=merchandise,
                  merchandise_tax=tax, taxes_included=True, gift_card_paid=None, tags=(), status="paid",
                  cancelled_at=None, deleted_at=None, refunds=(), lines=lines, timezone="Europe/Berlin")
    values.update(kw)
    return OrderFacts(**values)


def program(*rules: dict, **earning_fields) -> Program:  # type: ignore[no-untyped-def]
    return Program.model_validate({"earning": {**earning_fields, "product_rules": list(rules)}})


NO_BOOKS = {"name": "Buchpreisbindung", "effect": "exclude", "tags": ["Buch"]}
NO_VOUCHERS = {"name": "Gutscheine", "effect": "exclude", "product_ids": ["503"]}
DOUBLE_SUMMER = {"name": "Sommer", "collections": ["Sommer"], "multiplier": "2",
                 "valid_from": "2026-12-01", "valid_until": "2026-12-31"}


@pytest.mark.parametrize(
    "_case, facts, rules, earning_fields, points",
    [
        ("no product rules: the order's base, as without them (net 80.00 + 25.00)", order(), (), {}, 95),
        ("rules that match no line: exactly the same", order(), ({"name": "x", "vendors": ["Fremd"]},), {}, 95),
        ("the book excluded: net 50.00 + 25.00", order(), (NO_BOOKS,), {}, 75),
        ("the voucher excluded too", order(), (NO_BOOKS, NO_VOUCHERS), {}, 50),
        ("the summer collection doubled: 20 + 2 x 50 + 25", order(), (DOUBLE_SUMMER,), {}, 145),
        ("double and exclusions together", order(), (DOUBLE_SUMMER, NO_BOOKS, NO_VOUCHERS), {}, 100),
        ("on gross: each line with its tax", order(), (NO_BOOKS,), {"earn_on_gross": True}, 84),
        ("prices without tax: the merchandise is the base", order(taxes_included=False), (NO_VOUCHERS,), {}, 80),
        ("2.5 points per unit, rounded down once per order", order(), (DOUBLE_SUMMER,), {"points_per_unit": "2.5"},
         362),
        ("what a gift card paid lowers every line in proportion: 55.00 x 75/95", order(gift_card_paid=D("40")),
         (NO_BOOKS,), {}, 43),
        ("by vendor (case-insensitive)", order(), ({"name": "N", "vendors": ["nordlicht"], "multiplier": "3"},),
         {}, 195),
        ("by variant", order(), ({"name": "V", "variant_ids": ["9021"], "effect": "exclude"},), {}, 45),
        ("by category (WooCommerce's word for a collection)", order(),
         ({"name": "K", "categories": ["4711"], "multiplier": "1.5"},), {}, 120),
        ("the rule over, the day after its last (Berlin time)", order(paid_at=datetime(2026, 12, 31, 23, 30, tzinfo=UTC)),
         (DOUBLE_SUMMER,), {}, 95),
        ("not yet: 30 Nov 23:30 UTC is 1 Dec in Berlin, so it applies",
         order(paid_at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC)), (DOUBLE_SUMMER,), {}, 145),
        ("exclusion beats a multiplier on the same line", order(),
         (DOUBLE_SUMMER, {"name": "Nein", "effect": "exclude", "product_ids": ["502"]}), {}, 45),
        ("the highest multiplier wins, they never multiply together", order(),
         (DOUBLE_SUMMER, {"name": "Drei", "product_ids": ["502"], "multiplier": "3"}), {}, 195),
        ("a line the snapshot did not list earns as before (rest)", order(merchandise=D("135.90")), (NO_BOOKS,), {},
         105),
    ],
)
def test_lines_earn_by_their_rules(_case, facts, rules, earning_fields, points):
    plan = decide.plan_order(facts, CUSTOMER, (), (), program(*rules, **earning_fields), 4, NOW)

    [entry] = plan.entries
    assert entry.delta == points
    if plan.award.share is None:  # earned as without product rules: nothing per line is kept
        assert "lines" not in entry.detail and (plan.new_lot is None or "lines" not in plan.new_lot.rule)
    else:  # the lines' points add up to the award
        assert sum(line["points"] for line in entry.detail["lines"]) == points


def test_no_product_rules_give_exactly_todays_points():
    # given orders of every shape without product rules (amounts that round at .5 and .99)
    for merchandise, tax, gift_card, rate in itertools.product(
            ("0.99", "10.50", "100.00", "1234.56"), ("0", "0.16", "15.97"), (None, "3.33"), ("1", "2.5", "0.1")):
        facts = order(merchandise=D(merchandise), merchandise_tax=D(tax),
                      gift_card_paid=None if gift_card is None else D(gift_card))
        earning_fields = {"points_per_unit": rate}
        today = earning.points_for(earning.eligible_base(decide.amounts_of(facts), program(**earning_fields).earning),
                                   program(**earning_fields).earning)
        # when decided with a program that has no rules, and with one whose rule matches nothing
        plain = decide.award(facts, CUSTOMER, program(**earning_fields), NOW)
        unmatched = decide.award(facts, CUSTOMER, program({"name": "x", "product_ids": ["1"]}, **earning_fields), NOW)
        # then both give today's points
        assert plain.points == unmatched.points == today, (merchandise, tax, gift_card, rate)


def test_the_award_keeps_each_lines_rule_for_reversals():
    plan = decide.plan_order(order(), CUSTOMER, (), (), program(DOUBLE_SUMMER, NO_BOOKS, NO_VOUCHERS), 4, NOW)

    lines = {line["id"]: line for line in plan.new_lot.rule["lines"]}
    assert (lines["1"]["weight"], lines["2"]["weight"], lines["3"]["weight"]) == ("0.00", "100.00", "0.00")
    assert lines["2"]["rule"] == "Sommer" and lines["1"]["effect"] == "exclude"
    shown = {line["id"]: line for line in plan.entries[0].detail["lines"]}
    assert [shown[i]["points"] for i in "123"] == [0, 100, 0]
    assert shown["2"]["matched"] == "collection" and shown["1"]["matched"] == "tag"
    assert shown["3"]["rule"] == "Gutscheine" and shown["3"]["matched"] == "product"


def test_the_ledger_says_how_the_lines_earned():
    plan = decide.plan_order(order(), CUSTOMER, (), (), program(DOUBLE_SUMMER, NO_BOOKS, NO_VOUCHERS), 4, NOW)
    lines = plan.entries[0].detail["lines"]

    assert product_rules_text(lines, lambda text: text) == (
        "(Buchpreisbindung: no points; 2× on Sommer: 100 points; Gutscheine: no points)")


@pytest.mark.parametrize(
    "points, weights, shares",
    [
        (10, ["1", "1", "1"], [4, 3, 3]),  # ties go to the earlier line
        (782, ["391.32", "391.34", "0"], [391, 391, 0]),
        (0, ["5", "5"], [0, 0]),
        (7, ["0", "0"], [0, 0]),
        (100, ["33.33", "66.67"], [33, 67]),
    ],
)
def test_an_award_is_shared_among_lines_by_largest_remainder(points, weights, shares):
    assert earning.apportion(points, [D(w) for w in weights]) == shares
    assert sum(shares) == (points if any(D(w) for w in weights) else 0)


# --- refunds: each line gives back its own points ----------------------------------------------

def awarded(rules, **kw):  # type: ignore[no-untyped-def]
    """The order's award: (its earn entry, its lot) as stored."""
    plan = decide.plan_order(order(**kw), CUSTOMER, (), (), program(*rules), 4, NOW)
    [entry] = plan.entries
    lot = LotFacts(50, entry.delta, entry.delta, LotState.PENDING, PAID, PAID + timedelta(days=14),
                   plan.new_lot.rule)
    return EntryFacts("earn", "order", "7", entry.delta, 0, 50), lot


def refund(n: int, *lines: tuple[str, str]) -> RefundFacts:
    return RefundFacts(id=n, platform_id=f"r{n}", merchandise=sum((D(a) for _, a in lines), D("0")),
                       happened_at=PAID + timedelta(hours=n), detailed=True,
                       lines=tuple((line_id, D(a)) for line_id, a in lines))


@pytest.mark.parametrize(
    "_case, rules, refunds, taken",
    [
        ("an excluded line refunded takes nothing", (DOUBLE_SUMMER, NO_BOOKS, NO_VOUCHERS), (refund(1, ("1", "21.40")),),
         0),
        ("a doubled line refunded takes double (all its 100)", (DOUBLE_SUMMER, NO_BOOKS, NO_VOUCHERS),
         (refund(1, ("2", "59.50")),), 100),
        ("half the doubled line: half its points", (DOUBLE_SUMMER,), (refund(1, ("2", "29.75")),), 50),
        ("the plain voucher line: its own 25", (DOUBLE_SUMMER,), (refund(1, ("3", "25.00")),), 25),
        ("two refunds of lines: each line's own", (DOUBLE_SUMMER,),
         (refund(1, ("1", "21.40")), refund(2, ("2", "59.50"))), 120),
        ("a refund without lines: the share of the merchandise, as before", (DOUBLE_SUMMER,),
         (RefundFacts(1, "r1", D("52.95"), PAID, detailed=False),), 72),
    ],
)
def test_a_refund_takes_back_its_lines_own_points(_case, rules, refunds, taken):
    earn, lot = awarded(rules)
    facts = order(refunds=refunds)

    plan = decide.plan_order(facts, CUSTOMER, (earn,), (lot,), program(*rules), 4, NOW)

    assert -sum(e.delta for e in plan.entries) == taken


def test_a_full_refund_takes_all_and_cancelling_the_rest():
    earn, lot = awarded((DOUBLE_SUMMER,))
    everything = refund(1, ("1", "21.40"), ("2", "59.50"), ("3", "25.00"))

    plan = decide.plan_order(order(refunds=(everything,)), CUSTOMER, (earn,), (lot,), program(DOUBLE_SUMMER), 4, NOW)
    assert -sum(e.delta for e in plan.entries) == earn.delta == 145

    cancelled = decide.plan_order(order(status="refunded"), CUSTOMER, (earn,), (lot,), program(DOUBLE_SUMMER), 4, NOW)
    assert [(e.reason, e.delta) for e in cancelled.entries] == [("cancel", -145)]


def test_refunds_keep_the_rule_they_were_earned_under():
    # given an award under the double-summer rule, and the rule removed since
    earn, lot = awarded((DOUBLE_SUMMER,))

    # when the doubled line is refunded
    plan = decide.plan_order(order(refunds=(refund(1, ("2", "59.50")),)), CUSTOMER, (earn,), (lot,), program(), 5, NOW)

    # then it takes back what it earned then: double
    assert -sum(e.delta for e in plan.entries) == 100


@pytest.mark.parametrize("arrival", list(itertools.permutations(range(3))))
def test_line_refunds_in_any_arrival_order_take_the_same_points(arrival):
    # given refunds of part of each line of an award under product rules
    rules = (DOUBLE_SUMMER, NO_VOUCHERS)
    refunds = (refund(1, ("1", "10.70")), refund(2, ("2", "19.83")), refund(3, ("3", "25.00"), ("2", "9.92")))
    entries, lot = awarded(rules)
    entries = (entries,)
    taken = 0
    # when they arrive one at a time in this order, each delivery seeing the refunds so far
    for n in range(1, 4):
        known = tuple(refunds[i] for i in arrival[:n])
        plan = decide.plan_order(order(refunds=known), CUSTOMER, entries, (lot,), program(*rules), 4, NOW)
        for e in plan.entries:
            entries += (EntryFacts(e.reason, e.source_type, e.source_id, e.delta, e.shortfall, e.lot_id),)
            taken += e.delta
        lot = replace(lot, remaining=lot.remaining + sum(e.delta for e in plan.entries))
    # then together they take each line's share once: 10 of the book's 20, 50 of the shirt's 100
    # (29.75 of 59.50, rounded on the line's total refunded, not per refund), nothing of the
    # excluded voucher
    assert taken == -60 and lot.remaining == 120 - 60


def test_a_gift_card_move_keeps_the_lines_weights():
    # given an award under product rules (145), and a gift card found to have paid 42.40 after it
    earn, lot = awarded((DOUBLE_SUMMER,))
    facts = order(gift_card_paid=D("42.40"))

    # when the gift-card transaction is decided
    plan = decide.plan_order(facts, CUSTOMER, (earn,), (lot,), program(DOUBLE_SUMMER), 4, NOW, gift_card_source="900")

    # then the award moves to what the order earns with it, the lines weighted as before:
    # base 95.00 - 42.40 = 52.60, x 145/95 = 80.28
    assert [(e.reason, e.delta) for e in plan.entries] == [("gift_card", -65)]


def test_missing_product_facts_hold_the_award():
    # given a rule on product tags and a line whose product could not be looked up
    facts = order(unknown_products=("503",))

    # then the order is not awarded, with the reason, rather than awarded without the rule
    with pytest.raises(decide.ProductFactsMissingError, match="503"):
        decide.plan_order(facts, CUSTOMER, (), (), program(NO_BOOKS), 4, NOW)
    # a rule that reads only the lines (products, variants, vendors) needs no lookup
    assert decide.plan_order(facts, CUSTOMER, (), (), program(NO_VOUCHERS), 4, NOW).entries[0].delta == 70


# --- the program document -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "_case, rule, where, message",
    [
        ("names nothing", {"name": "Leer"}, ("earning", "product_rules", 0), "at least one product"),
        ("a product id that is not a number", {"name": "X", "product_ids": ["abc"]},
         ("earning", "product_rules", 0, "product_ids"), "not a numeric id: abc"),
        ("a multiplier of 0 (use exclude)", {"name": "X", "tags": ["a"], "multiplier": "0"},
         ("earning", "product_rules", 0, "multiplier"), "greater than 0"),
        ("an unknown effect", {"name": "X", "tags": ["a"], "effect": "halve"},
         ("earning", "product_rules", 0, "effect"), "'exclude' or 'multiply'"),
        ("ends before it starts", {"name": "X", "tags": ["a"], "valid_from": "2026-12-31", "valid_until": "2026-12-01"},
         ("earning", "product_rules", 0), "valid_until is before valid_from"),
        ("a date that is no date", {"name": "X", "tags": ["a"], "valid_from": "Dezember"},
         ("earning", "product_rules", 0, "valid_from"), "date"),
    ],
)
def test_a_product_rule_is_validated_with_field_named_errors(_case, rule, where, message):
    with pytest.raises(ProgramError) as caught:
        validate_document({"earning": {"product_rules": [rule]}})
    [(loc, text)] = caught.value.problems
    assert loc == where and message in text


def test_a_rule_knows_whether_it_needs_a_lookup():
    rules = validate_document({"earning": {"product_rules": [
        NO_VOUCHERS, {"name": "V", "vendors": ["x"]}, NO_BOOKS, DOUBLE_SUMMER,
        {"name": "K", "categories": ["k"]}]}}).earning.product_rules
    assert [r.needs_lookup for r in rules] == [False, False, True, True, True]


def test_rule_matching_is_by_what_the_line_carries():
    rule = SimpleNamespace(product_ids=("502",), variant_ids=(), vendors=("Nordlicht",), collections=(),
                           categories=(), tags=())
    assert earning.rule_match(rule, SHIRT) == "product"
    assert earning.rule_match(rule, replace(SHIRT, product_id="9")) == "vendor"
    assert earning.rule_match(rule, BOOK) is None
