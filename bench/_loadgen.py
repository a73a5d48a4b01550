"""A bounded, open-loop, fixed-rate HTTP load generator (wrk2-style latency) for loopback only.

Request i is *scheduled* at t0 + i/rate whatever happened to earlier requests, and its latency is
measured from that scheduled instant to the last byte of the answer. A slow server or a late client
therefore shows up as latency instead of silently lowering the offered rate (no coordinated
omission). Each request opens its own connection, as wrk does against gunicorn's sync workers
(they answer `Connection: close`). The run is bounded: exactly `rate * duration` requests, at most
`max_in_flight` at once, each with a timeout, and a hard deadline for the whole run.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass


@dataclass
class FixedRateResult:
    offered_rps: float
    achieved_rps: float
    sent: int
    ok: int
    non_200: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    client_cpu_pct: float
    foreign_cpu_pct: float = 0.0


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


async def _run(port: int, prefix: bytes, suffix: bytes, nonce: str, rate: float, count: int,
               max_in_flight: int, request_timeout: float) -> tuple[list[float], int, int, int, float, float]:
    sem = asyncio.Semaphore(max_in_flight)
    latencies: list[float] = []
    counters = {"non_200": 0, "errors": 0, "last_done": 0.0}

    async def one(i: int, scheduled: float) -> None:
        async with sem:
            writer = None
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), request_timeout)
                writer.write(prefix + f"{nonce}-{i}".encode() + suffix)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), request_timeout)
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip())
                if length:
                    await asyncio.wait_for(reader.readexactly(length), request_timeout)
                done = time.perf_counter()
                counters["last_done"] = max(counters["last_done"], done)
                if status == 200:
                    latencies.append((done - scheduled) * 1000)
                else:
                    counters["non_200"] += 1
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                counters["errors"] += 1
            finally:
                if writer is not None:
                    writer.close()

    tasks = []
    t0 = time.perf_counter()
    for i in range(count):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    _done, pending = await asyncio.wait(tasks, timeout=request_timeout * 3)
    for task in pending:
        task.cancel()
    counters["errors"] += len(pending)
    return latencies, counters["non_200"], counters["errors"], len(tasks), t0, counters["last_done"]


def run_fixed_rate(port: int, prefix: bytes, suffix: bytes, nonce: str, *, rate: float, duration: float,
                   max_in_flight: int = 256, request_timeout: float = 10.0) -> FixedRateResult:
    """Offer `rate` requests/s for `duration` s (open loop) and return latency percentiles in ms."""
    count = max(1, int(rate * duration))
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    latencies, non_200, errors, sent, t0, last_done = asyncio.run(
        _run(port, prefix, suffix, nonce, rate, count, max_in_flight, request_timeout)
    )
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    latencies.sort()
    span = (last_done - t0) if last_done > t0 else float("nan")
    return FixedRateResult(
        offered_rps=rate,
        achieved_rps=len(latencies) / span if not math.isnan(span) else 0.0,
        sent=sent,
        ok=len(latencies),
        non_200=non_200,
        errors=errors,
        p50_ms=_percentile(latencies, 50),
        p90_ms=_percentile(latencies, 90),
        p99_ms=_percentile(latencies, 99),
        p999_ms=_percentile(latencies, 99.9),
        max_ms=latencies[-1] if latencies else float("nan"),
        client_cpu_pct=100 * cpu / wall,
    )
