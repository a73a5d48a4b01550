"""Bringing balances over from the loyalty app a merchant leaves (`flask points import`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.loyalty.imports import ImportFormatError, read_balances
from app.models import Customer, IssuedCode, LedgerEntry
from tests.factories import program

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"


@pytest.mark.parametrize(("_case", "name", "rows", "problems"), [
    ("smile", "smile.csv", [("anna@example.test", 1200), ("ben@example.test", 350), ("nobody@example.test", 99)], []),
    ("loyaltylion", "loyaltylion.csv", [("anna@example.test", 1200), ("ben@example.test", 350)],
     [(4, "points must be a whole number, got '12.5'")]),
    ("yith, no header", "yith.csv", [("anna@example.test", 1200), ("ben@example.test", 350)], []),
    ("german spreadsheet", "generic_de.csv", [("anna@example.test", 1200), ("ben@example.test", 350)],
     [(4, "the same e-mail as line 3"), (5, "no valid e-mail")]),
])
def test_each_export_layout_is_read(_case, name, rows, problems):
    # given an export of one of the layouts we accept
    text = (SAMPLES / name).read_text()

    # when it is read
    read, bad = read_balances(text)

    # then its rows and its problems are as a person reading the file would see them
    assert [(r.email, r.points) for r in read] == rows
    assert [(p.line, p.reason) for p in bad] == problems


def test_a_file_without_email_and_points_columns_is_refused():
    with pytest.raises(ImportFormatError, match="no e-mail and points columns"):
        read_balances("name,amount\nAnna,12\n")


def test_import_gives_each_customer_one_entry_once_and_reports_the_rest(make_shop, runner):
    # given a shop whose customers Anna and Ben exist, and an export from the previous app
    shop = make_shop("shopify")
    program(shop, {"referral": {"enabled": True}})
    with session_scope() as s:
        s.add_all([Customer(shop_id=shop, platform_id="1", email="anna@example.test"),
                   Customer(shop_id=shop, platform_id="2", email="ben@example.test")])
    sample = str(SAMPLES / "generic_de.csv")
    args = ["points", "import", "--shop", "demo-laden.myshopify.com", "--file", sample]

    # when support tries it first, then imports
    dry = runner.invoke(args=[*args, "--dry-run"])
    with session_scope() as s:
        assert s.scalars(select(LedgerEntry)).all() == []
    real = runner.invoke(args=args)
    again = runner.invoke(args=args)

    # then the dry run said what would happen and wrote nothing, the import gave the points once
    assert dry.exit_code == 0, dry.output
    assert "would import 2 customers, 1550 points" in dry.output
    assert "line 4: ben@example.test: the same e-mail as line 3" in dry.output
    assert "line 5: not-an-email: no valid e-mail" in dry.output
    assert "imported 2 customers, 1550 points; 0 imported before" in real.output
    assert "imported 0 customers, 0 points; 2 imported before" in again.output
    with session_scope() as s:
        entries = {e.customer_id: e for e in s.scalars(select(LedgerEntry).where(LedgerEntry.reason == "import"))}
        anna = s.scalars(select(Customer).where(Customer.platform_id == "1")).one()
        assert entries[anna.id].delta == 1200 and entries[anna.id].available_delta == 1200
        assert sum(e.delta for e in entries.values()) == 1550
        # and Anna's tier and her referral code from the old app came along
        assert anna.tier == "Gold" and anna.referral_code == "FREUND-ANNA10"
        code = s.scalars(select(IssuedCode).where(IssuedCode.customer_id == anna.id)).one()
        assert (code.purpose, code.code, code.status.value) == ("referral", "FREUND-ANNA10", "created")
    # and her ledger explains the entry
    shown = runner.invoke(args=["customers", "show", "--shop", "demo-laden.myshopify.com", "--email", "anna@example.test"])
    assert "Balance brought over from the previous loyalty program (generic_de.csv, line 2)" in shown.output


def test_rows_that_match_no_customer_are_reported(make_shop, runner):
    # given a shop that knows only Anna
    shop = make_shop("shopify")
    with session_scope() as s:
        s.add(Customer(shop_id=shop, platform_id="1", email="anna@example.test"))

    # when a Smile export with two strangers is imported
    result = runner.invoke(args=["points", "import", "--shop", "demo-laden.myshopify.com",
                                 "--file", str(SAMPLES / "smile.csv"), "--format", "smile"])

    # then Anna got her points and the others are listed with the reason
    assert "imported 1 customers, 1200 points" in result.output
    assert "line 3: ben@example.test: no customer of the shop has this e-mail" in result.output
    assert "line 4: nobody@example.test: no customer of the shop has this e-mail" in result.output
