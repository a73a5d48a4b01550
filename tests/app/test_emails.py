"""E-mail templates: every kind and language, strict variables, formatting, inlining, escaping."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from jinja2.exceptions import UndefinedError

from app.messaging.render import (
    DEFAULT_COLOUR,
    KINDS,
    LANGUAGES,
    MARKETING_KINDS,
    TRANSACTIONAL_KINDS,
    format_date,
    format_money,
    format_points,
    render,
    sample_context,
)


@pytest.mark.parametrize(
    ("_case", "kind", "language"), [(f"{k} {lang}", k, lang) for k in KINDS for lang in LANGUAGES]
)
def test_every_kind_renders_in_every_language(_case: str, kind: str, language: str) -> None:
    # given
    context = sample_context(kind, language)

    # when
    rendered = render(kind, language, context)

    # then
    shop_name = context["shop"]["name"]
    assert rendered.subject and "\n" not in rendered.subject
    assert shop_name in rendered.subject
    assert shop_name in rendered.text and shop_name in rendered.html
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{language}">' in rendered.html
    assert context["customer"]["first_name"] in rendered.text
    assert "{{" not in rendered.text + rendered.html


@pytest.mark.parametrize(("_case", "kind"), [(k, k) for k in MARKETING_KINDS])
def test_marketing_kinds_show_the_unsubscribe_link(_case: str, kind: str) -> None:
    # given
    context = sample_context(kind, "de")

    # when
    rendered = render(kind, "de", context)

    # then
    url = context["unsubscribe_url"]
    assert url in rendered.text
    assert f'href="{url}"' in rendered.html
    assert "abmelden" in rendered.html


@pytest.mark.parametrize(("_case", "kind"), [(k, k) for k in MARKETING_KINDS])
def test_marketing_kinds_refuse_to_render_without_unsubscribe_url(_case: str, kind: str) -> None:
    # given
    context = sample_context(kind, "de")
    del context["unsubscribe_url"]

    # when / then
    with pytest.raises(UndefinedError):
        render(kind, "de", context)


@pytest.mark.parametrize(("_case", "kind"), [(k, k) for k in TRANSACTIONAL_KINDS])
def test_transactional_kinds_show_the_shop_address(_case: str, kind: str) -> None:
    # given
    context = sample_context(kind, "de")
    context.pop("unsubscribe_url", None)

    # when
    rendered = render(kind, "de", context)

    # then
    address = context["shop"]["address"]
    assert address in rendered.text and address in rendered.html
    assert "abmelden" not in rendered.text + rendered.html


def test_address_line_is_left_out_when_not_given() -> None:
    # given
    context = sample_context("points_earned", "de")
    del context["shop"]["address"]

    # when
    rendered = render("points_earned", "de", context)

    # then
    assert "Hafenstraße" not in rendered.text + rendered.html


def test_missing_key_fails_loudly() -> None:
    # given
    context = sample_context("cart_reminder", "de")
    del context["recovery_url"]

    # when / then
    with pytest.raises(UndefinedError, match="recovery_url"):
        render("cart_reminder", "de", context)


def test_german_money_and_dates() -> None:
    # given
    context = sample_context("cart_reminder", "de")
    context.update(cart_total=Decimal("25"), currency="EUR")
    context["code"]["expires_at"] = date(2026, 12, 31)

    # when
    rendered = render("cart_reminder", "de", context)

    # then
    for part in (rendered.text, rendered.html):
        assert "25,00 €" in part
        assert "31.12.2026" in part


def test_english_money_and_dates() -> None:
    # given
    context = sample_context("cart_reminder", "en")
    context.update(cart_total=Decimal("1234.5"), currency="EUR")
    context["code"]["expires_at"] = date(2026, 12, 31)

    # when
    rendered = render("cart_reminder", "en", context)

    # then
    for part in (rendered.text, rendered.html):
        assert "€1,234.50" in part
        assert "31 December 2026" in part


@pytest.mark.parametrize(
    ("_case", "amount", "currency", "language", "expected"),
    [
        ("german euro", Decimal("25"), "EUR", "de", "25,00 €"),
        ("german thousands", Decimal("1234.5"), "EUR", "de", "1.234,50 €"),
        ("german rounds half up", Decimal("2.005"), "EUR", "de", "2,01 €"),
        ("german franc", Decimal("25"), "CHF", "de", "25,00 CHF"),
        ("german negative", Decimal("-5"), "EUR", "de", "-5,00 €"),
        ("english euro", Decimal("25"), "EUR", "en", "€25.00"),
        ("english millions", Decimal("1234567.891"), "USD", "en", "$1,234,567.89"),
        ("english franc", Decimal("25"), "chf", "en", "CHF 25.00"),
        ("english negative", Decimal("-5"), "GBP", "en", "-£5.00"),
        ("yen has no cents", Decimal("1500"), "JPY", "de", "1.500 JPY"),
    ],
)
def test_format_money(
    _case: str, amount: Decimal, currency: str, language: str, expected: str
) -> None:
    # when
    result = format_money(amount, currency, language)

    # then
    assert result == expected


def test_format_money_refuses_float() -> None:
    # when / then
    with pytest.raises(TypeError):
        format_money(25.0, "EUR", "de")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("_case", "value", "language", "tz", "expected"),
    [
        ("german date", date(2026, 1, 5), "de", None, "05.01.2026"),
        ("english date", date(2026, 1, 5), "en", None, "5 January 2026"),
        (
            "aware datetime in the shop's zone",
            datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc),
            "de",
            "Europe/Berlin",
            "01.01.2027",
        ),
        (
            "aware datetime in UTC",
            datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc),
            "en",
            "UTC",
            "31 December 2026",
        ),
    ],
)
def test_format_date(_case: str, value: date, language: str, tz: str | None, expected: str) -> None:
    # when
    result = format_date(value, language, tz)

    # then
    assert result == expected


def test_format_date_refuses_naive_datetime() -> None:
    # when / then
    with pytest.raises(TypeError):
        format_date(datetime(2026, 12, 31, 12, 0), "de")


@pytest.mark.parametrize(
    ("_case", "points", "language", "expected"),
    [
        ("german one", 1, "de", "1 Punkt"),
        ("german many", 1250, "de", "1.250 Punkte"),
        ("english one", 1, "en", "1 point"),
        ("english many", 1250, "en", "1,250 points"),
    ],
)
def test_format_points(_case: str, points: int, language: str, expected: str) -> None:
    # when
    result = format_points(points, language)

    # then
    assert result == expected


def test_html_css_is_inlined() -> None:
    # given
    context = sample_context("winback", "de")
    context["shop"]["colour"] = "#8a2be2"

    # when
    html = render("winback", "de", context).html

    # then
    assert "<style" not in html
    assert 'class="content" style="' in html
    assert "background-color: #8a2be2" in html


def test_invalid_colour_falls_back_to_default() -> None:
    # given: a colour that tries to smuggle CSS into the style block
    context = sample_context("winback", "de")
    context["shop"]["colour"] = "red; background: url(https://evil.example/x)"

    # when
    html = render("winback", "de", context).html

    # then
    assert "evil.example" not in html
    assert f"background-color: {DEFAULT_COLOUR}" in html


def test_light_colour_gets_dark_text() -> None:
    # given
    context = sample_context("second_purchase", "de")
    context["shop"]["colour"] = "#ffe066"

    # when
    html = render("second_purchase", "de", context).html

    # then
    text_colours = set(re.findall(r"(?<![-\w])color: (#[0-9a-f]{6})", html))
    assert "#1a1a1a" in text_colours
    assert "#ffffff" not in text_colours  # white text on yellow would be unreadable


def test_html_escapes_customer_input_and_text_keeps_it() -> None:
    # given
    context = sample_context("winback", "de")
    context["customer"]["first_name"] = "<b>Max</b>"
    context["shop"]["name"] = "Müller & Söhne"

    # when
    rendered = render("winback", "de", context)

    # then
    assert "<b>Max</b>" not in rendered.html
    assert "&lt;b&gt;Max&lt;/b&gt;" in rendered.html
    assert "Müller &amp; Söhne" in rendered.html
    assert "Hallo <b>Max</b>," in rendered.text
    assert "Müller & Söhne" in rendered.subject


@pytest.mark.parametrize(
    ("_case", "language", "expected_greeting"),
    [("german", "de", "Hallo,"), ("english", "en", "Hello,")],
)
def test_greeting_without_first_name(_case: str, language: str, expected_greeting: str) -> None:
    # given
    context = sample_context("expiry_notice", language)
    context["customer"] = {"first_name": "  "}

    # when
    rendered = render("expiry_notice", language, context)

    # then
    assert rendered.text.startswith(expected_greeting + "\n")


def test_customer_without_first_name_key_renders() -> None:
    # given
    context = sample_context("doi_confirm", "de")
    context["customer"] = {}

    # when
    rendered = render("doi_confirm", "de", context)

    # then
    assert rendered.text.startswith("Hallo,\n")
    assert context["confirm_url"] in rendered.text


@pytest.mark.parametrize(
    ("_case", "language", "expected_language"),
    [
        ("unknown falls back to german", "fr", "de"),
        ("missing falls back to german", None, "de"),
        ("region tag dropped", "de-AT", "de"),
        ("english region", "en_GB", "en"),
    ],
)
def test_language_fallback(_case: str, language: str | None, expected_language: str) -> None:
    # given
    context = sample_context("second_purchase", "de")

    # when
    rendered = render("second_purchase", language, context)

    # then
    assert f'<html lang="{expected_language}">' in rendered.html


@pytest.mark.parametrize(
    ("_case", "step", "with_code", "expected"),
    [
        ("first reminder", 1, False, "ist noch gespeichert"),
        ("second reminder", 2, False, "Noch Fragen"),
        ("last reminder without code", 3, False, "Ein letzter Hinweis"),
        ("last reminder with code", 3, True, "mit 10 % Rabatt"),
    ],
)
def test_cart_reminder_steps(_case: str, step: int, with_code: bool, expected: str) -> None:
    # given
    context = sample_context("cart_reminder", "de")
    context["step"] = step
    if not with_code:
        context.pop("code")

    # when
    rendered = render("cart_reminder", "de", context)

    # then
    assert expected in rendered.subject
    assert ("DANKE-7K2M" in rendered.html) is with_code


def test_tier_change_downgrade_is_not_congratulated() -> None:
    # given
    context: dict[str, Any] = sample_context("tier_change", "de")
    context.update(upgrade=False, old_tier="Gold", new_tier="Silber", perks=[])

    # when
    rendered = render("tier_change", "de", context)

    # then
    assert "Glückwunsch" not in rendered.text + rendered.html
    assert "„Silber“" in rendered.text
    assert "Vorteile in dieser Stufe" not in rendered.text


@pytest.mark.parametrize(("_case", "call"), [("render", "render"), ("sample_context", "sample")])
def test_unknown_kind_is_refused(_case: str, call: str) -> None:
    # when / then
    with pytest.raises(ValueError, match="unknown e-mail kind"):
        if call == "render":
            render("newsletter", "de", {})
        else:
            sample_context("newsletter", "de")


@pytest.mark.parametrize(
    ("_case", "locale", "shop_language", "expected"),
    [
        ("english customer, german shop", "en", "de", "en"),
        ("region tag with dash", "en-US", "de", "en"),
        ("region tag with underscore", "en_GB", "de", "en"),
        ("upper case region", "DE-de", "en", "de"),
        ("german customer, english shop", "de-DE", "en", "de"),
        ("unknown locale: the shop's", None, "en", "en"),
        ("empty locale: the shop's", "", "en", "en"),
        ("a language we do not write: the shop's", "fr-FR", "en", "en"),
        ("nothing known: german", None, None, "de"),
    ],
)
def test_customer_language_prefers_the_customers_own(_case: str, locale: str | None, shop_language: str | None,
                                                      expected: str) -> None:
    from types import SimpleNamespace

    from app.messaging.render import customer_language

    # given a customer with `locale` of a shop speaking `shop_language`
    customer = SimpleNamespace(locale=locale)
    shop = SimpleNamespace(language=shop_language)

    # when / then
    assert customer_language(customer, shop) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("_case", "kind", "language", "expected"), [
    ("win-back, German", "winback", "de", "Auf Ihrem Kundenkonto warten noch 450 Punkte (≈ 4,50\xa0€)"),
    ("win-back, English", "winback", "en", "You still have 450 points (≈ €4.50) in your account"),
    ("expiry, German", "expiry_notice", "de", "verfallen 120 Punkte (≈ 1,20\xa0€)."),
    ("expiry, English", "expiry_notice", "en", "120 points (≈ €1.20) will expire"),
    ("points earned, German", "points_earned", "de", "Verfügbar: 450 Punkte (≈ 4,50\xa0€)"),
    ("points earned, English", "points_earned", "en", "Available: 450 points (≈ €4.50)"),
])
def test_mails_that_mention_points_say_what_they_are_worth(_case: str, kind: str, language: str, expected: str) -> None:
    # given the demo data of a kind with a point worth 1 cent
    context = sample_context(kind, language)
    assert context["point_value"] == {"amount": Decimal("0.01"), "currency": "EUR"}

    # when it is rendered
    mail = render(kind, language, context)

    # then the text says what the points are worth, Babel-formatted for the language
    assert expected in mail.text


@pytest.mark.parametrize(("_case", "point_value", "expected"), [
    ("no value: nothing after the points", None, "Verfügbar: 450 Punkte\n"),
    ("a sub-cent value: the product rounded half up to the cent", {"amount": Decimal("0.0125"), "currency": "EUR"},
     "Verfügbar: 450 Punkte (≈ 5,63\xa0€)"),
    ("yen: to the whole yen", {"amount": Decimal("1.5"), "currency": "JPY"}, "Verfügbar: 450 Punkte (≈ 675\xa0¥)"),
])
def test_point_worth_in_mails_is_rounded_or_left_out(_case: str, point_value: Any, expected: str) -> None:
    # when a points-earned notice is rendered with that point value
    mail = render("points_earned", "de", {**sample_context("points_earned", "de"), "point_value": point_value})

    # then
    assert expected in mail.text
