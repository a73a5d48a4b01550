"""The admin's customer search: any part of the e-mail or name, or an order number."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.loyalty.customers import upsert_customer
from app.db import session_scope
from app.models import Shop
from connectors import types as ct
from tests import factories
from tests.app.test_admin import _signed_in


def _customers(make_shop) -> None:  # type: ignore[no-untyped-def]
    """Anna (Shopify order #1001, platform id 450789469), Jana (WooCommerce order 61), Ben (no orders)."""
    shopify = make_shop("shopify")
    woo = make_shop("woocommerce")
    factories.apply(shopify, replace(factories.order("450789469", "10.00", email="anna@example.test", customer_id="c1"),
                                     number="#1001"))
    factories.apply(woo, replace(factories.order("61", "25.00", email="jana@shop.example", customer_id="w7"),
                                 number="61"))
    with session_scope() as s:
        upsert_customer(s, s.get(Shop, shopify), ct.Customer(id="c2", email="ben.beispiel@mail.example",
                                                             first_name="Ben", last_name="Beispiel"))


def _found(client, q: str) -> list[str]:  # type: ignore[no-untyped-def]
    html = client.get("/admin/customers", query_string={"q": q}).get_data(as_text=True)
    return [e for e in ("anna@example.test", "jana@shop.example", "ben.beispiel@mail.example") if e in html]


@pytest.mark.parametrize("_case, q, expected", [
    ("the README's hint: the domain part", "example.test", ["anna@example.test"]),
    ("the middle of an address, another case", "BEISPIEL@MAIL", ["ben.beispiel@mail.example"]),
    ("the start still works", "jana@", ["jana@shop.example"]),
    ("a first name", "ben", ["ben.beispiel@mail.example"]),
    ("first and last name", "Ben Beispiel", ["ben.beispiel@mail.example"]),
    ("a Shopify order number as the customer knows it", "#1001", ["anna@example.test"]),
    ("the same number without the #", "1001", ["anna@example.test"]),
    ("Shopify's order id", "450789469", ["anna@example.test"]),
    ("a WooCommerce order number", "61", ["jana@shop.example"]),
    ("a WooCommerce order number with a #", "#61", ["jana@shop.example"]),
    ("an order that does not exist", "#9999", []),
    ("LIKE wildcards are literal", "%_", []),
])
def test_search_finds_customers_by_any_part_of_email_name_or_order(_case, q, expected, client, session, make_shop):
    # given customers in two shops, one with a name and two with orders, and staff signed in
    _customers(make_shop)
    _signed_in(client, session)

    # when staff search
    found = _found(client, q)

    # then exactly the customers meant are listed
    assert found == expected


def test_search_without_match_says_what_was_searched(client, session, make_shop):
    # given customers, and staff signed in
    _customers(make_shop)
    _signed_in(client, session)

    # when nothing matches
    html = client.get("/admin/customers?q=nobody").get_data(as_text=True)

    # then the page says so
    assert "No customer whose e-mail or name contains “nobody”" in html
