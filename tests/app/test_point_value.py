"""What a point is worth (issue 20, rule 7): one definition, `Program.point_worth`, stated in the
program or derived from its cheapest amount reward; and combination offers as program documents
(rule 6), validated with the field's name. Pure: no database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.loyalty import reports
from app.program import Program, ProgramError, validate_document

pytestmark = pytest.mark.sqlite_only

FIVE = {"name": "5 € Rabatt", "points": 500, "kind": "fixed_amount", "value": "5"}
CREDIT = {"name": "3 € Guthaben", "points": 200, "kind": "store_credit", "value": "3"}
TEN_PERCENT = {"name": "10 %", "points": 100, "kind": "percentage", "value": "10"}
OFFER = {"name": "Kaffee-Kombi", "points": 400, "kind": "buy_x_get_y", "buys_product_ids": ["7"], "buys_quantity": 2,
         "buys_label": "Espresso-Bohnen", "product_id": "9", "gets_label": "Tasse"}


@pytest.mark.parametrize(("_case", "document", "platform", "amount", "source", "reward"), [
    ("derived from the only amount reward", {"rewards": [FIVE, TEN_PERCENT]}, None, Decimal("0.01"), "reward",
     "5 € Rabatt"),
    ("the cheapest amount reward wins (store credit on Shopify)", {"rewards": [FIVE, CREDIT]}, "shopify",
     Decimal("0.015"), "reward", "3 € Guthaben"),
    ("store credit does not count where the platform cannot give it", {"rewards": [FIVE, CREDIT]}, "woocommerce",
     Decimal("0.01"), "reward", "5 € Rabatt"),
    ("an inactive reward does not count", {"rewards": [FIVE, {**CREDIT, "active": False}]}, "shopify",
     Decimal("0.01"), "reward", "5 € Rabatt"),
    ("a stated value wins over the rewards", {"rewards": [FIVE], "redemption": {"point_value": "0.02"}}, None,
     Decimal("0.02"), "program", None),
    ("stated without any amount reward", {"rewards": [TEN_PERCENT], "redemption": {"point_value": "0.005"}}, None,
     Decimal("0.005"), "program", None),
])
def test_point_worth_is_stated_or_derived(_case: str, document: dict[str, Any], platform: str | None,
                                          amount: Decimal, source: str, reward: str | None) -> None:
    # when a program says what a point is worth
    worth = validate_document(document).point_worth(platform)

    # then
    assert worth is not None
    assert (worth.amount, worth.source, worth.reward.name if worth.reward else None) == (amount, source, reward)


def test_no_amount_reward_and_nothing_stated_gives_no_value() -> None:
    assert validate_document({"rewards": [TEN_PERCENT, OFFER]}).point_worth() is None


@pytest.mark.parametrize(("_case", "amount", "points", "currency", "expected"), [
    ("whole cents", "0.01", 1250, "EUR", Decimal("12.50")),
    ("a third of a cent, rounded half up", "0.015", 3, "EUR", Decimal("0.05")),
    ("5 € for 300 points", str(Decimal(5) / 300), 1000, "EUR", Decimal("16.67")),
    ("yen have no minor unit", "1.5", 3, "JPY", Decimal("5")),
])
def test_points_are_worth_their_value_rounded_half_up_to_the_currency(_case: str, amount: str, points: int,
                                                                       currency: str, expected: Decimal) -> None:
    worth = validate_document({"redemption": {"point_value": amount}}).point_worth()
    assert worth is not None and worth.of(points, currency) == expected


def test_the_liability_report_uses_the_same_definition() -> None:
    # given a program with store credit as its cheapest amount reward, and one stating a value
    derived = validate_document({"rewards": [FIVE, CREDIT]})
    stated = validate_document({"rewards": [FIVE], "redemption": {"point_value": "0.02"}})

    # then the report values a point as the program does
    assert reports.point_value(derived, 3, "EUR").amount == derived.point_worth().amount  # type: ignore[union-attr]
    assert reports.point_value(derived, 3, "EUR").reward == "3 € Guthaben"
    assert (reports.point_value(stated, 4, "EUR").amount, reports.point_value(stated, 4, "EUR").source) == (
        Decimal("0.02"), "program")
    assert reports.point_value(Program(rewards=()), 0, "EUR").amount is None


def test_a_combination_offer_is_a_reward_of_the_program() -> None:
    # when a program holds "buy 2 × Espresso-Bohnen, get 1 × Tasse free"
    offer = validate_document({"rewards": [OFFER]}).rewards[0]

    # then it is free unless a percentage is given, and it round-trips as a document
    assert (offer.kind, offer.percent_off, offer.buys_quantity, offer.gets_quantity) == ("buy_x_get_y", 100, 2, None)
    assert validate_document(validate_document({"rewards": [OFFER]}).model_dump(mode="json")).rewards[0] == offer


@pytest.mark.parametrize(("_case", "changes", "field", "message"), [
    ("nothing to buy", {"buys_product_ids": []}, "buys_variant_ids", "name the products or variants"),
    ("no quantity", {"buys_quantity": None}, "buys_quantity", "how many must be bought"),
    ("a quantity of 0", {"buys_quantity": 0}, "buys_quantity", "greater than or equal to 1"),
    ("no product given", {"product_id": None}, "variant_id", "the customer gets cheaper"),
    ("no words for the customer", {"gets_label": " "}, "gets_label", "as the customer reads it"),
    ("a minimum amount", {"minimum_amount": "20"}, "minimum_amount", "no minimum order amount"),
    ("an empty product id", {"buys_product_ids": ["7", " "]}, "buys_product_ids", "a product id is empty"),
])
def test_a_bad_combination_offer_names_its_field(_case: str, changes: dict[str, Any], field: str,
                                                  message: str) -> None:
    # when a program with that offer is validated, then the error names the reward's field
    with pytest.raises(ProgramError) as caught:
        validate_document({"rewards": [{**OFFER, **changes}]})
    assert any(loc == ("rewards", 0, field) and message in text for loc, text in caught.value.problems), \
        caught.value.problems


def test_other_rewards_cannot_carry_an_offers_fields() -> None:
    with pytest.raises(ProgramError) as caught:
        validate_document({"rewards": [{**FIVE, "buys_product_ids": ["7"], "gets_label": "Tasse"}]})
    assert {loc for loc, _ in caught.value.problems} == {("rewards", 0, "buys_product_ids"), ("rewards", 0, "gets_label")}
