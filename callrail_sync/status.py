"""Where each of an owner's listings stands: the answer of GET /status and `callrail-sync status`.

One entry for the accounts listing, one per CallRail account for its companies, and one per
CallRail account for each of its streams (`callrail_sync.streams`: those SYNC_STREAMS names,
and any other ever synced), with a backfill's progress. `state`:

- `paused`: the account's syncs are paused (`PUT /schedule`);
- `syncing`: a sync is queued to run now, or running;
- `retrying`: a sync waits out an error or the rate limit;
- `error`: the last sync failed, and no snapshot is newer than that failure;
- `never`: nothing was ever synced;
- `stale` / `fresh`: the snapshot is older / younger than SNAPSHOT_MAX_AGE (or the account's
  own interval, when that is longer).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import redis
from pydantic import BaseModel

from callrail_sync.budget import RequestBudget, unit_for
from callrail_sync.config import Settings
from callrail_sync.job import Job, JobStatus, JobType, listing_sync
from callrail_sync.runtime import Runtime
from callrail_sync.stores.schedules import Schedule
from callrail_sync.stores.snapshots import Kind, PageQuery, SnapshotHead
from callrail_sync.stores.streams import StreamState, feed_id
from callrail_sync.streams import RECORD_STREAMS, STREAMS

State = Literal["never", "syncing", "fresh", "stale", "retrying", "error", "paused"]


class Budget(BaseModel):
    hour_left: int | None
    day_left: int | None
    hour_limit: int | None = None
    day_limit: int | None = None
    throttled_until: datetime | None


class Backfill(BaseModel):
    """How far a stream's backfill has come."""

    windows_done: int
    windows_total: int
    oldest_reached: str | None
    """The oldest day of the windows done (all windows newer than it are done first)."""
    planned_from: str | None
    records: int
    requests: int
    started_at: datetime | None
    finished_at: datetime | None
    estimated_finish: datetime | None
    """From the pace so far, and no sooner than the stream's share of the hourly budget
    allows for the requests left."""


class ListingStatus(BaseModel):
    kind: str
    """`accounts`, `companies`, or a stream."""
    account_id: str | None
    account_name: str | None = None
    state: State
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    next_scheduled_at: datetime | None
    counts: dict[str, int]
    last_error: dict[str, Any] | None
    job: dict[str, Any] | None
    """The sync under way, if one is: its id and status."""
    paused: bool
    interval_seconds: float
    budget: Budget | None
    backfill: Backfill | None = None
    """Windowed streams (calls, form submissions, conversations): the backfill's progress."""


def owner_status(rt: Runtime, owner: str, now: datetime) -> list[ListingStatus]:
    """Every listing of the owner, the accounts listing first."""
    stores = rt.stores
    names = _account_names(rt, owner)
    schedules = stores.schedules.of_owner(owner)
    configured = stores.userconfig.of_owner(owner)
    synced = stores.jobs.synced_accounts(owner)
    accounts = list(dict.fromkeys([*names, *configured, *schedules, *synced]))
    record = stores.keys.record(owner)
    api_key = record.api_key.get_secret_value() if record is not None and record.usable else None
    entries = [_listing(rt, owner, "accounts", None, None, now, api_key, periodic=bool(configured))]
    for account in accounts:
        schedule = schedules.get(account)
        entry = _listing(rt, owner, "companies", account, schedule, now, api_key, periodic=True)
        entry.account_name = names.get(account)
        if account not in configured:
            entry.next_scheduled_at = None  # beat keeps only configured accounts fresh
        entries.append(entry)
        for name in _streams_of(rt, owner, account):
            entry = _stream(rt, owner, name, account, schedule, now)
            entry.account_name = names.get(account)
            if account in configured and not entry.paused:
                latest = rt.stores.jobs.latest(owner, JobType.SYNC_STREAM, account, name)
                entry.next_scheduled_at = _next(latest, None, entry.interval_seconds, now)
            entries.append(entry)
    return entries


def _streams_of(rt: Runtime, owner: str, account: str) -> list[str]:
    """The streams shown for an account: those beat keeps, and any other synced once."""
    wanted = set(rt.settings.streams_synced())
    for name in RECORD_STREAMS:
        if name not in wanted and rt.stores.jobs.latest(owner, JobType.SYNC_STREAM, account, name):
            wanted.add(name)
    return [name for name in RECORD_STREAMS if name in wanted]


def _stream(
    rt: Runtime, owner: str, name: str, account: str, schedule: Schedule | None, now: datetime
) -> ListingStatus:
    """A stream of one account: its latest job, its records, and its backfill."""
    feed = feed_id(owner, name, account)
    state = rt.stores.streams.state(feed)
    changes = rt.stores.streams.counts(feed)
    synced = state.last_run.get("at") if state.last_run else None
    head = None
    if synced is not None:
        head = SnapshotHead(snapshot_id=feed, owner=owner, kind="companies", synced_at=synced)
    latest = rt.stores.jobs.latest(owner, JobType.SYNC_STREAM, account, name)
    counts = {"records": changes["added"] + changes["updated"], "deleted": changes["deleted"]}
    backfill = backfill_of(rt.settings, state, now) if STREAMS[name].windowed else None
    return _entry(rt, name, account, schedule, now, latest, head, counts, backfill=backfill)


def backfill_of(settings: Settings, state: StreamState, now: datetime) -> Backfill | None:
    """A backfill's progress and estimated finish; None before one is planned."""
    windows = state.windows
    if not windows:
        return None
    done = [w for w in windows if w.get("done")]
    days = [w["first"] for w in done if w.get("first")]
    oldest = min(days) if days else (done[-1].get("date_range") if done else None)
    records = sum(int(w.get("records") or 0) for w in windows)
    left = 0
    for w in windows:
        if not w.get("done"):
            rest = max(0, int(w.get("expected") or 0) - int(w.get("records") or 0))
            left += max(1, math.ceil(rest / settings.callrail_page_size))
    finish = state.finished_at
    estimate = None
    if finish is None and state.started_at is not None:
        total = sum(int(w.get("expected") or 0) for w in windows)
        fraction = (records / total) if total else len(done) / len(windows)
        elapsed = (now - state.started_at).total_seconds()
        pace = now + timedelta(seconds=elapsed * (1 - fraction) / fraction) if fraction else None
        hourly = settings.hourly_limit * settings.stream_budget_share
        budget = now + timedelta(hours=left / hourly) if left > hourly else now
        estimate = max(pace, budget) if pace is not None else budget
    return Backfill(
        windows_done=len(done),
        windows_total=len(windows),
        oldest_reached=oldest,
        planned_from=state.planned_from,
        records=records,
        requests=state.requests,
        started_at=state.started_at,
        finished_at=finish,
        estimated_finish=estimate,
    )


def _listing(
    rt: Runtime,
    owner: str,
    kind: Kind,
    account: str | None,
    schedule: Schedule | None,
    now: datetime,
    api_key: str | None,
    *,
    periodic: bool,
) -> ListingStatus:
    head = rt.stores.snapshots.current(owner, kind, account)
    counts = dict(head.counts) if head else {}
    counts["deleted"] = rt.stores.changes.counts(owner, kind, account)["deleted"]
    latest = rt.stores.jobs.latest(owner, listing_sync(kind), account)
    budget = _budget(rt.budget, account, api_key)
    return _entry(rt, kind, account, schedule, now, latest, head, counts, periodic, budget)


def _entry(
    rt: Runtime,
    kind: str,
    account: str | None,
    schedule: Schedule | None,
    now: datetime,
    latest: Job | None,
    head: SnapshotHead | None,
    counts: dict[str, int],
    periodic: bool = False,
    budget: Budget | None = None,
    backfill: Backfill | None = None,
) -> ListingStatus:
    """An entry from its latest job, its last success (`head`) and its schedule."""
    paused = bool(schedule and schedule.paused)
    interval = float(schedule.interval_seconds) if schedule and schedule.interval_seconds else None
    interval = interval or rt.settings.sync_interval
    failed = latest is not None and latest.status in (JobStatus.FAILED, JobStatus.RETRYING)
    active = latest is not None and not latest.is_final
    return ListingStatus(
        kind=kind,
        account_id=account,
        state=_state(latest, head, paused, now, stale_after(rt.settings, schedule)),
        last_success_at=head.synced_at if head else None,
        last_attempt_at=(latest.started_at or latest.created_at) if latest else None,
        next_scheduled_at=_next(latest, head, interval, now) if periodic and not paused else None,
        counts=counts,
        last_error=_error(latest) if failed and latest is not None else None,
        job={"id": latest.id, "status": latest.status.value} if active and latest else None,
        paused=paused,
        interval_seconds=interval,
        budget=budget,
        backfill=backfill,
    )


def stale_after(settings: Settings, schedule: Schedule | None) -> float:
    """Seconds after which a listing's snapshot is stale: SNAPSHOT_MAX_AGE, or the account's
    own interval when that is longer (its syncs are meant to be that far apart)."""
    own = schedule.interval_seconds if schedule is not None else None
    return max(settings.snapshot_max_age, float(own or 0))


def _state(
    latest: Job | None, head: SnapshotHead | None, paused: bool, now: datetime, max_age: float
) -> State:
    if paused:
        return "paused"
    if latest is not None:
        waiting_for_later = latest.not_before is not None and latest.not_before > now
        if latest.status in (JobStatus.QUEUED, JobStatus.RUNNING) and not waiting_for_later:
            return "syncing"
        if latest.status is JobStatus.RETRYING:
            return "retrying"
        ended = latest.finished_at
        if latest.status is JobStatus.FAILED and (
            head is None or (ended and head.synced_at < ended)
        ):
            return "error"
    if head is None:
        return "never"
    age = (now - head.synced_at).total_seconds()
    return "stale" if age > max_age else "fresh"


def _next(
    latest: Job | None, head: SnapshotHead | None, interval: float, now: datetime
) -> datetime:
    if latest is not None and not latest.is_final and latest.not_before is not None:
        return latest.not_before
    if head is None:
        return now
    return max(now, head.synced_at + timedelta(seconds=interval))


def _error(job: Job) -> dict[str, Any] | None:
    if job.error is None:
        return None
    error = job.error.model_dump(mode="json")
    return {**error, "at": (job.finished_at or job.updated_at).isoformat()}


def _budget(budget: RequestBudget, account: str | None, api_key: str | None) -> Budget | None:
    if account is not None:
        unit = unit_for("", f"/a/{account}/companies.json")
    elif api_key is not None:
        unit = unit_for(api_key, "/a.json")
    else:
        return None
    try:
        left = budget.left(unit)
    except redis.RedisError:
        return None
    until = left.throttled_until_ms
    limits = {int(w.seconds): w.limit for w in budget.windows}
    return Budget(
        hour_left=left.left.get(3600),
        day_left=left.left.get(86400),
        hour_limit=limits.get(3600),
        day_limit=limits.get(86400),
        throttled_until=datetime.fromtimestamp(until / 1000, UTC) if until else None,
    )


def _account_names(rt: Runtime, owner: str) -> dict[str, str | None]:
    """The CallRail accounts in the owner's accounts snapshot, by id, with their names."""
    head = rt.stores.snapshots.current(owner, "accounts")
    if head is None:
        return {}
    every = PageQuery(per_page=max(1, head.counts.get("records", 0)), sort="name")
    rows = rt.stores.snapshots.read_page("accounts", head.snapshot_id, every)
    return {str(r["id"]): r.get("name") for r in rows}
