"""Property-based fuzzing of the receiver and the worker together: any mangled, correctly signed
delivery gets a 2xx or a 4xx (never a 5xx), and every accepted one ends processed, or failed with a
reason — on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.db import session_scope
from app.models import DeliveryStatus, WebhookDelivery
from tests.conftest import FIXTURES
from tests.fuzz.test_parsers import JSON_VALUES, _mutated, _paths

SOURCES = [("shopify", "orders/paid", "orders_paid.json"), ("shopify", "refunds/create", "refunds_create.json"),
           ("shopify", "checkouts_create", "checkouts_create.json"),
           ("woocommerce", "order.updated", "order_updated__partial_refund.json"),
           ("woocommerce", "customer.created", "customer_created.json")]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_signed_delivery_is_answered_without_5xx_and_ends_with_a_reason(data, make_shop, post_webhook, work):
    # given both shops (registered by the first example; hypothesis runs many in one test)
    for platform_name in ("shopify", "woocommerce"):
        if not _has_shop(platform_name):
            make_shop(platform_name)
    platform, topic, name = data.draw(st.sampled_from(SOURCES), label="source")
    topic = topic.replace("checkouts_create", "checkouts/create")
    payload = json.loads((FIXTURES / platform / name).read_bytes())
    mangled = _mutated(payload, data.draw(st.sampled_from(_paths(payload)), label="path"),
                       data.draw(JSON_VALUES, label="value"), data.draw(st.booleans(), label="delete"))
    body = json.dumps(mangled).encode()

    # when it is posted, correctly signed, with its own event id
    with session_scope() as s:
        before = set(s.scalars(select(WebhookDelivery.id)))
    answer = post_webhook(platform, topic, body, event_id=f"fuzz-{len(before)}")

    # then the answer is never a 5xx, and what was accepted ends processed or failed with a reason
    assert answer.status_code < 500, answer.get_data(as_text=True)
    work()
    with session_scope() as s:
        new = [d for d in s.scalars(select(WebhookDelivery)) if d.id not in before]
        for delivery in new:
            assert delivery.status in (DeliveryStatus.PROCESSED, DeliveryStatus.FAILED), delivery.status
            if delivery.status == DeliveryStatus.FAILED:
                assert delivery.error, "a failed delivery says why"


def _has_shop(platform: str) -> bool:
    from app.models import Shop

    with session_scope() as s:
        return s.scalars(select(Shop).where(Shop.platform == platform)).first() is not None
