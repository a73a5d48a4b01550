"""Scale-out: the app as many processes against one PostgreSQL and one Redis (issue 19).

    .venv/bin/python -m bench.scaleout [--orders 1500] [--duplicates 0.25]

Two web servers (`app.wsgi:application` under gunicorn, each on its own port, as two machines
would run them) and 1, 2 and 3 worker processes (`rq worker --burst`, the Procfile's worker) share
one PostgreSQL and one Redis. Per round, N distinct signed `orders/paid` deliveries are posted,
half to each server, and a share of them a second time to the OTHER server (the same event, as a
platform's retry landing elsewhere); then the workers are started and timed until the queue is
empty. Checks (a failure raises): every POST answered 200; one delivery row per distinct event;
every row processed; exactly one earn entry per order; nothing in RQ's failed registry. Printed:
orders/s per worker count. Bounded: fixed counts, loopback only, every process stopped at exit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import requests

from bench import _infra
from bench._infra import BenchError, fmt_row
from bench.worker import order_bodies


def _post(port: int, body: bytes, event_id: str) -> int:
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Hmac-Sha256": _infra.sign(_infra.SHOP_SECRET, body),
        "X-Shopify-Shop-Domain": _infra.SHOP_DOMAIN,
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Event-Id": event_id,
    }
    return requests.post(f"http://127.0.0.1:{port}/webhooks/shopify", data=body, headers=headers, timeout=30).status_code


def run_round(db: _infra.Database, redis_url: str, servers: list[_infra.Server], workers: int, start: int, n: int,
              duplicates: float) -> dict[str, float]:
    """Post N orders across both servers (with duplicates on the other one), then time `workers` workers."""
    bodies = order_bodies(start, n)
    posts = []
    for k, body in enumerate(bodies):
        event = f"scaleout-{start + k}"
        first, other = servers[k % 2], servers[(k + 1) % 2]
        posts.append((first.port, body, event))
        if (k * 7919) % 1000 < duplicates * 1000:  # spread the duplicates over the round
            posts.append((other.port, body, event))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: _post(*p), posts))
    if any(a != 200 for a in answers):
        raise BenchError(f"not every POST was answered 200: {sorted(set(answers))}")
    # The servers' dispatchers hand the ids to Redis within DISPATCH_INTERVAL_MS.
    time.sleep(1.0)
    env = {**os.environ, "DATABASE_URL": db.url, "REDIS_URL": redis_url}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([str(_infra.VENV_BIN / "rq"), "worker", "--burst", "--worker-class",
                               "rq.worker.SimpleWorker", "--url", redis_url, "--logging_level", "WARNING", "webhooks"],
                              cwd=str(_infra.PROJECT_ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(workers)]
    try:
        for proc in procs:
            if proc.wait(600) != 0:
                raise BenchError(f"a worker failed: {proc.stderr.read()[-2000:]!r}")  # type: ignore[union-attr]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    wall = time.perf_counter() - t0
    return {"workers": workers, "orders": n, "posts": len(posts), "wall_s": wall, "rate": n / wall}


def check(db: _infra.Database, redis_url: str, total: int) -> None:
    """Exactly once: one row per distinct event, all processed, one earn entry per order."""
    from redis import Redis
    from rq import Queue
    from rq.registry import FailedJobRegistry

    rows = _infra.count_rows(db, "SELECT count(*) FROM webhook_deliveries")
    processed = _infra.count_rows(db, "SELECT count(*) FROM webhook_deliveries WHERE status = 'processed'")
    earned = _infra.count_rows(db, "SELECT count(*) FROM ledger_entries WHERE reason = 'earn'")
    failed = len(FailedJobRegistry(queue=Queue("webhooks", connection=Redis.from_url(redis_url))))
    if (rows, processed, earned, failed) != (total, total, total, 0):
        raise BenchError(f"not exactly once: {rows} rows, {processed} processed, {earned} earn entries, "
                         f"{failed} failed jobs for {total} orders")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1500, help="distinct orders per round")
    parser.add_argument("--duplicates", type=float, default=0.25, help="share posted again to the other server")
    args = parser.parse_args(argv)
    _infra.install_sigterm_cleanup()
    redis_url = _infra.start_redis()
    db = _infra.make_database("postgresql", "bench_scaleout")
    _infra.register_shop(db.url)
    servers = [_infra.start_ours(db, redis_url, name=f"web-{x}") for x in "ab"]
    results = []
    total = 0
    try:
        for workers in (1, 2, 3):
            result = run_round(db, redis_url, servers, workers, total, args.orders, args.duplicates)
            total += args.orders
            check(db, redis_url, total)
            results.append(result)
            print(f"  {workers} worker(s): {result['rate']:6.0f} orders/s ({result['posts']} posts of "
                  f"{result['orders']} orders, {result['wall_s']:.1f} s)", flush=True)
    finally:
        for server in servers:
            server.stop()
    machine = _infra.machine()
    print()
    print(f"scale-out benchmark  {datetime.now(UTC):%Y-%m-%d %H:%M UTC}  nproc={machine['nproc']}  cpu={machine['cpu']}")
    print("  2 web servers (gunicorn -w 2 each) and 1-3 `rq worker --burst` processes on one PostgreSQL and one Redis")
    widths = [8, 8, 8, 9, 10, 10]
    print(fmt_row(["workers", "orders", "posts", "wall s", "orders/s", "vs 1"], widths))
    for r in results:
        print(fmt_row([r["workers"], r["orders"], r["posts"], f"{r['wall_s']:.1f}", f"{r['rate']:.0f}",
                       f"{r['rate'] / results[0]['rate']:.2f}"], widths))
    print(f"checked: {total} orders, one delivery row and one earn entry each, all processed, no failed job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
