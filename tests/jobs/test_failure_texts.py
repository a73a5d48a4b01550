"""A delivery's failure text says what went wrong, never the data it was about, and the retention
sweep empties it with the body (issue 19)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from app.db import session_scope
from app.models import Customer, DeliveryStatus, WebhookDelivery, utcnow
from jobs.deliveries import failure_text, purge_delivery_bodies


def test_a_database_error_keeps_neither_parameters_nor_detail(make_shop):
    # given a real unique-key violation whose statement carries an e-mail
    shop = make_shop("shopify")
    with session_scope() as s:
        s.add(Customer(shop_id=shop, platform_id="7", email="anna.secret@example.test"))
    with pytest.raises(IntegrityError) as caught, session_scope() as s:
        s.execute(text("INSERT INTO customers (shop_id, platform_id, email, created_at, updated_at) "
                       "VALUES (:shop, '7', :email, :now, :now)"),
                  {"shop": shop, "email": "anna.secret@example.test", "now": utcnow()})

    # when it becomes a failure text
    shown = failure_text(caught.value)

    # then the error class and its first line are there, and the e-mail is not (on both databases)
    assert shown.startswith("IntegrityError (")
    assert "anna.secret" not in shown and "anna.secret" not in str(caught.value)


def test_the_retention_sweep_empties_failure_texts_with_the_bodies(make_shop, monkeypatch):
    # given a failed delivery received long ago, with its reason
    shop = make_shop("shopify")
    with session_scope() as s:
        s.add(WebhookDelivery(shop_id=shop, platform="shopify", topic="orders/paid", dedupe_key="k-1",
                              headers={"X": "y"}, body=b'{"email": "anna@example.test"}', status=DeliveryStatus.FAILED,
                              error="orders/paid: email is not a string", attempts=1,
                              received_at=utcnow() - timedelta(days=40)))

    # when the retention sweep runs
    assert purge_delivery_bodies() == 1

    # then body, headers and the failure text are gone, and the row stays
    with session_scope() as s:
        row = s.scalars(select(WebhookDelivery)).one()
        assert (row.body, row.headers, row.error, row.status) == (b"", {}, None, DeliveryStatus.FAILED)
