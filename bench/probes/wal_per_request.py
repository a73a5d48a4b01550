"""Diagnostic probe (bench/RESULTS.md, eighth pass): what each endpoint writes to PostgreSQL's WAL
per request, by record type (pg_walinspect), and how much of it is full-page images.

Ours and the floor take `--requests` deliveries each at `--rate` (fixed rate, one after the other)
on one fresh database; between a CHECKPOINT and the run, and then again for a second run (pages
the first run touched are already logged in full since the checkpoint, as in steady state).

    .venv/bin/python -m bench.probes.wal_per_request [--rate 300] [--requests 3000]
"""

from __future__ import annotations

import argparse
import uuid

import psycopg

from bench import _infra
from bench._loadgen import run_fixed_rate
from bench.ingest import _create_floor_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--sql", action="append", default=[], help="a statement to run on the database first (A/B)")
    args = parser.parse_args()

    db = _infra.make_database("postgresql", f"wal{uuid.uuid4().hex[:6]}")
    _infra.register_shop(db.url)
    _create_floor_table(db)
    with psycopg.connect(db.libpq_uri, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        for statement in args.sql:
            c.execute(statement)
    redis_url = _infra.start_redis()
    body = _infra.make_body(4096)
    servers = {
        "floor": _infra.start_floor(db),
        "ours": _infra.start_ours(db, redis_url),
    }
    try:
        for run in ("after a checkpoint", "second run"):
            for name, server in servers.items():
                prefix, suffix = _infra.shopify_request_parts(server.port, body)
                with psycopg.connect(db.libpq_uri, autocommit=True) as c:
                    if run == "after a checkpoint":
                        c.execute("CHECKPOINT")
                    start = c.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
                fr = run_fixed_rate(server.port, prefix, suffix, f"w{uuid.uuid4().hex[:8]}", rate=args.rate,
                                    duration=args.requests / args.rate)
                with psycopg.connect(db.libpq_uri, autocommit=True) as c:
                    end = c.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
                    rows = c.execute(
                        "SELECT \"resource_manager/record_type\", count, record_size, fpi_size, combined_size "
                        "FROM pg_get_wal_stats(%s, %s, true) WHERE count > 0 ORDER BY combined_size DESC",
                        (start, end)).fetchall()
                n = fr.ok
                total = sum(r[4] for r in rows)
                print(f"\n{name}, {run}: {n} requests, {total / n:.0f} B of WAL per request "
                      f"(full-page images {sum(r[3] for r in rows) / n:.0f} B)")
                for kind, count, record, fpi, combined in rows:
                    if combined / n >= 5:
                        print(f"  {kind:32s} {count / n:6.2f} per request  {record / n:6.0f} B + FPI {fpi / n:6.0f} B")
        with psycopg.connect(db.libpq_uri, autocommit=True) as c:
            for table in ("bench_floor_inbox", "webhook_deliveries"):
                rows = c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # our own table names
                heap, toast, indexes = c.execute(
                    "SELECT pg_relation_size(%s), coalesce(pg_total_relation_size(reltoastrelid), 0), "
                    "pg_indexes_size(%s) FROM pg_class WHERE oid = %s::regclass", (table, table, table)).fetchone()
                print(f"{table}: {rows} rows; per row: heap {heap / rows:.0f} B, TOAST {toast / rows:.0f} B, "
                      f"indexes {indexes / rows:.0f} B")
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
