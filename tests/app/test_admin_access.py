"""Who may see and do what in the admin: shops given per staff user (404 for the others), owner
and support roles, the support adjustment limit, the audit log, staff management with
set-password links, sign-in throttling, the TOTP second factor, cookie flags and CSRF on every
form."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import unescape

import pyotp
import pytest
import time_machine
from sqlalchemy import select

from app.db import session_scope
from app.loyalty.customers import find_by_email
from app.loyalty.redemptions import redeem
from app.models import (
    DataRequest,
    ProgramVersion,
    Shop,
    StaffAuditEntry,
    StaffRole,
    StaffUser,
    WebhookDelivery,
)
from app.web import throttle
from app.web.staff import create_staff, grant_role
from tests import factories
from tests.app.test_admin import (
    INSTANT,
    KUNDIN,
    NO_EXTRAS,
    STAFF_PASSWORD,
    _csrf_token,
    _flashes,
    _form,
    _sign_in,
)

SHOP_B_DOMAIN = "zweiter-laden.myshopify.com"
SHOP_B_SECRET = "second-shop-secret"
SUPPORT_A = "support-a@stammkunde.example"
OWNER_A = "owner-a@stammkunde.example"
OWNER_B = "owner-b@stammkunde.example"
KUNDE_B = "kunde-b@example.test"
SUPPORT_LIMIT = 100


@dataclass
class Shops:
    a: int
    b: int
    customer_a: int
    customer_b: int
    redemption_b: int
    delivery_b: int
    data_request_b: int
    owner_b: int
    voucher_pool_b: int = 0


def _staff(email: str, grants: dict[int, tuple[StaffRole, int]]) -> int:
    with session_scope() as s:
        user = create_staff(s, email, STAFF_PASSWORD)
        user.language = "en"
        for shop_id, (role, limit) in grants.items():
            grant_role(s, shop_id=shop_id, staff_id=user.id, role=role, adjust_limit=limit, granted_by="test")
        return user.id


def _two_shops(make_shop, post_webhook) -> Shops:  # type: ignore[no-untyped-def]
    """Shop A with a customer of 600 points; shop B with a customer, a redemption, a delivery, a
    data request, its program version 1 and an owner."""
    a = make_shop("shopify")
    b = make_shop("shopify", domain=SHOP_B_DOMAIN, secret=SHOP_B_SECRET)
    for shop_id in (a, b):
        factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT})
    factories.apply(a, factories.order("1", "600.00"))
    factories.apply(b, factories.order("2", "900.00", email=KUNDE_B, customer_id="cb"))
    assert post_webhook("shopify", "customers/create", {"id": 77, "email": "webhook-b@example.test"},
                        secret=SHOP_B_SECRET, domain=SHOP_B_DOMAIN).status_code == 200
    with session_scope() as s:
        customer_a = find_by_email(s, a, KUNDIN)
        customer_b = find_by_email(s, b, KUNDE_B)
        assert customer_a is not None and customer_b is not None
        redemption = redeem(s, s.get(Shop, b), customer_b, "5 € Rabatt", source="staff", actor="test")
        delivery_b = s.scalars(select(WebhookDelivery.id).where(WebhookDelivery.shop_id == b)).one()
        request = DataRequest(shop_id=b, platform_request_id="9", customer_id=customer_b.id, email=KUNDE_B)
        s.add(request)
        s.flush()
        ids = (customer_a.id, customer_b.id, redemption.id, delivery_b, request.id)
    owner_b = _staff(OWNER_B, {b: (StaffRole.OWNER, 0)})
    with session_scope() as s:
        from app.loyalty.vouchers import create_pool

        pool_b = create_pool(s, s.get(Shop, b), "Partner B", partner=None, created_by="test").id
    return Shops(a, b, *ids, owner_b=owner_b, voucher_pool_b=pool_b)


def _as(client, email: str) -> str:  # type: ignore[no-untyped-def]
    assert _sign_in(client, email).status_code == 302
    return _csrf_token(client.get("/admin/account").get_data(as_text=True))


# Endpoints a visitor reaches before signing in, or that concern only the signed-in account.
NOT_SHOP_DATA = {
    "admin.login", "admin.login_code", "admin.set_password", "admin.logout", "admin.account",
    "admin.account_language", "admin.totp_setup", "admin.totp_enable", "admin.totp_disable",
    # RQ's jobs belong to no shop: administrators only (test_jobs_are_for_administrators_only)
    "admin.jobs", "admin.retry_job",
}


def _admin_rules(app):  # type: ignore[no-untyped-def]
    return [r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin.") and r.endpoint not in NOT_SHOP_DATA]


def _values(rule, shops: Shops, *, of_b: bool) -> dict[str, object]:  # type: ignore[no-untyped-def]
    known = {
        "shop_id": shops.b if of_b else shops.a,
        "customer_id": shops.customer_b if of_b else shops.customer_a,
        "redemption_id": shops.redemption_b,
        "delivery_id": shops.delivery_b,
        "request_id": shops.data_request_b,
        "staff_id": shops.owner_b,
        "version": 1,
        "kind": "winback",
        "pool_id": shops.voucher_pool_b,
    }
    missing = set(rule.arguments) - set(known)
    assert not missing, f"{rule.rule}: teach this test which object of shop B to use for {missing}"
    return {name: known[name] for name in rule.arguments}


def test_support_user_of_shop_a_gets_404_for_everything_of_shop_b(app, client, make_shop, post_webhook):
    # given two shops with objects of every kind, and a support user given shop A only
    shops = _two_shops(make_shop, post_webhook)
    _staff(SUPPORT_A, {shops.a: (StaffRole.SUPPORT, SUPPORT_LIMIT)})
    token = _as(client, SUPPORT_A)

    # when every admin URL that names a shop's object is asked for with shop B's objects
    answers = {}
    for rule in _admin_rules(app):
        if not rule.arguments:
            continue
        url = rule.build(_values(rule, shops, of_b=True), append_unknown=False)[1]
        for method in sorted(rule.methods & {"GET", "POST"}):
            response = client.get(url) if method == "GET" else client.post(url, data={"csrf_token": token, "key": "0" * 32,
                                                                                       "points": "1", "reason": "x"})
            answers[f"{method} {url}"] = response.status_code

    # then each one is 404, as if shop B did not exist
    assert answers and set(answers.values()) == {404}, {k: v for k, v in answers.items() if v != 404}
    # and nothing of shop B changed: no audit entry, the delivery and data request untouched
    with session_scope() as s:
        assert s.scalars(select(StaffAuditEntry)).all() == []
        assert s.get(DataRequest, shops.data_request_b).exported_at is None


def test_lists_show_a_support_user_only_their_shops(client, make_shop, post_webhook):
    # given two shops and a support user given shop A only
    shops = _two_shops(make_shop, post_webhook)
    _staff(SUPPORT_A, {shops.a: (StaffRole.SUPPORT, SUPPORT_LIMIT)})
    _as(client, SUPPORT_A)

    # when they open every list, also asking for shop B by filter
    pages = {
        path: client.get(path).get_data(as_text=True)
        for path in ("/admin/", f"/admin/deliveries?shop={shops.b}", "/admin/deliveries",
                     f"/admin/reminders?shop={shops.b}", "/admin/customers?q=example.test",
                     f"/admin/customers?q=%232", "/admin/data-requests")
    }

    # then shop B and its customers appear nowhere, and shop A does where it should
    for path, html in pages.items():
        assert SHOP_B_DOMAIN not in html and KUNDE_B not in html, path
    assert "demo-laden.myshopify.com" in pages["/admin/"]
    assert KUNDIN in pages["/admin/customers?q=example.test"]


def test_support_user_reaches_their_own_shop(app, client, make_shop, post_webhook):
    # given two shops and a support user given shop A
    shops = _two_shops(make_shop, post_webhook)
    _staff(SUPPORT_A, {shops.a: (StaffRole.SUPPORT, SUPPORT_LIMIT)})
    _as(client, SUPPORT_A)

    # when they open shop A's pages
    answers = {path: client.get(path).status_code for path in (
        f"/admin/shops/{shops.a}", f"/admin/shops/{shops.a}/program", f"/admin/shops/{shops.a}/program/1",
        f"/admin/customers/{shops.customer_a}", f"/admin/shops/{shops.a}/emails",
        f"/admin/shops/{shops.a}/emails/winback?lang=de")}

    # then they see them (the 404s above are about shop B, not about the role)
    assert set(answers.values()) == {200}, answers


def test_support_cannot_change_the_program_or_staff_or_read_the_audit_log(client, make_shop, post_webhook, session):
    # given shop A and a support user given it
    shops = _two_shops(make_shop, post_webhook)
    _staff(SUPPORT_A, {shops.a: (StaffRole.SUPPORT, SUPPORT_LIMIT)})
    token = _as(client, SUPPORT_A)

    # when they open the program and post a new version, and open the owner pages
    page = client.get(f"/admin/shops/{shops.a}/program").get_data(as_text=True)
    saved = client.post(f"/admin/shops/{shops.a}/program", data={"csrf_token": token, "document": "{}", "base": "1"})
    staff_page = client.get(f"/admin/shops/{shops.a}/staff")
    grant = client.post(f"/admin/shops/{shops.a}/staff", data={"csrf_token": token, "email": "x@y.example",
                                                                "role": "owner", "adjust_limit": "0"})
    audit_page = client.get(f"/admin/audit?shop={shops.a}")
    audit_csv = client.get("/admin/audit.csv")

    # then the program is shown read-only, every owner action is 403 with a reason, and nothing changed
    assert 'id="program-read-only"' in page and 'name="document"' not in page
    assert [r.status_code for r in (saved, staff_page, grant, audit_page, audit_csv)] == [403] * 5
    assert "Your role in this shop does not allow this" in saved.get_data(as_text=True)
    versions = session.scalars(select(ProgramVersion.version).where(ProgramVersion.shop_id == shops.a)).all()
    session.commit()
    assert versions == [1]
    assert session.scalars(select(StaffUser).where(StaffUser.email == "x@y.example")).first() is None


@pytest.mark.parametrize("_case, points, expected_available, flash", [
    ("within the limit", "100", 700, "Adjusted by +100 points."),
    ("removing within the limit", "-100", 500, "Adjusted by -100 points."),
    ("over the limit", "101", 600, "Not adjusted: your role allows at most 100 points either way per adjustment, got +101"),
    ("removing over the limit", "-250", 600, "Not adjusted: your role allows at most 100 points"),
])
def test_support_adjusts_within_the_limit_the_owner_set(_case, points, expected_available, flash, client, make_shop,
                                                        post_webhook):
    # given a customer with 600 points and a support user whose owner set a limit of 100 points
    shops = _two_shops(make_shop, post_webhook)
    _staff(SUPPORT_A, {shops.a: (StaffRole.SUPPORT, SUPPORT_LIMIT)})
    _as(client, SUPPORT_A)
    page = client.get(f"/admin/customers/{shops.customer_a}").get_data(as_text=True)

    # when they adjust
    form = _form(page, "adjust-form")
    client.post(f"/admin/customers/{shops.customer_a}/adjust", data={**form, "points": points, "reason": "Kulanz"})

    # then the balance moves only within the limit, the form says the limit, and the answer says why
    assert factories.report(shops.a, KUNDIN)["available"] == expected_available
    assert 'min="-100" max="100"' in page
    assert flash in _flashes(client, shops.customer_a)


def test_owner_adjusts_beyond_the_support_limit(client, make_shop, post_webhook):
    # given an owner of shop A and a customer with 600 points
    shops = _two_shops(make_shop, post_webhook)
    _staff(OWNER_A, {shops.a: (StaffRole.OWNER, 0)})
    _as(client, OWNER_A)
    form = _form(client.get(f"/admin/customers/{shops.customer_a}").get_data(as_text=True), "adjust-form")

    # when they add 5 000 points
    client.post(f"/admin/customers/{shops.customer_a}/adjust", data={**form, "points": "5000", "reason": "Gewinnspiel"})

    # then it is done
    assert factories.report(shops.a, KUNDIN)["available"] == 5600


def test_every_staff_action_is_in_the_audit_log_with_before_and_after(client, make_shop, post_webhook, redis_url):
    # given a customer with 600 points in shop A, worked on by its support user
    shops = _two_shops(make_shop, post_webhook)
    support_id = _staff(SUPPORT_A, {shops.a: (StaffRole.SUPPORT, SUPPORT_LIMIT)})
    _staff(OWNER_A, {shops.a: (StaffRole.OWNER, 0)})
    _as(client, SUPPORT_A)
    base = f"/admin/customers/{shops.customer_a}"

    def form(form_id: str) -> dict[str, str]:
        return _form(client.get(base).get_data(as_text=True), form_id)

    # when they adjust, redeem, ban and lift the ban
    client.post(f"{base}/adjust", data={**form("adjust-form"), "points": "50", "reason": "Paket beschädigt"})
    client.post(f"{base}/redeem", data={**form("redeem-form"), "reward": "5 € Rabatt"})
    client.post(f"{base}/ban", data={**form("ban-form"), "reason": "=HYPERLINK(\"x\") Betrug"})
    client.post(f"{base}/ban", data={**form("ban-form"), "action": "lift"})

    # then each is in the log, by them, with the state before and after
    with session_scope() as s:
        rows = s.scalars(select(StaffAuditEntry).order_by(StaffAuditEntry.id)).all()
        entries = [(r.shop_id, r.staff_id, r.staff_email, r.action, r.subject, r.before, r.after) for r in rows]
    subject = f"customer {shops.customer_a}"
    not_banned = {"banned": False, "ban_reason": None}
    assert [e[:5] for e in entries] == [
        (shops.a, support_id, SUPPORT_A, action, subject)
        for action in ("customer.adjust", "customer.redeem", "customer.ban", "customer.unban")
    ]
    assert entries[0][5:] == ({"available": 600, **not_banned},
                              {"available": 650, **not_banned, "points": 50, "reason": "Paket beschädigt"})
    assert entries[1][5]["available"] == 650 and entries[1][6]["available"] == 150
    assert entries[1][6]["reward"] == "5 € Rabatt"
    assert entries[2][6] == {"available": 150, "banned": True, "ban_reason": "=HYPERLINK(\"x\") Betrug"}
    assert entries[3][5]["banned"] is True and entries[3][6] == {"available": 150, **not_banned}

    # and the owner reads them on the audit page and as CSV, where a formula-like text stays text
    client.post("/admin/logout", data={"csrf_token": _csrf_token(client.get("/admin/").get_data(as_text=True))})
    _as(client, OWNER_A)
    page = unescape(client.get(f"/admin/audit?shop={shops.a}").get_data(as_text=True))
    assert page.count(SUPPORT_A) >= 4 and "customer.ban" in page and "Paket beschädigt" in page
    response = client.get(f"/admin/audit.csv?shop={shops.a}")
    assert response.headers["Content-Disposition"] == f'attachment; filename="audit-shop-{shops.a}.csv"'
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["action"] for r in table] == ["customer.unban", "customer.ban", "customer.redeem", "customer.adjust"]
    assert {r["staff"] for r in table} == {SUPPORT_A}
    assert table[1]["after"].startswith("{") and '"ban_reason": "=HYPERLINK' in table[1]["after"]


@pytest.mark.sqlite_only
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised():
    # given an entry whose subject starts with "="
    from app.audit import to_csv
    from app.models import StaffAuditEntry as Entry

    row = Entry(id=1, shop_id=2, staff_email="@evil", action="+x", subject="=1+1", before=None, after=None,
                created_at=datetime(2026, 11, 1, tzinfo=timezone.utc))

    # when it is written as CSV
    [line] = list(csv.DictReader(io.StringIO(to_csv([row]))))

    # then those cells begin with an apostrophe and read as text
    assert (line["staff"], line["action"], line["subject"]) == ("'@evil", "'+x", "'=1+1")


def test_owner_adds_support_staff_who_set_a_password_and_see_only_that_shop(client, make_shop, post_webhook):
    # given an owner of shop A
    shops = _two_shops(make_shop, post_webhook)
    _staff(OWNER_A, {shops.a: (StaffRole.OWNER, 0)})
    token = _as(client, OWNER_A)

    # when they add a new e-mail as support with a limit of 200
    page = client.post(f"/admin/shops/{shops.a}/staff", data={
        "csrf_token": token, "email": "Neu@Stammkunde.example", "role": "support", "adjust_limit": "200"})

    # then the page shows a set-password link once, and the grant is in the audit log
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    link = unescape(re.search(r'id="password-link".*?value="([^"]+)"', html, re.S).group(1))
    path = "/" + link.split("/", 3)[3]
    with session_scope() as s:
        [entry] = s.scalars(select(StaffAuditEntry)).all()
        assert (entry.action, entry.after) == ("staff.grant", {"role": "support", "adjust_limit": 200, "account": "created"})

    # and the new person sets a password through it, once
    client.post("/admin/logout", data={"csrf_token": token})
    new_client = client.application.test_client()
    form_token = _csrf_token(new_client.get(path).get_data(as_text=True))
    saved = new_client.post(path, data={"csrf_token": form_token, "password": "a new long password", "repeat": "a new long password"})
    assert saved.status_code == 302
    assert new_client.get(path).status_code == 404  # used up
    # and signs in, seeing shop A but not shop B
    assert _sign_in(new_client, "neu@stammkunde.example", "a new long password").status_code == 302
    assert new_client.get(f"/admin/customers/{shops.customer_a}").status_code == 200
    assert new_client.get(f"/admin/customers/{shops.customer_b}").status_code == 404
    assert 'min="-200" max="200"' in new_client.get(f"/admin/customers/{shops.customer_a}").get_data(as_text=True)


def test_owner_of_one_shop_cannot_take_over_an_account_of_another(client, make_shop, post_webhook):
    # given owner A, and owner B who has never signed in
    shops = _two_shops(make_shop, post_webhook)
    _staff(OWNER_A, {shops.a: (StaffRole.OWNER, 0)})
    token = _as(client, OWNER_A)

    # when owner A adds owner B to shop A and asks for a set-password link for them
    client.post(f"/admin/shops/{shops.a}/staff", data={"csrf_token": token, "email": OWNER_B, "role": "support",
                                                       "adjust_limit": "0"})
    response = client.post(f"/admin/shops/{shops.a}/staff/{shops.owner_b}/link", data={"csrf_token": token})

    # then no link is made (owner B also works for a shop A's owner does not own)
    assert response.status_code == 403
    assert 'id="password-link"' not in response.get_data(as_text=True)


def test_owner_cannot_change_or_remove_themselves(client, make_shop, post_webhook):
    # given an owner of shop A
    shops = _two_shops(make_shop, post_webhook)
    owner_id = _staff(OWNER_A, {shops.a: (StaffRole.OWNER, 0)})
    token = _as(client, OWNER_A)

    # when they try to demote or remove themselves
    demote = client.post(f"/admin/shops/{shops.a}/staff", data={"csrf_token": token, "email": OWNER_A, "role": "support"})
    client.post(f"/admin/shops/{shops.a}/staff/{owner_id}/remove", data={"csrf_token": token})

    # then they are still owner
    assert demote.status_code == 400
    assert client.get(f"/admin/shops/{shops.a}/staff").status_code == 200


# ---- sign-in throttling ----------------------------------------------------------------------

def test_five_wrong_passwords_pause_the_account_for_fifteen_minutes(client, make_shop):
    # given a staff user
    _staff(OWNER_A, {make_shop("shopify"): (StaffRole.OWNER, 0)})
    start = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)

    with time_machine.travel(start, tick=False) as clock:
        # when the password is guessed wrong five times
        wrong = [_sign_in(client, OWNER_A, "wrong guess number %d" % i).status_code for i in range(5)]
        # then even the right password is refused for now, with when to try again
        blocked = _sign_in(client, OWNER_A)
        assert wrong == [200] * 5
        assert blocked.status_code == 429
        assert "try again in 15 minutes" in blocked.get_data(as_text=True)
        assert client.get("/admin/").status_code == 302
        # and 15 minutes after the first failure it works again
        clock.move_to(start + timedelta(minutes=15, seconds=1))
        assert _sign_in(client, OWNER_A).status_code == 302


def test_many_failures_from_one_address_pause_every_account_from_it(client, make_shop):
    # given a staff user, and 20 failed sign-ins for other e-mails from this address
    _staff(OWNER_A, {make_shop("shopify"): (StaffRole.OWNER, 0)})
    for i in range(throttle.ADDRESS_LIMIT):
        assert _sign_in(client, f"guess{i}@stammkunde.example", "whatever password").status_code == 200

    # when the real user signs in from the same address
    response = _sign_in(client, OWNER_A)

    # then it is refused while the address is paused
    assert response.status_code == 429


def test_another_address_is_not_paused_by_an_attack_on_other_accounts(app, make_shop):
    # given many failures for other e-mails from one address
    _staff(OWNER_A, {make_shop("shopify"): (StaffRole.OWNER, 0)})
    attacker = app.test_client()
    for i in range(throttle.ADDRESS_LIMIT):
        _sign_in(attacker, f"guess{i}@stammkunde.example", "whatever password")

    # when the staff user signs in from another address
    office = app.test_client()
    office.environ_base["REMOTE_ADDR"] = "192.0.2.10"

    # then it works
    assert _sign_in(office, OWNER_A).status_code == 302


# ---- second factor ---------------------------------------------------------------------------

def _enable_totp(client) -> str:  # type: ignore[no-untyped-def]
    token = _csrf_token(client.get("/admin/account").get_data(as_text=True))
    page = client.post("/admin/account/totp/setup", data={"csrf_token": token}).get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    assert "<svg" in page  # the QR code
    response = client.post("/admin/account/totp/enable", data={
        "csrf_token": token, "secret": secret, "password": STAFF_PASSWORD, "code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302
    return secret


def test_second_factor_is_asked_after_the_password_and_each_code_works_once(app, client, make_shop):
    # given a staff user who turned the second factor on
    _staff(OWNER_A, {make_shop("shopify"): (StaffRole.OWNER, 0)})
    start = datetime(2026, 12, 1, 9, 0, 5, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False) as clock:
        token = _as(client, OWNER_A)
        secret = _enable_totp(client)
        client.post("/admin/logout", data={"csrf_token": token})
        clock.move_to(start + timedelta(minutes=1))

        # when they sign in with the password
        first = _sign_in(client, OWNER_A)
        # then they are asked for the code, and not signed in yet
        assert first.headers["Location"] == "/admin/login/code"
        assert client.get("/admin/").status_code == 302

        # when a wrong code is entered, then the right one
        code_token = _csrf_token(client.get("/admin/login/code").get_data(as_text=True))
        wrong = client.post("/admin/login/code", data={"csrf_token": code_token, "code": "000000"})
        code = pyotp.TOTP(secret).now()
        right = client.post("/admin/login/code", data={"csrf_token": code_token, "code": code})

        # then the wrong one is refused and the right one signs them in
        assert "That code is not right" in wrong.get_data(as_text=True)
        assert right.status_code == 302 and client.get("/admin/").status_code == 200

        # and the same code does not sign in a second browser (a code seen over a shoulder)
        other = app.test_client()
        assert _sign_in(other, OWNER_A).headers["Location"] == "/admin/login/code"
        other_token = _csrf_token(other.get("/admin/login/code").get_data(as_text=True))
        again = other.post("/admin/login/code", data={"csrf_token": other_token, "code": code})
        assert "was used already" in again.get_data(as_text=True)
        assert other.get("/admin/").status_code == 302


def test_second_factor_is_not_turned_on_without_a_right_code(client, make_shop, session):
    # given a staff user on the set-up form
    _staff(OWNER_A, {make_shop("shopify"): (StaffRole.OWNER, 0)})
    token = _as(client, OWNER_A)
    page = client.post("/admin/account/totp/setup", data={"csrf_token": token}).get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)

    # when they confirm with a wrong code
    response = client.post("/admin/account/totp/enable", data={
        "csrf_token": token, "secret": secret, "password": STAFF_PASSWORD, "code": "123456"})

    # then it stays off
    assert response.status_code == 400
    user = session.scalars(select(StaffUser).where(StaffUser.email == OWNER_A)).one()
    session.commit()
    assert user.totp_secret_enc is None


# ---- cookies and CSRF ------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_production_cookies_are_secure_httponly_and_samesite(tmp_path):
    # given the production settings
    from app.config import load

    settings = load({"STAMMKUNDE_ENV": "production", "SECRET_KEY": "k", "ENCRYPTION_KEY": "e",
                     "INSTANCE_PATH": str(tmp_path)})

    # then the session cookie is sent only over HTTPS, not to scripts, not on cross-site requests
    assert (settings["SESSION_COOKIE_SECURE"], settings["SESSION_COOKIE_HTTPONLY"],
            settings["SESSION_COOKIE_SAMESITE"]) == (True, True, "Lax")


@pytest.mark.sqlite_only
def test_the_session_cookie_carries_the_flags(app, client, make_shop):
    # given the app with Secure cookies (as in production)
    app.config["SESSION_COOKIE_SECURE"] = True
    _staff(OWNER_A, {make_shop("shopify"): (StaffRole.OWNER, 0)})

    # when someone signs in
    response = _sign_in(client, OWNER_A)

    # then the cookie is Secure, HttpOnly and SameSite=Lax
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.sqlite_only
def test_every_admin_form_carries_a_csrf_token_and_every_post_needs_it(app, client, session, make_shop, post_webhook):
    # given an administrator, and pages with every form
    shops = _two_shops(make_shop, post_webhook)
    from tests.app.test_admin import STAFF_EMAIL, _add_staff

    _add_staff(session)
    token = _as(client, STAFF_EMAIL)
    pages = [
        "/admin/", "/admin/deliveries", "/admin/customers?q=example", f"/admin/customers/{shops.customer_b}",
        f"/admin/shops/{shops.b}/program", f"/admin/shops/{shops.b}/staff", "/admin/account", "/admin/audit",
        "/admin/data-requests", "/admin/reminders",
    ]

    # when every page is read
    forms = []
    for path in pages:
        html = client.get(path).get_data(as_text=True)
        forms += [(path, f) for f in re.findall(r'<form[^>]*method="post".*?</form>', html, re.S)]

    # then every POST form carries the token
    assert len(forms) > 10
    assert [p for p, f in forms if 'name="csrf_token"' not in f] == []

    # and every POST route refuses a request without it
    answers = {}
    for rule in _admin_rules(app) + [r for r in app.url_map.iter_rules() if r.endpoint in NOT_SHOP_DATA]:
        if "POST" not in rule.methods:
            continue
        values = {name: 1 for name in rule.arguments}
        values.update({k: v for k, v in _values(rule, shops, of_b=True).items()} if rule.endpoint not in NOT_SHOP_DATA
                      and rule.arguments else {})
        if "token" in rule.arguments:
            values["token"] = "x"
        url = rule.build(values, append_unknown=False)[1]
        answers[url] = client.post(url, data={"points": "1"}).status_code
    assert token and set(answers.values()) == {400}, answers


@pytest.mark.sqlite_only
def test_cli_creates_support_staff_of_one_shop_and_refuses_an_account_without_rights(runner, client, make_shop,
                                                                                      post_webhook):
    # given two shops
    shops = _two_shops(make_shop, post_webhook)

    # when an account is created for shop A as support, and one with neither --admin nor --shop
    made = runner.invoke(args=["staff", "create", "--email", SUPPORT_A, "--password", STAFF_PASSWORD,
                               "--shop", "demo-laden.myshopify.com", "--role", "support", "--adjust-limit", "50"])
    refused = runner.invoke(args=["staff", "create", "--email", "nobody@stammkunde.example", "--password", STAFF_PASSWORD])

    # then the first sees shop A only, with its limit, and the second is not created
    assert made.exit_code == 0, made.output
    assert "is support of demo-laden.myshopify.com" in made.output
    _as(client, SUPPORT_A)
    assert 'min="-50" max="50"' in client.get(f"/admin/customers/{shops.customer_a}").get_data(as_text=True)
    assert client.get(f"/admin/customers/{shops.customer_b}").status_code == 404
    assert refused.exit_code == 1 and "--admin (every shop) or --shop S" in refused.output
    with session_scope() as s:
        assert s.scalars(select(StaffUser).where(StaffUser.email == "nobody@stammkunde.example")).first() is None
