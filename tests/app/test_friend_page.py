"""Referral links: WooCommerce members share our friend page (core WooCommerce ignores ?coupon=),
which shows only a code that exists in the shop; the member's page, the admin and the CLI never
show a referral code that does not exist in the shop as a usable one."""

from __future__ import annotations

import html as html_lib
import json
import re

import pytest
from sqlalchemy import select

from app.web.customer_page import make_token
from app.loyalty.customers import find_by_email
from app.db import session_scope
from app.models import CodeStatus, Customer, IssuedCode, Platform, Shop
from app.loyalty.referrals import referral_link
from tests.conftest import WOO_DOMAIN
from tests.factories import apply, order, program

pytestmark = pytest.mark.sqlite_only  # none of these depends on which database

MEMBER = "mitglied@example.test"
PUBLIC = "https://loyalty.example"


def _member_with_code(make_shop, *, language: str = "de", status: CodeStatus = CodeStatus.CREATED,
                      error: str | None = None, platform: str = "woocommerce") -> tuple[int, int, str]:  # type: ignore[no-untyped-def]
    """A shop (brand colour set) whose member's referral code (10 %) has `status`; returns ids and the code."""
    shop_id = make_shop(platform, name="Rösterei Hansen", language=language)
    program(shop_id, {"second_purchase": {"enabled": False}, "earning": {"return_window_days": 0}})
    apply(shop_id, order("1", "40.00", email=MEMBER, customer_id="c1"))
    with session_scope() as s:
        s.get(Shop, shop_id).brand_color = "#8a2be2"
        customer = find_by_email(s, shop_id, MEMBER)
        customer.first_name, customer.last_name = "Annegret", "Quandtmeyer"
        row = s.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop_id, IssuedCode.purpose == "referral")).one()
        row.status, row.error = status, error
        return shop_id, customer.id, row.code


def _text(page: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


@pytest.mark.parametrize("_case, platform, domain, expected", [
    ("woocommerce: our friend page", Platform.WOOCOMMERCE, "https://shop.example", f"{PUBLIC}/f/7/FREUND-ABC"),
    ("shopify: the shop's own discount link", Platform.SHOPIFY, "laden.myshopify.com",
     "https://laden.myshopify.com/discount/FREUND-ABC"),
])
def test_referral_link(_case, platform, domain, expected):
    # given a shop of `platform`
    shop = Shop(id=7, platform=platform, domain=domain)

    # when a member's link is built
    link = referral_link(shop, "FREUND-ABC", PUBLIC + "/")

    # then WooCommerce members share our page (core WooCommerce ignores ?coupon=), Shopify its own link
    assert link == expected
    assert "coupon=" not in link


@pytest.mark.parametrize("_case, language, expected, absent", [
    ("german shop", "de", ["10 % Rabatt auf deine erste Bestellung", "Dein Code", "Code kopieren", "Zum Shop",
                           "Du wurdest zu Rösterei Hansen eingeladen."], ["off your first order"]),
    ("english shop", "en", ["10% off your first order", "Your code", "Copy code", "Go to the shop",
                            "You have been invited to Rösterei Hansen."], ["Rabatt"]),
])
def test_friend_page_shows_the_discount_and_the_code(client, make_shop, _case, language, expected, absent):
    # given a WooCommerce member whose referral code exists in the shop
    shop_id, _customer_id, code = _member_with_code(make_shop, language=language)

    # when a friend opens the member's link
    with client.application.app_context():
        with session_scope() as s:
            link = referral_link(s.get(Shop, shop_id), code, client.application.config["PUBLIC_URL"])
    path = link.split("://", 1)[1].split("/", 1)[1]
    response = client.get("/" + path)

    # then the page shows the discount and the code as text, a copy button and a button to the shop,
    # in the shop's language and colour, and nothing about the member
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    text = _text(page)
    for wanted in expected:
        assert wanted in text
    for unwanted in absent:
        assert unwanted not in text
    assert f'<span class="code" id="code">{code}</span>' in page
    assert f'<html lang="{language}">' in page
    assert f'href="{WOO_DOMAIN}"' in page
    assert "--brand: #8a2be2" in page
    for personal in ("Annegret", "Quandtmeyer", MEMBER, "mitglied"):
        assert personal not in page
    nonce = re.search(r'<script nonce="([^"]+)">', page).group(1)
    assert f"script-src 'nonce-{nonce}'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("_case, status, path", [
    ("pending: not in the shop yet", CodeStatus.PENDING, None),
    ("failed: the shop refused it", CodeStatus.FAILED, None),
    ("unknown code", CodeStatus.CREATED, "FREUND-GIBTSNICHT"),
    ("another shop's id", CodeStatus.CREATED, "other-shop"),
])
def test_friend_page_is_404_for_a_code_that_does_not_exist_in_the_shop(client, make_shop, _case, status, path):
    # given a member's referral code with `status`
    shop_id, _customer_id, code = _member_with_code(make_shop, status=status, error="no API credentials")

    # when a friend opens a link to it (or to a code or shop that does not exist)
    if path == "other-shop":
        url = f"/f/{shop_id + 1000}/{code}"
    else:
        url = f"/f/{shop_id}/{path or code}"
    response = client.get(url)

    # then the page says the link is not valid, and shows no code
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Dieser Empfehlungslink ist ungültig" in _text(page) or "not valid" in _text(page)
    assert code not in page


@pytest.mark.parametrize("_case, status, expected, absent_link", [
    ("created: the link to our friend page", CodeStatus.CREATED, "Ihr Link zum Weitergeben:", False),
    ("pending: being created", CodeStatus.PENDING, "Ihr Einladungslink wird gerade erstellt.", True),
    ("failed: not created", CodeStatus.FAILED, "Ihr Einladungslink konnte im Shop nicht erstellt werden.", True),
])
def test_members_page_shows_the_referral_link_only_once_the_code_exists(app, client, make_shop, _case, status,
                                                                         expected, absent_link):
    # given a WooCommerce member whose referral code has `status`
    shop_id, customer_id, code = _member_with_code(make_shop, status=status, error="no API credentials")
    with app.app_context():
        token = make_token(shop_id, customer_id)

    # when the member opens their own page
    page = client.get(f"/r/{token}").get_data(as_text=True)

    # then it shows the link to our friend page (not ?coupon=), or only the code's state
    assert expected in _text(page)
    assert "Freunde einladen" in page
    assert "coupon=" not in page
    if absent_link:
        assert code not in page
    else:
        assert f'value="{app.config["PUBLIC_URL"]}/f/{shop_id}/{code}"' in page


def test_admin_and_cli_show_a_failed_referral_code_as_failed(app, client, make_shop, runner):
    # given a member whose referral code the shop could not create
    shop_id, customer_id, code = _member_with_code(make_shop, status=CodeStatus.FAILED,
                                                   error="the shop has no API credentials")

    # when support looks at the customer in the CLI
    result = runner.invoke(args=["customers", "show", "--shop", WOO_DOMAIN, "--email", MEMBER, "--json"])

    # then the report gives no usable referral code or link, and each code has its status and error
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["referral_code"] is None and report["referral_link"] is None
    assert report["referral_code_status"] == "failed"
    assert report["referral_code_error"] == "the shop has no API credentials"
    assert {"code": code, "purpose": "referral", "status": "failed",
            "error": "the shop has no API credentials"}.items() <= report["codes"][0].items()
    text = runner.invoke(args=["customers", "show", "--shop", WOO_DOMAIN, "--email", MEMBER])
    assert "referral code - (failed)" in text.output
    assert f"code {code} (referral) does not exist in the shop: failed" in text.output


def test_admin_customer_page_shows_a_referral_code_that_does_not_exist_as_failed(client, session, make_shop):
    # given a member whose referral code the shop could not create, and support signed in
    from tests.app.test_admin import _signed_in

    _shop_id, customer_id, code = _member_with_code(make_shop, status=CodeStatus.FAILED,
                                                    error="the shop has no API credentials")
    _signed_in(client, session)

    # when support opens the customer
    page = client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)

    # then the referral code is shown as failed with the reason, never as a code to hand on
    referral = re.search(r'<dd id="referral-code">(.*?)</dd>', page, re.S).group(1)
    assert "failed" in referral and "the shop has no API credentials" in referral
    assert code not in page


def test_admin_shops_list_flags_a_shop_without_api_credentials(client, session, make_shop):
    # given a WooCommerce shop registered without API credentials (a code of it failed), and a
    # Shopify shop with a token
    woo = make_shop("woocommerce", name="Ohne Schlüssel")
    shopify = make_shop("shopify", name="Mit Schlüssel", credentials={"access_token": "shpat_test"})
    _member_with_code(make_shop, status=CodeStatus.FAILED, error="the shop has no API credentials")
    from tests.app.test_admin import _signed_in

    _signed_in(client, session)

    # when support opens the shops list
    page = client.get("/admin/").get_data(as_text=True)

    # then the shop without credentials is flagged, with how to add them, and its failed code counted
    assert f'id="no-api-{woo}"' in page
    assert "--consumer-key" in page
    assert f'id="failed-codes-{woo}"' in page and "1 code failed" in page
    assert f'id="no-api-{shopify}"' not in page
