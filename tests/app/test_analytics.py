"""The analytics page's figures (app.loyalty.metrics: weekly series and KPIs) from a small shop
history with hand-computed results, on SQLite and PostgreSQL. Orders and redemptions go through
the real domain functions at their own (travelled-to) times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import update

from app.db import session_scope
from app.loyalty import metrics
from app.loyalty.customers import find_by_email
from app.loyalty.redemptions import redeem
from app.models import CodeStatus, Customer, IssuedCode, RedemptionStatus, Shop
from tests import factories
from tests.factories import T0

ANNA, BEN, GINA, HUGO, IVY = (f"{n}@example.test" for n in ("anna", "ben", "gina", "hugo", "ivy"))
PROGRAM = {"earning": {"return_window_days": 0}, "tiers": {"levels": []}, "second_purchase": {"enabled": False},
           "referral": {"enabled": False}}


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def shop(make_shop, time_machine):  # type: ignore[no-untyped-def]
    """T0 = Sunday 2026-11-01 10:00 UTC; the shop is in Europe/Berlin (weeks start on Monday there).

    day -30  ivy (account) pays #0 10.00
    day   0  anna (account) pays #1 600.00 (600 points)
    day   1  gina checks out as a guest: #2 40.00 (40 points)
    day   2  hugo (account) pays #3 100.00, tagged staff: earns nothing
    day   3  anna redeems "5 € Rabatt" (500 points); the code is created in the shop
    day   4  anna pays #4 60.00 with that code (60 points)
    day   8  ben (account) pays #5 20.00 (20 points)
    day   9  ivy pays #6 15.00 (15 points)
    Another shop's order must never show up.
    """
    shop_id = make_shop("shopify")
    other = make_shop("woocommerce")
    factories.program(shop_id, PROGRAM)

    def at(n: float) -> None:
        time_machine.move_to(day(n), tick=False)

    at(-30)
    factories.apply(shop_id, factories.order("0", "10.00", customer_id="ivy", email=IVY, paid_at=day(-30)))
    at(0)
    factories.apply(shop_id, factories.order("1", "600.00", customer_id="anna", email=ANNA, paid_at=day(0)))
    factories.apply(other, factories.order("1", "999.00", customer_id="anna", email=ANNA, paid_at=day(0)))
    at(1)
    factories.apply(shop_id, factories.order("2", "40.00", customer_id=None, email=GINA, paid_at=day(1)))
    at(2)
    factories.apply(shop_id, factories.order("3", "100.00", customer_id="hugo", email=HUGO, paid_at=day(2),
                                             tags=("staff",)))
    at(3)
    with session_scope() as s:
        redemption = redeem(s, s.get(Shop, shop_id), find_by_email(s, shop_id, ANNA), "5 € Rabatt",
                            source="customer", now=day(3))
        redemption.status = RedemptionStatus.CREATED
        code = s.get(IssuedCode, redemption.issued_code_id)
        code.status = CodeStatus.CREATED
        reward_code = code.code
    at(4)
    factories.apply(shop_id, factories.order("4", "60.00", customer_id="anna", email=ANNA, paid_at=day(4),
                                             discount_codes=(reward_code.lower(),)))
    at(8)
    factories.apply(shop_id, factories.order("5", "20.00", customer_id="ben", email=BEN, paid_at=day(8)))
    at(9)
    factories.apply(shop_id, factories.order("6", "15.00", customer_id="ivy", email=IVY, paid_at=day(9)))
    at(10)
    return shop_id


def _shop(s, shop_id):  # type: ignore[no-untyped-def]
    return s.get(Shop, shop_id)


def test_weeks_start_on_monday_in_the_shops_time_zone():
    bounds = metrics.week_starts("Europe/Berlin", day(10), 3)

    # Monday 2026-10-26 00:00 in Berlin is 23:00 UTC the day before (winter time)
    assert bounds == [datetime(2026, 10, 25, 23, 0, tzinfo=timezone.utc), datetime(2026, 11, 1, 23, 0, tzinfo=timezone.utc),
                      datetime(2026, 11, 8, 23, 0, tzinfo=timezone.utc), datetime(2026, 11, 15, 23, 0, tzinfo=timezone.utc)]


def test_points_per_week(shop):
    with session_scope() as s:
        weeks = metrics.weekly_points(s, shop, metrics.week_starts("Europe/Berlin", day(10), 3))

    # week of 26 Oct: anna's 600; week of 2 Nov: gina 40 + anna 60, anna redeems 500; week of 9 Nov: ben 20 + ivy 15
    assert [(w["earned"], w["redeemed"], w["expired"]) for w in weeks] == [(600, 0, 0), (100, 500, 0), (35, 0, 0)]


def test_members_and_repeat_purchases_per_week(shop):
    with session_scope() as s:
        weeks = metrics.member_series(s, shop, metrics.week_starts("Europe/Berlin", day(10), 3))

    # ivy joined before; anna in week 1; gina and hugo in week 2; ben in week 3
    assert [w["members"] for w in weeks] == [2, 4, 5]
    # week 2: gina, hugo and anna (back after week 1); week 3: ben (new) and ivy (back after day -30)
    assert [(w["buyers"], w["returning"]) for w in weeks] == [(1, 0), (3, 1), (2, 1)]
    assert [w["repeat_purchase_rate"] for w in weeks] == [Decimal("0"), Decimal("0.3333"), Decimal("0.5")]


def test_analytics_kpis(shop):
    with session_scope() as s:
        k = metrics.analytics_kpis(s, _shop(s, shop), since=day(-1), until=day(10))

    # #1 600, #2 40, #3 100, #4 60, #5 20, #6 15: 835.00; #0 was before the period
    assert (k["paid_orders"], k["revenue"], k["currency"]) == (6, Decimal("835.00"), "EUR")
    # hugo's staff order earned nothing
    assert (k["earning_orders"], k["order_earning_rate"]) == (5, Decimal("0.8333"))
    # 600 + 40 + 60 + 20 + 15 earned, 500 redeemed
    assert (k["points_earned"], k["points_redeemed"], k["redemption_rate"]) == (735, 500, Decimal("0.6803"))
    assert (k["points_expired"], k["expiry_rate"]) == (0, Decimal("0"))
    # anna's reward code was used on #4 (typed in lower case)
    assert (k["reward_codes_created"], k["reward_codes_used"], k["reward_usage_rate"]) == (1, 1, Decimal("1"))
    assert (k["loyalty_orders"], k["loyalty_revenue"], k["loyalty_revenue_share"]) == (1, Decimal("60.00"), Decimal("0.0719"))
    # accounts: anna (2 orders), hugo, ben, ivy; gina checked out as a guest
    assert k["members"] == {"orders": 5, "customers": 4, "revenue": Decimal("795.00"),
                            "average_order_value": Decimal("159.00"), "orders_per_customer": Decimal("1.25"),
                            "revenue_per_customer": Decimal("198.75")}
    assert k["non_members"] == {"orders": 1, "customers": 1, "revenue": Decimal("40.00"),
                                "average_order_value": Decimal("40.00"), "orders_per_customer": Decimal("1.00"),
                                "revenue_per_customer": Decimal("40.00")}
    assert k["redeemers"] == {"orders": 2, "customers": 1, "revenue": Decimal("660.00"),
                              "average_order_value": Decimal("330.00"), "orders_per_customer": Decimal("2.00"),
                              "revenue_per_customer": Decimal("660.00")}
    assert k["non_redeemers"] == {"orders": 4, "customers": 4, "revenue": Decimal("175.00"),
                                  "average_order_value": Decimal("43.75"), "orders_per_customer": Decimal("1.00"),
                                  "revenue_per_customer": Decimal("43.75")}
    assert k["other_currency_orders"] == 0


def test_analytics_kpis_of_an_empty_period_divide_by_nothing(shop):
    with session_scope() as s:
        k = metrics.analytics_kpis(s, _shop(s, shop), since=day(20), until=day(30))

    assert k["paid_orders"] == 0
    assert k["order_earning_rate"] is None and k["reward_usage_rate"] is None and k["loyalty_revenue_share"] is None
    assert k["members"]["average_order_value"] is None


def test_tier_distribution(shop):
    with session_scope() as s:
        s.execute(update(Customer).where(Customer.email.in_([ANNA, BEN])).values(tier="Silber"))
        s.execute(update(Customer).where(Customer.email == IVY).values(tier="Legacy"))
    with session_scope() as s:
        tiers = metrics.tier_distribution(s, shop, ["Bronze", "Silber"])

    # the other shop's anna has no tier and is not counted here
    assert tiers == [("Bronze", 0), ("Silber", 2), ("Legacy", 1), (None, 2)]


def test_a_kept_report_comes_back_as_computed_and_one_row_per_shop_and_period(shop):
    from app.loyalty import analytics
    from app.models import AnalyticsReport
    from sqlalchemy import func, select

    with session_scope() as s:
        computed = analytics.compute(s, s.get(Shop, shop), "30d", day(10))
    # when the report is kept twice (a later one, then one computed earlier arriving late)
    with session_scope() as s:
        analytics.refresh(s, shop, "30d", now=day(10))
    with session_scope() as s:
        analytics.refresh(s, shop, "30d", now=day(9))
    with session_scope() as s:
        kept = analytics.latest(s, shop, "30d")
        rows = s.scalar(select(func.count()).select_from(AnalyticsReport))

    # then one row holds the later report, with its money, rates and times as they were computed
    assert rows == 1 and kept.computed_at == day(10)
    assert kept.report == computed
    assert isinstance(kept.report["kpis"]["loyalty_revenue"], Decimal)
    assert kept.report["points"][0]["week"].tzinfo is not None
    with session_scope() as s, pytest.raises(ValueError, match="unknown period"):
        analytics.refresh(s, shop, "7d")
