"""Bounce-back codes on the customer's own page and the admin's customer page: each code with its
state and the order that earned it, explained in the customer's language (issue 20, rule 1)."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.loyalty.customers import find_by_email
from app.models import CodeStatus, IssuedCode
from app.web.customer_page import make_token
from tests.app.test_admin import _signed_in
from tests.factories import T0, apply, order, program

KUNDIN = "kundin@example.test"
OFFER = {"enabled": True, "threshold": "50", "kind": "fixed_amount", "value": "5", "minimum_amount": "20",
         "valid_days": 30}
PROGRAM = {"second_purchase": {"enabled": False}, "referral": {"enabled": False}, "bounce_back": OFFER}

pytestmark = pytest.mark.sqlite_only  # page rendering; the states are written by tests/jobs/test_bounce_back.py


def _shop_with_codes(make_shop, language: str) -> tuple[int, int, list[str]]:  # type: ignore[no-untyped-def]
    """A shop whose customer has four bounce-back codes: usable (#1), used (#2), taken back for a
    cancellation (#3) and still being created (#4)."""
    shop_id = make_shop("shopify", name="Kaffee & Kuchen", language=language)
    program(shop_id, PROGRAM)
    for number in ("1", "2", "3", "4"):
        apply(shop_id, order(number, "80.00", paid_at=T0 + timedelta(hours=int(number))))
    with session_scope() as s:
        rows = list(s.scalars(select(IssuedCode).where(IssuedCode.purpose == "bounce_back").order_by(IssuedCode.id)))
        for row in rows[:3]:
            row.status, row.platform_id = CodeStatus.CREATED, f"gid://shopify/DiscountCodeNode/{row.id}"
        rows[1].used_at = T0 + timedelta(days=2)
        rows[2].ends_early_at = rows[2].deactivated_at = T0 + timedelta(days=1)
        rows[2].end_reason = "cancelled"
        customer = find_by_email(s, shop_id, KUNDIN)
        assert customer is not None
        return shop_id, customer.id, [r.code for r in rows]


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.mark.parametrize(("language", "words"), [
    ("de", ["Codes für Ihre nächste Bestellung", "Jede Bestellung ab 50,00 € bringt Ihnen einen Code über 5,00 €",
            "für Ihre Bestellung #1", "ab einem Bestellwert von 20,00 €", "Eingelöst.",
            "Zurückgenommen: Die Bestellung #3 wurde storniert, bevor der Code eingelöst wurde.",
            "Ihr Code wird gerade erstellt"]),
    ("en", ["Codes for your next order", "Every order from €50.00 earns you a code for €5.00 off",
            "for your order #1", "on an order of at least €20.00", "Used.",
            "Taken back: order #3 was cancelled before the code was used.", "Your code is being created"]),
])
def test_the_customer_page_explains_each_code_with_its_order_and_state(app, client, make_shop, time_machine,
                                                                      language, words):
    # given a customer with a usable, a used, a taken-back and a pending bounce-back code
    time_machine.move_to(T0 + timedelta(days=3), tick=False)
    shop_id, customer_id, codes = _shop_with_codes(make_shop, language)
    with app.app_context():
        token = make_token(shop_id, customer_id)

    # when they open their page
    page = client.get(f"/r/{token}").get_data(as_text=True)

    # then each code is explained with the order that earned it; only the usable one shows its code
    text = _text(page)
    assert all(w in text for w in words), text
    assert codes[0] in page and not any(code in page for code in codes[1:])
    assert page.count('class="bounce-back-') == 4


def test_the_admin_shows_each_code_with_its_state_and_order(client, session, make_shop, time_machine):
    # given the same customer, and a staff member on their admin page
    time_machine.move_to(T0 + timedelta(days=3), tick=False)
    shop_id, customer_id, codes = _shop_with_codes(make_shop, "de")
    _signed_in(client, session)

    # when the page is shown
    page = client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)

    # then every bounce-back code is listed with the order that earned it and what became of it
    rows = {m.group(1): _text(m.group(2)) for m in re.finditer(
        r'<tr id="code-(\d+)" class="code-bounce_back">(.*?)</tr>', page, re.S)}
    assert len(rows) == 4
    texts = [rows[str(i)] for i in range(1, 5)]
    assert all(f"earned by order #{n}" in t or f"verdient mit Bestellung #{n}" in t for n, t in zip("1234", texts))
    assert codes[0] in texts[0] and codes[1] in texts[1]  # usable and used codes exist in the shop
    assert codes[2] not in page  # taken back: not in the shop any more
    assert any(w in texts[1] for w in ("used", "eingelöst"))
    assert any(w in texts[2] for w in ("order cancelled", "Bestellung storniert"))
    assert any(w in texts[3] for w in ("being created", "wird erstellt", "wird angelegt"))


def test_code_state_of_a_bounce_back_code():
    # given a bounce-back code as it moves through its states (pure: `code_state`)
    from app.loyalty.explain import code_state

    row = IssuedCode(purpose="bounce_back", status=CodeStatus.CREATED)
    assert code_state(row) == "created"
    row.ends_early_at = T0
    assert code_state(row) == "withdrawing"
    row.deactivated_at = T0
    assert code_state(row) == "withdrawn"
    row.used_at = T0
    assert code_state(row) == "used"
    # and a tier perk that ended keeps its plain status, as before
    assert code_state(IssuedCode(purpose="tier_discount", status=CodeStatus.CREATED, ends_early_at=T0)) == "created"
