"""Diagnostic probe (bench/RESULTS.md, seventh pass): server CPU per delivery INSERT on copies of
the inbox table (collation, indexes, ON CONFLICT), two connections, synchronous_commit=off.
Since migration 0009 the table "as is" has the shop key NOT ENFORCED on PostgreSQL 18+.

    .venv/bin/python -m bench.probes.insert_variants 4000
"""
import sys, json, os, time, threading
from bench import _infra
import psycopg
from app.web.webhooks import _INSERT
from datetime import datetime, timezone

db = _infra.make_database("postgresql", "insprobe3")
shop = _infra.register_shop(db.url)
headers = json.dumps({f"X-Shopify-Header-{i}": "v" * 40 for i in range(8)})
body = _infra.make_body(4096)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
counter = [0]
lock = threading.Lock()
def stat(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def run(sql, table="webhook_deliveries", threads=2, per=N // 2):
    cpu = []
    sql = sql.replace("webhook_deliveries", table)
    def work():
        with psycopg.connect(db.libpq_uri, autocommit=True) as c:
            c.execute("SET synchronous_commit = off")
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            s0 = stat(pid)
            for _ in range(per):
                with lock:
                    counter[0] += 1; k = counter[0]
                cur = c.execute(sql, (shop, "shopify", "orders/paid", f"orders/paid|event:0c4a6d6e-1111-4a2b-9f1e-{k:012d}", headers, body, datetime.now(timezone.utc)))
                if cur.description: cur.fetchone()
            with lock:
                cpu.append(stat(pid) - s0)
    ts = [threading.Thread(target=work) for _ in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    return 1e6 * sum(cpu) / (threads*per)
def ex(sql):
    with psycopg.connect(db.libpq_uri, autocommit=True) as c:
        c.execute(sql)
asis = _INSERT["postgresql"]
plain = asis.replace(" ON CONFLICT (shop_id, dedupe_key) DO NOTHING", "")
with psycopg.connect(db.libpq_uri, autocommit=True) as c:
    print(c.execute("show server_version").fetchone())
# variant tables, copies of the real one
ex("CREATE TABLE wd_c (LIKE webhook_deliveries INCLUDING ALL)")
ex("ALTER TABLE wd_c ALTER COLUMN dedupe_key TYPE varchar(255) COLLATE \"C\"")
ex("CREATE TABLE wd_nostatus (LIKE webhook_deliveries INCLUDING ALL)")
ex("DROP INDEX IF EXISTS wd_nostatus_status_id_idx")
with psycopg.connect(db.libpq_uri, autocommit=True) as c:
    print(c.execute("select tablename, indexdef from pg_indexes where tablename like 'wd_%'").fetchall())
ex("CREATE TABLE wd_onlypk (LIKE webhook_deliveries INCLUDING DEFAULTS INCLUDING IDENTITY)")
ex("ALTER TABLE wd_onlypk ADD PRIMARY KEY (id)")
ex("CREATE TABLE wd_c_nostatus (LIKE wd_c INCLUDING ALL)")
with psycopg.connect(db.libpq_uri, autocommit=True) as c:
    for t in ("wd_nostatus", "wd_c_nostatus"):
        for (name,) in c.execute("select indexname from pg_indexes where tablename=%s and indexdef like '%%(status, id)%%'", (t,)).fetchall():
            c.execute(f"DROP INDEX {name}")
    print(c.execute("select tablename, indexdef from pg_indexes where tablename like 'wd_%'").fetchall())
res = {}
for rnd in range(3):
    res.setdefault("as is (fk, on conflict)", []).append(run(asis))
    res.setdefault("copy: no fk, on conflict", []).append(run(asis, "wd_nostatus"))
    res.setdefault("copy C collate on conflict", []).append(run(asis, "wd_c"))
    res.setdefault("copy C, plain", []).append(run(plain, "wd_c"))
    res.setdefault("copy no status idx", []).append(run(asis, "wd_nostatus"))
    res.setdefault("copy C no status, plain", []).append(run(plain, "wd_c_nostatus"))
    res.setdefault("copy only pk, plain", []).append(run(plain, "wd_onlypk"))
for k, v in res.items():
    print(f"{k:30s} server " + ", ".join(f"{c:.0f}" for c in v), flush=True)
