"""Storefront benchmark: the widget's balance endpoint next to a bare Flask endpoint (issue 17).

    .venv/bin/python -m bench.storefront [--db sqlite|postgresql|both] [--customers 100000]
        [--duration 5] [--warmup 1] [--rounds 4] [--fixed-rounds 3] [--fixed-duration 5]

Per database, two gunicorn servers run with the SAME settings (`_infra.GUNICORN_ARGS`: 2 sync
workers, loopback):
  bare  bench.refapp:create_bare_json()  GET any path -> a small JSON object, nothing else
  ours  app.wsgi:application              GET /proxy/shopify/api/balance as Shopify's app proxy
                                          forwards it: signature and timestamp checked, shop,
                                          member by platform id, balance by lot state, program,
                                          texts in the customer's language, JSON
The database holds `--customers` members of one Shopify shop (each with a lot, a ledger entry and
an order), so every read is an index look-up in a table of that size.

1. Saturation: wrk (16 connections, 1 thread) sends signed requests, round-robin over 1000 members
   chosen at random (each a correctly signed app proxy URL, re-signed before every run so the
   timestamp stays fresh); bare gets the same URLs. Rounds alternate which goes first (ABBA);
   ours/bare is the median of the rounds' own ratios. Target: >= 0.5.
2. Latency at half load: ours' max is measured again (wrk), then half of it is offered open-loop
   (bench/_loadgen.py: latency from the scheduled send time) for --fixed-duration s, one member
   (the generator sends one URL); median of the rounds. Target: p99 < 50 ms.
3. Checks (a failure raises): every answer 200 under load (wrk's status errors), and before the
   runs, a few members' answers equal their balance in the database (and a tampered signature is
   refused with 401).

Also printed: the widget's gzipped size (script + stylesheet) beside its 10 KB budget.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import _infra
from bench._infra import BenchError, fmt_row
from bench._loadgen import run_fixed_rate

APP_SECRET = "bench-app-proxy-secret"
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
PATH = "/proxy/shopify/api/balance"
SAMPLE = 1000

_WRK_LUA = r"""
-- Round-robin over pre-built GET requests (one a line in the file given as the first argument).
local requests = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do table.insert(requests, line) end
end
function request()
  i = i % #requests + 1
  return wrk.format("GET", requests[i])
end
function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\": %d, \"duration_us\": %d, \"status_errors\": %d, \"socket_errors\": %d, " ..
    "\"p50_us\": %d, \"p99_us\": %d}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def signed_path(customer: str, *, secret: str = APP_SECRET) -> str:
    """The balance URL as Shopify's app proxy forwards it for `customer`, signed now."""
    from connectors.shopify.webhooks import proxy_message

    query = [("locale", "de"), ("shop", _infra.SHOP_DOMAIN), ("logged_in_customer_id", customer),
             ("path_prefix", "/apps/stammkunde"), ("timestamp", str(int(time.time())))]
    signature = hmac.new(secret.encode(), proxy_message(query).encode(), hashlib.sha256).hexdigest()
    return f"{PATH}?{urlencode([*query, ('signature', signature)])}"


def populate(db: _infra.Database, customers: int) -> int:
    """Register the shop (no secret of its own: the app's signs) and `customers` members, each
    with one paid order, one available lot and its ledger entry. Returns the shop id."""
    from sqlalchemy import insert

    from app import db as app_db
    from app.models import Customer, LedgerEntry, LotState, Order, PointLot, Shop
    from app.shops import register_shop

    app_db.configure(db.url)
    with app_db.session_scope() as s:
        shop, _ = register_shop(s, keys=_infra.ENCRYPTION_KEY, platform="shopify", domain=_infra.SHOP_DOMAIN,
                                webhook_secret=None, credentials={"access_token": "shpat_bench"})
        shop_id = shop.id
    rng = random.Random(17)
    now = datetime.now(UTC)
    chunk = 5000
    for start in range(0, customers, chunk):
        ids = range(start + 1, min(customers, start + chunk) + 1)
        with app_db.session_scope() as s:
            s.execute(insert(Customer), [
                {"id": i, "shop_id": shop_id, "platform_id": str(7_000_000 + i), "email": f"k{i}@example.test",
                 "locale": "de", "created_at": now, "updated_at": now} for i in ids])
            points = {i: rng.randrange(50, 3000) for i in ids}
            s.execute(insert(Order), [
                {"id": i, "shop_id": shop_id, "platform_id": str(9_000_000 + i), "customer_id": i,
                 "number": f"#{i}", "is_paid": True, "currency": "EUR", "merchandise": points[i],
                 "paid_at": now - timedelta(days=30), "created_at": now, "updated_at": now} for i in ids])
            s.execute(insert(PointLot), [
                {"id": i, "shop_id": shop_id, "customer_id": i, "order_id": i, "points": points[i],
                 "remaining": points[i], "state": LotState.AVAILABLE, "earned_at": now - timedelta(days=30),
                 "available_at": now - timedelta(days=16), "rule": {"rule": "bench"},
                 "created_at": now, "updated_at": now} for i in ids])
            s.execute(insert(LedgerEntry), [
                {"id": i, "shop_id": shop_id, "customer_id": i, "lot_id": i, "order_id": i, "delta": points[i],
                 "pending_delta": 0, "available_delta": points[i], "reason": "earn", "source_type": "order",
                 "source_id": str(i), "detail": {"order": f"#{i}"}, "created_at": now} for i in ids])
    if db.kind == "postgresql":
        import psycopg

        with psycopg.connect(db.libpq_uri, autocommit=True) as conn:
            for table in ("customers", "orders", "point_lots", "ledger_entries"):
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {customers})")
            conn.execute("ANALYZE")
    else:
        import sqlite3

        with sqlite3.connect(db.sqlite_path) as conn:
            conn.execute("ANALYZE")
    return shop_id


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body.startswith(b"{") else {}
    finally:
        conn.close()


def check(db: _infra.Database, port: int, members: list[int]) -> None:
    """A few members' answers equal their balance in the database; a bad signature is refused."""
    for i in members[:5]:
        status, data = _get(port, signed_path(str(7_000_000 + i)))
        expected = _infra.count_rows(db, f"SELECT remaining FROM point_lots WHERE customer_id = {i}")
        if status != 200 or data.get("available") != expected:
            raise BenchError(f"member {i}: answered {status} {data} but holds {expected} points")
    status, _ = _get(port, signed_path("7000001", secret="not-the-app-secret"))
    if status != 401:
        raise BenchError(f"a request signed with another secret was answered {status}, not 401")


def run_wrk(port: int, paths: list[str], duration: float, connections: int = 16) -> dict[str, Any]:
    work = _infra.TMP / "wrk-storefront"
    work.mkdir(exist_ok=True)
    (work / "get.lua").write_text(_WRK_LUA)
    (work / "paths").write_text("\n".join(paths) + "\n")
    import subprocess

    cmd = [_infra.wrk_path(), "-t", "1", "-c", str(connections), "-d", f"{max(1, round(duration))}s", "--timeout", "5s",
           "-s", str(work / "get.lua"), f"http://127.0.0.1:{port}/", "--", str(work / "paths")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    result = json.loads(line.split(" ", 1)[1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    if result["status_errors"]:
        raise BenchError(f"{result['status_errors']} non-2xx answers under load")
    return result


def bench_database(kind: str, args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    db = _infra.make_database(kind, f"bench_storefront_{kind}")
    t0 = time.monotonic()
    populate(db, args.customers)
    print(f"  {kind}: {args.customers} members written in {time.monotonic() - t0:.0f} s", flush=True)
    servers = {
        "bare": _infra.start_gunicorn("bare", "bench.refapp:create_bare_json()", {}),
        "ours": _infra.start_ours(db, redis_url, {"SHOPIFY_API_SECRET": APP_SECRET}),
    }
    rng = random.Random(1)
    members = rng.sample(range(1, args.customers + 1), min(SAMPLE, args.customers))
    result: dict[str, Any] = {"database": kind, "customers": args.customers, "saturation": {}, "fixed_rate": []}
    try:
        check(db, servers["ours"].port, members)
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "ours": []}
        for r in range(args.rounds):
            order = ("bare", "ours") if r % 4 in (0, 3) else ("ours", "bare")
            for name in order:
                port = servers[name].port

                def once(port: int = port, server: _infra.Server = servers[name]) -> dict[str, Any]:
                    if args.warmup:
                        run_wrk(port, [signed_path(str(7_000_000 + i)) for i in members], args.warmup)
                    paths = [signed_path(str(7_000_000 + i)) for i in members]
                    cpu0 = _infra.tree_cpu_seconds(server.proc.pid)
                    res = run_wrk(port, paths, args.duration)
                    res["cpu_ms_per_req"] = 1000 * (_infra.tree_cpu_seconds(server.proc.pid) - cpu0) / res["requests"]
                    return res

                res, foreign = _infra.measured(f"{kind}/{name}", once, retries=args.retries,
                                               quiet_wait=args.quiet_wait)
                res["foreign_cpu_pct"] = round(foreign, 1)
                runs[name].append(res)
                print(f"  {kind:10s} round {r + 1}/{args.rounds} {name:4s} {res['rps']:8.0f} req/s  "
                      f"p50 {res['p50_us'] / 1000:6.2f} ms  p99 {res['p99_us'] / 1000:6.2f} ms  "
                      f"server cpu {res['cpu_ms_per_req']:.3f} ms/req  socket errors {res['socket_errors']}  foreign cpu {foreign:.0f}%", flush=True)
        for name, rs in runs.items():
            result["saturation"][name] = {
                "rps": statistics.median(x["rps"] for x in rs),
                "p99_ms": statistics.median(x["p99_us"] for x in rs) / 1000,
                "rounds": [round(x["rps"]) for x in rs],
                "cpu_ms_per_req": statistics.median(x["cpu_ms_per_req"] for x in rs),
            }
        result["ratios"] = [round(o["rps"] / b["rps"], 3) for o, b in zip(runs["ours"], runs["bare"], strict=True)]
        result["ratio"] = statistics.median(result["ratios"])

        # Latency at half of ours' max, measured again just before each round.
        port = servers["ours"].port
        for r in range(args.fixed_rounds):
            peak = run_wrk(port, [signed_path(str(7_000_000 + i)) for i in members], args.duration)["rps"]
            rate = peak / 2
            path = signed_path(str(7_000_000 + members[r % len(members)]))
            prefix = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Bench-Request: ".encode()
            suffix = b"\r\nConnection: close\r\n\r\n"
            time.sleep(1)
            fixed, foreign = _infra.measured(
                f"{kind}/fixed", lambda: run_fixed_rate(port, prefix, suffix, f"s{uuid.uuid4().hex[:6]}",
                                                        rate=rate, duration=args.fixed_duration),
                retries=args.retries, quiet_wait=args.quiet_wait)
            if fixed.non_200 or fixed.errors:
                raise BenchError(f"{kind}: {fixed.non_200} non-200 answers and {fixed.errors} errors at half load")
            result["fixed_rate"].append({"peak_rps": round(peak), "rate": round(rate), "p50_ms": fixed.p50_ms,
                                         "p99_ms": fixed.p99_ms, "max_ms": fixed.max_ms,
                                         "achieved_rps": fixed.achieved_rps, "foreign_cpu_pct": round(foreign, 1)})
            print(f"  {kind:10s} half load {r + 1}/{args.fixed_rounds}: {rate:6.0f} req/s offered "
                  f"(max {peak:.0f}), p50 {fixed.p50_ms:6.2f} ms  p99 {fixed.p99_ms:6.2f} ms  "
                  f"max {fixed.max_ms:6.1f} ms  foreign cpu {foreign:.0f}%", flush=True)
        result["half_load_p99_ms"] = statistics.median(x["p99_ms"] for x in result["fixed_rate"])
    finally:
        for server in servers.values():
            server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--fixed-rounds", type=int, default=3)
    parser.add_argument("--fixed-duration", type=float, default=5)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--quiet-wait", type=float, default=10)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    _infra.install_sigterm_cleanup()

    from app.web import widget

    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    print(f"storefront benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {_infra.machine()}", flush=True)
    redis_url = _infra.start_redis()
    results = [bench_database(kind, args, redis_url) for kind in kinds]
    size = widget.gzipped_size()
    print()
    widths = [11, 10, 10, 9, 11, 14, 18]
    print(fmt_row(["database", "bare rps", "ours rps", "ours/bare", "half load", "half-load p99",
                   "cpu/req bare|ours"], widths))
    ok = True
    for res in results:
        sat = res["saturation"]
        half = statistics.median(x["rate"] for x in res["fixed_rate"]) if res["fixed_rate"] else 0
        print(fmt_row([res["database"], f"{sat['bare']['rps']:.0f}", f"{sat['ours']['rps']:.0f}",
                       f"{res['ratio']:.2f}", f"{half:.0f}/s", f"{res['half_load_p99_ms']:.1f} ms",
                       f"{sat['bare']['cpu_ms_per_req']:.2f}|{sat['ours']['cpu_ms_per_req']:.2f} ms"], widths))
        ok &= res["ratio"] >= TARGET_RATIO and res["half_load_p99_ms"] < TARGET_P99_MS
    print(f"targets: ours/bare >= {TARGET_RATIO} (median of paired rounds), p99 at half load < {TARGET_P99_MS:.0f} ms")
    print(f"widget: {size} bytes gzipped (script + stylesheet), budget {10 * 1024} bytes "
          f"({100 * size / (10 * 1024):.0f} %)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "widget_gzipped_bytes": size}, indent=2, default=str))
    return 0 if ok and size <= 10 * 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
