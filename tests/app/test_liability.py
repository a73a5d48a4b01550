"""Outstanding points at a date (app.loyalty.reports): a shop's history with hand-computed figures,
on SQLite and PostgreSQL. Orders, refunds, redemptions, adjustments, maturing and expiry go through
the real domain functions and sweeps at their own (travelled-to) times."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.db import session_scope
from app.loyalty import ledger, reports
from app.loyalty.customers import find_by_email
from app.loyalty.redemptions import give_back, redeem
from app.models import LotState, PointLot, Shop
from jobs.points import expire_points, mature_points
from sqlalchemy import func, select
from tests import factories
from tests.factories import T0

ANNA, BEN, CORA, DORA, ELLEN, FRANK = (f"{n}@example.test" for n in ("anna", "ben", "cora", "dora", "ellen", "frank"))
# 1 point per euro, 14 days pending, points expire 6 months after earning; "5 € Rabatt" is the
# cheapest amount reward (500 points): a point is worth 0.01 EUR.
PROGRAM = {"earning": {"return_window_days": 14}, "expiry": {"months": 6}, "tiers": {"levels": []},
           "second_purchase": {"enabled": False}, "referral": {"enabled": False}}


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def _customer(session, shop_id: int, email: str):  # type: ignore[no-untyped-def]
    customer = find_by_email(session, shop_id, email)
    assert customer is not None, email
    return customer


@pytest.fixture
def shop(make_shop, time_machine):  # type: ignore[no-untyped-def]
    """A shop's history (T0 = 2026-11-01 10:00 UTC; the shop is in Europe/Berlin).

    T0-500d  the program above is saved
    T0-400d  ellen gets 70 goodwill points from staff (available at once, no expiry)
    day   0  anna pays #1 300.00 (lot A1, 300 pending); ben pays #2 100.00 (B1, 100 pending)
    day  20  the return windows are over: A1 and B1 available
    day  40  anna pays #3 500.00 (A2, 500 pending)
    day  45  ben's #2 is refunded 40.00: 40 points taken from his own lot B1 (60 left)
    day  58  dora pays #5 25.00 (D1, 25 pending until day 72)
    day  60  A2 available; anna redeems "5 € Rabatt" for 500 points: A1 300 (oldest) and A2 200
    day  70  anna redeems "Gratisversand" (300 points from A2); the shop refuses the code and the
             points go back to A2
    day 100  cora pays #4 50.00 (C1)
    day 120  C1 and D1 available
    day 150  a new program version says a point is worth 0.02 EUR
    day 183  the expiry sweep: B1's 60 points expired (A1 was spent)
    day 225  the expiry sweep: A2's 300 points expired
    day 266  frank pays #6 30.00 (F1, 30 pending)
    D1 expired on 2027-06-29 but no sweep ran after that: it still holds its 25 points.
    """
    shop_id = make_shop("shopify")

    def at(when: datetime) -> None:
        time_machine.move_to(when, tick=False)

    at(day(-500))
    factories.program(shop_id, PROGRAM)
    at(day(-400))
    factories.apply(shop_id, factories.order("90", "10.00", customer_id="ellen", email=ELLEN, paid=False,
                                             paid_at=day(-400)))
    with session_scope() as s:
        ledger.adjust(s, shop_id=shop_id, customer_id=_customer(s, shop_id, ELLEN).id, points=70,
                      note="Kulanz", actor="support@stammkunde.example", key="ellen-goodwill")
    at(day(0))
    factories.apply(shop_id, factories.order("1", "300.00", customer_id="anna", email=ANNA, paid_at=day(0)))
    factories.apply(shop_id, factories.order("2", "100.00", customer_id="ben", email=BEN, paid_at=day(0)))
    at(day(20))
    assert mature_points() == 2
    at(day(40))
    factories.apply(shop_id, factories.order("3", "500.00", customer_id="anna", email=ANNA, paid_at=day(40)))
    at(day(45))
    factories.apply(shop_id, factories.order("2", "100.00", customer_id="ben", email=BEN, paid_at=day(0),
                                             updated_at=day(45), refunds=(("r1", "40.00"),)))
    at(day(58))
    factories.apply(shop_id, factories.order("5", "25.00", customer_id="dora", email=DORA, paid_at=day(58)))
    at(day(60))
    assert mature_points() == 1
    with session_scope() as s:
        redeem(s, s.get(Shop, shop_id), _customer(s, shop_id, ANNA), "5 € Rabatt", source="customer", now=day(60))
    at(day(70))
    with session_scope() as s:
        refused = redeem(s, s.get(Shop, shop_id), _customer(s, shop_id, ANNA), "Gratisversand", source="customer",
                         now=day(70))
        give_back(s, refused, "the shop refused the code: free shipping is not enabled")
    at(day(100))
    factories.apply(shop_id, factories.order("4", "50.00", customer_id="cora", email=CORA, paid_at=day(100)))
    at(day(120))
    assert mature_points() == 2
    at(day(150))
    factories.program(shop_id, {**PROGRAM, "redemption": {"point_value": "0.02"}})
    at(day(183))
    assert expire_points() == 1
    at(day(225))
    assert expire_points() == 1
    at(day(266))
    factories.apply(shop_id, factories.order("6", "30.00", customer_id="frank", email=FRANK, paid_at=day(266)))
    at(day(300))
    return shop_id


def _report(shop_id: int, on: date) -> reports.Liability:
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        return reports.outstanding_points(s, shop, reports.end_of_day(shop, on))


def _points(buckets: tuple[reports.Bucket, ...]) -> dict[str, int]:
    return {b.label: b.points for b in buckets if b.points}


def test_outstanding_points_at_the_end_of_2026(shop):
    # when the report is taken at the end of 31 December 2026 in the shop's time zone
    report = _report(shop, date(2026, 12, 31))

    # then it is the first instant of 2027 in Berlin (23:00 UTC)
    assert report.at == datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc)
    # anna: A2 300 (A1 spent, 200 of A2 spent); ben: B1 60 after the refund; dora: D1 25 pending;
    # ellen: her 70 goodwill points
    assert (report.pending, report.available, report.total, report.customers) == (25, 430, 455, 4)
    # a point is worth 5.00 / 500 = 0.01 EUR: the cheapest amount reward of the version in force then
    assert report.point_value.amount == Decimal("0.01")
    assert report.point_value.source == "reward" and report.point_value.reward == "5 € Rabatt"
    assert report.value == Decimal("4.55") and report.currency == "EUR"
    # ellen's goodwill points from September 2025 are over 12 months old
    assert _points(report.ages) == {"0-3 months": 385, "over 12 months": 70}
    # B1 expires on 2027-05-01, A2 on 2027-06-11 and D1 on 2027-06-29; the first month is January
    assert report.expiring[0].label == "2027-01"
    assert _points(report.expiring) == {"2027-05": 60, "2027-06": 325}
    assert {b.label: b.value for b in report.expiring if b.points} == {"2027-05": Decimal("0.60"),
                                                                       "2027-06": Decimal("3.25")}
    assert (report.expiry_overdue, report.no_expiry, report.unplaced) == (0, 70, 0)


def test_outstanding_points_at_the_end_of_july_2027(shop):
    # when the report is taken at the end of 31 July 2027 (summer time: 22:00 UTC)
    report = _report(shop, date(2027, 7, 31))

    assert report.at == datetime(2027, 7, 31, 22, 0, tzinfo=timezone.utc)
    # anna's A2 and ben's B1 expired; cora 50, dora 25 (past expiry, not swept yet), ellen 70, frank 30 pending
    assert (report.pending, report.available, report.total, report.customers) == (30, 145, 175, 4)
    # the version saved on day 150 states 0.02 EUR a point
    assert report.point_value.amount == Decimal("0.02") and report.point_value.source == "program"
    assert report.value == Decimal("3.50")
    assert _points(report.ages) == {"0-3 months": 30, "3-6 months": 50, "6-12 months": 25, "over 12 months": 70}
    assert [b.value for b in report.ages] == [Decimal("0.60"), Decimal("1.00"), Decimal("0.50"), Decimal("1.40")]
    assert _points(report.expiring) == {"2027-08": 50, "2028-01": 30}
    assert (report.expiry_overdue, report.no_expiry, report.unplaced) == (25, 70, 0)


def test_outstanding_points_before_anything_was_earned_are_zero(shop):
    report = _report(shop, date(2025, 1, 1))

    assert (report.total, report.customers, report.value, report.unplaced) == (0, 0, Decimal("0.00"), 0)
    assert report.point_value.program_version == 0  # the defaults were in force: no version saved yet


def test_outstanding_points_now_match_the_lots(shop):
    # given the lots as they stand after the whole history
    with session_scope() as s:
        open_lots = {state: int(points) for state, points in s.execute(
            select(PointLot.state, func.sum(PointLot.remaining))
            .where(PointLot.shop_id == shop, PointLot.state.in_([LotState.PENDING, LotState.AVAILABLE]))
            .group_by(PointLot.state))}
        shop_row = s.get(Shop, shop)
        # when the report is taken now
        report = reports.outstanding_points(s, shop_row, day(300))

    # then the ledger's replay places every point in the lot that holds it
    assert report.total == sum(open_lots.values()) == 175
    assert report.unplaced == 0


@pytest.mark.sqlite_only
def test_liability_csv_has_every_figure(shop):
    report = _report(shop, date(2027, 7, 31))

    text = reports.liability_csv(report)

    lines = text.splitlines()
    assert lines[0] == "section,item,points,value,currency"
    assert "outstanding,total,175,3.50,EUR" in lines
    assert "age,over 12 months,70,1.40,EUR" in lines
    assert "expiry,overdue (expiry sweep pending),25,0.50,EUR" in lines
    assert "expiry,2027-08,50,1.00,EUR" in lines
    assert "expiry,no expiry,70,1.40,EUR" in lines


def test_point_value_without_an_amount_reward_is_none():
    from app.program import validate_document

    program = validate_document({"rewards": [{"name": "Gratisversand", "points": 300, "kind": "free_shipping"}]})

    value = reports.point_value(program, 3, "EUR")

    assert value.amount is None and value.of(100) is None
    assert "no amount reward" in value.explain()


def test_point_value_comes_from_the_cheapest_amount_reward():
    from app.program import validate_document

    program = validate_document({"rewards": [
        {"name": "10 € Rabatt", "points": 800, "kind": "fixed_amount", "value": "10"},
        {"name": "3 € Guthaben", "points": 400, "kind": "store_credit", "value": "3"},
        {"name": "10 % Rabatt", "points": 100, "kind": "percentage", "value": "10"},
    ]})

    value = reports.point_value(program, 2, "CHF")

    assert (value.amount, value.reward, value.currency) == (Decimal("0.0075"), "3 € Guthaben", "CHF")
    assert value.of(1000) == Decimal("7.50")
