"""The program page's forms: a program document shown as form fields, and posted fields turned back
into a document for the one validated model (`app.program.Program`), with each of its errors placed
beside the field it names.

Fields are named by the document's own path ("earning.points_per_unit", "rewards.2.value"), so an
error's location is a field name once the rows the owner left blank or removed are accounted for.
The posted fields are laid over the document the page was rendered from, so whatever the forms do
not show (the consent settings, for one) is kept as it is; the "advanced" JSON editor covers it.
No Flask here: `form` is any mapping with `getlist` (Werkzeug's MultiDict).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Kind = Literal["value", "choice", "number", "optional", "flag", "list"]

# Single fields of the forms by path, and how a posted string becomes a document value:
# "value" as posted (the model converts or refuses it), "choice" likewise from a select (a browser
# always posts one of its options, so it does not make a row count as filled in), "number" the same but "1,5" is read as
# "1.5", "optional" likewise but blank means none, "flag" a checkbox (absent means off),
# "list" comma-separated ("staff, b2b").
FIELDS: dict[str, Kind] = {
    "earning.points_per_unit": "number",
    "earning.earn_on_gross": "flag",
    "earning.return_window_days": "value",
    "earning.excluded_order_tags": "list",
    "earning.signup_bonus": "value",
    "earning.first_order_bonus": "value",
    "earning.birthday_bonus": "value",
    "earning.max_points_per_order": "value",
    "redemption.auto": "flag",
    "redemption.point_value": "optional",
    "tiers.metric": "choice",
    "tiers.window": "choice",
    "tiers.period_months": "value",
    "expiry.months": "optional",
    "expiry.notice_days": "value",
    "second_purchase.enabled": "flag",
    "second_purchase.percent": "number",
    "second_purchase.valid_days": "value",
    "bounce_back.enabled": "flag",
    "bounce_back.threshold": "number",
    "bounce_back.kind": "choice",
    "bounce_back.value": "number",
    "bounce_back.minimum_amount": "optional",
    "bounce_back.valid_days": "value",
    "bounce_back.send_email": "flag",
    "referral.enabled": "flag",
    "referral.friend_discount_percent": "number",
    "referral.friend_minimum_amount": "optional",
    "referral.referrer_points": "value",
    "referral.monthly_cap": "value",
    "reminders.cart.enabled": "flag",
    "reminders.cart.idle_minutes": "value",
    "reminders.cart.steps_hours": "list",
    "reminders.cart.incentive_step": "value",
    "reminders.cart.incentive_percent": "number",
    "reminders.cart.incentive_valid_days": "value",
    "reminders.winback.enabled": "flag",
    "reminders.winback.factor": "number",
    "reminders.winback.min_days": "value",
    "reminders.winback.default_days": "value",
    "reminders.winback.incentive_percent": "optional",
    "reminders.winback.incentive_valid_days": "value",
    "reminders.notices.second_purchase": "flag",
    "reminders.notices.expiry": "flag",
    "reminders.notices.tier_change": "flag",
    "reminders.notices.points_earned": "flag",
    "reminders.sending.cap_count": "value",
    "reminders.sending.cap_hours": "value",
    "reminders.sending.quiet_start": "value",
    "reminders.sending.quiet_end": "value",
    "reminders.attribution_days": "value",
    "tier_in_shop.enabled": "flag",
    "tier_in_shop.tag_prefix": "value",
}

# Repeatable rows (a list of objects in the document), their fields, and how many blank rows the
# page offers for adding (no JavaScript needed: fill one in; tick "remove" to drop a row).
ROWS: dict[str, dict[str, Kind]] = {
    "rewards": {
        "name": "value", "points": "value", "kind": "choice", "value": "optional", "minimum_amount": "optional",
        "valid_days": "value", "product_id": "optional", "variant_id": "optional", "tiers": "list", "active": "flag",
        # combination offers (buy_x_get_y)
        "buys_product_ids": "list", "buys_variant_ids": "list", "buys_quantity": "optional", "buys_label": "optional",
        "gets_quantity": "optional", "gets_label": "optional",
        "pool": "optional", "low_stock": "optional",  # partner_voucher: the voucher pool and its warning level
    },
    "tiers.levels": {
        "name": "value", "threshold": "number", "multiplier": "number", "member_discount_percent": "number",
        "free_shipping": "flag",
    },
    "gifts": {"name": "value", "min_amount": "optional", "min_grams": "optional", "tag": "value", "note": "value"},
    "referral.steps": {"count": "value", "points": "optional", "member_discount_percent": "optional"},
    # Earning by product: a blank multiplier is left out (the model's default, 2; unused by an exclusion).
    "earning.product_rules": {
        "name": "value", "effect": "choice", "multiplier": "value", "product_ids": "list", "variant_ids": "list",
        "collections": "list", "categories": "list", "tags": "list", "vendors": "list", "valid_from": "optional",
        "valid_until": "optional",
    },
}
BLANK_ROWS = 2
# Sections whose own checks (across fields) report at the section: shown at the top of its fieldset.
SECTIONS = ("earning", "rewards", "tiers", "expiry", "second_purchase", "bounce_back", "referral", "gifts", "redemption",
            "reminders", "reminders.cart", "reminders.winback", "reminders.notices", "reminders.sending",
            "tier_in_shop", "referral.steps")

_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+\s*$")


class FormData(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...
    def getlist(self, key: str) -> list[str]: ...
    def __contains__(self, key: object) -> bool: ...
    def keys(self) -> Any: ...


@dataclass
class Posted:
    """A document built from the forms, and where each of its list rows came from."""

    document: dict[str, Any]
    # row path -> the form row index of each document index ("rewards": [0, 1, 3] when row 2 was removed)
    rows: dict[str, list[int]] = field(default_factory=dict)


def _get(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _shown(value: Any, kind: Kind) -> Any:
    """A document value as the form shows it."""
    if kind == "flag":
        return bool(value)
    if kind == "list":
        return ", ".join(str(v) for v in value or ())
    return "" if value is None else str(value)


def values_from_document(document: dict[str, Any]) -> dict[str, Any]:
    """Return the forms' values for `document` (field name -> text, or bool for a checkbox), with
    `BLANK_ROWS` empty rows after each list and "<row path>.count" the number of rows shown."""
    values: dict[str, Any] = {name: _shown(_get(document, name), kind) for name, kind in FIELDS.items()}
    for path, columns in ROWS.items():
        items = _get(document, path) or []
        for i, item in enumerate(items):
            for column, kind in columns.items():
                values[f"{path}.{i}.{column}"] = _shown(item.get(column), kind)
        for i in range(len(items), len(items) + BLANK_ROWS):
            for column, kind in columns.items():
                # a new reward is active unless the owner says otherwise
                values[f"{path}.{i}.{column}"] = (column == "active") if kind == "flag" else ""
        values[f"{path}.count"] = len(items) + BLANK_ROWS
    return values


def values_from_form(form: FormData) -> dict[str, Any]:
    """Return the forms' values as posted (to show them again with their errors)."""
    values: dict[str, Any] = {}
    for name, kind in FIELDS.items():
        values[name] = name in form if kind == "flag" else form.get(name, "")
    for path, columns in ROWS.items():
        count = _row_count(form, path)
        for i in range(count):
            for column, kind in columns.items():
                key = f"{path}.{i}.{column}"
                values[key] = key in form if kind == "flag" else form.get(key, "")
            values[f"{path}.{i}.remove"] = f"{path}.{i}.remove" in form
        values[f"{path}.count"] = count
    return values


def _row_count(form: FormData, path: str) -> int:
    raw = str(form.get(f"{path}.count", ""))
    return min(int(raw), 500) if raw.isdigit() else 0


def _parsed(raw: str, kind: Kind, posted: bool) -> Any:
    if kind == "flag":
        return posted
    text = raw.strip()
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind in ("number", "optional") and _DECIMAL_COMMA.match(text):
        text = text.replace(",", ".")
    if kind == "optional" and text == "":
        return None
    return text


def document_from_form(form: FormData, base: dict[str, Any]) -> Posted:
    """Lay the posted fields over `base` (the document the page showed) and return the result.

    A row whose text fields are all blank, or whose "remove" box is ticked, is left out.
    """
    document = copy.deepcopy(base)
    for name, kind in FIELDS.items():
        if kind == "flag" or name in form:
            _set(document, name, _parsed(str(form.get(name, "")), kind, name in form))
    posted = Posted(document)
    for path, columns in ROWS.items():
        items: list[dict[str, Any]] = []
        origins: list[int] = []
        for i in range(_row_count(form, path)):
            prefix = f"{path}.{i}."
            texts = [str(form.get(prefix + c, "")).strip() for c, kind in columns.items() if kind not in ("flag", "choice")]
            if f"{prefix}remove" in form or not any(texts):
                continue
            # a blank field of a row is left out: the model's default applies, or it says the field is required
            row = {c: _parsed(str(form.get(prefix + c, "")), kind, prefix + c in form) for c, kind in columns.items()}
            items.append({c: v for c, v in row.items() if not (columns[c] == "value" and v == "")})
            origins.append(i)
        _set(document, path, items)
        posted.rows[path] = origins
    return posted


def field_errors(problems: tuple[tuple[tuple[str | int, ...], str], ...], posted: Posted) -> dict[str, list[str]]:
    """Place each problem of the model at a field, a row or a section of the forms ("" = the page).

    A location inside a list row is renumbered to the row the owner filled in; a location deeper
    than a form field (an item of a comma-separated list) goes to that field.
    """
    known = set(FIELDS) | set(SECTIONS)
    for path, columns in ROWS.items():
        for i in posted.rows.get(path, []):
            known.add(f"{path}.{i}")
            known.update(f"{path}.{i}.{column}" for column in columns)
    placed: dict[str, list[str]] = {}
    for loc, message in problems:
        parts = [str(p) for p in loc]
        for path, origins in posted.rows.items():
            depth = len(path.split("."))
            if parts[:depth] == path.split(".") and len(parts) > depth and parts[depth].isdigit():
                index = int(parts[depth])
                if index < len(origins):
                    parts[depth] = str(origins[index])
        target = next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in known), "")
        placed.setdefault(target, []).append(message)
    return placed


def field_id(name: str) -> str:
    """The HTML id of a field ("f-earning-points_per_unit")."""
    return "f-" + name.replace(".", "-")
