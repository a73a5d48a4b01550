"""The app proxy signature, checked against Shopify's published example (sans-I/O)."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest

from connectors.errors import InvalidSignatureError, MissingSignatureError
from connectors.shopify.webhooks import PROXY_MAX_AGE_SECONDS, proxy_message, verify_proxy
from tests.conftest import FIXTURES

EXAMPLE = json.loads((FIXTURES / "shopify_app_proxy" / "documented_example.json").read_text())
QUERY = parse_qsl(EXAMPLE["query"], keep_blank_values=True)
NOW = EXAMPLE["timestamp"]


def test_documented_example_builds_the_documented_message_and_verifies():
    # given Shopify's worked example (secret "hush", "extra" given twice)

    # when its message is built and its signature checked at its own time
    message = proxy_message(QUERY)
    verify_proxy(QUERY, secrets=[EXAMPLE["secret"]], now=NOW)

    # then the message is the documented one (repeated values joined by ",") and it verifies
    assert message == EXAMPLE["message"]


def test_previous_secret_still_verifies_during_a_rotation():
    # given a new app secret and the documented one as the previous
    # when checked with both, then it verifies
    verify_proxy(QUERY, secrets=["new-secret", EXAMPLE["secret"]], now=NOW)


@pytest.mark.parametrize("_case, change, error", [
    ("another customer", ("logged_in_customer_id", "2"), InvalidSignatureError),
    ("another shop", ("shop", "other.myshopify.com"), InvalidSignatureError),
    ("a parameter added", ("extra", "3"), InvalidSignatureError),
    ("signature tampered", ("signature", "0" * 64), InvalidSignatureError),
    ("no signature", ("signature", None), MissingSignatureError),
    ("empty signature", ("signature", ""), MissingSignatureError),
])
def test_tampered_requests_are_refused(_case, change, error):
    # given the documented query with one parameter changed, added or removed
    key, value = change
    query = [(k, v) for k, v in QUERY if k != key or key == "extra"]
    if key == "extra":
        query.append((key, value))
    elif value is not None:
        query.append((key, value))

    # when it is checked, then it is refused
    with pytest.raises(error):
        verify_proxy(query, secrets=[EXAMPLE["secret"]], now=NOW)


def test_wrong_or_missing_secret_is_refused():
    # given the documented request
    # when checked with another secret, or with none configured, then it is refused
    with pytest.raises(InvalidSignatureError):
        verify_proxy(QUERY, secrets=["not-hush"], now=NOW)
    with pytest.raises(MissingSignatureError):
        verify_proxy(QUERY, secrets=[None, ""], now=NOW)


@pytest.mark.parametrize("_case, now, fresh", [
    ("at once", NOW, True),
    ("at the limit", NOW + PROXY_MAX_AGE_SECONDS, True),
    ("one second past it", NOW + PROXY_MAX_AGE_SECONDS + 1, False),
    ("from the future", NOW - PROXY_MAX_AGE_SECONDS - 1, False),
    ("a day later (replayed)", NOW + 86400, False),
])
def test_stale_timestamps_are_refused(_case, now, fresh):
    # given the documented, correctly signed request
    # when it arrives at `now`
    if fresh:
        verify_proxy(QUERY, secrets=[EXAMPLE["secret"]], now=now)
        return
    # then a request too old (or too far ahead) is refused
    with pytest.raises(InvalidSignatureError, match="stale"):
        verify_proxy(QUERY, secrets=[EXAMPLE["secret"]], now=now)
