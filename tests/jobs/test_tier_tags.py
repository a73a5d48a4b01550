"""Tiers in the shop (`jobs.tier_tags`): a member's tier as a Shopify customer tag or a WooCommerce
customer meta, written by the real worker, on SQLite and PostgreSQL.

The Shopify tests answer through `responses` with a shop that keeps each customer's tags (the
documents are the client's, checked against the pinned schema in
tests/connectors/shopify/test_graphql_schema.py); the WooCommerce ones answer like the captured
customer (tests/fixtures/woocommerce_api/customers_get__with_meta.json); the ordering tests use
the fake connector, which records every call.
"""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import pytest
import responses
from sqlalchemy import select

from app.db import session_scope
from app.loyalty import tier_tags
from app.models import Customer, CustomerTierTag, TierTagStatus
from connectors.errors import PermanentError, RateLimitedError, TransientError
from jobs.members import review_tiers
from jobs.tier_tags import requeue_tier_tags, resync, sync_tier_tags
from tests.conftest import FIXTURES, WOO_DOMAIN
from tests.connectors.fake import install_fake_connector
from tests.factories import T0, apply, order, program

GRAPHQL = "https://demo-laden.myshopify.com/admin/api/2026-07/graphql.json"
COST = {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0}}
MEMBER = "207119551"
GID = f"gid://shopify/Customer/{MEMBER}"
WOO_CREDS = {"consumer_key": "ck_test", "consumer_secret": "cs_test"}
# Silber from 250 €, Gold from 750 €: nothing else that would call the shop.
PROGRAM = {"second_purchase": {"enabled": False}, "referral": {"enabled": False},
           "earning": {"return_window_days": 0},
           "tiers": {"levels": [{"name": "Silber", "threshold": "250"}, {"name": "Gold", "threshold": "750"}]}}


class ShopTags:
    """A Shopify shop's customer tags behind `responses`: tagsAdd/tagsRemove change them."""

    def __init__(self, mock: responses.RequestsMock, **tags: set[str]) -> None:
        self.tags: dict[str, set[str]] = {GID: set(tags.get("member", set()))}
        self.sent: list[tuple[str, list[str]]] = []
        mock.add_callback(responses.POST, GRAPHQL, callback=self.answer)

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        from connectors.shopify import client

        body = json.loads(request.body)
        root = next(name for name in ("tagsAdd", "tagsRemove") if body["query"] == client.DOCUMENTS[name])
        owner, tags = body["variables"]["id"], body["variables"]["tags"]
        self.sent.append((root, tags))
        held = self.tags.setdefault(owner, set())
        held.update(tags) if root == "tagsAdd" else held.difference_update(tags)
        return 200, {}, json.dumps({"data": {root: {"node": {"id": owner}, "userErrors": []}},
                                    "extensions": {"cost": COST}})


def _shopify(make_shop, extra: dict[str, Any] | None = None) -> int:  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify", credentials={"access_token": "shpat_test"})
    program(shop_id, {**PROGRAM, **(extra or {})})
    return shop_id


def _row(customer_platform_id: str = MEMBER) -> CustomerTierTag:
    with session_scope() as s:
        customer = s.scalars(select(Customer).where(Customer.platform_id == customer_platform_id)).one()
        row = s.get(CustomerTierTag, customer.id)
        assert row is not None
        s.expunge(row)
        return row


def _sync(work) -> int:  # type: ignore[no-untyped-def]
    """What the clock and the worker do: the sweep enqueues, the worker writes."""
    enqueued = requeue_tier_tags()
    work()
    return enqueued


def test_upgrade_adds_our_tag_and_a_downgrade_removes_only_ours(make_shop, work, time_machine):
    # given a Shopify member who carries a tag of the merchant's own
    time_machine.move_to(T0, tick=False)
    shop_id = _shopify(make_shop)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        shop = ShopTags(mock, member={"VIP"})

        # when their first order reaches Silber and the clock's sweep and the worker run
        apply(shop_id, order("1", "300.00", customer_id=MEMBER))
        assert _sync(work) == 1

        # then the shop shows our tag beside theirs, and the row says written
        assert shop.tags[GID] == {"VIP", "Stammkunde Silber"}
        row = _row()
        assert (row.status, row.written, row.error) == (TierTagStatus.WRITTEN, "Stammkunde Silber", None)

        # when a second order reaches Gold: the new tag, then our old one off (two calls)
        apply(shop_id, order("2", "500.00", customer_id=MEMBER, paid_at=T0 + timedelta(days=1)))
        _sync(work)
        assert shop.tags[GID] == {"VIP", "Stammkunde Gold"}
        assert shop.sent[1:] == [("tagsAdd", ["Stammkunde Gold"]), ("tagsRemove", ["Stammkunde Silber"])]

        # when both orders are refunded and the period-end review takes the tier away
        apply(shop_id, order("1", "300.00", customer_id=MEMBER, refunds=(("r1", "300.00"),),
                             updated_at=T0 + timedelta(days=2)))
        apply(shop_id, order("2", "500.00", customer_id=MEMBER, paid_at=T0 + timedelta(days=1),
                             refunds=(("r2", "500.00"),), updated_at=T0 + timedelta(days=2)))
        time_machine.move_to(T0 + timedelta(days=400), tick=False)
        assert review_tiers() == 1
        _sync(work)

    # then only our tag went; the merchant's own stays
    assert shop.tags[GID] == {"VIP"}
    assert shop.sent[-1] == ("tagsRemove", ["Stammkunde Gold"])
    row = _row()
    assert (row.status, row.written) == (TierTagStatus.WRITTEN, None)

    # and a sweep with nothing waiting enqueues nothing
    assert requeue_tier_tags() == 0


def test_woocommerce_member_tier_is_customer_meta(make_shop, work, time_machine):
    # given a WooCommerce store that keeps customer meta as the captured store does
    time_machine.move_to(T0, tick=False)
    shop_id = make_shop("woocommerce", credentials=WOO_CREDS)
    program(shop_id, PROGRAM)
    sent: list[dict[str, Any]] = []

    def store(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        sent.append(body)
        customer = json.loads((FIXTURES / "woocommerce_api" / "customers_get__with_meta.json").read_bytes())
        customer["id"] = 7
        customer["meta_data"] += [{"id": 41, **m} for m in body["meta_data"]]
        return 200, {}, json.dumps(customer)

    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback(responses.PUT, f"{WOO_DOMAIN}/wp-json/wc/v3/customers/7", callback=store)
        # when a member reaches Gold, and later leaves every tier
        apply(shop_id, order("1", "800.00", customer_id="7"))
        _sync(work)
        apply(shop_id, order("1", "800.00", customer_id="7", refunds=(("r1", "800.00"),),
                             updated_at=T0 + timedelta(days=1)))
        time_machine.move_to(T0 + timedelta(days=400), tick=False)
        assert review_tiers() == 1
        _sync(work)

    # then the meta held the tier's name, then nothing
    assert sent == [{"meta_data": [{"key": "stammkunde_tier", "value": "Gold"}]},
                    {"meta_data": [{"key": "stammkunde_tier", "value": ""}]}]
    row = _row("7")
    assert (row.status, row.written) == (TierTagStatus.WRITTEN, None)


ARRIVALS = [
    order("1", "300.00", customer_id=MEMBER),
    order("2", "500.00", customer_id=MEMBER, paid_at=T0 + timedelta(hours=1)),
    order("2", "500.00", customer_id=MEMBER, paid_at=T0 + timedelta(hours=1)),  # a duplicate delivery
]


@pytest.mark.parametrize("arrival", list(itertools.permutations(range(3))), ids=str)
def test_duplicates_and_any_arrival_order_write_the_final_tier_once(make_shop, work, monkeypatch, arrival):
    # given a Shopify shop and a member's deliveries: two orders (Silber, then Gold together) and a duplicate
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = _shopify(make_shop)

    # when they arrive in this order before the worker writes
    for index in arrival:
        apply(shop_id, ARRIVALS[index])
    _sync(work)

    # then the shop got exactly one write: our Gold tag, nothing to remove
    assert [arg for op, _creds, arg in fake.calls] == [(MEMBER, "Stammkunde Gold", None)]
    assert fake.tier_labels == {MEMBER: {"Stammkunde Gold"}}

    # and more duplicates afterwards change nothing and call nothing
    apply(shop_id, ARRIVALS[2])
    apply(shop_id, ARRIVALS[0])
    assert _sync(work) == 0
    sync_tier_tags(shop_id)
    assert len(fake.calls) == 1


def test_a_change_during_the_write_is_written_next(make_shop, work, monkeypatch):
    # given a member reaching Silber, whose Gold order is processed while Silber is being written
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = _shopify(make_shop)
    apply(shop_id, order("1", "300.00", customer_id=MEMBER))
    write = fake.set_customer_tier

    def slow_write(credentials: Any, customer_id: str, label: str | None, *, previous: str | None) -> None:
        if label == "Stammkunde Silber":
            apply(shop_id, order("2", "500.00", customer_id=MEMBER, paid_at=T0 + timedelta(hours=1)))
        write(credentials, customer_id, label, previous=previous)

    monkeypatch.setattr(fake, "set_customer_tier", slow_write)

    # when the worker writes, then the row stays pending: Silber is written but is no longer the tier
    sync_tier_tags(shop_id)
    row = _row()
    assert (row.status, row.written) == (TierTagStatus.PENDING, "Stammkunde Silber")

    # and the next run moves the shop to Gold, removing our Silber tag
    sync_tier_tags(shop_id)
    assert fake.tier_labels == {MEMBER: {"Stammkunde Gold"}}
    assert _row().status == TierTagStatus.WRITTEN


@pytest.mark.parametrize(
    "_case, failure",
    [("server error or timeout", TransientError("shopify graphql: HTTP 503")),
     ("rate limited", RateLimitedError("shopify graphql: HTTP 429", retry_after=2))],
)
def test_transient_failures_retry_like_codes(make_shop, work, monkeypatch, redis_url, _case, failure):
    # given a member's first tier, and a shop that fails the first attempt
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = _shopify(make_shop)
    apply(shop_id, order("1", "300.00", customer_id=MEMBER))
    fake.fail("set_customer_tier", failure)

    # when the worker tries
    _sync(work)

    # then the job waits for its retry with backoff, the member is pending with the reason
    from redis import Redis
    from rq import Queue

    assert len(Queue("codes", connection=Redis.from_url(redis_url)).scheduled_job_registry.get_job_ids()) == 1
    row = _row()
    assert row.status == TierTagStatus.PENDING and str(failure) in (row.error or "")

    # and the retry writes the tag once; a late duplicate job calls nothing
    assert sync_tier_tags(shop_id) == 1
    assert sync_tier_tags(shop_id) == 0
    assert [arg for _op, _c, arg in fake.calls] == [(MEMBER, "Stammkunde Silber", None)] * 2
    row = _row()
    assert (row.status, row.error, row.attempts) == (TierTagStatus.WRITTEN, None, 2)


def test_shopify_429_and_5xx_answers_are_retried_until_written(make_shop, work, redis_url):
    # given Shopify answers 429, then 503, then takes the tag
    shop_id = _shopify(make_shop)
    apply(shop_id, order("1", "300.00", customer_id=MEMBER))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, GRAPHQL, status=429, headers={"Retry-After": "1"})
        mock.add(responses.POST, GRAPHQL, status=503)
        shop = ShopTags(mock)
        _sync(work)
        assert _row().status == TierTagStatus.PENDING
        with pytest.raises(TransientError):
            sync_tier_tags(shop_id)
        assert sync_tier_tags(shop_id) == 1

    # then the shop holds our tag once
    assert shop.tags[GID] == {"Stammkunde Silber"} and shop.sent == [("tagsAdd", ["Stammkunde Silber"])]


def test_a_refusal_is_recorded_with_why_and_the_others_go_on(make_shop, work, monkeypatch):
    # given two members; the shop no longer has the first
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = _shopify(make_shop)
    apply(shop_id, order("1", "300.00", customer_id="111", email="a@example.test"))
    apply(shop_id, order("2", "300.00", customer_id="222", email="b@example.test", paid_at=T0 + timedelta(hours=1)))
    fake.fail("set_customer_tier", PermanentError("tagsAdd: id: Customer does not exist"))

    # when the worker writes
    _sync(work)

    # then the first is failed with the shop's reason (no retry), the second written
    failed, written = _row("111"), _row("222")
    assert (failed.status, failed.error) == (TierTagStatus.FAILED, "tagsAdd: id: Customer does not exist")
    assert (written.status, written.written) == (TierTagStatus.WRITTEN, "Stammkunde Silber")
    assert requeue_tier_tags() == 0
    with session_scope() as s:
        assert tier_tags.counts(s, shop_id) == {"pending": 0, "failed": 1}


def test_a_guest_is_skipped_with_the_reason(make_shop, work, monkeypatch):
    # given a guest checkout that reaches Silber
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = _shopify(make_shop)
    apply(shop_id, order("1", "300.00", customer_id=None, email="gast@example.test"))

    # when the worker runs, then nothing is called and the row says why
    _sync(work)
    assert fake.calls == []
    with session_scope() as s:
        guest = s.scalars(select(Customer).where(Customer.email == "gast@example.test")).one()
        assert guest.tier == "Silber"
        row = s.get(CustomerTierTag, guest.id)
        assert (row.status, row.error) == (TierTagStatus.SKIPPED, tier_tags.GUEST_REASON)


def test_a_renamed_tier_and_prefix_replace_our_old_tag(make_shop, work, runner):
    # given a Silber member with our tag in the shop
    shop_id = _shopify(make_shop)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        shop = ShopTags(mock, member={"VIP"})
        apply(shop_id, order("1", "300.00", customer_id=MEMBER))
        _sync(work)
        assert shop.tags[GID] == {"VIP", "Stammkunde Silber"}

        # when the program renames Silber and the member's next order puts them in it
        renamed = {**PROGRAM, "tiers": {"levels": [{"name": "Silber Plus", "threshold": "250"},
                                                   {"name": "Gold", "threshold": "750"}]}}
        program(shop_id, renamed)
        apply(shop_id, order("2", "10.00", customer_id=MEMBER, paid_at=T0 + timedelta(hours=1)))
        _sync(work)

        # then our old tag is replaced by the new one
        assert shop.tags[GID] == {"VIP", "Stammkunde Silber Plus"}

        # when the prefix changes and the shop is re-synced
        program(shop_id, {**renamed, "tier_in_shop": {"tag_prefix": "Treue"}})
        result = runner.invoke(args=["shops", "sync-tiers", "--shop", "demo-laden.myshopify.com"])

    # then our tag carries the new prefix, and the merchant's own tag is still there
    assert result.exit_code == 0, result.output
    assert shop.tags[GID] == {"VIP", "Treue Silber Plus"}


def test_turned_off_writes_nothing_new_and_takes_our_tag_away(make_shop, work, monkeypatch):
    # given a Silber member whose tag is in the shop
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = _shopify(make_shop)
    apply(shop_id, order("1", "300.00", customer_id="111", email="a@example.test"))
    _sync(work)

    # when the setting is turned off, a new member reaches Silber and the first moves up
    program(shop_id, {**PROGRAM, "tier_in_shop": {"enabled": False}})
    apply(shop_id, order("2", "300.00", customer_id="222", email="b@example.test", paid_at=T0 + timedelta(hours=1)))
    apply(shop_id, order("3", "500.00", customer_id="111", email="a@example.test", paid_at=T0 + timedelta(hours=2)))
    _sync(work)

    # then the new member costs no call, and the first loses our tag (nothing else is written)
    assert [arg for _op, _c, arg in fake.calls] == [("111", "Stammkunde Silber", None),
                                                    ("111", None, "Stammkunde Silber")]
    assert fake.tier_labels == {"111": set()}


def test_sync_tiers_command_writes_every_member_again_and_resumes(make_shop, work, runner, monkeypatch):
    # given five Shopify members in the shop (their tags written), one of whose tags was removed by hand
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = _shopify(make_shop)
    for n in range(5):
        apply(shop_id, order(str(n), "300.00", customer_id=str(100 + n), email=f"k{n}@example.test",
                             paid_at=T0 + timedelta(hours=n)))
    _sync(work)
    fake.tier_labels["102"].clear()
    fake.calls.clear()
    monkeypatch.setattr("jobs.tier_tags.RESYNC_PAGE", 2)

    # when the command runs and the shop stops answering on the second page
    calls_before_failure = 3
    original = fake.set_customer_tier

    def flaky(credentials: Any, customer_id: str, label: str | None, *, previous: str | None) -> None:
        if len(fake.calls) == calls_before_failure:
            fake.calls.append(("set_customer_tier", credentials, (customer_id, "no answer", previous)))
            raise TransientError("shopify graphql: timeout")
        original(credentials, customer_id, label, previous=previous)

    monkeypatch.setattr(fake, "set_customer_tier", flaky)
    result = runner.invoke(args=["shops", "sync-tiers", "--shop", "demo-laden.myshopify.com"])

    # then it says how far it got and how to go on
    assert result.exit_code == 1
    assert "2/5 members, 2 written, 0 failed" in result.output
    assert "run the command again to go on" in result.output

    # when it runs again, it goes on from the third member and finishes
    monkeypatch.setattr(fake, "set_customer_tier", original)
    result = runner.invoke(args=["shops", "sync-tiers", "--shop", "demo-laden.myshopify.com"])
    assert result.exit_code == 0, result.output
    assert "5/5 members" in result.output
    assert "tiers of 5 members synced, 3 written, 0 failed" in result.output

    # and every member was written again, the page that stopped from its start (102 twice), and
    # the hand-removed tag is back
    written = [arg[0] for _op, _c, arg in fake.calls if arg[1] != "no answer"]
    assert written == ["100", "101", "102", "102", "103", "104"]
    assert all(fake.tier_labels[str(100 + n)] == {"Stammkunde Silber"} for n in range(5))

    # and a third run starts from the beginning again (the finished run left no cursor)
    fake.calls.clear()
    assert runner.invoke(args=["shops", "sync-tiers", "--shop", "demo-laden.myshopify.com"]).exit_code == 0
    assert len(fake.calls) == 5


def test_sync_tiers_waits_out_a_rate_limit(make_shop, work, monkeypatch):
    # given a member and a shop that asks to slow down once
    fake = install_fake_connector(monkeypatch, "shopify")
    shop_id = _shopify(make_shop)
    apply(shop_id, order("1", "300.00", customer_id=MEMBER))
    fake.fail("set_customer_tier", RateLimitedError("THROTTLED", retry_after=3.5))
    slept: list[float] = []

    # when the shop is re-synced
    progress = resync(shop_id, sleep=slept.append)

    # then it waited as asked and wrote the member once
    assert slept == [3.5]
    assert (progress.done, progress.total, progress.written, progress.failed) == (1, 1, 1, 0)
    assert fake.tier_labels == {MEMBER: {"Stammkunde Silber"}}


def test_sync_tiers_refuses_a_shop_without_credentials(make_shop, runner):
    # given a shop registered without API credentials, with a member
    shop_id = make_shop("shopify")
    program(shop_id, PROGRAM)
    apply(shop_id, order("1", "300.00", customer_id=MEMBER))

    # when / then the command says why and writes nothing
    result = runner.invoke(args=["shops", "sync-tiers", "--shop", "demo-laden.myshopify.com"])
    assert result.exit_code == 1
    assert "tiers not written" in result.output
    assert _row().status == TierTagStatus.PENDING



def test_a_shop_without_write_customers_fails_the_member_with_why(make_shop, work):
    # given a shop installed before write_customers was granted, which answers ACCESS_DENIED
    shop_id = _shopify(make_shop)
    apply(shop_id, order("1", "300.00", customer_id=MEMBER))
    denied = {"errors": [{"message": "Access denied for tagsAdd field. Required access: `write_customers` access "
                                     "scope.", "extensions": {"code": "ACCESS_DENIED"}}]}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, GRAPHQL, json=denied)
        _sync(work)

    # then the member is failed with the reason (no retry), until the merchant installs again
    row = _row()
    assert row.status == TierTagStatus.FAILED and "write_customers" in (row.error or "")
    assert requeue_tier_tags() == 0
