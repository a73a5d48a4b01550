"""The partner voucher pools page in a real browser (headless Chromium, as test_admin_browser):
create a pool, upload a file with a bad row (refused, lines listed), upload a good one, and the
shop dashboard's warning; every page at 1366 and 390 px without console errors, sideways
scrolling or serious axe-core violations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import factories
from tests.app.test_admin import INSTANT, NO_EXTRAS
from tests.browser.test_admin_browser import (  # noqa: F401  (fixtures)
    CHROMEDRIVER,
    CHROMIUM,
    STAFF_EMAIL,
    STAFF_PASSWORD,
    Checker,
    _text,
    browser,
    live_admin,
)

pytestmark = [
    pytest.mark.sqlite_only,  # the subject is the pages, not the database
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="needs Debian's chromium and chromium-driver (make test installs them)"),
]


def test_owner_uploads_partner_codes_in_a_real_browser(live_admin, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.ui import WebDriverWait

    base, shop_id = live_admin["url"], live_admin["shop_id"]
    shots = Path(os.environ.get("STAMMKUNDE_SHOTS", tmp_path))
    check = Checker(browser, shots)

    def click(element) -> None:  # type: ignore[no-untyped-def]
        element.click()
        WebDriverWait(browser, 15).until(staleness_of(element))

    browser.get(f"{base}/admin/login")
    browser.find_element(By.NAME, "email").send_keys(STAFF_EMAIL)
    browser.find_element(By.NAME, "password").send_keys(STAFF_PASSWORD)
    click(browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))

    # the pools page, empty; then a pool
    browser.get(f"{base}/admin/shops/{shop_id}/vouchers")
    assert "No voucher pools yet" in _text(browser)
    check.page("vouchers-empty")
    form = browser.find_element(By.ID, "pool-form")
    form.find_element(By.NAME, "name").send_keys("Rösterei")
    form.find_element(By.NAME, "partner").send_keys("Rösterei Sonnenschein")
    click(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "Pool Rösterei created." in _text(browser)

    # a file with a bad row: nothing imported, the line named
    bad = tmp_path / "bad.csv"
    bad.write_text("Gutscheincode;Gültig bis\nKAFFEE-1;31.12.2030\nKAFFEE 2;\n", encoding="utf-8")
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(bad))
    click(browser.find_element(By.CSS_SELECTOR, "form.inline button[type=submit]"))
    assert "Nothing was imported: 1 rows cannot be read." in _text(browser)
    assert "Line 3: 'KAFFEE 2' contains spaces or invisible characters" in _text(browser)
    check.page("vouchers-bad-file")

    # a good file: 3 codes, one repeated
    good = tmp_path / "good.csv"
    good.write_text("KAFFEE-1\nKAFFEE-2\nKAFFEE-3\nKAFFEE-1\n", encoding="utf-8")
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(good))
    click(browser.find_element(By.CSS_SELECTOR, "form.inline button[type=submit]"))
    assert "3 codes added to Rösterei; 1 skipped (listed below)." in _text(browser)
    check.page("vouchers-uploaded")

    # offered as a reward warning at 5: the shop's dashboard and the pools page say it runs low
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT, "rewards": [
        {"name": "Kaffee-Gutschein", "points": 200, "kind": "partner_voucher", "pool": "Rösterei", "low_stock": 5}]})
    browser.get(f"{base}/admin/shops/{shop_id}")
    assert "The voucher pool Rösterei has 3 codes left (warning at 5 or fewer)." in _text(browser)
    check.page("shop-dashboard-voucher-warning")

    # (the refused upload's own answer is a 422, which the browser logs as a console error)
    expected = "vouchers-bad-file: console error: " + f"{base}/admin/shops/{shop_id}/vouchers/"
    assert [p for p in check.problems if not (p.startswith(expected) and "status of 422" in p)] == []
