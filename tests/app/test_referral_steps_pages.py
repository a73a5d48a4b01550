"""Referral steps where people see them (issue 20, rule 2): the program forms (with field-named
errors), the member's own page (friends rewarded, the next step, German and English), the admin
customer page and `customers show --json`."""

from __future__ import annotations

import html as html_lib
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from app.db import session_scope
from app.models import CodeStatus, IssuedCode
from app.program import ProgramError, validate_document
from app.web import program_form
from app.web.customer_page import make_token
from tests.app.test_admin import _signed_in
from tests.app.test_admin_owner import _versions
from tests.app.test_admin_program_forms import _fill, _forms
from tests.conftest import SHOPIFY_DOMAIN
from tests.factories import T0, apply, order, program

pytestmark = pytest.mark.sqlite_only  # forms, pages and texts: not about the database

ANNA = "anna@example.test"
STEPS = [{"count": 1, "points": 500}, {"count": 3, "member_discount_percent": "5"}]


def _text(page: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _anna_with_one_rewarded_friend(  # type: ignore[no-untyped-def]
        make_shop, language: str = "de", platform: str = "shopify", anna_id: str = "anna",
        **shop: object) -> tuple[int, int]:
    """Anna (referral code in the shop) with one rewarded friend and one in its window."""
    from app.loyalty import referrals

    shop = make_shop(platform, language=language, **shop)
    program(shop, {"second_purchase": {"enabled": False}, "earning": {"return_window_days": 14},
                   "referral": {"referrer_points": 100, "steps": STEPS}})
    apply(shop, order("100", "50.00", email=ANNA, customer_id=anna_id, paid_at=T0 - timedelta(days=30)))
    with session_scope() as s:
        row = s.scalars(select(IssuedCode).where(IssuedCode.purpose == "referral")).one()
        row.status, code, anna = CodeStatus.CREATED, row.code, row.customer_id
    apply(shop, order("201", "40.00", email="ben@example.test", customer_id="ben", discount_codes=(code,)))
    apply(shop, order("202", "40.00", email="cora@example.test", customer_id="cora", discount_codes=(code,),
                      paid_at=T0 + timedelta(days=10)))
    with session_scope() as s:
        for referral_id in referrals.due_referrals(s, T0 + timedelta(days=15)):
            referrals.settle(s, referral_id, now=T0 + timedelta(days=15))
    return shop, anna


def test_steps_are_saved_from_the_forms(client, session, make_shop):
    # given the owner on the program page of a shop with no steps
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    fields = _forms(client, shop_id)
    assert fields["referral.steps.count"] == str(program_form.BLANK_ROWS)

    # when they fill both blank step rows: 1st friend 500 points, 3rd a lasting 5 % member code
    _fill(fields, {"referral.steps.0.count": "1", "referral.steps.0.points": "500",
                   "referral.steps.1.count": "3", "referral.steps.1.member_discount_percent": "5"})
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then the new version holds the steps, and the page shows them as rows to edit
    assert response.status_code == 302
    [(_, saved)] = _versions(session, shop_id)
    assert saved["referral"]["steps"] == [{"count": 1, "points": 500, "member_discount_percent": None},
                                          {"count": 3, "points": None, "member_discount_percent": "5"}]
    again = _forms(client, shop_id)
    assert (again["referral.steps.1.count"], again["referral.steps.1.member_discount_percent"]) == ("3", "5")


@pytest.mark.parametrize("_case, change, field, message", [
    ("a step giving two things", {"referral.steps.0.count": "1", "referral.steps.0.points": "5",
                                  "referral.steps.0.member_discount_percent": "5"},
     "referral.steps.0", "exactly one of points and member_discount_percent"),
    ("a step giving nothing", {"referral.steps.1.count": "2"}, "referral.steps.1", "exactly one of"),
    ("counts out of order", {"referral.steps.0.count": "3", "referral.steps.0.points": "5",
                             "referral.steps.1.count": "2", "referral.steps.1.points": "5"},
     "referral.steps", "step 2 has count 2, after 3"),
    ("the same count twice", {"referral.steps.0.count": "2", "referral.steps.0.points": "5",
                              "referral.steps.1.count": "2", "referral.steps.1.points": "7"},
     "referral.steps", "unique and increasing"),
    ("no 0th friend", {"referral.steps.0.count": "0", "referral.steps.0.points": "5"},
     "referral.steps.0.count", "greater than or equal to 1"),
    ("a percent over 100", {"referral.steps.0.count": "1", "referral.steps.0.member_discount_percent": "120"},
     "referral.steps.0.member_discount_percent", "less than or equal to 100"),
])
def test_a_bad_step_is_shown_beside_its_field_and_nothing_is_saved(client, session, make_shop, _case, change, field,
                                                                   message):
    # given the owner on the program page
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    fields = _forms(client, shop_id)
    _fill(fields, change)

    # when they save a bad step
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then the message is beside the field, row or list it names, and nothing is saved
    assert response.status_code == 400
    beside = re.search(rf'<p class="field-error" id="{program_form.field_id(field)}-error">(.*?)</p>',
                       response.get_data(as_text=True), re.S)
    assert beside and message in html_lib.unescape(beside.group(1))
    assert _versions(session, shop_id) == []


def test_a_document_without_steps_keeps_the_flat_reward():
    # given a program document from before steps existed
    document = {"referral": {"referrer_points": 500, "monthly_cap": 5}}

    # when it is validated
    program = validate_document(document)

    # then it has no steps and the flat reward is unchanged
    assert (program.referral.steps, program.referral.referrer_points) == ((), 500)
    with pytest.raises(ProgramError) as caught:
        validate_document({"referral": {"steps": [{"count": 1, "points": 1, "gift": "x"}]}})
    assert caught.value.problems[0][0] == ("referral", "steps", 0, "gift")


@pytest.mark.parametrize("_case, language, expected", [
    ("German", "de", "Bisher hat Ihnen 1 geworbene Person eine Empfehlungsprämie gebracht. Ihre nächste Stufe: "
                     "Mit 2 weiteren geworbenen Personen erhalten Sie einen dauerhaften Mitgliederrabatt von 5 %."),
    ("English", "en", "1 friend has brought you a referral reward so far. Your next step: with 2 more friends "
                      "you get a lasting member discount of 5%."),
])
def test_members_page_shows_friends_rewarded_and_the_next_step(app, client, make_shop, _case, language, expected):
    # given Anna with one rewarded friend (the 1st step's 500 points) and one still in its window
    shop_id, anna = _anna_with_one_rewarded_friend(make_shop, language)
    with app.app_context():
        token = make_token(shop_id, anna)

    # when she opens her own page
    page = client.get(f"/r/{token}").get_data(as_text=True)

    # then it says how many friends brought a reward and what the next step needs
    progress = re.search(r'<p id="referral-progress">(.*?)</p>', page, re.S)
    assert progress and " ".join(_text(progress.group(1)).split()) == expected


def test_admin_and_cli_show_the_referral_progress_and_the_ledger_explains_the_step(client, session, make_shop,
                                                                                    runner):
    # given Anna with one rewarded friend and one in its window, and support signed in
    shop_id, anna = _anna_with_one_rewarded_friend(make_shop, "en")
    _signed_in(client, session)

    # when support opens her page, and looks her up in the CLI
    page = client.get(f"/admin/customers/{anna}").get_data(as_text=True)
    result = runner.invoke(args=["customers", "show", "--shop", SHOPIFY_DOMAIN, "--email", ANNA, "--json"])

    # then both show one friend rewarded, one waiting, and the next step with what it needs
    assert " ".join(_text(re.search(r'<dd id="referrals-rewarded">(.*?)</dd>', page, re.S).group(1)).split()) == \
        "1 (1 in their return window)"
    assert " ".join(_text(re.search(r'<dd id="referral-next-step">(.*?)</dd>', page, re.S).group(1)).split()) == \
        "friend no. 3: a lasting 5 % member code · 2 more rewarded friends"
    report = json.loads(result.output)
    assert report["referrals"] == {"rewarded": 1, "pending": 1, "next_step": {
        "count": 3, "to_go": 2, "points": None, "member_discount_percent": "5"}}
    # and the ledger names the step and the friend's order
    assert "Referral step 1: extra points for your friend no. 1 (order #201)" in _text(page)


def test_a_form_with_the_referral_steps_rows_round_trips():
    # given the default program shown as forms, with a step filled into the first blank row
    base = validate_document({"referral": {"steps": [{"count": 2, "points": 50}]}}).model_dump(mode="json")
    form = MultiDict([(k, str(v)) for k, v in program_form.values_from_document(base).items()
                      if v is not False and v != ""])
    _fill(form, {"referral.steps.1.count": "4", "referral.steps.1.member_discount_percent": "7,5"})

    # when the posted rows become a document
    posted = program_form.document_from_form(form, base)

    # then both steps are there, the decimal comma read as a point
    steps = validate_document(posted.document).referral.steps
    assert [(s.count, s.points, s.member_discount_percent) for s in steps] == [(2, 50, None), (4, None, Decimal("7.5"))]


def test_shopify_loyalty_page_shows_friends_rewarded_and_the_next_step(app, client, make_shop):
    # given Anna of a Shopify shop of the app, with one rewarded friend and one in its window
    from tests.app.test_proxy import APP_SECRET, signed

    app.config["SHOPIFY_API_SECRET"] = APP_SECRET
    _anna_with_one_rewarded_friend(make_shop, "de", secret="")

    # when she opens the shop's loyalty page (the app proxy)
    page = client.get(signed("/", "anna")).get_data(as_text=True)

    # then it says how many friends brought a reward and what the next step needs
    progress = re.search(r'<p id="sk-referral-progress">(.*?)</p>', page, re.S)
    assert progress and " ".join(_text(progress.group(1)).split()) == (
        "Bisher hat Ihnen 1 geworbene Person eine Empfehlungsprämie gebracht. Ihre nächste Stufe: Mit 2 weiteren "
        "geworbenen Personen erhalten Sie einen dauerhaften Mitgliederrabatt von 5 %.")


def test_woocommerce_plugin_gets_friends_rewarded_and_the_next_step(client, make_shop):
    # given Anna of a WooCommerce store with the plugin, one rewarded friend and one in its window
    from app import woo_plugin
    from app.models import Shop
    from tests.app.test_plugin_api import CREDENTIALS, _call
    from tests.conftest import TEST_ENCRYPTION_KEY

    shop_id, _ = _anna_with_one_rewarded_friend(make_shop, "de", "woocommerce", "77", credentials=CREDENTIALS)
    with session_scope() as s:
        secret = woo_plugin.new_plugin_secret(s.get(Shop, shop_id), TEST_ENCRYPTION_KEY)

    # when the plugin asks for her member view
    member = _call(client, shop_id, secret, "GET", "/customers/77?lang=de").get_json()

    # then it carries the count and the next step (the 3rd friend: a lasting 5 % code, 2 to go)
    assert (member["referral"]["rewarded"], member["referral"]["next_step"]) == (
        1, {"count": 3, "to_go": 2, "points": None, "member_discount_percent": "5"})
