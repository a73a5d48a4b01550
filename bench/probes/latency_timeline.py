"""Diagnostic probe (bench/RESULTS.md, eighth pass): where the latency tails at half load come from.

After `--burst` seconds of wrk saturation per endpoint, runs `--rounds` fixed-rate rounds (ABBA) of
ours and the floor on PostgreSQL while a sampler process records, every few milliseconds, the
host's pressure stall information (/proc/pressure), /proc/stat (iowait, steal), the dirty and
writeback pages, the CPU of every process involved, and PostgreSQL's wait events. Every request's
(scheduled, done) instant is kept, so each stall (a run of requests slower than `--slow` ms) is
printed with what the host and PostgreSQL were doing while it lasted, against the same figures
outside stalls.

    .venv/bin/python -m bench.probes.latency_timeline [--rate 500] [--rounds 6] [--burst 30]
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench import _infra
from bench._loadgen import run_fixed_rate
from bench.ingest import _create_floor_table

TICK = 1 / os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _pressure(name: str) -> tuple[int, int]:
    some = full = 0
    for line in _read(f"/proc/pressure/{name}").splitlines():
        total = int(line.rsplit("total=", 1)[1])
        if line.startswith("some"):
            some = total
        else:
            full = total
    return some, full


def _proc_cpu(pid: int) -> float:
    try:
        fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * TICK


def _sampler(out: str, libpq_uri: str, pids: dict[str, int], stop: Any, interval: float) -> None:
    """Sample the host every `interval` s and PostgreSQL's activity every 4th sample, into `out`."""
    import psycopg

    conn = psycopg.connect(libpq_uri, autocommit=True)
    samples = []
    n = 0
    while not stop.is_set():
        t = time.monotonic()
        cpu = _read("/proc/stat").split("\n", 1)[0].split()[1:]
        vm = dict(line.split() for line in _read("/proc/vmstat").splitlines()
                  if line.startswith(("nr_dirty ", "nr_writeback ")))
        row: dict[str, Any] = {
            "t": t,
            "cpu_some": _pressure("cpu")[0],
            "io": _pressure("io"),
            "stat": [int(x) for x in cpu[:8]],
            "dirty": int(vm.get("nr_dirty", 0)),
            "writeback": int(vm.get("nr_writeback", 0)),
        }
        if n % 4 == 0:
            rows = conn.execute(
                "SELECT pid, backend_type, coalesce(wait_event_type, 'CPU'), coalesce(wait_event, state, '') "
                "FROM pg_stat_activity WHERE pid <> pg_backend_pid()").fetchall()
            row["pg"] = [list(r) for r in rows]
            row["procs"] = {name: _proc_cpu(pid) for name, pid in pids.items()}
            row["procs"].update({f"pg:{r[1]}:{r[0]}": _proc_cpu(r[0]) for r in rows})
        samples.append(row)
        n += 1
        time.sleep(max(0.0, interval - (time.monotonic() - t)))
    conn.close()
    Path(out).write_text(json.dumps(samples))


def _stalls(trace: list[tuple[float, float, float]], slow_ms: float) -> list[tuple[float, float, float]]:
    """Windows (first scheduled, last done, worst latency ms) of consecutive slow requests."""
    windows: list[list[float]] = []
    for scheduled, _started, done in sorted(trace):
        latency = (done - scheduled) * 1000
        if latency < slow_ms:
            continue
        if windows and scheduled <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], done)
            windows[-1][2] = max(windows[-1][2], latency)
        else:
            windows.append([scheduled, done, latency])
    return [(a, b, c) for a, b, c in windows]


def _describe(samples: list[dict[str, Any]], a: float, b: float) -> dict[str, Any]:
    """What the host and PostgreSQL did between monotonic instants a and b."""
    inside = [s for s in samples if a <= s["t"] <= b]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    span = last["t"] - first["t"] or 1e-9
    stat = [y - x for x, y in zip(first["stat"], last["stat"])]
    total = sum(stat) or 1
    procs0 = next((s["procs"] for s in inside if "procs" in s), {})
    procs1 = next((s["procs"] for s in reversed(inside) if "procs" in s), {})
    busy = {k: (procs1[k] - procs0.get(k, procs1[k])) / span for k in procs1}
    waits: collections.Counter[str] = collections.Counter()
    for s in inside:
        for _pid, kind, wtype, wevent in s.get("pg", []):
            if kind == "client backend":
                waits[f"{wtype}:{wevent}"] += 1
    return {
        "s": round(span, 3),
        "cpu_some%": round((last["cpu_some"] - first["cpu_some"]) / 1e4 / span, 1),
        "io_some%": round((last["io"][0] - first["io"][0]) / 1e4 / span, 1),
        "io_full%": round((last["io"][1] - first["io"][1]) / 1e4 / span, 1),
        "user%": round(100 * stat[0] / total), "sys%": round(100 * stat[2] / total),
        "idle%": round(100 * stat[3] / total), "iowait%": round(100 * stat[4] / total),
        "steal%": round(100 * stat[7] / total),
        "dirty_kb": last["dirty"] * 4, "writeback_kb": max(s["writeback"] for s in inside) * 4,
        "busiest": sorted(((round(100 * v), k) for k, v in busy.items() if v > 0.05), reverse=True)[:6],
        "pg_waits": waits.most_common(5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--burst", type=float, default=30)
    parser.add_argument("--slow", type=float, default=30, help="a request slower than this (ms) is in a stall")
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--only", choices=["ours", "floor"], default=None)
    args = parser.parse_args()

    db = _infra.make_database("postgresql", f"tl{uuid.uuid4().hex[:6]}")
    _infra.register_shop(db.url)
    _create_floor_table(db)
    redis_url = _infra.start_redis()
    body = _infra.make_body(4096)
    servers = {
        "floor": _infra.start_floor(db),
        "ours": _infra.start_ours(db, redis_url),
    }
    names = [args.only] if args.only else ["ours", "floor"]
    pids = {"client": os.getpid()}
    for n, s in servers.items():
        pids[f"{n}:master"] = s.proc.pid
        for i, w in enumerate(s.worker_pids()):
            pids[f"{n}:w{i}"] = w
    print("db:", db.notes, flush=True)
    for n in names:
        s = servers[n]
        p, q = _infra.shopify_request_parts(s.port, body)
        r = _infra.run_wrk(s.port, p, q, f"s{uuid.uuid4().hex[:6]}", duration=args.burst) if args.burst else None
        print(n, "saturation", round(r["rps"]) if r else "-", flush=True)

    out = _infra.TMP / "timeline.json"
    stop = multiprocessing.Event()
    sampler = multiprocessing.Process(target=_sampler, args=(str(out), db.libpq_uri, pids, stop, args.interval))
    sampler.start()
    time.sleep(1)
    traces: list[tuple[str, int, list[tuple[float, float, float]], Any]] = []
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            s = servers[n]
            p, q = _infra.shopify_request_parts(s.port, body)
            trace: list[tuple[float, float, float]] = []
            fr = run_fixed_rate(s.port, p, q, f"f{uuid.uuid4().hex[:8]}", rate=args.rate,
                                duration=args.duration, trace=trace)
            traces.append((n, r, trace, fr))
            print(f"round {r} {n:5s} p50 {fr.p50_ms:6.2f} p99 {fr.p99_ms:7.2f} max {fr.max_ms:7.1f} "
                  f"ok {fr.ok} errors {fr.errors}", flush=True)
    stop.set()
    sampler.join()
    for s in servers.values():
        s.stop()
    samples = json.loads(out.read_text())

    print("\nwhole rounds, per endpoint:")
    for n in names:
        quiet = [_describe(samples, tr[0][0], tr[-1][2]) for name, _r, tr, _fr in traces if name == n and tr]
        for key in ("cpu_some%", "io_some%", "io_full%", "iowait%", "steal%", "idle%"):
            print(f"  {n:5s} {key:10s} median over rounds {statistics.median(q[key] for q in quiet if q)}")
    print(f"\nstalls (requests slower than {args.slow} ms):")
    for n, r, trace, _fr in traces:
        if not trace:
            continue
        base = trace[0][0]
        for a, b, worst in _stalls(trace, args.slow):
            d = _describe(samples, a - 0.05, b)
            print(f"  round {r} {n:5s} at {a - base:5.2f}s for {1000 * (b - a):6.1f} ms, worst {worst:6.1f} ms: {d}")
    print(f"\nsamples: {len(samples)} in {out}")
    keep = Path("bench/out") / f"timeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    keep.parent.mkdir(exist_ok=True)
    keep.write_text(json.dumps({"samples": samples, "traces": [(n, r, tr) for n, r, tr, _ in traces]}))
    print("kept:", keep)


if __name__ == "__main__":
    main()
