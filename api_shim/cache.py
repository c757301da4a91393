"""What the shim remembers between requests, so a page read asks the store nothing.

A published snapshot never changes, so its pages and totals are cached by snapshot id and
query for as long as memory allows (a new snapshot has a new id: fresh by construction). The
few facts that do change are kept briefly and dropped early by the job events: which snapshot
is current (dropped when a sync of it succeeds), which refresh job is running (dropped at any
job change of the owner), whether the caller's key is usable (a few seconds: keys are written
by the dashboard's own services, which send no events).

Every miss reads the store in a worker thread, never on the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from callrail_sync.job import JobType
from callrail_sync.stores import Stores
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.snapshots import Kind, PageQuery, SnapshotHead

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Page = tuple[list[dict[str, Any]], int]
KEY_SECONDS = 2.0
HEAD_SECONDS = 30.0
ACTIVE_SECONDS = 2.0
COMMITTED_SECONDS = 1.0
"""How long a stream feed's committed number is trusted: a page of records is cached under
it, so a page is at most this much older than the store."""


class Missing:
    """What `Memo.get` answers for a key it does not hold (None can be a value)."""


MISSING = Missing()


class Memo(Generic[K, V]):
    """A bounded map whose entries expire: least recently used out first."""

    def __init__(self, size: int, seconds: float | None = None) -> None:
        self._size, self._seconds = size, seconds
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | Missing:
        found = self._items.get(key)
        if found is None:
            return MISSING
        stored_at, value = found
        if self._seconds is not None and time.monotonic() - stored_at > self._seconds:
            del self._items[key]
            return MISSING
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._items[key] = (time.monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)
        return value

    def drop(self, matches: Callable[[K], bool]) -> None:
        for key in [k for k in self._items if matches(k)]:
            del self._items[key]

    async def through(self, key: K, load: Callable[[], V]) -> V:
        """The cached value, or `load()` run in a thread and remembered."""
        value = self.get(key)
        if not isinstance(value, Missing):
            return value
        return self.put(key, await run_in_threadpool(load))


@dataclass(frozen=True)
class KeyState:
    usable: bool
    rejected_at: datetime | None = None


class ShimCache:
    """The shim's memory of keys, heads, running refresh jobs, pages and totals."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores
        self.keys: Memo[str, KeyState] = Memo(10_000, KEY_SECONDS)
        self.heads: Memo[tuple[str, Kind, str | None], SnapshotHead] = Memo(10_000, HEAD_SECONDS)
        self.active: Memo[str, str | None] = Memo(10_000, ACTIVE_SECONDS)
        self.counts: Memo[tuple[str, tuple[str, ...]], dict[str, int]] = Memo(1_000, HEAD_SECONDS)
        self.totals: Memo[tuple[str, Kind, str | None, bool], int] = Memo(4_096)
        self.pages: Memo[tuple[str, Kind, PageQuery], list[dict[str, Any]]] = Memo(1_024)
        self.listed: Memo[tuple[str, str], bool] = Memo(10_000)
        self.committed: Memo[str, int] = Memo(10_000, COMMITTED_SECONDS)
        self.records: Memo[tuple[Any, ...], bytes] = Memo(2_048)

    async def key_state(self, owner: str) -> KeyState:
        """Whether the caller has a key to call CallRail with, and if not, whether CallRail
        rejected the one stored (and when)."""

        def load() -> KeyState:
            record = self._stores.keys.record(owner)
            if record is None:
                return KeyState(usable=False)
            return KeyState(usable=record.usable, rejected_at=record.rejected_at)

        return await self.keys.through(owner, load)

    async def head(self, owner: str, kind: Kind, account: str | None) -> SnapshotHead | None:
        """The current snapshot; "none yet" is not remembered (the sync that makes one is
        under way, and its page must show as soon as it is published)."""
        key = (owner, kind, account)
        cached = self.heads.get(key)
        if isinstance(cached, SnapshotHead):
            return cached
        head = await run_in_threadpool(self._stores.snapshots.current, owner, kind, account)
        return self.heads.put(key, head) if head is not None else None

    async def lists_account(self, owner: str, account: str, max_age: float) -> bool | None:
        """Whether the caller's accounts snapshot lists this CallRail account; None when the
        caller has no snapshot younger than `max_age` seconds to tell."""
        head = await self.head(owner, "accounts", None)
        if head is None or (utcnow() - head.synced_at).total_seconds() > max_age:
            return None
        snapshot = head.snapshot_id
        return await self.listed.through(
            (snapshot, account),
            lambda: self._stores.snapshots.has_record("accounts", snapshot, account),
        )

    async def active_job(self, dedupe_key: str) -> str | None:
        def load() -> str | None:
            job = self._stores.jobs.active(dedupe_key)
            return job.id if job else None

        return await self.active.through(dedupe_key, load)

    async def page(self, head: SnapshotHead, query: PageQuery) -> Page:
        """One page, each record with its history (`tracking`), and the filtered total; the
        total is counted once per filter."""
        kind, snapshot_id = head.kind, head.snapshot_id
        total_key = (snapshot_id, kind, query.search, query.include_disabled)
        snapshots, changes = self._stores.snapshots, self._stores.changes
        total = await self.totals.through(
            total_key, lambda: snapshots.count(kind, snapshot_id, query)
        )

        def read() -> list[dict[str, Any]]:
            rows = snapshots.read_page(kind, snapshot_id, query)
            account = head.callrail_account_id
            known = changes.tracking(head.owner, kind, account, [r["id"] for r in rows])
            return [{**r, "tracking": known.get(r["id"])} for r in rows]

        items = await self.pages.through((snapshot_id, kind, query), read)
        return items, total

    async def feed_version(self, feed: str) -> int:
        """A stream feed's committed change number: what its cached pages are keyed by (any
        write to the feed moves it, so a page cached under it is what the store holds)."""
        return await self.committed.through(feed, lambda: self._stores.streams.committed(feed))

    async def company_counts(self, owner: str, accounts: list[str]) -> dict[str, int]:
        return await self.counts.through(
            (owner, tuple(accounts)),
            lambda: self._stores.snapshots.company_counts(owner, accounts),
        )

    def forget(self, event: dict[str, Any]) -> None:
        """A job changed: drop what that may have made stale (the hub calls this)."""
        if "job_id" not in event:
            return  # a call event, or a resync: no job changed
        owner = str(event.get("owner"))
        self.active.drop(lambda key: key.startswith(owner + ":"))
        if event.get("status") != "succeeded":
            return
        if event.get("type") in (JobType.SYNC_ACCOUNTS.value, JobType.SYNC_COMPANIES.value):
            account = event.get("callrail_account_id")
            self.heads.drop(lambda key: key[0] == owner and key[2] == account)
            self.counts.drop(lambda key: key[0] == owner)
