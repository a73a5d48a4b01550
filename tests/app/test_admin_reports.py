"""The owner's report pages (analytics with charts, outstanding points at a date) and
`flask report liability`: who may open them and what they show."""

from __future__ import annotations

import re
from html import unescape

import pytest
from datetime import timedelta

from sqlalchemy import func, select

from app.db import session_scope
from app.loyalty import analytics
from app.models import AnalyticsReport, Customer, StaffAuditEntry, StaffRole
from app.web.staff import create_staff, grant_role
from tests.app.test_admin import STAFF_PASSWORD, _csrf_token, _sign_in
from tests.app.test_analytics import shop  # noqa: F401  (the analytics history)
from tests.app.test_liability import shop as liability_shop  # noqa: F401

pytestmark = pytest.mark.sqlite_only  # pages, files and output; the figures are tested on both databases

OWNER, SUPPORT, OTHER_OWNER = "owner@stammkunde.example", "support@stammkunde.example", "other@stammkunde.example"


def _staff(email: str, grants: dict[int, StaffRole], language: str | None = "en") -> None:
    # (the shops of these tests are German: their staff would get German pages unless they chose English)
    with session_scope() as s:
        user = create_staff(s, email, STAFF_PASSWORD)
        user.language = language
        for shop_id, role in grants.items():
            grant_role(s, shop_id=shop_id, staff_id=user.id, role=role, adjust_limit=0, granted_by="test")


def _as(client, email: str) -> None:  # type: ignore[no-untyped-def]
    assert _sign_in(client, email).status_code == 302


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


@pytest.fixture
def owner(client, shop):  # type: ignore[no-untyped-def]
    _staff(OWNER, {shop: StaffRole.OWNER})
    _as(client, OWNER)
    return client


def test_analytics_page_shows_kpis_with_definitions_and_charts_with_tables(owner, shop, time_machine, work):
    # when the owner opens the analytics page (12 weeks to day 10; period: the last 30 days), the
    # worker computes its report, and the owner opens the page again
    work()  # (the history's own jobs)
    first = owner.get(f"/admin/shops/{shop}/analytics").get_data(as_text=True)
    assert work() == 1
    response = owner.get(f"/admin/shops/{shop}/analytics")

    # then the first visit said the figures are being computed, and the page now answers with
    # the KPIs, each with its definition, and when they were computed (in the shop's zone)
    assert 'id="report-computing"' in first and 'id="order-earning-rate"' not in first
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    text = _text(html)
    assert re.search(r'id="order-earning-rate">\s*83.3 %', html)
    assert "Paid orders that earned points ÷ paid orders (5 of 6)" in text
    assert re.search(r'id="reward-usage-rate">\s*100.0 %', html)
    assert re.search(r'id="loyalty-revenue">\s*60.00 EUR', html)
    assert "Members 5 4 795.00 EUR 159.00 EUR 1.25 198.75 EUR" in text
    assert "Guests 1 1 40.00 EUR 40.00 EUR 1.00 40.00 EUR" in text
    assert "Redeemers 2 1 660.00 EUR 330.00 EUR 2.00 660.00 EUR" in text
    # and five charts, each an image named by its title and described (every value) for screen readers
    charts = re.findall(r'<svg class="chart"[^>]*role="img" aria-labelledby="(chart\d+-t) (chart\d+-d)"', html)
    assert len(charts) == 5
    for title_id, desc_id in charts:
        assert f'<title id="{title_id}">' in html and f'<desc id="{desc_id}">' in html
    assert "19.10.: 0, 26.10.: 600, 02.11.: 100, 09.11.: 35. Redeemed: " in html
    # with the same figures as tables
    assert "09.11. 35 0 0" in _text(html.split('id="points-per-week"')[1].split("</table>")[0])
    assert "09.11. 5 2 1 50.0 %" in _text(html.split('id="members-per-week"')[1].split("</table>")[0])
    # no inline style or script (the admin's CSP allows neither)
    assert "style=" not in html and "<script" not in html
    assert re.search(r'id="computed-at">Computed \S+', html)
    # and nothing more is asked of the worker while the report is fresh
    assert work() == 0


def test_a_stale_analytics_report_is_shown_and_computed_again(owner, shop, time_machine, work):
    # given a report computed when the page was first opened
    work()  # (the history's own jobs)
    owner.get(f"/admin/shops/{shop}/analytics")
    work()
    with session_scope() as s:
        first = analytics.latest(s, shop, "30d")

    # when the page is opened again after the report got stale, and the worker has run
    time_machine.shift(analytics.FRESH + timedelta(minutes=1))
    stale = owner.get(f"/admin/shops/{shop}/analytics").get_data(as_text=True)
    assert work() == 1

    # then the stale figures were shown meanwhile, and one newer report replaced them
    assert 'id="order-earning-rate"' in stale
    with session_scope() as s:
        second = analytics.latest(s, shop, "30d")
        rows = s.scalar(select(func.count()).select_from(AnalyticsReport))
    assert second.computed_at > first.computed_at and rows == 1
    assert second.report["kpis"]["paid_orders"] == first.report["kpis"]["paid_orders"]


def test_the_owner_asks_for_new_figures_and_a_missing_queue_is_said(owner, shop, work, monkeypatch):
    # when the owner, on the page of 30 days, asks for new figures of 12 months
    work()  # (the history's own jobs)
    owner.get(f"/admin/shops/{shop}/analytics")
    work()
    token = _csrf_token(owner.get(f"/admin/shops/{shop}/analytics").get_data(as_text=True))
    response = owner.post(f"/admin/shops/{shop}/analytics/refresh", data={"period": "365d", "csrf_token": token})

    # then one job computes them and the page shows them
    assert response.status_code == 302 and "period=365d" in response.headers["Location"]
    assert work() == 1
    assert 'id="order-earning-rate"' in owner.get(f"/admin/shops/{shop}/analytics?period=365d").get_data(as_text=True)

    # and when the queue cannot be reached, the page says so instead of waiting for nothing
    from redis.exceptions import ConnectionError as RedisConnectionError

    def unreachable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RedisConnectionError("refused")

    monkeypatch.setattr("app.queues.enqueue_once", unreachable)
    html = owner.get(f"/admin/shops/{shop}/analytics?period=90d").get_data(as_text=True)
    assert "queue cannot be reached" in html and 'id="report-computing"' in html


def test_report_pages_are_owner_work(client, shop):
    # given a support user of the shop and the owner of another shop
    _staff(SUPPORT, {shop: StaffRole.SUPPORT})
    from app.db import session_scope as scope
    from app.shops import register_shop
    from tests.conftest import TEST_ENCRYPTION_KEY

    with scope() as s:
        other_shop, _ = register_shop(s, keys=TEST_ENCRYPTION_KEY, platform="shopify", domain="anderer.myshopify.com",
                                      webhook_secret="x")
        other = other_shop.id
    _staff(OTHER_OWNER, {other: StaffRole.OWNER})
    urls = [f"/admin/shops/{shop}/analytics", f"/admin/shops/{shop}/liability", f"/admin/shops/{shop}/exports",
            f"/admin/shops/{shop}/exports/customers.csv", f"/admin/shops/{shop}/exports/ledger.csv",
            f"/admin/shops/{shop}/liability?format=csv"]

    # then support gets 403 everywhere
    _as(client, SUPPORT)
    assert [client.get(url).status_code for url in urls] == [403] * len(urls)
    # and the owner of another shop 404: this shop does not exist for them
    client.post("/admin/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                               client.get("/admin/").get_data(as_text=True)).group(1)})
    _as(client, OTHER_OWNER)
    assert [client.get(url).status_code for url in urls] == [404] * len(urls)
    # and nothing was exported
    with session_scope() as s:
        assert s.scalars(select(StaffAuditEntry).where(StaffAuditEntry.action.like("export.%"))).all() == []


@pytest.fixture
def liability_owner(client, liability_shop):  # type: ignore[no-untyped-def]
    _staff(OWNER, {liability_shop: StaffRole.OWNER})
    _as(client, OWNER)
    return client


def test_liability_page_and_csv(liability_owner, liability_shop):
    # when the owner asks for the end of July 2027
    response = liability_owner.get(f"/admin/shops/{liability_shop}/liability?at=2027-07-31")

    # then the page shows the total, its value, how the value was found, ages and expiry
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    text = _text(html)
    assert re.search(r'id="total">\s*175', html) and re.search(r'id="value">\s*3.50 EUR', html)
    assert "145 available, 30 pending" in text and "held by 4 customers" in text
    assert "1 point = 0.02 EUR, as the program (version 2) states." in text
    assert "over 12 months before 70 1.40 EUR" in text
    assert "Already past their expiry (the expiry sweep takes them) 25 0.50 EUR" in text
    assert "2027-08 50 1.00 EUR" in text
    # and the CSV has the same figures
    csv_response = liability_owner.get(f"/admin/shops/{liability_shop}/liability?at=2027-07-31&format=csv")
    assert csv_response.status_code == 200 and csv_response.mimetype == "text/csv"
    assert "outstanding,total,175,3.50,EUR" in csv_response.get_data(as_text=True).splitlines()


def test_liability_page_with_a_bad_date_says_so(liability_owner, liability_shop):
    response = liability_owner.get(f"/admin/shops/{liability_shop}/liability?at=31.07.2027")

    assert response.status_code == 400
    assert "'31.07.2027' is not a date (YYYY-MM-DD)" in _text(response.get_data(as_text=True))


def test_flask_report_liability(runner, liability_shop):
    from tests.conftest import SHOPIFY_DOMAIN

    # when the report is asked for from the shell, as a table and as CSV
    table = runner.invoke(args=["report", "liability", "--shop", SHOPIFY_DOMAIN, "--at", "2027-07-31"])
    as_csv = runner.invoke(args=["report", "liability", "--shop", SHOPIFY_DOMAIN, "--at", "2027-07-31",
                                 "--format", "csv"])

    assert table.exit_code == 0, table.output
    assert "1 point = 0.02 EUR, as the program (version 2) states." in table.output
    assert re.search(r"total\s+175\s+3.50 EUR", table.output)
    assert re.search(r"over 12 months\s+70\s+1.40 EUR", table.output)
    assert as_csv.exit_code == 0 and "outstanding,total,175,3.50,EUR" in as_csv.output.splitlines()


def test_flask_report_liability_refuses_an_unknown_shop_and_a_bad_date(runner, liability_shop):
    unknown = runner.invoke(args=["report", "liability", "--shop", "nope.myshopify.com", "--at", "2027-07-31"])
    bad_day = runner.invoke(args=["report", "liability", "--shop", "nope.myshopify.com", "--at", "July"])

    assert unknown.exit_code == 1 and "no shop registered for 'nope.myshopify.com'" in unknown.output
    assert bad_day.exit_code == 2 and "'July' is not a date; write YYYY-MM-DD" in bad_day.output


GERMAN_OWNER = "inhaberin@stammkunde.example"


@pytest.fixture
def german_owner(client, shop):  # type: ignore[no-untyped-def]
    _staff(GERMAN_OWNER, {shop: StaffRole.OWNER}, language="de")
    _as(client, GERMAN_OWNER)
    return client


def test_a_german_owner_reads_the_analytics_page_in_german(german_owner, shop, time_machine, work):
    # when an owner who chose German opens the analytics page, and again after the worker computed it
    work()  # (the history's own jobs)
    first = german_owner.get(f"/admin/shops/{shop}/analytics").get_data(as_text=True)
    assert work() == 1
    html = german_owner.get(f"/admin/shops/{shop}/analytics").get_data(as_text=True)
    text = _text(html)

    # then the "being computed" card was German
    assert "Die Zahlen dieses Zeitraums werden im Hintergrund berechnet" in _text(first)
    assert "Neu laden" in first and "The figures of this period" not in first
    # and the page is German: KPIs with their definitions, the computed line, tables and captions
    assert '<html lang="de">' in html
    assert re.search(r'id="computed-at">Berechnet am <time[^>]*>\d\d\.\d\d\.\d{4} \d\d:\d\d ME', html)
    assert "Jetzt neu berechnen" in text and "Letzte 12 Monate" in text
    for words in ("Kennzahlen", "Einlösequote", "Anteil der Bestellungen mit Punkten",
                  "Bezahlte Bestellungen, die Punkte gebracht haben ÷ bezahlte Bestellungen (5 von 6)",
                  "Nutzungsquote der Prämiencodes", "Umsatz durch das Treueprogramm", "Verfallsquote",
                  "Mitglieder und Gäste", "Durchschnittlicher Bestellwert", "Kunden mit und ohne Einlösung",
                  "Mitglieder 5 4 795.00 EUR 159.00 EUR 1.25 198.75 EUR", "Gäste 1 1 40.00 EUR",
                  "Tabelle: Punkte pro Woche", "Woche ab", "Wiederkaufrate", "Wiederkehrende Käufer",
                  "Verteilung auf die Stufen", "Warenkorb-Erinnerung"):
        assert words in text, words
    assert re.search(r'id="order-earning-rate">\s*83.3 %', html)
    assert 'aria-label="Punkte pro Woche"' in html and 'aria-label="Zeitraum"' in html
    # and so are the charts: titles, series and the descriptions screen readers read
    titles = re.findall(r'<title id="chart\d+-t">([^<]*)</title>', html)
    assert titles == ["Punkte pro Woche", "Mitglieder pro Woche", "Wiederkaufrate pro Woche",
                      "Zurückgewonnener Umsatz je Kampagne (letzte 30 Tage)", "Kunden je Stufe"]
    assert "Gesammelt: 24.08.: 0, 31.08.: 0," in html and "26.10.: 600, 02.11.: 100, 09.11.: 35. Eingelöst: 24.08.: 0" in html
    assert "Wiederkehrende Käufer: " in html
    # with no English left in the visible text
    for english in ("Key figures", "Redemption rate", "Computed", "Points per week", "Members and guests",
                    "Week from", "No tier", "Customers per tier", "Returning buyers", "Revenue won back"):
        assert english not in text, english


def test_a_german_owner_is_told_in_german_when_the_figures_cannot_be_computed(german_owner, shop, work, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    # given the analytics page, computed once
    work()  # (the history's own jobs)
    german_owner.get(f"/admin/shops/{shop}/analytics")
    work()
    token = _csrf_token(german_owner.get(f"/admin/shops/{shop}/analytics").get_data(as_text=True))

    # when the owner asks for new figures, and later the queue cannot be reached
    asked = german_owner.post(f"/admin/shops/{shop}/analytics/refresh", data={"period": "30d", "csrf_token": token})
    said = german_owner.get(asked.headers["Location"]).get_data(as_text=True)

    def unreachable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RedisConnectionError("refused")

    monkeypatch.setattr("app.queues.enqueue_once", unreachable)
    failed = german_owner.post(f"/admin/shops/{shop}/analytics/refresh", data={"period": "30d", "csrf_token": token})
    problem = german_owner.get(failed.headers["Location"]).get_data(as_text=True)

    # then both answers are German
    assert "Die Zahlen werden berechnet; laden Sie die Seite gleich neu." in said
    assert "Die Warteschlange der Hintergrundverarbeitung ist nicht erreichbar" in problem


@pytest.fixture
def german_liability_owner(client, liability_shop):  # type: ignore[no-untyped-def]
    _staff(GERMAN_OWNER, {liability_shop: StaffRole.OWNER}, language="de")
    _as(client, GERMAN_OWNER)
    return client


def test_a_german_owner_reads_the_liability_page_in_german_and_the_csv_stays_as_it_is(german_liability_owner,
                                                                                      liability_shop):
    # when an owner who chose German asks for the end of July 2027
    response = german_liability_owner.get(f"/admin/shops/{liability_shop}/liability?at=2027-07-31")

    # then the page is German: how the point was valued, the cards, the ages and the months of expiry
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    text = _text(html)
    assert "Offene Punkte (vorgemerkt und verfügbar) zum Ende des 31.07.2027 in der Zeitzone des Shops" in text
    assert "1 Punkt = 0.02 EUR, wie im Programm (Version 2) festgelegt." in text
    assert re.search(r'id="total">\s*175', html) and re.search(r'id="value">\s*3.50 EUR', html)
    assert "145 verfügbar, 30 vorgemerkt (innerhalb der Rückgabefrist), bei 4 Kunden." in text
    assert "Rückstellung für nicht eingelöste Punkte" in text
    assert "vor mehr als 12 Monaten 70 1.40 EUR" in text and "vor 0–3 Monaten" in text
    assert "Bereits abgelaufen (der Verfallslauf bucht sie noch aus) 25 0.50 EUR" in text
    assert "August 2027 50 1.00 EUR" in text and "Januar 2028 30 0.60 EUR" in text and "nach August 2028 0" in text
    assert "Nie (kein Verfall)" in text and "CSV herunterladen" in text
    assert 'aria-label="Was wann verfällt"' in html
    for english in ("Outstanding points", "months before", "as the program", "Already past", "Never", "available,"):
        assert english not in text, english
    # and the CSV keeps its English keys and labels, whoever downloads it
    csv_text = german_liability_owner.get(
        f"/admin/shops/{liability_shop}/liability?at=2027-07-31&format=csv").get_data(as_text=True)
    assert csv_text.splitlines()[0] == "section,item,points,value,currency"
    assert "outstanding,total,175,3.50,EUR" in csv_text.splitlines()
    assert "age,over 12 months,70,1.40,EUR" in csv_text.splitlines()


def test_a_german_owner_is_told_in_german_about_a_bad_date(german_liability_owner, liability_shop):
    response = german_liability_owner.get(f"/admin/shops/{liability_shop}/liability?at=31.07.2027")

    assert response.status_code == 400
    assert "'31.07.2027' ist kein Datum (JJJJ-MM-TT); angezeigt wird stattdessen der" in _text(response.get_data(as_text=True))
