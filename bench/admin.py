"""Admin benchmark: customer search, the customer list and the analytics page at a big shop's size.

    .venv/bin/python -m bench.admin [--customers 1000000] [--repeat 5]

1. One embedded PostgreSQL server (bench/_infra.py), a migrated database (head, so the trigram
   indexes of migration 0021 are there) and a real redis-server for the app.
2. PostgreSQL generates the data itself (`INSERT ... SELECT generate_series`), then VACUUM ANALYZE:
   one Shopify shop with N customers (first names from 40, last names from 60, e-mails
   `first.last<n>@<one of 8 domains>`, one in 1000 banned, tiers Bronze 70 % / Silber 20 % /
   Gold 8 % / Platin 2 %, joined over two years); 1.5 paid orders per customer over two years
   (numbers `#<n>`), one point lot and one `earn` entry per order; one redemption (with its
   reward code, a third of them used on a later order) per 10 customers; one failed code per
   1000 customers; one sent win-back per 20 customers, a fifth of them credited with an order.
3. Timed (`--repeat` runs each after one warm-up; median and max), through the same functions
   and pages the admin uses: `directory.search_customers` for several kinds of query, the
   `/admin/customers?q=` page, `directory.list_customers` (first page, a deep page by keyset, and
   each filter and sort) and the `/admin/customers` list page, the analytics report as the worker
   computes it (`analytics.refresh`) and the `/admin/shops/<id>/analytics` page showing it (30 days
   and 12 months), pages rendered by Flask's test client with a signed-in administrator. EXPLAIN (ANALYZE, BUFFERS) of the search
   is saved with the figures in bench/out/admin-*.json.

Targets (issue 18): search and list < 200 ms, analytics page < 1 s. Nothing in app/ is changed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import _infra

OUT = Path(__file__).parent / "out"
FIRST = ["Anna", "Ben", "Cora", "Dora", "Emil", "Frank", "Gina", "Hugo", "Ida", "Jan", "Karl", "Lena", "Mia",
         "Nils", "Olga", "Paul", "Quirin", "Rosa", "Sven", "Tina", "Ute", "Veit", "Wanda", "Xaver", "Yvonne",
         "Zoe", "Lukas", "Leonie", "Felix", "Marie", "Jonas", "Sophie", "Elias", "Hannah", "Noah", "Lea", "Paula",
         "Moritz", "Clara", "Theo"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
        "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann",
        "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Schmitz", "Krause", "Meier",
        "Lehmann", "Schmid", "Schulze", "Maier", "Köhler", "Herrmann", "König", "Walter", "Mayer", "Huber",
        "Kaiser", "Fuchs", "Peters", "Lang", "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Schubert", "Vogel",
        "Friedrich", "Keller", "Günther", "Frank", "Berger", "Winkler", "Roth", "Beck", "Lorenz"]
DOMAINS = ["example.test", "mail.example", "post.example", "web.example", "gmx.example", "t-online.example",
           "firma.example", "uni.example"]
NOW_DT = datetime.now(UTC).replace(microsecond=0)  # the data ends now: the pages read "the last 30 days"
NOW = f"TIMESTAMPTZ '{NOW_DT.isoformat()}'"


def _array(values: list[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _load_sql(shop_id: int, n: int) -> list[tuple[str, str]]:
    first, last, domains = _array(FIRST), _array(LAST), _array(DOMAINS)
    name = f"(({first})[1 + g % 40]), (({last})[1 + (g / 40) % 60])"
    email = (f"lower(({first})[1 + g % 40]) || '.' || lower(({last})[1 + (g / 40) % 60]) || g || '@' || "
             f"({domains})[1 + g % 8]")
    joined = f"{NOW} - make_interval(days => g % 730, mins => g % 1440)"
    orders = n + n // 2
    # order o belongs to customer ((o - 1) % n) + 1: customers 1..n/2 have two orders
    paid = f"{NOW} - make_interval(days => ((o::bigint * 7919) % 730)::int, mins => o % 1440)"
    redemptions = n // 10
    return [
        ("customers", f"""
            INSERT INTO customers (id, shop_id, platform_id, email, first_name, last_name, locale, accepts_marketing,
                tier, banned_at, ban_reason, referral_code, last_order_at, created_at, updated_at)
            SELECT g, {shop_id}, g::text, {email}, {name}, 'de', g % 10 <> 0,
                   CASE WHEN g % 50 = 0 THEN 'Platin' WHEN g % 50 < 5 THEN 'Gold' WHEN g % 5 = 1 THEN 'Silber'
                        ELSE 'Bronze' END,
                   CASE WHEN g % 1000 = 7 THEN {NOW} - interval '3 days' END,
                   CASE WHEN g % 1000 = 7 THEN 'bench' END,
                   'REF-' || g, {NOW} - make_interval(days => g % 300), {joined}, {joined}
            FROM generate_series(1, {n}) AS g"""),
        ("orders", f"""
            INSERT INTO orders (id, shop_id, platform_id, customer_id, number, email, status, platform_status,
                is_paid, currency, merchandise, merchandise_tax, taxes_included, shipping, total, total_weight_grams,
                tags, discount_codes, paid_at, platform_created_at, platform_updated_at, test, created_at, updated_at)
            SELECT o, {shop_id}, (1000000000 + o)::text, ((o - 1) % {n}) + 1, '#' || o, NULL, 'paid', 'paid',
                   true, 'EUR', 20 + (o % 180), 0, true, 4.90, 24.90 + (o % 180), 0,
                   '[]', CASE WHEN o > {n} AND (o - {n}) % 30 = 1
                              THEN json_build_array('SK-RW' || (((o - 1) % {n}) + 1)) ELSE '[]'::json END,
                   {paid}, {paid}, {paid}, false, {paid}, {paid}
            FROM generate_series(1, {orders}) AS o"""),
        ("point_lots", f"""
            INSERT INTO point_lots (id, shop_id, customer_id, order_id, points, remaining, state, earned_at,
                available_at, rule, created_at, updated_at)
            SELECT o, {shop_id}, ((o - 1) % {n}) + 1, o, 20 + (o % 180),
                   CASE WHEN o % 3 = 0 THEN 0 ELSE 20 + (o % 180) END,
                   CASE WHEN o % 3 = 0 THEN 'spent' ELSE 'available' END, {paid}, {paid} + interval '14 days',
                   '{{"rule": "order"}}', {paid}, {paid}
            FROM generate_series(1, {orders}) AS o"""),
        ("ledger_entries", f"""
            INSERT INTO ledger_entries (id, shop_id, customer_id, lot_id, order_id, delta, pending_delta,
                available_delta, shortfall, reason, source_type, source_id, detail, created_at)
            SELECT o, {shop_id}, ((o - 1) % {n}) + 1, o, o, 20 + (o % 180), 0, 20 + (o % 180), 0, 'earn', 'order',
                   o::text, '{{}}', {paid}
            FROM generate_series(1, {orders}) AS o"""),
        ("issued_codes", f"""
            INSERT INTO issued_codes (id, shop_id, customer_id, purpose, source_key, code, spec, status, attempts,
                error, created_at, updated_at)
            SELECT r, {shop_id}, r * 10 - 9, 'reward', r::text, 'SK-RW' || (r * 10 - 9), '{{}}',
                   CASE WHEN r % 100 = 0 THEN 'failed' ELSE 'created' END, 1,
                   CASE WHEN r % 100 = 0 THEN 'refused' END,
                   {NOW} - make_interval(days => r % 700), {NOW} - make_interval(days => r % 700)
            FROM generate_series(1, {redemptions}) AS r"""),
        ("redemptions", f"""
            INSERT INTO redemptions (id, shop_id, customer_id, reward_name, reward, program_version, points, source,
                idempotency_key, status, issued_code_id, created_at, updated_at)
            SELECT r, {shop_id}, r * 10 - 9, '5 € Rabatt', '{{}}', 1, 500, 'customer', 'bench-' || r,
                   CASE WHEN r % 100 = 0 THEN 'failed' ELSE 'created' END, r,
                   {NOW} - make_interval(days => r % 700), {NOW} - make_interval(days => r % 700)
            FROM generate_series(1, {redemptions}) AS r"""),
        ("ledger_entries (redeem)", f"""
            INSERT INTO ledger_entries (id, shop_id, customer_id, delta, pending_delta, available_delta, shortfall,
                reason, source_type, source_id, detail, created_at)
            SELECT {orders} + r, {shop_id}, r * 10 - 9, -500, 0, -500, 0, 'redeem', 'redemption', r::text, '{{}}',
                   {NOW} - make_interval(days => r % 700)
            FROM generate_series(1, {redemptions}) AS r"""),
        ("reminder_messages", f"""
            INSERT INTO reminder_messages (id, shop_id, customer_id, campaign, subject_key, step, marketing, email,
                status, due_at, sent_at, attempts, context, attributed_order_id, attributed_revenue, attributed_at,
                created_at, updated_at)
            SELECT w, {shop_id}, w * 20, 'winback', (w * 20)::text, 1, true, 'x@example.test', 'sent',
                   {NOW} - make_interval(days => w % 700), {NOW} - make_interval(days => w % 700), 1, '{{}}',
                   CASE WHEN w % 5 = 0 THEN w * 20 END, CASE WHEN w % 5 = 0 THEN 24.90 + ((w * 20) % 180) END,
                   CASE WHEN w % 5 = 0 THEN {NOW} - make_interval(days => w % 700) END,
                   {NOW} - make_interval(days => w % 700), {NOW} - make_interval(days => w % 700)
            FROM generate_series(1, {n // 20}) AS w"""),
    ]


def _timed(fn: Any, repeat: int) -> dict[str, float]:
    fn()  # warm-up (plans, caches)
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(runs), 1), "max_ms": round(max(runs), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    _infra.install_sigterm_cleanup()
    n = args.customers

    database = _infra.make_database("postgresql", f"bench_admin_{n}")
    shop_id = _infra.register_shop(database.url)
    redis_url = _infra.start_redis()
    import psycopg

    with psycopg.connect(database.libpq_uri, autocommit=True) as conn:
        for table, sql in _load_sql(shop_id, n):
            start = time.perf_counter()
            conn.execute(sql)
            print(f"loaded {table} in {time.perf_counter() - start:.1f} s", flush=True)
        for table in ("customers", "orders", "point_lots", "ledger_entries", "issued_codes", "redemptions",
                      "reminder_messages"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        start = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        print(f"VACUUM ANALYZE in {time.perf_counter() - start:.1f} s", flush=True)
        sizes = dict(conn.execute(
            "SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class WHERE relname LIKE 'ix_customers_%search'"
        ).fetchall())

    from app import create_app, db
    from app.loyalty import directory
    from app.web.staff import create_staff

    app = create_app({"TESTING": True, "DATABASE_URL": database.url, "REDIS_URL": redis_url,
                      "WTF_CSRF_ENABLED": False, "SHOP_CACHE_SECONDS": 0})
    with db.session_scope() as s:
        create_staff(s, "bench@stammkunde.example", "correct horse battery", admin=True)
    client = app.test_client()
    assert client.post("/admin/login", data={"email": "bench@stammkunde.example",
                                             "password": "correct horse battery"}).status_code == 302

    shops = frozenset({shop_id})
    mid = n // 2
    middle_email = None
    with db.session_scope() as s:
        from app.models import Customer

        middle = s.get(Customer, mid)
        middle_email = middle.email
        middle_cursor = f"0:{middle.id}:{middle.email}"
    searches = {
        "rare e-mail part (one customer)": middle_email.split("@")[0],
        "common last name": "schmidt",
        "first and last name": "anna schmidt",
        "e-mail domain (a quarter of all)": "web.example",
        "order number": f"#{n + 7}",
        "reward code": "SK-RW11",
        "short word (2 letters)": "an",
        "no match": "zzqqxx",
    }
    results: dict[str, Any] = {"customers": n, "orders": n + n // 2, "index_sizes": sizes, "search": {},
                               "search_page": {}, "list": {}, "analytics": {}}

    def search(q: str) -> Any:
        with db.session_scope() as s:
            return directory.search_customers(s, q, 101, shop_ids=shops)

    for label, q in searches.items():
        found = len(search(q))
        results["search"][label] = {"query": q, "found": found, **_timed(lambda q=q: search(q), args.repeat)}
        print(f"search  {label:<36} {q!r:<28} found {found:>4}  {results['search'][label]}", flush=True)
    for label in ("common last name", "order number"):
        q = searches[label]
        timing = _timed(lambda q=q: client.get("/admin/customers", query_string={"q": q}).status_code, args.repeat)
        results["search_page"][label] = timing
        print(f"page    /admin/customers?q={q!r:<24} {timing}", flush=True)

    for label, params in {"customers page (no search, default sort)": {},
                          "customers page, sorted by balance, highest first": {"sort": "available", "dir": "desc"},
                          "customers page, by balance, a page in the middle": {
                              "sort": "available", "dir": "desc", "after": f"0:{mid}:20"},
                          "customers page, by last order, newest first": {"sort": "last_order", "dir": "desc"},
                          "customers page, by name, tier Platin": {"sort": "name", "tier": "Platin"},
                          "customers page, no points, by balance": {"sort": "available", "balance": "0"}}.items():
        timing = _timed(lambda params=params: client.get("/admin/customers", query_string=params).status_code,
                        args.repeat)
        results["search_page"][label] = timing
        print(f"page    {label:<36} {timing}", flush=True)

    lists = {
        "first page (e-mail order)": {},
        "deep page (keyset, the middle)": {"after": middle_cursor},
        "newest first": {"sort": "created", "descending": True},
        "by balance, highest first": {"sort": "available", "descending": True},
        "by last name, a page in the middle (keyset)": {"sort": "name", "after": f"0:{mid}:Müller"},
        "banned (1 in 1000)": {"banned": True},
        "tier Platin (2 %)": {"tier": "Platin"},
        "with points": {"has_points": True},
        "with a failed code (1 in 1000)": {"failed_codes": True},
    }
    for label, kwargs in lists.items():
        def page(kwargs: dict[str, Any] = kwargs) -> Any:
            with db.session_scope() as s:
                return directory.list_customers(s, shop_id, **kwargs)
        rows = len(page().rows)
        results["list"][label] = {"rows": rows, **_timed(page, args.repeat)}
        print(f"list    {label:<36} rows {rows:>4}  {results['list'][label]}", flush=True)

    from app.loyalty import analytics

    for period in ("30d", "365d"):
        # The worker's part: computing the report (a few runs; it takes seconds at this size).
        def compute(period: str = period) -> Any:
            with db.session_scope() as s:
                return analytics.refresh(s, shop_id, period)
        results["analytics"][f"{period} report computed by the worker"] = _timed(compute, min(args.repeat, 2))
        print(f"worker  analytics report {period:<5} {results['analytics'][f'{period} report computed by the worker']}",
              flush=True)
        # The page's part: showing the kept report.
        url = f"/admin/shops/{shop_id}/analytics?period={period}"
        page = client.get(url)
        assert page.status_code == 200 and 'id="order-earning-rate"' in page.get_data(as_text=True), page.status_code
        results["analytics"][f"{period} page"] = _timed(lambda url=url: client.get(url).status_code, args.repeat)
        print(f"page    analytics {period:<5} {results['analytics'][f'{period} page']}", flush=True)

    with psycopg.connect(database.libpq_uri) as conn:
        plan = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM customers WHERE shop_id = %s AND merged_into_id IS NULL "
            "AND (email LIKE '%%schmidt%%' OR first_name ILIKE '%%schmidt%%' OR last_name ILIKE '%%schmidt%%') "
            "AND (email LIKE '%%anna%%' OR first_name ILIKE '%%anna%%' OR last_name ILIKE '%%anna%%') "
            "ORDER BY email, id LIMIT 101", (shop_id,)).fetchall()
        results["explain_anna_schmidt"] = [row[0] for row in plan]
    results["machine"] = _infra.machine()
    results["database"] = database.notes
    OUT.mkdir(exist_ok=True)
    out = OUT / f"admin-{n}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
