"""The customer's own page behind a signed link (/r/<token>), on SQLite and PostgreSQL."""

from __future__ import annotations

import html as html_lib
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import time_machine
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select

from app.web.customer_page import TRANSLATIONS, customer_link, make_token
from app.loyalty.customers import find_by_email
from app.db import session_scope
from app.models import IssuedCode, Redemption, utcnow
from tests.factories import apply, order, program, report

KUNDIN = "kundin@example.test"
OTHER = "andere@example.test"
NO_EXTRAS = {"second_purchase": {"enabled": False}, "referral": {"enabled": False}}
REWARDS = [
    {"name": "Gratisversand", "points": 300, "kind": "free_shipping"},
    {"name": "5 € Rabatt", "points": 500, "kind": "fixed_amount", "value": "5"},
    {"name": "50 € Gutschein", "points": 5000, "kind": "fixed_amount", "value": "50"},
]
SECRET = "test-secret-key"  # tests/conftest.py sets SECRET_KEY


def _shop_with_points(make_shop, amount: str, language: str | None = None) -> int:  # type: ignore[no-untyped-def]
    """A shop whose customer KUNDIN has `amount` points available (1 point per euro, no wait)."""
    shop_id = make_shop("shopify", name="Kaffee & Kuchen", **({"language": language} if language else {}))
    program(shop_id, {**NO_EXTRAS, "earning": {"return_window_days": 0}, "rewards": REWARDS})
    apply(shop_id, order("1", amount))
    return shop_id


def _customer_id(shop_id: int, email: str = KUNDIN) -> int:
    with session_scope() as s:
        customer = find_by_email(s, shop_id, email)
        assert customer is not None
        return customer.id


def _token(app, shop_id: int, customer_id: int) -> str:  # type: ignore[no-untyped-def]
    with app.app_context():
        return make_token(shop_id, customer_id)


def _reward_form(page: str, reward: str) -> dict[str, str]:
    """Return the hidden fields of the redeem form for `reward` on the page."""
    for body in re.findall(r"<form\b[^>]*>(.*?)</form>", page, re.S):
        fields = {k: html_lib.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', body)}
        if fields.get("reward") == reward:
            return fields
    raise AssertionError(f"no redeem form for {reward!r}")


def _csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


def _with_signature_of(signed: str, other: str) -> str:
    """Return `other`'s payload and timestamp with `signed`'s signature."""
    return other[: other.rindex(".")] + signed[signed.rindex(".") :]


def _redemptions(shop_id: int) -> list[tuple[int, str, str]]:
    with session_scope() as s:
        return [
            (r.customer_id, r.reward_name, r.source)
            for r in s.scalars(select(Redemption).where(Redemption.shop_id == shop_id).order_by(Redemption.id))
        ]


def _text(page: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", page))


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, language, expected, absent",
    [
        (
            "German shop",
            None,
            ['lang="de"', "Ihre Punkte", "Verfügbar", '<dd id="available">1.250</dd>', "Stufe", "Gold",
             "Prämien, die Sie jetzt einlösen können", "Einlösen", "300 Punkte", "Gratisversand", "5 € Rabatt",
             "Sie haben noch keine Prämie eingelöst."],
            ["Your points", "Redeem"],
        ),
        (
            "English shop",
            "en",
            ['lang="en"', "Your points", "Available", '<dd id="available">1,250</dd>', "Tier", "Gold",
             "Rewards you can redeem now", "Redeem", "300 points", "Gratisversand", "5 € Rabatt",
             "No rewards redeemed yet."],
            ["Ihre Punkte", "Einlösen"],
        ),
    ],
)
def test_page_shows_balance_and_affordable_rewards_in_the_shop_language(app, client, make_shop, _case, language,
                                                                        expected, absent):
    # given a customer with 1,250 available points in a shop speaking `language` (German by default)
    shop_id = _shop_with_points(make_shop, "1250.00", language)
    token = _token(app, shop_id, _customer_id(shop_id))

    # when the customer opens their link
    response = client.get(f"/r/{token}")

    # then the page names the shop and shows balance, tier and the rewards they can afford now
    assert response.status_code == 200
    page = _text(response.get_data(as_text=True))
    assert "Kaffee & Kuchen" in page
    for text in expected:
        assert text in page
    for text in absent:
        assert text not in page
    assert "50 € Gutschein" not in page  # 5,000 points: not affordable yet
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_redeem_on_double_submit_redeems_once(app, client, make_shop, redis_url):
    # given a customer with 1,200 points (enough for two) on their page
    shop_id = _shop_with_points(make_shop, "1200.00")
    customer_id = _customer_id(shop_id)
    token = _token(app, shop_id, customer_id)
    form = _reward_form(client.get(f"/r/{token}").get_data(as_text=True), "5 € Rabatt")

    # when the same redeem form is submitted twice (a double click)
    first = client.post(f"/r/{token}/redeem", data=form)
    second = client.post(f"/r/{token}/redeem", data=form)

    # then both go back to the page, one redemption took 500 points and its code is being created
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"] == f"/r/{token}"
    assert _redemptions(shop_id) == [(customer_id, "5 € Rabatt", "customer")]
    assert report(shop_id, KUNDIN)["available"] == 700
    with session_scope() as s:
        codes = s.scalars(select(IssuedCode).where(IssuedCode.customer_id == customer_id)).all()
        assert [(c.purpose, c.status.value) for c in codes] == [("reward", "pending")]
    page = _text(client.get(f"/r/{token}").get_data(as_text=True))
    assert "Sie haben „5 € Rabatt“ eingelöst." in page
    assert "Ihr Code wird gerade erstellt." in page
    assert '<dd id="available">700</dd>' in page


@pytest.mark.sqlite_only
def test_redeem_without_csrf_token_is_rejected(app, client, make_shop):
    # given a customer's page
    shop_id = _shop_with_points(make_shop, "600.00")
    token = _token(app, shop_id, _customer_id(shop_id))
    form = _reward_form(client.get(f"/r/{token}").get_data(as_text=True), "5 € Rabatt")
    del form["csrf_token"]

    # when the form is posted without its CSRF token (as another site's form would be)
    response = client.post(f"/r/{token}/redeem", data=form)

    # then it is refused in the shop's language and nothing is redeemed
    assert response.status_code == 400
    assert "Das Formular ist abgelaufen." in _text(response.get_data(as_text=True))
    assert _redemptions(shop_id) == []
    assert report(shop_id, KUNDIN)["available"] == 600


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, days, status",
    [
        ("29 days old", 29, 200),
        ("31 days old", 31, 404),
    ],
)
def test_link_is_valid_for_30_days(app, client, make_shop, _case, days, status):
    # given an English shop's customer whose page was opened once (CSRF token in the session)
    shop_id = _shop_with_points(make_shop, "600.00", "en")
    token = _token(app, shop_id, _customer_id(shop_id))
    form = _reward_form(client.get(f"/r/{token}").get_data(as_text=True), "5 € Rabatt")

    # when the link is used `days` later, to look and to redeem
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(days=days), tick=False):
        page = client.get(f"/r/{token}")
        posted = client.post(f"/r/{token}/redeem", data=form)

    # then it works within 30 days; after that it is refused, in the shop's language
    assert page.status_code == status
    if status == 404:
        assert "This link has expired." in _text(page.get_data(as_text=True))
        assert posted.status_code == 404
        assert _redemptions(shop_id) == []
    else:
        assert posted.status_code == 302
        assert len(_redemptions(shop_id)) == 1


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, forge",
    [
        ("signature changed", lambda token, ids: token[:-2] + ("AA" if not token.endswith("AA") else "BB")),
        ("payload swapped", lambda token, ids: _with_signature_of(
            token, URLSafeTimedSerializer(SECRET, salt="customer-page").dumps({"shop": ids[0], "customer": ids[1] + 1}))),
        ("another secret", lambda token, ids: URLSafeTimedSerializer("guessed", salt="customer-page").dumps(
            {"shop": ids[0], "customer": ids[1]})),
        ("another purpose", lambda token, ids: URLSafeTimedSerializer(SECRET, salt="unsubscribe").dumps(
            {"shop": ids[0], "customer": ids[1]})),
        ("not a token", lambda token, ids: "hello"),
    ],
)
def test_tampered_link_is_refused(app, client, make_shop, _case, forge):
    # given an English shop's customer and a link that we did not sign as it is
    shop_id = _shop_with_points(make_shop, "600.00", "en")
    customer_id = _customer_id(shop_id)
    good = _token(app, shop_id, customer_id)
    csrf = _csrf_token(client.get(f"/r/{good}").get_data(as_text=True))
    bad = forge(good, (shop_id, customer_id))
    assert bad != good

    # when someone opens it and posts a redemption with it
    page = client.get(f"/r/{bad}")
    posted = client.post(f"/r/{bad}/redeem", data={"csrf_token": csrf, "reward": "Gratisversand",
                                                   "key": uuid.uuid4().hex})

    # then both get the friendly not-found page in German (the shop is not trusted) and nothing happens
    assert page.status_code == posted.status_code == 404
    text = _text(page.get_data(as_text=True))
    assert "Dieser Link ist ungültig." in text
    assert "Kaffee & Kuchen" not in text
    assert _redemptions(shop_id) == []


@pytest.mark.sqlite_only
def test_link_of_one_customer_cannot_act_on_another(app, client, make_shop):
    # given two customers of one shop with 600 points each, and a second shop
    shop_id = _shop_with_points(make_shop, "600.00")
    apply(shop_id, order("2", "600.00", email=OTHER, customer_id="c2"))
    a, b = _customer_id(shop_id), _customer_id(shop_id, OTHER)
    other_shop = make_shop("woocommerce")
    token_a, token_b = _token(app, shop_id, a), _token(app, shop_id, b)
    form_b = _reward_form(client.get(f"/r/{token_b}").get_data(as_text=True), "Gratisversand")
    assert client.post(f"/r/{token_b}/redeem", data={**form_b, "customer": str(a)}).status_code == 302

    # when A's link posts B's form (same idempotency key), and a link pairs A with the other shop
    via_a = client.post(f"/r/{token_a}/redeem", data={**form_b, "customer": str(b)})
    wrong_shop = client.get(f"/r/{_token(app, other_shop, a)}")

    # then each redemption is the link's own customer's, with their own points; the pairing is refused
    assert via_a.status_code == 302
    assert _redemptions(shop_id) == [(b, "Gratisversand", "customer"), (a, "Gratisversand", "customer")]
    assert report(shop_id, KUNDIN)["available"] == 300
    assert report(shop_id, OTHER)["available"] == 300
    assert wrong_shop.status_code == 404


@pytest.mark.sqlite_only
def test_banned_customer_sees_no_rewards(app, client, make_shop):
    # given a customer whose page was open when support banned them
    shop_id = _shop_with_points(make_shop, "600.00")
    customer_id = _customer_id(shop_id)
    token = _token(app, shop_id, customer_id)
    form = _reward_form(client.get(f"/r/{token}").get_data(as_text=True), "Gratisversand")
    with session_scope() as s:
        customer = find_by_email(s, shop_id, KUNDIN)
        customer.banned_at, customer.ban_reason = utcnow(), "chargeback"

    # when they reload the page and press the redeem button of the old page
    page = _text(client.get(f"/r/{token}").get_data(as_text=True))
    posted = client.post(f"/r/{token}/redeem", data=form)

    # then no reward is offered, and the old form redeems nothing but explains why
    assert "Ihr Konto kann zurzeit keine Prämien einlösen." in page
    assert "Einlösen" not in page
    assert posted.status_code == 302
    assert "Ihr Konto kann zurzeit keine Prämien einlösen." in _text(client.get(f"/r/{token}").get_data(as_text=True))
    assert _redemptions(shop_id) == []


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, reward, message",
    [
        ("not enough points", "50 € Gutschein", "Für „50 € Gutschein“ haben Sie nicht genug Punkte."),
        ("unknown reward", "Goldbarren", "Diese Prämie gibt es nicht mehr."),
    ],
)
def test_refused_redemption_says_why(app, client, make_shop, _case, reward, message):
    # given a customer with 600 points
    shop_id = _shop_with_points(make_shop, "600.00")
    token = _token(app, shop_id, _customer_id(shop_id))
    csrf = _csrf_token(client.get(f"/r/{token}").get_data(as_text=True))

    # when a redemption they cannot have is posted
    response = client.post(f"/r/{token}/redeem", data={"csrf_token": csrf, "reward": reward, "key": uuid.uuid4().hex})

    # then the page says why, in German, and nothing is redeemed
    assert response.status_code == 302
    assert message in _text(client.get(response.headers["Location"]).get_data(as_text=True))
    assert _redemptions(shop_id) == []
    assert report(shop_id, KUNDIN)["available"] == 600


@pytest.mark.sqlite_only
def test_customer_link_is_absolute_and_opens_the_page(app, client, make_shop):
    # given a customer
    shop_id = _shop_with_points(make_shop, "600.00")
    customer_id = _customer_id(shop_id)

    # when their link is made for an e-mail or the admin
    with app.test_request_context(base_url="https://loyalty.example"), session_scope() as s:
        from app.models import Customer

        link = customer_link(s.get(Customer, customer_id))

    # then it is an absolute URL of their page
    assert re.fullmatch(r"https://loyalty\.example/r/[\w.-]+", link)
    assert client.get(link.removeprefix("https://loyalty.example")).status_code == 200


def test_every_customer_page_text_has_a_german_translation():
    # given the texts of the customer page (found as babel.cfg says) and the German catalog
    root = Path(__file__).resolve().parents[2]
    with (TRANSLATIONS / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    ids = {
        message[2] if isinstance(message[2], str) else message[2][0]
        for message in extract_from_dir(str(root), method_map=method_map, options_map=options_map)
    }
    with (TRANSLATIONS / "de" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh)

    # when each text is looked up
    untranslated = sorted(i for i in ids if catalog.get(i) is None or not catalog.get(i).string or catalog.get(i).fuzzy)

    # then every text has a German translation
    assert "Your points" in ids
    assert untranslated == []


@pytest.mark.sqlite_only
def test_link_to_an_unknown_shop_is_refused(app, client):
    # given no shops at all, and a well-signed link to shop 999
    token = _token(app, 999, 1)

    # when it is opened
    response = client.get(f"/r/{token}")

    # then the friendly German not-found page is shown
    assert response.status_code == 404
    assert "Link ungültig" in _text(response.get_data(as_text=True))
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Redemption)) == 0


@pytest.mark.sqlite_only
def test_customer_without_enough_points_sees_where_rewards_start(app, client, make_shop):
    # given a customer with 120 points in a shop whose cheapest reward costs 300
    shop_id = _shop_with_points(make_shop, "120.00")
    token = _token(app, shop_id, _customer_id(shop_id))

    # when they open their page
    page = _text(client.get(f"/r/{token}").get_data(as_text=True))

    # then no reward is offered, and the page says from how many points there are rewards
    assert "Sie können noch keine Prämie einlösen. Prämien gibt es ab 300 Punkten." in page
    assert "Einlösen" not in page


@pytest.mark.sqlite_only
@pytest.mark.parametrize("_case, locale, expected, absent", [
    ("english customer of a german shop", "en", ['lang="en"', "Your points", "Redeem"], ["Ihre Punkte"]),
    ("region tag", "en-US", ['lang="en"', "Your points"], ["Ihre Punkte"]),
    ("german customer", "de_DE", ['lang="de"', "Ihre Punkte"], ["Your points"]),
    ("a language we do not write: the shop's", "fr", ['lang="de"', "Ihre Punkte"], ["Your points"]),
])
def test_page_speaks_the_customers_language(app, client, make_shop, _case, locale, expected, absent):
    # given a customer of a German shop whose platform told us their `locale`
    from app.models import Customer

    shop_id = _shop_with_points(make_shop, "1250.00", "de")
    customer_id = _customer_id(shop_id)
    with session_scope() as s:
        s.get(Customer, customer_id).locale = locale
    token = _token(app, shop_id, customer_id)

    # when they open their page
    page = _text(client.get(f"/r/{token}").get_data(as_text=True))

    # then it speaks their language when we write in it, else the shop's
    for text in expected:
        assert text in page
    for text in absent:
        assert text not in page


@pytest.mark.parametrize("_case, language, worth, point", [
    ("German shop", "de", "1.250 Punkte ≈ 12,50\xa0€", "Wert eines Punktes: 1 Punkt = 1 Cent"),
    ("English shop", "en", "1,250 points ≈ €12.50", "What a point is worth: 1 point = 1 cent"),
])
def test_page_says_what_the_points_are_worth(app, client, make_shop, _case, language, worth, point):
    # given a customer with 1250 points, "5 € Rabatt" costing 500 (a point is worth 1 cent)
    shop_id = _shop_with_points(make_shop, "1250.00", language=language)
    token = _token(app, shop_id, _customer_id(shop_id))

    # when they open their page
    page = html_lib.unescape(client.get(f"/r/{token}").get_data(as_text=True))

    # then it says what their points are worth, in their language, and what one point is worth
    assert f'<p id="available-worth">{worth}</p>' in page
    assert point in " ".join(page.split())


def test_page_says_what_a_combination_offer_gives(app, client, make_shop):
    # given a customer with 600 points and "buy 2 × Espresso-Bohnen, get 1 × Tasse 50 % off" for 400
    shop_id = _shop_with_points(make_shop, "600.00", language="de")
    offer = {"name": "Kaffee-Kombi", "points": 400, "kind": "buy_x_get_y", "value": "50", "buys_product_ids": ["7"],
             "buys_quantity": 2, "buys_label": "Espresso-Bohnen", "product_id": "9", "gets_label": "Tasse"}
    program(shop_id, {**NO_EXTRAS, "earning": {"return_window_days": 0}, "rewards": [*REWARDS, offer]})
    token = _token(app, shop_id, _customer_id(shop_id))

    # when they open their page
    page = html_lib.unescape(client.get(f"/r/{token}").get_data(as_text=True))

    # then the offer is among the rewards, saying what it gives
    assert _reward_form(page, "Kaffee-Kombi")
    assert '<span class="offer">Kaufe 2 × Espresso-Bohnen, erhalte 1 × Tasse 50 % günstiger</span>' in page
