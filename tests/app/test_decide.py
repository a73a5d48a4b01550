"""The earning rules as tables: facts in, plan out (app.loyalty.decide; no database)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.loyalty import decide
from app.loyalty.decide import CustomerFacts, EntryFacts, LotFacts, OrderFacts, RefundFacts
from app.models import LotState
from app.program import Program, ProgramError, validate_document

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PAID = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
D = Decimal


def order(**kw) -> OrderFacts:  # type: ignore[no-untyped-def]
    values = dict(id=7, number="#1001", currency="EUR", is_paid=True, paid_at=PAID, merchandise=D("100.00"),
                  merchandise_tax=D("15.97"), taxes_included=True, gift_card_paid=None, tags=(), status="paid",
                  cancelled_at=None, deleted_at=None, refunds=())
    values.update(kw)
    return OrderFacts(**values)


CUSTOMER = CustomerFacts(id=3, tier=None, banned=False)


def program(**earning) -> Program:  # type: ignore[no-untyped-def]
    return Program.model_validate({"earning": earning, "tiers": {"levels": [
        {"name": "Bronze", "threshold": "0"}, {"name": "Silber", "threshold": "250", "multiplier": "1.25"}]}})


@pytest.mark.parametrize(
    "facts, customer, earning, points, state",
    [
        # net of tax (prices include it, the shop earns on net)
        (order(), CUSTOMER, {}, 84, LotState.PENDING),
        # gross, when the shop earns on gross
        (order(), CUSTOMER, {"earn_on_gross": True}, 100, LotState.PENDING),
        # prices without tax: the merchandise is the base
        (order(taxes_included=False), CUSTOMER, {}, 100, LotState.PENDING),
        # what gift cards paid earns nothing
        (order(gift_card_paid=D("50")), CUSTOMER, {}, 34, LotState.PENDING),
        # 2.5 points per unit, rounded down
        (order(merchandise=D("10.99"), taxes_included=False), CUSTOMER, {"points_per_unit": "2.5"}, 27,
         LotState.PENDING),
        # a tier's multiplier
        (order(taxes_included=False), replace(CUSTOMER, tier="Silber"), {}, 125, LotState.PENDING),
        # no return window: available at once
        (order(taxes_included=False), CUSTOMER, {"return_window_days": 0}, 100, LotState.AVAILABLE),
        # gift cards paid it all: a zero award marks the order as handled, without a lot
        (order(gift_card_paid=D("100")), CUSTOMER, {}, 0, None),
    ],
)
def test_a_paid_order_earns(facts, customer, earning, points, state):
    plan = decide.plan_order(facts, customer, (), (), program(**earning), 4, NOW)

    [entry] = plan.entries
    assert (entry.reason, entry.source_type, entry.source_id, entry.delta) == ("earn", "order", "7", points)
    assert plan.award is not None and plan.award.points == points
    if state is None:
        assert plan.new_lot is None and not entry.on_new_lot
    else:
        assert plan.new_lot is not None and plan.new_lot.state == state and entry.on_new_lot
        assert plan.new_lot.rule["program_version"] == 4
        assert (entry.pending_delta, entry.available_delta) == (
            (points, 0) if state == LotState.PENDING else (0, points))


@pytest.mark.parametrize(
    "facts, customer, why",
    [
        (order(tags=("Staff",)), CUSTOMER, "excluded"),
        (order(), replace(CUSTOMER, banned=True), "banned"),
    ],
)
def test_an_order_that_earns_nothing_says_why(facts, customer, why):
    plan = decide.plan_order(facts, customer, (), (), program(), 1, NOW)
    assert plan.empty and plan.skipped == why and plan.award is None


@pytest.mark.parametrize(
    "facts",
    [order(is_paid=False, paid_at=None), order(merchandise=None)],
)
def test_an_unpaid_or_unknown_order_waits(facts):
    assert decide.plan_order(facts, CUSTOMER, (), (), program(), 1, NOW) == decide.OrderPlan()


@pytest.mark.parametrize(
    "_case, facts, customer, earning, outcome",
    [
        ("the default limit, 1 000 000 points, is allowed",
         order(merchandise=D("1000000.00"), taxes_included=False), CUSTOMER, {}, 1_000_000),
        ("one point over the default limit",
         order(merchandise=D("1000001.00"), taxes_included=False), CUSTOMER, {},
         "order #1001 would earn 1000001 points, more than the shop's limit of 1000000 per order"),
        ("the tier's multiplier takes it over",
         order(merchandise=D("900000.00"), taxes_included=False), replace(CUSTOMER, tier="Silber"), {},
         "order #1001 would earn 1125000 points, more than the shop's limit of 1000000 per order"),
        ("a shop's own lower limit",
         order(), CUSTOMER, {"max_points_per_order": 50},
         "order #1001 would earn 84 points, more than the shop's limit of 50 per order"),
        ("a shop's own higher limit",
         order(merchandise=D("5000000"), taxes_included=False), CUSTOMER, {"max_points_per_order": 10_000_000},
         5_000_000),
        ("an excluded order is not measured", order(merchandise=D("9E+9"), tags=("staff",)), CUSTOMER, {}, None),
    ],
)
def test_an_order_over_the_shops_points_limit_is_refused_with_the_reason(_case, facts, customer, earning, outcome):
    if isinstance(outcome, str):
        with pytest.raises(decide.PointsOverLimitError) as refused:
            decide.plan_order(facts, customer, (), (), program(**earning), 1, NOW)
        assert str(refused.value) == outcome + " (program: earning.max_points_per_order); nothing was awarded"
        return
    plan = decide.plan_order(facts, customer, (), (), program(**earning), 1, NOW)
    if outcome is None:
        assert plan.empty and plan.skipped == "excluded"
    else:
        assert plan.award is not None and plan.award.points == outcome == plan.entries[0].delta


@pytest.mark.parametrize("value", [0, -1, 1_000_000_001, "many"])
def test_the_points_limit_must_be_a_sensible_number(value):
    with pytest.raises(ProgramError, match="earning.max_points_per_order"):
        validate_document({"earning": {"max_points_per_order": value}})


def test_the_award_is_dated_by_the_payment_and_expires_by_the_program():
    won = decide.award(order(), CUSTOMER, Program.model_validate({"expiry": {"months": 12}}), NOW)
    assert isinstance(won, decide.Award)
    assert won.earned_at == PAID
    assert won.available_at == PAID + timedelta(days=14)
    assert won.expires_at == PAID.replace(year=2027)


# An order of 100.00 (no tax) that earned 100 points into lot 50.
RULE = {"rule": "order", "points_per_unit": "1", "multiplier": "1", "base": "100", "gift_card_paid": "0",
        "merchandise": "100"}
EARN = EntryFacts("earn", "order", "7", 100, 0, 50)
OWN = LotFacts(50, 100, 100, LotState.PENDING, PAID, PAID + timedelta(days=14), RULE)
OTHER = LotFacts(40, 30, 30, LotState.AVAILABLE, PAID - timedelta(days=30), PAID - timedelta(days=16), {})


def refund(n: int, amount: str) -> RefundFacts:
    return RefundFacts(id=n, platform_id=f"r{n}", merchandise=D(amount), happened_at=PAID + timedelta(hours=n))


@pytest.mark.parametrize(
    "facts, entries, lots, gift_card, want, changes",
    [
        # nothing happened since the award
        (order(taxes_included=False), (EARN,), (OWN,), None, [], {}),
        # a 25 % refund takes a quarter
        (order(taxes_included=False, refunds=(refund(1, "25"),)), (EARN,), (OWN,), None,
         [("refund", "1", -25, 0)], {50: (75, LotState.PENDING)}),
        # two refunds arriving together: each its cumulative share
        (order(taxes_included=False, refunds=(refund(2, "10.50"), refund(1, "25"))), (EARN,), (OWN,), None,
         [("refund", "1", -25, 0), ("refund", "2", -10, 0)], {50: (65, LotState.PENDING)}),
        # the second refund after the first was taken: only its own share
        (order(taxes_included=False, refunds=(refund(1, "25"), refund(2, "10.50"))),
         (EARN, EntryFacts("refund", "refund", "1", -25, 0, 50)), (replace(OWN, remaining=75),), None,
         [("refund", "2", -10, 0)], {50: (65, LotState.PENDING)}),
        # cancelled: the rest goes, the lot is reversed
        (order(taxes_included=False, cancelled_at=NOW, status="cancelled"), (EARN,), (OWN,), None,
         [("cancel", "7", -100, 0)], {50: (0, LotState.REVERSED)}),
        # deleted after spending: what the lot lacks comes from other lots, the rest is a shortfall
        (order(taxes_included=False, deleted_at=NOW), (EARN,), (replace(OWN, remaining=60), OTHER), None,
         [("cancel", "7", -90, 10)], {50: (0, LotState.REVERSED), 40: (0, LotState.REVERSED)}),
        # restored after a cancel: what the cancel took comes back
        (order(taxes_included=False), (EARN, EntryFacts("cancel", "order", "7", -100, 0, 50)),
         (replace(OWN, remaining=0, state=LotState.REVERSED),), None,
         [("restore", "7", 100, 0)], {50: (100, LotState.PENDING)}),
        # a gift card paid 40 after the award: the award moves down to 60
        (order(taxes_included=False, gift_card_paid=D("40")), (EARN,), (OWN,), "900", [("gift_card", "900", -40, 0)],
         {50: (60, LotState.PENDING)}),
        # ... and with a 50 % refund already taken, to 30
        (order(taxes_included=False, gift_card_paid=D("40"), refunds=(refund(1, "50"),)),
         (EARN, EntryFacts("refund", "refund", "1", -50, 0, 50)), (replace(OWN, remaining=50),), "900",
         [("gift_card", "900", -20, 0)], {50: (30, LotState.PENDING)}),
        # a refund taken on an estimate (21.00) whose own lines say 25.00: 4 more, keyed by its detail
        (order(taxes_included=False, refunds=(replace(refund(1, "25"), detailed=True),)),
         (EARN, EntryFacts("refund", "refund", "1", -21, 0, 50)), (replace(OWN, remaining=79),), None,
         [("refund", "1", -4, 0)], {50: (75, LotState.PENDING)}),
        # ... or 18.00: 3 come back
        (order(taxes_included=False, refunds=(replace(refund(1, "18"), detailed=True),)),
         (EARN, EntryFacts("refund", "refund", "1", -21, 0, 50)), (replace(OWN, remaining=79),), None,
         [("refund", "1", 3, 0)], {50: (82, LotState.PENDING)}),
        # ... and once corrected, never again
        (order(taxes_included=False, refunds=(replace(refund(1, "25"), detailed=True),)),
         (EARN, EntryFacts("refund", "refund", "1", -21, 0, 50), EntryFacts("refund", "refund_detail", "1", -4, 0, 50)),
         (replace(OWN, remaining=75),), None, [], {}),
        # a gift-card refund gives back
        (order(taxes_included=False, gift_card_paid=D("0")),
         (EARN, EntryFacts("gift_card", "transaction", "900", -40, 0, 50)), (replace(OWN, remaining=60),), "901",
         [("gift_card", "901", 40, 0)], {50: (100, LotState.PENDING)}),
    ],
)
def test_an_award_moves_with_the_order(facts, entries, lots, gift_card, want, changes):
    plan = decide.plan_order(facts, CUSTOMER, entries, lots, program(), 1, NOW, gift_card_source=gift_card)
    assert [(e.reason, e.source_id, e.delta, e.shortfall) for e in plan.entries] == want
    assert {c.lot_id: (c.remaining, c.state) for c in plan.lot_changes} == changes
    assert plan.new_lot is None and plan.award is None


@pytest.mark.parametrize("arrival", list(itertools.permutations(range(3))))
def test_refunds_in_any_arrival_order_take_the_same_points(arrival):
    # given refunds of 25.00, 10.50 and 30.00 of a 100.00 order that earned 100 points
    refunds = (refund(1, "25"), refund(2, "10.50"), refund(3, "30"))
    entries, lot, taken = (EARN,), OWN, 0
    # when they arrive one at a time in this order (each delivery sees the refunds so far)
    for n in range(1, 4):
        known = tuple(refunds[i] for i in arrival[:n])
        plan = decide.plan_order(order(taxes_included=False, refunds=known), CUSTOMER, entries, (lot,),
                                 program(), 1, NOW)
        for e in plan.entries:
            entries += (EntryFacts(e.reason, e.source_type, e.source_id, e.delta, e.shortfall, e.lot_id),)
            taken += e.delta
        lot = replace(lot, remaining=lot.remaining + sum(e.delta for e in plan.entries))
    # then together they take the share of 65.50: 65 points
    assert taken == -65 and lot.remaining == 35


def test_an_order_paid_and_refunded_at_once_is_decided_again_after_the_award():
    plan = decide.plan_order(order(refunds=(refund(1, "10"),)), CUSTOMER, (), (), program(), 1, NOW)
    assert plan.award is not None and plan.decide_again


@pytest.mark.parametrize(
    "facts, counts",
    [
        (order(), True),
        (order(is_paid=False), False),
        (order(cancelled_at=NOW), False),
        (order(deleted_at=NOW), False),
        (order(status="refunded"), False),
        (order(status="cancelled"), False),
        (order(status=None), True),
        (order(refunds=(refund(1, "5"),)), True),  # a partial refund leaves it counting
    ],
)
def test_one_definition_of_an_order_that_counts(facts, counts):
    assert decide.still_counts(facts) is counts
    assert decide.still_counts(facts, since=PAID) is counts
    assert decide.still_counts(facts, since=PAID + timedelta(seconds=1)) is False


def test_history_earns_nothing_but_is_marked_handled():
    # a backfilled order outside the points window: one zero earn entry, so no later event awards it
    plan = decide.plan_history(order())
    assert [(e.reason, e.source_type, e.delta, e.detail["history"]) for e in plan.entries] == [("earn", "order", 0, True)]
    assert plan.new_lot is None and plan.award is None and plan.skipped == "history"


# --- the bounce-back coupon (issue 20, rule 1) ---------------------------------------------------

BOUNCE = {"enabled": True, "threshold": "50"}


def net(**kw) -> OrderFacts:  # type: ignore[no-untyped-def]
    """An order without tax (unless given)."""
    return order(**{"merchandise_tax": D("0"), **kw})


@pytest.mark.parametrize(
    ("_case", "facts", "document", "earns"),
    [
        ("off by default", net(merchandise=D("80")), {}, False),
        ("under the threshold", net(merchandise=D("49.99")), {"bounce_back": BOUNCE}, False),
        ("at the threshold", net(merchandise=D("50")), {"bounce_back": BOUNCE}, True),
        ("tax left out (net 50.00 of 59.50 gross)",
         net(merchandise=D("59.50"), merchandise_tax=D("9.50"), taxes_included=True), {"bounce_back": BOUNCE}, True),
        ("tax left out (net 49.99)",
         net(merchandise=D("59.49"), merchandise_tax=D("9.50"), taxes_included=True), {"bounce_back": BOUNCE}, False),
        ("gross when points are earned on gross",
         net(merchandise=D("59.49"), merchandise_tax=D("9.50"), taxes_included=True),
         {"bounce_back": BOUNCE, "earning": {"earn_on_gross": True}}, True),
        ("value paid by gift card left out", net(merchandise=D("60"), gift_card_paid=D("15")),
         {"bounce_back": BOUNCE}, False),
        ("arrives cancelled", net(merchandise=D("80"), cancelled_at=PAID, status="cancelled"),
         {"bounce_back": BOUNCE}, False),
        ("arrives refunded in full", net(merchandise=D("80"), status="refunded"), {"bounce_back": BOUNCE}, False),
    ],
)
def test_which_paid_orders_earn_a_bounce_back_code(_case, facts, document, earns):
    # given the program and the paid order's award
    rules = validate_document(document)
    won = decide.award(facts, CUSTOMER, rules, NOW)
    assert isinstance(won, decide.Award)

    # then the order earns a code exactly when the offer is on and its points base reaches the threshold
    assert decide.earns_bounce_back(facts, won, rules) is earns


@pytest.mark.parametrize(("_case", "facts", "reason"), [
    ("cancelled", order(cancelled_at=PAID, status="cancelled"), "cancelled"),
    ("refunded in full", order(status="refunded"), "refunded"),
    ("deleted", order(deleted_at=PAID), "deleted"),
])
def test_why_a_bounce_back_code_is_taken_back(_case, facts, reason):
    assert decide.is_gone(facts) and decide.gone_reason(facts) == reason


@pytest.mark.parametrize(("_case", "document", "field", "message"), [
    ("percent over 100", {"kind": "percentage", "value": "101"}, ("bounce_back", "value"), "at most 100"),
    ("no threshold", {"threshold": "0"}, ("bounce_back", "threshold"), "greater than 0"),
    ("unknown kind", {"kind": "free_shipping"}, ("bounce_back", "kind"), "Input should be"),
    ("negative minimum", {"minimum_amount": "-1"}, ("bounce_back", "minimum_amount"), "greater than or equal to 0"),
    ("a year and a day", {"valid_days": 366}, ("bounce_back", "valid_days"), "less than or equal to 365"),
])
def test_bounce_back_errors_name_the_field(_case, document, field, message):
    with pytest.raises(ProgramError) as caught:
        validate_document({"bounce_back": document})
    assert [loc for loc, _ in caught.value.problems] == [field]
    assert message in caught.value.problems[0][1]
