"""The shared request budget: CallRail's per-key quota, enforced before we spend it.

CallRail allows 1,000 requests an hour and 10,000 a day per account, shared with every other
application on that account, and says so only with a 429. Celery's `rate_limit` is per worker
process; this budget is per API key across every process and machine that uses the same Redis.

Algorithm: a sliding-window log per key and window. Each granted request is a member of a
Redis sorted set scored with Redis' own clock (`TIME`, so workers' clocks do not matter). A
request is granted only if every window holds fewer than `limit` grants from the last
`window + margin` seconds; checking and recording is one Lua script, so concurrent workers
cannot both take the last slot.

Guarantees: by Redis' clock, no interval of `window + margin` seconds holds more than `limit`
grants, for every configured window; the `margin` covers the time between a grant and the
request's arrival at CallRail, so CallRail, counting arrivals, sees at most `limit` in any
`window`. While a key is cooling down after a 429, nothing is granted for it.

Not guaranteed: that CallRail never answers 429. Other applications spend the same quota and
we cannot see their requests; a 429 puts the key into a cooldown shared by all workers
(`cool_down`). Cost: one sorted-set member per granted request per window (10,000 members for
a key's day window at the default limit).
"""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from callrail_sync import errors
from callrail_sync.metrics import BUDGET_WAIT

_ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local cooldown = redis.call('PTTL', KEYS[1])
if cooldown > 0 then
  return {0, cooldown, 1}
end
local member = ARGV[1]
local margin = tonumber(ARGV[2])
local n = (#ARGV - 2) / 2
local wait = 0
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local span = tonumber(ARGV[2 + 2 * i]) + margin
  local key = KEYS[1 + i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local freeing = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local w = tonumber(freeing[2]) + span - now
    if w > wait then wait = w end
  end
end
if wait > 0 then
  return {0, wait, 0}
end
for i = 1, n do
  local span = tonumber(ARGV[2 + 2 * i]) + margin
  redis.call('ZADD', KEYS[1 + i], now, member)
  redis.call('PEXPIRE', KEYS[1 + i], span)
end
return {1, 0, 0}
"""

_COOL_DOWN = """
local current = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[1])
if current < wanted then
  redis.call('SET', KEYS[1], '1', 'PX', wanted)
  return wanted
end
return current
"""


def fingerprint(api_key: str) -> str:
    """A stable, non-reversible name for a key: Redis never holds the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


_ACCOUNT_IN_PATH = re.compile(r"/a/([^/]+?)(?:\.json)?(?:/|$)")


def unit_for(api_key: str, path: str) -> str:
    """What a request to `path` is charged to: CallRail's quota is per CallRail account (the
    account in the path), shared by every key and app on it; a request that names no account
    (`/a.json`) is charged to the key. (An account named by its old numeric id and by its
    ACC… id counts as two here: CallRail answers the same account to both.)"""
    found = _ACCOUNT_IN_PATH.match(path)
    return f"account:{found.group(1)}" if found else f"key:{fingerprint(api_key)}"


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: float


@dataclass(frozen=True)
class BudgetLeft:
    left: dict[int, int]
    """Requests left, by window length in seconds (3600: this hour, 86400: today)."""
    throttled_until_ms: int | None
    """While a 429's cooldown runs: when it ends (Unix milliseconds, Redis' clock)."""


class SlidingWindows:
    """The sliding-window primitive (see the module docstring): at most `limit` grants per
    window for each unit, shared by every process on the same Redis. The CallRail budget
    (`RequestBudget`) and the shim's limits (write admission, signing-key readings) are made
    of it, each on keys of its own (`prefix`)."""

    def __init__(
        self,
        client: redis.Redis,
        windows: Sequence[Window],
        *,
        margin: float = 0.0,
        prefix: str = "callrail",
    ) -> None:
        self._redis = client
        self.windows = tuple(windows)
        self.margin = margin
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)

    def _keys(self, fp: str) -> list[str]:
        # The {fp} hash tag keeps a key's counters on one Redis Cluster slot (Lua needs that).
        base = f"{self._prefix}:budget:{{{fp}}}"
        return [f"{base}:cooldown"] + [f"{base}:{int(w.seconds)}" for w in self.windows]

    def try_acquire(self, unit: str) -> tuple[bool, float, bool]:
        """(granted, seconds to wait if not, whether the wait is a 429 cooldown) for one
        request charged to `unit` (`unit_for`)."""
        fp = fingerprint(unit)
        args: list[str | int] = [uuid.uuid4().hex, int(self.margin * 1000)]
        for w in self.windows:
            args += [w.limit, int(w.seconds * 1000)]
        granted, wait_ms, cooling = self._acquire(keys=self._keys(fp), args=args)
        return bool(granted), int(wait_ms) / 1000.0, bool(cooling)

    def left(self, unit: str) -> BudgetLeft:
        """What is left of `unit`'s windows now, and until when it cools down."""
        fp = fingerprint(unit)
        keys = self._keys(fp)
        seconds, micros = self._redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        pipe = self._redis.pipeline(transaction=False)
        pipe.pttl(keys[0])
        for key, w in zip(keys[1:], self.windows, strict=True):
            span = int((w.seconds + self.margin) * 1000)
            pipe.zcount(key, now_ms - span, "+inf")
        cooldown_ms, *used = pipe.execute()
        per_window = {
            int(w.seconds): max(0, w.limit - int(n))
            for w, n in zip(self.windows, used, strict=True)
        }
        throttled = now_ms + int(cooldown_ms) if int(cooldown_ms) > 0 else None
        return BudgetLeft(left=per_window, throttled_until_ms=throttled)


class RequestBudget(SlidingWindows):
    """CallRail's quota per unit (`unit_for`), shared through Redis: sliding windows, short
    waits slept inline, and the cooldown after a 429 (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        windows: Sequence[Window] = (Window(1000, 3600), Window(10000, 86400)),
        *,
        margin: float = 2.0,
        max_inline_wait: float = 10.0,
        cooldown_base: float = 5.0,
        cooldown_cap: float = 600.0,
        prefix: str = "callrail",
    ) -> None:
        super().__init__(client, windows, margin=margin, prefix=prefix)
        self.max_inline_wait = max_inline_wait
        self.cooldown_base = cooldown_base
        self.cooldown_cap = cooldown_cap
        self._cool = client.register_script(_COOL_DOWN)

    def acquire(self, unit: str) -> float:
        """Take one slot, sleeping for short waits; raise BudgetWait for long ones.

        Returns the seconds spent waiting. A long wait is left to the task, which retries
        with a countdown instead of holding a worker.
        """
        waited = 0.0
        while True:
            granted, wait, cooling = self.try_acquire(unit)
            if granted:
                if waited:
                    BUDGET_WAIT.inc(waited)
                return waited
            if waited + wait > self.max_inline_wait:
                reason = "cooling down after a 429" if cooling else "request budget spent"
                raise errors.BudgetWait(f"CallRail key {reason}", retry_after=wait)
            # A little jitter so that workers released together do not collide again.
            pause = wait + random.uniform(0, min(0.05, wait / 4 + 0.005))
            time.sleep(pause)
            waited += pause

    def cool_down(self, unit: str, retry_after: float | None) -> float:
        """After a 429: no worker sends for this unit until the cooldown ends. Returns seconds.

        With Retry-After, that long; without, exponential in the 429s seen recently
        (`cooldown_base` doubling, capped at `cooldown_cap`), with jitter.
        """
        fp = fingerprint(unit)
        strikes_key = f"{self._prefix}:budget:{{{fp}}}:strikes"
        strikes = int(self._redis.incr(strikes_key))
        self._redis.expire(strikes_key, int(self.cooldown_cap * 2))
        if retry_after is not None:
            seconds = retry_after
        else:
            ceiling = min(self.cooldown_cap, self.cooldown_base * 2 ** (strikes - 1))
            seconds = ceiling / 2 + random.uniform(0, ceiling / 2)
        return (
            int(self._cool(keys=[self._keys(fp)[0]], args=[max(1, int(seconds * 1000))])) / 1000.0
        )

    def share(self, fraction: float) -> RequestBudget:
        """A budget of `fraction` of each window, kept apart from this one: what one kind of
        work (stream syncs) may take, spent before this budget's own slot, so the rest of
        the hour stays for everything else."""
        windows = [Window(max(1, int(w.limit * fraction)), w.seconds) for w in self.windows]
        return RequestBudget(
            self._redis,
            windows,
            margin=self.margin,
            max_inline_wait=self.max_inline_wait,
            cooldown_base=self.cooldown_base,
            cooldown_cap=self.cooldown_cap,
            prefix=f"{self._prefix}:share",
        )

    def hook(self, api_key: str) -> Callable[[str, str], None]:
        """A `before_request` hook for CallRailClient that spends this budget, each request
        charged to its CallRail account (or to the key)."""

        def before_request(method: str, path: str) -> None:
            self.acquire(unit_for(api_key, path))

        return before_request
