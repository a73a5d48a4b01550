"""Diagnostic probe (bench/RESULTS.md, seventh pass): ours against two databases, one as migrated
and one with the SQL given run on it; alternating 3 s wrk runs; paired req/s ratio and the
difference of PostgreSQL's CPU per request.

    ROUNDS=10 .venv/bin/python -m bench.probes.schema_ab "ALTER TABLE webhook_deliveries ALTER CONSTRAINT fk_webhook_deliveries_shop_id_shops ENFORCED"
"""
import sys, time, uuid, os, statistics
from bench import _infra
import psycopg
redis_url = _infra.start_redis()
body = _infra.make_body(4096)
variants = {"as_is": None, "variant": sys.argv[1]}
servers = {}
for name, sql in variants.items():
    db = _infra.make_database("postgresql", f"fk{name}{uuid.uuid4().hex[:6]}")
    _infra.register_shop(db.url)
    if sql:
        with psycopg.connect(db.libpq_uri, autocommit=True) as c:
            c.execute(sql)
    servers[name] = _infra.start_ours(db, redis_url, name=name)
pm = _infra.postmaster_pid()
res = {n: [] for n in servers}
for r in range(int(os.environ.get("ROUNDS", 8))):
    order = list(servers) if r % 4 in (0, 3) else list(servers)[::-1]
    for name in order:
        s = servers[name]
        prefix, suffix = _infra.shopify_request_parts(s.port, body)
        _infra.run_wrk(s.port, prefix, suffix, f"w{uuid.uuid4().hex[:6]}", duration=1)
        c0 = _infra.tree_cpu_seconds(s.proc.pid); d0 = _infra.tree_cpu_seconds(pm)
        out = _infra.run_wrk(s.port, prefix, suffix, f"r{uuid.uuid4().hex[:6]}", duration=3)
        c1 = _infra.tree_cpu_seconds(s.proc.pid); d1 = _infra.tree_cpu_seconds(pm)
        n = out["requests"]
        res[name].append((out["rps"], 1e3*(c1-c0)/n, 1e3*(d1-d0)/n))
    print(f"round {r}: " + "  ".join(f"{k} {v[-1][0]:.0f} rps app {v[-1][1]:.3f} db {v[-1][2]:.3f}" for k, v in res.items()), flush=True)
for n, v in res.items():
    print(n, "median rps %.0f app %.3f db %.3f" % tuple(statistics.median(x[i] for x in v) for i in range(3)))
print("paired rps ratio variant/as_is", statistics.median(b[0]/a[0] for a, b in zip(res["as_is"], res["variant"])))
print("paired db cpu diff (variant - as_is) us", statistics.median(1e3*(b[2]-a[2]) for a, b in zip(res["as_is"], res["variant"])))
for s in servers.values(): s.stop()
