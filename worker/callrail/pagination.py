"""The page walker: reads every page of a CallRail collection exactly once, and always stops.

CallRail's `total_pages` and `total_records` are usually right, but a walker that trusts them
blindly either loops forever (a huge or growing `total_pages`, a server that ignores `page`) or
stops early (a missing or zero `total_pages`, an empty page in the middle). The rules:

- Metadata is *consistent* when `total_pages == ceil(total_records / per_page)`. Then the walk
  ends at `total_pages` and sends exactly that many requests.
- Otherwise the best estimate of the last page comes from whatever is present, a full page
  is always followed by one more request (so a wrong-low estimate cannot cut the walk), and a
  short, non-empty page ends it (offset pagination only serves a short page last).
- The estimate is re-read from every page, so a listing that grows or shrinks mid-walk is
  followed.
- `max_idle_pages` pages in a row that add no new id (empty, or repeats of earlier pages) end
  the walk: this is what stops a huge `total_pages` or a server that returns the same page.
- `max_pages` is a hard cap; passing it raises `PaginationError` instead of walking on.

Records are deduplicated by `id` against the pages read shortly before (a record shifts to a
neighbouring page when data changes between fetches); only those recent pages' ids are kept, so
memory does not grow with the listing. The store's keys (`<snapshot>:<id>`) make a snapshot
free of duplicates whatever the distance. Pages are yielded in order, one at a time, so
callers store as they go.

With `concurrency > 1`, the pages after the first are fetched in parallel once the first page
has given the estimate, never more than `concurrency` at a time; the yield order and dedupe
are the same, except when a page fails: the pages fetched beside it are yielded before the
error is raised, so no request already spent is thrown away.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from worker.callrail.models import PageMeta
from worker.errors import PaginationError

RawItems = list[dict[str, Any]]
FetchPage = Callable[[int], tuple[RawItems, PageMeta]]


@dataclass
class WalkedPage:
    """One page as the walker yields it: only records not seen on earlier pages."""

    number: int
    items: RawItems
    meta: PageMeta
    last_page: int | None
    raw_count: int


@dataclass
class _Progress:
    per_page: int
    remember_pages: int = 8
    seen: dict[str, int] = field(default_factory=dict)
    """Each id held by a recent page, with the turn of the latest such page."""
    recent: deque[tuple[int, list[str]]] = field(default_factory=deque)
    """The recent pages, oldest first: their turn and their ids."""
    turn: int = 0
    last: int | None = None
    consistent: bool = False
    last_raw_count: int = 0
    idle_run: int = 0

    def absorb(self, number: int, raw: RawItems, meta: PageMeta) -> WalkedPage:
        self.turn += 1
        seen, turn = self.seen, self.turn
        fresh: RawItems = []
        ids: list[str] = []
        for item in raw:
            key = str(item.get("id"))
            if key not in seen:
                fresh.append(item)
            seen[key] = turn
            ids.append(key)
        self.recent.append((turn, ids))
        if len(self.recent) > self.remember_pages:
            gone, gone_ids = self.recent.popleft()
            for key in gone_ids:
                if seen.get(key) == gone:  # no more recent page holds it
                    del seen[key]
        self.idle_run = 0 if fresh else self.idle_run + 1
        self.last_raw_count = len(raw)
        self.last, self.consistent = estimate_last_page(meta, self.per_page, len(raw))
        return WalkedPage(number, fresh, meta, self.last, len(raw))

    def wants_page(self, number: int) -> bool:
        """Whether page `number` should be fetched, given everything read before it."""
        if self.consistent:
            return self.last is not None and number <= self.last
        if 0 < self.last_raw_count < self.per_page:
            return False  # a short page is the end when the metadata cannot be trusted
        if self.last is not None and number <= self.last:
            return True
        # Past the estimate: only a full page, with untrusted metadata, earns one more look.
        return self.last_raw_count >= self.per_page and not self.consistent


def estimate_last_page(meta: PageMeta, per_page: int, raw_count: int) -> tuple[int | None, bool]:
    """Best guess of the last page number, and whether the metadata agrees with itself."""
    by_records = None
    if meta.total_records is not None and meta.total_records >= 0:
        by_records = math.ceil(meta.total_records / per_page)
    by_pages = meta.total_pages if meta.total_pages is not None and meta.total_pages > 0 else None
    consistent = by_records is not None and by_pages is not None and by_records == by_pages
    if raw_count > 0 and not (by_pages or by_records):
        consistent = False  # records arrived, yet the metadata says there are none
    estimates = [e for e in (by_records, by_pages) if e]
    return (max(estimates) if estimates else None), consistent


class PageWalker:
    """Iterates `WalkedPage`s of one collection; see the module docstring for the rules."""

    def __init__(
        self,
        fetch: FetchPage,
        *,
        per_page: int,
        concurrency: int = 1,
        max_pages: int = 10_000,
        max_idle_pages: int = 3,
        skip: Collection[int] = (),
        known_last: int | None = None,
    ) -> None:
        self._fetch = fetch
        self._per_page = per_page
        self._concurrency = max(1, concurrency)
        self._max_pages = max_pages
        self._max_idle = max_idle_pages
        self._skip = set(skip)
        self._known_last = known_last

    def __iter__(self) -> Iterator[WalkedPage]:
        progress = _Progress(self._per_page, remember_pages=self._concurrency + 4)
        number = 1
        if 1 in self._skip and self._known_last is not None:
            # Resuming: page 1 is stored and its estimate was recorded with it.
            progress.last, progress.consistent = self._known_last, True
            progress.last_raw_count = self._per_page
            number = 2
        else:
            yield self._one(progress, 1)
            number = 2
        pool = ThreadPoolExecutor(self._concurrency) if self._concurrency > 1 else None
        try:
            while True:
                while number in self._skip:
                    number += 1
                if not progress.wants_page(number):
                    return
                if progress.idle_run >= self._max_idle:
                    return
                if number > self._max_pages:
                    raise PaginationError(
                        f"more than {self._max_pages} pages; refusing to walk on",
                    )
                batch = self._plan(progress, number)
                if pool is None or len(batch) == 1:
                    for n in batch:
                        yield self._one(progress, n)
                else:
                    yield from self._drain(pool, progress, batch)
                    if progress.idle_run >= self._max_idle:
                        return
                number = batch[-1] + 1
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _plan(self, progress: _Progress, start: int) -> list[int]:
        """Page numbers to fetch next: up to the estimate, a bounded window at a time."""
        end = start
        if self._concurrency > 1 and progress.last is not None and progress.last > start:
            end = min(progress.last, start + self._concurrency * 4 - 1, self._max_pages)
        return [n for n in range(start, end + 1) if n not in self._skip]

    def _one(self, progress: _Progress, number: int) -> WalkedPage:
        raw, meta = self._fetch(number)
        return progress.absorb(number, raw, meta)

    def _drain(
        self, pool: ThreadPoolExecutor, progress: _Progress, batch: list[int]
    ) -> Iterator[WalkedPage]:
        """Fetch a batch with at most `concurrency` pages in flight and yield them in order.

        If a page fails, no new page is started, the pages already fetched beside it are still
        yielded (their requests are spent; the caller stores them and a resumed walk skips
        them), then the first error is raised.
        """
        pending = deque(batch)
        in_flight: deque[tuple[int, Future[tuple[RawItems, PageMeta]]]] = deque()
        failure: BaseException | None = None

        def top_up() -> None:
            while pending and failure is None and len(in_flight) < self._concurrency:
                number = pending.popleft()
                in_flight.append((number, pool.submit(self._fetch, number)))

        top_up()
        while in_flight:
            number, future = in_flight.popleft()
            try:
                raw, meta = future.result()
            except Exception as exc:
                failure = failure or exc
                continue
            top_up()  # before yielding: the fetches go on while the caller stores this page
            yield progress.absorb(number, raw, meta)
            if failure is None and progress.idle_run >= self._max_idle:
                for _, rest in in_flight:
                    rest.cancel()
                return
        if failure is not None:
            raise failure
