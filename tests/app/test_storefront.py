"""The storefront core (app.loyalty.storefront): what a member sees and does in the shop.

On SQLite and PostgreSQL, with the real worker creating codes through the in-memory shop API
(tests/connectors/fake.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.loyalty import storefront
from app.loyalty.customers import find_by_email
from app.models import Customer, Redemption, Shop, utcnow
from connectors import types as ct
from connectors.errors import PermanentError
from tests.connectors.fake import install_fake_connector
from tests.factories import T0, apply, order, program, report

KUNDIN = "kundin@example.test"
PUBLIC_URL = "https://loyalty.example"
NO_EXTRAS = {"second_purchase": {"enabled": False}, "referral": {"enabled": False}}
REWARDS = [
    {"name": "Gratisversand", "points": 300, "kind": "free_shipping"},
    {"name": "5 € Rabatt", "points": 500, "kind": "fixed_amount", "value": "5"},
    {"name": "50 € Gutschein", "points": 5000, "kind": "fixed_amount", "value": "50"},
    {"name": "Gold-Geschenk", "points": 100, "kind": "fixed_amount", "value": "1", "tiers": ["Gold"]},
]


def _shop(make_shop, document: dict | None = None, **kw) -> int:  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify", name="Kaffee & Kuchen", credentials={"access_token": "shpat_test"}, **kw)
    program(shop_id, document or {**NO_EXTRAS, "earning": {"return_window_days": 0}, "rewards": REWARDS})
    return shop_id


def _read(shop_id: int, fn, *args, **kw):  # type: ignore[no-untyped-def]
    """Call `fn(session, shop, customer KUNDIN, *args)` in a transaction of its own."""
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        customer = storefront.find_member(s, shop, "c1")
        return fn(s, shop, customer, *args, **kw)


def _view(shop_id: int, locale: str | None = None, **kw) -> storefront.MemberView:  # type: ignore[no-untyped-def]
    return _read(shop_id, lambda s, shop, c: storefront.member_view(s, shop, c, locale=locale,
                                                                  public_url=PUBLIC_URL, **kw))


def test_find_member_by_the_platform_id_only_in_its_own_shop(make_shop):
    # given a customer "c1" of one shop, and another shop
    shop_id = _shop(make_shop)
    other = make_shop("shopify", domain="anderer-laden.myshopify.com")
    apply(shop_id, order("1", "10.00"))

    with session_scope() as s:
        # when each shop looks the id up
        mine = storefront.find_member(s, s.get(Shop, shop_id), "c1")
        theirs = storefront.find_member(s, s.get(Shop, other), "c1")
        unknown = storefront.find_member(s, s.get(Shop, shop_id), "c2")
        blank = storefront.find_member(s, s.get(Shop, shop_id), "")

        # then only the customer's own shop finds them
        assert mine is not None and mine.email == KUNDIN
        assert (theirs, unknown, blank) == (None, None, None)


def test_member_sees_balance_pending_and_when_it_matures(make_shop):
    # given 1,250 available points (Gold: x1.5) and an order of 80 € in its 14-day return window
    shop_id = _shop(make_shop, {**NO_EXTRAS, "earning": {"return_window_days": 14}, "rewards": REWARDS})
    paid = utcnow().replace(microsecond=0) - timedelta(days=1)
    apply(shop_id, order("1", "1250.00", paid_at=paid - timedelta(days=30)))
    apply(shop_id, order("2", "80.00", paid_at=paid))

    # when the member's view is read
    view = _view(shop_id)

    # then available, pending and the date the pending points mature are shown
    assert (view.balance.available, view.balance.pending) == (1250, 120)
    assert view.balance.next_available_at == paid + timedelta(days=14)
    assert [(m.points, m.available_at) for m in view.balance.maturing] == [(120, paid + timedelta(days=14))]


def test_member_sees_tier_progress_in_money(make_shop):
    # given 300 € of kept orders (Silber from 250 €, Gold from 750 €)
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "300.00"))

    # when the view is read
    tier = _view(shop_id).tier

    # then it says Silber, and that 450 € more reach Gold
    assert (tier.name, tier.next_name) == ("Silber", "Gold")
    assert tier.value_money == storefront.Money(Decimal("300.00"), "EUR")
    assert tier.missing_money == storefront.Money(Decimal("450.00"), "EUR")
    assert tier.until is not None


def test_member_sees_affordable_rewards_and_what_the_next_one_needs(make_shop):
    # given 600 points (Bronze is reached only from 0 €, so no member-only Gold reward)
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "200.00"))
    apply(shop_id, order("2", "400.00"))

    # when the view is read
    view = _view(shop_id)

    # then the two cheap rewards are affordable, the 50 € one needs 4,400 more, Gold's is hidden
    assert [r.name for r in view.affordable] == ["Gratisversand", "5 € Rabatt"]
    assert view.next_reward is not None and (view.next_reward.name, view.next_reward.missing) == ("50 € Gutschein",
                                                                                                 4400)
    assert "Gold-Geschenk" not in [r.name for r in view.rewards]
    assert view.affordable[1].amount == storefront.Money(Decimal("5"), "EUR")


@pytest.mark.parametrize("_case, locale, text, why", [
    ("german shop", None, "1 Punkt = 1 Cent", "Gesammelt mit Bestellung #1 (600.00 EUR punkteberechtigt)"),
    ("english storefront", "en-GB", "1 point = 1 cent", "Earned for order #1 (600.00 EUR eligible)"),
])
def test_point_value_and_history_speak_the_storefront_language(make_shop, _case, locale, text, why):
    # given a member with one order, in a shop whose 5 € reward costs 500 points
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "600.00"))

    # when the view is read in `locale`
    view = _view(shop_id, locale)

    # then a point's value and each history line are in that language
    assert view.point_value is not None and view.point_value.text == text
    assert view.point_value.money == storefront.Money(Decimal("0.01"), "EUR")
    assert [line.why for line in view.history] == [why]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("_case, rewards, text", [
    ("half a cent", [{"name": "1 €", "points": 200, "kind": "fixed_amount", "value": "1"}], "1 Punkt = 0,5 Cent"),
    ("store credit, two cents", [{"name": "Guthaben 10 €", "points": 500, "kind": "store_credit", "value": "10"}],
     "1 Punkt = 2 Cent"),
    ("francs", [{"name": "5 Fr.", "points": 100, "kind": "fixed_amount", "value": "5"}], "1 Punkt = 0,05 CHF"),
    ("no money reward", [{"name": "Versand", "points": 100, "kind": "free_shipping"}], None),
])
def test_point_value_follows_the_cheapest_money_reward(make_shop, _case, rewards, text):
    # given a shop whose rewards are `rewards`
    shop_id = make_shop("shopify", currency="CHF" if _case == "francs" else "EUR")
    program(shop_id, {**NO_EXTRAS, "rewards": rewards})

    # when a visitor reads the program
    with session_scope() as s:
        view = storefront.program_view(s, s.get(Shop, shop_id), locale="de")

    # then a point's worth is stated from it (or not at all)
    assert (view.point_value.text if view.point_value else None) == text


def test_visitor_sees_what_the_program_offers(make_shop):
    # given a shop with a sign-up bonus, referrals and the default tiers
    shop_id = make_shop("shopify", name="Kaffee & Kuchen")
    program(shop_id, {"earning": {"signup_bonus": 100}, "rewards": REWARDS})

    # when a visitor who is not logged in reads it, in English
    with session_scope() as s:
        view = storefront.program_view(s, s.get(Shop, shop_id), locale="en")

    # then earning, rewards (not the member-only one), tiers and the referral offer are shown
    assert (view.shop_name, view.earn_text, view.signup_bonus) == ("Kaffee & Kuchen", "1 points per €1.00 spent", 100)
    assert [r.name for r in view.rewards] == ["Gratisversand", "5 € Rabatt", "50 € Gutschein"]
    assert [(t.name, t.threshold_money) for t in view.tiers][1] == ("Silber", storefront.Money(Decimal("250"), "EUR"))
    assert (view.referral_friend_discount_percent, view.referral_points) == (Decimal("10"), 500)


def test_cart_points_follow_the_order_rule_with_the_tier_multiplier(make_shop):
    # given a Silber member (x1.25) and a visitor
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "300.00"))

    # when each asks what a 99.99 € cart earns
    member = _read(shop_id, storefront.cart_points, Decimal("99.99"), "EUR")
    with session_scope() as s:
        visitor = storefront.cart_points(s, s.get(Shop, shop_id), None, Decimal("99.99"), "EUR")

    # then the member gets what the same order would earn them, and the visitor 1 per euro
    before = report(shop_id, KUNDIN)["available"]
    apply(shop_id, order("2", "99.99"))
    assert member == report(shop_id, KUNDIN)["available"] - before == 124
    assert visitor == 99


def test_cart_points_leave_tax_out_like_orders_do(make_shop):
    # given a shop whose prices include 19 % VAT (its last order said so) and who earns on net
    from app.models import Order

    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "119.00"))
    with session_scope() as s:
        row = s.scalars(select(Order).where(Order.shop_id == shop_id)).one()
        row.taxes_included, row.merchandise_tax = True, Decimal("19.00")

    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        # when a visitor's 238 € cart is counted, without and with the tax the caller knows
        estimated = storefront.cart_points(s, shop, None, Decimal("238.00"), "EUR")
        told = storefront.cart_points(s, shop, None, Decimal("238.00"), "EUR", tax=Decimal("38.00"))

    # then both earn on the 200 € net
    assert (estimated, told) == (200, 200)


def test_cart_points_refuse_another_currency_and_give_banned_members_nothing(make_shop):
    # given a member who is banned
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "50.00"))
    with session_scope() as s:
        find_by_email(s, shop_id, KUNDIN).banned_at = T0

    # when their cart is counted in euros, and in dollars
    banned = _read(shop_id, storefront.cart_points, Decimal("80.00"), "EUR")
    with pytest.raises(storefront.StorefrontError) as refused:
        _read(shop_id, storefront.cart_points, Decimal("80.00"), "USD")

    # then they earn nothing, and a dollar cart is refused with a reason
    assert banned == 0
    assert refused.value.reason == "currency" and "EUR" in refused.value.message


# A German shop's cart, prices with tax (as in tests/app/test_earning_by_product.py): a novel (7 %
# VAT), a summer shirt (19 %) and a gift card sold as a product; net 20 + 50 + 25 = 95 €.
CART = (
    storefront.CartLine(Decimal("21.40"), product_id="501", vendor="Verlag Nord", tax=Decimal("1.40")),
    storefront.CartLine(Decimal("59.50"), product_id="502", variant_id="9021", vendor="Nordlicht", tax=Decimal("9.50")),
    storefront.CartLine(Decimal("25.00"), product_id="503", tax=Decimal("0")),
)
NO_VOUCHERS = {"name": "Gutscheine", "effect": "exclude", "product_ids": ["503"]}
DOUBLE_NORDLICHT = {"name": "Nordlicht", "vendors": ["nordlicht"], "multiplier": "2"}
NO_BOOKS = {"name": "Buchpreisbindung", "effect": "exclude", "tags": ["Buch"]}
DOUBLE_SUMMER = {"name": "Sommer", "collections": ["Sommer"], "multiplier": "2"}
# What the worker looked up of the products when orders came in (`product_facts`).
FACTS = (ct.ProductFacts("501", True, (), ("buch",)), ct.ProductFacts("502", True, ("sommer",), ()),
         ct.ProductFacts("503", True, (), ("gutschein",)))


@pytest.mark.parametrize(
    "_case, rules, facts, lines, points, estimate",
    [
        ("no product rules: today's answer on the subtotal", (), (), CART, 95, False),
        ("a rule matching no line: the same", ({"name": "x", "vendors": ["Fremd"]},), (), CART, 95, False),
        ("the gift card excluded by its product id: 20 + 50", (NO_VOUCHERS,), (), CART, 70, False),
        ("the vendor's line doubled: 20 + 2 x 50 + 25", (DOUBLE_NORDLICHT,), (), CART, 145, False),
        ("the book excluded by its tag, looked up before: 50 + 25", (NO_BOOKS,), FACTS, CART, 75, False),
        ("the summer collection doubled, looked up before", (DOUBLE_SUMMER, NO_VOUCHERS), FACTS, CART, 120, False),
        ("tags not known of the cart's products: counted without the rule, flagged", (NO_BOOKS,), FACTS[1:], CART,
         95, True),
        ("a rule the cart's own facts decide needs no lookup even when another does", (NO_VOUCHERS, NO_BOOKS),
         FACTS[:1], CART, 50, True),
        ("an old widget sends the subtotal only: today's answer", (NO_VOUCHERS, DOUBLE_NORDLICHT), (), (), 95, False),
    ],
)
def test_cart_points_weigh_the_lines_by_the_product_rules_orders_earn_by(
        make_shop, _case, rules, facts, lines, points, estimate):
    from app.loyalty import products

    # given a program with these product rules, and what was looked up of the products
    shop_id = _shop(make_shop, {**NO_EXTRAS, "earning": {"return_window_days": 0, "product_rules": list(rules)}})
    with session_scope() as s:
        products.store_facts(s, shop_id, facts, T0)

    # when a visitor's cart is counted (in the subtotal-only form: 105.90 € with 10.90 € tax)
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        if lines:
            answer = storefront.cart_estimate(s, shop, None, None, "EUR", lines=lines)
        else:
            answer = storefront.cart_estimate(s, shop, None, Decimal("105.90"), "EUR", tax=Decimal("10.90"))

    # then it earns what an order of these lines earns, and says when that is an estimate
    assert (answer.points, answer.estimate) == (points, estimate)
    assert answer.unknown_products == (("502", "503") if estimate and len(facts) == 1 else ("501",) if estimate
                                       else ())


def test_cart_points_equal_the_award_of_an_order_of_the_same_lines(make_shop):
    # given a program that excludes the gift card and doubles the vendor's line, and a Silber member
    from app.loyalty import decide, products

    rules = [NO_VOUCHERS, DOUBLE_NORDLICHT]
    shop_id = _shop(make_shop, {**NO_EXTRAS, "earning": {"return_window_days": 0, "product_rules": rules},
                                "rewards": REWARDS})
    apply(shop_id, order("1", "300.00"))

    # when the member's cart is counted, with a subtotal that also holds a line the cart left out
    estimate = _read(shop_id, storefront.cart_estimate, Decimal("115.90"), "EUR", tax=Decimal("10.90"), lines=CART)

    # then it is the award `decide` gives an order of these lines (the rest earning as any line)
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        member = storefront.find_member(s, shop, "c1")
        prog = storefront.current_program(s, shop)[1]
        facts = decide.OrderFacts(
            id=1, number="#2", currency="EUR", is_paid=True, paid_at=T0, merchandise=Decimal("115.90"),
            merchandise_tax=Decimal("10.90"), taxes_included=True, gift_card_paid=None, tags=(), status="paid",
            cancelled_at=None, deleted_at=None, refunds=(), timezone=shop.timezone,
            lines=products.order_lines([{"id": str(i), "merchandise": str(line.amount), "tax": str(line.tax),
                                         "product_id": line.product_id, "variant_id": line.variant_id,
                                         "vendor": line.vendor} for i, line in enumerate(CART)]))
        award = decide.award(facts, decide.CustomerFacts(id=member.id, tier=member.tier, banned=False), prog, T0)
    assert member.tier == "Silber"
    assert estimate.points == award.points == 162  # 105 x 1.25 x (20 + 2 x 50 + 0 + 10) / 105, rounded down
    assert not estimate.estimate


def test_cart_lines_take_the_request_shape_and_name_the_bad_field():
    lines = storefront.cart_lines([{"product_id": 501, "variant_id": "0", "amount": "21.40", "tax": "1.40"},
                                   {"product_id": "502", "variant_id": "9021", "vendor": " Nordlicht ", "amount": 5}])

    assert lines == (storefront.CartLine(Decimal("21.40"), "501", None, None, Decimal("1.40")),
                     storefront.CartLine(Decimal("5"), "502", "9021", "Nordlicht", None))
    for bad, field in [({"amount": "-1"}, "lines[0].amount"), ({"amount": "1", "product_id": "x1"},
                                                               "lines[0].product_id"),
                       ({"amount": "1", "tax": "2"}, "lines[0].tax"), ({"amount": "1", "price": "1"}, "price"),
                       ({"amount": 1.5}, "lines[0].amount")]:
        with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
            storefront.cart_lines([bad])
    with pytest.raises(ValueError, match="at most 250"):
        storefront.cart_lines([{"amount": "1"}] * 251)


def test_redeem_takes_the_points_once_and_the_worker_creates_the_code(make_shop, work, monkeypatch):
    # given 600 points and the shop's API
    shop_fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "600.00"))
    key = uuid.uuid4().hex
    rid = _view(shop_id).affordable[1].id

    # when the member redeems "5 € Rabatt" twice with one request key (a double click)
    first = _read(shop_id, storefront.redeem, rid, request_key=key)
    again = _read(shop_id, storefront.redeem, rid, request_key=key)

    # then one redemption took 500 points, the code is being created, not yet shown
    assert (first.reward, first.status, first.code, first.available) == ("5 € Rabatt", "pending", None, 100)
    assert (again.redemption_id, again.repeated, again.available) == (first.redemption_id, True, 100)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Redemption)) == 1
    assert [c.state for c in _view(shop_id).codes] == ["pending"]

    # when the worker runs
    work()

    # then the shop holds the code and the member sees it as usable
    state = _read(shop_id, storefront.redemption_state, first.redemption_id)
    assert state.status == "created" and state.code in shop_fake.codes
    [code] = _view(shop_id).codes
    assert (code.state, code.code, code.reward) == ("usable", state.code, "5 € Rabatt")
    assert report(shop_id, KUNDIN)["available"] == 100


def test_code_the_shop_refused_is_shown_failed_never_usable(make_shop, work, monkeypatch):
    # given a redemption whose code the shop refuses for good
    shop_fake = install_fake_connector(monkeypatch, "shopify")
    shop_fake.fail("create_discount_code", PermanentError("discount invalid"))
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "600.00"))
    result = _read(shop_id, storefront.redeem, "Gratisversand", request_key=uuid.uuid4().hex)

    # when the worker runs
    work()

    # then the code is failed, without its code text, and the points are back with a reason
    view = _view(shop_id)
    assert [(c.state, c.code) for c in view.codes] == [("failed", None)]
    assert _read(shop_id, storefront.redemption_state, result.redemption_id).status == "failed"
    assert view.balance.available == 600
    assert view.history[0].why == "Die Prämie Gratisversand konnte im Shop nicht angelegt werden: Punkte zurückgegeben"


@pytest.mark.parametrize("_case, reward, reason, message", [
    ("too expensive", "50 € Gutschein", "not_enough_points", "Für „50 € Gutschein“ haben Sie nicht genug Punkte."),
    ("other tier", "Gold-Geschenk", "tier", "„Gold-Geschenk“ gibt es nur in den Stufen Gold."),
    ("unknown", "nope", "unknown_reward", "Diese Prämie gibt es nicht mehr."),
])
def test_redeem_refused_says_why_and_takes_nothing(make_shop, _case, reward, reason, message):
    # given 600 points
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "600.00"))

    # when a reward they cannot have is redeemed
    with pytest.raises(storefront.StorefrontError) as refused:
        _read(shop_id, storefront.redeem, reward, request_key=uuid.uuid4().hex)

    # then the reason is given in German and nothing is taken
    assert (refused.value.reason, refused.value.message) == (reason, message)
    assert report(shop_id, KUNDIN)["available"] == 600
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Redemption)) == 0


@pytest.mark.sqlite_only
def test_redeem_refuses_a_malformed_request_key(make_shop):
    # given 600 points
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "600.00"))

    # when the request key is too short to be one per click
    with pytest.raises(storefront.StorefrontError) as refused:
        _read(shop_id, storefront.redeem, "Gratisversand", request_key="1")

    # then nothing is redeemed
    assert refused.value.reason == "bad_request_key"
    assert report(shop_id, KUNDIN)["available"] == 600


def test_referral_link_only_once_the_code_exists(make_shop, work, monkeypatch):
    # given a member of a shop with referrals, whose referral code is being created
    install_fake_connector(monkeypatch, "shopify")
    shop_id = _shop(make_shop, {"second_purchase": {"enabled": False}, "rewards": REWARDS})
    apply(shop_id, order("1", "60.00"))
    pending = _view(shop_id).referral

    # when the sweep hands it to the worker (referral codes are not urgent), which creates it
    from jobs.codes import requeue_pending

    requeue_pending()
    work()
    created = _view(shop_id).referral

    # then the link appears only then (Shopify's /discount/ link)
    assert pending is not None and (pending.status, pending.link) == ("pending", None)
    assert created is not None and created.status == "created"
    assert created.link is not None and created.link.startswith("https://demo-laden.myshopify.com/discount/FREUND-")


def test_as_json_gives_money_as_strings_and_times_with_offsets(make_shop):
    # given a member with points and a pending order
    shop_id = _shop(make_shop, {**NO_EXTRAS, "earning": {"return_window_days": 14}, "rewards": REWARDS})
    paid = utcnow().replace(microsecond=0)
    apply(shop_id, order("1", "600.00", paid_at=paid))

    # when the view is turned into JSON
    data = storefront.as_json(_view(shop_id))
    text = json.dumps(data)

    # then amounts are strings with their currency and times carry their offset
    assert data["balance"]["pending"] == 600
    assert data["balance"]["next_available_at"] == (paid + timedelta(days=14)).isoformat()
    assert data["rewards"][1]["amount"] == {"amount": "5", "currency": "EUR"}
    assert data["point_value"] == {"money": {"amount": "0.01", "currency": "EUR"}, "text": "1 Punkt = 1 Cent",
                                   "source": "reward"}
    assert data["available_value"] == {"amount": "0.00", "currency": "EUR"}  # all 600 still pending
    assert "+00:00" in text


def test_woocommerce_shop_offers_no_store_credit(make_shop):
    # given a WooCommerce shop whose program has a store-credit reward
    shop_id = make_shop("woocommerce")
    program(shop_id, {**NO_EXTRAS, "rewards": [
        {"name": "Guthaben 5 €", "points": 500, "kind": "store_credit", "value": "5"},
        {"name": "5 € Rabatt", "points": 500, "kind": "fixed_amount", "value": "5"},
    ]})

    # when a visitor reads the program
    with session_scope() as s:
        view = storefront.program_view(s, s.get(Shop, shop_id))

    # then only what WooCommerce can give is offered
    assert [r.name for r in view.rewards] == ["5 € Rabatt"]


def test_merged_guest_is_found_through_the_account(make_shop):
    # given a customer row merged into another
    shop_id = _shop(make_shop)
    apply(shop_id, order("1", "60.00"))
    with session_scope() as s:
        account = find_by_email(s, shop_id, KUNDIN)
        old = Customer(shop_id=shop_id, platform_id="c-old", merged_into_id=account.id)
        s.add(old)

    # when the old platform id is looked up
    with session_scope() as s:
        found = storefront.find_member(s, s.get(Shop, shop_id), "c-old")

        # then the account is found
        assert found is not None and found.email == KUNDIN
