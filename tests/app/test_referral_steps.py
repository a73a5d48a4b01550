"""Referral rewards that grow (issue 20, rule 2): steps for the member's Nth rewarded referral,
counted only for referrals that passed every fraud rule and their return window, settled by the
database under races, reversed when the friend's order is refunded or cancelled later.

Domain-level tests on SQLite and PostgreSQL; orders go through `apply_order` as a worker would.
"""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.db import session_scope
from app.models import CodeStatus, Customer, IssuedCode, Referral, ReferralStatus, Shop
from tests.factories import T0, apply, order, program, report

ANNA = "anna@example.test"
STEPS = [{"count": 1, "points": 500}, {"count": 3, "member_discount_percent": "5"}, {"count": 5, "points": 2000}]
PROGRAM = {"second_purchase": {"enabled": False}, "earning": {"return_window_days": 14},
           "referral": {"referrer_points": 100, "monthly_cap": 20, "steps": STEPS}}
WINDOW_OVER = T0 + timedelta(days=20)


def _member_with_code(shop: int, document: dict | None = None) -> str:  # type: ignore[type-arg]
    program(shop, document or PROGRAM)
    apply(shop, order("100", "50.00", email=ANNA, customer_id="anna", fingerprint="addr-anna",
                      paid_at=T0 - timedelta(days=30)))
    with session_scope() as s:
        row = s.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop, IssuedCode.purpose == "referral")).one()
        row.status = CodeStatus.CREATED
        return row.code


def _friend_order(code: str, n: int, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("fingerprint", f"addr-{n}")
    kw.setdefault("paid_at", T0 + timedelta(hours=n))
    return order(str(200 + n), "40.00", email=f"friend{n}@example.test", customer_id=f"friend{n}",
                 discount_codes=(code,), **kw)


def _refunded(code: str, n: int, at):  # type: ignore[no-untyped-def]
    return _friend_order(code, n, refunds=(("r", "40.00"),), updated_at=at)


def _settle_all(at) -> None:  # type: ignore[no-untyped-def]
    from app.loyalty import referrals

    with session_scope() as s:
        ids = referrals.due_referrals(s, at)
    for referral_id in ids:
        with session_scope() as s:
            referrals.settle(s, referral_id, now=at)


def _entries(shop: int, *reasons: str) -> list[tuple]:  # type: ignore[type-arg]
    return [(e["reason"], e["delta"], e["why"]) for e in report(shop, ANNA)["ledger"] if e["reason"] in reasons]


def _places() -> dict[str, tuple]:  # type: ignore[type-arg]
    with session_scope() as s:
        rows = s.execute(select(Customer.email, Referral.status, Referral.place, Referral.reason)
                         .join(Customer, Customer.id == Referral.referred_customer_id)).all()
    return {email.split("@")[0]: (status.value, place, reason) for email, status, place, reason in rows}


def _step_codes() -> list[IssuedCode]:
    with session_scope() as s:
        return list(s.scalars(select(IssuedCode).where(IssuedCode.purpose == "referral_step").order_by(IssuedCode.id)))


def test_steps_reward_the_nth_rewarded_referral_on_top_of_the_flat_reward(make_shop):
    # given steps 1st friend 500 points, 3rd a lasting 5 % member code, 5th 2 000 points, and 100
    # points for every friend
    shop = make_shop("shopify")
    code = _member_with_code(shop)

    # when six friends order with Anna's code, the second from Anna's own address (self-referral)
    for n in range(1, 7):
        apply(shop, _friend_order(code, n, fingerprint="addr-anna" if n == 2 else None))
    _settle_all(WINDOW_OVER)

    # then the fraud never counts: friends 1, 3, 4, 5, 6 hold places 1 to 5
    assert _places() == {
        "friend1": ("rewarded", 1, None), "friend2": ("rejected", None, "self_referral"),
        "friend3": ("rewarded", 2, None), "friend4": ("rewarded", 3, None), "friend5": ("rewarded", 4, None),
        "friend6": ("rewarded", 5, None)}
    # and the ledger says which step each friend's order reached
    [step_code] = _step_codes()
    assert _entries(shop, "referral_step", "referral_step_code") == [
        ("referral_step", 500, "Referral step 1: extra points for your friend no. 1 (order #201)"),
        ("referral_step_code", 0,
         f"Referral step 3: a lasting 5 % member code {step_code.code} for your friend no. 3 (order #204)"),
        ("referral_step", 2000, "Referral step 5: extra points for your friend no. 5 (order #206)"),
    ]
    assert [e[1] for e in _entries(shop, "referral")] == [100] * 5
    assert report(shop, ANNA)["available"] == 50 + 5 * 100 + 500 + 2000
    # and the 5 % code is restricted to Anna, lasting and reusable by her
    assert step_code.code.startswith("DANKE-")
    spec = step_code.spec
    assert (spec["kind"], spec["value"], spec["ends_at"], spec["usage_limit"], spec["once_per_customer"],
            spec["customer_id"], spec["customer_email"]) == ("percentage", "5", None, None, False, "anna", ANNA)
    assert spec["title"] == "Danke für 3 Empfehlungen: 5 % Mitgliederrabatt"  # the shop's language


def test_settling_again_rewards_nothing_twice(make_shop):
    # given three rewarded friends
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    for n in range(1, 4):
        apply(shop, _friend_order(code, n))
    _settle_all(WINDOW_OVER)
    before = report(shop, ANNA)

    # when the sweep runs again and the friends' paid orders are delivered again
    for n in range(1, 4):
        apply(shop, _friend_order(code, n))
    _settle_all(WINDOW_OVER + timedelta(hours=1))
    from jobs.members import settle_referrals

    settle_referrals()

    # then nothing is added: one step reward each, one code
    assert report(shop, ANNA)["ledger"] == before["ledger"]
    assert len(_step_codes()) == 1


def test_a_referral_refunded_after_its_reward_is_reversed_and_its_place_goes_to_the_next_friend(make_shop):
    # given five rewarded friends (places 1-5: 500 points, the 5 % code at 3, 2 000 points at 5)
    shop = make_shop("woocommerce")
    code = _member_with_code(shop)
    for n in range(1, 6):
        apply(shop, _friend_order(code, n))
    _settle_all(WINDOW_OVER)
    [first_code] = _step_codes()

    # when the orders of friends 3 (the code's place) and 1 are refunded after the window
    apply(shop, _refunded(code, 3, WINDOW_OVER + timedelta(days=1)))
    apply(shop, _refunded(code, 1, WINDOW_OVER + timedelta(days=1)))

    # then their rewards are taken back through the ledger, the code is switched off in the shop
    # (marked to end: the code job tells the shop), and places 1 and 3 are free
    assert _entries(shop, "referral_reversed", "referral_step_reversed", "referral_step_code_reversed") == [
        ("referral_reversed", -100, "Referral reward taken back: the friend's order #203 was refunded"),
        ("referral_step_code_reversed", 0,
         f"Referral step 3: member code {first_code.code} switched off, the friend's order #203 was refunded"),
        ("referral_reversed", -100, "Referral reward taken back: the friend's order #201 was refunded"),
        ("referral_step_reversed", -500, "Referral step 1 taken back: the friend's order #201 was refunded"),
    ]
    assert _step_codes()[0].ends_early_at is not None
    places = _places()
    assert (places["friend1"], places["friend3"]) == (("rejected", None, "refunded"), ("rejected", None, "refunded"))
    assert places["friend5"] == ("rewarded", 5, None)  # a later friend keeps its place and its 2 000 points
    assert report(shop, ANNA)["available"] == 50 + 3 * 100 + 2000

    # when two more friends are rewarded
    for n in (6, 7):
        apply(shop, _friend_order(code, n, paid_at=WINDOW_OVER))
    _settle_all(WINDOW_OVER + timedelta(days=15))

    # then they take the freed places 1 and 3, with those steps' gifts again (a new code)
    places = _places()
    assert (places["friend6"], places["friend7"]) == (("rewarded", 1, None), ("rewarded", 3, None))
    old, new = _step_codes()
    assert new.code != old.code and new.ends_early_at is None
    assert report(shop, ANNA)["available"] == 50 + 5 * 100 + 500 + 2000


def test_reversal_is_once_under_duplicate_deliveries_and_a_reversal_is_final(make_shop):
    # given one rewarded friend (500 step points)
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    apply(shop, _friend_order(code, 1))
    _settle_all(WINDOW_OVER)

    # when the cancellation arrives twice, and then an older paid snapshot
    from connectors import types as ct

    cancelled = _friend_order(code, 1, status=ct.OrderStatus.CANCELLED, updated_at=WINDOW_OVER + timedelta(days=1))
    apply(shop, cancelled)
    apply(shop, cancelled)
    apply(shop, _friend_order(code, 1))
    _settle_all(WINDOW_OVER + timedelta(days=2))

    # then the reward was taken back once, and the referral stays reversed
    assert [(r, d) for r, d, _ in _entries(shop, "referral_reversed", "referral_step_reversed")] == [
        ("referral_reversed", -100), ("referral_step_reversed", -500)]
    assert _entries(shop, "referral_reversed")[0][2].endswith("was cancelled")
    assert _places()["friend1"] == ("rejected", None, "refunded")
    assert report(shop, ANNA)["available"] == 50


@pytest.mark.parametrize("_case, events", [
    (" → ".join(p), p) for p in itertools.permutations(["refund", "settle", "paid again"])
])
def test_every_arrival_order_of_refund_and_settlement_ends_with_no_reward(_case, events, make_shop):
    # given a friend's paid order with Anna's code, past its window
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    apply(shop, _friend_order(code, 1))
    actions = {
        "refund": lambda: apply(shop, _refunded(code, 1, WINDOW_OVER + timedelta(days=1))),
        "settle": lambda: _settle_all(WINDOW_OVER),
        "paid again": lambda: apply(shop, _friend_order(code, 1)),
    }

    # when the refund, the settlement and a duplicate of the paid order happen in this order
    for event in events:
        actions[event]()

    # then Anna keeps none of this friend's reward, and the friend holds no place
    assert report(shop, ANNA)["available"] == 50
    assert _places()["friend1"][:2] == ("rejected", None)


def test_points_already_spent_are_not_taken_below_zero(make_shop):
    # given one rewarded friend whose 600 points Anna spent on two rewards
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    apply(shop, _friend_order(code, 1))
    _settle_all(WINDOW_OVER)
    from app.loyalty.redemptions import redeem

    with session_scope() as s:
        anna = s.scalars(select(Customer).where(Customer.email == ANNA)).one()
        redeem(s, s.get(Shop, shop), anna, "5 € Rabatt", source="staff", idempotency_key="k1")

    # when the friend's order is refunded
    apply(shop, _refunded(code, 1, WINDOW_OVER + timedelta(days=1)))

    # then what is left is taken and the rest is the recorded shortfall
    customer = report(shop, ANNA)
    assert customer["available"] == 0
    assert customer["shortfall"] == 600 - (650 - 500)


def test_two_settlements_at_the_same_moment_take_different_places(make_shop):
    # given two friends of Anna, both due
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    for n in (1, 2):
        apply(shop, _friend_order(code, n))
    from app.loyalty import referrals

    with session_scope() as s:
        ids = referrals.due_referrals(s, WINDOW_OVER)
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def settle(referral_id: int) -> None:
        try:
            barrier.wait()
            with session_scope() as s:
                referrals.settle(s, referral_id, now=WINDOW_OVER)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    # when both are settled at the same moment
    threads = [threading.Thread(target=settle, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then one is the 1st and the other the 2nd: one 500-point step, never two
    assert failures == []
    assert sorted(p[1] for p in _places().values()) == [1, 2]
    assert [d for _, d, _ in _entries(shop, "referral_step")] == [500]


def test_the_database_refuses_a_second_referral_in_one_place(make_shop):
    # given two rewarded friends in places 1 and 2
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    for n in (1, 2):
        apply(shop, _friend_order(code, n))
    _settle_all(WINDOW_OVER)

    # when a writer that skipped the lock puts the second into place 1
    # then the unique index refuses it
    with pytest.raises(IntegrityError):
        with session_scope() as s:
            second = s.scalars(select(Referral).where(Referral.place == 2)).one()
            second.place = 1
            s.flush()


def test_progress_counts_rewarded_referrals_and_names_the_next_step(make_shop):
    # given Anna with friends 1-3 rewarded, friend 1 reversed, friend 4 still in its window
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    for n in range(1, 4):
        apply(shop, _friend_order(code, n))
    _settle_all(WINDOW_OVER)
    apply(shop, _refunded(code, 1, WINDOW_OVER + timedelta(days=1)))
    apply(shop, _friend_order(code, 4, paid_at=WINDOW_OVER))
    from app.loyalty import referrals
    from app.program import current_program

    # when her progress is read
    with session_scope() as s:
        anna = s.scalars(select(Customer).where(Customer.email == ANNA)).one()
        _, prog = current_program(s, s.get(Shop, shop))
        progress = referrals.progress(s, anna, prog)

    # then two count, one waits, and the next step is the freed 1st place: one more friend
    assert (progress.rewarded, progress.pending, progress.next_step.count, progress.to_go) == (2, 1, 1, 1)


def test_step_code_is_not_made_for_a_member_the_shop_cannot_restrict_it_to(make_shop):
    # given a Shopify member without a customer id (a guest), whose 3rd friend reaches the code step
    shop = make_shop("shopify")
    program(shop, PROGRAM)
    apply(shop, order("100", "50.00", email=ANNA, customer_id=None, fingerprint="addr-anna",
                      paid_at=T0 - timedelta(days=30)))
    with session_scope() as s:
        row = s.scalars(select(IssuedCode).where(IssuedCode.purpose == "referral")).one()
        row.status, code = CodeStatus.CREATED, row.code
    for n in range(1, 4):
        apply(shop, _friend_order(code, n))

    # when the referrals are settled
    _settle_all(WINDOW_OVER)

    # then no lasting code for everybody is made, and the ledger says why
    assert _step_codes() == []
    [(_, _, why)] = _entries(shop, "referral_step_code")
    assert "none: the shop cannot restrict a code to this member" in why


def test_a_refund_racing_the_settlement_leaves_no_reward(make_shop):
    # given a friend's order with Anna's code, past its window (the 1st step: 500 points)
    shop = make_shop("shopify")
    code = _member_with_code(shop)
    apply(shop, _friend_order(code, 1))
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def run(action) -> None:  # type: ignore[no-untyped-def]
        try:
            barrier.wait()
            action()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    # when the refund of the friend's order and the settlement happen at the same moment
    threads = [threading.Thread(target=run, args=(lambda: _settle_all(WINDOW_OVER),)),
               threading.Thread(target=run, args=(lambda: apply(shop, _refunded(code, 1, WINDOW_OVER)),))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then whichever came first, Anna keeps nothing of it and the friend holds no place
    assert failures == []
    assert report(shop, ANNA)["available"] == 50
    assert _places()["friend1"] == ("rejected", None, "refunded")
