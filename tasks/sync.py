"""Sync work: walk every page of a CallRail listing into a new snapshot, then publish it.

The snapshot's id is the job's id and each record's key is `<snapshot>:<id>`, so running the
same job twice (a redelivery after a crash, a retry) rewrites the same documents. Pages already
stored by an earlier attempt are not fetched again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel

from callrail_sync import errors, metrics
from callrail_sync.callrail.client import CallRailClient
from callrail_sync.callrail.pagination import WalkedPage
from callrail_sync.job import Job
from callrail_sync.runtime import Runtime
from callrail_sync.stopping import stop_point
from callrail_sync.stores.changes import TrackChecks, Tracker
from callrail_sync.stores.snapshots import Kind, SnapshotWriter, head_id
from tasks import inbound
from tasks.jobs import Outcome, claim_point

log = logging.getLogger("callrail_sync.sync")
GONE_SAMPLE = 10
"""How many records a walk missed are fetched to confirm they are gone before any is marked
deleted (each costs one request of the account's budget)."""

Pages = Iterator[tuple[WalkedPage, list[Any]]]


def store_pages(
    job: Job,
    rt: Runtime,
    kind: Kind,
    callrail_account_id: str | None,
    pages: Pages,
    *,
    confirm_gone: Callable[[list[str]], bool] | None = None,
    into: tuple[SnapshotWriter, Tracker] | None = None,
) -> Outcome:
    """Store each page as it comes, note it on the job, then track what changed and publish
    the snapshot (into the runtime's stores, or `into` others). `confirm_gone` asks CallRail
    whether records the walk missed are really gone (see `TrackChecks`)."""
    jobs = rt.stores.jobs
    snapshots, tracker = into or (rt.stores.snapshots, rt.stores.changes)
    started = time.monotonic()
    snapshots.begin(job.id, job.owner, kind, callrail_account_id)
    done = job
    expected: int | None = None  # how many records CallRail says the listing holds
    for page, records in pages:
        expected = page.meta.total_records if page.meta.total_records is not None else expected
        rows = [r.model_dump(mode="json") if isinstance(r, BaseModel) else r for r in records]
        inserted = snapshots.write_records(kind, job.id, job.owner, rows)
        done = jobs.record_page(job.id, page.number, page.last_page, len(rows), inserted)
        metrics.PAGES.labels(kind).inc()
        log.info(
            "page stored",
            extra={
                "job_id": job.id,
                "owner": job.owner,
                "callrail_account_id": callrail_account_id,
                "page": page.number,
                "total_pages": page.last_page,
                "records": len(rows),
            },
        )
        stop_point(job.id)
        claim_point(rt, job.id)
    # The walk is complete: only now may a record it lacks count as deleted. One worker at a
    # time tracks a feed, so its change numbers are written in order; and one attempt of a
    # job publishes it: one taken over while it walked (stalled past its lease) stops here.
    with rt.locks.hold("feed:" + head_id(job.owner, kind, callrail_account_id)) as held:
        claim_point(rt, job.id, confirm=True)
        try:
            stored = snapshots.verify(kind, job.id, done.progress.inserted)
        except errors.SnapshotIncomplete as lost:
            # Records its pages wrote are gone: nothing is tracked or published, and the retry
            # walks every page again (which pages lost records is not known), expecting what
            # the snapshot still holds and what those pages insert again. The pages and that
            # count are forgotten in one write: if it fails, the retry refuses again.
            jobs.restart(job.id, inserted=lost.held)
            raise
        checks = TrackChecks(expected, confirm_gone, held.confirm)
        changes = tracker.track(job.id, checks)
        head = snapshots.publish(job.id, pages=len(done.progress.pages_done), held=stored)
    metrics.SYNC_SECONDS.labels(kind).observe(time.monotonic() - started)
    result = {
        "synced_at": head.synced_at.isoformat(),
        "counts": head.counts,
        "changes": changes.model_dump(),
    }
    return Outcome(result=result, snapshot_id=job.id)


def gone_from(
    client: CallRailClient, callrail_account_id: str | None
) -> Callable[[list[str]], bool]:
    """Whether CallRail confirms that records a walk missed are gone: a sample of them is
    fetched, and one that is still there means the walk's pages shifted under it."""

    def confirmed(missed: list[str]) -> bool:
        for record_id in random.sample(missed, min(GONE_SAMPLE, len(missed))):
            try:
                if callrail_account_id is None:
                    client.get_account(record_id)
                else:
                    client.get_company(callrail_account_id, record_id)
            except errors.UpstreamNotFound:
                continue
            log.warning(
                "a record the walk missed is still in CallRail; deletions wait for the next sync",
                extra={"callrail_account_id": callrail_account_id, "missed": len(missed)},
            )
            return False
        return True

    return confirmed


def resume_from(job: Job, rt: Runtime) -> dict[str, Any]:
    """Walker arguments that skip the pages an earlier attempt stored; none for a reset sync,
    whose stored pages are dropped first."""
    done = job.progress.pages_done
    if done and job.params.reset:
        rt.stores.snapshots.discard(job.id)
        rt.stores.jobs.restart(job.id)
        return {}
    return {"skip": set(done), "known_last": job.progress.total_pages} if done else {}


def sync_accounts_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """Every CallRail account the owner's key sees, into an accounts snapshot."""
    pages = client.iter_account_pages(**resume_from(job, rt))
    return store_pages(job, rt, "accounts", None, pages, confirm_gone=gone_from(client, None))


def sync_companies_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """Every company of one CallRail account (disabled ones too: the shim filters)."""
    callrail_account_id = job.params.need("callrail_account_id")
    schedule = rt.stores.schedules.get(job.owner, callrail_account_id)
    if schedule is not None and schedule.paused:
        # Queued before the pause (by beat, or a user): it ends now, saying why.
        raise errors.SyncPaused()
    pages = client.iter_company_pages(callrail_account_id, **resume_from(job, rt))
    confirm = gone_from(client, callrail_account_id)
    outcome = store_pages(job, rt, "companies", callrail_account_id, pages, confirm_gone=confirm)
    if outcome.snapshot_id:
        # What the owner may read of our receivers' calls follows what its key sees now.
        inbound.review_readers(rt, job.owner, callrail_account_id, outcome.snapshot_id)
    return outcome
