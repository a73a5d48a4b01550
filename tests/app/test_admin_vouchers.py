"""The admin's partner voucher pools (app.web.admin_vouchers): create a pool, upload a partner's
CSV, see what is left with a warning when it runs low, offer it in the program, redeem it for a
customer as support. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
from html import unescape

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from app.db import session_scope
from app.models import Customer, StaffAuditEntry, StaffRole, VoucherCode, VoucherPool
from app.program import ProgramError
from app.web.staff import create_staff, grant_role
from tests import factories
from app.web import program_form
from tests.app.test_admin import INSTANT, NO_EXTRAS, STAFF_PASSWORD, _csrf_token, _sign_in, _signed_in
from tests.app.test_admin_program_forms import _blank_row, _fill, _forms

KAFFEE = {"name": "Kaffee-Gutschein", "points": 200, "kind": "partner_voucher", "pool": "Rösterei", "low_stock": 2}


def _text(response) -> str:  # type: ignore[no-untyped-def]
    return re.sub(r"\s+", " ", unescape(response.get_data(as_text=True)))


def _create(client, shop_id: int, name: str = "Rösterei") -> int:  # type: ignore[no-untyped-def]
    page = client.get(f"/admin/shops/{shop_id}/vouchers").get_data(as_text=True)
    answer = client.post(f"/admin/shops/{shop_id}/vouchers", data={
        "csrf_token": _csrf_token(page), "name": name, "partner": "Rösterei Sonnenschein"})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    with session_scope() as s:
        return s.scalars(select(VoucherPool.id).where(VoucherPool.name == name)).one()


def _upload(client, shop_id: int, pool_id: int, content: bytes, filename: str = "codes.csv"):  # type: ignore[no-untyped-def]
    page = client.get(f"/admin/shops/{shop_id}/vouchers").get_data(as_text=True)
    # Encoded here in memory: the test client would spool a large body to a file it never closes.
    boundary, body = encode_multipart(MultiDict([("csrf_token", _csrf_token(page)),
                                                 ("file", FileStorage(io.BytesIO(content), filename))]))
    return client.post(f"/admin/shops/{shop_id}/vouchers/{pool_id}/upload", data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")


def _codes() -> list[str]:
    with session_scope() as s:
        return list(s.scalars(select(VoucherCode.code).order_by(VoucherCode.id)))


def test_owner_creates_a_pool_uploads_codes_and_sees_what_is_left(client, session, make_shop):
    # given an owner of a shop
    shop_id = make_shop("shopify")
    _signed_in(client, session)

    # when they create a pool and upload a partner's file with a header, a repeated code and one
    # already uploaded before
    pool_id = _create(client, shop_id)
    first = _upload(client, shop_id, pool_id, "Gutscheincode;Gültig bis\nKAFFEE-1;31.12.2030\n".encode())
    second = _upload(client, shop_id, pool_id, b"code\nKAFFEE-2\nKAFFEE-3\nKAFFEE-2\nKAFFEE-1\n")

    # then the new codes are appended once each, the others reported by line, and the page counts 3 left
    assert (first.status_code, second.status_code) == (200, 200)
    assert _codes() == ["KAFFEE-1", "KAFFEE-2", "KAFFEE-3"]
    text = _text(second)
    assert "2 codes added to Rösterei; 2 skipped (listed below)." in text
    assert "Line 4: KAFFEE-2 repeats line 2" in text
    assert "Line 5: KAFFEE-1 is already in the pool 'Rösterei'" in text
    assert re.search(r'<tr id="pool-\d+">.*?<span class="pool-left">3</span>', second.get_data(as_text=True), re.S)
    # and both the pool and the uploads are in the audit log, without the codes
    with session_scope() as s:
        entries = s.execute(select(StaffAuditEntry.action, StaffAuditEntry.after)
                            .order_by(StaffAuditEntry.id)).all()
    assert [a for a, _ in entries] == ["vouchers.pool_create", "vouchers.upload", "vouchers.upload"]
    assert entries[2][1] == {"pool": "Rösterei", "file": "codes.csv", "added": 2, "skipped": 2}
    assert "KAFFEE" not in str(entries)


def test_upload_with_a_bad_row_imports_nothing_and_names_every_bad_line(client, session, make_shop):
    # given a pool
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    pool_id = _create(client, shop_id)

    # when a file with good rows, a code with a space and an unreadable date is uploaded
    answer = _upload(client, shop_id, pool_id, b"A-1\nA 2\nA-3,31/12/2030\nA-4\n")

    # then nothing is stored and each bad line is listed with why
    assert answer.status_code == 422
    text = _text(answer)
    assert "Nothing was imported: 2 rows cannot be read." in text
    assert "Line 2: 'A 2' contains spaces or invisible characters" in text
    assert "Line 3: '31/12/2030' is not a date (YYYY-MM-DD or DD.MM.YYYY)" in text
    assert _codes() == []


def test_a_pool_of_the_same_name_is_refused(client, session, make_shop):
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    _create(client, shop_id)
    page = client.get(f"/admin/shops/{shop_id}/vouchers").get_data(as_text=True)
    again = client.post(f"/admin/shops/{shop_id}/vouchers", data={"csrf_token": _csrf_token(page), "name": "Rösterei"})
    assert again.status_code == 409
    assert "There is a pool called Rösterei already" in _text(again)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(VoucherPool)) == 1


def test_program_naming_a_pool_the_shop_has_not_is_refused_at_the_field(client, session, make_shop):
    # given a shop without pools
    shop_id = make_shop("shopify")

    # when a program offers a partner voucher from a pool that does not exist
    with pytest.raises(ProgramError) as refused:
        factories.program(shop_id, {"rewards": [KAFFEE]})

    # then the error names the reward's pool field, and nothing is saved
    assert refused.value.problems == ((("rewards", 0, "pool"),
                                       "no voucher pool called 'Rösterei' in this shop (create it under Vouchers "
                                       "first)"),)

    # when the owner creates the pool and adds the reward in the program's forms
    _signed_in(client, session)
    _create(client, shop_id)
    fields = _forms(client, shop_id)
    new = _blank_row(fields, "rewards")
    _fill(fields, {f"rewards.{new}.name": "Kaffee-Gutschein", f"rewards.{new}.points": "200",
                   f"rewards.{new}.kind": "partner_voucher", f"rewards.{new}.pool": "Röstrei"})
    typo = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)
    _fill(fields, {f"rewards.{new}.pool": "Rösterei"})
    saved = client.post(f"/admin/shops/{shop_id}/program/forms", data=fields)

    # then a typo in the pool's name is shown beside that field, and the right name saves
    assert typo.status_code == 400
    beside = re.search(rf'<p class="field-error" id="{program_form.field_id(f"rewards.{new}.pool")}-error">(.*?)</p>',
                       typo.get_data(as_text=True), re.S)
    assert beside and "no voucher pool called 'Röstrei' in this shop" in unescape(beside.group(1))
    assert saved.status_code == 302
    with session_scope() as s:
        from app.models import Shop
        from app.program import current_program

        reward = current_program(s, s.get(Shop, shop_id))[1].reward("Kaffee-Gutschein")
        assert (reward.kind, reward.pool, reward.low_stock) == ("partner_voucher", "Rösterei", 10)


def test_a_pool_running_low_or_empty_warns_on_the_shop_pages(client, session, make_shop):
    # given a coffee voucher reward (warning at 2) whose pool holds 2 codes
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    pool_id = _create(client, shop_id)
    _upload(client, shop_id, pool_id, b"K-1\nK-2\n")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT, "rewards": [KAFFEE]})

    # then the shop's dashboard and the vouchers page say it is running low
    dashboard = _text(client.get(f"/admin/shops/{shop_id}"))
    assert "The voucher pool Rösterei has 2 codes left (warning at 2 or fewer)." in dashboard
    assert "running low" in _text(client.get(f"/admin/shops/{shop_id}/vouchers"))

    # when both codes are redeemed
    for n in ("1", "2"):
        factories.apply(shop_id, factories.order(n, "300.00", customer_id=f"c{n}", email=f"k{n}@example.test"))
        with session_scope() as s:
            from app.loyalty.redemptions import redeem
            from app.models import Shop

            customer = s.scalars(select(Customer).where(Customer.platform_id == f"c{n}")).one()
            redeem(s, s.get(Shop, shop_id), customer, "Kaffee-Gutschein", source="staff")

    # then it is empty, and the reward is said to be unredeemable
    assert ("The voucher pool Rösterei is empty: Kaffee-Gutschein cannot be redeemed until you upload more codes."
            in _text(client.get(f"/admin/shops/{shop_id}")))


def test_support_staff_cannot_manage_pools(client, session, make_shop):
    # given a support user of the shop
    shop_id = make_shop("shopify")
    with session_scope() as s:
        user = create_staff(s, "hilfe@stammkunde.example", STAFF_PASSWORD)
        user.language = "en"
        grant_role(s, shop_id=shop_id, staff_id=user.id, role=StaffRole.SUPPORT, adjust_limit=10, granted_by="test")
    assert _sign_in(client, "hilfe@stammkunde.example").status_code == 302
    token = _csrf_token(client.get("/admin/").get_data(as_text=True))

    # then the pools page and its forms are owner work
    assert client.get(f"/admin/shops/{shop_id}/vouchers").status_code == 403
    assert client.post(f"/admin/shops/{shop_id}/vouchers", data={"csrf_token": token, "name": "X"}).status_code == 403
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(VoucherPool)) == 0


def test_support_redeems_a_partner_voucher_and_the_customer_page_shows_the_code(client, session, make_shop):
    # given a customer with 300 points and a pool of one code
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    pool_id = _create(client, shop_id)
    _upload(client, shop_id, pool_id, b"KAFFEE-77\n")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT, "rewards": [KAFFEE]})
    factories.apply(shop_id, factories.order("1", "300.00"))
    with session_scope() as s:
        customer_id = s.scalars(select(Customer.id)).one()

    # when support redeems the coffee voucher on the customer's page
    page = client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)
    key = re.search(r'name="key" value="([^"]+)"', page).group(1)
    done = client.post(f"/admin/customers/{customer_id}/redeem", data={
        "csrf_token": _csrf_token(page), "key": key, "reward": "Kaffee-Gutschein"}, follow_redirects=True)

    # then the partner code is said at once and listed on the customer's page; the pool is empty
    text = _text(done)
    assert "partner code KAFFEE-77, e-mailed to the customer." in text
    assert "KAFFEE-77" in text.split("Redeemed Kaffee-Gutschein", 1)[1]
    assert "(sold out: the voucher pool is empty)" in text


def test_support_re_sends_a_partner_voucher_code(smtp_server, client, session, make_shop):
    # given a customer who redeemed a partner voucher
    shop_id = make_shop("shopify", language="de")
    _signed_in(client, session)
    pool_id = _create(client, shop_id)
    _upload(client, shop_id, pool_id, b"KAFFEE-88\n")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT, "rewards": [{**KAFFEE, "value": "5"}]})
    factories.apply(shop_id, factories.order("1", "300.00"))
    with session_scope() as s:
        from app.loyalty.redemptions import redeem
        from app.models import Shop

        customer = s.scalars(select(Customer)).one()
        customer_id = customer.id
        redemption_id = redeem(s, s.get(Shop, shop_id), customer, "Kaffee-Gutschein", source="staff").id

    # when support presses "re-send" on the customer's page
    page = client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)
    sent = client.post(f"/admin/customers/{customer_id}/redemptions/{redemption_id}/resend",
                       data={"csrf_token": _csrf_token(page)}, follow_redirects=True)

    # then the customer gets the partner's code with what it is worth
    assert "Code KAFFEE-88 was e-mailed to kundin@example.test." in _text(sent)
    [mail] = smtp_server.messages
    text = mail.get_body(("plain",)).get_content()
    assert "    KAFFEE-88" in text and "Wert: 5,00 €" in text


def test_an_upload_of_100000_codes_through_the_page_is_stored_whole(client, session, make_shop):
    # given a pool and a partner file of 100 000 codes (1.7 MB, more than a webhook may carry)
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    pool_id = _create(client, shop_id)
    content = ("Gutscheincode;Gültig bis\n" + "".join(f"ROAST-{n:06d}-XYZ;31.12.2030\n" for n in range(100_000))).encode()
    assert len(content) > client.application.config["MAX_CONTENT_LENGTH"]

    # when the owner uploads it
    answer = _upload(client, shop_id, pool_id, content)

    # then every code is stored and counted as left
    assert answer.status_code == 200
    assert "100000 codes added to Rösterei." in _text(answer)
    assert re.search(r'<span class="pool-left">100000</span>', answer.get_data(as_text=True))


def test_an_owner_cannot_upload_into_another_shops_pool(client, session, make_shop):
    # given two shops, each with a pool, and an administrator (who owns both)
    a = make_shop("shopify")
    b = make_shop("shopify", domain="zweiter-laden.myshopify.com", secret="second-shop-secret")
    _signed_in(client, session)
    _create(client, a, "Pool A")
    pool_b = _create(client, b, "Pool B")

    # when a file is posted to shop A's address naming shop B's pool
    answer = _upload(client, a, pool_b, b"X-1\n")

    # then the pool is not found there, and nothing is stored
    assert answer.status_code == 404
    assert _codes() == []
