"""Stream syncs against the simulator over HTTP, by calling the work directly: a backfill's
windows walked newest first and stored once, resumed from the window and page it reached,
each request within the stream's share of the budget. Pages of 25 (CALLRAIL_PAGE_SIZE): as many
pages as with 250, a tenth of the calls to store."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callrail_sync import errors
from callrail_sync.budget import RequestBudget, Window
from callrail_sync.callrail import streams as remote
from callrail_sync.callrail.calls import iter_calls
from callrail_sync.callrail.client import CallRailClient, Timeouts
from callrail_sync.cli.processes import wait_until
from callrail_sync.job import Job, JobError, JobParams, JobType, NewJob
from callrail_sync.runtime import Runtime
from callrail_sync.status import ListingStatus, owner_status
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.streams import feed_id
from callrail_sync.streams import STREAMS
from simulator import SimData, SimServer
from tasks.jobs import ClaimLost, heartbeat
from tasks.schedule import plan_syncs
from tasks.streams import Place, fetch_concurrently, held_pages, sync_stream_work, today_in

PAGE = 25
pytestmark = pytest.mark.pages_of(PAGE)


@pytest.fixture
def sim_data() -> SimData:
    return SimData(
        seed=5, keys=1, accounts_per_key=1, companies_per_account=12, calls_per_company=16
    )


def stream_job(runtime: Runtime, owner: str, account: str, stream: str, **more: Any) -> Job:
    params = JobParams(callrail_account_id=account, stream=stream, **more)
    job, _ = runtime.stores.jobs.create(
        NewJob(owner=owner, type=JobType.SYNC_STREAM, params=params)
    )
    return job


def stream_status(runtime: Runtime, owner: str, account: str) -> ListingStatus:
    entries = owner_status(runtime, owner, utcnow())
    return next(e for e in entries if e.kind == "calls" and e.account_id == account)


def client_for(
    sim: SimServer, api_key: str, fail_after: int | None = None, budget: Any = None
) -> CallRailClient:
    sent = [0]

    def count(method: str, path: str) -> None:
        if budget is not None:
            budget.hook(api_key)(method, path)  # as `Runtime.client` spends the budget
        sent[0] += 1
        if fail_after is not None and sent[0] > fail_after:
            raise errors.TransportError("connection failed (test)")

    return CallRailClient(
        api_key,
        base_url=sim.base_url,
        timeouts=Timeouts(2, 5),
        before_request=count,
        page_size=PAGE,
    )


def plan(runtime: Runtime, owner: str, account: str, days: int = 3) -> list[remote.Window]:
    """Windows as a backfill plans them (without day counts) saved as its state."""
    today = today_in(runtime.settings.stream_time_zone)
    windows = remote.plain_windows(today - timedelta(days=31), today, days)
    feed = feed_id(owner, "calls", account)
    state = runtime.stores.streams.state(feed)
    state.windows = [
        {**w.as_doc(), "done": False, "cursor": None, "pages": 0, "records": 0} for w in windows
    ]
    state.started_at = utcnow()
    runtime.stores.streams.save_state(state)
    return windows


def listed_calls(
    sim: SimServer, api_key: str, account: str, windows: list[remote.Window]
) -> dict[str, int]:
    """Every call of the windows, by id, with the number of its window (read directly)."""
    client = client_for(sim, api_key)
    found: dict[str, int] = {}
    for n, w in enumerate(windows):
        cursor = None
        while True:
            page = remote.fetch_page(
                client, account, STREAMS["calls"], w, cursor, fields=[], time_zone="UTC"
            )
            found.update({c["id"]: n for c in page.items})
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return found


def test_a_backfill_reads_each_window_once_in_the_fewest_pages(
    runtime: Runtime, owner: str, sim: SimServer, sim_data: SimData, api_key: str
) -> None:
    account = sim_data.accounts_by_key[api_key][0]
    windows = plan(runtime, owner, account, days=2)
    expected = listed_calls(sim, api_key, account, windows)
    assert len(expected) == 12 * 16
    sim.log.clear()
    job = stream_job(runtime, owner, account, "calls")
    outcome = sync_stream_work(job, runtime, client_for(sim, api_key))
    assert outcome.result["mode"] == "backfill"
    feed = feed_id(owner, "calls", account)
    stored = runtime.stores.streams.ids_between(feed, None, None)
    assert set(stored) == set(expected)
    per_window = [sum(1 for w in expected.values() if w == n) for n in range(len(windows))]
    fewest = sum(max(1, math.ceil(n / PAGE)) for n in per_window)
    asked = sim.requests_logged("GET", "/calls.json")
    assert len(asked) == fewest
    for request in asked:  # explicit, inclusive days, the zone stated, never the default
        assert f"per_page={PAGE}" in request.query  # CALLRAIL_PAGE_SIZE
        assert "start_date=" in request.query and "end_date=" in request.query
        assert "time_zone=UTC" in request.query and "fields=" in request.query
    state = runtime.stores.streams.state(feed)
    assert all(w["done"] for w in state.windows) and state.finished_at is not None
    assert sum(w["records"] for w in state.windows) == len(expected)
    # The next run reads the trailing days again: a call placed since is added.
    company = sim_data.companies(sim_data.account(account))[0]["id"]
    placed = sim.place_call(company)
    again = sync_stream_work(
        stream_job(runtime, owner, account, "calls"), runtime, client_for(sim, api_key)
    )
    assert again.result["mode"] == "rescan" and again.result["changes"]["added"] == 1
    assert placed["id"] in runtime.stores.streams.ids_between(feed, None, None)


def test_a_page_whose_connection_closed_unanswered_is_asked_again_once(
    runtime: Runtime, owner: str, sim: SimServer, sim_data: SimData, api_key: str
) -> None:
    account = sim_data.accounts_by_key[api_key][0]
    windows = plan(runtime, owner, account, days=2)
    expected = listed_calls(sim, api_key, account, windows)
    sim.log.clear()
    # The server closes a page's connection with no answer (as its keep-alive timeout does
    # to a pooled connection reused as it ends): the page is asked again and the walk goes on.
    sim.set_knobs(fail_next=["drop"])
    outcome = sync_stream_work(
        stream_job(runtime, owner, account, "calls"), runtime, client_for(sim, api_key)
    )
    assert outcome.result["mode"] == "backfill"
    feed = feed_id(owner, "calls", account)
    assert set(runtime.stores.streams.ids_between(feed, None, None)) == set(expected)
    statuses = [r.status for r in sim.requests_logged("GET", "/calls.json")]
    assert statuses.count(0) == 1 and len(statuses) == len(windows) + 1
    # Twice in a row is a failure the job retries (it goes on from where it stopped).
    sim.set_knobs(fail_next=["drop", "drop"])
    with pytest.raises(errors.ConnectionLost):
        sync_stream_work(
            stream_job(runtime, owner, account, "calls", reset=True),
            runtime,
            client_for(sim, api_key),
        )


def test_a_stopped_backfill_goes_on_from_the_window_and_page_it_reached(
    runtime: Runtime, owner: str, sim: SimServer, sim_data: SimData, api_key: str
) -> None:
    account = sim_data.accounts_by_key[api_key][0]
    windows = plan(runtime, owner, account, days=8)  # 4 windows of about 2 pages
    expected = listed_calls(sim, api_key, account, windows)
    sim.log.clear()
    job = stream_job(runtime, owner, account, "calls")
    with pytest.raises(errors.TransportError):
        sync_stream_work(job, runtime, client_for(sim, api_key, fail_after=3))
    feed = feed_id(owner, "calls", account)
    state = runtime.stores.streams.state(feed)
    stored_pages = sum(w["pages"] for w in state.windows)
    assert 0 < stored_pages <= 3 and not all(w["done"] for w in state.windows)
    # A window stopped after its first page: the next run goes on from its second.
    assert any(w["pages"] and not w["done"] for w in state.windows), state.windows
    first_run = len(sim.requests_logged("GET", "/calls.json"))
    runtime.settings.sync_streams = "calls"
    runtime.stores.userconfig.set(owner, [account])
    midway = stream_status(runtime, owner, account)
    assert midway.backfill is not None
    assert 0 <= midway.backfill.windows_done < midway.backfill.windows_total == len(windows)
    assert midway.backfill.finished_at is None and midway.backfill.estimated_finish is not None
    sync_stream_work(job, runtime, client_for(sim, api_key))
    done = stream_status(runtime, owner, account)
    assert done.backfill is not None and done.backfill.finished_at is not None
    assert done.backfill.windows_done == len(windows) and done.counts["records"] == len(expected)
    assert done.backfill.oldest_reached == windows[-1].first.isoformat()  # type: ignore[union-attr]
    assert set(runtime.stores.streams.ids_between(feed, None, None)) == set(expected)
    per_window = [sum(1 for w in expected.values() if w == n) for n in range(len(windows))]
    # Windows of two pages or more (the oldest may hold fewer: the calls span ~30 days, and
    # how many fall in each window moves with the time of day).
    assert sum(n > PAGE for n in per_window) >= 3, per_window
    fewest = sum(max(1, math.ceil(n / PAGE)) for n in per_window)
    # Nothing stored was asked again: the second run sent only the pages not stored.
    second_run = len(sim.requests_logged("GET", "/calls.json")) - first_run
    assert second_run == fewest - stored_pages
    counts = runtime.stores.streams.counts(feed)
    assert counts["added"] == len(expected) and counts["updated"] == 0


@pytest.mark.parametrize("beat_noticed", [True, False], ids=["heartbeat", "last-writes"])
def test_a_backfill_taken_over_stops_without_saving_its_place_over_the_new_attempts(
    runtime: Runtime,
    owner: str,
    sim: SimServer,
    sim_data: SimData,
    api_key: str,
    beat_noticed: bool,
) -> None:
    """A backfill stalls past its lease and another attempt takes the job over: when the first
    resumes, it must not save the feed's state (the plan, each window's place) over the one
    the other attempt keeps. It stops at its next write of pages once a heartbeat found the job
    taken (`heartbeat`), and at the latest before its last writes, asking the store
    (`last-writes`: no beat came in between)."""
    account = sim_data.accounts_by_key[api_key][0]
    plan(runtime, owner, account, days=8)  # 4 windows of about 2 pages
    job = stream_job(runtime, owner, account, "calls")
    first = runtime.stores.jobs.start(job.id, "message", lease_seconds=90)
    assert first is not None and first.claimed_by is not None
    lease = 0.3 if beat_noticed else 90.0
    rt = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"job_lease_seconds": lease})
    )
    sent = [0]

    def taken_over_after_two(method: str, path: str) -> None:
        sent[0] += 1
        if sent[0] == 3:  # the lease ran out meanwhile: another message claims the job
            assert runtime.stores.jobs.start(job.id, "message", lease_seconds=0) is not None
            if beat_noticed:
                assert wait_until(claim.lost.is_set, 10, 0.02)

    client = CallRailClient(
        api_key,
        base_url=sim.base_url,
        timeouts=Timeouts(2, 5),
        before_request=taken_over_after_two,
        page_size=PAGE,
    )
    with heartbeat(rt, job.id, first.claimed_by) as claim, pytest.raises(ClaimLost):
        sync_stream_work(job, rt, client)
    state = runtime.stores.streams.state(feed_id(owner, "calls", account))
    assert state.finished_at is None and state.last_run is None
    now = runtime.stores.jobs.get(job.id)
    assert now is not None and now.status == "running" and now.claimed_by != first.claimed_by


def test_a_backfill_takes_no_more_than_its_share_of_the_budget(
    runtime: Runtime, owner: str, sim: SimServer, sim_data: SimData, api_key: str
) -> None:
    account = sim_data.accounts_by_key[api_key][0]
    plan(runtime, owner, account, days=1)  # 32 windows: 32 requests at least
    assert runtime.redis is not None
    small = RequestBudget(runtime.redis, [Window(20, 3600)], max_inline_wait=0)
    shared = Runtime(
        runtime.settings.model_copy(update={"stream_budget_share": 0.5}),
        runtime.stores,
        budget=small,
        redis=runtime.redis,
        locks=runtime.locks,
    )
    job = stream_job(runtime, owner, account, "calls")
    with pytest.raises(errors.BudgetWait):
        sync_stream_work(job, shared, client_for(sim, api_key, budget=small))
    assert len(sim.requests_logged("GET", "/calls.json")) == 10  # half of 20
    # The other half is still there for everything else.
    unit = f"account:{account}"
    assert small.left(unit).left[3600] == 10


def test_beat_plans_the_chosen_streams_of_configured_accounts_when_due(
    runtime: Runtime, owner: str, sim_data: SimData, api_key: str, queue: Any
) -> None:
    account = sim_data.accounts_by_key[api_key][0]
    runtime.stores.userconfig.set(owner, [account])
    runtime.settings.sync_streams = "calls,trackers"
    planned = [p for p in plan_syncs(runtime, queue) if p["kind"] in STREAMS]
    streams = sorted(p["kind"] for p in planned if p["kind"] not in ("accounts", "companies"))
    assert streams == ["calls", "trackers"]
    for p in planned:
        job = runtime.stores.jobs.get(p["job_id"])
        assert job is not None and job.lane.value == "periodic"
    # Both still queued: planned again, nothing is doubled.
    assert [p for p in plan_syncs(runtime, queue) if p["kind"] in ("calls", "trackers")] == []
    # Paused accounts are left alone.
    runtime.stores.schedules.set(owner, account, paused=True, interval_seconds=None)
    for p in planned:
        runtime.stores.jobs.fail(p["job_id"], JobError.of(errors.Crashed()))
    assert [p for p in plan_syncs(runtime, queue) if p["kind"] in ("calls", "trackers")] == []


class CountingFetches:
    """Stands for a stream sync's context in `fetch_concurrently`: pages answered at once,
    counted as they are fetched; a consumer that stores slowly counts them stored."""

    def __init__(self, pages_per_window: int, fail_at: int | None = None) -> None:
        self.pages_per_window, self.fail_at = pages_per_window, fail_at
        self.client = CallRailClient("key", page_size=PAGE)  # sends nothing: sizes the walk
        self.fetched = self.stored = self.most_held = 0
        self.lock = threading.Lock()

    def fetch(self, place: Place) -> remote.FetchedPage:
        with self.lock:
            if self.fail_at is not None and self.fetched == self.fail_at:
                raise errors.TransportError("gone")
            self.fetched += 1
            self.most_held = max(self.most_held, self.fetched - self.stored)
        page = int(place.cursor or 0) + 1
        more = str(page) if page < self.pages_per_window else None
        return remote.FetchedPage(items=[{"id": f"{place.index}-{page}"}], next_cursor=more)


def test_pages_fetched_and_not_stored_stay_bounded_when_storage_is_slow() -> None:
    ctx = CountingFetches(pages_per_window=6)
    todo = [Place(i, None) for i in range(40)]  # 240 pages, 8 windows at once
    got: list[str] = []
    for batch in fetch_concurrently(ctx, todo, 8):  # type: ignore[arg-type]
        time.sleep(0.01)  # storage far slower than the walk
        got += [item["id"] for g in batch for item in g.page.items]
        with ctx.lock:
            ctx.stored += len(batch)
    assert sorted(got) == sorted(f"{w}-{p}" for w in range(40) for p in range(1, 7))
    assert ctx.most_held <= held_pages(8) < 240
    assert ctx.most_held > 8  # the fetchers did run ahead of the store, up to the bound


def test_a_failed_fetch_still_yields_the_pages_fetched_then_raises() -> None:
    ctx = CountingFetches(pages_per_window=6, fail_at=100)
    todo = [Place(i, None) for i in range(40)]
    got = 0
    with pytest.raises(errors.TransportError):
        for batch in fetch_concurrently(ctx, todo, 8):  # type: ignore[arg-type]
            time.sleep(0.005)
            got += len(batch)
            with ctx.lock:
                ctx.stored += len(batch)
    assert got == ctx.fetched == 100  # every page fetched was handed over


def test_streams_and_reconciliation_ask_for_pages_of_the_clients_size(
    sim: SimServer, sim_data: SimData, api_key: str
) -> None:
    """Every stream's page (`fetch_page`) and the receiver's reconciliation (`iter_calls`) ask
    CallRail for CALLRAIL_PAGE_SIZE records a page: 250 by default, CallRail's most."""
    account = sim_data.accounts_by_key[api_key][0]
    end = datetime.now(UTC)
    for size in (None, 7):
        sized = {} if size is None else {"page_size": size}
        client = CallRailClient(api_key, base_url=sim.base_url, timeouts=Timeouts(2, 5), **sized)
        sim.log.clear()
        remote.fetch_page(client, account, STREAMS["users"], None, None, fields=[], time_zone="UTC")
        list(iter_calls(client, account, end - timedelta(days=2), end))
        asked = sim.requests_logged("GET", "/users.json") + sim.requests_logged(
            "GET", "/calls.json"
        )
        assert len(asked) >= 2
        assert all(f"per_page={size or 250}" in r.query for r in asked), [r.query for r in asked]
