"""The admin pages and staff log-ins, on SQLite and PostgreSQL, with real Redis and a real worker."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher
from markupsafe import escape
from sqlalchemy import func, select

from app.customers import find_by_email
from app.explain import customer_report
from app.models import DeliveryStatus, StaffUser, WebhookDelivery
from app.staff import authenticate, create_staff
from tests.conftest import SHOPIFY_DOMAIN, fixture_bytes

STAFF_EMAIL = "support@stammkunde.example"
STAFF_PASSWORD = "correct horse battery"
BOB = "bob.norman@mail.example.com"


def _csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def _add_staff(session, email: str = STAFF_EMAIL, password: str = STAFF_PASSWORD) -> StaffUser:  # type: ignore[no-untyped-def]
    user = create_staff(session, email, password)
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


@pytest.mark.parametrize(
    "_case, path",
    [
        ("dashboard", "/admin/"),
        ("deliveries", "/admin/deliveries?status=failed"),
        ("customer search", "/admin/customers?q=bob"),
        ("customer page", "/admin/customers/1"),
    ],
)
def test_pages_redirect_anonymous_visitors_to_login(client, _case, path):
    # given nobody signed in

    # when a page is requested
    response = client.get(path)

    # then it redirects to the sign-in form, remembering where to go back to
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=")


def test_root_redirects_to_admin(client):
    # given the app

    # when the site root is requested
    response = client.get("/")

    # then it sends the visitor to the admin
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


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


def test_logout_signs_out(client, session):
    # given a signed-in staff user
    token = _signed_in(client, session)

    # when they sign out
    response = client.post("/admin/logout", data={"csrf_token": token})

    # then the admin asks for a sign-in again
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 302


def test_post_without_csrf_token_is_rejected(client, session):
    # given a staff user
    _add_staff(session)

    # when the sign-in form is posted without the token
    response = client.post("/admin/login", data={"email": STAFF_EMAIL, "password": STAFF_PASSWORD})

    # then it is refused and nobody is signed in
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


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
        assert f'href="/admin/deliveries?id={entry["delivery"]}"' in page
    for lot in report["lots"]:
        assert f"version {lot['rule']['program_version']}" in page


def test_customer_search_without_match_says_so(client, session):
    # given a signed-in staff user and no customers
    _signed_in(client, session)

    # when they search for an address with LIKE wildcards in it
    html = client.get("/admin/customers?q=%25_").get_data(as_text=True)

    # then nothing matches
    assert "No customer with an e-mail starting with" in html


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


def test_new_password_signs_out_existing_sessions(client, session):
    # given a signed-in staff user
    _signed_in(client, session)

    # when their password is set anew (flask staff create)
    _add_staff(session, STAFF_EMAIL, "a different password")

    # then the old session no longer opens the admin
    assert client.get("/admin/").status_code == 302


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


def test_inactive_staff_cannot_log_in(session):
    # given a deactivated staff user
    user = _add_staff(session)
    user.active = False
    session.commit()

    # when they authenticate with the right password
    result = authenticate(session, STAFF_EMAIL, STAFF_PASSWORD)

    # then they are refused
    assert result is None
