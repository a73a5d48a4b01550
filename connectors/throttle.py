"""The seam between a client and whatever paces its calls to a platform's rate limit (sans-I/O).

A platform that meters its API in a leaky bucket (Shopify's GraphQL cost: `maximumAvailable`
points, refilled at `restoreRate` points/s, a query needs its requested cost available) is called
through a `Throttle`. The client asks it before each request (`acquire`: book the expected cost,
wait until it fits) and tells it afterwards what the platform answered (`settle`: the requested
and actual cost, and the bucket's state as the platform reports it).

Connectors import nothing of the app, so they do not build the throttle: the caller hands one in
with the credentials (`Connector.credentials(shop, stored, throttle=...)`). The app's throttle
(`app.rate_limits.RedisThrottle`) keeps each shop's bucket in Redis, shared by every worker
process on every machine; a process that is handed none uses the client's own in-process model.

https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class BucketStatus:
    """A shop's bucket as the platform reported it in an answer (Shopify: `throttleStatus`)."""

    maximum: float  # maximumAvailable
    available: float  # currentlyAvailable, after this request's own cost and refund
    restore_rate: float  # restoreRate, points per second


@runtime_checkable
class Throttle(Protocol):
    """Paces one platform's calls per shop; see the module docstring."""

    def acquire(self, shop: str, operation: str, estimate: float) -> Any:
        """Book the expected cost of one `operation` for `shop` and wait until it fits the bucket.

        The expected cost is the last requested cost seen for `operation`, else `estimate`.
        Returns a ticket to hand to `settle` once the answer (or the failure) is in.

        Raises:
            RateLimitedError: the wait would be longer than the throttle holds a caller;
                nothing is booked, `retry_after` says when to try again.
            TransientError: the throttle's own store cannot be reached.
        """

    def settle(self, ticket: Any, *, requested: float | None, actual: float | None,
               status: BucketStatus | None) -> None:
        """Record what the platform answered for the ticket's request (all None when there was
        no answer: the booked cost then stays spent, which errs on the safe side)."""
