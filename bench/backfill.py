"""Backfill benchmark: orders/s of a Shopify backfill against the cost throttle, and its memory.

    .venv/bin/python -m bench.backfill [--orders 1000 10000] [--restore-rate 1000] [--bucket 10000]
        [--db sqlite|postgresql] [--latency-ms 0] [--check]

A backfill reads a shop's history page by page (`jobs.backfill.run`: Admin GraphQL `orders`,
3 orders a page, each request waiting for the cost bucket in `connectors.shopify.client.THROTTLE`),
stores every order in the inbox (one INSERT each, source `backfill`), hands each page's new
deliveries to RQ and saves its cursor. Its speed limit is the shop's cost budget, not our code:
the question is how close to that limit it runs, without a refusal, in flat memory.

Per order count N (default 1 000 and 10 000), in a fresh child process each:
1. bench/throttle_server.py over HTTPS on 127.0.0.1 with N synthetic orders (the Admin API node of
   tests/fixtures/shopify_admin_api/orders__paid.json with its own id, date and one of 500
   customers), Shopify's leaky bucket (`--restore-rate` points/s, `--bucket` maximum; defaults are
   Shopify Plus: 1000/s, 10 000) and Shopify's cost rules (requested cost taken before a request,
   the unused part given back: `query_cost`); a real redis-server; a migrated temp database; the
   shop registered with an encrypted token.
2. Timed: the child runs `jobs.backfill.start` + `jobs.backfill.run` exactly as `flask shops backfill`
   does (the worker is not run: processing is bench.worker's subject). The child reaches the server
   as the shop through bench/_resolve.py. Its peak RSS (VmHWM, reset after start-up through
   /proc/self/clear_refs) is read at the end.
3. Checks (a failure raises): N deliveries with source `backfill`, N distinct dedupe keys, the
   backfill row at N orders read, every delivery id in an RQ job.

Printed per N: orders/s; *allowed* = restoreRate / (actual cost per order, page overhead included,
from the server's books); *raw* = orders/s / allowed; *budget* = the fastest the budget allows,
max(0, total actual cost - bucket) / restoreRate, divided by the measured span (so the bucket's
head start counts as allowed); refusals (THROTTLED answers, target 0); the client's waits; peak RSS
and its growth over start-up. Targets: budget share >= 0.9, 0 refusals, peak RSS at 10 000 within
10 % (and 10 MB) of 1 000. Raw JSON goes to bench/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import _infra
from bench._infra import BenchError
from bench.codes import ACCESS_TOKEN, SHOP_DOMAIN, server_stats, start_throttle_server, write_sitecustomize

TARGET_SHARE = 0.9


def _child_env(db: _infra.Database, redis_url: str, port: int, ca: Path) -> dict[str, str]:
    site = write_sitecustomize()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({
        "DATABASE_URL": db.url, "REDIS_URL": redis_url, "ENCRYPTION_KEY": _infra.ENCRYPTION_KEY,
        "SECRET_KEY": os.environ["SECRET_KEY"], "STAMMKUNDE_ENV": "test",
        "INSTANCE_PATH": str(_infra.TMP / "instance"),
        "PYTHONPATH": f"{site}{os.pathsep}{_infra.PROJECT_ROOT}",
        "BENCH_RESOLVE": f"{SHOP_DOMAIN}:443=127.0.0.1:{port}", "REQUESTS_CA_BUNDLE": str(ca),
    })
    return env


def run_one(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Set up a server with `n` orders and a fresh database; run the child; check; return figures."""
    from bench.codes import setup_shop

    redis_url = _infra.start_redis()
    proc, port, ca = start_throttle_server(args.restore_rate, args.bucket, args.latency_ms, orders=n)
    db = _infra.make_database(args.db, f"backfill_{n}_{int(time.time())}")
    shop_id = setup_shop(db.url)
    from app import db as app_db
    from app.db import session_scope
    from app.models import Shop

    with session_scope() as s:
        s.get(Shop, shop_id).granted_scopes = "read_orders,read_customers,write_discounts,write_orders"
    app_db.dispose()
    with _infra.ForeignCpu() as foreign:
        done = subprocess.run([sys.executable, "-m", "bench._backfill_child", str(shop_id)],
                              cwd=str(_infra.PROJECT_ROOT), env=_child_env(db, redis_url, port, ca),
                              capture_output=True, timeout=args.timeout)
    if done.returncode != 0:
        raise BenchError(f"backfill child failed:\n{done.stderr.decode()[-3000:]}")
    run = json.loads(done.stdout.decode().strip().splitlines()[-1])
    stats = server_stats(port, ca, timeline=True)
    _infra.stop_process(proc)
    checks = verify(db, redis_url, n)
    return {"n": n, "run": run, "server": {k: v for k, v in stats.items() if k != "timeline"},
            "analysis": analyse(stats, run, n, args.restore_rate, args.bucket), "checks": checks,
            "foreign_cpu_pct": round(foreign.percent, 1)}


def analyse(stats: dict[str, Any], run: dict[str, Any], n: int, restore_rate: float, bucket: float) -> dict[str, Any]:
    """The shares of what the cost budget allows (see the module docstring)."""
    timeline = stats["timeline"]
    accepted = [row for row in timeline if row[2] != "throttled"]
    actual = float(stats["actual_cost"])
    per_order = actual / n
    allowed = restore_rate / per_order
    rate = n / run["wall_s"]
    span = accepted[-1][0] - accepted[0][0] if len(accepted) > 1 else run["wall_s"]
    fastest = max(0.0, actual - bucket) / restore_rate
    return {"orders_per_s": round(rate, 2), "allowed_per_s": round(allowed, 2), "raw": round(rate / allowed, 3),
            "budget": round(fastest / span, 3) if span > 0 else None, "span_s": round(span, 2),
            "fastest_s": round(fastest, 2), "actual_cost_per_order": round(per_order, 2),
            "refusals": stats["refusals"], "requests": stats["requests"]}


def verify(db: _infra.Database, redis_url: str, n: int) -> dict[str, Any]:
    """Every order is one delivery of source backfill, handed to RQ; the row says N read."""
    from redis import Redis
    from rq import Queue

    rows = _infra.count_rows(db, "SELECT COUNT(*) FROM webhook_deliveries WHERE source = 'backfill'")
    keys = _infra.count_rows(db, "SELECT COUNT(DISTINCT dedupe_key) FROM webhook_deliveries")
    read = _infra.count_rows(db, "SELECT orders_read FROM backfills")
    queue = Queue("webhooks", connection=Redis.from_url(redis_url))
    enqueued = sum(len(job.args[0]) for job in queue.get_jobs())
    if not rows == keys == read == enqueued == n:
        raise BenchError(f"expected {n} deliveries, keys, orders read and enqueued ids; got {rows}, {keys}, "
                         f"{read}, {enqueued}")
    return {"deliveries": rows, "distinct_keys": keys, "orders_read": read, "enqueued_ids": enqueued}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--restore-rate", type=float, default=1000.0)
    parser.add_argument("--bucket", type=float, default=10000.0)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    _infra.install_sigterm_cleanup()
    os.environ.setdefault("SECRET_KEY", "bench-secret-key")
    results = []
    for n in args.orders:
        print(f"backfill of {n} orders (restore {args.restore_rate:g}/s, bucket {args.bucket:g}, {args.db}) ...",
              flush=True)
        results.append(run_one(n, args))
    ok = report(results)
    out = _infra.PROJECT_ROOT / "bench" / "out" / f"backfill-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": _infra.machine(), "results": results}, indent=2))
    print(f"raw results: {out}")
    return 0 if ok or not args.check else 1


def report(results: list[dict[str, Any]]) -> bool:
    """Print the table; return whether every target is met."""
    widths = [7, 9, 9, 7, 7, 9, 9, 11, 11, 8]
    print(_infra.fmt_row(["orders", "orders/s", "allowed", "raw", "budget", "refusals", "waits", "peak RSS",
                          "RSS growth", "other%"], widths))
    ok = True
    for r in results:
        a, run = r["analysis"], r["run"]
        growth = run["rss_peak"] - run["rss_start"]
        print(_infra.fmt_row([r["n"], a["orders_per_s"], a["allowed_per_s"], a["raw"], a["budget"], a["refusals"],
                              run["client_waits"], f"{run['rss_peak'] / 2**20:.1f} MB", f"{growth / 2**20:.1f} MB",
                              r["foreign_cpu_pct"]], widths))
        ok &= a["refusals"] == 0 and (a["budget"] or 0) >= TARGET_SHARE
    if len(results) >= 2:
        small, large = results[0]["run"]["rss_peak"], results[-1]["run"]["rss_peak"]
        flat = large - small <= max(0.1 * small, 10 * 2**20)
        print(f"peak RSS {results[0]['n']} -> {results[-1]['n']} orders: {small / 2**20:.1f} -> "
              f"{large / 2**20:.1f} MB ({'flat' if flat else 'GROWS'})")
        ok &= flat
    print(f"targets (budget >= {TARGET_SHARE}, 0 refusals, flat memory): {'met' if ok else 'MISSED'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
