"""The admin pages and staff log-ins, on SQLite and PostgreSQL, with real Redis and a real worker."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from html import unescape
from urllib.parse import urlsplit

import pytest
from argon2 import PasswordHasher
from markupsafe import escape
from redis import Redis
from rq import Queue
from sqlalchemy import func, select

from app.messaging import consent
from app.loyalty import metrics
from app.loyalty.customers import find_by_email, upsert_customer
from app.db import session_scope
from app.messaging.render import KINDS, LANGUAGES
from app.loyalty.explain import customer_report
from app.models import (
    CodeStatus,
    ConsentEvent,
    Customer,
    DeliveryStatus,
    IssuedCode,
    LedgerEntry,
    MessageStatus,
    ProgramVersion,
    Redemption,
    RedemptionStatus,
    ReminderMessage,
    Shop,
    StaffUser,
    WebhookDelivery,
    utcnow,
)
from app.program import current_program
from app.loyalty.redemptions import redeem
from app.messaging.reminders import MARKETING
from app.web.staff import authenticate, create_staff
from connectors import types as ct
from tests import factories
from tests.conftest import SHOPIFY_DOMAIN, fixture_bytes, free_port

STAFF_EMAIL = "support@stammkunde.example"
STAFF_PASSWORD = "correct horse battery"
BOB = "bob.norman@mail.example.com"


def _csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def _add_staff(session, email: str = STAFF_EMAIL, password: str = STAFF_PASSWORD, *, admin: bool = True) -> StaffUser:  # type: ignore[no-untyped-def]
    user = create_staff(session, email, password, admin=admin)
    user.language = "en"  # these tests read the English texts; tests/app/test_admin_look.py the German ones
    session.commit()
    return user


def _sign_in(client, email: str = STAFF_EMAIL, password: str = STAFF_PASSWORD, **extra: str):  # type: ignore[no-untyped-def]
    token = _csrf_token(client.get("/admin/login").get_data(as_text=True))
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token, **extra})


def _signed_in(client, session):  # type: ignore[no-untyped-def]
    _add_staff(session)
    assert _sign_in(client).status_code == 302
    return _csrf_token(client.get("/admin/").get_data(as_text=True))


# On SQLite every transaction holds the write lock (BEGIN IMMEDIATE), so the test's own session
# ends each read with a commit before the app or the worker runs.


def _delivery(session, delivery_id: int) -> WebhookDelivery:  # type: ignore[no-untyped-def]
    session.expire_all()
    delivery = session.get(WebhookDelivery, delivery_id)
    session.commit()
    assert delivery is not None
    return delivery


def _only_delivery_id(session) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    [delivery_id] = session.scalars(select(WebhookDelivery.id))
    session.commit()
    return delivery_id


def _mark_failed(session, delivery_id: int, error: str) -> None:  # type: ignore[no-untyped-def]
    delivery = _delivery(session, delivery_id)
    delivery.status, delivery.error = DeliveryStatus.FAILED, error
    session.commit()


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, path",
    [
        ("dashboard", "/admin/"),
        ("deliveries", "/admin/deliveries?status=failed"),
        ("customer search", "/admin/customers?q=bob"),
        ("customer page", "/admin/customers/1"),
        ("program page", "/admin/shops/1/program"),
        ("program version", "/admin/shops/1/program/1"),
        ("shop dashboard", "/admin/shops/1?period=all"),
        ("e-mail previews", "/admin/shops/1/emails"),
        ("e-mail preview", "/admin/shops/1/emails/winback?lang=de"),
        ("e-mail preview html", "/admin/shops/1/emails/winback/html?lang=de"),
        ("reminder sends", "/admin/reminders?status=failed"),
        ("data requests", "/admin/data-requests"),
    ],
)
def test_pages_redirect_anonymous_visitors_to_login(client, _case, path):
    # given nobody signed in

    # when a page is requested
    response = client.get(path)

    # then it redirects to the sign-in form, remembering where to go back to
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=")


@pytest.mark.sqlite_only
def test_root_redirects_to_admin(client):
    # given the app

    # when the site root is requested
    response = client.get("/")

    # then it sends the visitor to the admin
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, email, password",
    [
        ("wrong password", STAFF_EMAIL, "not the password at all"),
        ("unknown e-mail", "nobody@stammkunde.example", STAFF_PASSWORD),
    ],
)
def test_login_with_wrong_credentials_fails(client, session, _case, email, password):
    # given a staff user
    _add_staff(session)

    # when someone signs in with a wrong credential
    response = _sign_in(client, email, password)

    # then the form comes back with one generic error and nobody is signed in
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Wrong e-mail or password." in html
    assert "unknown" not in html.lower()
    assert client.get("/admin/").status_code == 302


@pytest.mark.sqlite_only
def test_login_with_right_password_works(client, session):
    # given a staff user
    _add_staff(session)

    # when they sign in with their e-mail in another case
    response = _sign_in(client, STAFF_EMAIL.upper(), STAFF_PASSWORD)

    # then they land on the dashboard and their login time is recorded
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    session.expire_all()
    user = session.scalars(select(StaffUser)).one()
    assert user.last_login_at is not None


@pytest.mark.sqlite_only
def test_login_returns_to_the_requested_page_but_never_off_site(client, session):
    # given a staff user
    _add_staff(session)

    # when they sign in once with a local next page and once with another site's
    local = _sign_in(client, next="/admin/deliveries?status=failed")
    client.post("/admin/logout", data={"csrf_token": _csrf_token(client.get("/admin/").get_data(as_text=True))})
    foreign = _sign_in(client, next="//evil.example/admin/")

    # then only the local page is followed
    assert local.headers["Location"] == "/admin/deliveries?status=failed"
    assert foreign.headers["Location"] == "/admin/"


@pytest.mark.sqlite_only
def test_logout_signs_out(client, session):
    # given a signed-in staff user
    token = _signed_in(client, session)

    # when they sign out
    response = client.post("/admin/logout", data={"csrf_token": token})

    # then the admin asks for a sign-in again
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 302


def test_logout_revokes_the_session_so_a_copied_cookie_stops_working(app, client, session):
    # given a signed-in staff user whose session cookie was copied into another browser,
    # and the same user signed in on a second browser of their own
    token = _signed_in(client, session)
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    assert thief.get("/admin/").status_code == 200
    laptop = app.test_client()
    assert _sign_in(laptop).status_code == 302

    # when the user signs out
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302

    # then the copied cookie gets the log-in page, and the other sign-in stays
    response = thief.get("/admin/", follow_redirects=True)
    assert response.request.path == "/admin/login"
    assert 'name="password"' in response.get_data(as_text=True)
    assert laptop.get("/admin/").status_code == 200


@pytest.mark.sqlite_only
def test_post_without_csrf_token_is_rejected(client, session):
    # given a staff user
    _add_staff(session)

    # when the sign-in form is posted without the token
    response = client.post("/admin/login", data={"email": STAFF_EMAIL, "password": STAFF_PASSWORD})

    # then it is refused and nobody is signed in
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


@pytest.mark.sqlite_only
def test_replay_without_csrf_token_is_rejected(client, session, make_shop, post_webhook):
    # given a signed-in staff user and a failed delivery
    _signed_in(client, session)
    make_shop("shopify")
    post_webhook("shopify", "orders/paid", {"id": 1})
    delivery_id = _only_delivery_id(session)
    _mark_failed(session, delivery_id, "orders/paid: total_price missing")

    # when the replay is posted without the token (as a cross-site form would)
    response = client.post(f"/admin/deliveries/{delivery_id}/replay")

    # then it is refused and the delivery stays failed
    assert response.status_code == 400
    assert _delivery(session, delivery_id).status == DeliveryStatus.FAILED


@pytest.mark.sqlite_only
def test_webhooks_are_accepted_without_csrf_token(make_shop, post_webhook):
    # given a registered Shopify shop and CSRF protection on
    make_shop("shopify")

    # when Shopify posts a signed delivery, which never carries our token
    response = post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"))

    # then it is accepted
    assert response.status_code == 200


def test_dashboard_lists_shops_with_delivery_counts(client, session, make_shop, post_webhook):
    # given a Shopify shop with one received delivery
    make_shop("shopify", currency="chf")
    post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"))
    _signed_in(client, session)

    # when the dashboard is shown
    html = client.get("/admin/").get_data(as_text=True)

    # then the shop is listed with platform, currency, status and a link to its received delivery
    assert SHOPIFY_DOMAIN in html
    assert "shopify" in html
    assert "CHF" in html
    assert "active" in html
    assert re.search(r'status=received">1</a>', html)


@pytest.mark.sqlite_only
def test_customer_page_explains_the_balance(client, session, make_shop, post_webhook, work):
    # given a paid Shopify order that went through the webhook and the worker
    shop_id = make_shop("shopify")
    assert post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json")).status_code == 200
    work()
    customer = find_by_email(session, shop_id, BOB)
    assert customer is not None
    report = customer_report(session, customer)
    session.commit()
    assert report["ledger"], "the order earned no points"
    _signed_in(client, session)

    # when staff search for the customer by an e-mail prefix in another case and open the page
    search = client.get("/admin/customers?q=BOB.Norman@").get_data(as_text=True)
    page = client.get(f"/admin/customers/{customer.id}").get_data(as_text=True)

    # then the search lists them and the page shows the balance and why each entry exists
    assert BOB in search
    assert f'href="/admin/customers/{customer.id}"' in search
    assert f"<dd>{report['pending']}</dd>" in page
    assert f"<dd>{report['available']}</dd>" in page
    for entry in report["ledger"]:
        assert str(escape(entry["why"])) in page
        assert f'href="/admin/deliveries/{entry["delivery"]}"' in page
    for lot in report["lots"]:
        assert f"version {lot['rule']['program_version']}" in page


def test_customer_search_without_match_says_so(client, session):
    # given a signed-in staff user and no customers
    _signed_in(client, session)

    # when they search for an address with LIKE wildcards in it
    html = client.get("/admin/customers?q=%25_").get_data(as_text=True)

    # then nothing matches
    assert "No customer whose e-mail or name contains" in html


@pytest.mark.sqlite_only
def test_failed_delivery_shows_its_reason(client, session, make_shop, post_webhook, work):
    # given an orders/paid delivery whose body lacks the fields the parser needs
    make_shop("shopify")
    post_webhook("shopify", "orders/paid", {"id": 1})
    work()
    delivery = _delivery(session, _only_delivery_id(session))
    assert delivery.status == DeliveryStatus.FAILED
    _signed_in(client, session)

    # when staff list the failed deliveries
    html = client.get("/admin/deliveries?status=failed").get_data(as_text=True)

    # then the delivery is listed with its reason and a replay button
    assert f'id="delivery-{delivery.id}"' in html
    assert str(escape(delivery.error)) in html
    assert f'action="/admin/deliveries/{delivery.id}/replay"' in html


def test_replay_requeues_a_failed_delivery(client, session, make_shop, post_webhook, work):
    # given a delivery that failed (here: marked failed after it was processed once)
    make_shop("shopify")
    post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"))
    work()
    delivery_id = _only_delivery_id(session)
    _mark_failed(session, delivery_id, "OperationalError: database is locked")
    token = _signed_in(client, session)

    # when staff press Replay
    response = client.post(
        f"/admin/deliveries/{delivery_id}/replay", data={"csrf_token": token, "status": "failed"}
    )

    # then it is back to received and queued, the page says so, and the worker processes it
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/deliveries?status=failed"
    assert _delivery(session, delivery_id).status == DeliveryStatus.RECEIVED
    assert "was queued for processing again" in client.get("/admin/deliveries").get_data(as_text=True)
    assert work() == 1
    replayed = _delivery(session, delivery_id)
    assert replayed.status == DeliveryStatus.PROCESSED
    assert replayed.error is None


@pytest.mark.sqlite_only
def test_a_purged_delivery_shows_so_and_offers_no_replay(client, session, make_shop, post_webhook, work):
    # given a failed delivery whose body the retention sweep removed
    from jobs.deliveries import purge_delivery_bodies

    make_shop("shopify")
    post_webhook("shopify", "orders/paid", {"id": 1})
    work()
    delivery_id = _only_delivery_id(session)
    assert _delivery(session, delivery_id).status == DeliveryStatus.FAILED
    purge_delivery_bodies(now=utcnow() + timedelta(days=31))
    token = _signed_in(client, session)

    # when staff open the failed deliveries, and post a replay anyway (an old page)
    page = client.get("/admin/deliveries?status=failed").get_data(as_text=True)
    response = client.post(f"/admin/deliveries/{delivery_id}/replay", data={"csrf_token": token})

    # then the row says the body was removed and has no Replay button; the replay is refused
    row = page.split(f'id="delivery-{delivery_id}"', 1)[1].split("</tr>", 1)[0]
    assert "Body removed" in row and "Replay" not in row
    assert response.status_code == 302
    assert "cannot be replayed: the retention sweep removed its body" in client.get(
        "/admin/deliveries").get_data(as_text=True)
    assert _delivery(session, delivery_id).status == DeliveryStatus.FAILED


@pytest.mark.sqlite_only
def test_a_data_request_export_needs_a_signed_in_user_and_the_csrf_token(client, session, make_shop):
    # given a visitor with a valid form token who is not signed in, then a signed-in user without it
    token = _csrf_token(client.get("/admin/login").get_data(as_text=True))
    anonymous = client.post("/admin/data-requests/1/export", data={"csrf_token": token})
    _signed_in(client, session)
    tokenless = client.post("/admin/data-requests/1/export")

    # then the first is sent to the sign-in form and the second refused; nothing is exported
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/admin/login")
    assert tokenless.status_code == 400


def test_a_data_request_is_listed_exported_as_json_and_marked_done(client, session, make_shop, post_webhook, work):
    # given Bob's paid order, then the shop's request for his data, delivered twice (two event ids)
    make_shop("shopify")
    post_webhook("shopify", "orders/paid", fixture_bytes("shopify", "orders_paid.json"), event_id="paid-1")
    request_body = json.loads(fixture_bytes("shopify", "customers_data_request.json"))
    request_body["customer"].update(id=207119551, email=BOB)
    request_body["orders_requested"] = [450789469]
    for event_id in ("request-1", "request-2"):
        post_webhook("shopify", "customers/data_request", request_body, event_id=event_id)
    work()
    token = _signed_in(client, session)

    # when support opens the data requests and exports the open one
    page = client.get("/admin/data-requests").get_data(as_text=True)
    [request_id] = re.findall(r'id="data-request-(\d+)"', page)
    export = client.post(f"/admin/data-requests/{request_id}/export", data={"csrf_token": token})
    after = client.get("/admin/data-requests").get_data(as_text=True)

    # then the file holds Bob's profile, points, ledger and order, and the request is done
    assert export.status_code == 200
    assert export.headers["Content-Disposition"] == f'attachment; filename="data-request-{request_id}.json"'
    data = export.get_json()
    [bob] = data["customers"]
    assert bob["profile"]["email"] == BOB and bob["profile"]["first_name"] == "Bob"
    points = bob["points"]
    assert (points["pending"] + points["available"], [e["reason"] for e in points["ledger"]]) == (587, ["earn"])
    assert [o["platform_id"] for o in data["orders"]] == ["450789469"]
    assert data["request"]["platform_request_id"] == "9999"
    assert "No open requests" in after and STAFF_EMAIL in after


@pytest.mark.sqlite_only
def test_replay_with_redis_down_shows_an_error(client, session, make_shop, post_webhook, redis_server):
    # given a failed delivery and the job queue's Redis stopped
    make_shop("shopify")
    post_webhook("shopify", "orders/paid", {"id": 1})
    delivery_id = _only_delivery_id(session)
    _mark_failed(session, delivery_id, "orders/paid: total_price missing")
    token = _signed_in(client, session)
    redis_server["stop"]()

    # when staff press Replay
    response = client.post(f"/admin/deliveries/{delivery_id}/replay", data={"csrf_token": token})

    # then they get the page back with a clear message, and the sweep will find the delivery
    assert response.status_code == 302
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "the job queue (Redis) is not reachable" in html
    assert "requeue sweep will process it" in html
    assert _delivery(session, delivery_id).status == DeliveryStatus.RECEIVED


@pytest.mark.sqlite_only
def test_new_password_signs_out_existing_sessions(client, session):
    # given a signed-in staff user
    _signed_in(client, session)

    # when their password is set anew (flask staff create)
    _add_staff(session, STAFF_EMAIL, "a different password")

    # then the old session no longer opens the admin
    assert client.get("/admin/").status_code == 302


@pytest.mark.sqlite_only
def test_staff_password_must_have_twelve_characters(session):
    # given a short password

    # when a staff user is created with it
    with pytest.raises(ValueError, match="at least 12 characters"):
        create_staff(session, STAFF_EMAIL, "short")

    # then nothing was stored
    assert session.scalar(select(func.count()).select_from(StaffUser)) == 0


def test_creating_staff_again_sets_a_new_password(session):
    # given a staff user
    first = _add_staff(session, "Support@Stammkunde.example", STAFF_PASSWORD)

    # when the same e-mail is created again with another password
    second = create_staff(session, STAFF_EMAIL, "another long password")
    session.commit()

    # then there is still one row, lower-cased, and only the new password works
    assert second.id == first.id
    assert second.email == STAFF_EMAIL
    assert session.scalar(select(func.count()).select_from(StaffUser)) == 1
    assert authenticate(session, STAFF_EMAIL, STAFF_PASSWORD) is None
    assert authenticate(session, STAFF_EMAIL, "another long password") is not None


@pytest.mark.sqlite_only
def test_outdated_password_hash_is_rehashed_on_login(session):
    # given a staff user whose hash was made with weaker parameters
    user = _add_staff(session)
    user.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash(STAFF_PASSWORD)
    session.commit()
    old_hash = user.password_hash

    # when they authenticate
    result = authenticate(session, STAFF_EMAIL, STAFF_PASSWORD)
    session.commit()

    # then the hash is upgraded to the current parameters
    assert result is not None
    assert result.password_hash != old_hash
    assert not PasswordHasher().check_needs_rehash(result.password_hash)


@pytest.mark.sqlite_only
def test_inactive_staff_cannot_log_in(session):
    # given a deactivated staff user
    user = _add_staff(session)
    user.active = False
    session.commit()

    # when they authenticate with the right password
    result = authenticate(session, STAFF_EMAIL, STAFF_PASSWORD)

    # then they are refused
    assert result is None


# --- the program page -------------------------------------------------------------------------

KUNDIN = "kundin@example.test"
NO_EXTRAS = {"second_purchase": {"enabled": False}, "referral": {"enabled": False}}
INSTANT = {"return_window_days": 0}


def _shop(session, shop_id: int) -> Shop:  # type: ignore[no-untyped-def]
    session.expire_all()
    shop = session.get(Shop, shop_id)
    session.commit()
    assert shop is not None
    return shop


def _program_in_force(session, shop_id: int):  # type: ignore[no-untyped-def]
    """What `flask program show` prints: the version in force and its document."""
    version, in_force = current_program(session, _shop(session, shop_id))
    session.commit()
    return version, in_force.model_dump(mode="json")


def _textarea(html: str) -> str:
    match = re.search(r"<textarea[^>]*>(.*?)</textarea>", html, re.S)
    assert match, "no textarea in the page"
    return unescape(match.group(1))


def _program_form(client, shop_id: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    html = client.get(f"/admin/shops/{shop_id}/program").get_data(as_text=True)
    base = re.search(r'name="base" value="(\d+)"', html)
    assert base
    return {"csrf_token": _csrf_token(html), "base": base.group(1), "document": _textarea(html)}


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, wrap",
    [
        ("plain document", lambda doc: doc),
        ("as `flask program show` prints it", lambda doc: {"version": 0, "program": doc}),
    ],
)
def test_program_page_saves_a_valid_document(client, session, make_shop, _case, wrap):
    # given a shop on the default program, and staff on its program page
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    form = _program_form(client, shop_id)
    document = json.loads(form["document"])
    assert document["earning"]["points_per_unit"] == "1"
    document["earning"]["points_per_unit"] = "2"

    # when they save the edited document
    response = client.post(f"/admin/shops/{shop_id}/program", data={**form, "document": json.dumps(wrap(document))})

    # then version 1 is in force, by them, and the page shows it
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/shops/{shop_id}/program"
    version, in_force = _program_in_force(session, shop_id)
    assert version == 1
    assert in_force["earning"]["points_per_unit"] == "2"
    assert session.scalars(select(ProgramVersion.created_by)).all() == [STAFF_EMAIL]
    session.commit()
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Program version 1 is in force." in html
    assert json.loads(_textarea(html))["earning"]["points_per_unit"] == "2"
    assert 'id="version-1"' in html


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, text, error",
    [
        ("negative rate", '{"earning": {"points_per_unit": -1}}', "earning.points_per_unit"),
        ("unknown field", '{"earning": {"points_per_euro": 2}}', "earning.points_per_euro"),
        ("reward without its value", '{"rewards": [{"name": "X", "points": 10, "kind": "percentage"}]}', "rewards.0"),
        ("not JSON", '{"earning": {"points_per_unit": 2}', "Not valid JSON"),
    ],
)
def test_program_page_rejects_a_bad_document_and_applies_nothing(client, session, make_shop, _case, text, error):
    # given a shop on the default program, and staff on its program page
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    form = _program_form(client, shop_id)

    # when they save a bad document
    response = client.post(f"/admin/shops/{shop_id}/program", data={**form, "document": text})

    # then the form comes back with their text and the error naming the problem, and nothing is applied
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert error in html
    assert _textarea(html) == text
    assert _program_in_force(session, shop_id)[0] == 0
    assert session.scalar(select(func.count()).select_from(ProgramVersion)) == 0


@pytest.mark.sqlite_only
def test_program_page_lists_earlier_versions(client, session, make_shop):
    # given a shop with two saved versions
    shop_id = make_shop("shopify")
    factories.program(shop_id, {"earning": {"points_per_unit": "3"}})
    factories.program(shop_id, {"earning": {"points_per_unit": "4"}})
    _signed_in(client, session)

    # when staff open the program page and the first version
    html = client.get(f"/admin/shops/{shop_id}/program").get_data(as_text=True)
    first = client.get(f"/admin/shops/{shop_id}/program/1")

    # then both versions are listed with author and link, the newest in force; the first is viewable
    for version in (1, 2):
        row = re.search(rf'<tr id="version-{version}">(.*?)</tr>', html, re.S)
        assert row, f"version {version} not listed"
        assert "test" in row.group(1)
        assert f'href="/admin/shops/{shop_id}/program/{version}"' in row.group(1)
    assert "in force" in re.search(r'<tr id="version-2">(.*?)</tr>', html, re.S).group(1)
    assert json.loads(_textarea(html))["earning"]["points_per_unit"] == "4"
    assert first.status_code == 200
    assert json.loads(_textarea(first.get_data(as_text=True)))["earning"]["points_per_unit"] == "3"
    assert client.get(f"/admin/shops/{shop_id}/program/3").status_code == 404


def test_program_saved_from_an_outdated_page_is_refused(client, session, make_shop):
    # given staff who opened the program page, and another version saved after that
    shop_id = make_shop("shopify")
    _signed_in(client, session)
    form = _program_form(client, shop_id)
    factories.program(shop_id, {"earning": {"points_per_unit": "5"}})

    # when they save what they had on screen
    response = client.post(f"/admin/shops/{shop_id}/program", data=form)

    # then nothing is applied over the newer version, and they are told to compare first
    assert response.status_code == 409
    assert "Another version was saved since you opened this page" in response.get_data(as_text=True)
    version, in_force = _program_in_force(session, shop_id)
    assert (version, in_force["earning"]["points_per_unit"]) == (1, "5")


# --- customer actions -------------------------------------------------------------------------


def _customer_with_points(make_shop, amount: str = "600.00") -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A shop and its customer with `amount` points available at once (1 point per euro)."""
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT})
    factories.apply(shop_id, factories.order("1", amount))
    with session_scope() as s:
        customer = find_by_email(s, shop_id, KUNDIN)
        assert customer is not None
        return shop_id, customer.id


def _form(html: str, form_id: str) -> dict[str, str]:
    """Return the hidden fields of the form with this id."""
    match = re.search(rf'<form[^>]*id="{form_id}"[^>]*>(.*?)</form>', html, re.S)
    assert match, f"no form {form_id}"
    return {k: unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', match.group(1))}


def _customer_page(client, customer_id: int) -> str:  # type: ignore[no-untyped-def]
    return client.get(f"/admin/customers/{customer_id}").get_data(as_text=True)


def _flashes(client, customer_id: int) -> str:  # type: ignore[no-untyped-def]
    return " ".join(unescape(m) for m in re.findall(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', _customer_page(client, customer_id), re.S))


def test_staff_redeem_posted_twice_redeems_once(client, session, make_shop, redis_url):
    # given a customer with 1,200 points (enough for two), and staff on their page
    shop_id, customer_id = _customer_with_points(make_shop, "1200.00")
    _signed_in(client, session)
    form = _form(_customer_page(client, customer_id), "redeem-form")

    # when the redeem form for "5 € Rabatt" (500 points) is posted twice
    responses = [
        client.post(f"/admin/customers/{customer_id}/redeem", data={**form, "reward": "5 € Rabatt"}) for _ in range(2)
    ]

    # then the points are deducted once, by this staff user, and the reward's code is pending and queued
    assert [r.status_code for r in responses] == [302, 302]
    assert factories.report(shop_id, KUNDIN)["available"] == 700
    session.expire_all()
    [redemption] = session.scalars(select(Redemption)).all()
    assert (redemption.reward_name, redemption.source, redemption.actor) == ("5 € Rabatt", "staff", STAFF_EMAIL)
    code = session.get(IssuedCode, redemption.issued_code_id)
    assert (code.purpose, code.status.value, code.customer_id) == ("reward", "pending", customer_id)
    session.commit()
    assert f"issue-code-{code.id}" in Queue("codes", connection=Redis.from_url(redis_url)).get_job_ids()
    html = _customer_page(client, customer_id)
    row = re.search(rf'<tr id="redemption-{redemption.id}">(.*?)</tr>', html, re.S)
    assert row and "5 € Rabatt" in row.group(1) and "pending" in row.group(1)


def test_staff_cannot_redeem_what_the_customer_cannot_afford(client, session, make_shop):
    # given a customer with 600 points, and staff on their page
    shop_id, customer_id = _customer_with_points(make_shop)
    _signed_in(client, session)
    html = _customer_page(client, customer_id)
    form = _form(html, "redeem-form")

    # when "10 % Rabatt" (1,000 points) is posted anyway
    response = client.post(f"/admin/customers/{customer_id}/redeem", data={**form, "reward": "10 % Rabatt"})

    # then it was offered disabled, is refused with the reason, and nothing changes
    assert re.search(r'<option value="10 % Rabatt" disabled>', html)
    assert response.status_code == 302
    assert "Not redeemed: not enough points: 600 available" in _flashes(client, customer_id)
    assert factories.report(shop_id, KUNDIN)["available"] == 600
    assert session.scalar(select(func.count()).select_from(Redemption)) == 0


@pytest.mark.parametrize(
    "_case, points, reason, available",
    [
        ("add", "50", "Paket kam beschädigt an", 650),
        ("remove", "-100", "doppelt gutgeschrieben", 500),
    ],
)
def test_adjust_changes_points_once_with_the_reason_in_the_ledger(client, session, make_shop, _case, points, reason,
                                                                  available):
    # given a customer with 600 points, and staff on their page
    shop_id, customer_id = _customer_with_points(make_shop)
    _signed_in(client, session)
    form = _form(_customer_page(client, customer_id), "adjust-form")

    # when the adjust form is posted twice
    for _ in range(2):
        response = client.post(f"/admin/customers/{customer_id}/adjust", data={**form, "points": points, "reason": reason})
        assert response.status_code == 302

    # then the points changed once, and the ledger says why and who
    result = factories.report(shop_id, KUNDIN)
    assert result["available"] == available
    [entry] = [e for e in result["ledger"] if e["reason"] == "adjust"]
    assert entry["delta"] == int(points)
    assert entry["why"] == f"Adjusted by staff: {reason}"
    assert session.get(LedgerEntry, entry["id"]).created_by == STAFF_EMAIL
    session.commit()
    assert str(escape(entry["why"])) in _customer_page(client, customer_id)


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, points, reason, message",
    [
        ("more than available", "-700", "Kulanz zurück", "cannot remove 700 points: only 600 available"),
        ("no reason", "10", "   ", "needs a reason"),
        ("zero", "0", "nichts", "non-zero"),
        ("not a number", "zehn", "Kulanz", "whole number"),
    ],
)
def test_adjust_refuses_bad_input(client, session, make_shop, _case, points, reason, message):
    # given a customer with 600 points, and staff on their page
    shop_id, customer_id = _customer_with_points(make_shop)
    _signed_in(client, session)
    form = _form(_customer_page(client, customer_id), "adjust-form")

    # when an impossible adjustment is posted
    client.post(f"/admin/customers/{customer_id}/adjust", data={**form, "points": points, "reason": reason})

    # then it is refused with the reason, and the balance is unchanged
    assert message in _flashes(client, customer_id)
    result = factories.report(shop_id, KUNDIN)
    assert result["available"] == 600
    assert [e for e in result["ledger"] if e["reason"] == "adjust"] == []


def test_ban_blocks_redemption_until_lifted(client, session, make_shop):
    # given a customer with 600 points, and staff on their page
    shop_id, customer_id = _customer_with_points(make_shop)
    token = _signed_in(client, session)
    html = _customer_page(client, customer_id)
    redeem_form = _form(html, "redeem-form")

    # when staff ban them, then try to redeem for them, then lift the ban and redeem
    banned = client.post(f"/admin/customers/{customer_id}/ban",
                         data={"csrf_token": token, "action": "ban", "reason": "Rückbuchung"})
    while_banned = _flashes(client, customer_id)
    client.post(f"/admin/customers/{customer_id}/redeem", data={**redeem_form, "reward": "Gratisversand"})
    refused = _flashes(client, customer_id)
    banned_page = _customer_page(client, customer_id)
    client.post(f"/admin/customers/{customer_id}/ban", data={"csrf_token": token, "action": "lift"})
    lifted = factories.report(shop_id, KUNDIN)["banned"]
    client.post(f"/admin/customers/{customer_id}/redeem", data={**redeem_form, "reward": "Gratisversand"})

    # then the ban (with its reason) stopped the redemption, and after lifting it the same form works
    assert banned.status_code == 302
    assert "Customer banned" in while_banned
    assert "Not redeemed: this customer is banned from the program" in refused
    assert "Rückbuchung" in banned_page
    assert lifted is False
    session.expire_all()
    assert [r.reward_name for r in session.scalars(select(Redemption))] == ["Gratisversand"]
    customer = session.get(Customer, customer_id)
    assert (customer.banned_at, customer.ban_reason) == (None, None)
    session.commit()


@pytest.mark.sqlite_only
def test_ban_needs_a_reason(client, session, make_shop):
    # given a customer, and staff on their page
    shop_id, customer_id = _customer_with_points(make_shop)
    token = _signed_in(client, session)

    # when the ban form is posted without a reason
    client.post(f"/admin/customers/{customer_id}/ban", data={"csrf_token": token, "action": "ban", "reason": " "})

    # then nobody is banned
    assert "Give a reason for the ban" in _flashes(client, customer_id)
    assert factories.report(shop_id, KUNDIN)["banned"] is False


@pytest.mark.sqlite_only
def test_customer_page_shows_tier_and_a_working_customer_link(client, session, make_shop):
    # given a customer whose 600 € reached the Silber tier
    shop_id, customer_id = _customer_with_points(make_shop)
    _signed_in(client, session)

    # when staff open the customer's page and follow the customer link shown there
    html = _customer_page(client, customer_id)
    link = re.search(r'id="customer-link"[^>]*value="([^"]+)"', html)
    assert link
    own_page = client.get(urlsplit(unescape(link.group(1))).path)

    # then the tier and its period end are shown, and the link opens the customer's own page
    assert re.search(r'<dd id="tier">Silber</dd>', html)
    # (in the shop's time zone, which is named)
    assert re.search(r'title="Europe/Berlin">\d{4}-\d\d-\d\d \d\d:\d\d CES?T<', re.search(r'<dd id="tier-period-end">(.*?)</dd>', html).group(1))
    assert unescape(link.group(1)).startswith("http://localhost/r/")
    assert own_page.status_code == 200
    assert '<dd id="available">600</dd>' in own_page.get_data(as_text=True)


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, path, data",
    [
        ("redeem", "/admin/customers/{customer}/redeem", {"reward": "Gratisversand", "key": "6f1c1d0e8c3b4a4c9a3e2f7d1b0a9c8e"}),
        ("adjust", "/admin/customers/{customer}/adjust", {"points": "5", "reason": "x", "key": "6f1c1d0e8c3b4a4c9a3e2f7d1b0a9c8e"}),
        ("ban", "/admin/customers/{customer}/ban", {"action": "ban", "reason": "x"}),
        ("program", "/admin/shops/{shop}/program", {"document": "{}", "base": "1"}),
    ],
)
def test_customer_and_program_forms_without_csrf_token_are_rejected(client, session, make_shop, _case, path, data):
    # given a signed-in staff user and a customer with points
    shop_id, customer_id = _customer_with_points(make_shop)
    _signed_in(client, session)
    before = factories.report(shop_id, KUNDIN)

    # when a form is posted without the token (as a cross-site form would)
    response = client.post(path.format(customer=customer_id, shop=shop_id), data=data)

    # then it is refused and nothing changed
    assert response.status_code == 400
    assert factories.report(shop_id, KUNDIN) == before
    assert _program_in_force(session, shop_id)[0] == 1


# --- does the program pay? --------------------------------------------------------------------

ANNA, BEN, CORA = "anna@example.test", "ben@example.test", "cora@example.test"
T0 = factories.T0


def _day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def _message(shop_id: int, customer_id: int | None, campaign: str, status: str, at: datetime, *, step: int = 1,
             reason: str | None = None, error: str | None = None) -> int:
    """Insert a reminder row as the send job leaves it; returns its id."""
    with session_scope() as s:
        row = ReminderMessage(
            shop_id=shop_id, customer_id=customer_id, campaign=campaign, subject_key=f"{customer_id}:{at.isoformat()}",
            step=step, marketing=MARKETING[campaign], status=MessageStatus(status), reason=reason, error=error,
            due_at=at, sent_at=at if status == "sent" else None, attempts=0 if status in ("scheduled", "suppressed") else 1,
        )
        s.add(row)
        s.flush()
        return row.id


def _figure(html: str, figure_id: str) -> str:
    match = re.search(rf'<dd class="figure" id="{figure_id}">(.*?)</dd>', html, re.S)
    assert match, f"no figure {figure_id}"
    return unescape(match.group(1)).strip()


def test_shop_dashboard_shows_the_figures_per_period(client, session, make_shop, time_machine):
    # given (now is day 100) cora paid on day 0, anna on day 20 and on day 80 after a win-back
    # on day 78, and ben on day 95
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT, "tiers": {"levels": []}})
    time_machine.move_to(_day(0), tick=False)
    factories.apply(shop_id, factories.order("0", "10.00", customer_id="cora", email=CORA, paid_at=_day(0)))
    time_machine.move_to(_day(20), tick=False)
    factories.apply(shop_id, factories.order("1", "100.00", customer_id="anna", email=ANNA, paid_at=_day(20)))
    time_machine.move_to(_day(78), tick=False)
    with session_scope() as s:
        anna = find_by_email(s, shop_id, ANNA).id
    _message(shop_id, anna, "winback", "sent", _day(78))
    time_machine.move_to(_day(80), tick=False)
    factories.apply(shop_id, factories.order("2", "40.00", customer_id="anna", email=ANNA, paid_at=_day(80)))
    time_machine.move_to(_day(95), tick=False)
    factories.apply(shop_id, factories.order("3", "60.00", customer_id="ben", email=BEN, paid_at=_day(95)))
    time_machine.move_to(_day(100), tick=False)
    _signed_in(client, session)

    # when staff follow the shop's link from the shop list and switch between the periods
    shops = client.get("/admin/").get_data(as_text=True)
    pages = {p: client.get(f"/admin/shops/{shop_id}?period={p}").get_data(as_text=True) for p in ("30d", "90d", "all")}
    default = client.get(f"/admin/shops/{shop_id}").get_data(as_text=True)

    # then each period shows its own members, repeat rate and points, and the won-back order
    assert f'href="/admin/shops/{shop_id}"' in shops
    shown = {
        p: tuple(_figure(html, f) for f in ("members", "repeat-purchase-rate", "points-earned", "orders-won-back",
                                             "revenue-won-back"))
        for p, html in pages.items()
    }
    assert shown == {
        "30d": ("2", "0.0 %", "100", "1", "40.00 EUR"),  # since day 70: anna's 2nd order and ben's
        "90d": ("2", "50.0 %", "200", "1", "40.00 EUR"),  # since day 10: both of anna's orders
        "all": ("3", "33.3 %", "210", "1", "40.00 EUR"),
    }
    assert _figure(default, "members") == "2"
    assert re.search(r'aria-current="page"[^>]*>Last 30 days<', default)
    winback = re.search(r'<tr id="campaign-winback">(.*?)</tr>', pages["all"], re.S).group(1)
    assert "40.00 EUR" in winback and ">1</a>" in winback
    assert "Customers with at least one paid order in the period" in pages["all"]
    assert client.get("/admin/shops/999").status_code == 404


def test_shop_dashboard_matches_the_metrics(client, session, make_shop):
    # given a customer with 600 points who redeemed one reward whose code exists
    shop_id, customer_id, _redemption_id, _code = _customer_with_a_code(make_shop)
    _signed_in(client, session)

    # when staff open the shop's figures for all time
    html = client.get(f"/admin/shops/{shop_id}?period=all").get_data(as_text=True)

    # then the page shows what program_metrics computes, as plain numbers and percentages
    figures = metrics.program_metrics(session, shop_id)
    session.commit()
    assert (figures["points_earned"], figures["points_redeemed"], figures["rewards"]["codes_created"]) == (600, 500, 1)
    assert _figure(html, "points-earned") == "600"
    assert _figure(html, "points-redeemed") == "500"
    assert _figure(html, "redemption-rate") == "83.3 %"
    assert _figure(html, "member-redemption-rate") == "100.0 %"
    assert _figure(html, "rewards-redeemed") == "1"
    assert _figure(html, "codes-created") == "1"
    assert _figure(html, "code-failures") == "0"


# --- e-mail previews --------------------------------------------------------------------------


@pytest.mark.sqlite_only
@pytest.mark.parametrize("_case, kind, lang", [(f"{k} {lang}", k, lang) for k in KINDS for lang in LANGUAGES])
def test_email_preview_renders_each_kind_in_the_shops_look(client, session, make_shop, _case, kind, lang):
    # given a shop called "Demo Laden" in brick red
    shop_id = make_shop("shopify", name="Demo Laden")
    with session_scope() as s:
        s.get(Shop, shop_id).brand_color = "#aa3300"
    _signed_in(client, session)

    # when staff open the list of e-mails, the preview, and the framed HTML part
    listing = client.get(f"/admin/shops/{shop_id}/emails").get_data(as_text=True)
    page = client.get(f"/admin/shops/{shop_id}/emails/{kind}?lang={lang}")
    frame = client.get(f"/admin/shops/{shop_id}/emails/{kind}/html?lang={lang}")

    # then subject, text and HTML show the sample in the shop's name and colour, not the demo shop's
    assert f'href="/admin/shops/{shop_id}/emails/{kind}?lang={lang}"' in listing
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    subject = unescape(re.search(r'<dd id="subject">(.*?)</dd>', html, re.S).group(1))
    text = unescape(re.search(r'<pre class="email-text" id="text-part">(.*?)</pre>', html, re.S).group(1))
    assert "Demo Laden" in subject
    assert "Demo Laden" in text and ("Anna" if lang == "de" else "Emma") in text
    assert re.search(rf'<iframe[^>]*src="/admin/shops/{shop_id}/emails/{kind}/html\?lang={lang}"[^>]*sandbox=""', html)
    assert frame.status_code == 200 and frame.mimetype == "text/html"
    assert "sandbox" in frame.headers["Content-Security-Policy"]
    assert "script-src" not in frame.headers["Content-Security-Policy"]
    body = frame.get_data(as_text=True)
    assert f'<html lang="{lang}">' in body
    assert "Demo Laden" in body and "background-color: #aa3300" in body
    for demo in ("Kaffeerösterei Hansen", "Hansen Coffee Roasters"):
        assert demo not in text + body


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, path",
    [
        ("unknown kind", "/admin/shops/{shop}/emails/newsletter?lang=de"),
        ("unknown kind, html part", "/admin/shops/{shop}/emails/newsletter/html?lang=de"),
        ("unknown shop", "/admin/shops/999/emails/winback?lang=de"),
    ],
)
def test_email_preview_of_something_unknown_is_404(client, session, make_shop, _case, path):
    # given a shop and a signed-in staff user
    shop_id = make_shop("shopify")
    _signed_in(client, session)

    # when a preview of something that does not exist is asked for
    response = client.get(path.format(shop=shop_id))

    # then there is no such page
    assert response.status_code == 404


# --- reminder sends ---------------------------------------------------------------------------


def _reminder_rows(make_shop) -> tuple[int, int, dict[str, int]]:  # type: ignore[no-untyped-def]
    """A customer with one reminder of each status; returns (shop id, customer id, status -> row id)."""
    shop_id, customer_id = _customer_with_points(make_shop)
    rows = {
        "sent": _message(shop_id, customer_id, "winback", "sent", T0 + timedelta(days=40)),
        "suppressed": _message(shop_id, customer_id, "cart", "suppressed", T0 + timedelta(days=41), reason="no_consent"),
        "failed": _message(shop_id, customer_id, "cart", "failed", T0 + timedelta(days=42), step=2,
                           error="PermanentMailError: recipient refused (550 5.1.1 [address])"),
        "scheduled": _message(shop_id, customer_id, "expiry", "scheduled", T0 + timedelta(days=43), reason="quiet_hours"),
    }
    factories.apply(shop_id, factories.order("2", "49.90", paid_at=T0 + timedelta(days=41)))  # won back by the win-back
    return shop_id, customer_id, rows


@pytest.mark.parametrize(
    "_case, query, expected, shown",
    [
        ("failed", "status=failed", {"failed"}, "PermanentMailError: recipient refused"),
        ("suppressed", "status=suppressed", {"suppressed"}, "no_consent"),
        ("scheduled", "status=scheduled", {"scheduled"}, "quiet_hours"),
        ("sent, with the order it won back", "status=sent", {"sent"}, "#2 · 49.90 EUR"),
        ("one campaign", "campaign=cart", {"suppressed", "failed"}, "cart"),
        ("everything", "", {"sent", "suppressed", "failed", "scheduled"}, "winback"),
    ],
)
def test_reminders_list_filters_by_status_and_campaign(client, session, make_shop, _case, query, expected, shown):
    # given a customer with a sent, a suppressed, a failed and a scheduled reminder
    _shop_id, customer_id, rows = _reminder_rows(make_shop)
    _signed_in(client, session)

    # when staff list the reminder sends with a filter
    html = client.get(f"/admin/reminders?{query}").get_data(as_text=True)

    # then exactly the matching rows are listed, newest first, with why and a link to the customer
    listed = [int(i) for i in re.findall(r'<tr id="reminder-(\d+)">', html)]
    assert listed == sorted((rows[s] for s in expected), reverse=True)
    for status in expected:
        row = re.search(rf'<tr id="reminder-{rows[status]}">(.*?)</tr>', html, re.S).group(1)
        assert f'href="/admin/customers/{customer_id}"' in row
        assert status in row
    assert any(shown in unescape(re.search(rf'<tr id="reminder-{rows[s]}">(.*?)</tr>', html, re.S).group(1))
               for s in expected)


def test_reminders_list_pages_by_100(client, session, make_shop):
    # given 101 scheduled reminders of one shop, and none of another
    shop_id, customer_id = _customer_with_points(make_shop)
    other = make_shop("woocommerce")
    with session_scope() as s:
        s.add_all(
            ReminderMessage(shop_id=shop_id, customer_id=customer_id, campaign="cart", subject_key=f"{n}:1", step=1,
                            marketing=True, status=MessageStatus.SCHEDULED, due_at=T0, attempts=0)
            for n in range(101)
        )
    _signed_in(client, session)

    # when staff list that shop's reminders and follow the link to older ones
    first = client.get(f"/admin/reminders?shop={shop_id}").get_data(as_text=True)
    older = re.search(r'<a class="button" href="([^"]+)">Older sends</a>', first)
    second = client.get(unescape(older.group(1))).get_data(as_text=True) if older else ""
    none = client.get(f"/admin/reminders?shop={other}").get_data(as_text=True)

    # then the newest 100 come first, the oldest one on the next page, and the other shop has none
    first_ids = [int(i) for i in re.findall(r'<tr id="reminder-(\d+)">', first)]
    second_ids = [int(i) for i in re.findall(r'<tr id="reminder-(\d+)">', second)]
    assert len(first_ids) == 100 and first_ids == sorted(first_ids, reverse=True)
    assert len(second_ids) == 1 and second_ids[0] < min(first_ids)
    assert "No reminders match" in none


# --- consent, reminder history, unsubscribe, re-sending a code --------------------------------


@pytest.mark.sqlite_only
def test_customer_page_shows_consent_and_reminder_history(client, session, make_shop):
    # given a customer who consented in Shopify, got a win-back, ordered after it, and whose
    # cart reminder was suppressed
    shop_id, customer_id = _customer_with_points(make_shop)
    with session_scope() as s:
        upsert_customer(s, s.get(Shop, shop_id), ct.Customer(id="c1", email=KUNDIN, accepts_marketing=True,
                                                             marketing_consent_at=T0 - timedelta(days=30)))
    _message(shop_id, customer_id, "winback", "sent", T0 + timedelta(days=40))
    _message(shop_id, customer_id, "cart", "suppressed", T0 + timedelta(days=50), reason="no_consent")
    factories.apply(shop_id, factories.order("2", "49.90", paid_at=T0 + timedelta(days=42)))
    _signed_in(client, session)

    # when staff open the customer's page
    html = _customer_page(client, customer_id)

    # then consent state, its proof and the reminders with their outcome are shown
    assert '<dd id="accepts-marketing">accepted</dd>' in html
    assert '<dd id="consent-source">shopify</dd>' in html
    assert "2026-10-02 12:00 CEST" in re.search(r'<dd id="consent-since">(.*?)</dd>', html).group(1)  # 10:00 UTC in Berlin
    assert '<dd id="unsubscribed">no</dd>' in html
    events = re.search(r'<table id="consent-events">(.*?)</table>', html, re.S).group(1)
    assert "granted" in events and "shopify" in events
    history = unescape(re.search(r'<table id="reminder-history">(.*?)</table>', html, re.S).group(1))
    rows = re.findall(r"<tr>(.*?)</tr>", history, re.S)[1:]
    assert len(rows) == 2
    assert "winback" in rows[0] and "sent" in rows[0] and "#2 · 49.90 EUR" in rows[0]
    assert "cart" in rows[1] and "suppressed" in rows[1] and "no_consent" in rows[1]


def test_staff_unsubscribe_records_proof_once(client, session, make_shop):
    # given a customer, and staff on their page
    _shop_id, customer_id = _customer_with_points(make_shop)
    _signed_in(client, session)
    form = _form(_customer_page(client, customer_id), "unsubscribe-form")

    # when staff press Unsubscribe, and the form is posted again
    first = client.post(f"/admin/customers/{customer_id}/unsubscribe", data=form)
    after_first = _flashes(client, customer_id)
    client.post(f"/admin/customers/{customer_id}/unsubscribe", data=form)
    after_second = _flashes(client, customer_id)
    page = _customer_page(client, customer_id)

    # then the customer is unsubscribed at once with one staff consent event naming who did it
    assert first.status_code == 302
    assert "Unsubscribed: no more reminders" in after_first
    assert "already unsubscribed" in after_second
    session.expire_all()
    customer = session.get(Customer, customer_id)
    events = session.scalars(select(ConsentEvent).where(ConsentEvent.customer_id == customer_id)).all()
    session.commit()
    assert customer.unsubscribed_at is not None
    assert (customer.accepts_marketing, customer.consent_source) == (False, "staff")
    assert [(e.kind, e.source, e.detail) for e in events] == [("unsubscribed", "staff", {"by": STAFF_EMAIL})]
    assert 'id="unsubscribed-marker"' in page
    assert 'id="unsubscribe-form"' not in page
    assert STAFF_EMAIL in re.search(r'<table id="consent-events">(.*?)</table>', page, re.S).group(1)


def _customer_with_a_code(make_shop) -> tuple[int, int, int, str]:  # type: ignore[no-untyped-def]
    """A customer (Erika, 600 points) who redeemed "5 € Rabatt" and whose code exists in the shop.

    Returns (shop id, customer id, redemption id, code).
    """
    shop_id, customer_id = _customer_with_points(make_shop)
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        shop.name, shop.mail_from, shop.brand_color = "Demo Laden", "Demo Laden <hallo@demo-laden.example>", "#aa3300"
        customer = s.get(Customer, customer_id)
        customer.first_name, customer.last_name = "Erika", "Mustermann"
        redemption = redeem(s, shop, customer, "5 € Rabatt", source="customer")
        code = s.get(IssuedCode, redemption.issued_code_id)
        # what the code job records once the shop created the code
        code.status, redemption.status = CodeStatus.CREATED, RedemptionStatus.CREATED
        return shop_id, customer_id, redemption.id, code.code


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, unsubscribed",
    [
        ("subscribed", False),
        ("unsubscribed: the code is theirs, so it still goes", True),
    ],
)
def test_resend_code_is_received_by_the_mail_server(smtp_server, client, session, make_shop, _case, unsubscribed):
    # given (the SMTP server starts before the app, which reads SMTP_* when it is created) a
    # customer whose reward code exists, and staff on their page
    shop_id, customer_id, redemption_id, code = _customer_with_a_code(make_shop)
    if unsubscribed:
        with session_scope() as s:
            consent.unsubscribe(s, s.get(Customer, customer_id), source="unsubscribe_link")
    _signed_in(client, session)
    form = _form(_customer_page(client, customer_id), f"resend-{redemption_id}")

    # when staff press "Re-send code"
    response = client.post(f"/admin/customers/{customer_id}/redemptions/{redemption_id}/resend", data=form)

    # then the local mail server received it at once, with the code in the text and the HTML part
    assert response.status_code == 302
    assert f"Code {code} was e-mailed to {KUNDIN}." in _flashes(client, customer_id)
    [mail] = smtp_server.messages
    assert mail["To"] == f"Erika Mustermann <{KUNDIN}>"
    assert mail["From"] == "Demo Laden <hallo@demo-laden.example>"
    assert mail["Subject"] == "Ihr Code für „5 € Rabatt“ bei Demo Laden"
    assert "List-Unsubscribe" not in mail  # transactional
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert code in text and code in html
    assert "Hallo Erika," in text and "5,00 €" in text
    assert "http://localhost/r/" in text  # the customer's page, from PUBLIC_URL
    assert "background-color: #aa3300" in html


@pytest.mark.sqlite_only
def test_resent_code_of_a_combination_offer_says_what_it_gives(smtp_server, client, session, make_shop):
    # given a customer who redeemed "buy 2 × Espresso-Bohnen, get a cup free", whose code exists in the shop
    shop_id, customer_id = _customer_with_points(make_shop)
    offer = {"name": "Kaffee-Kombi", "points": 400, "kind": "buy_x_get_y", "buys_product_ids": ["7"],
             "buys_quantity": 2, "buys_label": "Espresso-Bohnen", "product_id": "9", "gets_label": "Tasse"}
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT, "rewards": [offer]})
    with session_scope() as s:
        redemption = redeem(s, s.get(Shop, shop_id), s.get(Customer, customer_id), "Kaffee-Kombi", source="customer")
        code = s.get(IssuedCode, redemption.issued_code_id)
        code.status, redemption.status = CodeStatus.CREATED, RedemptionStatus.CREATED
        redemption_id = redemption.id
    _signed_in(client, session)
    form = _form(_customer_page(client, customer_id), f"resend-{redemption_id}")

    # when staff re-send the code
    client.post(f"/admin/customers/{customer_id}/redemptions/{redemption_id}/resend", data=form)

    # then the e-mail says what the code gives, in the customer's language
    [mail] = smtp_server.messages
    assert "Wert: Kaufe 2 × Espresso-Bohnen, erhalte 1 × Tasse gratis" in mail.get_body(("plain",)).get_content()


@pytest.mark.sqlite_only
def test_resend_code_is_refused_for_a_banned_customer(smtp_server, client, session, make_shop):
    # given a customer with a created code who was banned afterwards
    _shop_id, customer_id, redemption_id, _code = _customer_with_a_code(make_shop)
    token = _signed_in(client, session)
    with session_scope() as s:
        customer = s.get(Customer, customer_id)
        customer.banned_at, customer.ban_reason = utcnow(), "Rückbuchung"

    # when the re-send is posted anyway (the page no longer offers it)
    page = _customer_page(client, customer_id)
    client.post(f"/admin/customers/{customer_id}/redemptions/{redemption_id}/resend", data={"csrf_token": token})

    # then nothing is sent, and staff are told why
    assert f'id="resend-{redemption_id}"' not in page
    assert "Code not sent: the customer is banned" in _flashes(client, customer_id)
    assert smtp_server.messages == []


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, failure, detail",
    [
        ("mail server unreachable", None, "SMTP connection failed"),
        ("mail server refuses the message", "554 5.7.1 Message rejected", "554"),
    ],
)
def test_resend_code_with_smtp_failing_shows_an_error(smtp_server, app, client, session, make_shop, _case, failure,
                                                       detail):
    # given a customer whose code exists, and a mail server that is down or refuses
    _shop_id, customer_id, redemption_id, _code = _customer_with_a_code(make_shop)
    _signed_in(client, session)
    form = _form(_customer_page(client, customer_id), f"resend-{redemption_id}")
    if failure is None:
        app.config["SMTP_PORT"] = free_port()  # nothing listens there
    else:
        smtp_server.fail_next = [failure]

    # when staff press "Re-send code"
    response = client.post(f"/admin/customers/{customer_id}/redemptions/{redemption_id}/resend", data=form)

    # then they get their page back with a clear error, not a 500, and nothing was delivered
    assert response.status_code == 302
    flashes = _flashes(client, customer_id)
    assert "The code was NOT sent" in flashes and detail in flashes
    assert smtp_server.messages == []


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "_case, path",
    [
        ("unsubscribe", "/admin/customers/{customer}/unsubscribe"),
        ("re-send code", "/admin/customers/{customer}/redemptions/{redemption}/resend"),
    ],
)
def test_unsubscribe_and_resend_without_csrf_token_are_rejected(smtp_server, client, session, make_shop, _case, path):
    # given a signed-in staff user and a customer with a created code
    _shop_id, customer_id, redemption_id, _code = _customer_with_a_code(make_shop)
    _signed_in(client, session)

    # when a form is posted without the token (as a cross-site form would)
    response = client.post(path.format(customer=customer_id, redemption=redemption_id))

    # then it is refused: no consent change, no e-mail
    assert response.status_code == 400
    session.expire_all()
    assert session.get(Customer, customer_id).unsubscribed_at is None
    assert session.scalar(select(func.count()).select_from(ConsentEvent)) == 0
    session.commit()
    assert smtp_server.messages == []


@pytest.mark.sqlite_only
def test_customer_page_says_what_the_points_are_worth_derived_or_stated(client, session, make_shop):
    # given a customer with 1250 points (1 point per euro), the default rewards ("5 € Rabatt" for 500 points)
    shop_id, customer_id = _customer_with_points(make_shop, "1250.00")
    _signed_in(client, session)

    # when staff open the customer's page
    html = unescape(_customer_page(client, customer_id))

    # then the balance is shown with its worth (the staff user's English), and where a point's value comes from
    assert '<p id="points-worth">1,250 points ≈ €12.50</p>' in html
    assert "1 point = 1 cent · derived from the reward “5 € Rabatt” (the cheapest amount reward)" in " ".join(html.split())

    # and when the program states 2 cents a point, that value is used
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT, "redemption": {"point_value": "0.02"}})
    html = unescape(_customer_page(client, customer_id))
    assert '<p id="points-worth">1,250 points ≈ €25.00</p>' in html
    assert "1 point = 2 cents · as the program states" in " ".join(html.split())
