"""Finding customers (app.loyalty.directory): search by words, order numbers and codes, and the
customer list with filters, sorts and keyset pages, on SQLite and PostgreSQL (trigram indexes)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from app.db import session_scope
from app.loyalty import directory
from app.loyalty.customers import find_by_email
from app.loyalty.redemptions import redeem
from app.models import CodeStatus, Customer, IssuedCode, Shop, utcnow
from tests import factories

PROGRAM = {"earning": {"return_window_days": 0}, "tiers": {"levels": [{"name": "Bronze", "threshold": "0"},
                                                                      {"name": "Gold", "threshold": "500"}]},
           "second_purchase": {"enabled": False}, "referral": {"enabled": False}}
PEOPLE = [  # (platform id, e-mail, first, last, order amount)
    ("1", "anna.schmidt@example.test", "Anna", "Schmidt", "600.00"),
    ("2", "ben@shop.example", "Ben", "Müller", "20.00"),
    ("3", "cora@example.test", "Cora", "Schmidtke", "30.00"),
    ("4", "dora_x@example.test", None, None, "5.00"),
    ("5", "emil@example.test", "Emil", "Anders", "0.50"),
]


@pytest.fixture
def shop(make_shop):  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify")
    other = make_shop("woocommerce")
    factories.program(shop_id, PROGRAM)
    for i, (pid, email, first, last, amount) in enumerate(PEOPLE):
        factories.apply(shop_id, factories.order(f"10{i}", amount, customer_id=pid, email=email,
                                                 paid_at=utcnow() - timedelta(days=10 - i)))
        with session_scope() as s:
            s.execute(update(Customer).where(Customer.email == email).values(first_name=first, last_name=last))
    factories.apply(other, factories.order("100", "9.00", customer_id="1", email="anna.schmidt@example.test"))
    return shop_id


def _search(shop_id: int, query: str) -> list[str]:
    with session_scope() as s:
        return [f.customer.email for f in directory.search_customers(s, query, 10, shop_ids=frozenset({shop_id}))]


@pytest.mark.parametrize(("_case", "query", "expected"), [
    ("part of a name, any case", "schmidt", ["anna.schmidt@example.test", "cora@example.test"]),
    ("every word must match", "anna SCHMIDT", ["anna.schmidt@example.test"]),
    ("first and last name across fields", "cora schmidtke", ["cora@example.test"]),
    ("part of the e-mail", "shop.exam", ["ben@shop.example"]),
    ("an umlaut", "müller", ["ben@shop.example"]),
    ("a LIKE wildcard is a plain character", "dora_", ["dora_x@example.test"]),
    ("a percent sign matches nothing", "%", []),
    ("the order number", "#102", ["cora@example.test"]),
    ("the order number without #", "103", ["dora_x@example.test"]),
    ("nothing", "zzz", []),
])
def test_search(shop, _case, query, expected):
    assert _search(shop, query) == expected


def test_search_by_a_reward_code_in_any_case(shop):
    with session_scope() as s:
        anna = find_by_email(s, shop, "anna.schmidt@example.test")
        redemption = redeem(s, s.get(Shop, shop), anna, "5 € Rabatt", source="staff", actor="test")
        code = s.get(IssuedCode, redemption.issued_code_id).code

    assert _search(shop, code.lower()) == ["anna.schmidt@example.test"]


def test_search_returns_balances_and_stays_in_the_given_shops(shop):
    with session_scope() as s:
        found = directory.search_customers(s, "anna", 10, shop_ids=frozenset({shop}))
        everywhere = directory.search_customers(s, "anna", 10)

    assert [(f.customer.email, f.available, f.pending) for f in found] == [("anna.schmidt@example.test", 600, 0)]
    assert sorted(f.shop.platform.value for f in everywhere) == ["shopify", "woocommerce"]


def _emails(page: directory.Page) -> list[str]:
    return [f.customer.email for f in page.rows]


def test_customer_list_pages_by_keyset_in_email_order(shop):
    with session_scope() as s:
        first = directory.list_customers(s, shop, limit=2)
        second = directory.list_customers(s, shop, limit=2, after=first.next_after)
        third = directory.list_customers(s, shop, limit=2, after=second.next_after)

    assert _emails(first) == ["anna.schmidt@example.test", "ben@shop.example"]
    assert _emails(second) == ["cora@example.test", "dora_x@example.test"]
    assert _emails(third) == ["emil@example.test"] and third.next_after is None


def test_customer_list_newest_and_oldest_first(shop):
    with session_scope() as s:
        newest = directory.list_customers(s, shop, sort="created", descending=True, limit=2)
        older = directory.list_customers(s, shop, sort="created", descending=True, limit=10, after=newest.next_after)
        oldest = directory.list_customers(s, shop, sort="created", limit=1)

    assert _emails(newest) == ["emil@example.test", "dora_x@example.test"]
    assert _emails(older) == ["cora@example.test", "ben@shop.example", "anna.schmidt@example.test"]
    assert _emails(oldest) == ["anna.schmidt@example.test"]


def test_customer_list_filters(shop):
    with session_scope() as s:
        s.execute(update(Customer).where(Customer.email == "ben@shop.example").values(banned_at=utcnow(), ban_reason="x"))
        s.execute(update(Customer).where(Customer.email == "emil@example.test").values(tier="Gold"))
        cora = find_by_email(s, shop, "cora@example.test")
        s.add(IssuedCode(shop_id=shop, customer_id=cora.id, purpose="winback", source_key="t", code="SK-FAILED",
                         spec={}, status=CodeStatus.FAILED, error="refused"))
    with session_scope() as s:
        banned = directory.list_customers(s, shop, banned=True)
        gold = directory.list_customers(s, shop, tier="Gold")
        with_points = directory.list_customers(s, shop, has_points=True)
        failed = directory.list_customers(s, shop, failed_codes=True)

    assert _emails(banned) == ["ben@shop.example"]
    # anna reached Gold by her 600 € order; emil was given it
    assert _emails(gold) == ["anna.schmidt@example.test", "emil@example.test"]
    # emil's 0.50 € order earned nothing
    assert _emails(with_points) == ["anna.schmidt@example.test", "ben@shop.example", "cora@example.test",
                                    "dora_x@example.test"]
    assert _emails(failed) == ["cora@example.test"]


def test_customer_list_refuses_a_foreign_cursor_and_sort(shop):
    with session_scope() as s:
        with pytest.raises(ValueError, match="not a cursor"):
            directory.list_customers(s, shop, after="abc")
        with pytest.raises(ValueError, match="unknown sort"):
            directory.list_customers(s, shop, sort="balance")
        with pytest.raises(ValueError, match="not a cursor"):
            directory.list_customers(s, shop, sort="created", after="0:5:yesterday")


def test_customer_list_pages_forward_and_back_in_every_sort_with_empty_values_last(shop):
    # given Dora without a name and Emil without points (the sort's empty values)
    every: dict[tuple[str, bool], list[str]] = {}
    with session_scope() as s:
        for sort in directory.SORTS:
            for descending in (False, True):
                # when the list is read two rows a page to the end, then back to the start
                forward, page = [], directory.list_customers(s, shop, sort=sort, descending=descending, limit=2)
                pages = [page]
                while page.next_after:
                    page = directory.list_customers(s, shop, sort=sort, descending=descending, limit=2,
                                                    after=page.next_after)
                    pages.append(page)
                forward = [e for p in pages for e in _emails(p)]
                back = [_emails(page)]
                while page.previous_before:
                    page = directory.list_customers(s, shop, sort=sort, descending=descending, limit=2,
                                                    before=page.previous_before)
                    back.insert(0, _emails(page))
                # then every customer is listed once, and walking back gives the same pages
                assert sorted(forward) == sorted(p[1] for p in PEOPLE), (sort, descending)
                assert back == [_emails(p) for p in pages], (sort, descending)
                assert pages[0].previous_before is None
                every[(sort, descending)] = forward

    assert every[("name", False)] == ["emil@example.test", "ben@shop.example", "anna.schmidt@example.test",
                                      "cora@example.test", "dora_x@example.test"]
    assert every[("name", True)] == ["cora@example.test", "anna.schmidt@example.test", "ben@shop.example",
                                     "emil@example.test", "dora_x@example.test"]
    # balances 600, 20, 30, 5 and 0 points (Emil's 0.50 € earned nothing)
    assert every[("available", True)] == ["anna.schmidt@example.test", "cora@example.test", "ben@shop.example",
                                          "dora_x@example.test", "emil@example.test"]
    assert every[("available", False)] == list(reversed(every[("available", True)]))
