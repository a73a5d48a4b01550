"""The program's figures (app.loyalty.metrics) from a small shop history with hand-computed results, on
SQLite and PostgreSQL. Orders, refunds, referrals, redemptions and attribution go through the real
domain functions at their own (travelled-to) times; reminder rows are inserted as the sends leave them."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from app.loyalty import ledger, metrics, referrals
from app.loyalty.customers import find_by_email
from app.db import session_scope
from app.models import (
    CodeStatus,
    IssuedCode,
    MessageStatus,
    RedemptionStatus,
    Referral,
    ReminderMessage,
    Shop,
)
from app.loyalty.redemptions import give_back, redeem
from app.messaging.reminders import MARKETING
from tests import factories
from tests.factories import T0

ANNA, BEN, CORA, DORA, EMIL, FRANK = (f"{n}@example.test" for n in ("anna", "ben", "cora", "dora", "emil", "frank"))
# Instant points, 1 per euro, no tier multipliers, no second-purchase codes; referrals on.
PROGRAM = {"earning": {"return_window_days": 0}, "tiers": {"levels": []}, "second_purchase": {"enabled": False}}


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def _customer_id(shop_id: int, email: str) -> int:
    with session_scope() as s:
        customer = find_by_email(s, shop_id, email)
        assert customer is not None, email
        return customer.id


def _referral_code(shop_id: int, email: str) -> str:
    with session_scope() as s:
        customer = find_by_email(s, shop_id, email)
        assert customer is not None and customer.referral_code
        return customer.referral_code


def _message(shop_id: int, email: str, campaign: str, status: str, at: datetime, *, step: int = 1,
             reason: str | None = None, error: str | None = None) -> None:
    """Insert a reminder row as the send job leaves it (sent, suppressed with why, failed with the error)."""
    customer_id = _customer_id(shop_id, email)
    with session_scope() as s:
        s.add(ReminderMessage(
            shop_id=shop_id, customer_id=customer_id, campaign=campaign,
            subject_key=f"{customer_id}:{at.isoformat()}", step=step, marketing=MARKETING[campaign], email=email,
            status=MessageStatus(status), reason=reason, error=error, due_at=at,
            sent_at=at if status == "sent" else None, attempts=0 if status == "suppressed" else 1,
            message_id=f"<{campaign}-{customer_id}-{step}@stammkunde.local>" if status == "sent" else None,
        ))


def _settle_referral_of(shop_id: int, email: str, at: datetime) -> None:
    friend = _customer_id(shop_id, email)
    with session_scope() as s:
        referral = s.scalars(select(Referral).where(Referral.referred_customer_id == friend)).one()
        referrals.settle(s, referral.id, now=at)


@pytest.fixture
def shop(make_shop, time_machine):  # type: ignore[no-untyped-def]
    """A shop's first 100 days (T0 = 2026-11-01), each step at its own time.

    day  0  anna pays #1 900.00 (900 points) and gets her referral code
    day  5  ben pays #3 50.00 with anna's code (50 points; referral pending)
    day  8  #3 is refunded 20.00 (-20 points)
    day 20  ben's referral is settled: rejected, refunded; a cart reminder goes to ben
            and two hours later he pays #4 19.99 (19 points), credited to it
    day 21  ben's next cart step is suppressed: ordered
    day 30  dora places #6 45.00 and never pays (not a member)
    day 40  a win-back goes to anna; day 45 she pays #2 80.50 (80 points), credited to it
    day 50  anna redeems "5 € Rabatt" (500 points, code created) and "Gratisversand"
            (300 points, the shop refuses the code: points given back)
    day 60  cora pays #5 30.00 with anna's code (30 points; referral pending), gets the
            points-earned notice; 3 hours later her cart reminder is suppressed: no_consent
    day 61  emil pays #7 12.00 with cora's code from cora's address (rejected: self_referral)
    day 70  staff give cora 100 goodwill points (not "earned")
    day 75  cora's referral is rewarded: anna gets 500 points
    day 90  frank pays #8 25.00 with anna's code (referral pending)
    day 100 a win-back to ben fails for good
    Another shop's order must never show up.
    """
    shop_id = make_shop("shopify")
    other = make_shop("woocommerce")
    factories.program(shop_id, PROGRAM)

    def at(n: float) -> None:
        time_machine.move_to(day(n), tick=False)

    at(0)
    factories.apply(shop_id, factories.order("1", "900.00", customer_id="anna", email=ANNA, paid_at=day(0)))
    factories.apply(other, factories.order("1", "999.00", customer_id="anna", email=ANNA, paid_at=day(0)))
    anna_code = _referral_code(shop_id, ANNA)
    at(5)
    factories.apply(shop_id, factories.order("3", "50.00", customer_id="ben", email=BEN, paid_at=day(5),
                                             discount_codes=(anna_code,)))
    at(8)
    factories.apply(shop_id, factories.order("3", "50.00", customer_id="ben", email=BEN, paid_at=day(5),
                                             updated_at=day(8), discount_codes=(anna_code,),
                                             refunds=(("r1", "20.00"),)))
    at(20)
    _settle_referral_of(shop_id, BEN, day(20))
    _message(shop_id, BEN, "cart", "sent", day(20))
    at(20 + 2 / 24)
    factories.apply(shop_id, factories.order("4", "19.99", customer_id="ben", email=BEN, paid_at=day(20 + 2 / 24)))
    at(21)
    _message(shop_id, BEN, "cart", "suppressed", day(21), step=2, reason="ordered")
    at(30)
    factories.apply(shop_id, factories.order("6", "45.00", customer_id="dora", email=DORA, paid=False,
                                             paid_at=day(30)))
    at(40)
    _message(shop_id, ANNA, "winback", "sent", day(40))
    at(45)
    factories.apply(shop_id, factories.order("2", "80.50", customer_id="anna", email=ANNA, paid_at=day(45)))
    at(50)
    with session_scope() as s:
        shop_row = s.get(Shop, shop_id)
        anna = find_by_email(s, shop_id, ANNA)
        kept = redeem(s, shop_row, anna, "5 € Rabatt", source="customer", now=day(50))
        refused = redeem(s, shop_row, anna, "Gratisversand", source="customer", now=day(50))
        kept.status = RedemptionStatus.CREATED
        s.get(IssuedCode, kept.issued_code_id).status = CodeStatus.CREATED
        s.get(IssuedCode, refused.issued_code_id).status = CodeStatus.FAILED
        give_back(s, refused, "the shop refused the code: free shipping is not enabled")
    at(60)
    factories.apply(shop_id, factories.order("5", "30.00", customer_id="cora", email=CORA, paid_at=day(60),
                                             discount_codes=(anna_code,), fingerprint="addr-cora"))
    _message(shop_id, CORA, "points_earned", "sent", day(60))
    at(60 + 3 / 24)
    _message(shop_id, CORA, "cart", "suppressed", day(60 + 3 / 24), reason="no_consent")
    at(61)
    factories.apply(shop_id, factories.order("7", "12.00", customer_id="emil", email=EMIL, paid_at=day(61),
                                             discount_codes=(_referral_code(shop_id, CORA),),
                                             fingerprint="addr-cora"))
    at(70)
    with session_scope() as s:
        ledger.adjust(s, shop_id=shop_id, customer_id=_customer_id(shop_id, CORA), points=100,
                      note="Paket beschädigt", actor="support@stammkunde.example", key="goodwill-1")
    at(75)
    _settle_referral_of(shop_id, CORA, day(75))
    at(90)
    factories.apply(shop_id, factories.order("8", "25.00", customer_id="frank", email=FRANK, paid_at=day(90),
                                             discount_codes=(anna_code,)))
    at(100)
    _message(shop_id, BEN, "winback", "failed", day(100),
             error="PermanentMailError: recipient refused (550 5.1.1 [address] unknown)")
    return shop_id


def _zero_campaign(campaign: str) -> dict[str, Any]:
    return {"sent": 0, "suppressed": 0, "suppressed_by_reason": {}, "failed": 0, "orders": 0,
            "revenue": Decimal("0.00"), "marketing": MARKETING[campaign]}


def _campaigns(**figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c: {**_zero_campaign(c), **figures.get(c, {})} for c in MARKETING}


ALL_TIME = {
    # anna (#1, #2), ben (#3, #4), cora, emil, frank; dora never paid
    "members": 5,
    "repeat_members": 2,
    "repeat_purchase_rate": Decimal("0.4"),
    # 900 + 80 + 50 - 20 (refund) + 19 + 30 + 12 + 25 + 500 (referral); cora's 100 goodwill left out
    "points_earned": 1596,
    "points_expired": 0,
    "points_redeemed": 500,
    "redemption_rate": Decimal("0.3133"),  # 500 / 1596 = 0.31328...
    "members_redeemed": 1,
    "member_redemption_rate": Decimal("0.2"),
    "rewards": {"redeemed": 1, "codes_created": 1, "codes_pending": 0, "code_failures": 1},
    "referrals": {"pending": 1, "rewarded": 1, "rejected": 2,
                  "rejected_by_reason": {"refunded": 1, "self_referral": 1}},
    "campaigns": _campaigns(
        cart={"sent": 1, "suppressed": 2, "suppressed_by_reason": {"no_consent": 1, "ordered": 1},
              "orders": 1, "revenue": Decimal("19.99")},
        winback={"sent": 1, "failed": 1, "orders": 1, "revenue": Decimal("80.50")},
        points_earned={"sent": 1},
    ),
    "orders_won_back": 2,
    "revenue_won_back": Decimal("100.49"),
}

DAYS_30_TO_61 = {
    # anna's #2 (day 45) and cora's #5 (day 60); emil's day-61 order is the excluded end
    "members": 2,
    "repeat_members": 0,
    "repeat_purchase_rate": Decimal("0"),
    "points_earned": 110,  # 80 + 30
    "points_expired": 0,
    "points_redeemed": 500,
    "redemption_rate": Decimal("4.5455"),  # 500 / 110: points earned before the period were spent
    "members_redeemed": 1,
    "member_redemption_rate": Decimal("0.5"),
    "rewards": {"redeemed": 1, "codes_created": 1, "codes_pending": 0, "code_failures": 1},
    "referrals": {"pending": 0, "rewarded": 1, "rejected": 0, "rejected_by_reason": {}},
    "campaigns": _campaigns(
        cart={"suppressed": 1, "suppressed_by_reason": {"no_consent": 1}},
        winback={"sent": 1, "orders": 1, "revenue": Decimal("80.50")},
        points_earned={"sent": 1},
    ),
    "orders_won_back": 1,
    "revenue_won_back": Decimal("80.50"),
}


@pytest.mark.parametrize(
    "_case, since, until, expected",
    [
        ("all time", None, None, ALL_TIME),
        ("days 30 to 61, the end left out", day(30), day(61), DAYS_30_TO_61),
    ],
)
def test_figures_match_the_hand_computed_ones(shop, session, _case, since, until, expected):
    # given the shop's first 100 days (see the fixture)

    # when the figures are computed for the period
    figures = metrics.program_metrics(session, shop, since=since, until=until)
    session.commit()

    # then every figure is the hand-computed one, money in the shop's currency
    assert {k: figures[k] for k in expected} == expected
    assert (figures["currency"], figures["since"], figures["until"]) == ("EUR", since, until)


def test_revenue_is_an_exact_decimal(shop, session):
    # given two won-back orders of 19.99 and 80.50 (a float sum would be 100.49000000000001)

    # when the figures are computed
    figures = metrics.program_metrics(session, shop)
    session.commit()

    # then the revenue is exact and keeps its cents
    assert isinstance(figures["revenue_won_back"], Decimal)
    assert str(figures["revenue_won_back"]) == "100.49"
    assert str(figures["campaigns"]["winback"]["revenue"]) == "80.50"


def test_a_shop_without_activity_has_zeros_and_no_rates(make_shop, session):
    # given a shop with nothing yet
    shop_id = make_shop("shopify")

    # when its figures are computed
    figures = metrics.program_metrics(session, shop_id)
    session.commit()

    # then counts are zero and rates are None (nothing to divide by), not 0 % or an error
    assert (figures["members"], figures["points_earned"], figures["revenue_won_back"]) == (0, 0, Decimal("0.00"))
    assert figures["repeat_purchase_rate"] is None
    assert figures["redemption_rate"] is None
    assert figures["member_redemption_rate"] is None
    assert figures["campaigns"] == _campaigns()


def test_an_unknown_shop_is_refused(app, session):
    # given no shop 999

    # when / then
    with pytest.raises(ValueError, match="no shop with id 999"):
        metrics.program_metrics(session, 999)
