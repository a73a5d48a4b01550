"""The admin's language and times: German or English per staff user (German for German shops),
every text translated, times in the shop's zone with the zone shown, no inline styles or scripts
(the admin's CSP allows neither)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from sqlalchemy import update

from app.db import session_scope
from app.models import Customer, Shop, StaffRole
from app.web.staff import create_staff, grant_role
from tests import factories
from tests.app.test_admin import INSTANT, KUNDIN, NO_EXTRAS, STAFF_PASSWORD, _csrf_token, _sign_in

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "app" / "translations"
OWNER = "inhaberin@stammkunde.example"


def _owner_of(shop_id: int, language: str | None = None) -> None:
    with session_scope() as s:
        user = create_staff(s, OWNER, STAFF_PASSWORD)
        user.language = language
        grant_role(s, shop_id=shop_id, staff_id=user.id, role=StaffRole.OWNER, adjust_limit=0, granted_by="test")


def _shop_with_customer(make_shop, **shop) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify")
    with session_scope() as s:
        s.execute(update(Shop).where(Shop.id == shop_id).values(**shop))
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT})
    factories.apply(shop_id, factories.order("1", "600.00"))
    with session_scope() as s:
        customer = s.query(Customer).filter_by(shop_id=shop_id, email=KUNDIN).one()
        return shop_id, customer.id


@pytest.mark.sqlite_only
def test_every_admin_text_has_a_german_translation():
    # given the admin's texts (found as babel-admin.cfg says, with the lazy `_l` too) and its German catalog
    method_map = [("app/web/admin.py", "python"), ("app/web/admin_account.py", "python"),
                  ("app/web/admin_staff.py", "python"), ("app/web/admin_reports.py", "python"),
                  ("app/web/program_errors.py", "python"), ("app/templates/admin/**.html", "jinja2"),
                  ("app/web/admin_vouchers.py", "python"), ("app/loyalty/vouchers.py", "python")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
    found = {msg[2] if isinstance(msg[2], str) else msg[2][0]
             for msg in extract_from_dir(str(ROOT), method_map, keywords=keywords)}
    with (TRANSLATIONS / "de" / "LC_MESSAGES" / "admin.po").open("rb") as fh:
        catalog = read_po(fh)

    # then each one has a German text
    untranslated = sorted(i for i in found if catalog.get(i) is None or not catalog.get(i).string or catalog.get(i).fuzzy)
    assert len(found) > 300
    assert untranslated == []


@pytest.mark.sqlite_only
def test_admin_templates_carry_no_inline_style_or_script():
    # given the admin templates (the admin's CSP is default-src 'self': inline styles and scripts are refused)
    templates = sorted((ROOT / "app" / "templates" / "admin").glob("*.html"))

    # then none has a style attribute, a style element or a script
    offending = [t.name for t in templates if re.search(r"\sstyle=|<style|<script", t.read_text())]
    assert templates and offending == []


def test_staff_of_a_german_shop_get_german_pages_in_the_shops_time(client, make_shop):
    # given a German shop in Berlin with a customer, and its owner who chose no language
    shop_id, customer_id = _shop_with_customer(make_shop, language="de", timezone="Europe/Berlin")
    _owner_of(shop_id)

    # when they sign in and open the customer page
    assert _sign_in(client, OWNER).status_code == 302
    html = client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)

    # then it speaks German, and times are Berlin's with the zone named
    assert '<html lang="de">' in html
    assert "Punktestand" in html and "Prämie einlösen" in html and "Punktebuch" in html
    assert "Zeiten in Europe/Berlin" in html
    assert re.search(r'title="Europe/Berlin">\d\d\.\d\d\.\d{4} \d\d:\d\d MES?Z</time>', html)


def test_a_staff_user_may_choose_english_and_flashes_follow(client, make_shop):
    # given the owner of a German shop, signed in
    shop_id, customer_id = _shop_with_customer(make_shop, language="de")
    _owner_of(shop_id)
    _sign_in(client, OWNER)
    token = _csrf_token(client.get("/admin/account").get_data(as_text=True))

    # when they choose English on their account page
    response = client.post("/admin/account/language", data={"csrf_token": token, "language": "en"})

    # then the admin speaks English to them from now on, messages included
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Language saved." in page
    html = client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)
    assert '<html lang="en">' in html and "Redeem a reward" in html and "Prämie einlösen" not in html


def test_german_flash_after_an_action(client, make_shop):
    # given the owner of a German shop on a customer's page
    shop_id, customer_id = _shop_with_customer(make_shop, language="de")
    _owner_of(shop_id)
    _sign_in(client, OWNER)
    page = client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)
    token = _csrf_token(page)
    key = re.search(r'id="adjust-form".*?name="key" value="([^"]+)"', page, re.S).group(1)

    # when they add points
    client.post(f"/admin/customers/{customer_id}/adjust", data={"csrf_token": token, "key": key, "points": "25",
                                                                "reason": "Kulanz"})

    # then the confirmation is German
    assert "Um +25 Punkte korrigiert." in client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)


def test_staff_of_an_english_shop_get_english_pages_in_its_zone(client, make_shop):
    # given a shop in New York that speaks English, and its owner
    shop_id, customer_id = _shop_with_customer(make_shop, language="en", timezone="America/New_York")
    _owner_of(shop_id)

    # when they open the customer page
    _sign_in(client, OWNER)
    html = client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)

    # then it is English with New York times, the zone named
    assert '<html lang="en">' in html and "Balance" in html
    assert re.search(r'title="America/New_York">\d{4}-\d\d-\d\d \d\d:\d\d E[SD]T</time>', html)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("_case, header, expected", [
    ("a German browser", "de-DE,de;q=0.9,en;q=0.5", "Anmelden"),
    ("an English browser", "en-GB,en;q=0.9", "Sign in"),
    ("no preference", None, "Sign in"),
])
def test_the_sign_in_page_speaks_the_browsers_language(_case, header, expected, client):
    # given a visitor who is not signed in

    # when they open the sign-in page
    headers = {"Accept-Language": header} if header else {}
    html = client.get("/admin/login", headers=headers).get_data(as_text=True)

    # then it is in their browser's language
    assert f"<h1>{expected}</h1>" in html


@pytest.mark.sqlite_only
@pytest.mark.parametrize("_case, change, field, message", [
    ("negative rate", {"earning.points_per_unit": "-1"}, "earning.points_per_unit", "Der Wert muss mindestens 0 sein."),
    ("not a whole number", {"expiry.notice_days": "zwei"}, "expiry.notice_days", "Bitte geben Sie eine ganze Zahl ein."),
    ("over the limit, grouped as German writes it", {"referral.referrer_points": "20000000"}, "referral.referrer_points",
     "Der Wert darf höchstens 10.000.000 sein."),
    ("a new reward without its name", {"rewards.{new}.points": "10", "rewards.{new}.kind": "free_shipping"},
     "rewards.{new}.name", "Bitte füllen Sie dieses Feld aus."),
    ("percent reward without its value", {"rewards.{new}.name": "X", "rewards.{new}.points": "10",
                                          "rewards.{new}.kind": "percentage"},
     "rewards.{new}", "Für die Art „Prozent Rabatt“ ist ein Wert nötig."),
    ("steps out of order", {"reminders.cart.steps_hours": "24, 1"}, "reminders.cart",
     "Die Erinnerungen (Stunden) müssen aufsteigend angegeben werden, mindestens eine."),
    ("quiet hours not a time", {"reminders.sending.quiet_start": "9 Uhr"}, "reminders.sending.quiet_start",
     "Die Eingabe hat nicht das erwartete Format"),
    # the checks of the rules added later (plain ValueError texts, translated in the admin catalog)
    ("bounce-back percent over 100", {"bounce_back.kind": "percentage", "bounce_back.value": "150"},
     "bounce_back.value", "Ein Prozentsatz ist höchstens 100."),
    ("a combination offer without how many", {"rewards.{new}.name": "Kombi", "rewards.{new}.points": "400",
                                              "rewards.{new}.kind": "buy_x_get_y", "rewards.{new}.product_id": "9",
                                              "rewards.{new}.buys_product_ids": "7", "rewards.{new}.buys_label": "Bohnen",
                                              "rewards.{new}.gets_label": "Tasse"},
     "rewards.{new}.buys_quantity", "Für eine Kombination nötig: wie viele gekauft werden müssen."),
    ("a tier tag prefix with a comma", {"tier_in_shop.tag_prefix": "Stamm,kunde"}, "tier_in_shop.tag_prefix",
     "Das Tag-Präfix darf kein Komma enthalten"),
])
def test_a_german_owner_reads_program_errors_in_german(client, make_shop, _case, change, field, message):
    from html import unescape

    from app.web import program_form
    from tests.app.test_admin_program_forms import _blank_row, _fill, _forms

    # given a German shop on the default program, and its owner on the program page
    shop_id = make_shop("shopify")
    with session_scope() as s:
        s.execute(update(Shop).where(Shop.id == shop_id).values(language="de"))
    _owner_of(shop_id)
    _sign_in(client, OWNER)
    fields = _forms(client, shop_id)
    new = _blank_row(fields, "rewards")
    _fill(fields, {k.format(new=new): v for k, v in change.items()})

    # when they save a bad value
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then the message beside the field is German, and so is the page's summary
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    beside = re.search(rf'<p class="field-error" id="{program_form.field_id(field.format(new=new))}-error">(.*?)</p>',
                       html, re.S)
    assert beside and message in unescape(beside.group(1))
    assert "Input should" not in html and "Value error" not in html and "Field required" not in html
    assert "Programm nicht übernommen" in html and "Nichts wurde gespeichert." in html


@pytest.mark.sqlite_only
def test_a_german_owner_reads_the_program_documents_errors_in_german(client, make_shop):
    import json

    # given a German shop and its owner on the program page
    shop_id = make_shop("shopify")
    with session_scope() as s:
        s.execute(update(Shop).where(Shop.id == shop_id).values(language="de"))
    _owner_of(shop_id)
    _sign_in(client, OWNER)
    token = _csrf_token(client.get(f"/admin/shops/{shop_id}/program").get_data(as_text=True))

    # when they save a document (the "advanced" editor) with two bad values
    document = {"earning": {"points_per_unit": "-1"}, "tiers": {"metric": "visits"}}
    response = client.post(f"/admin/shops/{shop_id}/program",
                           data={"csrf_token": token, "document": json.dumps(document), "base": "0"})

    # then each problem is named by its field, in German
    from html import unescape

    html = unescape(response.get_data(as_text=True))
    assert response.status_code == 400
    assert "earning.points_per_unit: Der Wert muss mindestens 0 sein." in html
    assert "tiers.metric: Erlaubt ist nur 'spend' oder 'points'." in html


@pytest.mark.sqlite_only
def test_every_check_of_the_program_has_admin_words():
    # given the error types the program's own checks raise (app/program.py)
    from app.web import program_errors

    raised = set(re.findall(r'PydanticCustomError\(\s*"(\w+)"', (ROOT / "app" / "program.py").read_text()))

    # then the admin words each of them (and so the German catalog has them: see the test above)
    assert raised and sorted(raised - set(program_errors.TEXTS) - {"value_required"}) == []


def test_every_fixed_text_of_the_programs_checks_has_a_german_translation():
    # given the fixed texts of the plain ValueErrors in app/program.py (a new rule's checks included)
    texts = set(re.findall(r'raise ValueError\("((?:[^"\\]|\\.)*)"\)', (ROOT / "app" / "program.py").read_text()))
    with (TRANSLATIONS / "de" / "LC_MESSAGES" / "admin.po").open("rb") as fh:
        catalog = read_po(fh)

    # then the admin catalog has German for each (app/web/program_errors.py looks them up), and no
    # check raises a ValueError with a formatted text, which no catalog could hold
    assert len(texts) > 15
    assert sorted(t for t in texts if catalog.get(t) is None or not catalog.get(t).string) == []
    assert not re.search(r'raise ValueError\(f"', (ROOT / "app" / "program.py").read_text())
