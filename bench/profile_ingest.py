"""Where does a gunicorn worker of the real app spend its time under ingest load? (py-spy)

    .venv/bin/python -m bench.profile_ingest [--db sqlite|postgresql] [--duration 10] [--endpoint ours|floor]

Starts the same servers as bench.ingest (gunicorn 2 sync workers, real redis-server), drives them with
wrk at saturation, and samples ONE worker with `py-spy record --idle --threads --nonblocking` (wall
time, so time blocked in the database driver counts). Prints, for the worker's main thread, the share
of samples in which each function is on the stack (inclusive) and the top functions by own time;
and how busy the dispatcher thread was. Raw stacks go to bench/out/ for flame graphs.

Needs py-spy in the venv: .venv/bin/pip install py-spy
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

from bench import _infra
from bench.ingest import _create_floor_table


def _load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = line.rsplit(" ", 1)
        stacks.append((frames.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number and venv prefix.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize(path: Path, top: int, focus: str | None = None) -> str:
    """Inclusive and own shares of the main thread's samples; with `focus`, only the samples whose
    stack contains a frame starting with `focus` (e.g. "BaseWorker.work") count."""
    stacks = _load(path)
    if focus is not None:
        stacks = [(f, c) for f, c in stacks if any(x.startswith(focus) for x in f)]
        if not stacks:
            return f"no samples under {focus}"
    threads: Counter[str] = Counter()
    for frames, count in stacks:
        threads[frames[0]] += count
    lines = ["samples per thread: " + ", ".join(f"{t}: {n}" for t, n in threads.most_common())]
    main = next((t for t in threads if "MainThread" in t), threads.most_common(1)[0][0])
    for thread in threads:
        if thread == main:
            continue
        sub = [(f, c) for f, c in stacks if f[0] == thread]
        lines.append(f"  {thread}: {sum(c for _, c in sub)} samples, of which not in Event.wait: "
                     f"{sum(c for f, c in sub if not any('wait (' in x for x in f))}")
    main_stacks = [(f[1:], c) for f, c in stacks if f[0] == main]
    total = sum(c for _, c in main_stacks)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in main_stacks:
        for name in {_short(x) for x in frames}:
            inclusive[name] += count
        if frames:
            own[_short(frames[-1])] += count
    scope = f", only under {focus}" if focus else ""
    lines.append(f"\nmain thread: {total} samples{scope}")
    lines.append(f"\n{'inclusive %':>11}  function")
    for name, count in inclusive.most_common(top):
        lines.append(f"{100 * count / total:10.1f}%  {name}")
    lines.append(f"\n{'own %':>11}  function (leaf frame)")
    for name, count in own.most_common(top):
        lines.append(f"{100 * count / total:10.1f}%  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--endpoint", choices=("ours", "floor"), default="ours")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--cpu-only", action="store_true",
                        help="sample only while the worker runs on CPU (no --idle): where its CPU goes")
    parser.add_argument("--focus", default=None,
                        help="count only samples whose stack has a frame starting with this, e.g. 'receive'")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 120:
        parser.error("--duration must be within 0..120 s")
    py_spy = shutil.which("py-spy", path=str(_infra.VENV_BIN)) or shutil.which("py-spy")
    if py_spy is None:
        raise _infra.BenchError("py-spy is not installed: .venv/bin/pip install py-spy")

    redis_url = _infra.start_redis()
    db = _infra.make_database(args.db, f"bench_profile_{args.db}")
    _infra.register_shop(db.url)
    if args.endpoint == "ours":
        server = _infra.start_ours(db, redis_url)
    else:
        _create_floor_table(db)
        server = _infra.start_floor(db)
    out_dir = Path(__file__).parent / "out"
    out_dir.mkdir(exist_ok=True)
    kind = "cpu" if args.cpu_only else "wall"
    raw = out_dir / f"profile-{args.endpoint}-{args.db}-{kind}-{datetime.now():%Y%m%d-%H%M%S}.txt"
    try:
        prefix, suffix = _infra.shopify_request_parts(server.port, _infra.make_body(4096))
        _infra.run_wrk(server.port, prefix, suffix, f"warm{uuid.uuid4().hex[:8]}", duration=2)
        pid = server.worker_pids()[0]
        result: dict[str, object] = {}

        def load() -> None:
            result["wrk"] = _infra.run_wrk(server.port, prefix, suffix, f"prof{uuid.uuid4().hex[:8]}",
                                           duration=args.duration + 2)

        loader = threading.Thread(target=load)
        loader.start()
        spy = subprocess.run(
            [py_spy, "record", "--pid", str(pid), *([] if args.cpu_only else ["--idle"]), "--threads",
             "--nonblocking", "--format", "raw",
             "--rate", str(args.rate), "--duration", str(int(args.duration)), "--output", str(raw)],
            capture_output=True, text=True, timeout=args.duration + 60, check=False,
        )
        loader.join(args.duration + 90)
        if spy.returncode != 0 or not raw.exists():
            raise _infra.BenchError(f"py-spy failed: {spy.stderr[-2000:]}")
    finally:
        server.stop()
    wrk = result.get("wrk", {})
    print(f"{args.endpoint} on {args.db}: {wrk.get('rps', 0):.0f} req/s while profiling worker {pid} "
          f"(py-spy {args.rate} Hz, nonblocking, {'CPU samples only' if args.cpu_only else 'wall time, idle included'})")
    print(summarize(raw, args.top, focus=args.focus))
    print(f"\nraw stacks: {raw.relative_to(_infra.PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
