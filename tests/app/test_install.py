"""Installing the app in a Shopify shop (authorization code grant, expiring offline tokens), keeping
its token fresh, and subscribing its webhooks by API."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import responses
import shopify
from sqlalchemy import func, select

from app import config as app_config
from app import shops
from app.db import session_scope
from app.models import Backfill, Customer, OAuthState, PlatformWebhook, Shop, ShopStatus, utcnow
from connectors.errors import AuthorizationExpiredError
from connectors.shopify import client, consts
from tests.conftest import TEST_ENCRYPTION_KEY

API_KEY = "test-client-id"
SECRET = "hush"  # the secret of Shopify's published HMAC vectors
SHOP = "laden-am-eck.myshopify.com"
PUBLIC = "https://loyalty.example"
TOKEN_URL = f"https://{SHOP}/admin/oauth/access_token"
GRAPHQL_URL = consts.ADMIN_GRAPHQL_URL.format(shop=SHOP, version=consts.API_VERSION)


def signed(params: dict[str, str]) -> dict[str, str]:
    """Return `params` with Shopify's query `hmac` under the test secret (as Shopify signs them)."""
    session_class = type("AppSession", (shopify.Session,), {"secret": SECRET})
    return {**params, "hmac": session_class.calculate_hmac(params)}


@pytest.fixture(autouse=True)
def _settings_follow_the_environment():
    """Tests here change the environment for jobs; the next test's jobs read it afresh."""
    yield
    app_config.settings(reload=True)


@pytest.fixture
def shopify_app(app):  # type: ignore[no-untyped-def]
    app.config.update(SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET, PUBLIC_URL=PUBLIC)
    return app


def _grant_answer(token: str = "shpat_first", refresh: str = "shprt_first") -> dict[str, object]:
    # The shape of Shopify's answer with `expiring=1` (offline-access-tokens doc).
    return {"access_token": token, "scope": "write_orders,read_customers,write_discounts,read_orders,write_customers,"
            "write_store_credit_account_transactions",
            "expires_in": 3600, "refresh_token": refresh, "refresh_token_expires_in": 7776000}


def _start(web) -> str:  # type: ignore[no-untyped-def]
    """Open the install URL; return the state Shopify would send back."""
    answer = web.get("/shopify/install", query_string={"shop": SHOP})
    assert answer.status_code == 302
    target = urllib.parse.urlsplit(answer.headers["Location"])
    query = dict(urllib.parse.parse_qsl(target.query))
    assert (target.scheme, target.netloc, target.path) == ("https", SHOP, "/admin/oauth/authorize")
    assert query["client_id"] == API_KEY
    assert query["scope"].split(",") == list(consts.SCOPES)
    assert query["redirect_uri"] == f"{PUBLIC}/shopify/callback"
    return query["state"]


def _callback(web, state: str, tamper: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """Follow Shopify's redirect back; `tamper` changes parameters after Shopify signed them."""
    params = signed({"code": "0907a61c0c8d55e99db179b68161bc00", "shop": SHOP, "state": state,
                     "timestamp": str(int(time.time()))})
    params.update(tamper or {})
    return web.get("/shopify/callback", query_string=params)


# ---- the query HMAC ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "query", "valid"),
    [
        # Shopify's published vector (shopify_python_api test_hmac_calculation).
        ("published vector", "shop=some-shop.myshopify.com&code=a94a110d86d2452eb3e2af4cfb8a3828&timestamp=1337178173"
         "&hmac=2cb1a277650a659f1b11e92a4a64275b128e037f2c3390e3c8fd2d8721dac9e2", True),
        # The second published vector includes `state` (hexdocs shopify_oauth).
        ("published vector with state", "code=0907a61c0c8d55e99db179b68161bc00&hmac=700e2dadb827fcc8609e9d5ce208b2e9"
         "cdaab9df07390d2cbca10d7c328fc4bf&shop=some-shop.myshopify.com&state=0.6784241404160823&timestamp=1337178173",
         True),
        ("tampered shop", "shop=other-shop.myshopify.com&code=a94a110d86d2452eb3e2af4cfb8a3828&timestamp=1337178173"
         "&hmac=2cb1a277650a659f1b11e92a4a64275b128e037f2c3390e3c8fd2d8721dac9e2", False),
        ("state left out", "code=0907a61c0c8d55e99db179b68161bc00&hmac=700e2dadb827fcc8609e9d5ce208b2e9"
         "cdaab9df07390d2cbca10d7c328fc4bf&shop=some-shop.myshopify.com&timestamp=1337178173", False),
        ("no hmac", "shop=some-shop.myshopify.com&code=a94a110d86d2452eb3e2af4cfb8a3828&timestamp=1337178173", False),
    ],
)
def test_install_query_hmac_matches_shopifys_published_vectors(_case, query, valid):
    # given a query as Shopify sends it, checked at the moment it was made
    params = dict(urllib.parse.parse_qsl(query))

    # then only an untouched, signed query is valid
    assert client.valid_install_query(params, SECRET, now=1337178173 + 60) is valid


@pytest.mark.parametrize(("_case", "offset", "valid"), [
    ("a minute old", -60, True), ("25 hours old", -25 * 3600, False), ("an hour ahead", 3600, False),
])
def test_install_query_must_be_fresh(_case, offset, valid):
    # given a correctly signed query whose timestamp is `offset` seconds from now
    now = 1_800_000_000
    params = signed({"shop": SHOP, "timestamp": str(now + offset)})

    # then only a recent one is accepted
    assert client.valid_install_query(params, SECRET, now=now) is valid
    assert client.valid_install_query({**params, "timestamp": "soon"}, SECRET, now=now) is False


# ---- the install ---------------------------------------------------------------------------------


@responses.activate
def test_install_stores_an_expiring_token_encrypted_and_subscribes_webhooks(shopify_app, work, monkeypatch):
    # given a merchant who opens the install URL
    web = shopify_app.test_client()
    state = _start(web)
    responses.post(TOKEN_URL, json=_grant_answer())

    # when Shopify sends them back with a code
    answer = _callback(web, state)

    # then the code is traded for an EXPIRING offline token
    assert answer.status_code == 200, answer.text
    assert "installed" in answer.text
    sent = dict(urllib.parse.parse_qsl(responses.calls[0].request.body))
    assert sent == {"client_id": API_KEY, "client_secret": SECRET, "code": "0907a61c0c8d55e99db179b68161bc00",
                    "expiring": "1"}
    # and the shop holds the pair encrypted, with expiries and the scopes granted
    with session_scope() as s:
        shop = s.scalars(select(Shop).where(Shop.domain == SHOP)).one()
        assert shop.status == ShopStatus.ACTIVE and shop.installed_at is not None
        assert b"shpat_first" not in shop.api_credentials_enc and b"shprt_first" not in shop.api_credentials_enc
        assert shops.credentials(shop, TEST_ENCRYPTION_KEY) == {"access_token": "shpat_first",
                                                                 "refresh_token": "shprt_first"}
        assert timedelta(minutes=59) < shop.access_token_expires_at - utcnow() <= timedelta(hours=1)
        assert timedelta(days=89) < shop.refresh_token_expires_at - utcnow() <= timedelta(days=90)
        assert shops.missing_scopes(shop, consts.SCOPES) == []

    # and when the queued sync runs, every topic we handle is subscribed at our address
    responses.post(GRAPHQL_URL, json={"data": {"webhookSubscriptions": {
        "nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}}})
    for topic in sorted(consts.SUBSCRIPTION_TOPICS.values()):
        responses.post(GRAPHQL_URL, json={"data": {"webhookSubscriptionCreate": {
            "webhookSubscription": {"id": f"gid://shopify/WebhookSubscription/{topic}", "topic": topic,
                                    "uri": f"{PUBLIC}/webhooks/shopify"}, "userErrors": []}}})
    monkeypatch.setenv("PUBLIC_URL", PUBLIC)  # the worker reads its settings from the environment
    app_config.settings(reload=True)  # jobs read settings once per process
    assert work() == 1
    created = [json.loads(call.request.body) for call in responses.calls[2:]]
    assert sorted(c["variables"]["topic"] for c in created) == sorted(consts.SUBSCRIPTION_TOPICS.values())
    assert {c["variables"]["webhookSubscription"]["uri"] for c in created} == {f"{PUBLIC}/webhooks/shopify"}
    assert {call.request.headers[consts.ACCESS_TOKEN_HEADER] for call in responses.calls[1:]} == {"shpat_first"}


@pytest.mark.parametrize("_case", ["replayed", "other browser", "bad hmac", "not a myshopify shop"])
@responses.activate
def test_callback_refuses_what_shopify_did_not_send_to_this_browser(shopify_app, _case):
    # given an install started in one browser
    web = shopify_app.test_client()
    state = _start(web)
    responses.post(TOKEN_URL, json=_grant_answer())
    expected = {"replayed": 403, "other browser": 403, "bad hmac": 400, "not a myshopify shop": 400}[_case]

    # when the callback is replayed, opened in another browser, tampered with, or for another host
    if _case == "replayed":
        assert _callback(web, state).status_code == 200
        answer = _callback(web, state)
    elif _case == "other browser":
        answer = _callback(shopify_app.test_client(), state)
    elif _case == "bad hmac":
        answer = _callback(web, state, tamper={"code": "another-code"})
    else:
        params = signed({"code": "c", "shop": "evil.example", "state": state, "timestamp": str(int(time.time()))})
        answer = web.get("/shopify/callback", query_string=params)

    # then it is refused, and no token was asked for beyond the one real install
    assert answer.status_code == expected
    assert len(responses.calls) == (1 if _case == "replayed" else 0)


def test_install_refuses_a_shop_that_is_not_a_myshopify_domain_and_an_unset_app(shopify_app, app):
    # given a merchant typing a wrong address
    answer = shopify_app.test_client().get("/shopify/install", query_string={"shop": "https://evil.example"})

    # then they get a clear 400 and no state is made
    assert answer.status_code == 400 and "myshopify.com" in answer.text
    with session_scope() as s:
        assert s.scalars(select(OAuthState)).all() == []

    # and without the app's key and secret the install fails closed
    app.config.update(SHOPIFY_API_KEY=None)
    assert app.test_client().get("/shopify/install", query_string={"shop": SHOP}).status_code == 500


@responses.activate
def test_installing_again_reactivates_the_shop_and_keeps_its_customers(shopify_app, make_shop):
    # given a shop that had customers and was uninstalled
    shop_id = make_shop("shopify", domain=SHOP, secret="")
    with session_scope() as s:
        s.add(Customer(shop_id=shop_id, platform_id="7", email="anna@example.test"))
        shop = s.get(Shop, shop_id)
        shop.status, shop.uninstalled_at = ShopStatus.UNINSTALLED, utcnow()
        shop.needs_reauth_at = utcnow()
    responses.post(TOKEN_URL, json=_grant_answer(token="shpat_again"))

    # when the merchant installs again
    web = shopify_app.test_client()
    answer = _callback(web, _start(web))

    # then the same shop is active with the new token and its customers are still there
    assert answer.status_code == 200 and "again" in answer.text
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        assert (shop.status, shop.uninstalled_at, shop.needs_reauth_at) == (ShopStatus.ACTIVE, None, None)
        assert shops.credentials(shop, TEST_ENCRYPTION_KEY)["access_token"] == "shpat_again"
        assert s.scalars(select(Customer.email).where(Customer.shop_id == shop_id)).all() == ["anna@example.test"]


# ---- keeping the token fresh ----------------------------------------------------------------------


def _installed(make_shop, *, expires_in: timedelta) -> int:  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify", domain=SHOP, secret="")
    with session_scope() as s:
        grant = client.TokenGrant(access_token="shpat_old", scopes=consts.SCOPES, expires_at=utcnow() + expires_in,
                                  refresh_token="shprt_old", refresh_expires_at=utcnow() + timedelta(days=90))
        shops.install_shopify_shop(s, keys=TEST_ENCRYPTION_KEY, domain=SHOP, grant=grant)
    return shop_id


def _new_grant(now: datetime, n: int = 1) -> client.TokenGrant:
    return client.TokenGrant(access_token=f"shpat_new{n}", scopes=consts.SCOPES, expires_at=now + timedelta(hours=1),
                             refresh_token=f"shprt_new{n}", refresh_expires_at=now + timedelta(days=90))


def test_a_fresh_token_is_used_as_it_is(make_shop):
    # given a token with most of its hour left
    shop_id = _installed(make_shop, expires_in=timedelta(minutes=50))

    # when a job asks for credentials, nothing is refreshed
    def refresh(*_args):  # type: ignore[no-untyped-def]
        raise AssertionError("no refresh expected")

    creds = shops.fresh_credentials(shop_id, keys=TEST_ENCRYPTION_KEY, refresh=refresh)
    assert creds == {"access_token": "shpat_old", "refresh_token": "shprt_old", "shop": SHOP}


def test_two_workers_at_once_refresh_an_expiring_token_once(make_shop):
    # given a token with two minutes left, and two workers that need it at the same moment
    shop_id = _installed(make_shop, expires_in=timedelta(minutes=2))
    calls: list[str] = []

    def refresh(domain: str, refresh_token: str, now: datetime) -> client.TokenGrant:
        calls.append(refresh_token)
        time.sleep(0.5)  # Shopify takes a while: the other worker arrives meanwhile
        return _new_grant(now)

    results: list[dict[str, str]] = []
    workers = [threading.Thread(target=lambda: results.append(
        shops.fresh_credentials(shop_id, keys=TEST_ENCRYPTION_KEY, refresh=refresh))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)

    # then Shopify was asked once, both use the new token, and the new pair is stored
    assert calls == ["shprt_old"]
    assert [r["access_token"] for r in results] == ["shpat_new1", "shpat_new1"]
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        assert shops.credentials(shop, TEST_ENCRYPTION_KEY) == {"access_token": "shpat_new1",
                                                                 "refresh_token": "shprt_new1"}
        assert shop.access_token_expires_at > utcnow() + timedelta(minutes=55)
        assert shop.token_refresh_claimed_until is None


@responses.activate
def test_a_revoked_refresh_token_marks_the_shop_and_pauses_its_calls_until_it_is_installed_again(make_shop):
    # given an expiring token whose refresh token Shopify no longer accepts
    shop_id = _installed(make_shop, expires_in=timedelta(minutes=1))
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})

    def refresh(domain: str, refresh_token: str, now: datetime) -> client.TokenGrant:
        return client.refresh_access_token(domain, API_KEY, SECRET, refresh_token, now=now)

    # when a job asks for credentials
    with pytest.raises(shops.ShopNeedsReauthorizationError):
        shops.fresh_credentials(shop_id, keys=TEST_ENCRYPTION_KEY, refresh=refresh)

    # then the refresh was sent as Shopify expects, and the shop is marked
    sent = dict(urllib.parse.parse_qsl(responses.calls[0].request.body))
    assert sent == {"client_id": API_KEY, "client_secret": SECRET, "grant_type": "refresh_token",
                    "refresh_token": "shprt_old"}
    with session_scope() as s:
        assert s.get(Shop, shop_id).needs_reauth_at is not None
    # and later calls wait without asking Shopify again
    with pytest.raises(shops.ShopNeedsReauthorizationError):
        shops.fresh_credentials(shop_id, keys=TEST_ENCRYPTION_KEY, refresh=refresh)
    assert len(responses.calls) == 1

    # and installing again clears the mark
    with session_scope() as s:
        shops.install_shopify_shop(s, keys=TEST_ENCRYPTION_KEY, domain=SHOP, grant=_new_grant(utcnow(), 2))
    creds = shops.fresh_credentials(shop_id, keys=TEST_ENCRYPTION_KEY, refresh=refresh)
    assert creds["access_token"] == "shpat_new2"


@responses.activate
def test_refresh_answer_is_read_into_a_grant():
    # given Shopify's answer to a refresh
    responses.post(TOKEN_URL, json=_grant_answer(token="shpat_b", refresh="shprt_b"))
    now = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)

    # when it is read
    grant = client.refresh_access_token(SHOP, API_KEY, SECRET, "shprt_a", now=now)

    # then the new pair and its expiries are there
    assert grant == client.TokenGrant(
        access_token="shpat_b", scopes=("read_customers", "read_orders", "write_customers", "write_discounts",
                                        "write_orders", "write_store_credit_account_transactions"),
        expires_at=now + timedelta(hours=1), refresh_token="shprt_b", refresh_expires_at=now + timedelta(days=90))
    # and a refused refresh token is an expired grant, not a retryable failure
    responses.replace(responses.POST, TOKEN_URL, status=401, json={"errors": "unauthorized"})
    with pytest.raises(AuthorizationExpiredError):
        client.refresh_access_token(SHOP, API_KEY, SECRET, "shprt_a", now=now)


# ---- webhook subscriptions ------------------------------------------------------------------------


@responses.activate
def test_webhook_sync_fixes_only_the_difference(make_shop, runner, monkeypatch):
    # given an installed shop with one right subscription, one at an old address and one we no longer need
    _installed(make_shop, expires_in=timedelta(hours=1))
    ours = f"{PUBLIC}/webhooks/shopify"
    existing = [
        {"id": "gid://shopify/WebhookSubscription/1", "topic": "ORDERS_PAID", "uri": ours},
        {"id": "gid://shopify/WebhookSubscription/2", "topic": "ORDERS_CREATE", "uri": "https://old.example/webhooks/shopify"},
        {"id": "gid://shopify/WebhookSubscription/3", "topic": "PRODUCTS_CREATE", "uri": ours},
    ]
    responses.post(GRAPHQL_URL, json={"data": {"webhookSubscriptions": {
        "nodes": existing[:2], "pageInfo": {"hasNextPage": True, "endCursor": "c1"}}}})
    responses.post(GRAPHQL_URL, json={"data": {"webhookSubscriptions": {
        "nodes": existing[2:], "pageInfo": {"hasNextPage": False, "endCursor": "c2"}}}})
    for n in (2, 3):
        responses.post(GRAPHQL_URL, json={"data": {"webhookSubscriptionDelete": {
            "deletedWebhookSubscriptionId": f"gid://shopify/WebhookSubscription/{n}", "userErrors": []}}})
    wanted = sorted(set(consts.SUBSCRIPTION_TOPICS.values()) - {"ORDERS_PAID"})
    for topic in wanted:
        responses.post(GRAPHQL_URL, json={"data": {"webhookSubscriptionCreate": {
            "webhookSubscription": {"id": f"gid://shopify/WebhookSubscription/{topic}", "topic": topic,
                                    "uri": ours}, "userErrors": []}}})
    monkeypatch.setenv("PUBLIC_URL", PUBLIC)
    app_config.settings(reload=True)  # jobs read settings once per process

    # when the sync runs from the command line
    result = runner.invoke(args=["shops", "sync-webhooks", "--shop", SHOP])

    # then it deleted the two wrong ones, kept the right one and created the rest
    assert result.exit_code == 0, result.output
    assert f"{SHOP}: created {len(wanted)}, deleted 2, kept 1" in result.output
    bodies = [json.loads(call.request.body) for call in responses.calls]
    assert bodies[1]["variables"] == {"first": 100, "after": "c1"}
    assert [b["variables"]["id"] for b in bodies[2:4]] == ["gid://shopify/WebhookSubscription/2",
                                                          "gid://shopify/WebhookSubscription/3"]
    assert sorted(b["variables"]["topic"] for b in bodies[4:]) == wanted


def test_admin_shops_list_says_which_shop_needs_re_authorisation(client, session, make_shop):
    # given an installed shop whose refresh token was refused, and one that is fine
    shop_id = _installed(make_shop, expires_in=timedelta(hours=1))
    fine = make_shop("shopify", domain="anderer-laden.myshopify.com", credentials={"access_token": "shpat_x"})
    with session_scope() as s:
        s.get(Shop, shop_id).needs_reauth_at = utcnow()
    from tests.app.test_admin import _signed_in

    _signed_in(client, session)

    # when support opens the shops list
    page = client.get("/admin/").get_data(as_text=True)

    # then the shop is flagged with where the merchant installs again
    assert f'id="needs-reauth-{shop_id}"' in page
    assert f"/shopify/install?shop={SHOP}" in page
    assert f'id="needs-reauth-{fine}"' not in page


# ---- WooCommerce: connect through wc-auth ----------------------------------------------------------

WOO_STORE = "https://laden.example"
CALLBACK = (Path(__file__).resolve().parents[1] / "fixtures" / "woocommerce_connect" / "callback.json").read_bytes()


@pytest.fixture
def woo_app(app):  # type: ignore[no-untyped-def]
    app.config.update(PUBLIC_URL=PUBLIC, WTF_CSRF_ENABLED=False)
    return app


def _connect(web) -> str:  # type: ignore[no-untyped-def]
    """Submit the store address; return the nonce the store will echo as user_id."""
    answer = web.post("/woocommerce/connect", data={"store": "Laden.Example"})
    assert answer.status_code == 302
    target = urllib.parse.urlsplit(answer.headers["Location"])
    query = dict(urllib.parse.parse_qsl(target.query))
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{WOO_STORE}/wc-auth/v1/authorize"
    assert query["callback_url"] == f"{PUBLIC}/woocommerce/callback"
    assert query["return_url"] == f"{PUBLIC}/woocommerce/connected"
    return query["user_id"]


def _store_posts(web, nonce: str, **changes: str):  # type: ignore[no-untyped-def]
    """POST the store's real callback body with our nonce in it, as WordPress sends it."""
    body = json.loads(CALLBACK)
    body.update(user_id=nonce, **changes)
    return web.post("/woocommerce/callback", data=json.dumps(body),
                    headers={"Content-Type": "application/json;charset=UTF-8",
                             "User-Agent": "WordPress/6.8.3; https://laden.example"})


@responses.activate
def test_woocommerce_connect_stores_the_granted_key_and_creates_the_webhooks(woo_app, work, monkeypatch):
    # given a merchant who entered their store's address
    web = woo_app.test_client()
    nonce = _connect(web)

    # when the store posts the key its admin approved
    answer = _store_posts(web, nonce)

    # then the answer is exactly 200 (anything else makes WooCommerce delete the key)
    assert answer.status_code == 200
    captured_key = json.loads(CALLBACK)
    with session_scope() as s:
        shop = s.scalars(select(Shop).where(Shop.domain == WOO_STORE)).one()
        shop_id = shop.id
        assert shops.credentials(shop, TEST_ENCRYPTION_KEY) == {
            "consumer_key": captured_key["consumer_key"], "consumer_secret": captured_key["consumer_secret"]}
        assert captured_key["consumer_secret"].encode() not in shop.api_credentials_enc
        secret = shops.decrypt_or_none(TEST_ENCRYPTION_KEY, shop.webhook_secret_enc)
        assert secret and len(secret) >= 32
    # and the same nonce cannot bring a second key
    assert _store_posts(web, nonce).status_code == 403

    # and when the queued job runs, each topic gets a webhook at our address, signed with the shop's secret
    hooks = f"{WOO_STORE}/wp-json/wc/v3/webhooks"
    answer_body = (Path(__file__).resolve().parents[1] / "fixtures" / "woocommerce_api" / "webhooks_create.json").read_bytes()
    responses.post(hooks, body=answer_body, status=201, content_type="application/json")
    # (this store has no Stammkunde plugin: its settings group is unknown, which is no failure)
    responses.post(f"{WOO_STORE}/wp-json/wc/v3/settings/stammkunde/batch", status=404, json={
        "code": "rest_setting_setting_group_invalid", "message": "Invalid setting group.", "data": {"status": 404}})
    monkeypatch.setenv("PUBLIC_URL", PUBLIC)
    app_config.settings(reload=True)  # jobs read settings once per process
    assert work() == 2
    sent = [json.loads(call.request.body) for call in responses.calls if call.request.url == hooks]
    from jobs.shops import WOOCOMMERCE_TOPICS, create_woocommerce_webhooks

    assert sorted(b["topic"] for b in sent) == sorted(WOOCOMMERCE_TOPICS)
    assert {(b["delivery_url"], b["secret"]) for b in sent} == {(f"{PUBLIC}/webhooks/woocommerce", secret)}
    with session_scope() as s:
        rows = s.scalars(select(PlatformWebhook).where(PlatformWebhook.shop_id == shop_id)).all()
        assert sorted(r.topic for r in rows) == sorted(WOOCOMMERCE_TOPICS)
        assert {(r.platform_id, r.status) for r in rows} == {("1", "active")}
    # and running it again creates nothing
    assert create_woocommerce_webhooks(shop_id)["created"] == []
    assert len([c for c in responses.calls if c.request.url == hooks]) == len(WOOCOMMERCE_TOPICS)


@pytest.mark.parametrize(("_case", "change", "status"), [
    ("unknown nonce", {"user_id": "someone-elses"}, 403),
    ("read-only key", {"key_permissions": "read"}, 400),
])
def test_woocommerce_callback_refuses_a_key_we_did_not_ask_for(woo_app, _case, change, status):
    # given a connect started by us
    web = woo_app.test_client()
    nonce = _connect(web)
    change = dict(change)  # the parameter is shared by both databases' runs
    if "user_id" in change:
        nonce = change.pop("user_id")

    # when a callback arrives that does not match it
    answer = _store_posts(web, nonce, **change)

    # then it is refused (the store then deletes the key) and no shop is made
    assert answer.status_code == status
    with session_scope() as s:
        assert s.scalars(select(Shop)).all() == []


def test_woocommerce_connect_needs_an_https_public_url(app):
    # given an app reached over plain http
    app.config.update(PUBLIC_URL="http://127.0.0.1:5000", WTF_CSRF_ENABLED=False)

    # when a merchant tries to connect
    answer = app.test_client().post("/woocommerce/connect", data={"store": "laden.example"})

    # then they are told why, instead of being sent to a store that would refuse
    assert answer.status_code == 500 and "https" in answer.text


# ---- shop health ---------------------------------------------------------------------------------


@responses.activate
def test_shops_status_shows_each_shops_health_with_one_cached_api_call(make_shop, runner):
    # given an installed Shopify shop whose token works, and a WooCommerce store whose key is refused
    _installed(make_shop, expires_in=timedelta(hours=1))
    woo = make_shop("woocommerce", domain=WOO_STORE, credentials={"consumer_key": "ck_x", "consumer_secret": "cs_x"})
    with session_scope() as s:
        s.add(PlatformWebhook(shop_id=woo, topic="order.updated", platform_id="7", status="disabled"))
    responses.post(GRAPHQL_URL, json={"data": {"shop": {"id": "gid://shopify/Shop/1"}}})
    responses.get(f"{WOO_STORE}/wp-json/wc/v3/webhooks", status=401,
                  json={"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources."})

    # when support asks for the status, twice
    first = runner.invoke(args=["shops", "status", "--json"])
    second = runner.invoke(args=["shops", "status", "--json"])

    # then each shop's state is there, and the platforms were asked once (the outcome is cached)
    assert first.exit_code == 0, first.output
    report = {h["shop"]: h for h in json.loads(first.output)}
    assert report[SHOP]["ok"] is True and report[SHOP]["credentials"] == "valid"
    assert report[SHOP]["scopes_missing"] == [] and report[SHOP]["token_expires_at"] is not None
    assert report[WOO_STORE]["ok"] is False
    assert report[WOO_STORE]["problems"] == ["credentials refused by the shop", "webhooks not active"]
    assert report[WOO_STORE]["webhooks"] == {"order.updated": "disabled"}
    assert json.loads(second.output) == json.loads(first.output)
    assert len(responses.calls) == 2


@responses.activate
def test_a_disabled_woocommerce_webhook_is_switched_on_again(make_shop):
    # given a store whose webhook the store disabled after failed deliveries (real answers 094 and 096)
    woo = make_shop("woocommerce", domain=WOO_STORE, credentials={"consumer_key": "ck_x", "consumer_secret": "cs_x"})
    with session_scope() as s:
        s.add(PlatformWebhook(shop_id=woo, topic="order.updated", platform_id="1", status="active"))
    api = Path(__file__).resolve().parents[1] / "fixtures" / "woocommerce_api"
    responses.get(f"{WOO_STORE}/wp-json/wc/v3/webhooks/1", body=(api / "webhooks_get__disabled.json").read_bytes(),
                  content_type="application/json")
    responses.put(f"{WOO_STORE}/wp-json/wc/v3/webhooks/1", body=(api / "webhooks_update__active.json").read_bytes(),
                  content_type="application/json")
    from jobs.shops import check_woocommerce_webhooks

    # when the scheduled check runs
    result = check_woocommerce_webhooks()

    # then it saw the disabled webhook and switched it on, and the row says so
    assert result == {"checked": 1, "reenabled": 1}
    assert json.loads(responses.calls[1].request.body) == {"status": "active"}
    with session_scope() as s:
        row = s.scalars(select(PlatformWebhook)).one()
        assert (row.status, row.checked_at is not None) == ("active", True)


def _waiting_reward_code(shop_id: int, key: str, monkeypatch) -> int:  # type: ignore[no-untyped-def]
    """A reward code waiting to be created in the shop, with the app's key and secret set for the
    worker's token refresh; returns the code row's id."""
    from app.loyalty.codes import record_code

    with session_scope() as s:
        row, _ = record_code(s, s.get(Shop, shop_id), purpose="reward", source_key=key, customer_id=None,
                             title="5 € Rabatt", kind="fixed_amount", value=Decimal("5"), valid_days=30)
        code_id = row.id
    monkeypatch.setenv("SHOPIFY_API_KEY", API_KEY)
    monkeypatch.setenv("SHOPIFY_API_SECRET", SECRET)
    app_config.settings(reload=True)  # jobs read settings once per process
    return code_id


@responses.activate
def test_codes_of_a_shop_needing_re_authorisation_wait_and_go_out_after_the_install(make_shop, monkeypatch):
    # given an installed shop with a token about to expire whose refresh token Shopify refuses,
    # and a reward code waiting to be created
    shop_id = _installed(make_shop, expires_in=timedelta(minutes=1))
    from app.models import IssuedCode
    from jobs.codes import issue_code, requeue_pending

    code_id = _waiting_reward_code(shop_id, "r-1", monkeypatch)
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})

    # when the code job runs
    outcome = issue_code(code_id)

    # then the code waits (not failed, nothing lost), the shop is marked, and the sweep leaves it
    assert outcome == "paused"
    with session_scope() as s:
        assert s.get(IssuedCode, code_id).status.value == "pending"
        assert s.get(Shop, shop_id).needs_reauth_at is not None
    assert requeue_pending() == 0

    # and once the merchant installed again, the code is created with the new token
    with session_scope() as s:
        shops.install_shopify_shop(s, keys=TEST_ENCRYPTION_KEY, domain=SHOP, grant=_new_grant(utcnow(), 3))
    responses.post(GRAPHQL_URL, json={"data": {"discountCodeBasicCreate": {
        "codeDiscountNode": {"id": "gid://shopify/DiscountCodeNode/1"}, "userErrors": []}}})
    assert issue_code(code_id) == "created"
    assert responses.calls[-1].request.headers[consts.ACCESS_TOKEN_HEADER] == "shpat_new3"


@responses.activate
def test_a_token_shopify_refuses_is_refreshed_once_and_the_call_repeated(make_shop, monkeypatch):
    # given an installed shop whose token looks fresh but Shopify answers 401 (revoked early)
    shop_id = _installed(make_shop, expires_in=timedelta(minutes=50))
    from jobs.codes import issue_code

    code_id = _waiting_reward_code(shop_id, "r-2", monkeypatch)
    responses.post(GRAPHQL_URL, status=401, json={"errors": "[API] Invalid API key or access token"})
    responses.post(TOKEN_URL, json=_grant_answer(token="shpat_renewed", refresh="shprt_renewed"))
    responses.post(GRAPHQL_URL, json={"data": {"discountCodeBasicCreate": {
        "codeDiscountNode": {"id": "gid://shopify/DiscountCodeNode/2"}, "userErrors": []}}})

    # when the code job runs
    outcome = issue_code(code_id)

    # then the token was refreshed once and the code created with the new one
    assert outcome == "created"
    assert [c.request.url for c in responses.calls].count(TOKEN_URL) == 1
    assert responses.calls[-1].request.headers[consts.ACCESS_TOKEN_HEADER] == "shpat_renewed"
    with session_scope() as s:
        assert shops.credentials(s.get(Shop, shop_id), TEST_ENCRYPTION_KEY)["access_token"] == "shpat_renewed"


def test_admin_shops_list_shows_each_shops_health(client, session, make_shop):
    # given a WooCommerce store whose webhook the store disabled, reconciled once with 2 events recovered
    woo = make_shop("woocommerce", domain=WOO_STORE, credentials={"consumer_key": "ck_x", "consumer_secret": "cs_x"})
    with session_scope() as s:
        s.add(PlatformWebhook(shop_id=woo, topic="order.updated", platform_id="7", status="disabled"))
        shop = s.get(Shop, woo)
        shop.last_reconciled_at, shop.reconciled_recovered = utcnow(), 2
    from tests.app.test_admin import _signed_in

    _signed_in(client, session)

    # when support opens the shops list
    page = client.get("/admin/").get_data(as_text=True)

    # then the shop's health is there, as `flask shops status` has it
    start = page.index(f'id="health-{woo}"')
    health = page[start:page.index("</div>", start)]
    assert "webhooks not active" in health
    assert "webhooks 1 (1 not active)" in health
    assert "(2 recovered)" in health and "last delivery never" in health


# ---- the order history, chosen at install ---------------------------------------------------------


def _form_value(html: str, name: str) -> str:
    import re

    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no {name} in the page"
    return match.group(1)


@responses.activate
def test_the_install_page_asks_what_the_history_is_for_and_starts_it(shopify_app, redis_url):
    # given a merchant who just installed (Shopify granted the default scopes)
    web = shopify_app.test_client()
    state = _start(web)
    responses.post(TOKEN_URL, json=_grant_answer())
    page = _callback(web, state).get_data(as_text=True)

    # then the page asks what the past orders are for, at most 60 days without read_all_orders
    assert "Your orders from before" in page and 'max="60"' in page

    # when they choose points for the last 14 days
    answer = web.post("/install/backfill", data={"csrf_token": _form_value(page, "csrf_token"),
                                                 "token": _form_value(page, "token"), "choice": "points", "days": "14"})

    # then the backfill is recorded with that choice and its job is queued
    assert answer.status_code == 200, answer.text
    assert "Orders of the last 14 days earn their points" in answer.text
    with session_scope() as s:
        shop_id = s.scalars(select(Shop.id).where(Shop.domain == SHOP)).one()
        row = s.scalars(select(Backfill)).one()
        assert (row.shop_id, row.mode, row.status) == (shop_id, "points", "running")
        assert timedelta(days=13, hours=23) < row.until - row.since <= timedelta(days=14)
    from app.queues import get_queue

    jobs = get_queue("codes").get_jobs()
    assert [job.func_name for job in jobs if job.id == f"backfill-{shop_id}"] == ["jobs.backfill.run"]


@responses.activate
def test_the_history_choice_needs_the_pages_token(shopify_app):
    # given an installed shop's page, and a forged or missing token
    web = shopify_app.test_client()
    state = _start(web)
    responses.post(TOKEN_URL, json=_grant_answer())
    page = _callback(web, state).get_data(as_text=True)

    # when the form is posted with another token, or beyond what Shopify lets us read
    forged = web.post("/install/backfill", data={"csrf_token": _form_value(page, "csrf_token"),
                                                 "token": "eyJzaG9wIjoxfQ.forged", "choice": "tiers"})
    too_far = web.post("/install/backfill", data={"csrf_token": _form_value(page, "csrf_token"),
                                                  "token": _form_value(page, "token"), "choice": "points", "days": "90"})

    # then nothing starts, and the merchant is told why
    assert forged.status_code == 403 and "too old or not ours" in forged.text
    assert too_far.status_code == 400 and "read_all_orders" in too_far.text
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Backfill)) == 0
