"""Sync tasks: walk every page of a CallRail listing into a new snapshot, then publish it.

The snapshot's id is the job's id and each record's key is `<snapshot>:<id>`, so running the
same job twice (a redelivery after a crash, a retry) rewrites the same documents. Pages already
stored by an earlier attempt are not fetched again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from tasks.jobs import run_job
from tasks.shutdown import stop_point
from worker import metrics
from worker.callrail.client import CallRailClient
from worker.callrail.pagination import WalkedPage
from worker.celery_app import app
from worker.runtime import Runtime
from worker.store import Kind

log = logging.getLogger("callrail_sync.sync")


def _store_pages(
    job: dict[str, Any],
    rt: Runtime,
    kind: Kind,
    callrail_account_id: str | None,
    pages: Iterator[tuple[WalkedPage, list[Any]]],
) -> dict[str, Any]:
    snapshot_id = job["_id"]
    started = time.monotonic()
    rt.store.begin_snapshot(snapshot_id, job["owner"], kind, callrail_account_id)
    for page, records in pages:
        written = rt.store.write_records(
            kind, snapshot_id, job["owner"], [r.model_dump(mode="json") for r in records]
        )
        rt.store.record_page(job["_id"], page.number, page.last_page, written)
        metrics.PAGES.labels(kind).inc()
        log.info(
            "page stored",
            extra={
                "job_id": job["_id"],
                "owner": job["owner"],
                "callrail_account_id": callrail_account_id,
                "page": page.number,
                "total_pages": page.last_page,
                "records": written,
            },
        )
        stop_point(job["_id"])
    done = rt.store.get_job(job["_id"]) or job
    meta = rt.store.publish_snapshot(snapshot_id, pages=len(done["progress"]["pages_done"]))
    metrics.SYNC_SECONDS.labels(kind).observe(time.monotonic() - started)
    return {
        "snapshot_id": snapshot_id,
        "result": {"synced_at": meta["synced_at"].isoformat(), "counts": meta["counts"]},
    }


def _resume(job: dict[str, Any]) -> dict[str, Any]:
    """Walker arguments that skip the pages an earlier attempt stored."""
    progress = job.get("progress") or {}
    done = progress.get("pages_done") or []
    return {"skip": set(done), "known_last": progress.get("total_pages")} if done else {}


def sync_accounts_work(job: dict[str, Any], rt: Runtime, client: CallRailClient) -> dict[str, Any]:
    pages = client.iter_account_pages(**_resume(job))
    return _store_pages(job, rt, "accounts", None, pages)


def sync_companies_work(job: dict[str, Any], rt: Runtime, client: CallRailClient) -> dict[str, Any]:
    account_id = job["params"]["callrail_account_id"]
    # Every company, disabled ones included: the shim filters the snapshot.
    pages = client.iter_company_pages(account_id, **_resume(job))
    return _store_pages(job, rt, "companies", account_id, pages)


@app.task(bind=True, name="callrail.sync.accounts", max_retries=None)
def sync_accounts(self: Any, job_id: str) -> dict[str, Any]:
    """Sync every CallRail account the owner's key sees into an accounts snapshot."""
    return run_job(self, job_id, sync_accounts_work)


@app.task(bind=True, name="callrail.sync.companies", max_retries=None)
def sync_companies(self: Any, job_id: str) -> dict[str, Any]:
    """Sync every company of one CallRail account into a companies snapshot."""
    return run_job(self, job_id, sync_companies_work)
