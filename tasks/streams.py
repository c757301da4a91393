"""Stream syncs: one job per (owner, stream, CallRail account), whatever the stream.

- `walk` streams (trackers, tags, users) are small: each run walks them whole, writes what
  changed, and marks deleted what a complete walk no longer lists (only when the walk saw as
  many records as CallRail said it holds, as the companies' change tracking does).
- `windows` streams (calls, form submissions) are backfilled in date windows planned newest
  first (`callrail_sync/callrail/streams.py`): the plan and, per window, the place its walk
  reached are kept in the feed's state after every page stored, so a run that stops (a
  crash, a redelivery, the budget's wait) goes on from the window and page it reached.
  Windows are walked `STREAM_CONCURRENCY` at a time on threads; pages are stored here, on
  the job's own thread, one at a time (one writer per feed), while the threads fetch on, at
  most `STREAM_CONCURRENCY` + 16 pages ahead of the store (a worker's memory does not grow
  with the account when storage is slower than the walk).
  Once every window is done, each run reads the trailing `RESCAN_DAYS` again: CallRail's
  later edits are written as updates, and a call no longer listed there (marked spam) is
  marked deleted.
- `date_range` streams (conversations) take only named ranges: the backfill lists
  `this_year` and `last_year`, and each later run lists `recent` (the last 7 days, today
  included). A new message moves a conversation's `last_message_at` to now, so the next run
  lists it again with its `recent_messages`, and it is written as an update: as long as runs
  are less than 7 days apart, no new message is missed.

Every request of a stream sync first takes a slot of the stream share of the account's budget
(`STREAM_BUDGET_SHARE` of each window), then one of the budget itself, so a backfill never
takes more than that share and users' refreshes and webhook writes still get through.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

from callrail_sync import errors, metrics
from callrail_sync.budget import unit_for
from callrail_sync.callrail import streams as remote
from callrail_sync.callrail.client import CallRailClient
from callrail_sync.job import Job
from callrail_sync.runtime import Runtime
from callrail_sync.stopping import stop_point
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.inbox import NewCallEvent
from callrail_sync.stores.streams import StreamState, feed_id
from callrail_sync.streams import STREAMS, Stream, fields_for
from tasks.jobs import Outcome, claim_point

log = logging.getLogger("callrail_sync.streams")
BATCH_PAGES = 16
"""The most pages one write stores."""
TOUCH_EVERY = 1.0
"""Seconds between two touches of a running stream sync's job."""
MAX_WALK_RECORDS = 100_000
"""A stream walked whole that has read this many records and not ended is refused (400 pages
of 250)."""


@dataclass
class Place:
    """A window being walked: which, and from where."""

    index: int
    window: remote.Window | None
    cursor: str | None = None


@dataclass
class Got:
    """A page a fetcher thread read, for the job's thread to store."""

    place: Place
    page: remote.FetchedPage


class StreamContext:
    """What every part of one stream sync shares."""

    def __init__(self, job: Job, rt: Runtime, client: CallRailClient, stream: Stream) -> None:
        self.job, self.rt, self.stream = job, rt, stream
        self.owner = job.owner
        self.account = job.params.need("callrail_account_id")
        self.feed = feed_id(self.owner, stream.name, self.account)
        s = rt.settings
        self.fields = fields_for(stream, s.extra_fields())
        self.time_zone = s.stream_time_zone
        share = rt.budget.share(s.stream_budget_share)

        def take_share(method: str, path: str) -> None:
            share.acquire(unit_for("", path))

        self.client = client.spending(take_share)
        self.pages = 0
        self.touched, self.unsaved = time.monotonic(), 0
        self.written = {"added": 0, "updated": 0, "unchanged": 0, "deleted": 0}

    def fetch(self, place: Place) -> remote.FetchedPage:
        """One page; asked again once (through the budget again) if its connection closed
        unanswered: a fetcher that waited for storage (a write of 16 pages into SecantusDB
        takes ~5 s) found its pooled connection being closed by the server's keep-alive
        timeout as it sent, and a 200,000-call backfill failed a few minutes in."""
        try:
            return self._fetch(place)
        except errors.ConnectionLost:
            log.info("connection lost; the page is asked again", extra={"feed": self.feed})
            return self._fetch(place)

    def _fetch(self, place: Place) -> remote.FetchedPage:
        return remote.fetch_page(
            self.client,
            self.account,
            self.stream,
            place.window,
            place.cursor,
            fields=self.fields,
            time_zone=self.time_zone,
        )

    def store(self, items: list[dict[str, Any]], pages: int = 1) -> None:
        """Pages into the feed in one write, under the feed's lock (the receiver writes calls
        too)."""
        store = self.rt.stores.streams
        with self.rt.locks.hold("stream:" + self.feed):
            done = store.write_page(self.stream, self.feed, self.owner, self.account, items)
        self.written["added"] += done.added
        self.written["updated"] += done.updated
        self.written["unchanged"] += done.unchanged
        self.pages += pages
        metrics.PAGES.labels(self.stream.name).inc(pages)
        self.unsaved += len(items)
        now = time.monotonic()
        if now - self.touched >= TOUCH_EVERY:
            # The job is seen to move (its lease is far longer): not at every page, whose
            # write would make the walk wait on the store.
            self.rt.stores.jobs.record_page(self.job.id, self.pages, None, self.unsaved)
            self.touched, self.unsaved = now, 0
        stop_point(self.job.id)
        self.claimed()

    def claimed(self, *, confirm: bool = False) -> None:
        """Raise ClaimLost if another attempt took the job over (this one stalled past its
        lease): it must not save its older place over that one's. Between pages, what the
        heartbeat found; with `confirm` (before a run's last writes), the store's word."""
        claim_point(self.rt, self.job.id, confirm=confirm)

    def delete(self, ids: list[str]) -> None:
        if not ids:
            return
        with self.rt.locks.hold("stream:" + self.feed):
            n = self.rt.stores.streams.mark_deleted(self.stream, self.feed, ids)
        self.written["deleted"] += n


def sync_stream_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """One stream of one CallRail account: walked whole, or backfilled then rescanned."""
    name = job.params.need("stream")
    stream = STREAMS.get(name)
    if stream is None or stream.store != "records":
        raise errors.ValidationFailed(f"unknown stream: {name}")
    account = job.params.need("callrail_account_id")
    schedule = rt.stores.schedules.get(job.owner, account)
    if schedule is not None and schedule.paused:
        raise errors.SyncPaused()
    ctx = StreamContext(job, rt, client, stream)
    started = time.monotonic()
    result = walk_whole(ctx) if stream.sync == "walk" else backfill_or_rescan(ctx)
    metrics.SYNC_SECONDS.labels(stream.name).observe(time.monotonic() - started)
    return Outcome(result={**result, "changes": changes_of(ctx)})


def changes_of(ctx: StreamContext) -> dict[str, int]:
    w = ctx.written
    return {
        "added": w["added"],
        "updated": w["updated"],
        "deleted": w["deleted"],
        "total": w["added"] + w["updated"] + w["unchanged"],
    }


def walk_whole(ctx: StreamContext) -> dict[str, Any]:
    """Every page, in order; then what the complete walk lacks is marked deleted."""
    seen: set[str] = set()
    expected: int | None = None
    place = Place(0, None)
    pages = ctx.client.pages_for(MAX_WALK_RECORDS)
    for _ in range(pages):
        page = ctx.fetch(place)
        expected = page.total if page.total is not None else expected
        seen.update(str(i[ctx.stream.id_field]) for i in page.items)
        ctx.store(page.items)
        if page.next_cursor is None:
            break
        place.cursor = page.next_cursor
    else:
        raise errors.PaginationError(f"more than {pages} pages of {ctx.stream.name}")
    ctx.claimed(confirm=True)
    live = ctx.rt.stores.streams.ids_between(ctx.feed, None, None)
    gone = sorted(set(live) - seen)
    if gone and (expected is None or expected == len(seen)):
        ctx.delete(gone)
    elif gone:
        log.warning(
            "the walk saw fewer records than CallRail counts; deletions wait for the next run",
            extra={"stream": ctx.stream.name, "expected": expected, "seen": len(seen)},
        )
    state = ctx.rt.stores.streams.state(ctx.feed)
    state.last_run = {"at": utcnow(), "mode": "walk", "pages": ctx.pages, "records": len(seen)}
    state.finished_at = state.finished_at or utcnow()
    ctx.claimed()
    ctx.rt.stores.streams.save_state(state)
    return {"mode": "walk", "records": len(seen), "pages": ctx.pages}


def today_in(time_zone: str) -> date:
    return datetime.now(ZoneInfo(time_zone)).date()


def plan_backfill(ctx: StreamContext, state: StreamState) -> StreamState:
    """The backfill's windows, newest first, from BACKFILL_DAYS back to today."""
    s, stream = ctx.rt.settings, ctx.stream
    today = today_in(ctx.time_zone)
    first = remote.backfill_start(today, s.backfill_days)
    if stream.sync == "date_range":
        windows = [remote.Window(date_range=r) for r in remote.CONVERSATION_BACKFILL]
    elif stream.day_counts is not None:
        try:
            counts = remote.day_counts(ctx.client, ctx.account, stream, first, today, ctx.time_zone)
        except errors.UpstreamNotFound:
            # No daily counts where CallRail should have them: windows of fixed days.
            log.warning("no day counts; windows of fixed days", extra={"stream": stream.name})
            windows = remote.plain_windows(first, today, remote.UNSIZED_WINDOW_DAYS)
        else:
            per_window = s.window_pages * ctx.client.page_size
            windows = remote.sized_windows(counts, first, today, per_window, stream.max_window_days)
    else:
        windows = remote.plain_windows(first, today, stream.max_window_days)
    state.windows = [
        {**w.as_doc(), "done": False, "cursor": None, "pages": 0, "records": 0} for w in windows
    ]
    state.started_at, state.finished_at = utcnow(), None
    state.planned_from = first.isoformat()
    state.requests = remote.requests_for([], (today - first).days + 1) if stream.day_counts else 0
    ctx.claimed()
    ctx.rt.stores.streams.save_state(state)
    log.info(
        "backfill planned",
        extra={"stream": stream.name, "windows": len(windows), "from": first.isoformat()},
    )
    return state


def backfill_or_rescan(ctx: StreamContext) -> dict[str, Any]:
    store = ctx.rt.stores.streams
    state = store.state(ctx.feed)
    if ctx.job.params.reset or not state.windows:
        state = plan_backfill(ctx, state)
    todo = [
        Place(i, remote.Window.from_doc(w), w.get("cursor"))
        for i, w in enumerate(state.windows)
        if not w.get("done")
    ]
    if todo:
        walk_windows(ctx, todo, persist=True)
        ctx.claimed(confirm=True)
        state = store.state(ctx.feed)
        state.finished_at = state.finished_at or utcnow()
        state.last_run = {"at": utcnow(), "mode": "backfill", "pages": ctx.pages}
        store.save_state(state)
        return {"mode": "backfill", "windows": len(state.windows), "pages": ctx.pages}
    # The backfill is complete: read the trailing days again.
    if ctx.stream.sync == "date_range":
        window = remote.Window(date_range=remote.CONVERSATION_RECENT)
    else:
        window = remote.rescan_window(today_in(ctx.time_zone), ctx.rt.settings.rescan_days)
    seen = walk_windows(ctx, [Place(-1, window)], persist=False)
    ctx.claimed(confirm=True)
    deleted_before = ctx.written["deleted"]
    if ctx.stream.deletion in ("vanishes", "spam_vanishes") and window.first and window.last:
        since, until = window_bounds(window, ctx.time_zone)
        live = store.ids_between(ctx.feed, since, until)
        ctx.delete(sorted(set(live) - seen))
    state.last_run = {
        "at": utcnow(),
        "mode": "rescan",
        "window": window.key,
        "pages": ctx.pages,
        "records": len(seen),
        "deleted": ctx.written["deleted"] - deleted_before,
    }
    ctx.claimed()
    store.save_state(state)
    return {"mode": "rescan", "window": window.key, "pages": ctx.pages}


def window_bounds(window: remote.Window, time_zone: str) -> tuple[datetime, datetime]:
    """The first and last instant (UTC) of a window's days in the requests' time zone."""
    zone = ZoneInfo(time_zone)
    if window.first is None or window.last is None:
        raise ValueError("a window needs its days")
    since = datetime.combine(window.first, clock.min, zone).astimezone(UTC)
    until = datetime.combine(window.last, clock.max, zone).astimezone(UTC)
    return since, until


def walk_windows(ctx: StreamContext, todo: list[Place], *, persist: bool) -> set[str]:
    """Walk the windows of `todo` (newest first), `STREAM_CONCURRENCY` at a time, storing the
    pages fetched so far in one write each time (up to `BATCH_PAGES`: roll-ups are one `$inc`
    per document per write, so a batch costs little more than a page); with `persist` (a
    backfill), each window's place is saved once its pages are stored. Without it (a rescan),
    returns the ids seen, for its deletions."""
    seen: set[str] = set()
    store = ctx.rt.stores.streams
    for batch in fetch_concurrently(ctx, todo, ctx.rt.settings.stream_concurrency):
        ctx.store([item for got in batch for item in got.page.items], pages=len(batch))
        for got in batch:
            if not persist:  # a rescan's ids (a few days'); a backfill's memory stays flat
                seen.update(str(i[ctx.stream.id_field]) for i in got.page.items)
                continue
            done = got.page.next_cursor is None
            store.update_window(
                ctx.feed, got.place.index, got.page.next_cursor, done, len(got.page.items)
            )
    return seen


_END = object()


def held_pages(concurrency: int) -> int:
    """The most pages a walk holds fetched (or being fetched) and not yet stored: one a
    fetcher, and a batch being stored. A fetcher takes a slot before each request and the
    slot comes back once its page is stored, so when storage is slower than the walk the
    fetchers wait on it (backpressure) and a worker's memory does not grow with the account;
    while storage keeps up, every fetcher still has a request out during each write."""
    return concurrency + BATCH_PAGES


def fetch_concurrently(
    ctx: StreamContext, todo: list[Place], concurrency: int
) -> Iterator[list[Got]]:
    """Pages of the windows of `todo`, each window's in order, up to `concurrency` windows at
    once, in batches: each time, every page fetched so far (at least one, at most
    `BATCH_PAGES`), never more than `held_pages` fetched and not yet stored (a page counts
    as stored once the consumer asks for the next batch). A failure stops every fetcher before
    its next request; the pages already fetched are still yielded, then the failure is raised
    (no request spent is thrown away)."""
    places: queue.SimpleQueue[Place] = queue.SimpleQueue()
    for place in todo:
        places.put(place)
    results: queue.SimpleQueue[Got | BaseException | object] = queue.SimpleQueue()
    slots = threading.Semaphore(held_pages(concurrency))
    stop = threading.Event()
    window_pages = ctx.client.pages_for(remote.MAX_RECORDS_PER_WINDOW)

    def fetcher() -> None:
        try:
            while not stop.is_set():
                try:
                    place = places.get_nowait()
                except queue.Empty:
                    return
                for _ in range(window_pages):
                    slots.acquire()
                    if stop.is_set():
                        slots.release()  # for the next fetcher waiting, which stops too
                        return
                    try:
                        page = ctx.fetch(place)
                    except BaseException:
                        slots.release()
                        raise
                    results.put(Got(Place(place.index, place.window, place.cursor), page))
                    if page.next_cursor is None:
                        break
                    place = Place(place.index, place.window, page.next_cursor)
                else:
                    raise errors.PaginationError(f"window {place.window} has too many pages")
        except BaseException as exc:  # handed to the job's thread, which raises it
            stop.set()
            results.put(exc)
        finally:
            results.put(_END)

    threads = [
        threading.Thread(target=fetcher, name=f"stream-{i}", daemon=True)
        for i in range(max(1, min(concurrency, len(todo))))
    ]
    for thread in threads:
        thread.start()
    running, failure = len(threads), None
    try:
        while running:
            batch: list[Got] = []
            item = results.get()
            while True:
                if item is _END:
                    running -= 1
                elif isinstance(item, BaseException):
                    failure = failure or item
                elif isinstance(item, Got):
                    batch.append(item)
                if len(batch) >= BATCH_PAGES:
                    break
                try:
                    item = results.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
                slots.release(len(batch))  # stored: its fetchers may go on
    finally:
        stop.set()
        slots.release(len(threads))  # every fetcher waiting for a slot wakes, sees the stop
        while running:  # a consumer that stopped early: let the fetchers end
            if results.get() is _END:
                running -= 1
        for thread in threads:
            thread.join(timeout=5)
    if failure is not None:
        raise failure


MERGED_EVENTS = ("post_call", "updated_call", "call_modified")
"""The deliveries whose call is merged into the calls stream (a pre-call's call is not over:
the post-call that follows says how it went)."""


def merge_calls(rt: Runtime, found: list[tuple[NewCallEvent, dict[str, Any]]], source: str) -> int:
    """Merge calls that our receiver was told of (`webhook`) or that reconciliation listed
    (`history`) into each owner's calls stream: one record per call, whichever came first,
    each field as its latest writer said it. Returns the records written."""
    calls = STREAMS["calls"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event, payload in found:
        if event.kind != "call" or event.event not in MERGED_EVENTS or not event.resource_id:
            continue
        record = {k: v for k, v in payload.items() if k not in WEBHOOK_ONLY}
        record.update(id=event.resource_id, company_id=event.company_id)
        if event.start_time is not None and not isinstance(record.get("start_time"), str):
            record["start_time"] = event.start_time.isoformat()
        for owner in event.owners:
            groups.setdefault((owner, event.callrail_account_id), []).append(record)
    written = 0
    for (owner, account), records in groups.items():
        feed = feed_id(owner, "calls", account)
        with rt.locks.hold("stream:" + feed):
            done = rt.stores.streams.write_page(calls, feed, owner, account, records, source)
        written += done.added + done.updated
    return written


WEBHOOK_ONLY = frozenset({"resource_id", "changes", "signature", "event", "callbacks"})
"""Keys of a delivery that are about the delivery, not the call."""
