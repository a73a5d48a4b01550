"""The widget and the loyalty page in a real browser (headless Chromium through Selenium).

A stand-in for the shop runs in a thread: it serves theme pages that embed the widget with the one
line the README gives, a cart (`/cart.js`, `/cart/update.js`) that records the discount it is
given, and the app proxy: `/apps/stammkunde/...` is signed as Shopify signs it and handed to the
running app. Codes are created by the real worker against the shop API in memory.

Skipped only when the browser or its driver is missing (`make test` installs Debian's `chromium`
and `chromium-driver`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connectors.shopify.webhooks import proxy_message
from tests.conftest import SHOPIFY_DOMAIN, free_port
from tests.factories import apply, order, program, report

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
APP_SECRET = "browser-test-app-secret"
PREFIX = "/apps/stammkunde"
REWARDS = [
    {"name": "Gratisversand", "points": 300, "kind": "free_shipping"},
    {"name": "5 € Rabatt", "points": 500, "kind": "fixed_amount", "value": "5"},
    {"name": "50 € Gutschein", "points": 5000, "kind": "fixed_amount", "value": "50"},
]

pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="chromium and chromium-driver are not installed (make test installs them)"),
]

THEME = """<!doctype html><html lang="de"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} · Kaffee &amp; Kuchen</title>
<style>body{{margin:0;font-family:sans-serif}}header,footer{{background:#eee;padding:12px 16px}}main{{padding:16px}}</style>
</head><body><header>Kaffee &amp; Kuchen</header><main>{content}</main><footer>Impressum</footer>
<script src="/widget/stammkunde.js" async></script></body></html>"""

CART_PAGE = """<h1>Warenkorb</h1><form action="/cart" method="post"><p>1 × Kaffee, 99,99 €</p>
<button type="submit" name="checkout">Zur Kasse</button></form>"""


class StandInShop:
    """The shop's storefront as the widget meets it (theme, cart, app proxy)."""

    def __init__(self, app: Any, customer: str) -> None:
        self.app = app
        self.customer = customer
        self.discounts: list[str] = []
        self.total_price = 9999  # cents, as /cart.js gives it
        self.items: list[dict[str, Any]] = []  # /cart.js items (none: the cart of an older stand-in)
        self.shop_id = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        path = request.path
        if path.startswith("/widget/"):
            return self.app(environ, start_response)
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return self.proxy(environ, start_response, path[len(PREFIX):] or "/")
        if path == "/cart.js":
            return self.cart()(environ, start_response)
        if path == "/cart/update.js" and request.method == "POST":
            self.discounts.append(json.loads(request.get_data())["discount"])
            return self.cart()(environ, start_response)
        if path == "/cart":
            return Response(THEME.format(title="Warenkorb", content=CART_PAGE), mimetype="text/html")(
                environ, start_response)
        if path == "/favicon.ico":
            return Response(status=204)(environ, start_response)
        if path == "/":
            return Response(THEME.format(title="Start", content="<h1>Willkommen</h1>"), mimetype="text/html")(
                environ, start_response)
        return Response("not found", status=404)(environ, start_response)

    def cart(self) -> Response:
        body = {"total_price": self.total_price, "currency": "EUR", "item_count": max(len(self.items), 1),
                "items": self.items,
                "cart_level_discount_applications": [{"title": code} for code in self.discounts]}
        return Response(json.dumps(body), mimetype="application/json")

    def proxy(self, environ: dict[str, Any], start_response: Any, rest: str) -> Any:
        """Forward to the app as Shopify's app proxy does: query signed, cookies stripped; a
        Liquid answer is rendered into the theme's layout."""
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        query += [("shop", SHOPIFY_DOMAIN), ("logged_in_customer_id", self.customer), ("path_prefix", PREFIX),
                  ("timestamp", str(int(time.time())))]
        signature = hmac.new(APP_SECRET.encode(), proxy_message(query).encode(), hashlib.sha256).hexdigest()
        forwarded = dict(environ, PATH_INFO="/proxy/shopify" + rest,
                         QUERY_STRING=urlencode([*query, ("signature", signature)]))
        forwarded.pop("HTTP_COOKIE", None)
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(self.app(forwarded, keep))
        headers = dict(captured["headers"])
        if headers.get("Content-Type", "").startswith("application/liquid"):
            # Shopify renders the Liquid in the theme; ours holds no Liquid, so it is inserted as is.
            page = THEME.format(title="Punkte", content=body.decode())
            return Response(page, mimetype="text/html")(environ, start_response)
        start_response(captured["status"], captured["headers"])
        return [body]


@pytest.fixture
def shop(app, make_shop, monkeypatch) -> Iterator[tuple[str, StandInShop]]:  # type: ignore[no-untyped-def]
    """A running stand-in shop on loopback whose customer c1 has 600 points; yields its URL."""
    from tests.connectors.fake import install_fake_connector

    install_fake_connector(monkeypatch, "shopify")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app.config.update(SHOPIFY_API_SECRET=APP_SECRET, PUBLIC_URL=url)
    shop_id = make_shop("shopify", secret="", name="Kaffee & Kuchen", credentials={"access_token": "shpat_test"})
    program(shop_id, {"second_purchase": {"enabled": False}, "earning": {"return_window_days": 0}, "rewards": REWARDS})
    apply(shop_id, order("1", "600.00"))
    stand_in = StandInShop(app, "c1")
    stand_in.shop_id = shop_id
    server = make_server("127.0.0.1", port, stand_in, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url, stand_in
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--window-size=1366,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_widget_shows_the_balance_redeems_and_applies_the_code_in_two_clicks(shop, browser, work, tmp_path):
    from selenium.webdriver.common.by import By

    url, stand_in = shop
    # given the member on the shop's cart page (99.99 € cart)
    browser.get(url + "/cart")

    # then the launcher shows their balance, and the cart what it earns (Silber: x1.25)
    launcher = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".sk-launcher"))
    assert launcher.text.endswith("600 Punkte")
    earn = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".sk-earn"))
    # (and what those points are worth: 1 cent each; the no-break space before € read as a space)
    assert earn.text.replace("\xa0", " ") == "Mit diesem Warenkorb sammeln Sie 124 Punkte. (124 Punkte ≈ 1,24 €)"

    # when they click "apply my reward" (1) and choose "5 € Rabatt" (2)
    browser.find_element(By.CSS_SELECTOR, ".sk-apply").click()
    choice = _wait(browser, lambda d: next(
        (b for b in d.find_elements(By.CSS_SELECTOR, ".sk-choice") if b.text == "5 € Rabatt"), False))
    browser.save_screenshot(str(tmp_path / "cart-choose.png"))
    if Path("/tmp/stammkunde-screenshots").is_dir():
        shutil.copy(tmp_path / "cart-choose.png", "/tmp/stammkunde-screenshots/cart-choose.png")
    choice.click()
    _wait(browser, lambda d: "erstellt" in d.find_element(By.CSS_SELECTOR, ".sk-cart .sk-msg").text)

    # and the worker creates the code in the shop while the widget waits for it
    deadline = time.time() + 20
    while not stand_in.discounts and time.time() < deadline:
        work()
        time.sleep(0.3)

    # then the code was put on the cart, once, and the points were taken once
    assert len(stand_in.discounts) == 1 and stand_in.discounts[0].startswith("SK-")
    [redemption] = [r for r in report_codes()]
    assert redemption == stand_in.discounts[0]
    assert report(_shop_id(), "kundin@example.test")["available"] == 100
    _wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
    assert _errors(browser) == []


def report_codes() -> list[str]:
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import IssuedCode

    with session_scope() as s:
        return list(s.scalars(select(IssuedCode.code).where(IssuedCode.purpose == "reward")))


def _shop_id() -> int:
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Shop

    with session_scope() as s:
        return s.scalars(select(Shop.id)).one()


@pytest.mark.parametrize("width", [390, 1366])
def test_loyalty_page_and_launcher_fit_phone_and_desktop(shop, browser, width, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = shop
    browser.set_window_size(width, 900)

    # when the member opens the loyalty page in the theme
    browser.get(url + PREFIX)
    available = _wait(browser, lambda d: d.find_element(By.ID, "sk-available"))
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".sk-launcher"))

    # then balance, rewards and history are shown without sideways scrolling
    assert available.text == "600"
    body = browser.find_element(By.CSS_SELECTOR, ".sk-page").text
    for text in ("Ihre Punkte", "Wert eines Punktes: 1 Punkt = 1 Cent", "Einlösen", "Gesammelt mit Bestellung #1"):
        assert text in body
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    # the stylesheet applied (the widget's file, versioned)
    assert browser.execute_script(
        "return getComputedStyle(document.querySelector('.sk-balance')).display") == "flex"

    # and the launcher opens on the balance and the rewards
    browser.find_element(By.CSS_SELECTOR, ".sk-launcher").click()
    panel = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".sk-panel"))
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".sk-panel .sk-rewards li")) == 2)
    assert "600 Punkte" in panel.text and "Noch 4.400 Punkte bis „50 € Gutschein“" in panel.text
    browser.save_screenshot(str(tmp_path / f"page-{width}.png"))
    shots = Path("/tmp") / "stammkunde-screenshots"
    if shots.is_dir():  # keep a copy to look at by hand: mkdir /tmp/stammkunde-screenshots
        shutil.copy(tmp_path / f"page-{width}.png", shots / f"page-{width}.png")
    assert _errors(browser) == []


def test_widget_sends_the_cart_lines_so_product_rules_weigh_them(shop, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, stand_in = shop
    # given a program that excludes the product 7002 and doubles the collection "Espresso" (which
    # no order has made the app look up yet), and a cart of coffee, that product and a gift card
    program(stand_in.shop_id, {"second_purchase": {"enabled": False}, "rewards": REWARDS, "earning": {
        "return_window_days": 0, "product_rules": [
            {"name": "Pakete", "effect": "exclude", "product_ids": ["7002"]},
            {"name": "Espresso", "collections": ["espresso"], "multiplier": "2"}]}})
    stand_in.items = [
        {"product_id": 7001, "variant_id": 8001, "vendor": "Rösterei Nord", "final_line_price": 7999, "gift_card": False},
        {"product_id": 7002, "variant_id": 8002, "vendor": "Rösterei Nord", "final_line_price": 2000, "gift_card": False},
        {"product_id": 7003, "variant_id": 8003, "vendor": "Kaffee & Kuchen", "final_line_price": 2500,
         "gift_card": True},
    ]
    stand_in.total_price = 12499

    # when the member opens the cart
    browser.get(url + "/cart")

    # then the cart earns on the coffee alone (79.99 x 1.25; the gift card is no merchandise), and
    # says "about": whether the coffee is in "Espresso" is not known yet
    earn = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".sk-earn"))
    browser.save_screenshot(str(tmp_path / "cart-lines.png"))
    if Path("/tmp/stammkunde-screenshots").is_dir():
        shutil.copy(tmp_path / "cart-lines.png", "/tmp/stammkunde-screenshots/cart-lines.png")
    assert earn.text.replace("\xa0", " ") == "Mit diesem Warenkorb sammeln Sie etwa 99 Punkte. (99 Punkte ≈ 0,99 €)"
    assert _errors(browser) == []
