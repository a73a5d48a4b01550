"""The timed side of bench/backfill.py, run in a process of its own (`python -m bench._backfill_child SHOP_ID`).

It must not import bench._infra (which resets the environment the parent set up for it): it reads
DATABASE_URL, REDIS_URL and ENCRYPTION_KEY from the environment like the app, runs one backfill as
`flask shops backfill --days 30` does and prints its figures as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(shop_id: int) -> None:
    """Run in the child process: one backfill of the shop, timed; print the figures as JSON."""
    from app import db
    from jobs import backfill
    from connectors.shopify import client

    db.configure(os.environ["DATABASE_URL"])
    import sqlalchemy  # noqa: F401 - loaded before the baseline, as the app has it

    rss_start = _vm("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    pages = [0]

    def on_page(_progress: Any) -> None:
        pages[0] += 1

    t0 = time.monotonic()
    backfill.start(shop_id, days=30, tiers_only=False)
    progress = backfill.run(shop_id, on_page=on_page)
    t1 = time.monotonic()
    print(json.dumps({
        "t0": t0, "t1": t1, "wall_s": t1 - t0, "orders_read": progress.orders_read, "orders_new": progress.orders_new,
        "status": progress.status, "pages": pages[0], "rss_start": rss_start, "rss_peak": _vm("VmHWM"),
        "client_waits": client.THROTTLE.waits, "client_waited_s": client.THROTTLE.waited_seconds,
    }))


if __name__ == "__main__":
    child(int(sys.argv[1]))
