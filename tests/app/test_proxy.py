"""The Shopify app proxy (/proxy/shopify/...): the Liquid page, its redeem form and the JSON API,
and the widget's files. Requests are signed as Shopify signs them (app secret, fresh timestamp)."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import re
import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.models import Redemption, utcnow
from app.web import widget
from connectors.shopify.webhooks import proxy_message
from tests.conftest import FIXTURES, SHOPIFY_DOMAIN
from tests.factories import apply, order, program, report

APP_SECRET = "app-proxy-test-secret"
KUNDIN = "kundin@example.test"
PREFIX = "/apps/stammkunde"
REWARDS = [
    {"name": "Gratisversand", "points": 300, "kind": "free_shipping"},
    {"name": "5 € Rabatt", "points": 500, "kind": "fixed_amount", "value": "5"},
    {"name": "50 € Gutschein", "points": 5000, "kind": "fixed_amount", "value": "50"},
]
NO_EXTRAS = {"second_purchase": {"enabled": False}, "referral": {"enabled": False}}


def signed(path: str, customer: str = "", *, secret: str = APP_SECRET, shop: str = SHOPIFY_DOMAIN,
           timestamp: int | None = None, **extra: str) -> str:
    """Return `path` with the query Shopify's proxy adds, signed with `secret`."""
    query = [*extra.items(), ("shop", shop), ("logged_in_customer_id", customer), ("path_prefix", PREFIX),
             ("timestamp", str(timestamp if timestamp is not None else int(time.time())))]
    signature = hmac.new(secret.encode(), proxy_message(query).encode(), hashlib.sha256).hexdigest()
    return f"/proxy/shopify{path}?{urlencode([*query, ('signature', signature)])}"


@pytest.fixture
def shop_id(app, make_shop):  # type: ignore[no-untyped-def]
    """A Shopify shop of the app (signed with the app's secret) whose customer c1 has 600 points."""
    app.config["SHOPIFY_API_SECRET"] = APP_SECRET
    shop = make_shop("shopify", secret="", name="Kaffee & Kuchen", credentials={"access_token": "shpat_test"})
    program(shop, {**NO_EXTRAS, "earning": {"return_window_days": 0}, "rewards": REWARDS})
    apply(shop, order("1", "600.00"))
    return shop


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", page)


def _form(page: str, reward: str) -> dict[str, str]:
    for body in re.findall(r"<form\b.*?</form>", page, re.S):
        if reward in body:
            return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', body))
    raise AssertionError(f"no form for {reward}")


def _redemptions() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Redemption)) or 0


def test_member_page_is_liquid_with_balance_rewards_and_history(client, shop_id):
    # when the logged-in customer c1 opens /apps/stammkunde in the shop
    response = client.get(signed("/", "c1"))
    page = response.get_data(as_text=True)

    # then Shopify gets a Liquid answer with their points, what a point is worth and their rewards
    assert response.status_code == 200
    assert response.mimetype == "application/liquid"
    assert response.headers["Cache-Control"] == "private, no-store"
    text = _text(page)
    for expected in ['<dd id="sk-available">600</dd>', "Wert eines Punktes: 1 Punkt = 1 Cent", "Gratisversand",
                     "5 € Rabatt", "Noch 4.400 Punkte bis „50 € Gutschein“", "Gesammelt mit Bestellung #1"]:
        assert expected in text
    assert 'action="/apps/stammkunde/redeem?locale=de"' in page
    assert "/widget/" + widget.version() + "/stammkunde.css" in page


def test_visitor_page_shows_the_program_and_how_to_log_in(client, shop_id):
    # when a visitor who is not logged in opens the page, in English
    page = _text(client.get(signed("/", "", locale="en")).get_data(as_text=True))

    # then the program and a log-in link (back to the page) are shown, no balance
    assert "Collect points with every order: 1 points per €1.00 spent." in page
    assert "1 point = 1 cent" in page
    assert 'href="/account/login?return_url=%2Fapps%2Fstammkunde"' in page
    assert "sk-available" not in page


def test_page_never_lets_shop_or_request_text_become_liquid(client, app, make_shop):
    # given a reward whose name holds Liquid, and a request with Liquid in its own parameters
    app.config["SHOPIFY_API_SECRET"] = APP_SECRET
    shop = make_shop("shopify", secret="")
    program(shop, {**NO_EXTRAS, "earning": {"return_window_days": 0}, "rewards": [
        {"name": "{{ shop.secret }}{% render 'x' %}", "points": 10, "kind": "free_shipping"}]})
    apply(shop, order("1", "60.00"))

    # when the member's page is rendered
    page = client.get(signed("/", "c1", locale="{{ 7*7 }}", redeemed="{% if %}")).get_data(as_text=True)

    # then no brace reaches Liquid; the browser still shows the name as written
    assert "{" not in page and "}" not in page
    assert "&#123;&#123; shop.secret &#125;&#125;&#123;% render &#39;x&#39; %&#125;" in page


@pytest.mark.parametrize("_case, change, status", [
    ("no signature", "drop", 400),
    ("wrong secret", "secret", 401),
    ("another customer than signed", "customer", 401),
    ("stale: signed an hour ago", "stale", 401),
    ("unknown shop", "shop", 404),
])
def test_requests_not_signed_by_shopify_are_refused(client, shop_id, _case, change, status):
    # given a proxy request changed after (or instead of) Shopify's signature
    url = signed("/api/balance", "c1")
    if change == "drop":
        url = re.sub(r"&signature=[0-9a-f]+", "", url)
    elif change == "secret":
        url = signed("/api/balance", "c1", secret="not-the-app-secret")
    elif change == "customer":
        url = url.replace("logged_in_customer_id=c1", "logged_in_customer_id=c2")
    elif change == "stale":
        url = signed("/api/balance", "c1", timestamp=int(time.time()) - 3600)
    elif change == "shop":
        url = signed("/api/balance", "c1", shop="unbekannt.myshopify.com")

    # when it arrives, then it is refused with the table's status and reveals no balance
    response = client.get(url)
    assert response.status_code == status
    assert "available" not in response.get_data(as_text=True)


def test_shopifys_published_example_is_refused_today_as_stale(client, app, make_shop):
    # given Shopify's documented request (secret "hush", signed in 2011) for a shop we serve
    example = json.loads((FIXTURES / "shopify_app_proxy" / "documented_example.json").read_text())
    app.config["SHOPIFY_API_SECRET"] = example["secret"]
    make_shop("shopify", domain="shop-name.myshopify.com", secret="")

    # when it is replayed now
    response = client.get(f"/proxy/shopify/extra/path/components?{example['query']}")
    balance = client.get(f"/proxy/shopify/api/balance?{example['query']}")

    # then its signature is good but its age is not: refused
    assert (response.status_code, balance.status_code) == (404, 401)  # no such page; the API refuses


def test_redeem_form_redeems_once_and_comes_back_to_the_page(client, shop_id):
    # given the member's page with its redeem forms
    page = client.get(signed("/", "c1")).get_data(as_text=True)
    form = _form(page, "5 € Rabatt")

    # when the form is sent twice (a double click)
    first = client.post(signed("/redeem", "c1", locale="de"), data=form)
    second = client.post(signed("/redeem", "c1", locale="de"), data=form)

    # then one redemption took 500 points, and both go back to the page saying so
    assert (first.status_code, second.status_code) == (303, 303)
    location = urlsplit(first.headers["Location"])
    assert location.path == PREFIX and dict(parse_qsl(location.query))["redeemed"].isdigit()
    assert first.headers["Location"] == second.headers["Location"]
    assert _redemptions() == 1 and report(shop_id, KUNDIN)["available"] == 100
    back = _text(client.get(signed("/", "c1", redeemed=dict(parse_qsl(location.query))["redeemed"]))
                 .get_data(as_text=True))
    assert "Sie haben „5 € Rabatt“ eingelöst." in back
    assert "Ihr Code wird gerade erstellt." in back


def test_redeem_form_of_another_customer_redeems_nothing(client, shop_id):
    # given customer c1's form, posted as a signed request of customer c2
    apply(shop_id, order("2", "600.00", customer_id="c2", email="zweite@example.test"))
    form = _form(client.get(signed("/", "c1")).get_data(as_text=True), "5 € Rabatt")

    # when c2's request carries it
    response = client.post(signed("/redeem", "c2"), data=form)

    # then nothing is redeemed for anyone
    assert response.status_code == 303 and "refused=form" in response.headers["Location"]
    assert _redemptions() == 0


def test_api_balance_for_member_and_visitor(client, shop_id):
    # when the launcher asks for the member's balance, and a visitor's
    member = client.get(signed("/api/balance", "c1")).get_json()
    visitor = client.get(signed("/api/balance", "", locale="en")).get_json()

    # then the member sees 600 points in German with the next reward; the visitor the program
    assert (member["available"], member["balance_text"], member["affordable_count"]) == (600, "600 Punkte", 2)
    assert member["next_text"] == "Noch 4.400 Punkte bis „50 € Gutschein“"
    assert member["texts"]["apply"] == "Meine Prämie einlösen"
    assert (visitor["logged_in"], visitor["member"], visitor["available"]) == (False, False, 0)
    assert visitor["texts"]["login"] == "Log in to see your points"


def test_api_redeem_is_json_only_idempotent_and_says_why_not(client, shop_id, work, monkeypatch):
    # given the shop's API in memory
    from tests.connectors.fake import install_fake_connector

    install_fake_connector(monkeypatch, "shopify")
    rewards = client.get(signed("/api/rewards", "c1")).get_json()["rewards"]
    five = next(r for r in rewards if r["name"] == "5 € Rabatt")
    body = {"reward": five["id"], "request_key": str(uuid.uuid4())}

    # when redeemed as a form (what another site could send), then twice as JSON, then too much
    as_form = client.post(signed("/api/redeem", "c1"), data=body)
    first = client.post(signed("/api/redeem", "c1"), json=body)
    again = client.post(signed("/api/redeem", "c1"), json=body)
    too_much = client.post(signed("/api/redeem", "c1"), json={"reward": "50 € Gutschein",
                                                               "request_key": str(uuid.uuid4())})

    # then the form is refused, JSON redeems once, and the refusal says why in German
    assert as_form.status_code == 415
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["redemption_id"] == again.get_json()["redemption_id"]
    assert (first.get_json()["status"], first.get_json()["available"]) == ("pending", 100)
    assert too_much.status_code == 422
    assert too_much.get_json() == {"error": "not_enough_points",
                                   "message": "Für „50 € Gutschein“ haben Sie nicht genug Punkte."}
    assert _redemptions() == 1

    # when the worker has created the code, the member's redemption shows it
    work()
    state = client.get(signed(f"/api/redemptions/{first.get_json()['redemption_id']}", "c1")).get_json()
    assert state["status"] == "created" and state["code"].startswith("SK-")
    # and nobody else's request finds it
    other = client.get(signed(f"/api/redemptions/{first.get_json()['redemption_id']}", "c2"))
    assert other.status_code == 422


def test_api_needs_a_logged_in_customer_to_redeem(client, shop_id):
    # when a visitor posts a redemption
    response = client.post(signed("/api/redeem", ""), json={"reward": "Gratisversand", "request_key": "x" * 20})

    # then it is refused: log in first
    assert response.status_code == 401
    assert _redemptions() == 0


@pytest.mark.parametrize("_case, query, status, expected", [
    # c1 spent 600 €: Silber, x1.25
    ("member, German", {"subtotal": "99.99", "currency": "EUR"}, 200, "Mit diesem Warenkorb sammeln Sie 124 Punkte."),
    ("no amount", {"currency": "EUR"}, 400, None),
    ("not a number", {"subtotal": "1e5"}, 400, None),
    ("another currency", {"subtotal": "10.00", "currency": "USD"}, 422, None),
])
def test_api_cart_points(client, shop_id, _case, query, status, expected):
    # when the cart asks what it earns
    response = client.get(signed("/api/cart-points", "c1", **query))

    # then it answers with the points and the sentence, or says what is wrong
    assert response.status_code == status
    if expected:
        assert response.get_json()["text"] == expected and response.get_json()["points"] == 124
        # and what they are worth (5 € for 500 points: 1 cent each), rounded to the cent
        assert response.get_json()["value"] == {"amount": "1.24", "currency": "EUR"}
        assert response.get_json()["value_text"] == "124 Punkte ≈ 1,24\xa0€"


# The Shopify cart's lines as the widget sends them (`/cart.js` items: ids, vendor, final_line_price).
CART_LINES = json.dumps([
    {"product_id": "7001", "variant_id": "8001", "vendor": "Rösterei Nord", "amount": "40.00"},
    {"product_id": "7002", "variant_id": "8002", "vendor": "Geschenke", "amount": "25.00"},
    {"product_id": "7003", "variant_id": "8003", "vendor": "Rösterei Nord", "amount": "20.00"},
])


@pytest.mark.parametrize("_case, query, status, expected", [
    # c1 spent 600 €: Silber, x1.25; the gift card (7002) earns nothing, the collection "espresso" double
    ("lines without the subtotal: (40 + 0 + 20) x 1.25", {"lines": CART_LINES, "currency": "EUR"}, 200,
     (75, False, "Mit diesem Warenkorb sammeln Sie 75 Punkte.")),
    ("the subtotal-only form of older widgets: today's answer, 85 x 1.25", {"subtotal": "85.00", "currency": "EUR"},
     200, (106, False, "Mit diesem Warenkorb sammeln Sie 106 Punkte.")),
    ("in English", {"lines": CART_LINES, "currency": "EUR", "locale": "en"}, 200,
     (75, False, "You earn 75 points with this cart.")),
    ("lines that are not JSON", {"lines": "[{", "currency": "EUR"}, 400, None),
    ("a line without its amount", {"lines": json.dumps([{"product_id": "7001"}]), "currency": "EUR"}, 400, None),
])
def test_api_cart_points_weigh_the_lines(client, shop_id, _case, query, status, expected):
    # given a program that excludes the gift card product
    program(shop_id, {**NO_EXTRAS, "earning": {"return_window_days": 0, "product_rules": [
        {"name": "Gutscheine", "effect": "exclude", "product_ids": ["7002"]}]}, "rewards": REWARDS})

    # when the widget asks what the cart earns, with its lines
    response = client.get(signed("/api/cart-points", "c1", **query))

    # then the excluded line earns nothing, in the member's words
    assert response.status_code == status, response.get_data(as_text=True)
    if expected:
        body = response.get_json()
        assert (body["points"], body["estimate"], body["text"]) == expected


def test_api_cart_points_say_about_when_a_rule_needs_what_is_not_known_yet(client, shop_id):
    # given a program doubling the collection "Espresso", and only product 7001 looked up so far
    from app.loyalty import products
    from connectors import types as ct

    program(shop_id, {**NO_EXTRAS, "earning": {"return_window_days": 0, "product_rules": [
        {"name": "Espresso", "collections": ["espresso"], "multiplier": "2"}]}, "rewards": REWARDS})
    with session_scope() as s:
        products.store_facts(s, shop_id, [ct.ProductFacts("7001", True, ("espresso", "Espresso"), ())],
                             utcnow())

    # when the widget asks for a cart of 7001 alone, and for the whole cart (7002, 7003 not known)
    known = client.get(signed("/api/cart-points", "c1", currency="EUR", lines=json.dumps(
        [{"product_id": "7001", "amount": "40.00"}]))).get_json()
    whole = client.get(signed("/api/cart-points", "c1", currency="EUR", lines=CART_LINES)).get_json()
    english = client.get(signed("/api/cart-points", "c1", currency="EUR", lines=CART_LINES, locale="en")).get_json()

    # then 7001 earns double (40 x 2 x 1.25), exactly; the whole cart is counted with what is known
    # ((80 + 25 + 20) x 1.25) and says it is about that
    assert (known["points"], known["estimate"]) == (100, False)
    assert known["text"] == "Mit diesem Warenkorb sammeln Sie 100 Punkte."
    assert (whole["points"], whole["estimate"]) == (156, True)
    assert whole["text"] == "Mit diesem Warenkorb sammeln Sie etwa 156 Punkte."
    assert english["text"] == "You earn about 156 points with this cart."


def test_member_page_balance_and_widget_say_what_the_points_are_worth(client, shop_id):
    # when the member c1 (600 points, a point worth 1 cent) opens the page and the launcher asks
    page = _text(client.get(signed("/", "c1")).get_data(as_text=True))
    balance = client.get(signed("/api/balance", "c1")).get_json()
    english = client.get(signed("/api/balance", "c1", locale="en")).get_json()

    # then both say what the available points are worth, in the member's language
    assert '<p id="sk-available-value">600 Punkte ≈ 6,00 €</p>' in page  # (_text makes the no-break space plain)
    assert balance["available_value_text"] == "600 Punkte ≈ 6,00\xa0€"
    assert balance["available_value"] == {"amount": "6.00", "currency": "EUR"}
    assert english["available_value_text"] == "600 points ≈ €6.00"


def test_stated_point_value_is_shown_instead_of_the_derived_one(client, shop_id):
    # given the program states a point is worth 2 cents (the cheapest amount reward gives 1)
    program(shop_id, {**NO_EXTRAS, "earning": {"return_window_days": 0}, "rewards": REWARDS,
                      "redemption": {"point_value": "0.02"}})

    # when the member opens the page and the launcher asks, and a visitor reads the program
    page = _text(client.get(signed("/", "c1")).get_data(as_text=True))
    balance = client.get(signed("/api/balance", "c1")).get_json()
    visitor = _text(client.get(signed("/", "", locale="en")).get_data(as_text=True))

    # then the stated value is the one shown everywhere
    assert "Wert eines Punktes: 1 Punkt = 2 Cent" in page
    assert "600 Punkte ≈ 12,00 €" in page
    assert (balance["point_value"]["text"], balance["point_value"]["source"]) == ("1 Punkt = 2 Cent", "program")
    assert "1 point = 2 cents" in visitor


def test_combination_offer_reads_as_what_it_gives_in_the_catalog_and_on_its_code(client, shop_id, work, monkeypatch):
    # given the shop's API in memory and a combination offer in the catalog
    from tests.connectors.fake import install_fake_connector

    install_fake_connector(monkeypatch, "shopify")
    offer = {"name": "Kaffee-Kombi", "points": 400, "kind": "buy_x_get_y", "buys_product_ids": ["632910392"],
             "buys_quantity": 2, "buys_label": "Espresso-Bohnen", "variant_id": "39072856", "gets_label": "Tasse"}
    program(shop_id, {**NO_EXTRAS, "earning": {"return_window_days": 0}, "rewards": [*REWARDS, offer]})

    # when the member sees the catalog, redeems the offer, and the worker creates its code
    rewards = client.get(signed("/api/rewards", "c1")).get_json()["rewards"]
    kombi = next(r for r in rewards if r["name"] == "Kaffee-Kombi")
    made = client.post(signed("/api/redeem", "c1"), json={"reward": kombi["id"], "request_key": str(uuid.uuid4())})
    work()
    page = _text(client.get(signed("/", "c1")).get_data(as_text=True))
    english = _text(client.get(signed("/", "c1", locale="en")).get_data(as_text=True))

    # then the catalog, and the code on the page, say what the offer gives
    assert kombi["description"] == "Kaufe 2 × Espresso-Bohnen, erhalte 1 × Tasse gratis"
    assert made.status_code == 201 and made.get_json()["available"] == 200
    assert page.count("Kaufe 2 × Espresso-Bohnen, erhalte 1 × Tasse gratis") == 1  # on the code (200 points left)
    assert "Buy 2 × Espresso-Bohnen, get 1 × Tasse free" in english


@pytest.mark.sqlite_only
def test_widget_is_versioned_cached_for_a_year_and_within_its_budget(client):
    # when the theme's line loads the widget
    entry = client.get("/widget/stammkunde.js")
    js = client.get(entry.headers["Location"], headers={"Accept-Encoding": "gzip"})
    css = client.get(f"/widget/{widget.version()}/stammkunde.css", headers={"Accept-Encoding": "gzip"})
    old = client.get("/widget/000000000000/stammkunde.js")

    # then the entry redirects briefly to a versioned URL that is immutable for a year
    assert entry.status_code == 302 and entry.headers["Cache-Control"] == "public, max-age=300"
    assert entry.headers["Location"] == f"/widget/{widget.version()}/stammkunde.js"
    assert js.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert js.headers["Content-Encoding"] == "gzip"
    assert b"StammkundeWidget" in gzip.decompress(js.data)
    assert old.status_code == 302
    # and script plus stylesheet are at most 10 KB gzipped
    assert len(js.data) + len(css.data) == widget.gzipped_size() <= widget.BUDGET_GZIPPED_BYTES


@pytest.mark.sqlite_only
def test_logged_in_customer_without_points_yet_sees_the_program(client, shop_id):
    # when a logged-in customer we have no orders of opens the page and the launcher asks
    page = _text(client.get(signed("/", "5550001")).get_data(as_text=True))
    balance = client.get(signed("/api/balance", "5550001")).get_json()

    # then the page shows the program and says points come with the first order; no log-in link
    assert "Ihre Punkte erscheinen hier nach Ihrer ersten Bestellung." in page
    assert "/account/login" not in page
    assert (balance["logged_in"], balance["member"], balance["available"]) == (True, False, 0)


@pytest.mark.sqlite_only
def test_balance_endpoint_answers_only_get(client, shop_id):
    # when the balance URL is posted to, then it is refused without reading anything
    response = client.post(signed("/api/balance", "c1"))
    assert response.status_code == 405 and response.get_json() == {"error": "method not allowed"}
