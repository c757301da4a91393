"""Admission of writes: one user cannot spend an account's CallRail quota, or the workers,
on a flood of webhook changes.

Per owner, at most WRITE_JOBS_PER_OWNER write jobs may be active and at most
WRITES_PER_MINUTE may be submitted (a sliding window shared by every shim process through
Redis: `SlidingWindows`, on keys of its own). Beyond either, the answer is 429 with
Retry-After. Identical writes are joined before this is asked (they cost nothing).
"""

from __future__ import annotations

import redis

from callrail_sync import errors
from callrail_sync.budget import SlidingWindows, Window
from callrail_sync.config import Settings
from callrail_sync.job import WRITE_TYPES
from callrail_sync.stores.jobs import JobStore


class Admission:
    """Says whether an owner may submit one more write job now."""

    def __init__(self, settings: Settings, jobs: JobStore, budget: SlidingWindows) -> None:
        self._settings = settings
        self._jobs = jobs
        self._rate = budget

    @classmethod
    def for_settings(
        cls, settings: Settings, jobs: JobStore, redis_client: redis.Redis
    ) -> Admission:
        window = Window(settings.writes_per_minute, 60)
        rate = SlidingWindows(redis_client, [window], prefix="callrail:admission")
        return cls(settings, jobs, rate)

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
