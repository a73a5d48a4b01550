"""A bounded, open-loop, fixed-rate HTTP load generator (wrk2-style latency) for loopback only.

Request i is *scheduled* at t0 + i/rate whatever happened to earlier requests, and its latency is
measured from that scheduled instant to the last byte of the answer. A slow server or a late client
therefore shows up as latency instead of silently lowering the offered rate (no coordinated
omission). Each request opens its own connection, as wrk does against gunicorn's sync workers
(they answer `Connection: close`). The run is bounded: exactly `rate * duration` requests, at most
`max_in_flight` at once, each with a timeout, and a hard deadline for the whole run. The garbage
collector is off during a run, so none of its pauses counts as latency.
"""

from __future__ import annotations

import collections
import errno
import gc
import math
import selectors
import socket
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


class _Conn:
    __slots__ = ("buf", "deadline", "i", "out", "scheduled", "sock", "started")

    def __init__(self, sock: socket.socket, i: int, scheduled: float, started: float, out: bytes,
                 deadline: float) -> None:
        self.sock, self.i, self.scheduled, self.started = sock, i, scheduled, started
        self.out, self.buf, self.deadline = out, b"", deadline


def _answer_complete(buf: bytes) -> int | None:
    """The status of a complete HTTP answer in `buf`, or None while more bytes are due."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buf[:head_end]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    if len(buf) - head_end - 4 < length:
        return None
    return int(head.split(b" ", 2)[1])


def _run(port: int, prefix: bytes, suffix: bytes, nonce: str, rate: float, count: int,
         max_in_flight: int, request_timeout: float,
         trace: list[tuple[float, float, float]] | None = None) -> tuple[list[float], int, int, int, float, float]:
    """One thread, non-blocking sockets and epoll: a client much cheaper than the servers it loads
    (an asyncio client cost ~0.6 ms of CPU per request, as much as the server, on 2 shared cores)."""
    sel = selectors.DefaultSelector()
    latencies: list[float] = []
    non_200 = errors = sent = 0
    last_done = 0.0
    in_flight: dict[int, _Conn] = {}
    waiting: collections.deque[tuple[int, float]] = collections.deque()  # due, but max_in_flight reached
    t0 = time.perf_counter()
    next_i = 0
    hard_deadline = t0 + count / rate + request_timeout * 3

    def start(i: int, scheduled: float) -> None:
        nonlocal errors
        started = time.perf_counter()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            errors += 1
            return
        conn = _Conn(sock, i, scheduled, started, prefix + f"{nonce}-{i}".encode() + suffix,
                     started + request_timeout)
        in_flight[sock.fileno()] = conn
        sel.register(sock, selectors.EVENT_WRITE, conn)

    def finish(conn: _Conn, ok: bool | None, status: int = 0) -> None:
        nonlocal errors, non_200, last_done
        sel.unregister(conn.sock)
        del in_flight[conn.sock.fileno()]
        conn.sock.close()
        if not ok:
            errors += 1
            return
        done = time.perf_counter()
        last_done = max(last_done, done)
        if status == 200:
            latencies.append((done - conn.scheduled) * 1000)
            if trace is not None:
                trace.append((conn.scheduled, conn.started, done))
        else:
            non_200 += 1

    while next_i < count or in_flight or waiting:
        now = time.perf_counter()
        if now > hard_deadline:
            break
        while next_i < count and t0 + next_i / rate <= now:
            waiting.append((next_i, t0 + next_i / rate))
            next_i += 1
        while waiting and len(in_flight) < max_in_flight:
            start(*waiting.popleft())
            sent += 1
        timeout = max(0.0, t0 + next_i / rate - time.perf_counter()) if next_i < count else 0.05
        for key, events in sel.select(min(timeout, 0.05)):
            conn = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        finish(conn, False)
                        continue
                    n = conn.sock.send(conn.out)
                    conn.out = conn.out[n:]
                    if not conn.out:
                        sel.modify(conn.sock, selectors.EVENT_READ, conn)
                    continue
                chunk = conn.sock.recv(65536)
                if not chunk:
                    finish(conn, False)
                    continue
                conn.buf += chunk
                status = _answer_complete(conn.buf)
                if status is not None:
                    finish(conn, True, status)
            except (OSError, ValueError, IndexError):
                finish(conn, False)
        now = time.perf_counter()
        for conn in [c for c in in_flight.values() if c.deadline < now]:
            finish(conn, False)
    for conn in list(in_flight.values()):
        finish(conn, False)
    errors += len(waiting) + (count - next_i)
    sel.close()
    return latencies, non_200, errors, sent, t0, last_done


def run_fixed_rate(port: int, prefix: bytes, suffix: bytes, nonce: str, *, rate: float, duration: float,
                   max_in_flight: int = 256, request_timeout: float = 10.0,
                   trace: list[tuple[float, float, float]] | None = None) -> FixedRateResult:
    """Offer `rate` requests/s for `duration` s (open loop) and return latency percentiles in ms.
    With `trace`, each answered request's (scheduled, started, done) `time.perf_counter()` instants
    are appended: when it was due, when the client opened its connection, when the answer ended."""
    count = max(1, int(rate * duration))
    # A process that imported the app holds enough objects for a full collection to pause it for
    # ~100 ms; requests due meanwhile would start late and count as the server's latency. So the
    # run collects first and then runs with the collector off (its allocations are bounded).
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        latencies, non_200, errors, sent, t0, last_done = _run(
            port, prefix, suffix, nonce, rate, count, max_in_flight, request_timeout, trace
        )
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    finally:
        if gc_was_enabled:
            gc.enable()
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
