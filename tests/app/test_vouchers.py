"""Partner vouchers (app.loyalty.vouchers): pools of a partner's codes offered as a reward.

On SQLite and PostgreSQL: uploads, the claim of exactly one code per redemption (also when two
customers race for the last one), an empty pool as an unavailable reward, and the code on the
customer's page, in both platforms' storefront paths and in the e-mail.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.loyalty import storefront, vouchers
from app.loyalty.redemptions import VoucherSoldOutError, redeem
from app.models import IssuedCode, Redemption, Shop, VoucherCode, VoucherPool, utcnow
from tests.factories import apply, order, program, report

KUNDIN = "kundin@example.test"
NO_EXTRAS = {"second_purchase": {"enabled": False}, "referral": {"enabled": False}}
KAFFEE = {"name": "Kaffee-Gutschein", "points": 200, "kind": "partner_voucher", "pool": "Rösterei", "low_stock": 2}
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)


def _pool(shop_id: int, name: str = "Rösterei", codes: str = "") -> int:
    """Create the shop's pool `name` and upload `codes` (CSV text) into it; returns its id."""
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        pool = vouchers.create_pool(s, shop, name, partner="Rösterei Sonnenschein", created_by="test")
        assert pool is not None
        if codes:
            read = vouchers.read_codes(codes, timezone=shop.timezone, now=utcnow())
            assert read.errors == []
            vouchers.add_codes(s, pool, read.rows)
        return pool.id


def _shop(make_shop, codes: str, *, platform: str = "shopify", **kw) -> int:  # type: ignore[no-untyped-def]
    shop_id = make_shop(platform, name="Kaffee & Kuchen", **kw)
    _pool(shop_id, codes=codes)
    program(shop_id, {**NO_EXTRAS, "earning": {"return_window_days": 0}, "rewards": [
        {"name": "Gratisversand", "points": 300, "kind": "free_shipping"}, KAFFEE]})
    return shop_id


def _left(shop_id: int) -> int:
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        from app.program import current_program

        [view] = vouchers.pool_views(s, shop, current_program(s, shop)[1])
        return view.left


# --- reading an upload ------------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_read_codes_with_header_expiry_and_a_repeated_code():
    # given a partner's export with a header, an expiry column, another column and a code twice
    text = "Gutscheincode;Wert;Gültig bis\nKAFFEE-001;5;31.12.2027\nKAFFEE-002;5;\nKAFFEE-001;5;31.12.2027\n\n"

    # when it is read
    read = vouchers.read_codes(text, timezone="Europe/Berlin", now=NOW)

    # then two codes, the first valid to the end of 31 Dec in Berlin, and line 4 reported as a repeat
    assert [(r.line, r.code) for r in read.rows] == [(2, "KAFFEE-001"), (3, "KAFFEE-002")]
    assert read.rows[0].expires_at == datetime(2027, 12, 31, 22, 59, 59, tzinfo=timezone.utc)
    assert read.rows[1].expires_at is None
    assert [(p.line, p.message) for p in read.repeated] == [(4, "KAFFEE-001 repeats line 2")]
    assert read.errors == []


@pytest.mark.sqlite_only
def test_read_codes_without_header_lists_every_bad_line():
    # given a file without header: a good row, one with a space, a bad date, an expired code, 3 columns
    text = "ABC-1\nABC 2\nABC-3,morgen\nABC-4,2020-01-01\nABC-5,2027-01-01,x\n" + "X" * 65 + "\n"

    # when it is read
    read = vouchers.read_codes(text, timezone="Europe/Berlin", now=NOW)

    # then each bad line is named with why
    assert [(p.line, p.message) for p in read.errors] == [
        (2, "'ABC 2' contains spaces or invisible characters"),
        (3, "'morgen' is not a date (YYYY-MM-DD or DD.MM.YYYY)"),
        (4, "ABC-4 expired already (2020-01-01)"),
        (5, "3 columns; without a header row a line holds the code and optionally its expiry"),
        (6, "the code is longer than 64 characters"),
    ]
    assert [r.code for r in read.rows] == ["ABC-1"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("_case", "text", "message"), [
    ("empty", "\ufeff\n\n", "the file is empty"),
    ("header without a code column", "expires\n2027-01-01\n", "the first row names columns but none of them"),
])
def test_read_codes_refuses_a_file_it_cannot_read(_case, text, message):
    with pytest.raises(vouchers.VoucherUploadError) as refused:
        vouchers.read_codes(text, timezone="Europe/Berlin", now=NOW)
    assert message in str(refused.value)


def test_upload_appends_and_skips_codes_the_shop_holds_already(make_shop):
    # given a pool with two codes, and a second pool
    shop_id = make_shop("shopify")
    _pool(shop_id, codes="code\nA-1\nA-2\n")
    other = _pool(shop_id, name="Reisen")

    # when a file with one new code and one of the first pool is uploaded into the second
    with session_scope() as s:
        read = vouchers.read_codes("B-1\nA-2\n", timezone="Europe/Berlin", now=utcnow())
        result = vouchers.add_codes(s, s.get(VoucherPool, other), read.rows)

    # then the new code is appended and the held one reported by line, not doubled
    assert result.added == 1
    assert [(p.line, p.message) for p in result.skipped] == [(2, "A-2 is already in the pool 'Rösterei'")]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(VoucherCode)) == 3


# --- redeeming --------------------------------------------------------------------------------------


def test_redeem_takes_one_code_and_the_points_in_one_go(make_shop):
    # given a pool of two codes and a member with 600 points
    shop_id = _shop(make_shop, "KAFFEE-1\nKAFFEE-2\n")
    apply(shop_id, order("1", "600.00"))

    # when they redeem the coffee voucher through the storefront
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        result = storefront.redeem(s, shop, storefront.find_member(s, shop, "c1"), "Kaffee-Gutschein",
                                   request_key=uuid.uuid4().hex)

    # then the redemption is complete at once with the first code, and 200 points are gone
    assert (result.status, result.code, result.available) == ("created", "KAFFEE-1", 400)
    assert _left(shop_id) == 1
    with session_scope() as s:
        claimed = s.scalars(select(VoucherCode).where(VoucherCode.redemption_id.is_not(None))).one()
        assert (claimed.code, claimed.redemption_id) == ("KAFFEE-1", result.redemption_id)
        code = s.scalars(select(IssuedCode)).one()
        assert (code.purpose, code.status.value, code.code) == ("partner_voucher", "created", "KAFFEE-1")


def test_empty_pool_makes_the_reward_unavailable_and_takes_nothing(make_shop):
    # given a pool whose only code is claimed, and a member with 600 points
    shop_id = _shop(make_shop, "KAFFEE-1\n")
    apply(shop_id, order("1", "600.00"))
    apply(shop_id, order("2", "600.00", customer_id="c2", email="zweite@example.test"))
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        redeem(s, shop, storefront.find_member(s, shop, "c2"), "Kaffee-Gutschein", source="staff")

    # when the member looks at their rewards and tries to redeem it anyway
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        view = storefront.member_view(s, shop, storefront.find_member(s, shop, "c1"), locale="de",
                                      public_url="https://loyalty.example")
    with pytest.raises(storefront.StorefrontError) as refused, session_scope() as s:
        shop = s.get(Shop, shop_id)
        storefront.redeem(s, shop, storefront.find_member(s, shop, "c1"), "Kaffee-Gutschein",
                          request_key=uuid.uuid4().hex)

    # then it is shown as unavailable, not offered, and the refusal says so; nothing is taken
    kaffee = next(r for r in view.rewards if r.name == "Kaffee-Gutschein")
    assert (kaffee.in_stock, kaffee.affordable, kaffee.missing) == (False, False, 0)
    assert [r.name for r in view.affordable] == ["Gratisversand"]
    assert refused.value.reason == "sold_out"
    assert refused.value.message == "„Kaffee-Gutschein“ ist gerade vergriffen. Es wurden keine Punkte abgezogen."
    assert report(shop_id, KUNDIN)["available"] == 600
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Redemption)) == 1


def test_expired_codes_are_not_handed_out(make_shop):
    # given a pool whose first code expires within the day and whose second is valid longer
    shop_id = _shop(make_shop, "")
    with session_scope() as s:
        pool = s.scalars(select(VoucherPool)).one()
        soon = utcnow() + timedelta(hours=3)
        vouchers.add_codes(s, pool, [vouchers.CodeRow(1, "BALD-WEG", soon),
                                     vouchers.CodeRow(2, "NOCH-LANGE", utcnow() + timedelta(days=90))])
    apply(shop_id, order("1", "600.00"))

    # when the member redeems
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        redemption = redeem(s, shop, storefront.find_member(s, shop, "c1"), "Kaffee-Gutschein", source="customer")
        rid = redemption.id

    # then they get the code still valid for a while; nothing is left
    with session_scope() as s:
        assert s.scalars(select(VoucherCode.code).where(VoucherCode.redemption_id == rid)).one() == "NOCH-LANGE"
    assert _left(shop_id) == 0


def _race(shop_id: int, members: list[str]) -> dict[str, object]:
    """Let each member redeem the coffee voucher at the same moment, each in its own thread and
    transaction; return what each got (a redemption id, or the refusal)."""
    barrier = threading.Barrier(len(members))
    outcome: dict[str, object] = {}

    def attempt(member: str) -> None:
        barrier.wait()
        try:
            with session_scope() as s:
                shop = s.get(Shop, shop_id)
                customer = storefront.find_member(s, shop, member)
                outcome[member] = redeem(s, shop, customer, "Kaffee-Gutschein", source="storefront").id
        except VoucherSoldOutError as exc:
            outcome[member] = exc
        except Exception as exc:  # noqa: BLE001 - reported by the test, never swallowed
            outcome[member] = exc

    threads = [threading.Thread(target=attempt, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcome


@pytest.mark.parametrize(("_case", "codes", "won"), [("the last code", "LETZTER\n", 1), ("two codes", "A\nB\n", 2)])
def test_two_customers_racing_for_codes_never_share_one(make_shop, _case, codes, won):
    # given members c1 and c2 with 600 points each, and a pool of one or two codes
    shop_id = _shop(make_shop, codes)
    apply(shop_id, order("1", "600.00"))
    apply(shop_id, order("2", "600.00", customer_id="c2", email="zweite@example.test"))

    # when both redeem at the same moment
    outcome = _race(shop_id, ["c1", "c2"])

    # then each winner has a code of their own, a loser was refused as sold out, and only
    # winners paid points
    winners = [m for m, r in outcome.items() if isinstance(r, int)]
    losers = [r for r in outcome.values() if not isinstance(r, int)]
    assert len(winners) == won, outcome
    assert all(isinstance(r, VoucherSoldOutError) for r in losers), outcome
    with session_scope() as s:
        claimed = s.execute(select(VoucherCode.code, VoucherCode.redemption_id)
                            .where(VoucherCode.redemption_id.is_not(None))).all()
        assert len(claimed) == won and len({c for c, _ in claimed}) == won
        assert s.scalar(select(func.count()).select_from(Redemption)) == won
    for member, email in (("c1", KUNDIN), ("c2", "zweite@example.test")):
        paid = 600 - report(shop_id, email)["available"]
        assert paid == (200 if member in winners else 0), (member, paid)


# --- both platforms' storefront paths ------------------------------------------------------------------


def test_shopify_app_proxy_redeems_a_partner_voucher_and_shows_it(app, client, make_shop):
    # given a Shopify shop of the app whose customer c1 has 600 points, and a pool of one code
    from tests.app.test_proxy import APP_SECRET, signed

    app.config["SHOPIFY_API_SECRET"] = APP_SECRET
    shop_id = _shop(make_shop, "KAFFEE-SHOP-1\n", secret="", credentials={"access_token": "shpat_test"})
    apply(shop_id, order("1", "600.00"))
    catalog = client.get(signed("/api/rewards", "c1")).get_json()["rewards"]
    kaffee = next(r for r in catalog if r["name"] == "Kaffee-Gutschein")
    assert (kaffee["kind"], kaffee["in_stock"], kaffee["affordable"]) == ("partner_voucher", True, True)

    # when the member redeems it through the proxy's JSON API (no shop API call is needed)
    made = client.post(signed("/api/redeem", "c1"), json={"reward": kaffee["id"], "request_key": str(uuid.uuid4())})

    # then the answer carries the partner's code at once, and the loyalty page lists it
    assert made.status_code == 201
    assert (made.get_json()["status"], made.get_json()["code"], made.get_json()["available"]) == (
        "created", "KAFFEE-SHOP-1", 400)
    page = client.get(signed("/", "c1")).get_data(as_text=True)
    assert "KAFFEE-SHOP-1" in page

    # when the pool is empty, the catalog shows the reward unavailable and a second redemption is refused
    catalog = client.get(signed("/api/rewards", "c1")).get_json()["rewards"]
    assert next(r for r in catalog if r["name"] == "Kaffee-Gutschein")["in_stock"] is False
    again = client.post(signed("/api/redeem", "c1"), json={"reward": kaffee["id"], "request_key": str(uuid.uuid4())})
    assert again.status_code == 422
    assert again.get_json() == {"error": "sold_out",
                                "message": "„Kaffee-Gutschein“ ist gerade vergriffen. Es wurden keine Punkte abgezogen."}
    assert report(shop_id, KUNDIN)["available"] == 400
    assert "„Kaffee-Gutschein“ ist gerade vergriffen." in client.get(signed("/", "c1")).get_data(as_text=True)


def test_woocommerce_plugin_api_redeems_a_partner_voucher(client, make_shop):
    # given a WooCommerce store with the plugin, a member "42" with 600 points and a pool of one code
    from app import woo_plugin
    from tests.app.test_plugin_api import CREDENTIALS, _call
    from tests.conftest import TEST_ENCRYPTION_KEY

    shop_id = _shop(make_shop, "REISE-1\n", platform="woocommerce", credentials=CREDENTIALS)
    apply(shop_id, order("1", "600.00", customer_id="42", email=KUNDIN))
    with session_scope() as s:
        secret = woo_plugin.new_plugin_secret(s.get(Shop, shop_id), TEST_ENCRYPTION_KEY)

    # when the plugin redeems the voucher for the member, then asks for the member view
    made = _call(client, shop_id, secret, "POST", "/customers/42/redemptions?lang=en",
                 {"reward": "Kaffee-Gutschein", "key": str(uuid.uuid4())})
    member = _call(client, shop_id, secret, "GET", "/customers/42?lang=en").get_json()
    again = _call(client, shop_id, secret, "POST", "/customers/42/redemptions?lang=en",
                  {"reward": "Kaffee-Gutschein", "key": str(uuid.uuid4())})

    # then the code comes back at once, the member's codes list it as usable, the pool is empty
    assert made.status_code == 201
    assert (made.get_json()["status"], made.get_json()["code"], made.get_json()["available"]) == ("created", "REISE-1", 400)
    assert [(c["purpose"], c["state"], c["code"]) for c in member["codes"]] == [("partner_voucher", "usable", "REISE-1")]
    assert next(r for r in member["rewards"] if r["name"] == "Kaffee-Gutschein")["in_stock"] is False
    assert (again.status_code, again.get_json()) == (422, {
        "error": "sold_out", "message": "“Kaffee-Gutschein” is sold out at the moment. No points were taken."})
    assert report(shop_id, KUNDIN)["available"] == 400


# --- the e-mail, erasure, automatic redemption -----------------------------------------------------


@pytest.mark.parametrize(("_case", "language", "subject", "lines"), [
    ("German", "de", "Ihr Code für „Kaffee-Gutschein“ bei Kaffee & Kuchen",
     ("Prämie: Kaffee-Gutschein", "Wert: 5,00 €", "Gültig bis: 31.12.2030")),
    ("English", "en", "Your code for “Kaffee-Gutschein” at Kaffee & Kuchen",
     ("Reward: Kaffee-Gutschein", "Value: €5.00", "Valid until: 31 December 2030")),
])
def test_the_redemption_email_carries_the_partner_code(make_shop, smtp_server, work, _case, language, subject, lines):
    # given a shop speaking the language, a pool of one code (valid through 2030) and a member
    # with 600 points; the voucher is worth 5 € at the partner
    shop_id = make_shop("shopify", name="Kaffee & Kuchen", language=language)
    _pool(shop_id, codes="code,valid until\nKAFFEE-MAIL-1,2030-12-31\n")
    program(shop_id, {**NO_EXTRAS, "earning": {"return_window_days": 0}, "rewards": [{**KAFFEE, "value": "5"}]})
    apply(shop_id, order("1", "600.00"))

    # when the member redeems, and the worker runs
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        storefront.redeem(s, shop, storefront.find_member(s, shop, "c1"), "Kaffee-Gutschein",
                          request_key=uuid.uuid4().hex)
    work()

    # then one e-mail in their language carries the code, in both parts
    [mail] = smtp_server.messages
    assert mail["To"] == KUNDIN and mail["Subject"] == subject
    text = mail.get_body(("plain",)).get_content()
    assert "    KAFFEE-MAIL-1" in text and all(line in text for line in lines), text
    assert "KAFFEE-MAIL-1" in mail.get_body(("html",)).get_content()


def test_erasure_keeps_the_claimed_code_claimed_without_personal_data(make_shop):
    # given a member who redeemed the pool's first code (its e-mail not sent yet)
    from app.models import MessageStatus, ReminderMessage
    from app.privacy import redact_customer
    from connectors.types import CustomerRedaction

    shop_id = _shop(make_shop, "KAFFEE-1\nKAFFEE-2\n")
    apply(shop_id, order("1", "600.00"))
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        rid = redeem(s, shop, storefront.find_member(s, shop, "c1"), "Kaffee-Gutschein", source="staff").id

    # when the shop asks to erase the customer
    with session_scope() as s:
        redact_customer(s, s.get(Shop, shop_id), CustomerRedaction(customer_id="c1", email=KUNDIN, order_ids=()))

    # then the code stays claimed by that redemption (never handed to someone else), the pool
    # counts one left, and nothing about the person is kept with it; the e-mail is not sent
    with session_scope() as s:
        claimed = s.scalars(select(VoucherCode).where(VoucherCode.code == "KAFFEE-1")).one()
        assert claimed.redemption_id == rid
        code = s.scalars(select(IssuedCode).where(IssuedCode.code == "KAFFEE-1")).one()
        assert code.spec["customer_email"] is None
        message = s.scalars(select(ReminderMessage).where(ReminderMessage.campaign == "voucher")).one()
        assert message.email is None and message.status != MessageStatus.SENT
    assert _left(shop_id) == 1


@pytest.mark.parametrize(("_case", "codes", "redeemed", "code"), [
    ("pool empty", "", "Gratisversand", None), ("pool stocked", "AUTO-1\n", "Kaffee-Gutschein", "AUTO-1")])
def test_automatic_redemption_takes_a_voucher_only_from_a_stocked_pool(make_shop, _case, codes, redeemed, code):
    # given automatic redemption, a cheap partner voucher, and free shipping
    shop_id = make_shop("shopify")
    _pool(shop_id, codes=codes)
    program(shop_id, {**NO_EXTRAS, "earning": {"return_window_days": 0}, "redemption": {"auto": True}, "rewards": [
        {"name": "Gratisversand", "points": 300, "kind": "free_shipping"}, {**KAFFEE, "points": 100}]})

    # when an order brings 400 points
    apply(shop_id, order("1", "400.00"))

    # then the voucher is redeemed with its code when there is one, else free shipping: never a
    # voucher without a code
    with session_scope() as s:
        assert [r.reward_name for r in s.scalars(select(Redemption))] == [redeemed]
        assert s.scalars(select(VoucherCode.code).where(VoucherCode.redemption_id.is_not(None))).all() == (
            [code] if code else [])


def test_customer_page_shows_the_code_and_the_sold_out_reward(app, client, make_shop):
    # given a member who redeemed the pool's only code
    from app.web.customer_page import make_token

    shop_id = _shop(make_shop, "KAFFEE-SEITE\n")
    apply(shop_id, order("1", "900.00"))
    with session_scope() as s:
        shop = s.get(Shop, shop_id)
        customer = storefront.find_member(s, shop, "c1")
        customer_id = customer.id
        redeem(s, shop, customer, "Kaffee-Gutschein", source="customer")

    # when they open their page
    with app.app_context():
        page = client.get(f"/r/{make_token(shop_id, customer_id)}").get_data(as_text=True)

    # then it shows the partner's code, and the voucher as sold out instead of a redeem button
    assert "KAFFEE-SEITE" in page
    assert "„Kaffee-Gutschein“ ist gerade vergriffen." in page
    assert 'name="reward" value="Kaffee-Gutschein"' not in page
