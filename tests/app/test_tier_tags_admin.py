"""Tiers in the shop as staff see them: the customer page (written / pending / failed with why /
skipped), the shops list and `flask shops status` (waiting and failed), and the program forms'
setting with its field-named errors."""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import select

from app.models import Customer
from app.web import program_form
from connectors.errors import PermanentError
from jobs.tier_tags import sync_tier_tags
from tests.app.test_admin import _signed_in
from tests.app.test_admin_program_forms import _fill, _forms
from tests.app.test_admin_owner import _versions
from tests.connectors.fake import install_fake_connector
from tests.factories import apply, order, program

PROGRAM = {"second_purchase": {"enabled": False}, "referral": {"enabled": False},
           "earning": {"return_window_days": 0},
           "tiers": {"levels": [{"name": "Silber", "threshold": "250"}, {"name": "Gold", "threshold": "750"}]}}


def _tier_in_shop(client, session, platform_id: str | None, email: str) -> str:  # type: ignore[no-untyped-def]
    query = select(Customer.id).where(Customer.email == email)
    customer_id = session.scalar(query if platform_id is None else query.where(Customer.platform_id == platform_id))
    session.commit()
    html = client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)
    found = re.search(r'<dd id="tier-in-shop">(.*?)</dd>', html, re.S)
    assert found, "no tier-in-shop line on the customer page"
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


@pytest.mark.sqlite_only
def test_customer_page_shows_the_tier_in_the_shop(client, session, make_shop, monkeypatch):
    # given a Shopify shop with two Silber members, the shop refusing the first, and a guest
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop_id, PROGRAM)
    apply(shop_id, order("1", "300.00", customer_id="111", email="a@example.test"))
    apply(shop_id, order("2", "300.00", customer_id="222", email="b@example.test"))
    apply(shop_id, order("3", "300.00", customer_id=None, email="gast@example.test"))
    _signed_in(client, session)

    # then before the worker ran, the member's tier is pending, named as it will be shown
    assert _tier_in_shop(client, session, "222", "b@example.test") == "pending Stammkunde Silber"

    # when the worker writes and the shop refuses the first member
    fake.fail("set_customer_tier", PermanentError("tagsAdd: id: Customer does not exist"))
    sync_tier_tags(shop_id)

    # then each page says how the tier stands in the shop, and why where it is not there
    assert _tier_in_shop(client, session, "111", "a@example.test") == "failed tagsAdd: id: Customer does not exist"
    assert _tier_in_shop(client, session, "222", "b@example.test").startswith("written Stammkunde Silber ")
    assert _tier_in_shop(client, session, None, "gast@example.test") == (
        "not written a guest checkout: the shop has no customer account to write the tier to")

    # and the shops list counts the failure beside the shop
    html = client.get("/admin/").get_data(as_text=True)
    assert f'id="failed-tier-tags-{shop_id}"' in html and "1 tier not written" in html
    assert re.search(r"tiers to write to the shop\s+0", html)


@pytest.mark.sqlite_only
def test_shops_status_counts_tiers_waiting_and_failed(runner, make_shop):
    # given a member whose tier waits to be written
    shop_id = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop_id, PROGRAM)
    apply(shop_id, order("1", "300.00", customer_id="111"))

    # when / then the status says so
    result = runner.invoke(args=["shops", "status", "--no-check"])
    assert result.exit_code == 0, result.output
    assert "tiers in the shop: 1 waiting, 0 failed" in result.output


@pytest.mark.sqlite_only
def test_program_forms_turn_it_off_and_set_the_prefix(client, session, make_shop):
    # given the owner on the program page of a shop on the defaults (on, "Stammkunde")
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    fields = _forms(client, shop_id)
    assert fields["tier_in_shop.tag_prefix"] == "Stammkunde" and fields.get("tier_in_shop.enabled") == "on"

    # when a prefix with a comma is saved, then it is refused beside the field and nothing is saved
    _fill(fields, {"tier_in_shop.tag_prefix": "Treue, Club"})
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)
    assert response.status_code == 400
    field_id = program_form.field_id("tier_in_shop.tag_prefix")
    beside = re.search(rf'<p class="field-error" id="{field_id}-error">(.*?)</p>', response.get_data(as_text=True))
    assert beside and "must not contain a comma" in unescape(beside.group(1))
    assert _versions(session, shop_id) == []

    # when the owner turns it off with another prefix
    _fill(fields, {"tier_in_shop.tag_prefix": "Treue"})
    fields.pop("tier_in_shop.enabled")
    response = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then the program in force says so
    assert response.status_code == 302
    [(_, saved)] = _versions(session, shop_id)
    assert saved["tier_in_shop"] == {"enabled": False, "tag_prefix": "Treue"}
