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
    assert read.rows[0].expires_at == datetime(2027, 12, 31, 23, 0, tzinfo=timezone.utc)
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


@pytest.mark.postgres_only
def test_upload_of_100000_codes_is_one_transaction_and_counted(make_shop):
    # given a pool and a partner file of 100 000 codes
    shop_id = make_shop("shopify")
    pool_id = _pool(shop_id)
    text = "code\n" + "".join(f"ROAST-{n:06d}\n" for n in range(100_000))

    # when it is read and appended
    read = vouchers.read_codes(text, timezone="Europe/Berlin", now=utcnow())
    with session_scope() as s:
        result = vouchers.add_codes(s, s.get(VoucherPool, pool_id), read.rows)

    # then all are there
    assert (result.added, result.skipped) == (100_000, ())
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(VoucherCode)) == 100_000


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
