"""Diagnostic probe (bench/RESULTS.md, eighth pass): where a slow answer at half load spent its time.

Runs ours and the floor on PostgreSQL under gunicorn with bench/probes/gunicorn_timing.py, which
logs every request's service time in the worker (wall, thread CPU, run-queue wait). Then
`--rounds` fixed-rate rounds (ABBA) at `--rate`, and for each round:
- the client's own lateness (it opened the connection after the request was due),
- the worst 1 % of answers split into waiting before a worker took the request (accept queue)
  and the worker's service time,
and per endpoint the service-time distribution, the slow services (> 8 ms) and whether they were
CPU, run-queue or waiting (on PostgreSQL: one voluntary switch per request), gunicorn's heartbeat,
the statements PostgreSQL logged as slower than 4 ms, and when each WAL segment was completed.

    .venv/bin/python -m bench.probes.service_times [--rate 500] [--rounds 4] [--burst 0]
    XPGOPTIONS="-c synchronous_commit=off" .venv/bin/python -m bench.probes.service_times   # A/B
"""

from __future__ import annotations

import argparse
import bisect
import gc
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path

import psycopg

from bench import _infra
from bench._loadgen import run_fixed_rate
from bench.ingest import _create_floor_table

CONFIG = str(Path(__file__).with_name("gunicorn_timing.py"))


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--burst", type=float, default=0, help="seconds of wrk saturation per endpoint first")
    parser.add_argument("--burst-each-round", type=float, default=0,
                        help="seconds of wrk saturation of ours before each round, then os.sync() and 1 s, "
                             "as bench.ingest measures ours' max before each latency round")
    args = parser.parse_args()

    db = _infra.make_database("postgresql", f"sv{uuid.uuid4().hex[:6]}")
    _infra.register_shop(db.url)
    _create_floor_table(db)
    with psycopg.connect(_infra._pg_admin_uri, autocommit=True) as c:
        for key, value in (("log_min_duration_statement", "4"), ("track_wal_io_timing", "on"),
                           ("log_line_prefix", "'%m [%p] '"), ("log_checkpoints", "on"),
                           ("log_autovacuum_min_duration", "0")):
            c.execute(f"ALTER SYSTEM SET {key} = {value}")
        c.execute("SELECT pg_reload_conf()")
    offset = time.time() - time.monotonic()
    redis_url = _infra.start_redis()
    body = _infra.make_body(4096)
    pgoptions = {"PGOPTIONS": os.environ["XPGOPTIONS"]} if os.environ.get("XPGOPTIONS") else {}
    dirs: dict[str, Path] = {}
    servers: dict[str, _infra.Server] = {}
    for name in ("floor", "ours"):
        dirs[name] = _infra.TMP / f"timing-{name}"
        dirs[name].mkdir()
        env = {"GTIME_DIR": str(dirs[name]), **pgoptions}
        servers[name] = (_infra.start_floor(db, env, ("-c", CONFIG)) if name == "floor"
                         else _infra.start_ours(db, redis_url, env, ("-c", CONFIG)))
    for name, server in servers.items():
        prefix, suffix = _infra.shopify_request_parts(server.port, body)
        run_fixed_rate(server.port, prefix, suffix, f"w{uuid.uuid4().hex[:8]}", rate=200, duration=2)
        if args.burst:
            r = _infra.run_wrk(server.port, prefix, suffix, f"s{uuid.uuid4().hex[:6]}", duration=args.burst)
            print(name, "saturation", round(r["rps"]), "req/s", flush=True)

    # The client's own pauses: garbage collections (any generation), and its wait for a CPU.
    pauses: list[tuple[int, float, float]] = []
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], gc_start[0], time.perf_counter() - gc_start[0]))

    gc.callbacks.append(on_gc)

    def run_delay() -> float:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e6

    marks: dict[str, list[tuple[float, float]]] = {}
    traces: dict[str, list[list[tuple[float, float, float]]]] = {}
    for r in range(args.rounds):
        if args.burst_each_round:
            prefix, suffix = _infra.shopify_request_parts(servers["ours"].port, body)
            b = _infra.run_wrk(servers["ours"].port, prefix, suffix, f"b{uuid.uuid4().hex[:6]}",
                               duration=args.burst_each_round)
            os.sync()
            time.sleep(1)
            print(f"round {r} ours max {b['rps']:.0f} req/s", flush=True)
        for name in (("ours", "floor") if r % 4 in (0, 3) else ("floor", "ours")):
            server = servers[name]
            prefix, suffix = _infra.shopify_request_parts(server.port, body)
            trace: list[tuple[float, float, float]] = []
            del pauses[:]
            q0 = run_delay()
            t0 = time.monotonic()
            fr = run_fixed_rate(server.port, prefix, suffix, f"f{uuid.uuid4().hex[:8]}", rate=args.rate,
                                duration=args.duration, trace=trace)
            marks.setdefault(name, []).append((t0, time.monotonic()))
            traces.setdefault(name, []).append(trace)
            queued = run_delay() - q0
            late = sorted((started - due) * 1e3 for due, started, _ in trace)
            gcs = [(g, 1e3 * d) for g, _, d in pauses]
            print(f"round {r} {name:5s} p50 {fr.p50_ms:6.2f} p99 {fr.p99_ms:7.2f} max {fr.max_ms:7.1f}  "
                  f"client lateness p99 {pct(late, 99):.2f} max {late[-1]:.1f} ms; client waited for a CPU "
                  f"{queued:.0f} ms; client GCs {len(gcs)}, gen 2: {sum(1 for g, _ in gcs if g == 2)}, "
                  f"longest {max((d for _, d in gcs), default=0):.1f} ms", flush=True)
    for server in servers.values():
        server.stop()

    def clock(t: float) -> str:
        return time.strftime("%H:%M:%S", time.gmtime(t + offset)) + f"{(t + offset) % 1:.3f}"[1:]

    for name, d in dirs.items():
        rows, beats = [], []
        for f in sorted(d.glob("w*.txt")):
            for line in f.read_text().splitlines():
                kind, *rest = line.split()
                if kind == "S":
                    print(f"{name} {f.stem} heartbeats: {rest[0]}, {rest[1]} ms in all, worst {rest[2]} ms")
                elif kind == "N":
                    beats.append(float(rest[1]))
                else:
                    t = float(kind)
                    if any(a <= t <= b for a, b in marks[name]):
                        wall, cpu, runq, vol = map(float, rest)
                        rows.append((t, wall, cpu, runq, vol, f.stem))
        walls = sorted(r[1] for r in rows)
        cpus = sorted(r[2] for r in rows)
        print(f"\n{name}: {len(rows)} requests; service wall ms p50 {pct(walls, 50):.2f} p99 {pct(walls, 99):.2f} "
              f"p99.9 {pct(walls, 99.9):.2f} max {walls[-1]:.1f}, mean {statistics.mean(walls):.3f}; "
              f"cpu ms p50 {pct(cpus, 50):.2f} p99 {pct(cpus, 99):.2f} mean {statistics.mean(cpus):.3f}; "
              f"run-queue ms mean {statistics.mean(r[3] for r in rows):.3f}; "
              f"voluntary switches per request {statistics.mean(r[4] for r in rows):.2f}; "
              f"heartbeats > 1 ms: {len(beats)}")
        ends = sorted((r[0] + r[1] / 1e3, r) for r in rows)
        keys = [e for e, _ in ends]
        for k, trace in enumerate(traces[name]):
            worst = sorted(trace, key=lambda x: x[2] - x[0])[-max(1, len(trace) // 100):]
            waits, services = [], []
            for _due, started, done in worst:
                i = bisect.bisect_left(keys, done - 0.002)
                found = [ends[j][1] for j in range(i, min(i + 6, len(ends))) if ends[j][0] <= done and ends[j][1][0] >= started]
                if found:
                    served = max(found, key=lambda r: r[0] + r[1] / 1e3)
                    waits.append((served[0] - started) * 1e3)
                    services.append(served[1])
            if waits:
                print(f"  round {k}: the worst 1 % waited for a worker {statistics.mean(waits):.1f} ms on average "
                      f"(max {max(waits):.1f}); their service took {statistics.mean(services):.1f} ms "
                      f"(max {max(services):.1f}); {len(worst) - len(waits)} not matched")
        slow = sorted((r for r in rows if r[1] > 8), key=lambda r: r[0])
        cpu_bound = sum(1 for r in slow if r[2] > r[1] / 2)
        queued = sum(1 for r in slow if r[2] <= r[1] / 2 and r[3] > (r[1] - r[2]) / 2)
        print(f"  {len(slow)} services slower than 8 ms: {cpu_bound} mostly CPU, {queued} mostly run queue, "
              f"{len(slow) - cpu_bound - queued} mostly waiting")
        for r in slow:
            print(f"    {clock(r[0])} {r[5]} wall {r[1]:6.2f} cpu {r[2]:6.2f} run-queue {r[3]:6.2f} switches {r[4]:.0f}")

    print("\nPostgreSQL statements slower than 4 ms:")
    for log in _infra.TMP.rglob("log"):
        if log.is_file():
            for line in log.read_text(errors="replace").splitlines():
                if "duration:" in line or "checkpoint" in line:
                    print("  ", line[:200])
    with psycopg.connect(_infra._pg_admin_uri, autocommit=True) as c:
        for row in c.execute("SELECT context, writes, write_time, fsyncs, fsync_time FROM pg_stat_io "
                             "WHERE object = 'wal' AND backend_type = 'client backend'"):
            print(f"WAL {row[0]}: {row[1]} writes ({row[2]:.1f} ms), {row[3]} fsyncs ({row[4]:.1f} ms)")
    print("WAL segments, last written at:")
    for wal in _infra.TMP.rglob("pg_wal"):
        listing = subprocess.run(["ls", "-l", "--time-style=+%H:%M:%S.%N", str(wal)], capture_output=True,
                                 text=True, check=True).stdout
        for line in listing.splitlines():
            if line.startswith("-"):
                print("  ", line.split()[-2][:12], line.split()[-1])
    print("rounds:", {n: [f"{clock(a)[:8]}-{clock(b)[:8]}" for a, b in m] for n, m in marks.items()})


if __name__ == "__main__":
    main()
