"""Property-based fuzzing of both parsers (hypothesis): a real payload with any field replaced by any
JSON value, or removed, is either parsed or refused with MalformedPayloadError naming the topic —
never another exception (which would be a 500 in the receiver or an unexplained failure in the worker).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import get_connector
from connectors.errors import MalformedPayloadError
from connectors.types import WebhookEvent
from tests.conftest import FIXTURES, SHOPIFY_SECRET, WOO_SECRET, signed_headers

# Every fixture of both platforms, with the topic its name says (the meta-test keeps them real).
CASES = [
    (platform, path.name)
    for platform in ("shopify", "woocommerce")
    for path in sorted((FIXTURES / platform).glob("*.json"))
    if not path.name.endswith(".headers.json")
]

# Any JSON value, including the hostile ones: huge and negative numbers, floats with exponents,
# long strings, lone surrogates, empty and nested containers.
JSON_LEAVES = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80)
    | st.sampled_from(["", " ", "1E+17", "-0", "NaN", "\ud800", "9" * 100, "2026-13-45T99:99:99", "null"])
)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _topic(platform: str, name: str) -> str:
    slug = Path(name).stem.split("__")[0]
    if platform == "shopify":
        return slug.replace("_", "/", 1) if slug.count("_") and not slug.startswith("order_transactions") \
            else ("order_transactions/create" if slug.startswith("order_transactions") else slug)
    return slug.replace("_", ".", 1)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value` (dict keys and list indexes), the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _mutated(payload: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    copy = json.loads(json.dumps(payload))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return copy


@pytest.mark.parametrize(("platform", "name"), CASES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mangled_payload_is_parsed_or_refused_by_name(platform: str, name: str, data: st.DataObject) -> None:
    # given a real payload with one field (anywhere) replaced by any JSON value, or removed
    payload = json.loads((FIXTURES / platform / name).read_bytes())
    paths = _paths(payload)
    path = data.draw(st.sampled_from(paths), label="path")
    mangled = _mutated(payload, path, data.draw(JSON_VALUES, label="value"), data.draw(st.booleans(), label="delete"))
    body = json.dumps(mangled).encode()
    topic = _topic(platform, name)
    headers = signed_headers(platform, topic, body, secret=SHOPIFY_SECRET if platform == "shopify" else WOO_SECRET)

    # when it is parsed, then it is parsed, or refused naming the topic
    try:
        event = get_connector(platform).parse_event(headers, body)
    except MalformedPayloadError as exc:
        assert str(exc).startswith(f"{topic}:"), str(exc)
    else:
        assert isinstance(event, WebhookEvent)
