"""Owner work in the admin: comparing and restoring program versions, and CSV exports of the
customers with balances and of the ledger for a period."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import datetime, timezone
from html import unescape

import pytest
import time_machine
from sqlalchemy import select

from app.db import session_scope
from app.loyalty.customers import upsert_customer
from app.models import ProgramVersion, Shop, StaffAuditEntry, StaffRole
from app.web.staff import create_staff, grant_role
from connectors import types as ct
from tests import factories
from tests.app.test_admin import INSTANT, NO_EXTRAS, STAFF_PASSWORD, _csrf_token, _sign_in, _signed_in

SUPPORT = "support-only@stammkunde.example"


def _versions(session, shop_id: int) -> list[tuple[int, dict]]:  # type: ignore[no-untyped-def]
    session.expire_all()
    rows = session.execute(select(ProgramVersion.version, ProgramVersion.document)
                           .where(ProgramVersion.shop_id == shop_id).order_by(ProgramVersion.version)).all()
    session.commit()
    return [(v, d) for v, d in rows]


def _support_of(shop_id: int) -> None:
    with session_scope() as s:
        user = create_staff(s, SUPPORT, STAFF_PASSWORD)
        user.language = "en"
        grant_role(s, shop_id=shop_id, staff_id=user.id, role=StaffRole.SUPPORT, adjust_limit=10, granted_by="test")


def test_owner_compares_two_versions_and_restores_the_older_one(client, session, make_shop):
    # given a program saved twice: 1 point per euro, then 2
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": {"points_per_unit": "1"}})
    factories.program(shop_id, {**NO_EXTRAS, "earning": {"points_per_unit": "2"}})
    [(_, first), (_, second)] = _versions(session, shop_id)
    _signed_in(client, session)

    # when the owner compares them, then restores version 1
    diff = unescape(client.get(f"/admin/shops/{shop_id}/program/diff?a=1&b=2").get_data(as_text=True))
    page = client.get(f"/admin/shops/{shop_id}/program/1").get_data(as_text=True)
    restored = client.post(f"/admin/shops/{shop_id}/program/1/restore", data={"csrf_token": _csrf_token(page)})

    # then the comparison shows the changed rule, and version 3 is version 1's document again
    assert re.search(r'<span class="remove">-\s+"points_per_unit": "1(\.0+)?",?</span>', diff)
    assert re.search(r'<span class="add">\+\s+"points_per_unit": "2(\.0+)?",?</span>', diff)
    assert restored.status_code == 302
    versions = _versions(session, shop_id)
    assert [v for v, _ in versions] == [1, 2, 3]
    assert versions[2][1] == first != second
    assert "Version 1 is in force again, as version 3." in client.get(restored.headers["Location"]).get_data(as_text=True)
    with session_scope() as s:
        entry = s.scalars(select(StaffAuditEntry).where(StaffAuditEntry.action == "program.restore")).one()
        assert (entry.before, entry.after) == ({"version": 2}, {"version": 3, "restored": 1})


def test_support_cannot_restore_a_version_or_export(client, session, make_shop):
    # given two program versions and a support user
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS})
    factories.program(shop_id, {**NO_EXTRAS, "earning": {"points_per_unit": "2"}})
    _support_of(shop_id)
    _sign_in(client, SUPPORT)
    page = client.get(f"/admin/shops/{shop_id}/program/1").get_data(as_text=True)

    # when they try to restore version 1 and to download the exports
    restore = client.post(f"/admin/shops/{shop_id}/program/1/restore", data={"csrf_token": _csrf_token(page)})
    exports = [client.get(f"/admin/shops/{shop_id}/exports{p}").status_code
               for p in ("", "/customers.csv", "/ledger.csv?from=2026-11-01&to=2026-11-30")]

    # then everything is refused, no button was offered, and the program stays at version 2
    assert 'id="restore-form"' not in page
    assert restore.status_code == 403 and exports == [403, 403, 403]
    assert [v for v, _ in _versions(session, shop_id)] == [1, 2]


def _shop_with_ledger(make_shop) -> int:  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT})
    # 31 Oct 23:30 UTC is 1 Nov 00:30 in Berlin; 30 Nov 23:30 UTC is 1 Dec 00:30 in Berlin
    for oid, amount, email, paid in [("1", "10.00", "erste@example.test", datetime(2026, 10, 31, 23, 30, tzinfo=timezone.utc)),
                                     ("2", "20.00", "zweite@example.test", datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)),
                                     ("3", "30.00", "dritte@example.test", datetime(2026, 11, 30, 23, 30, tzinfo=timezone.utc))]:
        with time_machine.travel(paid, tick=False):  # the ledger records when it learnt of the payment
            factories.apply(shop_id, replace(factories.order(oid, amount, email=email, customer_id=f"c{oid}",
                                                             paid_at=paid), number=f"#{oid}"))
    with session_scope() as s:
        upsert_customer(s, s.get(Shop, shop_id), ct.Customer(id="c2", email="zweite@example.test",
                                                             first_name="=HYPERLINK(\"http://x\")", last_name="Zweite"))
    return shop_id


def test_customers_export_lists_balances_and_neutralises_formulas(client, session, make_shop):
    # given three customers with points, one whose first name looks like a spreadsheet formula
    shop_id = _shop_with_ledger(make_shop)
    _signed_in(client, session)

    # when the owner downloads the customers
    response = client.get(f"/admin/shops/{shop_id}/exports/customers.csv")

    # then each customer is a row with their balance, and the formula is text
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))}
    assert {e: r["available"] for e, r in rows.items()} == {
        "erste@example.test": "10", "zweite@example.test": "20", "dritte@example.test": "30"}
    assert rows["zweite@example.test"]["first_name"] == "'=HYPERLINK(\"http://x\")"
    with session_scope() as s:
        assert s.scalars(select(StaffAuditEntry.action)).all() == ["export.customers"]


@pytest.mark.parametrize("_case, period, expected", [
    ("November in Berlin: from 1 Nov 00:00 to 30 Nov 24:00", "from=2026-11-01&to=2026-11-30", ["#1", "#2"]),
    ("one day", "from=2026-11-15&to=2026-11-15", ["#2"]),
    ("December's first day holds the last order", "from=2026-12-01&to=2026-12-01", ["#3"]),
])
def test_ledger_export_covers_the_days_asked_for_in_the_shops_zone(_case, period, expected, client, session, make_shop):
    # given orders on 1 Nov 00:30, 15 Nov and 1 Dec 00:30 Berlin time
    shop_id = _shop_with_ledger(make_shop)
    _signed_in(client, session)

    # when the owner downloads the ledger for a period
    response = client.get(f"/admin/shops/{shop_id}/exports/ledger.csv?{period}")

    # then exactly that period's entries are in it, with times in Berlin and why each exists
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert [r["order"] for r in rows] == expected
    assert all(r["time"].endswith("+01:00") for r in rows)
    assert all(r["reason"] == "earn" and r["why"] for r in rows)


@pytest.mark.sqlite_only
def test_ledger_export_refuses_a_period_that_is_not_one(client, session, make_shop):
    # given an owner
    shop_id = make_shop("shopify")
    _signed_in(client, session)

    # when the period is missing or backwards
    missing = client.get(f"/admin/shops/{shop_id}/exports/ledger.csv")
    backwards = client.get(f"/admin/shops/{shop_id}/exports/ledger.csv?from=2026-11-30&to=2026-11-01")

    # then the exports page says why, and nothing is downloaded
    assert missing.status_code == backwards.status_code == 302
    assert "The period ends before it starts." in client.get(backwards.headers["Location"]).get_data(as_text=True)
