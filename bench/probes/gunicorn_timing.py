"""gunicorn config (`-c bench/probes/gunicorn_timing.py`) for bench.probes.service_times: every
request's service time, as the worker saw it, appended to `$GTIME_DIR/w<pid>.txt`.

One line per request: `<start> <wall ms> <thread cpu ms> <run-queue ms> <voluntary switches>`,
from the moment gunicorn has parsed the request (`pre_request`) to the moment the answer is
written (`post_request`); start is `time.monotonic()`, the load generator's clock. The run-queue
time (waiting for a CPU while runnable) is read from /proc's schedstat. Also gunicorn's heartbeat
(`WorkerTmp.notify`, an `os.utime` on a temp file) is timed: `N <start> <ms>` for one slower than
1 ms, and `S <count> <total ms> <max ms>` when the worker exits.
"""

import os
import threading
import time

from gunicorn.workers import workertmp

_files: dict[int, object] = {}
_heartbeats: dict[int, list[float]] = {}


def _out():
    pid = os.getpid()
    f = _files.get(pid)
    if f is None:
        f = _files[pid] = open(os.path.join(os.environ["GTIME_DIR"], f"w{pid}.txt"), "a", buffering=1 << 16)  # noqa: SIM115
    return f


def _sched() -> tuple[int, int]:
    task = f"/proc/self/task/{threading.get_native_id()}"
    with open(f"{task}/schedstat") as f:
        run_delay_ns = int(f.read().split()[1])
    with open(f"{task}/status") as f:
        voluntary = next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
    return run_delay_ns, voluntary


def pre_request(worker, req):
    req.timing = (time.monotonic(), time.thread_time(), _sched())


def post_request(worker, req, environ, resp):
    t0, c0, (q0, v0) = req.timing
    t, (q, v) = time.monotonic(), _sched()
    _out().write(f"{t0:.6f} {1e3 * (t - t0):.3f} {1e3 * (time.thread_time() - c0):.3f} {(q - q0) / 1e6:.3f} {v - v0}\n")


_notify = workertmp.WorkerTmp.notify


def _timed_notify(self):
    t = time.monotonic()
    _notify(self)
    d = time.monotonic() - t
    stats = _heartbeats.setdefault(os.getpid(), [0, 0.0, 0.0])
    stats[0] += 1
    stats[1] += d
    stats[2] = max(stats[2], d)
    if d > 0.001:
        _out().write(f"N {t:.6f} {1e3 * d:.3f}\n")


workertmp.WorkerTmp.notify = _timed_notify


def worker_exit(server, worker):
    count, total, worst = _heartbeats.get(os.getpid(), [0, 0.0, 0.0])
    f = _out()
    f.write(f"S {count} {1e3 * total:.3f} {1e3 * worst:.3f}\n")
    f.close()
