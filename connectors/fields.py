"""Strict readers of payload fields, shared by every connector's parser (STYLE rule 11).

Each reader takes the object, the key, the topic and the path of the object inside the body
(`prefix`, e.g. "line_items[0]."), and raises `MalformedPayloadError` naming topic and field:

- "<topic>: <field> missing" when a required field is absent, null, or empty text;
- "<topic>: <field> is not a <kind>" when it is there with the wrong JSON type.

**The one rule for text:** every text value is returned stripped of surrounding whitespace. A
required text that is empty once stripped is missing (unless `allow_empty`), and an optional
text, id or timestamp that is empty once stripped is absent (None). Platforms pad values by
accident (a merchant typing " EUR" into a plugin setting, a code copied with a trailing space),
and no value we use means anything different with its padding.

Readers never read fields we do not use; unknown extra fields are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.errors import MalformedPayloadError

Payload = Mapping[str, Any]


# ---- values ----------------------------------------------------------------------------------


def require(data: Payload, key: str, topic: str, prefix: str = "") -> Any:
    """Return data[key] or raise MalformedPayloadError naming topic and field.

    Raises:
        MalformedPayloadError: `data` is not an object, or the key is missing or null.
    """
    if not isinstance(data, Mapping):
        raise MalformedPayloadError(f"{topic}: {prefix.rstrip('.') or 'payload'} is not an object")
    value = data.get(key)
    if value is None:
        raise MalformedPayloadError(f"{topic}: {prefix}{key} missing")
    return value


# Bounds every database we support stores the same way (one answer for one input everywhere):
# money columns are NUMERIC(18, 4), platform ids VARCHAR(64), counts INTEGER (32 bits).
MAX_MONEY = Decimal(10) ** 12  # a trillion in the shop's currency: no real order comes near
MONEY_PLACES = 4
MAX_ID_LENGTH = 64
MAX_INTEGER = 2**31 - 1


def _unicode(value: str, topic: str, field_name: str) -> str:
    """Return `value` if it is valid Unicode text (a JSON "\\ud800" escape gives a lone surrogate,
    which no database can store)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedPayloadError(f"{topic}: {field_name} is not valid Unicode text") from None
    return value


def to_decimal(value: Any, topic: str, field_name: str) -> Decimal:
    """Parse a platform money value (string or number) into Decimal.

    Raises:
        MalformedPayloadError: the value is not a finite number, has more than MONEY_PLACES
            decimal places, or is a trillion or more either way.
    """
    if isinstance(value, bool) or value is None:
        raise MalformedPayloadError(f"{topic}: {field_name} is not a number")
    try:
        # str() first so that a JSON float 12.5 becomes Decimal("12.5"), not its binary value.
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise MalformedPayloadError(f"{topic}: {field_name} is not a number") from None
    if not result.is_finite():
        raise MalformedPayloadError(f"{topic}: {field_name} is not a number")
    if abs(result) >= MAX_MONEY:
        raise MalformedPayloadError(f"{topic}: {field_name} is out of range")
    exponent = result.normalize().as_tuple().exponent  # trailing zeros ("12.500000") do not count
    if isinstance(exponent, int) and exponent < -MONEY_PLACES:
        raise MalformedPayloadError(f"{topic}: {field_name} has more than {MONEY_PLACES} decimal places")
    return result


def to_id(value: Any, topic: str, field_name: str) -> str:
    """Return a platform id as stripped str (ids are ints in JSON; we never do arithmetic on them).

    Raises:
        MalformedPayloadError: missing or empty, or neither an int nor a string.
    """
    if isinstance(value, str):
        value = value.strip()
    if isinstance(value, bool) or value is None or value == "":
        raise MalformedPayloadError(f"{topic}: {field_name} missing")
    if isinstance(value, int | str):
        text_id = _unicode(str(value), topic, field_name)
        if len(text_id) > MAX_ID_LENGTH:
            raise MalformedPayloadError(f"{topic}: {field_name} is longer than {MAX_ID_LENGTH} characters")
        return text_id
    raise MalformedPayloadError(f"{topic}: {field_name} is not an id")


def to_datetime(value: Any, topic: str, field_name: str, *, naive_is_utc: bool = True) -> datetime:
    """Parse an ISO-8601 timestamp into an aware UTC datetime.

    A timestamp without an offset is taken as UTC (WooCommerce `*_gmt` fields carry none).

    Raises:
        MalformedPayloadError: missing or empty, not an ISO-8601 string, or (with
            `naive_is_utc=False`) without an offset.
    """
    text = value.strip() if isinstance(value, str) else None
    if not text:
        raise MalformedPayloadError(f"{topic}: {field_name} missing")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedPayloadError(f"{topic}: {field_name} is not a timestamp") from None
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise MalformedPayloadError(f"{topic}: {field_name} has no time zone")
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _blank(value: Any) -> bool:
    """Return True for a value an optional reader treats as absent: null or blank text."""
    return value is None or (isinstance(value, str) and not value.strip())


# ---- fields ----------------------------------------------------------------------------------


def text(
    data: Payload, key: str, topic: str, prefix: str = "", *, allow_empty: bool = False
) -> str:
    """Return a required text field, stripped; empty text is missing unless `allow_empty`.

    Raises:
        MalformedPayloadError: missing, not a string, or empty (without `allow_empty`).
    """
    value = require(data, key, topic, prefix)
    if not isinstance(value, str):
        raise MalformedPayloadError(f"{topic}: {prefix}{key} is not a string")
    value = _unicode(value, topic, f"{prefix}{key}").strip()
    if not value and not allow_empty:
        raise MalformedPayloadError(f"{topic}: {prefix}{key} missing")
    return value


def optional_text(data: Payload, key: str, topic: str, prefix: str = "") -> str | None:
    """Return a text field stripped, or None when it is absent, null or blank.

    Raises:
        MalformedPayloadError: present but not a string.
    """
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedPayloadError(f"{topic}: {prefix}{key} is not a string")
    return _unicode(value, topic, f"{prefix}{key}").strip() or None


def boolean(
    data: Payload, key: str, topic: str, prefix: str = "", *, default: bool | None = None
) -> bool:
    """Return a JSON boolean; an absent field is `default`, or missing when there is none.

    Raises:
        MalformedPayloadError: missing without a default, or not a JSON boolean.
    """
    value = data.get(key)
    if value is None:
        if default is None:
            raise MalformedPayloadError(f"{topic}: {prefix}{key} missing")
        return default
    if not isinstance(value, bool):
        raise MalformedPayloadError(f"{topic}: {prefix}{key} is not a boolean")
    return value


def optional_boolean(data: Payload, key: str, topic: str, prefix: str = "") -> bool | None:
    """Return a JSON boolean, or None when it is absent or null.

    Raises:
        MalformedPayloadError: present but not a JSON boolean.
    """
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise MalformedPayloadError(f"{topic}: {prefix}{key} is not a boolean")
    return value


def integer(
    data: Payload, key: str, topic: str, prefix: str = "", *, default: int | None = None
) -> int:
    """Return a JSON integer (not a boolean); an absent field is `default`, or missing.

    Raises:
        MalformedPayloadError: missing without a default, or not a JSON integer.
    """
    value = data.get(key)
    if value is None:
        if default is None:
            raise MalformedPayloadError(f"{topic}: {prefix}{key} missing")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayloadError(f"{topic}: {prefix}{key} is not an integer")
    if abs(value) > MAX_INTEGER:
        raise MalformedPayloadError(f"{topic}: {prefix}{key} is out of range")
    return value


def money(data: Payload, key: str, topic: str, prefix: str = "") -> Decimal:
    """Return a required money amount (JSON string or number) as Decimal.

    Raises:
        MalformedPayloadError: missing, or not a finite number.
    """
    return to_decimal(require(data, key, topic, prefix), topic, f"{prefix}{key}")


def platform_id(data: Payload, key: str, topic: str, prefix: str = "") -> str:
    """Return a required platform id (JSON int or string) as str.

    Raises:
        MalformedPayloadError: missing or blank, or not an int or string.
    """
    return to_id(data.get(key), topic, f"{prefix}{key}")


def optional_platform_id(data: Payload, key: str, topic: str, prefix: str = "") -> str | None:
    """Return a platform id as str, or None when it is absent, null or blank.

    Raises:
        MalformedPayloadError: present but not an int or string.
    """
    value = data.get(key)
    return None if _blank(value) else to_id(value, topic, f"{prefix}{key}")


def timestamp(data: Payload, key: str, topic: str, prefix: str = "") -> datetime:
    """Return a required ISO-8601 timestamp as an aware UTC datetime (no offset means UTC).

    Raises:
        MalformedPayloadError: missing or blank, or not an ISO-8601 string.
    """
    return to_datetime(require(data, key, topic, prefix), topic, f"{prefix}{key}")


def optional_timestamp(data: Payload, key: str, topic: str, prefix: str = "") -> datetime | None:
    """Return an ISO-8601 timestamp as an aware UTC datetime, or None when absent, null or blank.

    Raises:
        MalformedPayloadError: present but not an ISO-8601 string.
    """
    value = data.get(key)
    return None if _blank(value) else to_datetime(value, topic, f"{prefix}{key}")


def optional_object(data: Payload, key: str, topic: str, prefix: str = "") -> Payload | None:
    """Return a nested JSON object, or None when it is absent or null.

    Raises:
        MalformedPayloadError: present but not an object.
    """
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MalformedPayloadError(f"{topic}: {prefix}{key} is not an object")
    return value


def array(
    data: Payload, key: str, topic: str, prefix: str = "", *, required: bool = False
) -> Sequence[Any]:
    """Return a JSON list of anything; an absent optional list is empty.

    Raises:
        MalformedPayloadError: required and missing, or not a list.
    """
    value = data.get(key)
    if value is None:
        if required:
            raise MalformedPayloadError(f"{topic}: {prefix}{key} missing")
        return ()
    if not isinstance(value, list):
        raise MalformedPayloadError(f"{topic}: {prefix}{key} is not a list")
    return value


def objects(
    data: Payload, key: str, topic: str, prefix: str = "", *, required: bool = False
) -> Sequence[Payload]:
    """Return a JSON list of objects; an absent optional list is empty.

    Raises:
        MalformedPayloadError: required and missing, not a list, or an element not an object.
    """
    value = array(data, key, topic, prefix, required=required)
    for i, element in enumerate(value):
        if not isinstance(element, Mapping):
            raise MalformedPayloadError(f"{topic}: {prefix}{key}[{i}] is not an object")
    return value
