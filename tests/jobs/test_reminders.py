"""Reminders end to end with time travel: sweeps, stop conditions, consent, cap, quiet hours,
one-click unsubscribe, exactly-once sends, attribution — received by a real local SMTP server."""

from __future__ import annotations

import html as html_lib
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.models import ConsentEvent, Customer, ReminderMessage, Shop
from app.program import Sending
from app.messaging.reminders import quiet_until
from connectors import types as ct
from tests.factories import apply, order, program

EMAIL = "kundin@example.test"
T = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)  # a Monday, 10:00 in Berlin
QUIET = {"second_purchase": {"enabled": False}, "referral": {"enabled": False}}


def checkout(token: str = "chk-1", *, total: str = "49.90", updated_at: datetime = T, qty: int = 1,
             customer_id: str | None = "c1", completed_at: datetime | None = None) -> ct.Checkout:
    line = ct.LineItem(id="l1", product_id="p1", variant_id="v1", quantity=qty, unit_price=Decimal(total),
                       total=Decimal(total))
    return ct.Checkout(id=token, currency="EUR", total=Decimal(total), subtotal=Decimal(total), created_at=T,
                       updated_at=updated_at, customer=ct.Customer(id=customer_id, email=EMAIL) if customer_id else None,
                       email=EMAIL, recovery_url="https://demo-laden.myshopify.com/recover/chk-1",
                       completed_at=completed_at, line_items=(line,))


def put_checkout(shop: int, c: ct.Checkout) -> None:
    from app.loyalty.checkouts import apply_checkout

    with session_scope() as s:
        apply_checkout(s, s.get(Shop, shop), c)


def consent(shop: int, *, granted: bool = True, email: str = EMAIL) -> None:
    from app.loyalty.customers import upsert_customer

    with session_scope() as s:
        upsert_customer(s, s.get(Shop, shop), ct.Customer(id="c1", email=email, first_name="Erika",
                                                          accepts_marketing=granted, marketing_consent_at=T - timedelta(days=30)))


def sweep(work, at: datetime) -> dict:  # type: ignore[no-untyped-def]
    from jobs.reminders import sweep_reminders

    result = sweep_reminders(at.isoformat())
    work()
    return result


def messages() -> list[tuple[str, int, str, str | None]]:
    with session_scope() as s:
        return [(m.campaign, m.step, m.status.value, m.reason)
                for m in s.scalars(select(ReminderMessage).order_by(ReminderMessage.id))]


@pytest.fixture
def shop(make_shop):  # type: ignore[no-untyped-def]
    shop_id = make_shop("shopify", name="Demo Laden", timezone="Europe/Berlin", language="de")
    program(shop_id, {**QUIET, "reminders": {"cart": {"incentive_step": 0}}})
    return shop_id


def test_cart_sequence_1h_24h_72h_received_with_both_parts_and_headers(shop, smtp_server, work):
    # given a consenting customer who left a checkout at 10:00 Berlin time
    consent(shop)
    put_checkout(shop, checkout())

    # when the clock runs just before and at each step
    sweep(work, T + timedelta(minutes=59))
    assert smtp_server.messages == []
    for hours in (1, 24, 72):
        sweep(work, T + timedelta(hours=hours))

    # then three reminders arrived, each with text and HTML and one-click unsubscribe headers
    assert [m["Subject"] for m in smtp_server.messages] and len(smtp_server.messages) == 3
    first = smtp_server.messages[0]
    assert first["To"] == EMAIL
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["List-Unsubscribe"].startswith("<http://localhost/u/")
    parts = {p.get_content_type() for p in first.walk()}
    assert {"text/plain", "text/html"} <= parts
    assert "recover/chk-1" in first.get_body(("plain",)).get_content()
    assert messages() == [("cart", 1, "sent", None), ("cart", 2, "sent", None), ("cart", 3, "sent", None)]


def test_no_consent_means_nothing_is_sent(shop, smtp_server, work):
    # given a customer who did not consent to marketing
    consent(shop, granted=False)
    put_checkout(shop, checkout())

    # when the first step is due
    sweep(work, T + timedelta(hours=1))

    # then nothing is sent, and why is recorded
    assert smtp_server.messages == []
    assert messages() == [("cart", 1, "suppressed", "no_consent")]


@pytest.mark.parametrize("_case, stop, reason", [
    ("ordered", "order", "ordered"),
    ("checkout completed", "completed", "ordered"),
    ("unsubscribed", "unsubscribe", "unsubscribed"),
    ("banned", "ban", "banned"),
])
def test_cart_stops_at_once(_case, stop, reason, shop, smtp_server, work):
    # given a consenting customer with an abandoned checkout and the first reminder sent
    consent(shop)
    put_checkout(shop, checkout())
    sweep(work, T + timedelta(hours=1))
    assert len(smtp_server.messages) == 1

    # when the stop condition happens
    if stop == "order":
        apply(shop, order("9", "49.90", customer_id="c1", email=EMAIL, paid_at=T + timedelta(hours=2)))
    elif stop == "completed":
        put_checkout(shop, checkout(updated_at=T + timedelta(hours=2), completed_at=T + timedelta(hours=2)))
    else:
        with session_scope() as s:
            customer = s.scalars(select(Customer)).one()
            if stop == "unsubscribe":
                from app.messaging.consent import unsubscribe

                unsubscribe(s, customer, source="test")
            else:
                customer.banned_at = T
    sweep(work, T + timedelta(hours=24))
    sweep(work, T + timedelta(hours=72))

    # then no further reminder goes out (a completed checkout is not even scheduled again)
    assert len(smtp_server.messages) == 1, messages()
    later = [m for m in messages() if m[1] > 1]
    assert all(status == "suppressed" and why == reason for _, _, status, why in later)


def test_changed_cart_restarts_the_sequence(shop, smtp_server, work):
    # given step 1 was sent for a cart
    consent(shop)
    put_checkout(shop, checkout())
    sweep(work, T + timedelta(hours=1))

    # when the customer changes the cart 5 hours later
    put_checkout(shop, checkout(qty=2, total="99.80", updated_at=T + timedelta(hours=5)))
    sweep(work, T + timedelta(hours=5, minutes=59))
    assert len(smtp_server.messages) == 1
    sweep(work, T + timedelta(hours=6))
    sweep(work, T + timedelta(hours=24))  # the old sequence's step 2 time: nothing

    # then the new sequence starts again at step 1, an hour after the change, and step 2 follows
    # 24 hours after the change
    assert len(smtp_server.messages) == 2
    assert "99,80" in smtp_server.messages[1].get_body(("plain",)).get_content()
    sweep(work, T + timedelta(hours=29))
    assert [m[:2] for m in messages()] == [("cart", 1), ("cart", 1), ("cart", 2)]


def test_duplicate_checkout_webhooks_make_one_sequence(make_shop, post_webhook, work, smtp_server):
    # given a Shopify checkout delivered as create, then update with the same content, twice each
    from tests.conftest import fixture_bytes

    make_shop("shopify")
    body = fixture_bytes("shopify", "checkouts_create.json")
    for n, topic in enumerate(["checkouts/create", "checkouts/create", "checkouts/update"]):
        assert post_webhook("shopify", topic, body, event_id=f"c{n}").status_code == 200
    work()

    # then there is one checkout with one sequence
    from app.models import Checkout

    with session_scope() as s:
        rows = list(s.scalars(select(Checkout)))
    assert [(r.sequence, r.next_step) for r in rows] == [(1, 1)]


def test_cap_across_campaigns_defers_not_drops(shop, smtp_server, work):
    # given a win-back e-mail went out at 10:00 (cap: 1 marketing e-mail per 16 h)
    consent(shop)
    apply(shop, order("1", "20.00", customer_id="c1", email=EMAIL, paid_at=T - timedelta(days=90)))
    sweep(work, T)
    assert messages() == [("winback", 1, "sent", None)]

    # when a cart step becomes due an hour later
    put_checkout(shop, checkout(updated_at=T))
    sweep(work, T + timedelta(hours=1))

    # then it is deferred until the cap allows (not dropped) ...
    assert messages()[-1] == ("cart", 1, "scheduled", "cap")
    sweep(work, T + timedelta(hours=15, minutes=59))
    assert len(smtp_server.messages) == 1

    # ... which is 02:00 in Berlin, so quiet hours hold it until 08:00, when it goes
    sweep(work, T + timedelta(hours=16))
    assert messages()[-1] == ("cart", 1, "scheduled", "quiet_hours")
    sweep(work, datetime(2026, 11, 3, 7, 0, tzinfo=timezone.utc))
    assert len(smtp_server.messages) == 2
    assert messages()[-1] == ("cart", 1, "sent", None)


@pytest.mark.parametrize("_case, now, expected", [
    ("evening before spring DST", "2026-03-28T20:30:00+00:00", "2026-03-29T06:00:00+00:00"),  # 21:30 CET -> 08:00 CEST
    ("evening before autumn DST", "2026-10-24T20:00:00+00:00", "2026-10-25T07:00:00+00:00"),  # 22:00 CEST -> 08:00 CET
    ("just after midnight", "2026-07-01T22:30:00+00:00", "2026-07-02T06:00:00+00:00"),
    ("daytime is not quiet", "2026-07-01T10:00:00+00:00", None),
    ("exactly at the end", "2026-07-02T06:00:00+00:00", None),
    ("exactly at the start", "2026-07-01T19:00:00+00:00", "2026-07-02T06:00:00+00:00"),
])
def test_quiet_hours_in_berlin_across_dst(_case, now, expected):
    # when a message is due at `now`
    until = quiet_until(datetime.fromisoformat(now), "Europe/Berlin", Sending())

    # then it waits for 08:00 Berlin time, whatever the UTC offset that day
    assert until == (datetime.fromisoformat(expected) if expected else None)


def test_quiet_hours_defer_a_due_reminder(shop, smtp_server, work):
    # given a cart abandoned at 20:30 Berlin (19:30 UTC)
    consent(shop)
    evening = datetime(2026, 11, 2, 19, 30, tzinfo=timezone.utc)
    put_checkout(shop, checkout(updated_at=evening))

    # when step 1 falls due at 21:30 Berlin
    sweep(work, evening + timedelta(hours=1))

    # then it waits until 08:00 Berlin (07:00 UTC) and goes then
    assert messages() == [("cart", 1, "scheduled", "quiet_hours")]
    sweep(work, datetime(2026, 11, 3, 6, 59, tzinfo=timezone.utc))
    assert smtp_server.messages == []
    sweep(work, datetime(2026, 11, 3, 7, 0, tzinfo=timezone.utc))
    assert len(smtp_server.messages) == 1


def test_one_click_unsubscribe_is_immediate_and_recorded(shop, smtp_server, work, client):
    # given a reminder was received
    consent(shop)
    put_checkout(shop, checkout())
    sweep(work, T + timedelta(hours=1))
    link = smtp_server.messages[0]["List-Unsubscribe"].strip("<>").replace("http://localhost", "")

    # when the mail client posts the RFC 8058 one-click body, and a person opens the link later
    response = client.post(link, data={"List-Unsubscribe": "One-Click"})
    page = client.get(link)

    # then the customer is unsubscribed at once, with proof, and later steps are suppressed
    assert response.status_code == 200 and page.status_code == 200
    with session_scope() as s:
        customer = s.scalars(select(Customer)).one()
        events = [e.kind for e in s.scalars(select(ConsentEvent).order_by(ConsentEvent.id))]
    assert customer.unsubscribed_at is not None
    assert events[-1] == "unsubscribed"
    sweep(work, T + timedelta(hours=24))
    assert len(smtp_server.messages) == 1
    assert messages()[-1] == ("cart", 2, "suppressed", "unsubscribed")


def test_unsubscribe_get_page_asks_first_and_bad_link_is_404(shop, client):
    # given a customer and their unsubscribe link
    from app.messaging import links

    consent(shop)
    with session_scope() as s:
        customer = s.scalars(select(Customer)).one()
    token = links.make_token("test-secret-key", "unsubscribe", shop, customer.id)

    # when the link is opened (GET), and a tampered one
    page = client.get(f"/u/{token}")
    bad = client.get(f"/u/{token}x")

    # then GET only asks (nothing changes), and the bad link is refused
    assert page.status_code == 200 and "Jetzt abmelden" in page.get_data(as_text=True)
    with session_scope() as s:
        assert s.scalars(select(Customer)).one().unsubscribed_at is None
    assert bad.status_code == 404


def test_sweeps_running_twice_concurrently_send_one_email(shop, smtp_server, work):
    # given a due cart reminder
    consent(shop)
    put_checkout(shop, checkout())
    from jobs.reminders import sweep_reminders

    # when two clocks sweep at the same moment, and a third sweep follows
    at = (T + timedelta(hours=1)).isoformat()
    threads = [threading.Thread(target=sweep_reminders, args=(at,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sweep_reminders(at)
    work()

    # then one e-mail
    assert len(smtp_server.messages) == 1
    assert messages() == [("cart", 1, "sent", None)]


def test_worker_killed_after_send_before_commit_sends_at_most_once_more(shop, smtp_server, work, monkeypatch):
    # given a due reminder, and a worker that dies right after the SMTP handover
    consent(shop)
    put_checkout(shop, checkout())
    import app.messaging.send as mail

    real = mail.SmtpMailer.send

    class WorkerDied(BaseException):
        pass

    def send_then_die(self, msg):  # type: ignore[no-untyped-def]
        real(self, msg)
        raise WorkerDied

    monkeypatch.setattr(mail.SmtpMailer, "send", send_then_die)
    from jobs.reminders import send_reminder, sweep_reminders

    sweep_reminders((T + timedelta(hours=1)).isoformat())
    with session_scope() as s:
        message_id = s.scalars(select(ReminderMessage.id)).one()
    with pytest.raises(WorkerDied):
        send_reminder(message_id, (T + timedelta(hours=1)).isoformat())
    assert len(smtp_server.messages) == 1
    assert messages() == [("cart", 1, "sending", None)]
    monkeypatch.setattr(mail.SmtpMailer, "send", real)

    # when sweeps run before and after the 10-minute claim timeout
    sweep(work, T + timedelta(hours=1, minutes=5))
    assert len(smtp_server.messages) == 1
    sweep(work, T + timedelta(hours=1, minutes=11))
    sweep(work, T + timedelta(hours=1, minutes=20))

    # then exactly one extra copy went out, with the same Message-ID, and the row is sent
    assert len(smtp_server.messages) == 2
    assert smtp_server.messages[0]["Message-ID"] == smtp_server.messages[1]["Message-ID"]
    assert messages() == [("cart", 1, "sent", None)]


def test_failed_send_retries_with_backoff_and_is_visible(shop, smtp_server, work, runner):
    # given the SMTP server refuses temporarily once
    consent(shop)
    put_checkout(shop, checkout())
    smtp_server.fail_next = ["451 4.3.0 try again later"]

    # when the step is due, and the sweep runs again after the backoff
    sweep(work, T + timedelta(hours=1))
    shown = runner.invoke(args=["reminders", "show", "--shop", "demo-laden.myshopify.com", "--email", EMAIL, "--json"])
    sweep(work, T + timedelta(hours=1, minutes=1))

    # then the failure was visible with its reason, and the retry delivered it
    assert '"reason": "retry"' in shown.output and "451" in shown.output
    assert len(smtp_server.messages) == 1
    assert messages() == [("cart", 1, "sent", None)]


def test_winback_from_the_customers_own_rhythm(shop, smtp_server, work):
    # given a consenting customer who orders every 40 days (3 orders: median gap 40 days)
    consent(shop)
    start = T - timedelta(days=80)
    for n in range(3):
        apply(shop, order(str(n), "30.00", customer_id="c1", email=EMAIL, paid_at=start + timedelta(days=40 * n)))
    last = start + timedelta(days=80)

    # when the sweep runs just before and at 1.5 x 40 = 60 days after the last order
    sweep(work, last + timedelta(days=59, hours=23))
    assert smtp_server.messages == []
    sweep(work, last + timedelta(days=60))
    sweep(work, last + timedelta(days=90))  # one win-back per lapse

    # then one win-back went out
    assert messages() == [("winback", 1, "sent", None)]
    assert len(smtp_server.messages) == 1


def test_winback_resets_with_a_new_order_and_uses_90_days_with_few_orders(shop, smtp_server, work):
    # given one order (fewer than 3: the shop default of 90 days applies)
    consent(shop)
    apply(shop, order("1", "30.00", customer_id="c1", email=EMAIL, paid_at=T))

    # when the customer orders again after 80 days
    apply(shop, order("2", "30.00", customer_id="c1", email=EMAIL, paid_at=T + timedelta(days=80)))
    sweep(work, T + timedelta(days=95))

    # then nothing is due yet: the clock restarted at the new order
    assert messages() == []
    sweep(work, T + timedelta(days=170))
    assert messages() == [("winback", 1, "sent", None)]


def test_attribution_of_an_order_to_the_reminder(shop, smtp_server, work, runner):
    # given a cart reminder was sent
    consent(shop)
    put_checkout(shop, checkout())
    sweep(work, T + timedelta(hours=1))

    # when the customer orders within 7 days
    apply(shop, order("77", "49.90", customer_id="c1", email=EMAIL, paid_at=T + timedelta(days=2)))

    # then `reminders show` lists the send and the order it won back
    result = runner.invoke(args=["reminders", "show", "--shop", "demo-laden.myshopify.com", "--email", EMAIL, "--json"])
    assert result.exit_code == 0, result.output
    import json

    [row] = json.loads(result.output)
    assert (row["campaign"], row["status"], row["attributed_order"], row["attributed_revenue"]) == (
        "cart", "sent", "#77", "49.90")


def test_reminders_sweep_cli_prints_what_it_enqueued(shop, runner):
    # given a due cart reminder
    consent(shop)
    put_checkout(shop, checkout())

    # when support runs the sweep as of 11:00 UTC
    result = runner.invoke(args=["reminders", "sweep", "--at", (T + timedelta(hours=2)).isoformat()])

    # then it says what it created and enqueued
    assert result.exit_code == 0, result.output
    assert "cart 1" in result.output and "send jobs enqueued: 1" in result.output


def test_expiry_notice_14_days_before(make_shop, smtp_server, work):
    # given points earned on 11-02 that expire after 1 month (12-02), transactional notices on
    shop = make_shop("shopify", name="Demo Laden")
    program(shop, {**QUIET, "earning": {"return_window_days": 0}, "expiry": {"months": 1, "notice_days": 14}})
    consent(shop, granted=False)  # transactional: no marketing consent needed by default
    apply(shop, order("1", "120.00", customer_id="c1", email=EMAIL, paid_at=T))

    # when the sweep runs 15 and 14 days before the expiry
    sweep(work, datetime(2026, 11, 17, 9, 0, tzinfo=timezone.utc))
    assert smtp_server.messages == []
    sweep(work, datetime(2026, 11, 18, 9, 0, tzinfo=timezone.utc))
    sweep(work, datetime(2026, 11, 19, 9, 0, tzinfo=timezone.utc))

    # then one notice tells how many points expire and when
    assert len(smtp_server.messages) == 1
    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert "120" in text and "02.12.2026" in text


def test_second_purchase_nudge_sends_the_code(make_shop, smtp_server, work):
    # given a first order created a second-purchase code that now exists in the shop
    from app.models import CodeStatus, IssuedCode

    shop = make_shop("shopify", name="Demo Laden")
    program(shop, {"referral": {"enabled": False}})
    consent(shop)
    apply(shop, order("1", "30.00", customer_id="c1", email=EMAIL, paid_at=T))
    with session_scope() as s:
        code = s.scalars(select(IssuedCode).where(IssuedCode.purpose == "second_purchase")).one()
        code.status, code.created_at = CodeStatus.CREATED, T
        code_text = code.code

    # when the sweep runs (and again)
    sweep(work, T + timedelta(hours=1))
    sweep(work, T + timedelta(hours=20))

    # then one e-mail carries the code
    assert len(smtp_server.messages) == 1
    assert code_text in smtp_server.messages[0].get_body(("plain",)).get_content()


def test_points_earned_notice_follows_the_shop_setting(make_shop, smtp_server, work, time_machine):
    # given a shop that sends points-earned notices
    time_machine.move_to(T, tick=False)
    shop = make_shop("shopify", name="Demo Laden")
    program(shop, {**QUIET, "reminders": {"notices": {"points_earned": True}}})
    consent(shop, granted=False)

    # when an order earns points
    apply(shop, order("1042", "25.00", customer_id="c1", email=EMAIL, paid_at=T))
    sweep(work, T + timedelta(minutes=5))

    # then the customer is told (transactional: no marketing consent needed)
    assert len(smtp_server.messages) == 1
    assert "#1042" in smtp_server.messages[0].get_body(("plain",)).get_content()


@pytest.mark.parametrize("_case, language, expected, worth", [
    ("German shop", "de", "Dafür haben Sie 25 Punkte (≈ 0,25\xa0€) gesammelt.", "(≈ 0,25\xa0€)"),
    ("English shop", "en", "It earned you 25 points (≈ €0.25).", "(≈ €0.25)"),
])
def test_points_earned_notice_says_what_the_points_are_worth(make_shop, smtp_server, work, time_machine, _case,
                                                             language, expected, worth):
    # given a shop that sends points-earned notices, a point worth 1 cent ("5 € Rabatt" for 500 points)
    time_machine.move_to(T, tick=False)
    shop = make_shop("shopify", name="Demo Laden", language=language)
    program(shop, {**QUIET, "reminders": {"notices": {"points_earned": True}}})
    consent(shop, granted=False)

    # when an order earns 25 points
    apply(shop, order("1042", "25.00", customer_id="c1", email=EMAIL, paid_at=T))
    sweep(work, T + timedelta(minutes=5))

    # then the notice says what they are worth, in the shop's language, in both parts
    [mail] = smtp_server.messages
    assert expected in mail.get_body(("plain",)).get_content()
    assert worth in html_lib.unescape(mail.get_body(("html",)).get_content())


def test_double_opt_in_asks_once_and_the_button_behind_the_link_records_consent(make_shop, smtp_server, work, client, time_machine):
    # given a shop with our double opt-in and a new customer without consent
    time_machine.move_to(T, tick=False)
    shop = make_shop("woocommerce", name="Demo Laden")
    program(shop, {**QUIET, "reminders": {"consent": {"double_opt_in": True}}})
    consent(shop, granted=False)
    with session_scope() as s:
        s.scalars(select(Customer)).one().accepts_marketing = None

    # when the sweep runs twice
    sweep(work, T + timedelta(minutes=5))
    sweep(work, T + timedelta(hours=2))

    # then one confirmation e-mail; opening its link (as a mail scanner would) records nothing
    assert len(smtp_server.messages) == 1
    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    link = next(w for w in text.split() if "/consent/confirm/" in w).replace("http://localhost", "")
    page = client.get(link)
    assert page.status_code == 200
    assert f'<form method="post" action="{link}">' in page.get_data(as_text=True)
    with session_scope() as s:
        customer = s.scalars(select(Customer)).one()
        assert customer.accepts_marketing is None
        assert [e.kind for e in s.scalars(select(ConsentEvent))].count("doi_confirmed") == 0

    # and the page's button records consent with proof
    assert client.post(link).status_code == 200
    assert "bestätigt" in client.get(link).get_data(as_text=True)
    with session_scope() as s:
        customer = s.scalars(select(Customer)).one()
        events = [e.kind for e in s.scalars(select(ConsentEvent))]
    assert (customer.accepts_marketing, customer.consent_source) == (True, "double_opt_in")
    assert "doi_confirmed" in events


def test_woocommerce_consent_from_the_configured_meta_key(make_shop, post_webhook, work):
    # given a WooCommerce shop whose newsletter plugin stores consent in "newsletter_ok"
    import json

    from tests.conftest import fixture_bytes

    shop = make_shop("woocommerce")
    program(shop, {"reminders": {"consent": {"woocommerce_meta_key": "newsletter_ok"}}})
    body = json.loads(fixture_bytes("woocommerce", "customer_created.json"))
    body["meta_data"] = [{"id": 1, "key": "newsletter_ok", "value": "yes"}]

    # when the customer arrives
    post_webhook("woocommerce", "customer.created", body)
    work()

    # then consent is stored with its source and proof
    with session_scope() as s:
        customer = s.scalars(select(Customer)).one()
        events = [(e.kind, e.source) for e in s.scalars(select(ConsentEvent))]
    assert (customer.accepts_marketing, customer.consent_source) == (True, "woocommerce")
    assert events == [("granted", "woocommerce")]


def test_woocommerce_checkout_draft_is_an_abandoned_cart_until_paid(make_shop, post_webhook, work, smtp_server):
    # given a consenting WooCommerce customer whose block checkout left a checkout-draft order
    import json

    from tests.conftest import fixture_bytes

    shop = make_shop("woocommerce", name="Demo Woo")
    program(shop, {**QUIET, "reminders": {"cart": {"incentive_step": 0}}})
    draft = json.loads(fixture_bytes("woocommerce", "order_updated__checkout_draft.json"))
    with session_scope() as s:
        from app.loyalty.customers import upsert_customer

        upsert_customer(s, s.get(Shop, shop), ct.Customer(id=None, email=draft["billing"]["email"],
                                                          accepts_marketing=True))
    post_webhook("woocommerce", "order.updated", draft)
    work()
    modified = datetime.fromisoformat(draft["date_modified_gmt"]).replace(tzinfo=timezone.utc)

    # when the first step is due
    sweep(work, max(modified + timedelta(hours=1), datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)))

    # then the reminder links to the shop's cart (drafts have no payment link)
    assert len(smtp_server.messages) == 1
    assert "http://127.0.0.1:8888/cart/" in smtp_server.messages[0].get_body(("plain",)).get_content()


@pytest.mark.parametrize("_case, locale, subject, absent", [
    ("english customer of a german shop", "en-US", "Your basket at Demo Laden is still saved", "Ihr Warenkorb"),
    ("locale with underscore", "en_GB", "Your basket at Demo Laden is still saved", "Ihr Warenkorb"),
    ("german customer", "de-DE", "Ihr Warenkorb bei Demo Laden ist noch gespeichert", "Your basket"),
    ("unknown locale: the shop's language", None, "Ihr Warenkorb bei Demo Laden ist noch gespeichert",
     "Your basket"),
])
def test_reminder_speaks_the_customers_language(_case, locale, subject, absent, shop, smtp_server, work):
    # given a consenting customer of a German shop whose platform told us their `locale`
    from app.loyalty.customers import upsert_customer

    with session_scope() as s:
        upsert_customer(s, s.get(Shop, shop), ct.Customer(
            id="c1", email=EMAIL, first_name="Emma", locale=locale, accepts_marketing=True,
            marketing_consent_at=T - timedelta(days=30)))
    put_checkout(shop, checkout())

    # when the first cart reminder goes
    sweep(work, T + timedelta(hours=1))

    # then it is written in the customer's language
    assert [m["Subject"] for m in smtp_server.messages] == [subject]
    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert absent not in text
    assert ("Hi Emma," if subject.startswith("Your") else "Hallo Emma,") in text


def _incentive_code(shop: int):  # type: ignore[no-untyped-def]
    from app.models import IssuedCode

    with session_scope() as s:
        return s.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop, IssuedCode.purpose == "cart")).one()


@pytest.mark.parametrize("_case, lose_the_job", [
    ("the shop refused the code (no API credentials)", False),
    ("the code stayed pending longer than the wait", True),
])
def test_cart_reminder_whose_code_does_not_exist_goes_without_it(_case, lose_the_job, make_shop, smtp_server,
                                                                  work):
    # given a shop without API credentials whose last cart step carries a 10 % code
    from app.models import CodeStatus

    shop = make_shop("shopify", name="Demo Laden", language="de")
    program(shop, {**QUIET, "reminders": {"cart": {"incentive_step": 3}}})
    consent(shop)
    put_checkout(shop, checkout())
    for hours in (1, 24):
        sweep(work, T + timedelta(hours=hours))

    # when the last step is due: it waits for its code, which the shop cannot create
    sweep(work, T + timedelta(hours=72))
    assert messages()[-1] == ("cart", 3, "scheduled", "code_pending")
    code = _incentive_code(shop)
    assert code.status == CodeStatus.FAILED
    if lose_the_job:
        # (as if the code job were lost: the code stays pending)
        with session_scope() as s:
            row = s.get(type(code), code.id)
            row.status, row.error, row.created_at = CodeStatus.PENDING, None, T + timedelta(hours=72)
        sweep(work, T + timedelta(hours=72, minutes=1))
        assert messages()[-1] == ("cart", 3, "scheduled", "code_pending")
        sweep(work, T + timedelta(hours=74, minutes=1))
    else:
        sweep(work, T + timedelta(hours=72, minutes=1))

    # then the reminder goes without the code, and says so in its history
    assert len(smtp_server.messages) == 3
    last = smtp_server.messages[-1]
    body = last.get_body(("plain",)).get_content() + last.get_body(("html",)).get_content()
    assert code.code not in body
    assert "Rabatt" not in last["Subject"]
    assert messages()[-1] == ("cart", 3, "sent", "without_code")


@pytest.mark.parametrize("_case, fixture, sent", [
    ("guest ticked the box at checkout", "checkouts_create__guest_accepts_marketing.json", True),
    ("guest did not tick it", "checkouts_create__guest.json", False),
])
def test_guest_checkout_consent_comes_from_its_own_tick_box(_case, fixture, sent, shop, post_webhook, smtp_server,
                                                          work):
    # given a guest (no customer object, an e-mail) who left a Shopify checkout at 07:05 New York time
    from tests.conftest import fixture_bytes

    assert post_webhook("shopify", "checkouts/create", fixture_bytes("shopify", fixture)).status_code == 200
    work()
    left_at = datetime(2012, 10, 12, 11, 5, 27, tzinfo=timezone.utc)

    # when the first cart reminder is due
    sweep(work, left_at + timedelta(hours=1))

    # then the guest who ticked the box gets it, with a proof naming the checkout; the other none
    with session_scope() as s:
        customer = s.scalars(select(Customer)).one()
        proofs = [(e.kind, e.source, e.detail, e.created_at) for e in s.scalars(select(ConsentEvent))]
    if sent:
        assert [m["To"] for m in smtp_server.messages] == ["bob.norman@mail.example.com"]
        assert (customer.accepts_marketing, customer.consent_source) == (True, "checkout")
        assert proofs == [("granted", "checkout", {"platform": "shopify", "checkout": "2a1ace52255252df566af0faaedfbfa7"},
                           left_at)]
    else:
        assert smtp_server.messages == []
        assert messages() == [("cart", 1, "suppressed", "no_consent")]
        assert (customer.accepts_marketing, proofs) == (None, [])


def test_an_uninstalled_shop_sends_no_reminders(shop, smtp_server, work):
    # given a consenting customer's abandoned checkout, and then the shop uninstalls the app
    from app.models import Shop, ShopStatus

    consent(shop)
    put_checkout(shop, checkout())
    with session_scope() as s:
        s.get(Shop, shop).status = ShopStatus.UNINSTALLED

    # when the first step is due
    sweep(work, T + timedelta(hours=1))

    # then nothing is sent, and why is recorded (the data stays until shop/redact)
    assert smtp_server.messages == []
    assert messages() == [("cart", 1, "suppressed", "shop_uninstalled")]
