"""Code titles are written in the customer's language, else the shop's (app.i18n, app/translations)."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from app.db import session_scope
from app.i18n import translations
from app.models import IssuedCode
from connectors import types as ct
from tests.factories import apply, order, program

PROGRAM = {"referral": {"enabled": True, "friend_discount_percent": "10"},
           "second_purchase": {"enabled": True, "percent": "15"},
           "earning": {"return_window_days": 0},
           "tiers": {"levels": [{"name": "Silber", "threshold": "0", "member_discount_percent": "5",
                                 "free_shipping": True}]}}


def titles(shop: int, platform_customer: str) -> dict[str, str]:
    with session_scope() as s:
        rows = s.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop)).all()
        return {r.purpose: r.spec["title"] for r in rows
                if r.spec.get("customer_id") in (platform_customer, None) or r.purpose == "referral"}


def paid_by(customer_id: str, locale: str | None, order_id: str) -> ct.Order:
    o = order(order_id, "50.00", customer_id=customer_id, email=f"{customer_id}@example.test")
    return replace(o, customer=replace(o.customer, locale=locale))


def test_a_customer_who_speaks_english_gets_english_titles(make_shop):
    # given a German shop with a second-purchase code, referral codes and a tier with perks
    shop = make_shop("shopify")
    program(shop, PROGRAM)

    # when a customer whose locale is English pays their first order
    apply(shop, paid_by("201", "en-GB", "1"))

    # then their own codes are titled in English; the referral code (for a friend) in the shop's German
    assert titles(shop, "201") == {
        "second_purchase": "15 % off your next order",
        "tier_discount": "Silber: 5 % member discount",
        "tier_shipping": "Silber: free shipping",
        "referral": "Willkommen: 10 % auf die erste Bestellung",
    }


def test_a_customer_without_a_known_language_gets_the_shops(make_shop):
    shop = make_shop("shopify")
    program(shop, PROGRAM)

    apply(shop, paid_by("202", None, "2"))

    assert titles(shop, "202") == {
        "second_purchase": "15 % auf Ihre nächste Bestellung",
        "tier_discount": "Silber: 5 % Mitgliederrabatt",
        "tier_shipping": "Silber: Gratisversand",
        "referral": "Willkommen: 10 % auf die erste Bestellung",
    }


def test_a_language_without_a_catalog_gets_the_english_text():
    assert translations("en").gettext("%(tier)s: free shipping") % {"tier": "Gold"} == "Gold: free shipping"
    assert translations("de").gettext("%(tier)s: free shipping") % {"tier": "Gold"} == "Gold: Gratisversand"
