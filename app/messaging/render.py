"""E-mail templates: render the subject, text and HTML of one kind of mail in one language.

Which language a customer gets is decided by `customer_language` (theirs, else the shop's).

No Flask here: jobs render without an app context. Templates live in `app/templates/email/`,
three per kind and language: `<kind>.<lang>.subject.txt`, `<kind>.<lang>.txt` and
`<kind>.<lang>.html` (extending `base.<lang>.html`). Languages are "de" and "en"; anything else
("fr", None) falls back to German, and region tags are dropped ("de-AT" -> "de").

The HTML is autoescaped, the text parts are not. Variables are strict: a key a template uses
but the context lacks raises `jinja2.exceptions.UndefinedError`. Keys marked optional below may
be left out (they default to None, or as stated). After rendering, the CSS of the layout is
inlined into `style` attributes (css-inline), because many mail clients drop `<style>` blocks.

Context of every kind:
    shop:      {name, url, colour="#2f6f4f" (hex; anything else falls back to the default),
                address=None (one line, e.g. "Firma GmbH · Straße 1 · 12345 Ort"),
                timezone="Europe/Berlin" (aware datetimes are shown as dates in this zone)}
    customer:  {first_name=None}  (greeting without a name when missing or empty)

Per kind (dates are `date` or aware `datetime`; money is `Decimal` plus a currency code, never
float; points are `int`):
    cart_reminder    step (1, 2 or 3), cart_total (Decimal), currency ("EUR"), recovery_url,
                     unsubscribe_url, code=None
    winback          balance (available points), shop_url, unsubscribe_url, tier=None (tier
                     name), code=None
    second_purchase  code, shop_url, unsubscribe_url
    expiry_notice    points_expiring, expires_at, balance, rewards_url, unsubscribe_url=None
    tier_change      new_tier, perks (list of str, may be empty), rewards_url, unsubscribe_url,
                     old_tier=None, upgrade=True (False words it as a step down)
    points_earned    points, order_number (as the shop shows it, e.g. "#1001"),
                     balance_available, balance_pending, rewards_url, unsubscribe_url=None,
                     code=None (the order's bounce-back code, when it goes with this e-mail)
    bounce_back      code (the bounce-back code the order earned), order_number, shop_url,
                     unsubscribe_url
    doi_confirm      confirm_url
    reward_code      reward (the reward's name), code, rewards_url, unsubscribe_url=None
                     (a redeemed reward's code, e.g. re-sent by support staff)

`code` is {code, value_text (already formatted, e.g. "15 %" or "5,00 €"), expires_at=None,
minimum=None (the least order it applies to, formatted, e.g. "20,00 €")}.

`point_value` (winback, expiry_notice, points_earned; optional, None = not shown) is
{amount: Decimal per point, currency}: every amount of points those mails mention is followed by
what it is worth, "(≈ 12,50 €)" (the `worth` filter; rounded half up to the cent, Babel-formatted).

Marketing kinds (MARKETING_KINDS) always show the unsubscribe link in the footer, so their
`unsubscribe_url` is required; the others show it only when given. Every kind shows the shop's
address line when given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

if TYPE_CHECKING:
    from app.models import Customer, Shop

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "email"

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"
DEFAULT_COLOUR = "#2f6f4f"
DEFAULT_TIMEZONE = "Europe/Berlin"

MARKETING_KINDS: tuple[str, ...] = ("cart_reminder", "winback", "second_purchase", "tier_change", "bounce_back")
TRANSACTIONAL_KINDS: tuple[str, ...] = ("expiry_notice", "points_earned", "doi_confirm", "reward_code")
KINDS: tuple[str, ...] = MARKETING_KINDS + TRANSACTIONAL_KINDS

# Keys a kind may leave out, with their defaults. Required keys are not listed: StrictUndefined
# reports them when a template uses them.
_OPTIONAL: dict[str, dict[str, Any]] = {
    "cart_reminder": {"code": None},
    "winback": {"tier": None, "code": None, "point_value": None},
    "second_purchase": {},
    "expiry_notice": {"unsubscribe_url": None, "point_value": None},
    "tier_change": {"old_tier": None, "upgrade": True},
    "points_earned": {"unsubscribe_url": None, "code": None, "point_value": None},
    "bounce_back": {},
    "doi_confirm": {"unsubscribe_url": None},
    "reward_code": {"unsubscribe_url": None},
}

_HEX_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
_CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
_ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "ISK", "HUF", "CLP", "VND"})
_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class Rendered:
    """One rendered e-mail: a single-line subject, the plain text and the inlined HTML."""

    subject: str
    text: str
    html: str


def spoken_language(tag: str | None) -> str | None:
    """Return "de" or "en" for a tag we write in ("en-US", "en_GB", "DE-de" -> ...), else None."""
    primary = re.split(r"[-_]", (tag or "").strip().lower(), maxsplit=1)[0]
    return primary if primary in LANGUAGES else None


def normalize_language(language: str | None) -> str:
    """Return "de" or "en" for a language tag ("en-GB" -> "en"); unknown ones fall back to "de"."""
    return spoken_language(language) or DEFAULT_LANGUAGE


def customer_language(customer: Customer | None, shop: Shop | None) -> str:
    """Return the language to address a customer in: their own, else the shop's, else German.

    The one place that decides it, for e-mails, the customer's page and the public pages.
    The customer's `locale` is as the platform sent it ("en", "en-US", "de_DE"; None when
    unknown); either argument may be None. A locale we do not write in ("fr") counts as
    unknown, so the shop's language applies.
    """
    return (
        spoken_language(customer.locale if customer is not None else None)
        or spoken_language(shop.language if shop is not None else None)
        or DEFAULT_LANGUAGE
    )


# --- formatting -----------------------------------------------------------------------------


def _group(digits: str, sep: str) -> str:
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return sep.join(parts)


def format_number(value: int | Decimal, language: str, places: int = 0) -> str:
    """Format a number with the language's separators: de "1.234,50", en "1,234.50"."""
    if isinstance(value, float) or isinstance(value, bool):
        raise TypeError("numbers in e-mails must be int or Decimal, never float or bool")
    amount = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    whole, _, frac = f"{abs(amount):f}".partition(".")
    thousands, decimal_sep = (".", ",") if normalize_language(language) == "de" else (",", ".")
    text = _group(whole, thousands)
    if places:
        text += decimal_sep + frac
    return sign + text


def format_money(amount: Decimal | int, currency: str, language: str) -> str:
    """Format money: de "1.234,50 €" / "25,00 CHF", en "€1,234.50" / "CHF 25.00".

    Raises:
        TypeError: `amount` is a float.
    """
    currency = currency.upper()
    places = 0 if currency in _ZERO_DECIMAL_CURRENCIES else 2
    number = format_number(amount, language, places)
    sign, digits = ("-", number[1:]) if number.startswith("-") else ("", number)
    symbol = _CURRENCY_SYMBOLS.get(currency)
    if normalize_language(language) == "de":
        return f"{sign}{digits} {symbol or currency}"
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{currency} {digits}"


def _zone(name: str | None) -> timezone | ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def format_date(value: date | datetime, language: str, tz: str | None = None) -> str:
    """Format a date: de "31.12.2026", en "31 December 2026" (aware datetimes in `tz` first).

    Raises:
        TypeError: a naive datetime (its zone would be a guess).
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("datetimes in e-mails must be timezone-aware")
        value = value.astimezone(_zone(tz)).date()
    if normalize_language(language) == "de":
        return f"{value.day:02d}.{value.month:02d}.{value.year}"
    return f"{value.day} {_MONTHS_EN[value.month - 1]} {value.year}"


def format_points(value: int, language: str) -> str:
    """Format a points amount with its unit: de "1 Punkt", "1.250 Punkte"; en "1,250 points"."""
    number = format_number(value, language)
    if normalize_language(language) == "de":
        return f"{number} Punkt" if value in (1, -1) else f"{number} Punkte"
    return f"{number} point" if value in (1, -1) else f"{number} points"


# What points are worth (issue 20, rule 7): the money is formatted by Babel for the language
# ("12,50\xa0€" in German, "€12.50" in English), always after "≈" because the value is a rounded
# product of the point's value (half up to the currency's smallest unit).
_BABEL_LOCALES = {"de": "de_DE", "en": "en_US"}


def format_worth(amount: Decimal, currency: str, language: str) -> str:
    """Format what points are worth with Babel in the language's locale ("12,50 €", "€12.50").

    Raises:
        TypeError: `amount` is a float.
    """
    if isinstance(amount, float):
        raise TypeError("money in e-mails must be Decimal, never float")
    from babel.numbers import format_currency

    return format_currency(amount, currency.upper(), locale=_BABEL_LOCALES[normalize_language(language)])


def worth_text(points: int, amount: Decimal, currency: str, language: str) -> str:
    """Return "1.250 Punkte ≈ 12,50 €" / "1,250 points ≈ €12.50"."""
    return f"{format_points(points, language)} ≈ {format_worth(amount, currency, language)}"


def points_worth(points: int, point_value: Mapping[str, Any] | None, language: str) -> str:
    """Return " (≈ 12,50 €)" for `points` at `point_value` ({"amount": Decimal per point,
    "currency": "EUR"}, as `Program.point_worth` gives it), rounded half up to the currency's
    smallest unit; "" without a point value."""
    if not point_value:
        return ""
    from babel.numbers import get_currency_precision

    currency = str(point_value["currency"]).upper()
    places = get_currency_precision(currency)
    amount = (Decimal(point_value["amount"]) * points).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f" (≈ {format_worth(amount, currency, language)})"


# --- environment ----------------------------------------------------------------------------


@lru_cache(maxsize=len(LANGUAGES))
def _environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(
            enabled_extensions=("html",), default_for_string=False, default=False
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )

    @pass_context
    def date_filter(ctx: Context, value: date | datetime) -> str:
        shop = ctx.get("shop")
        tz = shop.get("timezone") if isinstance(shop, Mapping) else None
        return format_date(value, language, tz)

    env.filters["money"] = lambda amount, currency: format_money(amount, currency, language)
    env.filters["number"] = lambda value: format_number(value, language)
    env.filters["points"] = lambda value: format_points(value, language)

    @pass_context
    def worth_filter(ctx: Context, points: int) -> str:
        return points_worth(points, ctx.get("point_value"), language)

    env.filters["worth"] = worth_filter
    env.filters["date"] = date_filter
    return env


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # Never fetch remote stylesheets: rendering must not touch the network.
    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=False)


# --- context --------------------------------------------------------------------------------


def _luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = []
    for i in (0, 2, 4):
        c = int(h[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def brand_colours(colour: str | None) -> dict[str, str]:
    """Return a shop's brand colour (the default unless a hex colour) with readable companions.

    `on_colour` is the text colour on it (header, buttons), `link_colour` a link colour on white.
    """
    if not isinstance(colour, str) or not _HEX_COLOUR.match(colour):
        colour = DEFAULT_COLOUR
    return {
        "colour": colour,
        "on_colour": "#ffffff" if _contrast(colour, "#ffffff") >= _contrast(colour, "#1a1a1a") else "#1a1a1a",
        "link_colour": colour if _contrast(colour, "#ffffff") >= 3 else "#1a1a1a",
    }


def _shop_context(shop: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"address": None, "timezone": DEFAULT_TIMEZONE, **shop}
    result.update(brand_colours(result.get("colour")))
    return result


def _prepare(kind: str, language: str, context: Mapping[str, Any]) -> dict[str, Any]:
    ctx: dict[str, Any] = {**_OPTIONAL[kind], **context}
    if "shop" in ctx:
        ctx["shop"] = _shop_context(ctx["shop"])
    if isinstance(ctx.get("customer"), Mapping):
        customer = dict(ctx["customer"])
        first_name = customer.get("first_name")
        customer["first_name"] = (
            first_name.strip() if isinstance(first_name, str) and first_name.strip() else None
        )
        ctx["customer"] = customer
    if isinstance(ctx.get("code"), Mapping):
        ctx["code"] = {"expires_at": None, "minimum": None, **ctx["code"]}
    ctx["kind"] = kind
    ctx["language"] = language
    ctx["is_marketing"] = kind in MARKETING_KINDS
    return ctx


# --- rendering ------------------------------------------------------------------------------


def render(kind: str, language: str | None, context: Mapping[str, Any]) -> Rendered:
    """Render one e-mail of `kind` in `language` (unknown languages fall back to German).

    Raises:
        ValueError: `kind` is not one of KINDS.
        jinja2.exceptions.UndefinedError: the context lacks a key the templates use.
        TypeError: a float amount or a naive datetime in the context.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown e-mail kind {kind!r}; expected one of {', '.join(KINDS)}")
    lang = normalize_language(language)
    env = _environment(lang)
    ctx = _prepare(kind, lang, context)
    subject = " ".join(env.get_template(f"{kind}.{lang}.subject.txt").render(ctx).split())
    text = env.get_template(f"{kind}.{lang}.txt").render(ctx)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    html = _inliner().inline(env.get_template(f"{kind}.{lang}.html").render(ctx))
    return Rendered(subject=subject, text=text, html=html)


# --- demo data ------------------------------------------------------------------------------

_SAMPLE_SHOP = {
    "de": {
        "name": "Kaffeerösterei Hansen",
        "colour": DEFAULT_COLOUR,
        "url": "https://kaffee-hansen.example",
        "address": "Kaffeerösterei Hansen GmbH · Hafenstraße 12 · 20457 Hamburg",
    },
    "en": {
        "name": "Hansen Coffee Roasters",
        "colour": DEFAULT_COLOUR,
        "url": "https://hansen-coffee.example",
        "address": "Hansen Coffee Roasters Ltd · 12 Harbour Street · Bristol BS1 4XX",
    },
}
_SAMPLE_FIRST_NAME = {"de": "Anna", "en": "Emma"}
_SAMPLE_TIERS = {"de": ("Silber", "Gold"), "en": ("Silver", "Gold")}
_SAMPLE_PERKS = {
    "de": [
        "10 % Rabatt auf jede Bestellung",
        "Versandkostenfrei ab 20 €",
        "Früher Zugang zu neuen Röstungen",
    ],
    "en": ["10% off every order", "Free shipping over €20", "Early access to new roasts"],
}


def sample_context(kind: str, language: str | None) -> dict[str, Any]:
    """Return realistic demo data for `kind` (for previews); cart_reminder is step 3 with a code.

    Raises:
        ValueError: `kind` is not one of KINDS.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown e-mail kind {kind!r}; expected one of {', '.join(KINDS)}")
    lang = normalize_language(language)
    shop = dict(_SAMPLE_SHOP[lang])
    base = shop["url"]
    token = "demo-9f3c2a"
    common: dict[str, Any] = {
        "shop": shop,
        "customer": {"first_name": _SAMPLE_FIRST_NAME[lang]},
        "unsubscribe_url": f"{base}/apps/stammkunde/unsubscribe/{token}",
    }
    code = {
        "code": "DANKE-7K2M" if lang == "de" else "THANKS-7K2M",
        "value_text": "10 %" if lang == "de" else "10%",
        "expires_at": date(2026, 12, 31),
    }
    rewards_url = f"{base}/apps/stammkunde/r/{token}"
    point_value = {"amount": Decimal("0.01"), "currency": "EUR"}  # 5 € for 500 points
    silver, gold = _SAMPLE_TIERS[lang]
    per_kind: dict[str, dict[str, Any]] = {
        "cart_reminder": {
            "step": 3,
            "cart_total": Decimal("25.00"),
            "currency": "EUR",
            "recovery_url": f"{base}/cart/recover/{token}",
            "code": code,
        },
        "winback": {"balance": 450, "tier": silver, "code": code, "shop_url": base, "point_value": point_value},
        "second_purchase": {
            "code": {**code, "value_text": "15 %" if lang == "de" else "15%"},
            "shop_url": base,
        },
        "expiry_notice": {
            "points_expiring": 120,
            "expires_at": date(2026, 12, 31),
            "balance": 450,
            "rewards_url": rewards_url,
            "point_value": point_value,
        },
        "tier_change": {
            "old_tier": silver,
            "new_tier": gold,
            "upgrade": True,
            "perks": list(_SAMPLE_PERKS[lang]),
            "rewards_url": rewards_url,
        },
        "points_earned": {
            "points": 42,
            "order_number": "#1042",
            "balance_available": 450,
            "balance_pending": 42,
            "rewards_url": rewards_url,
            "point_value": point_value,
        },
        "bounce_back": {
            "code": {**code, "code": "DANKE-4TB7K2M9QX", "value_text": "5,00 €" if lang == "de" else "€5.00",
                     "minimum": "20,00 €" if lang == "de" else "€20.00"},
            "order_number": "#1042",
            "shop_url": base,
        },
        "doi_confirm": {"confirm_url": f"{base}/apps/stammkunde/confirm/{token}"},
        "reward_code": {
            "reward": "5 € Rabatt" if lang == "de" else "€5 off",
            "code": {**code, "code": "SK-7K2M9QX4TB", "value_text": "5,00 €" if lang == "de" else "€5.00"},
            "rewards_url": rewards_url,
        },
    }
    if kind in TRANSACTIONAL_KINDS and kind != "expiry_notice":
        common.pop("unsubscribe_url")
    return {**common, **per_kind[kind]}
