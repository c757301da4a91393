"""Admission: one user cannot spend an account's CallRail quota, the workers or the shim on a
flood of jobs or streams.

Per owner: at most JOBS_PER_MINUTE new jobs of any kind (listings, syncs, webhook lists and
writes); at most WRITE_JOBS_PER_OWNER write jobs active and WRITES_PER_MINUTE submitted; at
most STREAMS_PER_OWNER event streams open at once. The windows and the open streams are kept
in Redis, so every shim process counts against the same limits. Beyond any of them the
answer is 429 with Retry-After. A request that joins an active job costs nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import TypeVar

import anyio
import redis
import redis.asyncio as aioredis

from callrail_sync import errors
from callrail_sync.budget import SlidingWindows, Window
from callrail_sync.config import Settings
from callrail_sync.job import WRITE_TYPES, Job, JobParams, JobType
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.jobs import JobStore
from tasks.submit import JobQueue, dedupe_key, submit

T = TypeVar("T")


class Admission:
    """Says whether an owner may submit one more write job now."""

    def __init__(self, settings: Settings, jobs: JobStore, redis_client: redis.Redis) -> None:
        self._settings = settings
        self._jobs = jobs
        prefix = f"{settings.redis_prefix}:admission"
        window = Window(settings.writes_per_minute, 60)
        self._rate = SlidingWindows(redis_client, [window], prefix=prefix)
        every = Window(settings.jobs_per_minute, 60)
        self._new_jobs = SlidingWindows(redis_client, [every], prefix=f"{prefix}:jobs")

    def submit(
        self, queue: JobQueue, owner: str, job_type: JobType, params: JobParams
    ) -> tuple[Job, bool]:
        """The active job this request joins (free), or a new one if the owner may have one
        now (TooManyRequests otherwise). Returns (job, created)."""
        joined = self._jobs.active(dedupe_key(owner, job_type, params))
        if joined is None:
            self.admit_job(owner)
        elif joined.not_before is None or joined.not_before <= utcnow():
            return joined, False
        # A new job, or one beat planned for later: `submit` joins it and sends it now.
        return submit(self._jobs, queue, owner, job_type, params)

    def admit_job(self, owner: str) -> None:
        """Raise TooManyRequests unless the owner may start one more job now (spends one)."""
        granted, wait, _ = self._new_jobs.try_acquire(owner)
        if not granted:
            per_minute = self._settings.jobs_per_minute
            raise errors.TooManyRequests(
                f"Too many new jobs (at most {per_minute} a minute); try again shortly.",
                retry_after=wait,
            )

    def admit(self, owner: str) -> None:
        """Raise TooManyRequests unless the owner may submit a write now (this spends one)."""
        limit = self._settings.write_jobs_per_owner
        if self._jobs.count_active(owner, WRITE_TYPES) >= limit:
            raise errors.TooManyRequests(
                f"Too many webhook changes in progress (at most {limit}); wait for one to finish.",
                retry_after=5,
            )
        granted, wait, _ = self._rate.try_acquire(owner)
        if not granted:
            per_minute = self._settings.writes_per_minute
            raise errors.TooManyRequests(
                f"Too many webhook changes (at most {per_minute} a minute); try again shortly.",
                retry_after=wait,
            )


class StreamSlots:
    """The event streams each owner has open, across shim processes: a Redis sorted set per
    owner whose members are the open streams, scored by when each stops counting unless it is
    renewed (a shim process that dies leaves no slot taken for more than SLOT_SECONDS)."""

    SLOT_SECONDS = 60.0

    def __init__(self, redis_url: str, per_owner: int, prefix: str = "callrail") -> None:
        self._redis = aioredis.Redis.from_url(redis_url)
        self.per_owner = per_owner
        self._prefix = prefix

    def _key(self, owner: str) -> str:
        return f"{self._prefix}:streams:{owner}"

    async def take(self, owner: str) -> str:
        """A slot for one more stream of `owner`, or TooManyRequests."""
        key, now, slot = self._key(owner), time.time(), uuid.uuid4().hex
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {slot: now + self.SLOT_SECONDS})
            pipe.zcard(key)
            pipe.expire(key, int(self.SLOT_SECONDS) + 5)
            _, _, count, _ = await pipe.execute()
        if count > self.per_owner:
            await self._redis.zrem(key, slot)
            raise errors.TooManyRequests(
                f"Too many event streams open (at most {self.per_owner}); close one first.",
                retry_after=5,
            )
        return slot

    async def renew(self, owner: str, slot: str) -> None:
        key = self._key(owner)
        await self._redis.zadd(key, {slot: time.time() + self.SLOT_SECONDS}, xx=True)
        await self._redis.expire(key, int(self.SLOT_SECONDS) + 5)

    async def give_back(self, owner: str, slot: str) -> None:
        await self._redis.zrem(self._key(owner), slot)

    async def hold(
        self, owner: str, slot: str, stream: AsyncIterator[T], until: float, expired: T
    ) -> AsyncIterator[T]:
        """`stream` until the Unix time `until` (when the caller's token expires: then
        `expired`, and the end), its slot renewed as it goes (it yields at least every 15 s)
        and given back when it ends, however it ends (a client gone cancels it: the give-back
        is shielded)."""
        renewed = time.monotonic()
        try:
            while True:
                left = until - time.time()
                if left <= 0:
                    yield expired
                    return
                try:
                    chunk = await asyncio.wait_for(anext(stream), left)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    continue  # the token expired: said above, then the stream ends
                if time.monotonic() - renewed > self.SLOT_SECONDS / 4:
                    await self.renew(owner, slot)
                    renewed = time.monotonic()
                yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                await self.give_back(owner, slot)
