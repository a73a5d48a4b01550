"""The strict field readers both parsers use (connectors/fields.py): one rule, one message set."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from connectors import fields
from connectors.errors import MalformedPayloadError

TOPIC = "orders/paid"


@pytest.mark.parametrize(
    ("_case", "read", "data", "expected"),
    [
        ("text stripped", fields.text, {"k": "  EUR\t"}, "EUR"),
        ("empty text allowed", lambda d, k, t, p="": fields.text(d, k, t, p, allow_empty=True), {"k": "  "}, ""),
        ("optional text stripped", fields.optional_text, {"k": " Bob "}, "Bob"),
        ("optional text blank", fields.optional_text, {"k": "  "}, None),
        ("optional text absent", fields.optional_text, {}, None),
        ("id from int", fields.platform_id, {"k": 450789469}, "450789469"),
        ("id stripped", fields.platform_id, {"k": " 42 "}, "42"),
        ("optional id blank", fields.optional_platform_id, {"k": " "}, None),
        ("money string", fields.money, {"k": " 12.50 "}, Decimal("12.50")),
        ("money number", fields.money, {"k": Decimal("12.5")}, Decimal("12.5")),
        ("money with trailing zeros", fields.money, {"k": "12.500000"}, Decimal("12.500000")),
        ("money just under a trillion", fields.money, {"k": "999999999999.9999"}, Decimal("999999999999.9999")),
        ("id of 64 characters", fields.platform_id, {"k": "9" * 64}, "9" * 64),
        ("integer at 32 bits", fields.integer, {"k": 2**31 - 1}, 2**31 - 1),
        ("timestamp without offset is UTC", fields.timestamp, {"k": "2026-11-27T10:00:00"},
         datetime(2026, 11, 27, 10, tzinfo=timezone.utc)),
        ("timestamp with offset", fields.timestamp, {"k": " 2025-04-02T11:31:25-05:00 "},
         datetime(2025, 4, 2, 16, 31, 25, tzinfo=timezone.utc)),
        ("optional timestamp blank", fields.optional_timestamp, {"k": ""}, None),
        ("boolean", fields.boolean, {"k": False}, False),
        ("boolean default", lambda d, k, t, p="": fields.boolean(d, k, t, p, default=True), {}, True),
        ("optional boolean absent", fields.optional_boolean, {}, None),
        ("integer default", lambda d, k, t, p="": fields.integer(d, k, t, p, default=0), {"k": None}, 0),
        ("optional object absent", fields.optional_object, {}, None),
        ("objects absent", fields.objects, {}, ()),
        ("array keeps anything", fields.array, {"k": [1, "a", {}]}, [1, "a", {}]),
    ],
)
def test_readers_return_the_value_by_the_one_rule(_case: str, read: Any, data: dict[str, Any], expected: Any) -> None:
    # when a field is read, then its value follows connectors.fields' rule
    assert read(data, "k", TOPIC, "line_items[0].") == expected


@pytest.mark.parametrize(
    ("_case", "read", "data", "message"),
    [
        ("text absent", fields.text, {}, "missing"),
        ("text null", fields.text, {"k": None}, "missing"),
        ("text blank", fields.text, {"k": " \n"}, "missing"),
        ("text number", fields.text, {"k": 1}, "is not a string"),
        ("optional text number", fields.optional_text, {"k": 1}, "is not a string"),
        ("id absent", fields.platform_id, {}, "missing"),
        ("id blank", fields.platform_id, {"k": "  "}, "missing"),
        ("id bool", fields.platform_id, {"k": True}, "missing"),
        ("id list", fields.platform_id, {"k": [1]}, "is not an id"),
        ("money absent", fields.money, {}, "missing"),
        ("money text", fields.money, {"k": "twelve"}, "is not a number"),
        ("money infinite", fields.money, {"k": "Infinity"}, "is not a number"),
        ("money bool", fields.money, {"k": True}, "is not a number"),
        ("timestamp absent", fields.timestamp, {}, "missing"),
        ("timestamp blank", fields.timestamp, {"k": " "}, "missing"),
        ("timestamp garbage", fields.timestamp, {"k": "yesterday"}, "is not a timestamp"),
        ("boolean absent", fields.boolean, {}, "missing"),
        ("boolean string", fields.boolean, {"k": "true"}, "is not a boolean"),
        ("optional boolean number", fields.optional_boolean, {"k": 1}, "is not a boolean"),
        ("integer absent", fields.integer, {}, "missing"),
        ("integer bool", fields.integer, {"k": True}, "is not an integer"),
        ("integer text", fields.integer, {"k": "2"}, "is not an integer"),
        ("object list", fields.optional_object, {"k": []}, "is not an object"),
        ("objects required", lambda d, k, t, p="": fields.objects(d, k, t, p, required=True), {}, "missing"),
        ("objects not a list", fields.objects, {"k": {}}, "is not a list"),
        # bounds every database stores the same way (NUMERIC(18, 4), VARCHAR(64), INTEGER)
        ("money of 10^17", fields.money, {"k": "1E+17"}, "is out of range"),
        ("money of minus a trillion", fields.money, {"k": "-1000000000000"}, "is out of range"),
        ("money with 5 decimal places", fields.money, {"k": "12.00001"}, "has more than 4 decimal places"),
        ("id of 65 characters", fields.platform_id, {"k": "9" * 65}, "is longer than 64 characters"),
        ("id with a lone surrogate", fields.platform_id, {"k": "\ud800"}, "is not valid Unicode text"),
        ("text with a lone surrogate", fields.text, {"k": "Bob\udfff"}, "is not valid Unicode text"),
        ("optional text with a lone surrogate", fields.optional_text, {"k": "\ud800"}, "is not valid Unicode text"),
        ("integer past 32 bits", fields.integer, {"k": 2**31}, "is out of range"),
    ],
)
def test_readers_name_topic_and_field(_case: str, read: Any, data: dict[str, Any], message: str) -> None:
    # when a field we use is missing or wrong-typed, then the error says "<topic>: <field> <what>"
    with pytest.raises(MalformedPayloadError) as raised:
        read(data, "k", TOPIC, "line_items[0].")
    assert str(raised.value) == f"{TOPIC}: line_items[0].k {message}"


def test_an_element_that_is_not_an_object_is_named_by_its_index() -> None:
    # when a list of objects holds something else, then the element is named
    with pytest.raises(MalformedPayloadError) as raised:
        fields.objects({"refunds": [{}, 5]}, "refunds", TOPIC)
    assert str(raised.value) == f"{TOPIC}: refunds[1] is not an object"


def test_a_nested_value_that_is_not_an_object_is_named() -> None:
    # when the object holding a field is not an object, then its path is named
    with pytest.raises(MalformedPayloadError) as raised:
        fields.text("EUR", "currency", TOPIC, "customer.")  # type: ignore[arg-type]
    assert str(raised.value) == f"{TOPIC}: customer is not an object"
