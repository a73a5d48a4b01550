"""The program page's forms: saved through the one validated, versioned, audited save path; each
error shown beside the field it names; owners only."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from app.db import session_scope
from app.models import StaffAuditEntry
from app.program import ProgramError, validate_document
from app.web import program_form
from tests import factories
from tests.app.test_admin import INSTANT, NO_EXTRAS, _sign_in, _signed_in
from tests.app.test_admin_owner import SUPPORT, _support_of, _versions

KUNDIN = "kundin@example.test"


class _FormFields(HTMLParser):
    """What a browser would post from the form with id="program-forms": texts, ticked boxes, chosen options."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._inside = False
        self._select: str | None = None
        self._options: list[str] = []
        self._chosen: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._inside = a.get("id") == "program-forms"
        if not self._inside:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") != "checkbox" or "checked" in a:
                self.fields.append((a["name"] or "", a.get("value") or ""))
        elif tag == "select":
            self._select, self._options, self._chosen = a.get("name"), [], None
        elif tag == "option" and self._select:
            self._options.append(a.get("value") or "")
            if "selected" in a:
                self._chosen = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False
        elif tag == "select" and self._select:
            # a browser posts the chosen option, or the first one when none is marked
            self.fields.append((self._select, self._chosen if self._chosen is not None else self._options[0]))
            self._select = None


def _forms(client, shop_id: int) -> MultiDict:  # type: ignore[no-untyped-def]
    parser = _FormFields()
    parser.feed(client.get(f"/admin/shops/{shop_id}/program").get_data(as_text=True))
    assert parser.fields, "no program forms on the page"
    return MultiDict(parser.fields)


def _row_of(fields: MultiDict, path: str, name: str) -> int:
    return next(int(k.split(".")[-2]) for k, v in fields.items(multi=True)
                if k.startswith(path + ".") and k.endswith(".name") and v == name)


def _fill(fields: MultiDict, values: dict[str, str]) -> None:
    """Type into the fields (MultiDict.update would add a second value instead)."""
    for name, value in values.items():
        fields.setlist(name, [value])


def _blank_row(fields: MultiDict, path: str) -> int:
    return next(int(k.split(".")[-2]) for k, v in fields.items(multi=True)
                if k.startswith(path + ".") and k.endswith(".name") and v == "")


def test_saving_the_forms_puts_a_new_version_in_force_and_changes_what_an_order_earns(client, session, make_shop):
    # given a shop earning 1 point per euro at once, with double opt-in set in the document (not on the forms)
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT, "reminders": {"consent": {"double_opt_in": True}}})
    _signed_in(client, session)
    fields = _forms(client, shop_id)
    assert fields["earning.points_per_unit"] == "1"

    # when the owner sets 3 points per euro, adds a reward in a blank row and removes "Gratisversand"
    fields["earning.points_per_unit"] = "3"
    new = _blank_row(fields, "rewards")
    _fill(fields, {f"rewards.{new}.name": "Tasse", f"rewards.{new}.points": "200", f"rewards.{new}.kind": "free_product",
                   f"rewards.{new}.product_id": "gid://shopify/Product/7"})
    fields[f"rewards.{_row_of(fields, 'rewards', 'Gratisversand')}.remove"] = "on"
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then version 2 is in force with those changes and the rest kept, audited, and the page says so
    assert response.status_code == 302, re.findall(r'class="field-error"[^>]*>(.*?)<', response.get_data(as_text=True))
    [(_, first), (_, second)] = _versions(session, shop_id)
    assert second["earning"]["points_per_unit"] == "3"
    assert [r["name"] for r in second["rewards"]] == ["5 € Rabatt", "10 % Rabatt", "Tasse"]
    assert second["rewards"][2]["product_id"] == "gid://shopify/Product/7" and second["rewards"][2]["active"] is True
    assert second["reminders"]["consent"] == first["reminders"]["consent"] and first["reminders"]["consent"]["double_opt_in"]
    assert second["tiers"] == first["tiers"] and second["referral"] == first["referral"]
    with session_scope() as s:
        entry = s.scalars(select(StaffAuditEntry).where(StaffAuditEntry.action == "program.save")).one()
        assert (entry.before, entry.after) == ({"version": 1}, {"version": 2})
    assert "Program version 2 is in force." in client.get(response.headers["Location"]).get_data(as_text=True)

    # and an order of 10 € now earns 30 points
    factories.apply(shop_id, factories.order("1001", "10.00", email=KUNDIN))
    assert factories.report(shop_id, KUNDIN)["available"] == 30


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, change, field, message",
    [
        ("negative rate", {"earning.points_per_unit": "-1"}, "earning.points_per_unit", "greater than or equal to 0"),
        ("not a number", {"expiry.notice_days": "zwei"}, "expiry.notice_days", "valid integer"),
        ("percent reward without its value", {"rewards.{new}.name": "X", "rewards.{new}.points": "10",
                                              "rewards.{new}.kind": "percentage"}, "rewards.{new}", "value is required"),
        ("bad step in a list", {"reminders.cart.steps_hours": "1, soon"}, "reminders.cart.steps_hours", "valid integer"),
        ("steps out of order", {"reminders.cart.steps_hours": "24, 1"}, "reminders.cart", "increasing"),
        ("bounce-back percent over 100", {"bounce_back.kind": "percentage", "bounce_back.value": "150"},
         "bounce_back.value", "a percentage is at most 100"),
        ("bounce-back threshold zero", {"bounce_back.threshold": "0"}, "bounce_back.threshold", "greater than 0"),
        ("bounce-back valid for no days", {"bounce_back.valid_days": "0"}, "bounce_back.valid_days",
         "greater than or equal to 1"),
        ("bounce-back minimum not a number", {"bounce_back.minimum_amount": "zwanzig"}, "bounce_back.minimum_amount",
         "valid decimal"),
        ("combination offer without what to buy", {"rewards.{new}.name": "Kombi", "rewards.{new}.points": "400",
                                                    "rewards.{new}.kind": "buy_x_get_y", "rewards.{new}.product_id": "9",
                                                    "rewards.{new}.buys_quantity": "2", "rewards.{new}.buys_label": "Bohnen",
                                                    "rewards.{new}.gets_label": "Tasse"},
         "rewards.{new}.buys_variant_ids", "name the products or variants"),
        ("combination offer without how many", {"rewards.{new}.name": "Kombi", "rewards.{new}.points": "400",
                                                "rewards.{new}.kind": "buy_x_get_y", "rewards.{new}.product_id": "9",
                                                "rewards.{new}.buys_product_ids": "7", "rewards.{new}.buys_label": "Bohnen",
                                                "rewards.{new}.gets_label": "Tasse"},
         "rewards.{new}.buys_quantity", "how many must be bought"),
        ("combination offer without what is given", {"rewards.{new}.name": "Kombi", "rewards.{new}.points": "400",
                                                     "rewards.{new}.kind": "buy_x_get_y", "rewards.{new}.buys_quantity": "2",
                                                     "rewards.{new}.buys_product_ids": "7", "rewards.{new}.buys_label": "Bohnen",
                                                     "rewards.{new}.gets_label": "Tasse"},
         "rewards.{new}.variant_id", "the customer gets cheaper"),
        ("combination offer without the customer's words", {"rewards.{new}.name": "Kombi", "rewards.{new}.points": "400",
                                                            "rewards.{new}.kind": "buy_x_get_y", "rewards.{new}.product_id": "9",
                                                            "rewards.{new}.buys_product_ids": "7",
                                                            "rewards.{new}.buys_quantity": "2"},
         "rewards.{new}.buys_label", "as the customer reads it"),
        ("combination offer above 100 %", {"rewards.{new}.name": "Kombi", "rewards.{new}.points": "400",
                                           "rewards.{new}.kind": "buy_x_get_y", "rewards.{new}.product_id": "9",
                                           "rewards.{new}.buys_product_ids": "7", "rewards.{new}.buys_quantity": "2",
                                           "rewards.{new}.buys_label": "Bohnen", "rewards.{new}.gets_label": "Tasse",
                                           "rewards.{new}.value": "120"}, "rewards.{new}", "at most 100"),
        ("quantities on another kind", {"rewards.{new}.name": "X", "rewards.{new}.points": "10",
                                        "rewards.{new}.kind": "fixed_amount", "rewards.{new}.value": "5",
                                        "rewards.{new}.buys_quantity": "2"},
         "rewards.{new}.buys_quantity", "only a buy_x_get_y reward"),
        ("point value of nothing", {"redemption.point_value": "0"}, "redemption.point_value", "greater than 0"),
    ],
)
def test_a_bad_value_is_shown_beside_its_field_and_nothing_is_saved(client, session, make_shop, _case, change, field, message):
    # given a shop on the default program, and its owner on the program page
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    fields = _forms(client, shop_id)
    new = _blank_row(fields, "rewards")
    _fill(fields, {k.format(new=new): v for k, v in change.items()})
    field = field.format(new=new)

    # when they save a bad value
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then the page comes back with the message beside that field (and their values), and nothing is saved
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    beside = re.search(rf'<p class="field-error" id="{program_form.field_id(field)}-error">(.*?)</p>', html, re.S)
    assert beside and message in unescape(beside.group(1))
    if field in program_form.FIELDS:
        assert re.search(rf'id="{program_form.field_id(field)}" name="{field}" value="{re.escape(change[field])}"[^>]*aria-invalid="true"', html)
    assert "Nothing was saved." in html
    assert _versions(session, shop_id) == []


def test_the_bounce_back_section_saves_and_then_orders_earn_their_code(client, session, make_shop):
    # given a shop on the default program (bounce-back off), and its owner on the program page
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT})
    _signed_in(client, session)
    fields = _forms(client, shop_id)
    assert "bounce_back.enabled" not in fields and fields["bounce_back.threshold"] == "50"

    # when they switch it on: from 60 €, 10 % off, from 25 € ("25,00" typed the German way), 14 days
    _fill(fields, {"bounce_back.enabled": "on", "bounce_back.threshold": "60", "bounce_back.kind": "percentage",
                   "bounce_back.value": "10", "bounce_back.minimum_amount": "25,00", "bounce_back.valid_days": "14"})
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then the new version holds the section as typed, the e-mail still on
    assert response.status_code == 302, re.findall(r'class="field-error"[^>]*>(.*?)<', response.get_data(as_text=True))
    [_, (_, second)] = _versions(session, shop_id)
    assert second["bounce_back"] == {"enabled": True, "threshold": "60", "kind": "percentage", "value": "10",
                                     "minimum_amount": "25.00", "valid_days": 14, "send_email": True}
    # and a 60 € order earns the code, a 59 € one does not
    factories.apply(shop_id, factories.order("1001", "59.00", email=KUNDIN))
    factories.apply(shop_id, factories.order("1002", "60.00", email=KUNDIN))
    [code] = [c for c in _codes(shop_id) if c.purpose == "bounce_back"]
    assert code.spec["kind"] == "percentage" and code.spec["minimum_amount"] == "25.00"


def _codes(shop_id: int) -> list:  # type: ignore[type-arg]
    from app.models import IssuedCode

    with session_scope() as s:
        rows = list(s.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop_id)))
        s.expunge_all()
        return rows
def test_combination_offer_and_point_value_are_saved_from_the_forms(client, session, make_shop):
    # given a shop on its first saved program, and its owner on the program page, which says a
    # point's value is derived from "5 € Rabatt" for now
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT})
    _signed_in(client, session)
    page = unescape(client.get(f"/admin/shops/{shop_id}/program").get_data(as_text=True))
    assert "Now: 1 point = 1 cent, derived from the reward “5 € Rabatt”; leave empty to keep deriving it." in page
    fields = _forms(client, shop_id)
    assert fields["redemption.point_value"] == ""

    # when they add "buy 2 × Espresso beans, get a cup half price" and state 1,5 cents a point
    new = _blank_row(fields, "rewards")
    _fill(fields, {f"rewards.{new}.name": "Kaffee-Kombi", f"rewards.{new}.points": "400",
                   f"rewards.{new}.kind": "buy_x_get_y", f"rewards.{new}.value": "50",
                   f"rewards.{new}.buys_product_ids": "7, 8", f"rewards.{new}.buys_quantity": "2",
                   f"rewards.{new}.buys_label": "Espresso-Bohnen", f"rewards.{new}.variant_id": "39072856",
                   f"rewards.{new}.gets_label": "Tasse", "redemption.point_value": "0,015"})
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then the new version holds both, and the page shows the stated value
    assert response.status_code == 302, re.findall(r'class="field-error"[^>]*>(.*?)<', response.get_data(as_text=True))
    [_, (_, saved)] = _versions(session, shop_id)
    offer = saved["rewards"][-1]
    assert (offer["kind"], offer["value"], offer["buys_product_ids"], offer["buys_quantity"], offer["gets_quantity"]) == (
        "buy_x_get_y", "50", ["7", "8"], 2, None)
    assert (offer["variant_id"], offer["buys_label"], offer["gets_label"]) == ("39072856", "Espresso-Bohnen", "Tasse")
    assert saved["redemption"]["point_value"] == "0.015"
    page = unescape(client.get(f"/admin/shops/{shop_id}/program").get_data(as_text=True))
    assert "Now: 1 point = 1.5 cents, as stated here." in page


@pytest.mark.sqlite_only
def test_support_cannot_save_the_forms(client, session, make_shop):
    # given a saved program and a support user of the shop
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS})
    _support_of(shop_id)
    _sign_in(client, SUPPORT)
    page = client.get(f"/admin/shops/{shop_id}/program").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    # when they post the forms anyway
    response = client.post(f"/admin/shops/{shop_id}/program/forms",
                           data={"csrf_token": token, "base": "1", "earning.points_per_unit": "9"})

    # then it is refused, no forms were offered, and the program stays at version 1
    assert response.status_code == 403
    assert 'id="program-forms"' not in page
    assert [v for v, _ in _versions(session, shop_id)] == [1]


@pytest.mark.sqlite_only
def test_an_error_in_a_row_after_a_removed_one_names_the_row_the_owner_filled_in():
    # given the default rewards shown as rows 0-2 plus blank rows, row 0 removed and row 3 a bad new reward
    base = validate_document({}).model_dump(mode="json")
    form = MultiDict(program_form.values_from_document(base))
    form = MultiDict([(k, str(v)) for k, v in form.items() if v is not False and v != ""])
    _fill(form, {"rewards.0.remove": "on", "rewards.3.name": "Y", "rewards.3.points": "5", "rewards.3.kind": "fixed_amount"})

    # when the posted rows are validated
    posted = program_form.document_from_form(form, base)
    with pytest.raises(ProgramError) as caught:
        validate_document(posted.document)

    # then the reward without its value is document row 2 but form row 3, and the error lands there
    assert [r["name"] for r in posted.document["rewards"]] == ["10 % Rabatt", "Gratisversand", "Y"]
    assert program_form.field_errors(caught.value.problems, posted) == {"rewards.3": ["value is required for fixed_amount"]}
