"""WooCommerce webhooks by API and the wc-auth connect URL, against the store's real answers."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
import responses

from connectors.errors import PermanentError
from connectors.woocommerce import client

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "woocommerce_api"
STORE = "https://laden.example"
CREDENTIALS = {"url": STORE, "consumer_key": "ck_https_test_key", "consumer_secret": "cs_https_test_secret"}
HOOKS = f"{STORE}/wp-json/wc/v3/webhooks"


def captured(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@responses.activate
def test_create_webhook_sends_topic_address_and_secret_and_reads_the_stores_answer():
    # given the store's real answer to POST webhooks
    responses.post(HOOKS, body=captured("webhooks_create.json"), status=201, content_type="application/json")

    # when we create a webhook
    hook = client.create_webhook(CREDENTIALS, "order.updated", "https://loyalty.example/webhooks/woocommerce", "s3cret")

    # then the body names the topic, our address and the shop's secret, and the id is kept
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {"name": "Stammkunde order.updated", "topic": "order.updated",
                    "delivery_url": "https://loyalty.example/webhooks/woocommerce", "secret": "s3cret",
                    "status": "active"}
    assert hook == client.Webhook(id="1", topic="order.updated", status="active",
                                  delivery_url="http://127.0.0.1:9390/wc-hook")


@responses.activate
def test_a_disabled_webhook_is_seen_and_switched_on_again():
    # given the store's answers for a webhook it disabled after failed deliveries, and the re-enable
    responses.get(f"{HOOKS}/1", body=captured("webhooks_get__disabled.json"), content_type="application/json")
    responses.put(f"{HOOKS}/1", body=captured("webhooks_update__active.json"), content_type="application/json")

    # when we read it and switch it on
    seen = client.get_webhook(CREDENTIALS, "1")
    again = client.activate_webhook(CREDENTIALS, "1")

    # then the disabled state was read, and the PUT asked for active and got it
    assert seen is not None and seen.status == "disabled"
    assert json.loads(responses.calls[1].request.body) == {"status": "active"}
    assert again.status == "active"


@responses.activate
def test_activation_the_store_does_not_confirm_is_a_failure_and_a_gone_webhook_is_none():
    # given a PUT answered with the webhook still disabled, and a webhook deleted in the store
    responses.put(f"{HOOKS}/1", body=captured("webhooks_get__disabled.json"), content_type="application/json")
    responses.get(f"{HOOKS}/2", status=404, json={"code": "woocommerce_rest_webhook_invalid_id"})

    # then the one is an error and the other is None
    with pytest.raises(PermanentError):
        client.activate_webhook(CREDENTIALS, "1")
    assert client.get_webhook(CREDENTIALS, "2") is None


def test_connect_url_asks_for_read_write_and_needs_an_https_callback():
    # when we build the authorize URL
    url = client.connect_url("Laden.Example/", app_name="Stammkunde", user_id="nonce-1",
                             return_url="https://loyalty.example/woocommerce/connected",
                             callback_url="https://loyalty.example/woocommerce/callback")

    # then it goes to the store's wc-auth endpoint with every parameter it needs
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "laden.example", "/wc-auth/v1/authorize")
    assert dict(urllib.parse.parse_qsl(parts.query)) == {
        "app_name": "Stammkunde", "scope": "read_write", "user_id": "nonce-1",
        "return_url": "https://loyalty.example/woocommerce/connected",
        "callback_url": "https://loyalty.example/woocommerce/callback"}
    # and an http callback is refused, as the store would refuse it (live capture 116)
    with pytest.raises(ValueError):
        client.connect_url(STORE, app_name="Stammkunde", user_id="n", return_url="http://x/r",
                           callback_url="http://loyalty.example/woocommerce/callback")
