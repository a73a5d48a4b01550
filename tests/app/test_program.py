"""The loyalty program's rules: tiers, multipliers, expiry, redemption, referrals, incentives.

Domain-level tests on SQLite and PostgreSQL; orders go through `apply_order` as a worker would.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.models import (
    CodeStatus,
    Customer,
    IssuedCode,
    OrderTask,
    Redemption,
    Referral,
    ReferralStatus,
    Shop,
    TierChange,
)
from connectors import types as ct
from tests.factories import T0, apply, order, program, report

EMAIL = "kundin@example.test"
NO_EXTRAS = {"second_purchase": {"enabled": False}, "referral": {"enabled": False}}
INSTANT = {"return_window_days": 0}
TWO_TIERS = {"levels": [{"name": "Bronze", "threshold": "0"},
                        {"name": "Silber", "threshold": "250", "multiplier": "1.25"}]}


def _customer(shop_id: int, email: str = EMAIL) -> Customer:
    with session_scope() as s:
        return s.scalars(select(Customer).where(Customer.shop_id == shop_id, Customer.email == email)).one()


def _redeem(shop_id: int, email: str, reward: str, key: str | None = None):  # type: ignore[no-untyped-def]
    from app.loyalty.redemptions import redeem

    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        customer = s.scalars(select(Customer).where(Customer.shop_id == shop_id, Customer.email == email)).one()
        return redeem(s, shop, customer, reward, source="customer", idempotency_key=key).id


@pytest.mark.parametrize(
    "_case, metric, amount, tier",
    [
        ("spend one cent below", "spend", "249.99", "Bronze"),
        ("spend exactly at", "spend", "250.00", "Silber"),
        ("points one below", "points", "249.99", "Bronze"),  # 249 points
        ("points exactly at", "points", "250.00", "Silber"),
    ],
)
def test_tier_boundaries(_case, metric, amount, tier, make_shop):
    # given tiers Bronze at 0 and Silber at 250 (spend or points)
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT, "tiers": {**TWO_TIERS, "metric": metric}})

    # when the customer's paid order brings them to `amount`
    apply(shop, order("1", amount))

    # then the tier is reached exactly at the threshold and not one cent below
    assert report(shop, EMAIL)["tier"] == tier


def test_a_first_order_already_partly_refunded_counts_net_toward_the_tier(make_shop):
    # given tiers Bronze at 0 and Silber at 250 (spend)
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT, "tiers": TWO_TIERS})

    # when the new customer's first delivery is an order of 300.00 with 100.00 already refunded
    apply(shop, order("1", "300.00", refunds=(("r1", "100.00"),), updated_at=T0 + timedelta(days=2)))

    # then their spend is 200.00: Bronze, not Silber
    assert report(shop, EMAIL)["tier"] == "Bronze"


@pytest.mark.parametrize(
    "_case, metric, window, kw",
    [
        ("paid", "spend", "lifetime", {}),
        ("partly refunded", "spend", "lifetime", {"refunds": (("r1", "120.00"),)}),
        ("refunded beyond merchandise", "spend", "lifetime", {"refunds": (("r1", "200.00"), ("r2", "200.00"))}),
        ("cancelled", "spend", "lifetime", {"status": ct.OrderStatus.CANCELLED}),
        ("paid before the rolling window", "spend", "rolling_12_months", {"paid_at": T0 - timedelta(days=400)}),
        ("paid inside the rolling window", "spend", "rolling_12_months", {"paid_at": T0 - timedelta(days=30)}),
        # Points: what the order's earn entry brought (refunds come after the tier is evaluated).
        ("points, paid", "points", "lifetime", {}),
        ("points, paid before the rolling window", "points", "rolling_12_months",
         {"paid_at": T0 - timedelta(days=400)}),
    ],
)
def test_a_new_customers_metric_read_from_their_order_matches_the_database(_case, metric, window, kw, make_shop,
                                                                           time_machine):
    # given a program and a customer created by this transaction for their first order
    from app.loyalty import tiers
    from app.loyalty.orders import apply_order
    from app.loyalty.points import order_facts
    from app.models import LedgerEntry
    from app.program import current_program

    time_machine.move_to(T0 + timedelta(days=5), tick=False)
    shop_id = make_shop("shopify")
    program(shop_id, {**NO_EXTRAS, "earning": INSTANT, "tiers": {**TWO_TIERS, "metric": metric, "window": window}})
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        kw.setdefault("updated_at", T0 + timedelta(days=2))
        row = apply_order(s, shop, order("1", "300.00", **kw))
        customer = s.get(Customer, row.customer_id)
        _, prog = current_program(s, shop)
        now = T0 + timedelta(days=5)
        earned = s.scalar(select(func.coalesce(func.sum(LedgerEntry.delta), 0))
                          .where(LedgerEntry.order_id == row.id, LedgerEntry.reason == "earn"))

        # when the metric is read from the order (as the first-payment steps do), and from the database
        from_order = tiers.first_order_metric(prog, order_facts(row), earned, now)
        from_database = tiers.metric_value(s, prog, customer, now)

    # then both agree
    assert from_order == from_database


def test_upgrade_applies_at_once_and_multiplies_later_orders(make_shop):
    # given two tiers, Silber earning x1.25
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT, "tiers": TWO_TIERS})

    # when a first order reaches Silber, and a second order follows
    apply(shop, order("1", "300.00"))
    apply(shop, order("2", "100.00", paid_at=T0 + timedelta(days=1)))

    # then the first order earned x1 (Bronze when paid) and the second x1.25
    ledger = report(shop, EMAIL)["ledger"]
    assert [(e["reason"], e["delta"]) for e in ledger] == [("earn", 300), ("earn", 125)]
    assert report(shop, EMAIL)["tier"] == "Silber"


def test_downgrade_only_at_the_end_of_the_period(make_shop, time_machine):
    # given a customer who reached Silber on 2026-11-01 (12-month period)
    from jobs.members import review_tiers

    time_machine.move_to(T0, tick=False)
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT, "tiers": TWO_TIERS})
    apply(shop, order("1", "300.00"))
    assert _customer(shop).tier == "Silber"

    # when the order is fully refunded mid-period
    apply(shop, order("1", "300.00", refunds=(("r1", "300.00"),), updated_at=T0 + timedelta(days=2)))
    time_machine.move_to(T0 + timedelta(days=300), tick=False)
    review_tiers()

    # then the customer keeps Silber until the period ends ...
    assert _customer(shop).tier == "Silber"

    # ... and is downgraded by the review after it
    time_machine.move_to("2027-11-01T10:00:01+00:00", tick=False)
    assert review_tiers() == 1
    assert _customer(shop).tier == "Bronze"
    with session_scope() as s:
        changes = [(c.from_tier, c.to_tier, c.reason) for c in s.scalars(select(TierChange).order_by(TierChange.id))]
    assert changes == [(None, "Silber", "upgrade"), ("Silber", "Bronze", "downgrade")]


def test_multiplier_is_kept_on_the_award_and_reversed_from_it(make_shop):
    # given a Silber customer (x1.25) whose order of 100.00 earned 125 points
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT, "tiers": TWO_TIERS})
    apply(shop, order("1", "300.00"))
    apply(shop, order("2", "100.00", paid_at=T0 + timedelta(days=1)))

    # when the program later doubles the multiplier and half of order 2 is refunded
    program(shop, {**NO_EXTRAS, "earning": INSTANT, "tiers": {
        "levels": [{"name": "Bronze", "threshold": "0"}, {"name": "Silber", "threshold": "250", "multiplier": "2"}]}})
    apply(shop, order("2", "100.00", paid_at=T0 + timedelta(days=1), refunds=(("r2", "50.00"),),
                      updated_at=T0 + timedelta(days=3)))

    # then the reversal is half of the original 125 (rounded down), not of a x2 award
    ledger = report(shop, EMAIL)["ledger"]
    assert [(e["reason"], e["delta"]) for e in ledger] == [("earn", 300), ("earn", 125), ("refund", -62)]
    lots = report(shop, EMAIL)["lots"]
    assert lots[1]["rule"]["multiplier"] == "1.25"


def test_program_change_does_not_alter_past_entries(make_shop):
    # given an order earned under version 1 (1 point per euro)
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT, "tiers": {"levels": []}})
    apply(shop, order("1", "100.00"))

    # when version 2 doubles the rate and a second order comes in
    program(shop, {**NO_EXTRAS, "earning": {**INSTANT, "points_per_unit": "2"}, "tiers": {"levels": []}})
    apply(shop, order("2", "100.00", paid_at=T0 + timedelta(days=1)))

    # then the first entry and lot are unchanged and name version 1
    customer = report(shop, EMAIL)
    assert [e["delta"] for e in customer["ledger"]] == [100, 200]
    assert [lot["rule"]["program_version"] for lot in customer["lots"]] == [1, 2]


def test_redemption_spends_oldest_lot_first_and_expiry_takes_oldest_first(make_shop, time_machine):
    # given points that expire after 1 month: 100 earned on 11-01 and 50 on 11-21
    from jobs.points import expire_points

    time_machine.move_to(T0, tick=False)
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT, "tiers": {"levels": []}, "expiry": {"months": 1},
                   "rewards": [{"name": "Achtzig", "points": 80, "kind": "fixed_amount", "value": "8"}]})
    apply(shop, order("1", "100.00"))
    time_machine.move_to(T0 + timedelta(days=20), tick=False)
    apply(shop, order("2", "50.00", paid_at=T0 + timedelta(days=20)))

    # when 80 points are redeemed, and the first lot's expiry date passes
    time_machine.move_to(T0 + timedelta(days=21), tick=False)
    _redeem(shop, EMAIL, "Achtzig")
    time_machine.move_to("2026-12-01T10:00:01+00:00", tick=False)
    assert expire_points() == 1

    # then the redemption came from the oldest lot, and only its rest (20) expired
    customer = report(shop, EMAIL)
    assert [(lot["points"], lot["remaining"], lot["state"]) for lot in customer["lots"]] == [
        (100, 0, "expired"), (50, 50, "available")]
    assert [(e["reason"], e["delta"]) for e in customer["ledger"]] == [
        ("earn", 100), ("earn", 50), ("redeem", -80), ("expired", -20)]
    assert customer["available"] == 50


def test_double_click_redeems_once(make_shop):
    # given 600 available points and the default 500-point reward
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT})
    apply(shop, order("1", "600.00"))

    # when the same form (one idempotency key) is submitted twice, concurrently
    ids: list[int] = []
    threads = [threading.Thread(target=lambda: ids.append(_redeem(shop, EMAIL, "5 € Rabatt", key="click-1")))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then one redemption, 500 points once
    assert len(set(ids)) == 1
    assert report(shop, EMAIL)["available"] == 100
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Redemption)) == 1


def test_redemption_racing_a_refund_never_goes_negative(make_shop):
    # given 600 available points from one order
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT})
    apply(shop, order("1", "600.00"))

    # when a 500-point redemption and a full refund of the order race
    errors: list[BaseException] = []

    def redeem() -> None:
        from app.loyalty.redemptions import RedemptionError

        try:
            _redeem(shop, EMAIL, "5 € Rabatt")
        except RedemptionError as exc:
            errors.append(exc)

    refund = threading.Thread(target=lambda: apply(
        shop, order("1", "600.00", refunds=(("r", "600.00"),), updated_at=T0 + timedelta(days=1))))
    spend = threading.Thread(target=redeem)
    for t in (refund, spend):
        t.start()
    for t in (refund, spend):
        t.join()

    # then the balance is 0, and either the redemption was refused or its points are the shortfall
    customer = report(shop, EMAIL)
    assert customer["available"] == customer["pending"] == 0
    with session_scope() as s:
        redeemed = s.scalar(select(func.count()).select_from(Redemption))
    assert (redeemed, customer["shortfall"], len(errors)) in {(1, 500, 0), (0, 0, 1)}


def test_banned_customer_earns_redeems_and_gets_nothing(make_shop):
    # given a banned customer
    from app.loyalty.customers import upsert_customer
    from app.loyalty.redemptions import RedemptionError
    from connectors.types import Customer as PlatformCustomer

    shop = make_shop("shopify")
    program(shop, {"earning": INSTANT})
    with session_scope() as s:
        customer = upsert_customer(s, s.get(Shop, shop), PlatformCustomer(id="c1", email=EMAIL))
        customer.banned_at = T0

    # when they pay an order and try to redeem
    apply(shop, order("1", "600.00", paid_at=T0 + timedelta(days=1)))
    with pytest.raises(RedemptionError, match="banned"):
        _redeem(shop, EMAIL, "5 € Rabatt")

    # then no points, no codes, no referral code
    customer = report(shop, EMAIL)
    assert (customer["available"], customer["pending"], customer["ledger"]) == (0, 0, [])
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(IssuedCode)) == 0
    assert customer["referral_code"] is None


def test_second_purchase_code_once_per_customer(make_shop, post_webhook, work):
    # given a Shopify shop with the default program (15 % for 7 days after a first order)
    from tests.conftest import fixture_bytes

    make_shop("shopify")
    body = fixture_bytes("shopify", "orders_paid.json")

    # when the first order arrives three times under different event ids and topics
    for n, topic in enumerate(["orders/paid", "orders/updated", "orders/paid"]):
        assert post_webhook("shopify", topic, body, event_id=f"dup-{n}").status_code == 200
    with session_scope() as s:
        from app.models import WebhookDelivery

        ids = list(s.scalars(select(WebhookDelivery.id)))
    from jobs.deliveries import process_deliveries

    process_deliveries(ids)

    # then one second-purchase code exists for the customer, 15 % for 7 days
    with session_scope() as s:
        rows = list(s.scalars(select(IssuedCode).where(IssuedCode.purpose == "second_purchase")))
    assert len(rows) == 1
    assert rows[0].spec["value"] == "15"
    assert rows[0].expires_at - rows[0].created_at == timedelta(days=7)


def test_gift_with_purchase_by_amount_and_weight_once(make_shop):
    # given gifts from 100.00 and from 1.2 kg
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "gifts": [{"name": "Tasche", "min_amount": "100", "tag": "gift-bag"},
                                           {"name": "Probe", "min_grams": 1200, "tag": "sample"}]})

    # when orders arrive (one twice) that qualify by amount, by weight, and not at all
    apply(shop, order("1", "100.00"))
    apply(shop, order("1", "100.00"))
    apply(shop, order("2", "20.00", grams=1200, paid_at=T0 + timedelta(days=1)))
    apply(shop, order("3", "20.00", grams=1199, paid_at=T0 + timedelta(days=2)))

    # then exactly the qualifying orders have one task each
    with session_scope() as s:
        tasks = sorted((t.key, t.payload["tag"]) for t in s.scalars(select(OrderTask)))
    assert tasks == [("Probe", "sample"), ("Tasche", "gift-bag")]


# ---- referrals ---------------------------------------------------------------------------


REFERRAL = {"second_purchase": {"enabled": False}, "earning": {"return_window_days": 14},
            "referral": {"referrer_points": 500, "monthly_cap": 5}}


def _member_with_code(shop: int, **program_extra) -> str:  # type: ignore[no-untyped-def]
    program(shop, {**REFERRAL, **program_extra})
    apply(shop, order("100", "50.00", email="anna@example.test", customer_id="anna", fingerprint="addr-anna"))
    # The report shows the code only once the shop has it; the shop confirms it, as the code job would.
    assert report(shop, "anna@example.test")["referral_code_status"] == "pending"
    with session_scope() as s:
        row = s.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop, IssuedCode.purpose == "referral")).one()
        row.status = CodeStatus.CREATED
    code = report(shop, "anna@example.test")["referral_code"]
    assert code and code.startswith("FREUND-")
    return code


def _referral() -> Referral:
    with session_scope() as s:
        return s.scalars(select(Referral)).one()


def test_referral_rewards_the_member_after_the_window(make_shop, time_machine):
    # given Anna's referral code and a new friend's first order with it
    from jobs.members import settle_referrals

    time_machine.move_to(T0, tick=False)
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    apply(shop, order("200", "40.00", email="ben@example.test", customer_id="ben", discount_codes=(code.lower(),),
                      fingerprint="addr-ben"))
    assert _referral().status == ReferralStatus.PENDING

    # when the return window passes without a refund
    time_machine.move_to(T0 + timedelta(days=13), tick=False)
    settle_referrals()
    assert _referral().status == ReferralStatus.PENDING
    time_machine.move_to(T0 + timedelta(days=14, seconds=1), tick=False)
    settle_referrals()

    # then Anna earns 500 points, once
    assert _referral().status == ReferralStatus.REWARDED
    settle_referrals()
    ledger = report(shop, "anna@example.test")["ledger"]
    assert [(e["reason"], e["delta"]) for e in ledger if e["reason"] == "referral"] == [("referral", 500)]


@pytest.mark.parametrize(
    "_case, friend, reason",
    [
        ("same customer", {"email": "anna@example.test", "customer_id": "anna", "fingerprint": "x"}, "self_referral"),
        ("same e-mail, other account", {"email": "anna@example.test", "customer_id": "anna-2"}, "self_referral"),
        ("same shipping address", {"email": "ben@example.test", "customer_id": "ben", "fingerprint": "addr-anna"},
         "self_referral"),
    ],
)
def test_referral_fraud_self(_case, friend, reason, make_shop):
    # given Anna's referral code
    shop = make_shop("shopify")
    code = _member_with_code(shop)

    # when an order that is really Anna's uses it
    apply(shop, order("200", "40.00", discount_codes=(code,), paid_at=T0 + timedelta(days=1), **friend))

    # then the referral is rejected for self-referral
    assert (_referral().status, _referral().reason) == (ReferralStatus.REJECTED, reason)


def test_referral_friend_must_be_new(make_shop):
    # given Anna's code and Ben, who already bought before
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    apply(shop, order("199", "10.00", email="ben@example.test", customer_id="ben", paid_at=T0 - timedelta(days=30)))

    # when Ben uses Anna's code
    apply(shop, order("200", "40.00", email="ben@example.test", customer_id="ben", discount_codes=(code,),
                      paid_at=T0 + timedelta(days=1)))

    # then no reward: not a new customer
    assert (_referral().status, _referral().reason) == (ReferralStatus.REJECTED, "not_new_customer")


def test_referral_monthly_cap(make_shop):
    # given a cap of 1 referral per month
    shop = make_shop("shopify")
    code = _member_with_code(shop, referral={"referrer_points": 500, "monthly_cap": 1})

    # when two friends use the code in the same month
    for n, friend in enumerate(["ben", "carla"]):
        apply(shop, order(f"20{n}", "40.00", email=f"{friend}@example.test", customer_id=friend,
                          discount_codes=(code,), paid_at=T0 + timedelta(days=1)))

    # then the second is over the cap
    with session_scope() as s:
        rows = [(r.status, r.reason) for r in s.scalars(select(Referral).order_by(Referral.id))]
    assert rows == [(ReferralStatus.PENDING, None), (ReferralStatus.REJECTED, "monthly_cap")]


def test_referral_reversed_when_the_friends_order_is_refunded_in_the_window(make_shop, time_machine):
    # given a pending referral
    from jobs.members import settle_referrals

    time_machine.move_to(T0, tick=False)
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    apply(shop, order("200", "40.00", email="ben@example.test", customer_id="ben", discount_codes=(code,)))

    # when the friend's order is refunded inside the window, and the window then ends
    apply(shop, order("200", "40.00", email="ben@example.test", customer_id="ben", discount_codes=(code,),
                      refunds=(("r", "40.00"),), updated_at=T0 + timedelta(days=3)))
    time_machine.move_to(T0 + timedelta(days=15), tick=False)
    settle_referrals()

    # then the member gets nothing
    assert (_referral().status, _referral().reason) == (ReferralStatus.REJECTED, "refunded")
    assert [e for e in report(shop, "anna@example.test")["ledger"] if e["reason"] == "referral"] == []


def test_tier_perks_become_member_codes_once(make_shop):
    # given Gold with a 5 % member discount and free shipping
    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": INSTANT, "tiers": {"levels": [
        {"name": "Bronze", "threshold": "0"},
        {"name": "Gold", "threshold": "500", "member_discount_percent": "5", "free_shipping": True}]}})

    # when the customer reaches Gold, and orders again
    apply(shop, order("1", "600.00", customer_id="207119551"))
    apply(shop, order("2", "10.00", customer_id="207119551", paid_at=T0 + timedelta(days=1)))

    # then one lasting 5 % code and one free-shipping code exist for that customer only, with no
    # use limits, until the tier period ends (issue 14)
    with session_scope() as s:
        rows = sorted((c.purpose, c.spec["kind"], c.spec["value"], c.spec["customer_id"], c.spec["usage_limit"],
                       c.spec["once_per_customer"], c.expires_at) for c in s.scalars(select(IssuedCode)))
    period_end = _customer(shop).tier_period_ends_at
    assert period_end is not None
    assert rows == [("tier_discount", "percentage", "5", "207119551", None, False, period_end),
                    ("tier_shipping", "free_shipping", "0", "207119551", None, False, period_end)]


def test_birthday_bonus_once_a_year_where_a_birthday_is_known(make_shop):
    # given a 100-point birthday bonus and a customer whose birthday the shop knows
    from datetime import date

    from jobs.points import award_birthday_bonuses

    shop = make_shop("shopify")
    program(shop, {**NO_EXTRAS, "earning": {**INSTANT, "birthday_bonus": 100}})
    apply(shop, order("1", "10.00"))
    with session_scope() as s:
        s.scalars(select(Customer)).one().birthday = date(1990, 11, 24)

    # when the job runs the day before, on the day (twice), and on the day next year
    assert award_birthday_bonuses("2026-11-23") == 0
    assert award_birthday_bonuses("2026-11-24") == 1
    assert award_birthday_bonuses("2026-11-24") == 0
    assert award_birthday_bonuses("2027-11-24") == 1

    # then two bonuses in two years
    ledger = report(shop, EMAIL)["ledger"]
    assert [(e["reason"], e["delta"]) for e in ledger if e["reason"] == "birthday_bonus"] == [
        ("birthday_bonus", 100), ("birthday_bonus", 100)]
