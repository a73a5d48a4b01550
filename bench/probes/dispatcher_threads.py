"""Diagnostic probe (bench/RESULTS.md, seventh pass): CPU per request of each gunicorn worker's
request thread and of its other threads (the dispatcher), read from /proc under wrk, PostgreSQL.

    .venv/bin/python -m bench.probes.dispatcher_threads "i50|DISPATCH_INTERVAL_MS=50" "i200|DISPATCH_INTERVAL_MS=200"

Each argument is `name|ENV=value,...`: one server of ours per argument, run in turn, 3 rounds.
"""
import sys, time, uuid, os, statistics
from bench import _infra
db = _infra.make_database("postgresql", f"thr{uuid.uuid4().hex[:6]}")
_infra.register_shop(db.url)
redis_url = _infra.start_redis()
body = _infra.make_body(4096)
servers = {}
for arg in sys.argv[1:]:
    name, _, envs = arg.partition("|")
    env = dict(e.split("=", 1) for e in envs.split(",") if e)
    servers[name] = _infra.start_ours(db, redis_url, env, name=name)
def threads(s):
    out = {}
    for pid in s.worker_pids():
        for tid in os.listdir(f"/proc/{pid}/task"):
            f = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            out[(pid, int(tid))] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out
res = {n: [] for n in servers}
for rnd in range(3):
    for name, s in servers.items():
        prefix, suffix = _infra.shopify_request_parts(s.port, body)
        _infra.run_wrk(s.port, prefix, suffix, f"w{uuid.uuid4().hex[:6]}", duration=2)
        a = threads(s)
        r = _infra.run_wrk(s.port, prefix, suffix, f"r{uuid.uuid4().hex[:6]}", duration=5)
        b = threads(s)
        n = r["requests"]
        main = sum(b[k]-a.get(k,0) for k in b if k[0]==k[1]); other = sum(b[k]-a.get(k,0) for k in b if k[0]!=k[1])
        res[name].append((r['rps'], 1e6*main/n, 1e6*other/n))
        print(f"{name:10s} {r['rps']:.0f} req/s  main {1e6*main/n:.0f} us/req  dispatcher {1e6*other/n:.0f} us/req", flush=True)
for n, v in res.items():
    print(n, "median rps %.0f main %.0f dispatcher %.0f" % tuple(statistics.median(x[i] for x in v) for i in range(3)))
for s in servers.values(): s.stop()
