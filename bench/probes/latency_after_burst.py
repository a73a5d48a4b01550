"""Diagnostic probe (bench/RESULTS.md, seventh pass): 30 s of wrk saturation per endpoint, then six
fixed-rate rounds at 500 req/s for ours and the floor, with the checkpoints started and the WAL
written per request during each round.

    .venv/bin/python -m bench.probes.latency_after_burst
"""
import sys, time, uuid, os, statistics
import psycopg
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
}
def stats():
    with psycopg.connect(db.libpq_uri) as c:
        ck = c.execute("select num_timed + num_requested, pg_current_wal_lsn() - '0/0'::pg_lsn from pg_stat_checkpointer").fetchone()
        return {"ckpt": (ck[0], int(ck[1]))}
for n, s in servers.items():
    p, q = _infra.shopify_request_parts(s.port, body)
    r = _infra.run_wrk(s.port, p, q, f"s{uuid.uuid4().hex[:6]}", duration=30)
    print(n, "saturation", round(r["rps"]), flush=True)
rate = 500
for r in range(6):
    for n in (("ours", "floor") if r % 2 == 0 else ("floor", "ours")):
        s = servers[n]
        p, q = _infra.shopify_request_parts(s.port, body)
        a = stats()
        fr = run_fixed_rate(s.port, p, q, f"f{uuid.uuid4().hex[:8]}", rate=rate, duration=5)
        b = stats()
        print(f"round {r} {n:5s} p50 {fr.p50_ms:.2f} p99 {fr.p99_ms:7.2f} max {fr.max_ms:7.1f}  checkpoints started {b['ckpt'][0]-a['ckpt'][0]}  WAL/req {(b['ckpt'][1]-a['ckpt'][1])/fr.ok/1024:.1f} KiB", flush=True)
for s in servers.values(): s.stop()
