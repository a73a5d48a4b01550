"""The signed API our WordPress plugin calls (`/api/woocommerce/v1`, app.web.plugin_api).

Requests are signed here exactly as the plugin signs them (the shared test vector checks that
the PHP and Python signing agree: tests/connectors/woocommerce/test_plugin_signing.py). On SQLite
and PostgreSQL, with the real worker creating codes through the in-memory store API.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import responses
from sqlalchemy import func, select

from app import config as app_config
from app import woo_plugin
from app.db import session_scope
from app.models import IssuedCode, PluginNonce, Redemption, Shop, utcnow
from connectors.woocommerce.webhooks import sign_plugin_request
from tests.conftest import TEST_ENCRYPTION_KEY, WOO_DOMAIN
from tests.connectors.fake import install_fake_connector
from tests.factories import apply, order, program, report

KUNDIN = "kundin@example.test"
PREFIX = "/api/woocommerce/v1"
REWARDS = [
    {"name": "Gratisversand", "points": 300, "kind": "free_shipping"},
    {"name": "5 € Rabatt", "points": 500, "kind": "fixed_amount", "value": "5"},
]
CREDENTIALS = {"consumer_key": "ck_test", "consumer_secret": "cs_test"}


def _store(make_shop, *, referral: bool = False) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """A WooCommerce store with a plugin secret and a member "42" holding 600 points."""
    shop_id = make_shop("woocommerce", name="Rösterei", credentials=CREDENTIALS)
    program(shop_id, {"second_purchase": {"enabled": False}, "earning": {"return_window_days": 0},
                      "rewards": REWARDS, **({} if referral else {"referral": {"enabled": False}})})
    apply(shop_id, order("1", "600.00", customer_id="42", email=KUNDIN))
    with session_scope() as s:
        secret = woo_plugin.new_plugin_secret(s.get(Shop, shop_id), TEST_ENCRYPTION_KEY)
    return shop_id, secret


def _headers(shop_id: int, secret: str, method: str, path: str, body: bytes = b"", *, timestamp: int | None = None,
             nonce: str | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or uuid.uuid4().hex
    return {
        "X-Stammkunde-Shop": str(shop_id),
        "X-Stammkunde-Timestamp": str(timestamp),
        "X-Stammkunde-Nonce": nonce,
        "X-Stammkunde-Signature": sign_plugin_request(secret, method, path, timestamp, nonce, body),
    }


def _call(client, shop_id: int, secret: str, method: str, path: str, payload: dict | None = None, **kw):  # type: ignore[no-untyped-def]
    """Send one request signed as the plugin signs it."""
    body = json.dumps(payload).encode() if payload is not None else b""
    headers = _headers(shop_id, secret, method, PREFIX + path, body, **kw)
    if payload is not None:
        headers["Content-Type"] = "application/json"
    return client.open(PREFIX + path, method=method, data=body, headers=headers)


def test_signed_request_gets_the_members_balance_rewards_and_history(client, make_shop):
    # given a store whose member "42" has 600 points
    shop_id, secret = _store(make_shop)

    # when the plugin asks for the member, in German
    answer = _call(client, shop_id, secret, "GET", "/customers/42?lang=de")

    # then it sees what the member page shows: balance, affordable rewards, what a point is worth, why
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    view = answer.get_json()
    assert (view["balance"]["available"], view["balance"]["pending"]) == (600, 0)
    assert [r["name"] for r in view["affordable"]] == ["Gratisversand", "5 € Rabatt"]
    assert view["point_value"]["text"] == "1 Punkt = 1 Cent"
    assert [line["points"] for line in view["history"]] == [600]
    assert "#1" in view["history"][0]["why"]


@pytest.mark.parametrize(("_case", "change", "status", "error"), [
    ("bad signature", {"X-Stammkunde-Signature": "AAAA"}, 401, "bad_signature"),
    ("signed with another secret", {"secret": "not-the-shops-secret"}, 401, "bad_signature"),
    ("signed for another path", {"path": PREFIX + "/customers/43?lang=de"}, 401, "bad_signature"),
    ("stale timestamp", {"timestamp": -400}, 401, "stale_timestamp"),
    # (well past the 5-minute window: a loaded host may take a second or more to answer)
    ("timestamp from the future", {"timestamp": 400}, 401, "stale_timestamp"),
    ("signature header missing", {"X-Stammkunde-Signature": None}, 400, "signature_missing"),
    ("shop header missing", {"X-Stammkunde-Shop": None}, 400, "signature_missing"),
    ("nonce too short", {"nonce": "abc"}, 400, "signature_missing"),
    ("unknown shop", {"shop": 999999}, 401, "unknown_shop"),
])
def test_unsigned_or_misdirected_requests_are_refused_before_anything_is_read(client, make_shop, _case, change,
                                                                                status, error):
    # given a store's member
    shop_id, secret = _store(make_shop)
    change = dict(change)
    path = PREFIX + "/customers/42?lang=de"
    headers = _headers(change.pop("shop", shop_id), change.pop("secret", secret), "GET", change.pop("path", path),
                       timestamp=int(time.time()) + change.pop("timestamp", 0), nonce=change.pop("nonce", None))
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value

    # when such a request comes
    answer = client.get(path, headers=headers)

    # then it is refused with the reason, and no member data is in the answer
    assert (answer.status_code, answer.get_json()) == (status, {"error": error})


def test_a_shop_without_a_plugin_secret_refuses_every_signature(client, make_shop):
    # given a store that never got a plugin secret
    shop_id = make_shop("woocommerce")

    # when a request signed with an empty secret comes
    answer = _call(client, shop_id, "", "GET", "/ping")

    # then it is refused
    assert (answer.status_code, answer.get_json()) == (401, {"error": "bad_signature"})


def test_a_replayed_request_is_refused(client, make_shop):
    # given a redeem request the plugin signed once
    shop_id, secret = _store(make_shop)
    body = json.dumps({"reward": "Gratisversand", "key": str(uuid.uuid4())}).encode()
    path = PREFIX + "/customers/42/redemptions?lang=de"
    headers = {**_headers(shop_id, secret, "POST", path, body), "Content-Type": "application/json"}

    # when the same bytes arrive twice (someone captured them)
    first = client.post(path, data=body, headers=headers)
    again = client.post(path, data=body, headers=headers)

    # then only the first is served, and 300 points were taken once
    assert first.status_code == 201
    assert (again.status_code, again.get_json()) == (401, {"error": "replayed"})
    assert report(shop_id, KUNDIN)["available"] == 300


def test_unknown_customer_is_not_found_and_the_id_is_the_only_identity(client, make_shop):
    # given a store whose member is "42", and another store whose customer "43" has points
    shop_id, secret = _store(make_shop)
    other = make_shop("woocommerce", domain="https://anderer-laden.example")
    apply(other, order("9", "100.00", customer_id="43", email="jemand@example.test"))

    # when the plugin asks for "43" in this store, or for something that is no customer id
    unknown = _call(client, shop_id, secret, "GET", "/customers/43?lang=de")
    garbage = _call(client, shop_id, secret, "GET", "/customers/kundin@example.test")
    redeem = _call(client, shop_id, secret, "POST", "/customers/43/redemptions",
                   {"reward": "Gratisversand", "key": str(uuid.uuid4())})

    # then nothing is found: another store's customer is never served
    assert (unknown.status_code, unknown.get_json()) == (404, {"error": "unknown_customer"})
    assert (garbage.status_code, garbage.get_json()) == (404, {"error": "unknown_customer"})
    assert (redeem.status_code, redeem.get_json()) == (404, {"error": "unknown_customer"})


def test_redeem_twice_with_one_key_is_one_redemption_and_the_code_comes_from_the_job(client, make_shop, work,
                                                                                   monkeypatch):
    # given a member with 600 points and the store's API
    store = install_fake_connector(monkeypatch, "woocommerce")
    shop_id, secret = _store(make_shop)
    key = str(uuid.uuid4())

    # when the plugin sends the same click twice (two signed requests, one key)
    first = _call(client, shop_id, secret, "POST", "/customers/42/redemptions?lang=de",
                  {"reward": "5 € Rabatt", "key": key})
    again = _call(client, shop_id, secret, "POST", "/customers/42/redemptions?lang=de",
                  {"reward": "5 € Rabatt", "key": key})

    # then one redemption took 500 points; its code is being created
    assert first.status_code == 201 and again.status_code == 200
    made = first.get_json()
    assert (made["reward"], made["status"], made["code"], made["available"]) == ("5 € Rabatt", "pending", None, 100)
    assert again.get_json()["redemption_id"] == made["redemption_id"]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Redemption)) == 1

    # when the worker runs, and the plugin asks for the redemption again
    work()
    state = _call(client, shop_id, secret, "GET", f"/customers/42/redemptions/{made['redemption_id']}?lang=de")

    # then the store holds the code and the plugin gets it to apply
    assert state.status_code == 200
    assert state.get_json()["code"] in store.codes
    assert report(shop_id, KUNDIN)["available"] == 100


def test_redeem_refused_says_why_in_the_customers_language(client, make_shop):
    # given a member with 600 points
    shop_id, secret = _store(make_shop)

    # when they redeem a reward that does not exist, in English
    answer = _call(client, shop_id, secret, "POST", "/customers/42/redemptions?lang=en",
                   {"reward": "Mond", "key": str(uuid.uuid4())})

    # then it is refused with a sentence for them, and nothing is taken
    assert answer.status_code == 422
    assert answer.get_json() == {"error": "unknown_reward", "message": "This reward is not available any more."}
    assert report(shop_id, KUNDIN)["available"] == 600


def test_a_redemption_of_another_member_is_not_found(client, make_shop):
    # given a member's redemption
    shop_id, secret = _store(make_shop)
    apply(shop_id, order("2", "10.00", customer_id="7", email="anderer@example.test"))
    made = _call(client, shop_id, secret, "POST", "/customers/42/redemptions",
                 {"reward": "Gratisversand", "key": str(uuid.uuid4())}).get_json()

    # when the plugin asks for it in another member's name
    answer = _call(client, shop_id, secret, "GET", f"/customers/7/redemptions/{made['redemption_id']}")

    # then it is not found
    assert (answer.status_code, answer.get_json()) == (404, {"error": "unknown_redemption"})


@pytest.mark.parametrize(("_case", "payload", "status", "points"), [
    ("member in Silber (x1.25), prices without tax",
     {"customer_id": "42", "currency": "EUR", "subtotal": "52.00", "tax": "0.00"}, 200, 65),
    ("visitor, prices with 19 % tax", {"customer_id": None, "currency": "EUR", "subtotal": "59.50", "tax": "9.50"},
     200, 50),
    ("another currency", {"customer_id": None, "currency": "USD", "subtotal": "10.00", "tax": "0.00"}, 422, None),
    ("amount as a number", {"customer_id": None, "currency": "EUR", "subtotal": 10, "tax": "0.00"}, 400, None),
])
def test_cart_points_follow_the_order_earning_rule(client, make_shop, _case, payload, status, points):
    # given a store earning 1 point per euro, whose member "42" spent 600 € (Silber: x1.25)
    shop_id, secret = _store(make_shop)

    # when the plugin asks what a cart earns
    answer = _call(client, shop_id, secret, "POST", "/cart-points", payload)

    # then it gets the points an order of it would earn (tax removed), or why not
    assert answer.status_code == status
    if points is not None:
        assert answer.get_json()["points"] == points


@pytest.mark.parametrize(("_case", "lang", "stated", "value", "text"), [
    ("derived from 5 € for 500 points, in German", "de", None, "0.65", "65 Punkte ≈ 0,65\xa0€"),
    ("derived, in English", "en", None, "0.65", "65 points ≈ €0.65"),
    ("stated by the program: 2 cents, rounded to the cent", "de", "0.02", "1.30", "65 Punkte ≈ 1,30\xa0€"),
])
def test_cart_points_say_what_they_are_worth(client, make_shop, _case, lang, stated, value, text):
    # given a store earning 1 point per euro (member "42" in Silber: x1.25), its point value
    # derived from "5 € Rabatt" for 500 points unless the program states one
    shop_id, secret = _store(make_shop)
    if stated is not None:
        program(shop_id, {"second_purchase": {"enabled": False}, "earning": {"return_window_days": 0},
                          "rewards": REWARDS, "referral": {"enabled": False}, "redemption": {"point_value": stated}})

    # when the plugin asks what a 52 € cart earns, in the visitor's language
    answer = _call(client, shop_id, secret, "POST", f"/cart-points?lang={lang}",
                   {"customer_id": "42", "currency": "EUR", "subtotal": "52.00", "tax": "0.00"})

    # then the points come with their worth, rounded half up to the cent
    assert answer.get_json() == {"points": 65, "estimate": False, "value": {"amount": value, "currency": "EUR"},
                                 "value_text": text}


# A WooCommerce cart's lines as the plugin sends them (WC()->cart: product and variation ids, line
# total after discounts with its tax when prices include tax): a 19 % shirt, a gift card, a book.
WOO_LINES = [
    {"product_id": "31", "variant_id": "35", "amount": "59.50", "tax": "9.50"},
    {"product_id": "32", "variant_id": "0", "amount": "25.00", "tax": "0.00"},
    {"product_id": "33", "amount": "21.40", "tax": "1.40"},
]


@pytest.mark.parametrize(("_case", "rules", "payload", "status", "expected"), [
    ("no product rules: the lines earn as the subtotal did (net 95 x 1.25)", [],
     {"customer_id": "42", "currency": "EUR", "lines": WOO_LINES}, 200, (118, False)),
    ("the gift card excluded: (50 + 20) x 1.25", [{"name": "Gutschein", "effect": "exclude", "product_ids": ["32"]}],
     {"customer_id": "42", "currency": "EUR", "lines": WOO_LINES}, 200, (87, False)),
    ("the shirt's variation doubled, with the subtotal and tax sent too: (100 + 25 + 20) x 1.25",
     [{"name": "Rot", "variant_ids": ["35"], "multiplier": "2"}],
     {"customer_id": "42", "currency": "EUR", "subtotal": "105.90", "tax": "10.90", "lines": WOO_LINES}, 200,
     (181, False)),
    ("a category rule and no category known yet: counted without it, flagged",
     [{"name": "Bücher", "effect": "exclude", "categories": ["buecher"]}],
     {"customer_id": None, "currency": "EUR", "lines": WOO_LINES}, 200, (95, True)),
    ("an older plugin: subtotal and tax only, today's answer",
     [{"name": "Gutschein", "effect": "exclude", "product_ids": ["32"]}],
     {"customer_id": "42", "currency": "EUR", "subtotal": "105.90", "tax": "10.90"}, 200, (118, False)),
    ("a line's amount as a number", [], {"currency": "EUR", "lines": [{"product_id": "31", "amount": 1.5}]}, 400,
     None),
    ("lines not a list", [], {"currency": "EUR", "lines": {"product_id": "31"}}, 400, None),
    ("a bad subtotal beside good lines", [], {"currency": "EUR", "subtotal": 10, "lines": WOO_LINES}, 400, None),
])
def test_cart_points_weigh_the_lines_by_the_product_rules(client, make_shop, _case, rules, payload, status,
                                                         expected):
    # given a store whose member "42" is in Silber (x1.25), with these product rules
    shop_id, secret = _store(make_shop)
    program(shop_id, {"second_purchase": {"enabled": False}, "referral": {"enabled": False},
                      "earning": {"return_window_days": 0, "product_rules": rules}, "rewards": REWARDS})

    # when the plugin asks what the cart earns, with its lines
    answer = _call(client, shop_id, secret, "POST", "/cart-points?lang=de", payload)

    # then each line earns by its rule, as an order of it would, or the request is refused by name
    assert answer.status_code == status, answer.get_data(as_text=True)
    if expected is not None:
        assert (answer.get_json()["points"], answer.get_json()["estimate"]) == expected
    else:
        assert answer.get_json()["error"] == "bad_request"


def test_member_view_says_what_the_available_points_are_worth(client, make_shop):
    # given a member with 600 points, a point worth 1 cent (5 € for 500 points)
    shop_id, secret = _store(make_shop)

    # when the plugin asks for the member in German and in English
    de = _call(client, shop_id, secret, "GET", "/customers/42?lang=de").get_json()
    en = _call(client, shop_id, secret, "GET", "/customers/42?lang=en").get_json()

    # then the view carries the worth of the available points
    assert de["available_value"] == {"amount": "6.00", "currency": "EUR"}
    assert de["available_value_text"] == "600 Punkte ≈ 6,00\xa0€"
    assert en["available_value_text"] == "600 points ≈ €6.00"
    assert de["point_value"]["source"] == "reward"


def test_referral_code_is_served_only_once_it_exists_in_the_store(client, make_shop):
    # given a member whose referral code (10 % for friends) the store holds
    shop_id, secret = _store(make_shop, referral=True)
    with session_scope() as s:
        row = s.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop_id, IssuedCode.purpose == "referral")).one()
        row.status = "created"
        code = row.code

    # when the plugin looks the code up (from a friend's ?sk_ref= link), and a made-up one
    found = _call(client, shop_id, secret, "GET", f"/referral-codes/{code.lower()}")
    unknown = _call(client, shop_id, secret, "GET", "/referral-codes/GIBTS-NICHT")
    member = _call(client, shop_id, secret, "GET", "/customers/42?lang=de").get_json()

    # then the real code is served with what it gives, the made-up one is not; the member's view
    # carries the code so the plugin can build the store's own link
    assert found.status_code == 200
    assert found.get_json() == {"code": code, "kind": "percentage", "value": "10", "currency": "EUR",
                                "minimum_amount": None}
    assert (unknown.status_code, unknown.get_json()) == (404, {"error": "unknown_code"})
    assert (member["referral"]["status"], member["referral"]["code"]) == ("created", code)


def test_program_for_a_visitor(client, make_shop):
    # given a store
    shop_id, secret = _store(make_shop)

    # when the plugin asks what the program offers, in English
    answer = _call(client, shop_id, secret, "GET", "/program?lang=en")

    # then it gets the rewards and what a point is worth
    assert answer.status_code == 200
    program_view = answer.get_json()
    assert [r["name"] for r in program_view["rewards"]] == ["Gratisversand", "5 € Rabatt"]
    assert program_view["point_value"]["text"] == "1 point = 1 cent"


def test_plugin_secret_command_shows_and_rotates_the_secret(client, runner, make_shop):
    # given a store whose plugin signs with its secret
    shop_id, secret = _store(make_shop)
    assert _call(client, shop_id, secret, "GET", "/ping").get_json() == {"shop": shop_id}

    # when support shows it, then rotates it
    shown = runner.invoke(args=["shops", "plugin-secret", "--shop", WOO_DOMAIN])
    rotated = runner.invoke(args=["shops", "plugin-secret", "--shop", WOO_DOMAIN, "--rotate", "--no-push"])

    # then the first shows the stored secret with the shop id, the second a new one
    assert shown.exit_code == 0 and f"Shared secret: {secret}\n" in shown.output
    assert f"Shop id:       {shop_id}\n" in shown.output
    assert rotated.exit_code == 0 and "The previous secret no longer works." in rotated.output
    new = rotated.output.split("Shared secret: ")[1].split()[0]
    assert new != secret
    # and the old secret stops working at once, the new one works
    assert _call(client, shop_id, secret, "GET", "/ping").status_code == 401
    assert _call(client, shop_id, new, "GET", "/ping").status_code == 200


def test_plugin_secret_command_for_an_unknown_store(runner, app):
    # when support names a store that is not registered
    result = runner.invoke(args=["shops", "plugin-secret", "--shop", "https://gibts-nicht.example"])

    # then it says so and fails
    assert result.exit_code == 1 and "no shop registered" in result.output


@responses.activate
def test_settings_are_written_into_the_stores_plugin(make_shop, monkeypatch):
    # given a store connected with an API key whose plugin is active
    shop_id = make_shop("woocommerce", credentials=CREDENTIALS)
    monkeypatch.setenv("PUBLIC_URL", "https://loyalty.example")
    app_config.settings(reload=True)
    batch = f"{WOO_DOMAIN}/wp-json/wc/v3/settings/stammkunde/batch"

    def keep(request):  # type: ignore[no-untyped-def]
        # the store answers each setting as it kept it (WC_REST_Setting_Options_Controller::batch_items)
        sent = json.loads(request.body)["update"]
        return 200, {}, json.dumps({"update": [{"id": i["id"], "value": i["value"], "type": "text"} for i in sent]})

    responses.add_callback(responses.POST, batch, callback=keep, content_type="application/json")
    from jobs.shops import push_plugin_settings

    # when the job runs
    pushed = push_plugin_settings(shop_id)

    # then the plugin got our address, the shop id and the secret the app checks signatures with
    assert pushed is True
    sent = {i["id"]: i["value"] for i in json.loads(responses.calls[0].request.body)["update"]}
    with session_scope() as s:
        secret = woo_plugin.plugin_secret(s.get(Shop, shop_id), TEST_ENCRYPTION_KEY)
    assert sent == {"stammkunde_app_url": "https://loyalty.example", "stammkunde_shop_id": str(shop_id),
                    "stammkunde_secret": secret}
    assert secret and len(secret) >= 40


@pytest.mark.sqlite_only
def test_old_nonces_are_purged(make_shop):
    # given one nonce from 20 minutes ago and one from now
    shop_id = make_shop("woocommerce")
    now = utcnow()
    with session_scope() as s:
        assert woo_plugin.accept_nonce(s, shop_id, "a" * 32, now - timedelta(minutes=20))
        assert woo_plugin.accept_nonce(s, shop_id, "b" * 32, now)
        assert not woo_plugin.accept_nonce(s, shop_id, "b" * 32, now)

    # when the sweep runs
    from jobs.shops import purge_plugin_nonces

    removed = purge_plugin_nonces()

    # then only the old one is gone
    assert removed == 1
    with session_scope() as s:
        assert s.scalars(select(PluginNonce.nonce)).all() == ["b" * 32]


def _shape(value):  # type: ignore[no-untyped-def]
    """The keys of a JSON value, nested (a list by its first element)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def _same_shape(fixture, answer, where="") -> list[str]:  # type: ignore[no-untyped-def]
    if isinstance(fixture, dict) and isinstance(answer, dict):
        problems = [f"{where}.{k}: the plugin's fixture has it, the API not" for k in fixture if k not in answer]
        problems += [f"{where}.{k}: the API has it, the plugin's fixture not" for k in answer if k not in fixture]
        for k in set(fixture) & set(answer):
            problems += _same_shape(fixture[k], answer[k], f"{where}.{k}")
        return problems
    if isinstance(fixture, list) and isinstance(answer, list) and fixture and answer:
        return _same_shape(fixture[0], answer[0], where + "[0]")
    return []


@pytest.mark.sqlite_only
def test_the_plugins_test_fixtures_have_the_shape_the_api_answers(client, make_shop, work, monkeypatch):
    # given a member with codes, a pending redemption and a referral code the store holds
    install_fake_connector(monkeypatch, "woocommerce")
    shop_id, secret = _store(make_shop, referral=True)
    _call(client, shop_id, secret, "POST", "/customers/42/redemptions", {"reward": "Gratisversand",
                                                                         "key": str(uuid.uuid4())})
    work()
    pending = _call(client, shop_id, secret, "POST", "/customers/42/redemptions",
                    {"reward": "Gratisversand", "key": str(uuid.uuid4())}).get_json()

    # when the plugin's PHPUnit fixtures are compared with what the API answers now
    fixtures = Path(__file__).resolve().parents[2] / "connectors" / "woocommerce" / "wordpress-plugin" / "tests" / "fixtures"
    answers = {
        "member-view.json": _call(client, shop_id, secret, "GET", "/customers/42?lang=de").get_json(),
        "program-view.json": _call(client, shop_id, secret, "GET", "/program?lang=de").get_json(),
        "redemption-pending.json": pending,
    }

    # then every key the plugin reads is there, and nothing the API sends is missing from them
    for name, answer in answers.items():
        fixture = json.loads((fixtures / name).read_text(encoding="utf-8"))
        assert _same_shape(_shape(fixture), _shape(answer), name) == []
