"""Step-by-step cost of the webhook request path, in one process, one request at a time.

    .venv/bin/python -m bench.breakdown [--db sqlite|postgresql|both] [--n 2000]

No gunicorn, no concurrency, no HTTP: each step of `app.webhooks.receive` is timed on its own
(median of --n calls, after a warm-up), then whole requests through Flask's test client for
`bare`, `floor`, `ours` and `whatif` (the same apps bench.ingest serves). It shows what each step
adds on top of the floor, and what the suggested changes (bench/whatif.py) would save. A real
redis-server runs, so the dispatcher's thread really enqueues (interval 50 ms, as configured).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import _infra
from bench._infra import fmt_row
from bench.ingest import _create_floor_table


def _timeit(fn: Callable[[int], Any], n: int, warmup: int = 200) -> float:
    """Median wall time of fn(i) in microseconds."""
    for i in range(warmup):
        fn(-1 - i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def bench_database(kind: str, redis_url: str, n: int) -> list[tuple[str, float, str]]:
    from flask import Flask
    from sqlalchemy import text
    from werkzeug.datastructures import Headers

    db = _infra.make_database(kind, f"bench_breakdown_{kind}")
    _infra.register_shop(db.url)
    _create_floor_table(db)
    floor_target = f"sqlite:///{db.sqlite_path}" if kind == "sqlite" else str(db.libpq_uri)
    os.environ["BENCH_DATABASE"] = floor_target
    os.environ["BENCH_SECRET"] = _infra.SHOP_SECRET
    os.environ["DATABASE_URL"] = db.url
    os.environ["REDIS_URL"] = redis_url

    from app import create_app
    from app import db as app_db
    from app.models import WebhookDelivery, utcnow
    from app.shops import webhook_secrets
    from app.webhooks import _answer, _kept_headers, _shops
    from bench import refapp, whatif
    from connectors import CONNECTORS

    whatif._state.clear()  # a new database: new engine and statement
    _shops._rows.clear()
    app = create_app()
    what = whatif.create_app()
    bare = refapp.create_bare()
    floor = refapp.create_floor()
    body = _infra.make_body(4096)
    nonce = uuid.uuid4().hex[:8]
    base_headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Hmac-Sha256": _infra.sign(_infra.SHOP_SECRET, body),
        "X-Shopify-Shop-Domain": _infra.SHOP_DOMAIN,
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Triggered-At": "2026-11-23T10:00:00.000Z",
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
    }
    connector = CONNECTORS["shopify"]
    rows: list[tuple[str, float, str]] = []

    def step(name: str, fn: Callable[[int], Any], note: str = "") -> None:
        us = _timeit(fn, n)
        rows.append((name, us, note))
        print(f"  {kind:10s} {name:55s} {us:9.1f} us", flush=True)

    headers = Headers({**base_headers, "X-Shopify-Event-Id": "x"})
    cfg = app.config
    with app.app_context():
        shop = _shops.get("shopify", _infra.SHOP_DOMAIN, cfg["SHOP_CACHE_SECONDS"])
        assert shop is not None
        step("shop from headers + _ShopCache.get (cached)",
             lambda i: _shops.get("shopify", connector.shop_from_headers(headers), cfg["SHOP_CACHE_SECONDS"]))
        step("webhook_secrets (decrypt is lru_cached)",
             lambda i: webhook_secrets(shop, cfg["ENCRYPTION_KEY"], None, None, utcnow()))
        step("connector.verify (HMAC-SHA256 of 4 KB)",
             lambda i: connector.verify(headers, body, secret=_infra.SHOP_SECRET, old_secret=None))
        step("json.loads(body) + delivery_key",
             lambda i: connector.delivery_key(headers, body, json.loads(body)))
        table = WebhookDelivery.__table__

        def values(i: int) -> dict[str, Any]:
            return dict(shop_id=shop.id, platform="shopify", topic="orders/paid", dedupe_key=f"bd-{nonce}-{i}",
                        headers=_kept_headers(headers), body=body, status="received", attempts=0,
                        received_at=utcnow())

        def app_insert(i: int) -> None:
            with app_db.get_engine().begin() as conn:
                stmt = app_db.dialect_insert_for(conn, table).values(**values(i))
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["shop_id", "dedupe_key"])
                             .returning(table.c.id)).scalar()

        from app import webhooks as app_webhooks

        if hasattr(app_webhooks, "record_delivery"):
            nonce0 = uuid.uuid4().hex[:8]

            def view_record(i: int) -> None:
                app_webhooks.record_delivery(shop.id, "shopify", "orders/paid", f"bv-{nonce0}-{i}",
                                             _kept_headers(headers), body)

            step("record as the view does now: app.webhooks.record_delivery", view_record,
                 "pooled raw driver connection; pool_pre_ping on PostgreSQL")
        step("record via engine.begin(), INSERT built per request, RETURNING, commit", app_insert,
             "the view's record step until 2026-11-23 18:34 UTC; BEGIN IMMEDIATE on SQLite")
        nonce2 = uuid.uuid4().hex[:8]
        engine, stmt = whatif._engine(db.url)

        def whatif_insert(i: int) -> None:
            v = values(i)
            v["dedupe_key"] = f"bw-{nonce2}-{i}"
            with engine.connect() as conn:
                conn.execute(stmt, v).scalar()

        step("record as whatif-core does: prebuilt INSERT, one autocommit statement", whatif_insert)

        def build_only(i: int) -> None:
            app_db.dialect_insert_for(app_db.get_engine(), table).values(**values(i)).on_conflict_do_nothing(
                index_elements=["shop_id", "dedupe_key"]).returning(table.c.id)

        nonce4 = uuid.uuid4().hex[:8]

        def raw_insert(i: int) -> None:
            v = values(i)
            v["dedupe_key"] = f"br-{nonce4}-{i}"
            whatif._raw_insert(db.url, v)

        step("record as whatif-raw does: own driver connection, one autocommit statement", raw_insert)
        step("  of which: building the INSERT construct per request", build_only)
        compiled = stmt.compile(dialect=engine.dialect, column_keys=list(values(0)))
        sql = str(compiled)
        nonce3 = uuid.uuid4().hex[:8]
        order = list(compiled.positiontup or []) if compiled.positional else None

        def driver_insert(i: int) -> None:
            v = values(i)
            v["dedupe_key"] = f"bx-{nonce3}-{i}"
            v["headers"] = json.dumps(v["headers"])
            if kind == "sqlite":
                v["received_at"] = v["received_at"].replace(tzinfo=None)
            params = tuple(v[k] for k in order) if order else v
            with engine.connect() as conn:
                conn.exec_driver_sql(sql, params).scalar()

        step("record via exec_driver_sql (SQL string built once, autocommit)", driver_insert)
        if kind == "postgresql":
            eng = app_db.get_engine()

            def checkout(i: int) -> None:
                with eng.connect():
                    pass

            step("  of which: pool checkout with pool_pre_ping (SELECT 1 round trip)", checkout)
        inbox = refapp._Inbox(floor_target)
        step("floor's record: raw driver, one autocommit INSERT", lambda i: inbox.insert(body))
        dispatcher = app.extensions["dispatcher"]
        step("dispatcher.notify (append; thread enqueues every 50 ms)", lambda i: dispatcher.notify(10**9 + i))
        dispatcher.flush()
    with app.test_request_context():
        step("_answer -> jsonify", lambda i: _answer(200, "accepted"))
    with app_db.get_engine().begin() as conn:
        conn.execute(text("DELETE FROM webhook_deliveries"))
    from redis import Redis

    Redis.from_url(redis_url).flushdb()

    def client_post(flask_app: Flask, tag: str) -> Callable[[int], Any]:
        client = flask_app.test_client()

        def post(i: int) -> None:
            h = {**base_headers, "X-Shopify-Event-Id": f"{tag}-{nonce}-{i}"}
            response = client.post("/webhooks/shopify", data=body, headers=h)
            assert response.status_code == 200, response.get_data()

        return post

    # The app's own per-request machinery (CSRF hook, session, login cookie hook, ...) on a no-op route.
    hooks = create_app()

    def noop_view() -> Any:
        return "", 200

    hooks.add_url_rule("/webhooks/shopify", "bench_noop", noop_view, methods=["POST"])
    hooks.view_functions["webhooks.receive"] = noop_view
    hooks.extensions["csrf"].exempt(noop_view)
    for name, flask_app in (("bare", bare), ("app hooks only (no-op view on create_app())", hooks),
                            ("floor", floor), ("ours", app), ("whatif-core", what), ("whatif-raw", what)):
        if name == "whatif-raw":
            os.environ["BENCH_WHATIF"] = "raw"
        try:
            step(f"whole request via test client: {name}", client_post(flask_app, name))
        finally:
            os.environ.pop("BENCH_WHATIF", None)
    app.extensions["dispatcher"].flush()
    what.extensions["dispatcher"].flush()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--n", type=int, default=2000, help="timed calls per step (default 2000)")
    args = parser.parse_args(argv)
    if not 10 <= args.n <= 100_000:
        parser.error("--n within 10..100000")
    _infra.install_sigterm_cleanup()
    machine = _infra.machine()
    redis_url = _infra.start_redis()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results = {}
    for kind in kinds:
        _infra.wait_for_quiet(max_wait=30)
        with _infra.ForeignCpu() as foreign:
            results[kind] = bench_database(kind, redis_url, args.n)
        print(f"  {kind}: other processes used {foreign.percent:.0f}% of a core meanwhile", flush=True)
    print()
    print(f"breakdown  {datetime.now(UTC):%Y-%m-%d %H:%M UTC}  nproc={machine['nproc']}  cpu={machine['cpu']}  "
          f"median of {args.n} calls, one at a time")
    widths = [78] + [12] * len(kinds)
    print(fmt_row(["step"] + [f"{k} us" for k in kinds], widths))
    names = [r[0] for r in results[kinds[0]]]
    for name in names:
        cells = []
        for k in kinds:
            match = [r for r in results[k] if r[0] == name]
            cells.append(f"{match[0][1]:.1f}" if match else "-")
        print(fmt_row([name] + cells, widths))
    for k in kinds:
        pg_only = [r for r in results[k] if r[0] not in names]
        for name, us, _ in pg_only:
            print(fmt_row([name] + [f"{us:.1f}" if kk == k else "-" for kk in kinds], widths))
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    path = out / f"breakdown-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"machine": machine, "n": args.n,
                                "results": {k: [list(r) for r in v] for k, v in results.items()}}, indent=2))
    print(f"\nraw results: {path.relative_to(_infra.PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
