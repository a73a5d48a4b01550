"""In-process cost of one webhook request: ours next to the floor, without gunicorn or HTTP.

    .venv/bin/python -m bench.breakdown [--db sqlite|postgresql|both] [--n 3000] [--rounds 3] [--profile]

Calls each WSGI app directly, one request at a time, with the environ gunicorn would build for a
4096-byte signed orders/paid delivery (a new X-Shopify-Event-Id each time), and reports CPU and
wall time per request (median of --rounds, in rotated order). `ours` is `app.wsgi.application`'s
app built by `create_app()` (a real redis-server runs, so its dispatcher thread really enqueues);
`floor` is `bench.refapp.create_floor()`. With --profile, cProfile prints where ours spends its
own time. bench.ingest measures the same two under load; this isolates the Python work.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import _infra
from bench._infra import fmt_row
from bench.ingest import _create_floor_table


def _environ(body: bytes, signature: str, event_id: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks/shopify", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_X_SHOPIFY_TOPIC": "orders/paid", "HTTP_X_SHOPIFY_HMAC_SHA256": signature,
        "HTTP_X_SHOPIFY_SHOP_DOMAIN": _infra.SHOP_DOMAIN, "HTTP_X_SHOPIFY_API_VERSION": "2026-07",
        "HTTP_X_SHOPIFY_TRIGGERED_AT": "2026-11-23T10:00:00.000Z",
        "HTTP_X_SHOPIFY_WEBHOOK_ID": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "HTTP_X_SHOPIFY_EVENT_ID": event_id,
    }


def _caller(app: Callable[..., Any], body: bytes, tag: str) -> Callable[[int], None]:
    signature = _infra.sign(_infra.SHOP_SECRET, body)

    def start_response(status: str, _headers: list[tuple[str, str]], _exc: Any = None) -> None:
        if not status.startswith("200"):
            raise _infra.BenchError(f"{tag}: answered {status}")

    def call(i: int) -> None:
        result = app(_environ(body, signature, f"{tag}-{i}"), start_response)
        b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()

    return call


def _per_request(call: Callable[[int], None], start: int, n: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(start, start + n):
        call(i)
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def bench_database(kind: str, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    db = _infra.make_database(kind, f"bench_breakdown_{kind}")
    _infra.register_shop(db.url)
    _create_floor_table(db)
    os.environ["BENCH_DATABASE"] = f"sqlite:///{db.sqlite_path}" if kind == "sqlite" else str(db.libpq_uri)
    os.environ["BENCH_SECRET"] = _infra.SHOP_SECRET

    from app import create_app
    from bench import refapp

    body = _infra.make_body()
    ours = create_app({"DATABASE_URL": db.url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING"})
    calls = {"floor": _caller(refapp.create_floor(), body, "floor"), "ours": _caller(ours, body, "ours")}
    for name, call in calls.items():  # warm-up: connections, caches, prepared statements
        _per_request(call, -1000, 300)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(args.rounds):
        for name in names[r % 2:] + names[: r % 2]:
            runs[name].append(_per_request(calls[name], (r + 1) * 10 * args.n, args.n))
    result = {name: {"cpu_us": statistics.median(c for c, _ in rs), "wall_us": statistics.median(w for _, w in rs)}
              for name, rs in runs.items()}
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        _per_request(calls["ours"], 10**8, args.n)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
        result["profile"] = out.getvalue()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--n", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also cProfile ours (own time)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    redis_url = _infra.start_redis()
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    widths = [12, 8, 14, 14, 10]
    print(fmt_row(["database", "app", "cpu µs/req", "wall µs/req", "vs floor"], widths))
    for kind in kinds:
        res = bench_database(kind, redis_url, args)
        for name in ("floor", "ours"):
            ratio = res["floor"]["cpu_us"] / res[name]["cpu_us"]
            print(fmt_row([kind, name, f"{res[name]['cpu_us']:.0f}", f"{res[name]['wall_us']:.0f}",
                           f"{ratio:.2f}"], widths))
        if "profile" in res:
            print(res["profile"])
    print("(vs floor: floor's CPU per request / this one's, i.e. the share of the floor's rate this "
          "app would reach if CPU were all that counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
