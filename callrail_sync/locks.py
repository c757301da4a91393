"""Locks that hold across workers and machines: one read-modify-write of a company's Webhooks
integration at a time, and one worker at a time recording a listing's changes (its feed).

CallRail keeps a company's webhook URLs in one integration whose whole config a write
replaces, so two changes made at once would lose one. `RedisLocks.hold(name)` is a Redis lock (a
random token, released only by its holder, expiring after `ttl` in case the holder dies).
Before it writes, the holder `confirm()`s it still holds the lock, renewing it; if it expired
(the holder stalled past the TTL), confirm raises and the job retries from a fresh read of
CallRail, so a stale holder never writes over a newer change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from redis.exceptions import LockError

from callrail_sync.errors import LockBusy

BUSY = "another worker is changing the same thing; trying again"


class Held:
    def __init__(self, lock: redis.lock.Lock) -> None:
        self._lock = lock

    def confirm(self) -> None:
        """Raise LockBusy unless the lock is still ours; renew it if it is."""
        try:
            self._lock.reacquire()
        except LockError:
            raise LockBusy("the lock ran out before the write; trying again") from None


class RedisLocks:
    """Locks in Redis, shared by every worker on it."""

    def __init__(
        self, client: redis.Redis, ttl: float = 60.0, wait: float = 20.0, prefix: str = "callrail"
    ) -> None:
        self._redis, self._ttl, self._wait = client, ttl, wait
        self._prefix = f"{prefix}:lock:"

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[Held]:
        """Wait for the lock `name` (LockBusy after the wait), and hold it for the block."""
        lock = self._redis.lock(
            self._prefix + name, timeout=self._ttl, blocking_timeout=self._wait, thread_local=False
        )
        if not lock.acquire():
            raise LockBusy(BUSY)
        try:
            yield Held(lock)
        finally:
            with contextlib.suppress(LockError):  # expired meanwhile: nothing to release
                lock.release()
