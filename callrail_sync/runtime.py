"""The process's shared parts (settings, stores, Redis, the request budget), made once per
process.

Tasks ask `runtime()` for what they need instead of building it, so tests and the embedded
`serve` mode hand in their own (`configure`). A forked worker process builds its own on first
use: MongoClient is not fork-safe. Every runtime has a real Redis and a real MongoDB: there is
no in-process stand-in for either.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis

from callrail_sync import metrics
from callrail_sync.budget import RequestBudget, Window, unit_for
from callrail_sync.callrail.client import BeforeRequest, CallRailClient, Timeouts
from callrail_sync.config import Settings
from callrail_sync.events import JobEvents
from callrail_sync.locks import RedisLocks
from callrail_sync.logs import register_secret
from callrail_sync.stores import Stores, connect


@dataclass
class Runtime:
    """What a task needs besides its job: settings, stores, and the shared Redis parts."""

    settings: Settings
    stores: Stores
    redis: redis.Redis
    """Redis for coordination (stop flags, events, claims)."""
    budget: RequestBudget
    """The shared request budget."""
    locks: RedisLocks
    """Locks across workers."""

    def client(self, api_key: str) -> CallRailClient:
        """A CallRail client for one key, spending the shared budget."""
        s = self.settings
        register_secret(api_key)
        hook: BeforeRequest = self.budget.hook(api_key)
        return CallRailClient(
            api_key,
            base_url=s.callrail_base_url,
            timeouts=Timeouts(connect=s.callrail_connect_timeout, read=s.callrail_read_timeout),
            request_from=s.callrail_request_from,
            before_request=hook,
            after_response=count_response,
            page_concurrency=s.page_concurrency,
            page_size=s.callrail_page_size,
        )


def count_response(method: str, path: str, status: int) -> None:
    metrics.REQUESTS.labels(method, str(status)).inc()
    unit = unit_for("", path)
    account = unit.removeprefix("account:") if unit.startswith("account:") else "key"
    metrics.ACCOUNT_REQUESTS.labels(account, str(status)).inc()
    if status == 429:
        metrics.RATE_LIMITED.inc()


def budget_for(settings: Settings, client: redis.Redis) -> RequestBudget:
    return RequestBudget(
        client,
        [Window(settings.hourly_limit, 3600), Window(settings.daily_limit, 86400)],
        margin=settings.budget_margin,
        max_inline_wait=settings.budget_max_inline_wait,
        cooldown_base=settings.backoff_base,
        cooldown_cap=settings.backoff_cap,
        prefix=settings.budget_prefix,
    )


def build_runtime(
    settings: Settings, *, stores: Stores | None = None, budget: RequestBudget | None = None
) -> Runtime:
    """The real parts for these settings: Mongo (its job writes announced as events), Redis,
    and the budget and locks on it (`stores` and `budget`: ready ones, from tests and bench)."""
    client = redis.Redis.from_url(settings.redis_url)
    return Runtime(
        settings=settings,
        stores=stores or connect(settings, on_job_change=JobEvents(client, settings.redis_prefix)),
        redis=client,
        budget=budget or budget_for(settings, client),
        locks=RedisLocks(client, ttl=lock_ttl(settings), prefix=settings.redis_prefix),
    )


def lock_ttl(settings: Settings) -> float:
    """Long enough for a list and a write to CallRail at their slowest (the read timeout)."""
    return 2 * (settings.callrail_connect_timeout + settings.callrail_read_timeout) + 10


_lock = threading.Lock()
_runtime: Runtime | None = None
_pid: int | None = None
_factory: Callable[[], Runtime] | None = None


def configure(factory: Callable[[], Runtime] | Runtime | None) -> None:
    """Use `factory` (or a ready Runtime) from now on; None forgets it."""
    global _factory, _runtime, _pid
    with _lock:
        if isinstance(factory, Runtime):
            ready = factory
            _factory = lambda: ready  # noqa: E731
        else:
            _factory = factory
        _runtime, _pid = None, None


def runtime() -> Runtime:
    """This process's runtime, built on first use (and again after a fork)."""
    global _runtime, _pid
    with _lock:
        if _runtime is None or _pid != os.getpid():
            if _factory is None:
                raise RuntimeError("no runtime configured (a worker configures it at start)")
            _runtime = _factory()
            _pid = os.getpid()
        return _runtime
