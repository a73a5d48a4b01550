"""Diagnostic probe (bench/RESULTS.md, seventh pass): fixed-rate latency rounds (5 s each,
rotated) for the floor, ours, and ours whose dispatcher enqueues nothing.

    ROUNDS=5 .venv/bin/python -m bench.probes.latency_dispatcher 550
"""
import sys, time, uuid, os, statistics
from bench import _infra
from bench.ingest import _create_floor_table
from bench._loadgen import run_fixed_rate
db = _infra.make_database("postgresql", f"lat{uuid.uuid4().hex[:6]}")
_infra.register_shop(db.url)
_create_floor_table(db)
redis_url = _infra.start_redis()
body = _infra.make_body(4096)
servers = {
    "floor": _infra.start_floor(db),
    "ours": _infra.start_ours(db, redis_url),
    "nodisp": _infra.start_ours(db, redis_url, name="nodisp", app_spec="bench.probes.nodisp_app:application"),
}
rate = int(sys.argv[1]) if len(sys.argv) > 1 else 500
res = {n: [] for n in servers}
names = list(servers)
for r in range(int(os.environ.get("ROUNDS", 5))):
    order = names[r % 3:] + names[:r % 3]
    for n in order:
        s = servers[n]
        prefix, suffix = _infra.shopify_request_parts(s.port, body)
        fr = run_fixed_rate(s.port, prefix, suffix, f"f{uuid.uuid4().hex[:8]}", rate=rate, duration=5)
        res[n].append(fr.p99_ms)
        print(f"round {r} {n:7s} achieved {fr.achieved_rps:.0f} p50 {fr.p50_ms:.2f} p99 {fr.p99_ms:.2f} max {fr.max_ms:.1f}", flush=True)
for n, v in res.items():
    print(f"{n:7s} p99 rounds " + ", ".join(f"{x:.1f}" for x in v) + f"  median {statistics.median(v):.1f}")
for s in servers.values(): s.stop()
