"""Earning by product on the program page: a product rule added, validated and explained through
the forms (owners only, like every program change)."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from html import unescape

import pytest

from app.web import program_form
from connectors import types as ct
from tests import factories
from tests.app.test_admin import INSTANT, NO_EXTRAS, _signed_in
from tests.app.test_admin_owner import _versions
from tests.app.test_admin_program_forms import _blank_row, _fill, _forms

KUNDIN = "kundin@example.test"
PATH = "earning.product_rules"


def test_a_product_rule_saved_on_the_forms_changes_what_its_lines_earn(client, session, make_shop):
    # given a shop earning 1 point per euro at once, and its owner on the program page
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT})
    _signed_in(client, session)
    fields = _forms(client, shop_id)

    # when they add a rule: gift cards sold as product 503 earn nothing, and vendor Nordlicht double in December
    row = _blank_row(fields, PATH)
    _fill(fields, {f"{PATH}.{row}.name": "Gutscheine", f"{PATH}.{row}.effect": "exclude",
                   f"{PATH}.{row}.product_ids": "503"})
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)
    assert response.status_code == 302, re.findall(r'class="field-error"[^>]*>(.*?)<', response.get_data(as_text=True))
    fields = _forms(client, shop_id)
    assert fields[f"{PATH}.0.name"] == "Gutscheine" and fields[f"{PATH}.0.effect"] == "exclude"
    row = _blank_row(fields, PATH)
    _fill(fields, {f"{PATH}.{row}.name": "Nordlicht doppelt", f"{PATH}.{row}.vendors": "Nordlicht",
                   f"{PATH}.{row}.multiplier": "2", f"{PATH}.{row}.valid_from": "2026-12-01",
                   f"{PATH}.{row}.valid_until": "2026-12-31"})
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then the rules are in force, as typed
    assert response.status_code == 302
    rules = _versions(session, shop_id)[-1][1]["earning"]["product_rules"]
    assert [(r["name"], r["effect"], r["product_ids"], r["vendors"]) for r in rules] == [
        ("Gutscheine", "exclude", ["503"], []), ("Nordlicht doppelt", "multiply", [], ["Nordlicht"])]

    # and an order of a 25 € gift card and a 20 € shirt by Nordlicht, paid 5 December, earns 40
    base = factories.order("1001", "45.00", email=KUNDIN, paid_at=factories.T0.replace(year=2026, month=12, day=5))
    lines = (ct.LineItem("1", "503", None, 1, Decimal("25"), Decimal("25"), merchandise=Decimal("25")),
             ct.LineItem("2", "502", "9", 1, Decimal("20"), Decimal("20"), vendor="Nordlicht",
                         merchandise=Decimal("20")))
    factories.apply(shop_id, replace(base, line_items=lines))
    report = factories.report(shop_id, KUNDIN)
    assert report["available"] + report["pending"] == 40
    [earn] = report["ledger"]
    assert "(Gutscheine: no points; 2× on Nordlicht doppelt: 40 points)" in earn["why"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, change, field, message",
    [
        ("a rule that names nothing", {"name": "Leer"}, "{row}", "at least one product"),
        ("a product id that is no number", {"name": "X", "product_ids": "abc, 12"}, "{row}.product_ids",
         "not a numeric id: abc"),
        ("a date that is no date", {"name": "X", "tags": "buch", "valid_from": "1. Dezember"}, "{row}.valid_from",
         "valid date"),
        ("a multiplier of nothing", {"name": "X", "tags": "buch", "multiplier": "0"}, "{row}.multiplier",
         "greater than 0"),
    ],
)
def test_a_bad_product_rule_is_shown_beside_its_field(client, session, make_shop, _case, change, field, message):
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    fields = _forms(client, shop_id)
    row = f"{PATH}.{_blank_row(fields, PATH)}"
    _fill(fields, {f"{row}.{k}": v for k, v in change.items()})

    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    beside = re.search(rf'<p class="field-error" id="{program_form.field_id(field.format(row=row))}-error">(.*?)</p>',
                       html, re.S)
    assert beside and message in unescape(beside.group(1))
    assert _versions(session, shop_id) == []


def test_the_members_page_says_how_the_lines_earned_in_german(app, make_shop):
    # given a German shop whose gift cards sold as products earn nothing and Nordlicht earns double,
    # and a customer's order of both
    from app.db import session_scope
    from app.loyalty import storefront
    from app.loyalty.customers import find_by_email
    from app.models import Shop

    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": {**INSTANT, "product_rules": [
        {"name": "Gutscheine", "effect": "exclude", "product_ids": ["503"]},
        {"name": "Nordlicht", "vendors": ["Nordlicht"], "multiplier": "2"}]}})
    lines = (ct.LineItem("1", "503", None, 1, Decimal("25"), Decimal("25"), merchandise=Decimal("25")),
             ct.LineItem("2", "502", "9", 1, Decimal("20"), Decimal("20"), vendor="Nordlicht",
                         merchandise=Decimal("20")))
    factories.apply(shop_id, replace(factories.order("1001", "45.00", email=KUNDIN), line_items=lines))

    # when the member's loyalty page in the shop is built (the app proxy page, the plugin's page)
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        view = storefront.member_view(s, shop, find_by_email(s, shop_id, KUNDIN), locale="de")

    # then their history says why the order earned 40 and not 45
    [line] = view.history
    assert line.points == 40
    assert line.why.endswith("(Gutscheine: keine Punkte; 2× auf Nordlicht: 40 Punkte)")
