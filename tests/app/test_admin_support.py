"""Support work in the admin: finding customers (list with filters and sorting, search by codes),
the customer page (running balance, who adjusted, spend and tier progress, codes with their
state, orders, ban history), a delivery's detail page, and failed jobs with retry."""

from __future__ import annotations

import re
from dataclasses import replace
from html import unescape

import pytest
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from app.db import session_scope
from app.loyalty.customers import find_by_email, upsert_customer
from app.models import CodeStatus, Customer, IssuedCode, Shop, StaffRole, WebhookDelivery
from app.web.staff import create_staff, grant_role
from connectors import types as ct
from tests import factories
from tests.app.test_admin import (
    INSTANT,
    NO_EXTRAS,
    STAFF_PASSWORD,
    _csrf_token,
    _form,
    _sign_in,
    _signed_in,
)
from tests.conftest import fixture_bytes

ANNA = "anna.beispiel@example.test"
BEN = "ben.mustermann@mail.example"
CLARA = "clara@shop.example"


def _shop_with_three(make_shop) -> tuple[int, dict[str, int]]:  # type: ignore[no-untyped-def]
    """Anna (612 €, Silber), Ben (89.90 €, Bronze), Clara (1450 €, Gold) with points at once."""
    shop_id = make_shop("shopify")
    factories.program(shop_id, {**NO_EXTRAS, "earning": INSTANT})
    for i, (email, amount, name) in enumerate([(ANNA, "612.40", ("Anna", "Beispiel")), (BEN, "89.90", ("Ben", "Mustermann")),
                                               (CLARA, "1450.00", ("Clara", "Zeller"))]):
        factories.apply(shop_id, replace(factories.order(str(1000 + i), amount, email=email, customer_id=f"c{i}"),
                                         number=f"#{1000 + i}"))
        with session_scope() as s:
            upsert_customer(s, s.get(Shop, shop_id), ct.Customer(id=f"c{i}", email=email, first_name=name[0],
                                                                 last_name=name[1]))
    with session_scope() as s:
        ids = {email: find_by_email(s, shop_id, email).id for email in (ANNA, BEN, CLARA)}
    return shop_id, ids


def _add_code(shop_id: int, customer_id: int, code: str, status: CodeStatus, error: str | None = None,
              purpose: str = "reward") -> None:
    with session_scope() as s:
        s.add(IssuedCode(shop_id=shop_id, customer_id=customer_id, purpose=purpose, source_key=code, code=code,
                         spec={"kind": "fixed_amount", "value": "5", "currency": "EUR"}, status=status, error=error))


def _listed(html: str) -> list[str]:
    table = re.search(r'<table id="customer-list">(.*?)</table>', html, re.S)
    return re.findall(r'<a href="/admin/customers/\d+">([^<]+)</a>', table.group(1)) if table else []


@pytest.mark.parametrize("_case, query, expected", [
    ("everyone, by e-mail", "", [ANNA, BEN, CLARA]),
    ("by balance, highest first", "?sort=available&dir=desc", [CLARA, ANNA, BEN]),
    ("by name", "?sort=name", [ANNA, BEN, CLARA]),
    ("one tier", "?tier=Gold", [CLARA]),
    ("banned only", "?banned=1", [BEN]),
    ("not banned", "?banned=0", [ANNA, CLARA]),
    ("with points", "?balance=1", [ANNA, BEN, CLARA]),
    ("with failed codes", "?failed=1", [ANNA]),
    ("without failed codes, by balance", "?failed=0&sort=available&dir=desc", [CLARA, BEN]),
])
def test_customer_list_filters_and_sorts(_case, query, expected, client, session, make_shop):
    # given three customers, Ben banned and Anna with a failed code
    shop_id, ids = _shop_with_three(make_shop)
    with session_scope() as s:
        s.get(Customer, ids[BEN]).banned_at = factories.T0
    _add_code(shop_id, ids[ANNA], "LOY-FAIL-1", CodeStatus.FAILED, "discount code already exists")
    _signed_in(client, session)

    # when staff open the list
    html = client.get(f"/admin/customers{query}").get_data(as_text=True)

    # then exactly those customers are listed, in that order
    assert _listed(html) == expected


@pytest.mark.parametrize("_case, q", [
    ("a reward code as printed", "LOY-ANNA-5"),
    ("a reward code typed in lower case", "loy-anna-5"),
    ("a referral code", "ANNAFRIENDS"),
])
def test_search_finds_a_customer_by_code(_case, q, client, session, make_shop):
    # given Anna with a reward code and a referral code
    shop_id, ids = _shop_with_three(make_shop)
    _add_code(shop_id, ids[ANNA], "LOY-ANNA-5", CodeStatus.CREATED)
    with session_scope() as s:
        s.get(Customer, ids[ANNA]).referral_code = "ANNAFRIENDS"
    _signed_in(client, session)

    # when staff search for the code
    html = client.get("/admin/customers", query_string={"q": q}).get_data(as_text=True)

    # then Anna is found, and nobody else
    found = re.search(r'<table id="search-results">(.*?)</table>', html, re.S).group(1)
    assert ANNA in found and BEN not in found and CLARA not in found


def test_customer_page_shows_running_balance_who_adjusted_spend_progress_codes_orders_and_bans(
        client, session, make_shop):
    # given Anna (612.40 € spent, Silber), with a failed and a usable code
    shop_id, ids = _shop_with_three(make_shop)
    anna = ids[ANNA]
    _add_code(shop_id, anna, "LOY-FAIL-1", CodeStatus.FAILED, "discount code already exists")
    _add_code(shop_id, anna, "WELCOME-ANNA", CodeStatus.CREATED, purpose="second_purchase")
    _signed_in(client, session)
    base = f"/admin/customers/{anna}"

    # when staff adjust her points, ban her and lift the ban
    client.post(f"{base}/adjust", data={**_form(client.get(base).get_data(as_text=True), "adjust-form"),
                                        "points": "-12", "reason": "Tippfehler"})
    client.post(f"{base}/ban", data={**_form(client.get(base).get_data(as_text=True), "ban-form"),
                                     "reason": "Gutscheinmissbrauch"})
    client.post(f"{base}/ban", data={**_form(client.get(base).get_data(as_text=True), "ban-form"), "action": "lift"})
    html = unescape(client.get(base).get_data(as_text=True))

    # then each ledger line shows the balance after it (newest first) and who made the adjustment
    ledger = re.search(r'<h2 id="ledger-heading">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    rows = re.findall(r'<tr id="ledger-\d+">(.*?)</tr>', ledger, re.S)
    assert len(rows) == 2
    assert re.search(r'class="num balance-after">600<', rows[0]) and "support@stammkunde.example" in rows[0]
    assert re.search(r'class="num balance-after">612<', rows[1])
    # and her lifetime spend and what is missing to Gold (750 €)
    assert "612.40" in re.search(r'<dd id="lifetime-spend">(.*?)</dd>', html, re.S).group(1)
    progress = re.search(r'<dd id="tier-progress">(.*?)</dd>', html, re.S).group(1)
    assert "137.60" in progress and "Gold" in progress and 'aria-valuenow="72"' in progress
    # and every code with its state: the failed one shown as failed with why, its text nowhere
    failed = re.search(r'<tr id="code-\d+" class="code-reward">(.*?)</tr>', html, re.S).group(1)
    assert 'class="status failed">failed<' in failed and "not created in the shop" in failed
    assert "discount code already exists" in failed and "LOY-FAIL-1" not in html
    usable = re.search(r'<tr id="code-\d+" class="code-second_purchase">(.*?)</tr>', html, re.S).group(1)
    assert "<code>WELCOME-ANNA</code>" in usable and "second purchase" in usable
    assert 'class="status created">usable<' in usable
    # and her order
    assert "#1000" in re.search(r'<table id="orders">(.*?)</table>', html, re.S).group(1)
    # and the ban history: who, why, and when it was lifted
    bans = re.findall(r"<tr>(.*?)</tr>", re.search(r'<table id="ban-history">.*?<tbody>(.*?)</tbody>', html, re.S).group(1), re.S)
    assert len(bans) == 2
    assert "banned" in bans[0] and "Gutscheinmissbrauch" in bans[0] and "support@stammkunde.example" in bans[0]
    assert "ban lifted" in bans[1]


def test_ban_from_the_command_line_is_in_the_ban_history(runner, client, session, make_shop):
    # given a customer banned with `flask customers ban`
    shop_id, ids = _shop_with_three(make_shop)
    result = runner.invoke(args=["customers", "ban", "--shop", "demo-laden.myshopify.com", "--email", BEN,
                                 "--reason", "Rückbuchungsbetrug"])
    assert result.exit_code == 0, result.output
    _signed_in(client, session)

    # when staff open the customer
    html = unescape(client.get(f"/admin/customers/{ids[BEN]}").get_data(as_text=True))

    # then the history names the command and the reason
    bans = re.search(r'<table id="ban-history">(.*?)</table>', html, re.S).group(1)
    assert "flask customers ban" in bans and "Rückbuchungsbetrug" in bans


def test_delivery_page_redacts_the_signature_and_shows_body_and_ledger_lines(client, session, make_shop,
                                                                               post_webhook, work):
    # given a paid Shopify order that went through the webhook and the worker
    make_shop("shopify")
    body = fixture_bytes("shopify", "orders_paid.json")
    assert post_webhook("shopify", "orders/paid", body).status_code == 200
    work()
    delivery = session.scalars(select(WebhookDelivery)).one()
    signature = delivery.headers["X-Shopify-Hmac-Sha256"]
    session.commit()
    _signed_in(client, session)

    # when staff open the delivery
    html = unescape(client.get(f"/admin/deliveries/{delivery.id}").get_data(as_text=True))

    # then the signature is redacted, other headers and the body are shown, with the points it gave
    assert signature not in html
    headers = re.search(r'<table id="headers">(.*?)</table>', html, re.S).group(1)
    assert re.search(r"X-Shopify-Hmac-Sha256</th><td><span class=\"muted\">\(redacted\)", headers)
    assert "orders/paid" in headers
    assert '"total_price"' in re.search(r'<pre class="email-text" id="body">(.*?)</pre>', html, re.S).group(1)
    produced = re.search(r'<table id="produced">(.*?)</table>', html, re.S).group(1)
    assert "earn" in produced and "/admin/customers/" in produced
    # and it can be replayed from there
    token = _csrf_token(html)
    replay = client.post(f"/admin/deliveries/{delivery.id}/replay", data={"csrf_token": token})
    assert replay.status_code == 302
    assert "was queued for processing again" in client.get(replay.headers["Location"]).get_data(as_text=True)


def test_failed_jobs_are_listed_with_their_error_and_retried(client, session, redis_url, make_shop):
    # given a job that failed in a real worker
    from rq import SimpleWorker

    conn = Redis.from_url(redis_url)
    queue = Queue("codes", connection=conn)
    job = queue.enqueue("builtins.int", "not a number", job_id="issue-code-test-1")
    SimpleWorker([queue], connection=conn).work(burst=True, logging_level="WARNING")
    assert FailedJobRegistry(queue=queue).get_job_ids() == [job.id]
    _signed_in(client, session)

    # when an administrator opens the jobs page and retries it
    html = unescape(client.get("/admin/jobs").get_data(as_text=True))
    token = _csrf_token(html)
    retried = client.post(f"/admin/jobs/codes/{job.id}/retry", data={"csrf_token": token})

    # then the page showed the queue's depth and the job with its error; the retry queued it again
    assert re.search(r'<tr id="queue-codes"><td>codes</td><td class="num">0</td><td class="num">1</td></tr>', html)
    row = re.search(rf'<tr id="job-{job.id}">(.*?)</tr>', html, re.S).group(1)
    assert "ValueError" in row and "builtins.int" in row
    assert retried.status_code == 302
    assert FailedJobRegistry(queue=queue).get_job_ids() == [] and queue.job_ids == [job.id]
    assert "is queued again" in client.get("/admin/jobs").get_data(as_text=True)


def test_jobs_are_for_administrators_only(client, make_shop):
    # given an owner of one shop (not an administrator)
    shop_id = make_shop("shopify")
    with session_scope() as s:
        user = create_staff(s, "owner@stammkunde.example", STAFF_PASSWORD)
        user.language = "en"
        grant_role(s, shop_id=shop_id, staff_id=user.id, role=StaffRole.OWNER, adjust_limit=0, granted_by="test")
    _sign_in(client, "owner@stammkunde.example")
    token = _csrf_token(client.get("/admin/account").get_data(as_text=True))

    # when they open the jobs page or post a retry
    page = client.get("/admin/jobs")
    retry = client.post("/admin/jobs/codes/some-job/retry", data={"csrf_token": token})

    # then both are refused, and the menu does not offer it
    assert (page.status_code, retry.status_code) == (403, 403)
    assert 'href="/admin/jobs"' not in client.get("/admin/").get_data(as_text=True)


def test_customer_list_pages_forward_and_back_and_refuses_a_stale_link(client, session, make_shop, monkeypatch):
    # given three customers and pages of two
    _shop_with_three(make_shop)
    monkeypatch.setattr("app.web.admin.CUSTOMER_PAGE_SIZE", 2)
    _signed_in(client, session)

    # when staff page through the list by balance, highest first, and back
    first = client.get("/admin/customers?sort=available&dir=desc").get_data(as_text=True)
    next_link = unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
    second = client.get(next_link).get_data(as_text=True)
    back_link = unescape(re.search(r'href="([^"]+)" rel="prev"', second).group(1))
    back = client.get(back_link).get_data(as_text=True)

    # then the pages follow the sort, the last has no next link, and going back shows the first again
    assert _listed(first) == [CLARA, ANNA] and 'rel="prev"' not in first
    assert _listed(second) == [BEN] and 'rel="next"' not in second
    assert _listed(back) == [CLARA, ANNA]
    # and a link this list did not make is refused with a way back
    stale = client.get("/admin/customers?after=7:x")
    assert stale.status_code == 400 and "first page" in stale.get_data(as_text=True)
