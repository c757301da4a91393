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

With `concurrency > 1`, the pages after the first are fetched in parallel through a sliding
window: once a page has given the estimate, every page up to it is started as soon as the window
has room, and a page yielded makes room for the next, so up to `concurrency` requests stay in
flight until the estimate is reached (a 40-page listing at 39 or more costs two round trips).
The window is the pages started and not yet yielded, so it also bounds the pages held in memory;
it never reaches past the estimate (a page beyond it is asked for only once the page before it
is read, as in a sequential walk), so a short listing starts only the pages it has left. The
yield order and dedupe are the same as sequentially, except when a page fails: no page is
started after it, the pages already started are yielded, then the error is raised, so no
request already spent is thrown away.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from callrail_sync.callrail.models import PageMeta
from callrail_sync.errors import PaginationError

RawItems = list[dict[str, Any]]
Fetched = tuple[RawItems, PageMeta]
FetchPage = Callable[[int], Fetched]


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

    def resume(self, known_last: int) -> None:
        """Take up a walk whose page 1 is stored, with the estimate recorded with it."""
        self.last, self.consistent = known_last, True
        self.last_raw_count = self.per_page

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


class _Pending(Protocol):
    """A page asked for: its fetch's outcome, once it is there."""

    def result(self) -> Fetched: ...

    def cancel(self) -> bool: ...


@dataclass
class _OnDemand:
    """A page fetched only when its result is asked for: a sequential walk sends a request
    when its caller asks for the page, not while the caller is storing the one before."""

    fetch: FetchPage
    number: int

    def result(self) -> Fetched:
        return self.fetch(self.number)

    def cancel(self) -> bool:
        return True


class _Window:
    """The pages started and not yet yielded, oldest first: at most `size` of them.

    With `size > 1` each page is fetched on a thread of the window's pool, which starts threads
    only as pages are started: a listing with few pages left starts few.
    """

    def __init__(self, fetch: FetchPage, size: int) -> None:
        self._fetch = fetch
        self.size = size
        self._pool = ThreadPoolExecutor(size, "callrail-page") if size > 1 else None
        self._pages: deque[tuple[int, _Pending]] = deque()

    def __len__(self) -> int:
        return len(self._pages)

    def has_room(self) -> bool:
        return len(self._pages) < self.size

    def start(self, number: int) -> None:
        pending: _Pending = (
            self._pool.submit(self._fetch, number)
            if self._pool is not None
            else _OnDemand(self._fetch, number)
        )
        self._pages.append((number, pending))

    def oldest(self) -> tuple[int, _Pending]:
        return self._pages.popleft()

    def drop(self) -> None:
        """Forget every page not yet yielded; those not started yet are never sent."""
        for _, pending in self._pages:
            pending.cancel()
        self._pages.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


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
        window = _Window(self._fetch, self._concurrency)
        try:
            yield from self._walk(window)
        finally:
            window.close()

    def _walk(self, window: _Window) -> Iterator[WalkedPage]:
        progress = _Progress(self._per_page, remember_pages=self._concurrency + 4)
        first: WalkedPage | None = None
        if 1 in self._skip and self._known_last is not None:
            progress.resume(self._known_last)
        else:
            raw, meta = self._fetch(1)
            first = progress.absorb(1, raw, meta)
        # Before yielding a page, the window is filled: the fetches go on while the caller
        # stores it.
        number = self._fill(progress, window, 2)
        if first is not None:
            yield first
        failure: Exception | None = None
        while window:
            page_number, pending = window.oldest()
            try:
                raw, meta = pending.result()
            except Exception as exc:
                failure = failure or exc  # start nothing more; the pages started still come
                continue
            page = progress.absorb(page_number, raw, meta)
            if failure is None:
                number = self._fill(progress, window, number)
            yield page
            if failure is None and progress.idle_run >= self._max_idle:
                window.drop()
        if failure is not None:
            raise failure
        if number > self._max_pages and self._wanted(progress, number):
            raise PaginationError(f"more than {self._max_pages} pages; refusing to walk on")

    def _fill(self, progress: _Progress, window: _Window, number: int) -> int:
        """Start pages from `number` on while the window has room and the walk wants them;
        return the first page not started."""
        while window.has_room():
            while number in self._skip:
                number += 1
            if number > self._max_pages or not self._wanted(progress, number):
                break
            if window and (progress.last is None or number > progress.last):
                break  # past the estimate: wait until the page before it is read
            window.start(number)
            number += 1
        return number

    def _wanted(self, progress: _Progress, number: int) -> bool:
        return progress.idle_run < self._max_idle and progress.wants_page(number)
