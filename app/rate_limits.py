"""Per-shop platform rate limits shared by every worker: a model of the platform's bucket in Redis.

Shopify meters its GraphQL Admin API per shop in a leaky bucket of cost points
(https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits): `maximumAvailable` points,
refilled at `restoreRate` points/s; a query runs only when its *requested* cost is available, which
is taken at once, and the unused part (requested − actual) is given back when it finishes. Each
answer reports `throttleStatus.currentlyAvailable`. One process that models the bucket from its own
answers stays under it; several processes each spending what the others also count on do not
(bench/RESULTS.md: two workers, 41 % of the requests refused).

`RedisThrottle` keeps one model per shop in Redis, so every worker on every machine books from the
same bucket. Two Lua scripts (redis-py's `register_script`: EVALSHA, atomic on the server, timed by
the server's own clock, `TIME`) do the arithmetic:

- `acquire` refills the model to now, books the operation's expected cost (the last requested cost
  seen for it, else the caller's estimate) at the moment it fits, and returns the wait; the booking
  is also kept as a ticket "in flight" (a sorted set, scored by when it may be forgotten);
- `settle` drops the ticket and, when the answer carried a `throttleStatus`, sets the model to the
  lower of (a) the model as booked, refilled to now, plus what the platform gave back of this
  request (booked − actual cost; all of it for a THROTTLED answer, which takes nothing), and
  (b) `currentlyAvailable − the cost of every other ticket still in flight`: the platform's figure
  holds what reached it, and the tickets still out may not have yet. (b) corrects a model that
  booked too little; (a) keeps an answer that was overtaken (its figure is older than one already
  applied, so it misses a request settled since) from raising the model. A request that did reach
  the platform before the answer is counted twice until its own answer comes in. So the model
  stays at or below the platform's bucket: it errs on the safe side by about the cost in flight,
  which costs no throughput while the bucket is in use (both restore at the same rate), and the
  two meet again when the bucket is full.

A shop never seen (or idle until its bucket is full again, when its key expires) is not paced: the
first answer teaches the model. A ticket of a worker that died mid-call is forgotten after
`hold_seconds`. The platform connectors know nothing of Redis: jobs hand a throttle in with the
credentials (`app.shops.api_credentials`, `jobs.shops.api_credentials`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from connectors.errors import RateLimitedError, TransientError
from connectors.throttle import BucketStatus

logger = logging.getLogger(__name__)

# The longest a worker sleeps for the bucket before it gives the job back to RQ (RateLimitedError).
MAX_WAIT_SECONDS = 10.0
# A ticket is forgotten this long after its booked start (a request times out after 25 s).
HOLD_SECONDS = 60.0
# A model is kept this long after the bucket would be full again (then a full bucket is the truth).
IDLE_MARGIN_SECONDS = 60
KEY_PREFIX = "stammkunde:throttle"

# KEYS: bucket hash, in-flight sorted set, operation-costs hash.
# ARGV: operation, estimate, max wait, ticket id, hold seconds, idle margin.
# Returns {admitted 1|0, wait seconds, booked cost, member} (numbers as text: Lua numbers turn into
# integers on the way out).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local b = redis.call('HMGET', KEYS[1], 'maximum', 'available', 'rate', 'at')
local delay = 0
if b[1] and b[2] and b[3] and b[4] then
  local maximum, available, rate, at = tonumber(b[1]), tonumber(b[2]), tonumber(b[3]), tonumber(b[4])
  if rate > 0 then
    if cost > maximum then cost = maximum end
    local avail = math.min(maximum, available + rate * (now - at))
    if avail < cost then delay = (cost - avail) / rate end
    if delay > tonumber(ARGV[3]) then
      return {0, tostring(delay), tostring(cost), ''}
    end
    redis.call('HSET', KEYS[1], 'available', tostring(avail + rate * delay - cost), 'at', tostring(now + delay))
    if delay > 0 then
      redis.call('HINCRBY', KEYS[1], 'waits', 1)
      redis.call('HINCRBYFLOAT', KEYS[1], 'waited', tostring(delay))
    end
    redis.call('EXPIRE', KEYS[1], math.ceil(delay + maximum / rate) + tonumber(ARGV[6]))
  end
end
local member = ARGV[4] .. '|' .. tostring(cost)
redis.call('ZADD', KEYS[2], now + delay + tonumber(ARGV[5]), member)
redis.call('EXPIRE', KEYS[2], math.ceil(delay + tonumber(ARGV[5])) + 1)
return {1, tostring(delay), tostring(cost), member}
"""

# KEYS: as for _ACQUIRE. ARGV: operation, member, requested ('' if unknown), maximum, available,
# restore rate ('' when the answer had no throttleStatus), idle margin, booked cost, actual cost
# ('' if none: a THROTTLED answer took nothing).
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
end
if ARGV[4] ~= '' then
  local others = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    others = others + tonumber(string.match(m, '|([^|]+)$'))
  end
  local maximum, rate = tonumber(ARGV[4]), tonumber(ARGV[6])
  local available = tonumber(ARGV[5]) - others
  local b = redis.call('HMGET', KEYS[1], 'maximum', 'available', 'rate', 'at')
  if b[1] and b[2] and b[3] and b[4] then
    -- The model as booked, refilled to now, with what the platform gave back of this request
    -- (booked - actual); the answer's figure may be older than one already applied (answers
    -- overtake each other), so it may lower the model but never raise it above that.
    local spent = 0
    if ARGV[9] ~= '' then spent = tonumber(ARGV[9]) end
    local old_max, old_rate = tonumber(b[1]), tonumber(b[3])
    local model = math.min(old_max, tonumber(b[2]) + old_rate * (now - tonumber(b[4])) + tonumber(ARGV[8]) - spent)
    if model < available then available = model end
  end
  redis.call('HSET', KEYS[1], 'maximum', ARGV[4], 'available', tostring(available), 'rate', ARGV[6],
             'at', tostring(now))
  if rate > 0 then
    redis.call('EXPIRE', KEYS[1], math.ceil((maximum - available) / rate) + tonumber(ARGV[7]))
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Ticket:
    """One booked request: whose bucket, which operation, and its member in the in-flight set."""

    shop: str
    operation: str
    member: str
    cost: float
    waited: float


class RedisThrottle:
    """A `connectors.throttle.Throttle` whose per-shop buckets live in Redis (see the module doc)."""

    def __init__(self, connection: Redis, *, platform: str, max_wait: float = MAX_WAIT_SECONDS,
                 hold_seconds: float = HOLD_SECONDS, sleep: Callable[[float], None] = time.sleep) -> None:
        self.connection = connection
        self.platform = platform
        self.max_wait = max_wait
        self.hold_seconds = hold_seconds
        self._sleep = sleep
        self._acquire = connection.register_script(_ACQUIRE)
        self._settle = connection.register_script(_SETTLE)

    def _keys(self, shop: str) -> list[str]:
        base = f"{KEY_PREFIX}:{self.platform}"
        return [f"{base}:{shop}", f"{base}:{shop}:in-flight", f"{base}:operation-costs"]

    def acquire(self, shop: str, operation: str, estimate: float) -> Ticket:
        """Book the operation's expected cost in the shop's shared bucket; sleep until it fits.

        Raises:
            RateLimitedError: the wait would exceed `max_wait` (nothing booked).
            TransientError: Redis cannot be reached (the call is not made unpaced).
        """
        try:
            admitted, delay, cost, member = self._acquire(
                keys=self._keys(shop),
                args=[operation, repr(float(estimate)), repr(float(self.max_wait)), uuid.uuid4().hex,
                      repr(float(self.hold_seconds)), IDLE_MARGIN_SECONDS],
            )
        except RedisError as exc:
            logger.warning("rate limit store unreachable", extra={"platform": self.platform, "shop": shop,
                                                                   "error_type": type(exc).__name__})
            raise TransientError(f"{self.platform}: the shared rate limit (Redis) cannot be reached") from None
        wait = float(delay)
        if not int(admitted):
            raise RateLimitedError(f"{self.platform}: the shop's cost bucket is too low to wait for",
                                   retry_after=wait)
        if wait > 0:
            logger.debug("platform call waits for the shared cost bucket",
                         extra={"platform": self.platform, "shop": shop, "wait_seconds": round(wait, 3)})
            self._sleep(wait)
        return Ticket(shop=shop, operation=operation, member=_text(member), cost=float(cost), waited=wait)

    def settle(self, ticket: Ticket, *, requested: float | None, actual: float | None,
               status: BucketStatus | None) -> None:
        """Drop the ticket from the in-flight set and set the model from the answer's status.

        A Redis failure here is logged and not raised: the platform call is done and its outcome
        must reach the caller; the ticket then lapses after `hold_seconds`, and until it does the
        model counts its cost as still out (the safe side).
        """
        known = status is not None
        args = [ticket.operation, ticket.member, "" if requested is None else repr(float(requested)),
                repr(float(status.maximum)) if known else "", repr(float(status.available)) if known else "",
                repr(float(status.restore_rate)) if known else "", IDLE_MARGIN_SECONDS, repr(ticket.cost),
                "" if actual is None else repr(float(actual))]
        try:
            self._settle(keys=self._keys(ticket.shop), args=args)
        except RedisError as exc:
            logger.warning("rate limit model not updated", extra={"platform": self.platform, "shop": ticket.shop,
                                                                   "error_type": type(exc).__name__})

    def status(self, shop: str) -> dict[str, Any] | None:
        """Return the shop's model as stored (maximum, available at `at`, rate, waits, waited
        seconds, tickets in flight), or None when there is none: for benchmarks and support."""
        bucket, in_flight = self._keys(shop)[:2]
        raw = self.connection.hgetall(bucket)
        if not raw:
            return None
        out: dict[str, Any] = {_text(k): float(v) for k, v in raw.items()}
        out["in_flight"] = self.connection.zcard(in_flight)
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def shared_throttle(platform: str) -> RedisThrottle | None:
    """Return the throttle every process shares for `platform`, on this process's Redis (the
    running job's connection in a worker, else REDIS_URL's); None in a process with no Redis
    configured (a one-off command: its calls are paced by the client's own model)."""
    from app import queues

    try:
        connection = queues.connection()
    except queues.RedisNotConfiguredError:
        return None
    return RedisThrottle(connection, platform=platform)
