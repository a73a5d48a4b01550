"""Client-only probe: several threads of ONE process create codes through the real Shopify client.

    .venv/bin/python -m bench.codes_client_probe [--threads 4] [--codes 400] [--latency-ms 100]
        [--restore-rate 100] [--bucket 1000] [--inflight-model]

No database, Redis or worker: N threads call `connectors.shopify.client.create_discount_code` (the
process-wide `THROTTLE` included) against bench/throttle_server.py over HTTPS on loopback, reached
the same way as in bench/codes.py (bench/_resolve.py + REQUESTS_CA_BUNDLE). A THROTTLED answer is
retried in the thread after the client's `retry_after`. It prints the share of the allowed rate
and the refusals.

It answers one question for bench/RESULTS.md: can a worker keep more than one request in flight
per shop (needed once Shopify's answer takes longer than ~1/allowed rate) without refusals?
`--inflight-model` swaps in `InFlightThrottle`, a sketch of the fix proposed there (the client
itself is not changed): a response's throttleStatus predates the requests still in flight, so
their booked cost is subtracted again when the response is recorded.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import _resolve, throttle_server

SHOP_DOMAIN = throttle_server.DEFAULT_HOSTNAME
TOKEN = "shpat_probe"
CREATE_COST = 10


def in_flight_throttle() -> Any:
    """Return a CostThrottle that keeps booked-but-unanswered cost out of recorded statuses."""
    from connectors.shopify import client

    class InFlightThrottle(client.CostThrottle):
        def __init__(self) -> None:
            super().__init__()
            self.in_flight: dict[str, float] = {}

        def reserve(self, shop: str, cost: float) -> float:
            delay = super().reserve(shop, cost)
            with self._lock:
                self.in_flight[shop] = self.in_flight.get(shop, 0.0) + float(cost)
            return delay

        def record(self, shop: str, document: str, cost: Any) -> None:
            with self._lock:
                mine = self._costs.get(document, client.DEFAULT_COST_ESTIMATE)
                self.in_flight[shop] = max(0.0, self.in_flight.get(shop, 0.0) - mine)
                others = self.in_flight[shop]
            super().record(shop, document, cost)
            with self._lock:
                bucket = self._buckets.get(shop)
                if bucket is not None:
                    bucket.available -= others

    return InFlightThrottle()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codes_client_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--codes", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--restore-rate", type=float, default=100.0)
    parser.add_argument("--bucket", type=float, default=1000.0)
    parser.add_argument("--inflight-model", action="store_true", help="use the sketched fix instead of THROTTLE")
    args = parser.parse_args(argv)
    if not (1 <= args.threads <= 64 and 1 <= args.codes <= 5000):
        parser.error("--threads 1..64, --codes 1..5000")

    tls = Path(tempfile.mkdtemp(prefix="stammkunde-probe-"))
    atexit.register(shutil.rmtree, tls, True)
    server, throttle, ca = throttle_server.make_server(
        0, restore_rate=args.restore_rate, bucket=args.bucket, token=TOKEN, tls_dir=tls,
        latency=args.latency_ms / 1000)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    _resolve.install({f"{SHOP_DOMAIN}:443": ("127.0.0.1", server.server_address[1])})
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca)

    import logging

    logging.disable(logging.WARNING)  # one "throttled" warning per refusal otherwise
    from connectors.errors import RateLimitedError
    from connectors.shopify import client
    from connectors.types import DiscountSpec

    if args.inflight_model:
        client.THROTTLE = in_flight_throttle()  # graphql() reads the module global at call time
    credentials = {"shop": SHOP_DOMAIN, "access_token": TOKEN}
    started = datetime.now(timezone.utc)

    def create(i: int) -> None:
        spec = DiscountSpec(code=f"SK-PROBE{i:06d}", title="probe", kind="fixed_amount", value=Decimal("5"),
                            currency="EUR", starts_at=started)
        while True:
            try:
                client.create_discount_code(credentials, spec)
                return
            except RateLimitedError as exc:
                time.sleep(exc.retry_after or 1.0)

    t0 = time.monotonic()
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(create, range(args.codes)))
    elapsed = time.monotonic() - t0
    stats = throttle_server.stats(throttle, True)
    server.shutdown()
    timeline = stats["timeline"]
    created = [row for row in timeline if row[2] == "created"]
    span = created[-1][0] - timeline[0][0]
    fastest = max(0.0, (args.codes * CREATE_COST - args.bucket) / args.restore_rate)
    model = "in-flight sketch" if args.inflight_model else "client THROTTLE as is"
    print(f"{args.threads} thread(s), server answers after {args.latency_ms:g} ms, {model}: "
          f"{stats['accepted_creates']} codes in {elapsed:.1f} s; budget ratio {fastest / span if span else 1:.3f} "
          f"(fastest {fastest:.1f} s / span {span:.1f} s); refusals {stats['refusals']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
