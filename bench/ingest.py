"""Ingest benchmark: webhooks/s and latency of `POST /webhooks/shopify` next to two references.

    .venv/bin/python -m bench.ingest [--db sqlite|postgresql|both] [--duration 10] [--rounds 1] [--fixed-rounds 3]

The figures in bench/RESULTS.md come from `--duration 3 --warmup 1 --rounds 20`.

For each database, three gunicorn servers run with the SAME settings (2 sync workers, loopback):
  bare   bench.refapp:create_bare()   a Flask endpoint that reads the body and answers 200
  floor  bench.refapp:create_floor()  HMAC-SHA256 verify + one committed INSERT of the body (raw driver)
  ours   app.wsgi:application         the real app (as the Procfile runs it): shop, verify, parse,
                                      INSERT ... ON CONFLICT DO NOTHING, dispatcher
A real redis-server runs, so ours' dispatcher really enqueues its batches.

1. Saturation: wrk (16 connections, 1 thread) posts a 4096-byte signed orders/paid body; each request
   carries a new X-Shopify-Event-Id, so each is a new delivery (checked afterwards in the database).
1b. Each round runs floor and ours back to back (ABBA); ours/floor is the median of the rounds' ratios.
2. Latency: an open-loop fixed-rate generator (bench/_loadgen.py) offers half of ours' max rate to
   ours (and to floor at the same rate) and reports p50/p99 measured from the scheduled send time;
   --fixed-rounds rounds, ABBA, median of the rounds' figures. Ours' max is measured again (wrk,
   --duration s) just before each round, because the host's speed drifts within seconds.

Afterwards it checks that every 200 was a new row, and that every delivery row of ours was handed to
RQ (the ids in the enqueued `process_deliveries` jobs add up to the rows). A failed check raises.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import _infra
from bench._infra import BenchError, fmt_row
from bench._loadgen import run_fixed_rate
from bench.refapp import FLOOR_TABLE, floor_table_sql

ENDPOINTS = ("bare", "floor", "ours")
TARGET_FLOOR_RATIO = 0.9
TARGET_P99_MS = 50.0


def _post_once(port: int, prefix: bytes, suffix: bytes) -> tuple[int, bytes]:
    """Send one request (a fresh event id) and return (status, body)."""
    raw = prefix + f"sanity-{uuid.uuid4().hex}".encode() + suffix
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if not line.startswith("Host:"))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/webhooks/shopify", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _rows(db: _infra.Database, name: str) -> int:
    if name == "ours":
        return _infra.count_rows(db, "SELECT COUNT(*) FROM webhook_deliveries")
    if name == "floor":
        return _infra.count_rows(db, f"SELECT COUNT(*) FROM {FLOOR_TABLE}")
    return 0


def _enqueued_ids(redis_url: str) -> tuple[int, int, int]:
    """Return (jobs, ids in them, distinct ids) of the `process_deliveries` jobs waiting in Redis."""
    from redis import Redis
    from rq import Queue

    queue = Queue("webhooks", connection=Redis.from_url(redis_url))
    jobs = 0
    ids: list[int] = []
    for job in queue.get_jobs():
        if job.func_name != "jobs.deliveries.process_deliveries":
            raise BenchError(f"unexpected job in the webhooks queue: {job.func_name}")
        jobs += 1
        ids.extend(job.args[0])
    return jobs, len(ids), len(set(ids))


def _create_floor_table(db: _infra.Database) -> None:
    if db.kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db.sqlite_path)
        conn.execute(floor_table_sql("sqlite"))
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(db.libpq_uri, autocommit=True) as conn:
            conn.execute(floor_table_sql("postgresql"))


def _settle() -> None:
    """Before a latency round: write back what saturation left dirty in the page cache, and let
    its backlog drain. The kernel would otherwise write those tens of MB ~30 s later
    (vm.dirty_expire_centisecs) in the middle of some later round, stalling that round's fsyncs
    and taking its CPU (bench/RESULTS.md, eighth pass); each round now starts from the same state."""
    os.sync()
    time.sleep(1)


def bench_database(kind: str, args: argparse.Namespace, redis_url: str, body: bytes) -> dict[str, Any]:
    db = _infra.make_database(kind, f"bench_ingest_{kind}")
    _infra.register_shop(db.url)
    _create_floor_table(db)

    servers = {
        "bare": _infra.start_gunicorn("bare", "bench.refapp:create_bare()", {}),
        "floor": _infra.start_floor(db),
        "ours": _infra.start_ours(db, redis_url),
    }
    endpoints = ENDPOINTS
    parts = {name: _infra.shopify_request_parts(s.port, body) for name, s in servers.items()}
    result: dict[str, Any] = {"database": kind, "db_notes": db.notes, "endpoints": endpoints,
                              "saturation": {}, "fixed_rate": {}}
    try:
        # Sanity: each answers 200, ours accepts the delivery as new.
        for name, server in servers.items():
            status, answer = _post_once(server.port, *parts[name])
            if status != 200 or (name != "bare" and name != "floor" and json.loads(answer).get("message") != "accepted"):
                raise BenchError(f"{name} answered {status} {answer[:200]!r} to a signed delivery")

        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in endpoints}
        for r in range(args.rounds):
            # floor and ours run back to back, taking turns at going first (ABBA over the rounds),
            # so each round's ours/floor compares two runs a few seconds apart; bare runs last.
            order = ("floor", "ours", "bare") if r % 4 in (0, 3) else ("ours", "floor", "bare")
            for name in order:
                server = servers[name]
                prefix, suffix = parts[name]

                def run_once(name: str = name, server: _infra.Server = server, prefix: bytes = prefix,
                             suffix: bytes = suffix, r: int = r) -> dict[str, Any]:
                    if args.warmup > 0:
                        _infra.run_wrk(server.port, prefix, suffix, f"warm{r}{uuid.uuid4().hex[:8]}",
                                       duration=args.warmup, connections=args.connections, threads=args.threads)
                    before = _rows(db, name)
                    cpu0 = _infra.tree_cpu_seconds(server.proc.pid)
                    pm = _infra.postmaster_pid()
                    db_cpu0 = _infra.tree_cpu_seconds(pm) if pm else 0.0
                    res = _infra.run_wrk(server.port, prefix, suffix, f"r{r}{uuid.uuid4().hex[:8]}",
                                         duration=args.duration, connections=args.connections,
                                         threads=args.threads)
                    res["app_cpu_ms_per_req"] = 1000 * (_infra.tree_cpu_seconds(server.proc.pid) - cpu0) / res["requests"]
                    res["db_cpu_ms_per_req"] = (
                        1000 * (_infra.tree_cpu_seconds(pm) - db_cpu0) / res["requests"] if pm else 0.0
                    )
                    time.sleep(0.5)  # in-flight requests finish, the dispatcher flushes (200 ms)
                    res["new_rows"] = _rows(db, name) - before
                    if res["status_errors"]:
                        raise BenchError(f"{kind}/{name}: {res['status_errors']} non-2xx answers under load")
                    if name != "bare" and res["new_rows"] < res["requests"]:
                        raise BenchError(
                            f"{kind}/{name}: {res['requests']} answers but only {res['new_rows']} new rows "
                            "(duplicates, or the request path did not commit)"
                        )
                    return res

                res, foreign = _infra.measured(f"{kind}/{name}", run_once, retries=args.retries,
                                               quiet_wait=args.quiet_wait)
                res["foreign_cpu_pct"] = round(foreign, 1)
                runs[name].append(res)
                print(f"  {kind:10s} round {r + 1}/{args.rounds} {name:5s} {res['rps']:8.0f} req/s  "
                      f"p50 {res['p50_us'] / 1000:6.2f} ms  p99 {res['p99_us'] / 1000:6.2f} ms  "
                      f"app cpu {res['app_cpu_ms_per_req']:.3f} ms  db cpu {res['db_cpu_ms_per_req']:.3f} ms  "
                      f"socket errors {res['socket_errors']}  foreign cpu {foreign:.0f}%", flush=True)
        for name in endpoints:
            rs = runs[name]
            result["saturation"][name] = {
                "rps": statistics.median(x["rps"] for x in rs),
                "p50_ms": statistics.median(x["p50_us"] for x in rs) / 1000,
                "p99_ms": statistics.median(x["p99_us"] for x in rs) / 1000,
                "requests": sum(x["requests"] for x in rs),
                "socket_errors": sum(x["socket_errors"] for x in rs),
                "rounds": [round(x["rps"], 1) for x in rs],
                "max_foreign_cpu_pct": max(x["foreign_cpu_pct"] for x in rs),
                "app_cpu_ms_per_req": statistics.median(x["app_cpu_ms_per_req"] for x in rs),
                "db_cpu_ms_per_req": statistics.median(x["db_cpu_ms_per_req"] for x in rs),
            }

        # The host's speed drifts by up to 2x within a minute (bench/RESULTS.md), so the runs of one
        # round (a few seconds apart) are compared with each other; the median of those ratios is
        # the figure the target is checked on.
        result["runs"] = runs
        result["paired_ratios"] = [
            round(o["rps"] / f["rps"], 3) for o, f in zip(runs["ours"], runs["floor"], strict=True)
        ]

        # Latency at half of ours' max load, open loop (wrk2-style), in --fixed-rounds rounds. The
        # host's speed drifts by up to 2x within seconds, so a rate set from the saturation rounds
        # minutes earlier can be a quarter or all of the max by the time it is offered (bench/
        # RESULTS.md, eighth pass). So each round first measures ours' max again (--duration s of
        # wrk), then offers half of it to ours and to floor, back to back (ABBA); per endpoint the
        # median of the rounds' figures is reported, and each round's rate and p99s are kept.
        fixed_runs: dict[str, list[dict[str, Any]]] = {"ours": [], "floor": []}
        for r in range(args.fixed_rounds if args.fixed_duration > 0 else 0):
            if args.fixed_rate == "per-round":
                prefix, suffix = parts["ours"]

                def max_once(prefix: bytes = prefix, suffix: bytes = suffix, r: int = r) -> dict[str, Any]:
                    res = _infra.run_wrk(servers["ours"].port, prefix, suffix, f"max{r}{uuid.uuid4().hex[:8]}",
                                         duration=args.duration, connections=args.connections, threads=args.threads)
                    if res["status_errors"]:
                        raise BenchError(f"{kind}/ours: {res['status_errors']} non-2xx answers under load")
                    return res

                res, _ = _infra.measured(f"{kind}/ours max before fixed round", max_once, retries=args.retries,
                                         quiet_wait=args.quiet_wait)
                rate = round(res["rps"] / 2)
            else:
                rate = round(result["saturation"]["ours"]["rps"] / 2)
            _settle()
            for name in (("ours", "floor") if r % 4 in (0, 3) else ("floor", "ours")):
                server = servers[name]
                prefix, suffix = parts[name]

                def fixed_once(name: str = name, server: _infra.Server = server, prefix: bytes = prefix,
                               suffix: bytes = suffix, rate: int = rate) -> Any:
                    before = _rows(db, name)
                    fr = run_fixed_rate(server.port, prefix, suffix, f"fixed{uuid.uuid4().hex[:8]}",
                                        rate=rate, duration=args.fixed_duration)
                    time.sleep(0.5)
                    new_rows = _rows(db, name) - before
                    if fr.non_200 or fr.errors or new_rows < fr.ok:
                        raise BenchError(f"{kind}/{name} fixed rate: {fr.non_200} non-200, {fr.errors} errors, "
                                         f"{new_rows} new rows for {fr.ok} answers")
                    return fr

                fr, foreign = _infra.measured(f"{kind}/{name} fixed rate", fixed_once, retries=args.retries,
                                             quiet_wait=args.quiet_wait)
                fr.foreign_cpu_pct = round(foreign, 1)
                fixed_runs[name].append(fr.__dict__)
                print(f"  {kind:10s} fixed round {r + 1}/{args.fixed_rounds} {rate} req/s {name:5s} achieved "
                      f"{fr.achieved_rps:7.0f}  p50 {fr.p50_ms:6.2f} ms  p99 {fr.p99_ms:6.2f} ms  "
                      f"max {fr.max_ms:6.1f} ms", flush=True)
        for name, frs in fixed_runs.items():
            if frs:
                summary = {key: statistics.median(f[key] for f in frs) for key in frs[0]}
                summary["rounds_p99_ms"] = [round(f["p99_ms"], 2) for f in frs]
                summary["rounds_rate"] = [round(f["offered_rps"]) for f in frs]
                summary["runs"] = frs
                result["fixed_rate"][name] = summary

        # Every delivery row of ours went to RQ, once.
        time.sleep(0.5)
        rows = _rows(db, "ours")
        jobs, ids, distinct = _enqueued_ids(redis_url)
        if ids != rows or distinct != rows:
            raise BenchError(f"{kind}: {rows} delivery rows but {ids} ids ({distinct} distinct) in {jobs} RQ jobs")
        result["dispatch"] = {"rows": rows, "jobs": jobs, "ids": ids, "ids_per_job": ids / jobs if jobs else 0}
    finally:
        for server in servers.values():
            server.stop()
    from redis import Redis

    Redis.from_url(redis_url).flushdb()
    return result


def print_report(results: list[dict[str, Any]], args: argparse.Namespace, machine: dict[str, str]) -> bool:
    print()
    print(f"ingest benchmark  {datetime.now(UTC):%Y-%m-%d %H:%M UTC}  nproc={machine['nproc']}  cpu={machine['cpu']}")
    print(f"  gunicorn {' '.join(_infra.GUNICORN_ARGS)}; wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration:g}s (+{args.warmup:g}s warm-up), {args.rounds} round(s), median shown; "
          f"body 4096 B, new X-Shopify-Event-Id per request; loopback only")
    ok = True
    widths = [12, 8, 8, 8, 9, 13, 12, 10]
    for res in results:
        sat = res["saturation"]
        endpoints = res["endpoints"]
        print()
        print(f"[{res['database']}]  {', '.join(f'{k}={v}' for k, v in res['db_notes'].items())}")
        print(fmt_row(["endpoint", "req/s", "p50 ms", "p99 ms", "vs floor", "app cpu/req", "db cpu/req",
                       "other cpu"], widths))
        for name in endpoints:
            s = sat[name]
            print(fmt_row([name, f"{s['rps']:.0f}", f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}",
                           f"{s['rps'] / sat['floor']['rps']:.2f}", f"{s['app_cpu_ms_per_req']:.3f} ms",
                           f"{s['db_cpu_ms_per_req']:.3f} ms" if res["database"] == "postgresql" else "(in app)",
                           f"{s['max_foreign_cpu_pct']:.0f}%"], widths))
        ours_bare = sat["ours"]["rps"] / sat["bare"]["rps"]
        paired = res["paired_ratios"]
        ours_floor = statistics.median(paired)
        floor_ok = ours_floor >= TARGET_FLOOR_RATIO
        print(f"ours/bare  = {ours_bare:.2f}")
        print(f"ours/floor = {ours_floor:.2f} (median of the rounds' ratios: {', '.join(f'{x:.2f}' for x in paired)}; "
              f"ratio of the medians {sat['ours']['rps'] / sat['floor']['rps']:.2f})   "
              f"target >= {TARGET_FLOOR_RATIO}: {'MET' if floor_ok else 'NOT MET'}")
        ok &= floor_ok
        fixed = res["fixed_rate"]
        if fixed:
            fw = [12, 9, 9, 8, 8, 8, 8, 10, 10]
            print(fmt_row(["fixed", "offered", "achieved", "p50 ms", "p90 ms", "p99 ms", "max ms", "client cpu",
                           "other cpu"], fw))
            for name, f in fixed.items():
                print(fmt_row([name, f"{f['offered_rps']:.0f}", f"{f['achieved_rps']:.0f}", f"{f['p50_ms']:.2f}",
                               f"{f['p90_ms']:.2f}", f"{f['p99_ms']:.2f}", f"{f['max_ms']:.1f}",
                               f"{f['client_cpu_pct']:.0f}%", f"{f['foreign_cpu_pct']:.0f}%"], fw))
            p99 = fixed["ours"]["p99_ms"]
            p99_ok = p99 < TARGET_P99_MS
            over = {name: sum(x >= TARGET_P99_MS for x in fixed[name]["rounds_p99_ms"]) for name in ("ours", "floor")}
            print(f"rounds' offered rates (half of ours' max, {args.fixed_rate}): "
                  f"{', '.join(str(x) for x in fixed['ours']['rounds_rate'])} req/s; rounds with p99 >= "
                  f"{TARGET_P99_MS:.0f} ms: ours {over['ours']}, floor {over['floor']} of {len(fixed['ours']['rounds_rate'])}")
            print(f"ours p99 at half of max load = {p99:.2f} ms (median of the rounds' p99: "
                  f"{', '.join(f'{x:.1f}' for x in fixed['ours']['rounds_p99_ms'])}; floor's: "
                  f"{', '.join(f'{x:.1f}' for x in fixed['floor']['rounds_p99_ms'])})   "
                  f"target < {TARGET_P99_MS:.0f} ms: {'MET' if p99_ok else 'NOT MET'}")
            ok &= p99_ok
        d = res["dispatch"]
        print("(app cpu/req: CPU of the gunicorn master+workers per answered request; db cpu/req: CPU of the "
              "PostgreSQL server per request; other cpu: % of one core used by processes not ours during the "
              "run, worst round)")
        print(f"checked: every 200 was a new row; {d['rows']} delivery rows = {d['ids']} ids in {d['jobs']} "
              f"RQ jobs ({d['ids_per_job']:.0f} ids/job)")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk before each run (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="wrk rounds per endpoint, median reported")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: 2 cores are shared)")
    parser.add_argument("--fixed-duration", type=float, default=None,
                        help="seconds of each fixed-rate latency run (default: --duration, at least 5; 0 skips it)")
    parser.add_argument("--fixed-rounds", type=int, default=5,
                        help="fixed-rate rounds per endpoint, median reported (default 5)")
    parser.add_argument("--fixed-rate", choices=("per-round", "saturation"), default="per-round",
                        help="half of ours' max measured again before each fixed-rate round (default), or "
                             "half of the saturation rounds' median")
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="wait at most this long for other load to stop before each run (default 60 s)")
    parser.add_argument("--retries", type=int, default=2,
                        help="repeat a run this often while other processes load the machine (default 3)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    args = parser.parse_args(argv)
    if args.fixed_duration is None:
        args.fixed_duration = max(args.duration, 5.0)
    if not (0 < args.duration <= 600 and 1 <= args.rounds <= 40 and 0 <= args.fixed_duration <= 600
            and 1 <= args.fixed_rounds <= 20):
        parser.error("--duration and --fixed-duration must be within 0..600 s, --rounds within 1..40, "
                     "--fixed-rounds within 1..20")

    _infra.install_sigterm_cleanup()
    machine = _infra.machine()
    redis_url = _infra.start_redis()
    body = _infra.make_body(4096)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results = [bench_database(kind, args, redis_url, body) for kind in kinds]
    ok = print_report(results, args, machine)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    path = out / f"ingest-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2))
    print(f"\nraw results: {path.relative_to(_infra.PROJECT_ROOT)}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
