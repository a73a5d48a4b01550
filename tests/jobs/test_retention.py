"""The retention sweep empties old delivery bodies (personal data) and keeps everything else.

On SQLite and PostgreSQL, with deliveries posted through the real endpoint and processed by a
real RQ worker. Age is given to the sweep as `now`, days after the deliveries arrived.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from app.db import session_scope
from app.models import DeliveryStatus, LedgerEntry, WebhookDelivery, utcnow
from jobs.deliveries import purge_delivery_bodies
from tests.conftest import fixture_bytes

EMAIL = "bob.norman@mail.example.com"  # the customer of tests/fixtures/shopify/orders_paid.json


def _deliveries() -> dict[int, tuple[DeliveryStatus, bytes, dict, bool]]:  # type: ignore[type-arg]
    with session_scope() as s:
        return {d.id: (d.status, d.body, d.headers, d.purged_at is not None)
                for d in s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))}


def _paid(post_webhook, event_id: str) -> None:  # type: ignore[no-untyped-def]
    body = fixture_bytes("shopify", "orders_paid.json")
    assert post_webhook("shopify", "orders/paid", body, event_id=event_id).status_code == 200


def _balance(runner) -> tuple[int, int, list[int | None]]:  # type: ignore[no-untyped-def]
    shown = json.loads(runner.invoke(args=["customers", "show", "--shop", "demo-laden.myshopify.com",
                                           "--email", EMAIL, "--json"]).output)
    return shown["pending"], shown["available"], [e.get("delivery") for e in shown["ledger"]]


def test_old_handled_deliveries_lose_their_body_and_nothing_else(make_shop, post_webhook, work, runner):
    # given a processed paid order and a failed (malformed) delivery, both handled today
    make_shop("shopify")
    _paid(post_webhook, "paid-1")
    assert post_webhook("shopify", "orders/paid", {"id": 2}, event_id="broken-1").status_code == 200
    work()
    processed, failed = sorted(_deliveries())
    before = _balance(runner)
    assert _deliveries()[failed][0] == DeliveryStatus.FAILED

    # when the sweep runs 1 day later, then 31 days later (30 days retention by default)
    early = purge_delivery_bodies(now=utcnow() + timedelta(days=1))
    late = purge_delivery_bodies(now=utcnow() + timedelta(days=31))

    # then nothing is emptied early; later both bodies and headers are gone, the rows stay
    assert early == 0 and late == 2
    rows = _deliveries()
    assert rows[processed] == (DeliveryStatus.PROCESSED, b"", {}, True)
    assert rows[failed] == (DeliveryStatus.FAILED, b"", {}, True)
    # and the points and the ledger's reference to its delivery are unchanged
    assert _balance(runner) == before and before[2] == [processed]
    with session_scope() as s:
        assert s.scalar(select(LedgerEntry.delivery_id).where(LedgerEntry.reason == "earn")) == processed

    # and the same delivery posted again is still a duplicate (its dedupe key stayed)
    _paid(post_webhook, "paid-1")
    assert len(_deliveries()) == 2


def test_a_delivery_still_waiting_holds_the_sweep_until_it_is_processed(make_shop, post_webhook, work):
    # given one processed delivery, then one still waiting for a worker, then another processed one
    make_shop("shopify")
    _paid(post_webhook, "paid-1")
    work()
    post_webhook("shopify", "orders/paid", {"id": 2}, event_id="waiting")
    first, waiting = sorted(_deliveries())
    later = utcnow() + timedelta(days=31)

    # when the sweep runs while the second still waits
    assert purge_delivery_bodies(now=later) == 1

    # then only the one before it is emptied; the waiting body is kept for its worker
    rows = _deliveries()
    assert rows[first][3] is True and rows[waiting][3] is False and rows[waiting][1] != b""

    # and once it is handled, the next run empties it, and a run after that finds nothing new
    work()
    assert purge_delivery_bodies(now=later) == 1
    assert purge_delivery_bodies(now=later) == 0
    assert all(purged for *_, purged in _deliveries().values())


def test_the_sweep_walks_in_batches(make_shop, post_webhook, work):
    # given five processed deliveries
    make_shop("shopify")
    for n in range(5):
        body = json.loads(fixture_bytes("shopify", "orders_paid.json"))
        body["id"] = 1000 + n
        assert post_webhook("shopify", "orders/paid", body, event_id=f"paid-{n}").status_code == 200
    work()

    # when the sweep reads two rows at a time
    purged = purge_delivery_bodies(now=utcnow() + timedelta(days=31), batch_size=2)

    # then it still empties all five
    assert purged == 5
    assert all(purged for *_, purged in _deliveries().values())


def test_zero_days_keeps_every_body(make_shop, post_webhook, work, monkeypatch):
    # given a shop that keeps delivery bodies (DELIVERY_RETENTION_DAYS=0)
    monkeypatch.setenv("DELIVERY_RETENTION_DAYS", "0")
    from app import config

    config.settings(reload=True)  # as a worker started with it would have it
    make_shop("shopify")
    _paid(post_webhook, "paid-1")
    work()

    # when the sweep runs a year later
    # then nothing is emptied
    assert purge_delivery_bodies(now=utcnow() + timedelta(days=365)) == 0
    assert not any(purged for *_, purged in _deliveries().values())


def test_a_purged_delivery_cannot_be_replayed(make_shop, post_webhook, work, runner):
    # given a failed delivery whose body the sweep removed
    make_shop("shopify")
    post_webhook("shopify", "orders/paid", {"id": 2}, event_id="broken-1")
    work()
    [delivery_id] = _deliveries()
    purge_delivery_bodies(now=utcnow() + timedelta(days=31))

    # when support replays it from the command line
    result = runner.invoke(args=["deliveries", "replay", str(delivery_id)])

    # then it is refused with the reason, and the delivery stays failed
    assert result.exit_code == 1
    assert "cannot be replayed: its body was removed" in result.output
    assert _deliveries()[delivery_id][0] == DeliveryStatus.FAILED
