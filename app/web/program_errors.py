"""The program's validation errors in the admin's language.

`app.program.validate_document` keeps pydantic's account of each problem (`ProgramError.errors`:
its `type`, location and context values). Here each common type is worded for the staff user
(Flask-Babel, the `admin` catalog), its context values filled in as the admin writes numbers
("1.000" in German). A type without wording here keeps pydantic's English message; so does a
plain `ValueError` of a model validator, unless the admin catalog has its text.

The English texts are pydantic's own where pydantic words them, so English pages read as before.
Every fixed text of a plain `ValueError` in app/program.py has its German in the admin catalog
(tests/app/test_admin_look.py checks it), so a new check cannot reach a German owner in English.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from babel.numbers import format_decimal
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from pydantic_core import ErrorDetails

from app.program import ProgramError

# pydantic's error types and the program's own (app.program's model validators) -> wording.
TEXTS: dict[str, Any] = {
    "missing": _l("Field required"),
    "greater_than": _l("Input should be greater than %(gt)s"),
    "greater_than_equal": _l("Input should be greater than or equal to %(ge)s"),
    "less_than": _l("Input should be less than %(lt)s"),
    "less_than_equal": _l("Input should be less than or equal to %(le)s"),
    "int_parsing": _l("Input should be a valid integer, unable to parse string as an integer"),
    "int_type": _l("Input should be a valid integer"),
    "int_from_float": _l("Input should be a valid integer, got a number with a fractional part"),
    "decimal_parsing": _l("Input should be a valid decimal"),
    "decimal_type": _l("Input should be a valid decimal"),
    "finite_number": _l("Input should be a finite number"),
    "string_type": _l("Input should be a valid string"),
    "string_pattern_mismatch": _l("String should match pattern '%(pattern)s'"),
    "bool_parsing": _l("Input should be a valid boolean, unable to interpret input"),
    "bool_type": _l("Input should be a valid boolean"),
    "tuple_type": _l("Input should be a valid list"),
    "list_type": _l("Input should be a valid list"),
    "model_type": _l("Input should be an object"),
    "dict_type": _l("Input should be an object"),
    "extra_forbidden": _l("Extra inputs are not permitted"),
    # app.program's own checks
    "percentage_over_100": _l("value of a percentage reward is at most 100"),
    "product_missing": _l("free_product needs product_id or variant_id"),
    "tier_names_not_unique": _l("tier names must be unique"),
    "tier_thresholds_not_increasing": _l("tier thresholds must strictly increase"),
    "gift_threshold": _l("give exactly one of min_amount and min_grams"),
    "steps_not_increasing": _l("steps_hours must be increasing and not empty"),
    "first_step_too_early": _l("the first step cannot come before the cart counts as abandoned (idle_minutes)"),
    "incentive_step_after_last": _l("incentive_step is after the last step"),
    "reward_names_not_unique": _l("reward names must be unique"),
    "reward_tiers_unknown": _l("reward %(name)s names unknown tiers %(tiers)s"),
    "ids_not_numeric": _l("not a numeric id: %(ids)s"),
    "step_counts_not_increasing": _l("step counts must be unique and increasing: step %(step)s has count "
                                     "%(count)s, after %(previous)s"),
}
# The reward kinds as the program page's forms name them.
KIND_TEXTS: dict[str, Any] = {
    "fixed_amount": _l("Amount off"), "percentage": _l("Percent off"), "free_shipping": _l("Free shipping"),
    "free_product": _l("Free product"), "store_credit": _l("Store credit (Shopify)"),
    "buy_x_get_y": _l("Combination offer (buy X, get Y cheaper)"),
    "partner_voucher": _l("Partner voucher (a code from a pool)"),
}


def _shown(value: Any) -> Any:
    """A context value as the admin writes it (numbers grouped in the admin's language)."""
    if isinstance(value, (int, Decimal, float)) and not isinstance(value, bool):
        return format_decimal(value, locale=str(get_locale() or "en"))
    return value


def message(error: ErrorDetails) -> str:
    """Return the message of one pydantic error in the admin's language."""
    kind = error["type"]
    ctx = {name: _shown(value) for name, value in error.get("ctx", {}).items()}
    if kind == "string_too_short":
        return ngettext("String should have at least %(num)s character", "String should have at least %(num)s characters",
                        error.get("ctx", {}).get("min_length", 1))
    if kind == "string_too_long":
        return ngettext("String should have at most %(num)s character", "String should have at most %(num)s characters",
                        error.get("ctx", {}).get("max_length", 1))
    if kind == "literal_error":
        # pydantic lists the choices as "'a', 'b' or 'c'"
        expected = str(ctx.get("expected", "")).replace("' or '", "' " + _("or") + " '")
        return _("Input should be %(expected)s", expected=expected)
    if kind == "value_required":
        return _("A value is required for the kind “%(kind)s”.", kind=KIND_TEXTS.get(ctx.get("kind"), ctx.get("kind")))
    if kind == "value_error":
        # a plain ValueError of a model validator: its text, if the admin catalog translates it
        text = str(ctx.get("error", ""))
        translated = _(text) if text else text
        return translated if translated != text else error["msg"]
    if kind in TEXTS:
        return str(TEXTS[kind]) % ctx if ctx else str(TEXTS[kind])
    return error["msg"]


def problems(exc: ProgramError) -> tuple[tuple[tuple[str | int, ...], str], ...]:
    """Return `exc.problems` (location, message) with each message in the admin's language."""
    if len(exc.errors) != len(exc.problems):  # raised without pydantic's account: as it is
        return exc.problems
    return tuple((tuple(error["loc"]), message(error)) for error in exc.errors)


def summary(exc: ProgramError) -> str:
    """Return every problem as "location: message" in the admin's language, "; "-separated."""
    parts = []
    for loc, text in problems(exc):
        where = ".".join(str(p) for p in loc) or _("document")
        parts.append(f"{where}: {text}")
    return "; ".join(parts)
