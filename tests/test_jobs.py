"""Worker-side jobs end to end: real Redis broker, real Celery worker, simulator over HTTP."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from celery.exceptions import Retry, SoftTimeLimitExceeded
from pymongo import MongoClient
from pymongo.errors import AutoReconnect, PyMongoError

from callrail_sync import errors
from callrail_sync.cli.processes import wait_until
from callrail_sync.errors import API_KEY_NOT_FOUND, SnapshotIncomplete
from callrail_sync.job import Job, JobError, JobParams, JobType, NewJob
from callrail_sync.stores import Stores
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.snapshots import PageQuery
from tasks import jobs as jobs_tasks
from tasks import sync as sync_tasks

from .conftest import OTHER_OWNER, OWNER, Submitter, wait_job


def all_records(stores: Stores, kind: str, owner: str, account: str | None = None) -> list[dict]:
    head = stores.snapshots.current(owner, kind, account)
    assert head is not None
    query = PageQuery(page=1, per_page=100_000)
    items = stores.snapshots.read_page(kind, head.snapshot_id, query)
    assert len(items) == stores.snapshots.count(kind, head.snapshot_id, query)
    return items


def test_accounts_sync_lands_every_account_in_a_snapshot(
    worker, stores, owner, submit_job, sim_data, api_key
):
    job, created = submit_job(owner, "sync_accounts")
    done = wait_job(stores, job.id)
    assert created and done.status == "succeeded", done.error
    ids = [a["id"] for a in all_records(stores, "accounts", owner)]
    assert sorted(ids) == sorted(sim_data.accounts_by_key[api_key])
    head = stores.snapshots.current(owner, "accounts")
    assert head.counts["records"] == 2 and head.synced_at is not None
    assert done.result["counts"]["records"] == 2 and done.attempts == 1


def test_companies_sync_of_1234_companies_over_five_pages(
    worker, stores, owner, submit_job, sim, sim_data, api_key
):
    account = sim_data.add_account(api_key, 1_234)
    sim.reset()
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    done = wait_job(stores, job.id)
    assert done.status == "succeeded", done.error
    records = all_records(stores, "companies", owner, account)
    upstream = sim_data.companies(sim_data.accounts[account])
    assert sorted(r["id"] for r in records) == sorted(c["id"] for c in upstream)
    assert done.progress.model_dump() == {
        "pages_done": [1, 2, 3, 4, 5],
        "total_pages": 5,
        "records": 1_234,
        "inserted": 1_234,
    }
    head = stores.snapshots.current(owner, "companies", account)
    assert head.callrail_account_id == account
    assert head.counts["disabled"] == sum(c["status"] == "disabled" for c in upstream) > 0
    assert sim.stats()["requests"] == 5
    # Unknown upstream fields are stored as they came.
    assert records[0]["swap_cookie_duration_unit"] == "months"


@pytest.mark.pages_of(25)
def test_a_reader_sees_the_old_snapshot_then_the_new_never_a_mix(
    worker, stores, owner, submit_job, sim, sim_data, api_key
):
    # Two pages of 25: a snapshot half written would show after the first. (In pages of 250,
    # each read of all 500 records took SecantusDB ~0.15 s, and the reads slowed the sync
    # they watch.)
    size = 50
    account = sim_data.add_account(api_key, size)
    first, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    assert wait_job(stores, first.id).status == "succeeded"
    for company in sim_data.companies(sim_data.accounts[account]):
        company["name"] += " v2"
    sim.set_knobs(latency=0.15)
    second, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    generations: list[str] = []
    while not stores.jobs.get(second.id).is_final:
        names = [r["name"] for r in all_records(stores, "companies", owner, account)]
        kinds = {n.endswith(" v2") for n in names}
        assert len(names) == size and len(kinds) == 1, "a reader saw a half-written snapshot"
        generations.append("new" if kinds == {True} else "old")
    assert stores.jobs.get(second.id).status == "succeeded"
    names = [r["name"] for r in all_records(stores, "companies", owner, account)]
    assert all(n.endswith(" v2") for n in names) and len(names) == size
    assert generations and generations[0] == "old"
    assert generations == sorted(generations, key=lambda g: g == "new")  # never back to old


@pytest.mark.pages_of(25)
def test_a_failed_sync_keeps_the_previous_snapshot(
    worker, stores, owner, submit_job, sim, sim_data, api_key
):
    account = sim_data.add_account(api_key, 60)
    first, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    assert wait_job(stores, first.id).status == "succeeded"
    before = stores.snapshots.current(owner, "companies", account)
    sim.set_knobs(fail_next=["ok"] + ["500"] * 30)
    second, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    failed = wait_job(stores, second.id)
    assert failed.status == "failed" and failed.attempts == 3
    assert failed.error.errno == 502 and failed.error.message.startswith("CallRail error")
    after = stores.snapshots.current(owner, "companies", account)
    assert after.snapshot_id == before.snapshot_id
    assert len(all_records(stores, "companies", owner, account)) == 60
    # The half-built snapshot is gone, not left behind (discarded once the failure is written,
    # so just after the job says it failed).
    items = stores.db["callrail_companies"]
    assert wait_until(lambda: items.count_documents({"snapshot_id": second.id}) == 0, 10, 0.05)


@pytest.mark.pages_of(25)
def test_companies_gone_upstream_disappear_from_the_next_snapshot(
    worker, stores, owner, submit_job, sim_data, api_key
):
    account = sim_data.add_account(api_key, 30)
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    wait_job(stores, job.id)
    companies = sim_data.companies(sim_data.accounts[account])
    removed = companies.pop(0)
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    assert wait_job(stores, job.id).status == "succeeded"
    ids = {r["id"] for r in all_records(stores, "companies", owner, account)}
    assert removed["id"] not in ids and len(ids) == 29


def test_concurrent_identical_requests_share_one_job(owner, submit_job):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: submit_job(owner, "sync_accounts"), range(16)))
    ids = {job.id for job, _ in results}
    assert len(ids) == 1 and sum(created for _, created in results) == 1
    # A different owner or resource is a different job.
    other, created = submit_job(owner, "sync_companies", callrail_account_id="ACC1")
    assert created and other.id not in ids


def test_a_finished_job_frees_its_dedupe_slot(worker, stores, owner, submit_job):
    first, _ = submit_job(owner, "sync_accounts")
    wait_job(stores, first.id)
    second, created = submit_job(owner, "sync_accounts")
    assert created and second.id != first.id


@pytest.mark.pages_of(25)
def test_the_same_job_run_twice_leaves_one_snapshot_without_duplicates(
    stores, owner, runtime, sim, sim_data, api_key
):
    """A worker dies after storing two pages; the redelivered job resumes and refetches nothing."""
    account = sim_data.add_account(api_key, 110)
    job = companies_job(stores, owner, account)
    stores.jobs.start(job.id, job.id, lease_seconds=90)
    client = runtime.client(api_key)
    client.page_concurrency = 1
    crash_after = 2

    class WorkerKilled(BaseException):
        pass

    seen = 0

    def dying_pages():
        nonlocal seen
        for item in client.iter_company_pages(account):
            if seen == crash_after:
                raise WorkerKilled
            seen += 1
            yield item

    with pytest.raises(WorkerKilled):
        sync_tasks.store_pages(
            stores.jobs.get(job.id), runtime, "companies", account, dying_pages()
        )
    assert stores.jobs.get(job.id).progress.pages_done == [1, 2]
    sim.reset()
    outcome = sync_tasks.sync_companies_work(stores.jobs.get(job.id), runtime, client)
    fetched = sorted(int(r.query.split("page=")[1].split("&")[0]) for r in sim.requests_logged())
    assert fetched == [3, 4, 5]
    records = all_records(stores, "companies", owner, account)
    assert len(records) == len({r["id"] for r in records}) == 110
    assert outcome.result["counts"]["records"] == 110
    # And once more, as a second redelivery after the end: same snapshot, same records.
    sync_tasks.sync_companies_work(stores.jobs.get(job.id), runtime, client)
    assert len(all_records(stores, "companies", owner, account)) == 110


def test_an_attempt_taken_over_leaves_the_job_alone_when_it_then_fails(
    stores, owner, runtime, api_key
):
    """A stalled attempt resumes into an error (the store it lost during the stall, say):
    once a heartbeat found the job taken over, it neither retries, fails nor hands back the
    job, which the attempt that took it over is running (its `retrying` or `failed` would
    stop that one: its heartbeat needs the job `running` and its own)."""
    job, _ = stores.jobs.create(NewJob(owner=owner, type=JobType.SYNC_ACCOUNTS))
    first = stores.jobs.start(job.id, "first", lease_seconds=90)
    quick = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"job_lease_seconds": 0.3})
    )

    def stall_then_fail(job: Job, rt, client) -> jobs_tasks.Outcome:
        assert stores.jobs.start(job.id, "second", lease_seconds=0) is not None
        assert wait_until(claim.lost.is_set, 10, 0.02)  # a beat found it taken over
        raise errors.ServiceUnavailable("MongoDB is unavailable; the job will retry.")

    with jobs_tasks.heartbeat(quick, job.id, first.claimed_by) as claim:
        ended = jobs_tasks._run(None, quick, first, stall_then_fail, {"job_id": job.id})
    assert ended == {"job_id": job.id, "status": "taken over"}
    now = stores.jobs.get(job.id)
    assert now.status == "running" and now.error is None  # the second attempt's, untouched
    assert now.claimed_by.startswith("second:")


class RetriedTask:
    """A task whose `retry` hands back Celery's Retry (as a bound task's does), noting it."""

    def __init__(self) -> None:
        self.retries: list[float] = []

    def retry(self, countdown: float, exc: Exception | None) -> Retry:
        self.retries.append(countdown)
        return Retry(when=countdown)


TAKEN_OVER_ENDINGS = {
    "retry": errors.ServiceUnavailable("MongoDB is unavailable; the job will retry."),
    "failure": errors.UpstreamNotFound("gone", status=404),
    "time limit": SoftTimeLimitExceeded(),
    "rate limit": errors.BudgetWait("no budget left", retry_after=5),
    "hand-back": errors.StopRequested("the worker is stopping"),
    "success": None,
}


@pytest.mark.parametrize("ending", list(TAKEN_OVER_ENDINGS))
def test_an_attempt_taken_over_before_its_heartbeat_knew_leaves_the_job_alone(
    stores, owner, runtime, api_key, ending
):
    """The reviewer's order: attempt A stalls past its lease, B takes the job over and starts
    its snapshot, and A resumes straight into its end before any beat of its own found out.
    Each status write of A names A's claim, so none matches: the job stays B's (running,
    claimed by B, no error) and B's snapshot is not discarded; A ends "taken over", requeues
    nothing, and does not say it failed."""
    job, _ = stores.jobs.create(NewJob(owner=owner, type=JobType.SYNC_COMPANIES))
    first = stores.jobs.start(job.id, "message", lease_seconds=90)
    records = [{"id": f"COM{n}", "name": f"Company {n}"} for n in range(5)]

    def taken_over_then_end(job: Job, rt, client) -> jobs_tasks.Outcome:
        second = stores.jobs.start(job.id, "message", lease_seconds=0)  # a redelivery, say
        assert second is not None
        stores.snapshots.begin(job.id, owner, "companies", "ACC1")  # B's building snapshot
        stores.snapshots.write_records("companies", job.id, owner, records)
        if TAKEN_OVER_ENDINGS[ending] is not None:
            raise TAKEN_OVER_ENDINGS[ending]
        return jobs_tasks.Outcome(result={"done": True})

    task = RetriedTask()
    ended = jobs_tasks._run(task, runtime, first, taken_over_then_end, {"job_id": job.id})
    assert ended == {"job_id": job.id, "status": "taken over"} and task.retries == []
    now = stores.jobs.get(job.id)
    assert now.status == "running" and now.error is None and now.attempts == 2
    assert now.claimed_by != first.claimed_by and now.claimed_by.startswith("message:")
    held = stores.snapshots.count("companies", job.id, PageQuery())
    assert held == 5  # B's snapshot, not discarded


@pytest.mark.pages_of(25)
def test_a_snapshot_that_lost_records_is_refused_again_when_forgetting_its_pages_failed(
    stores, owner, runtime, sim, sim_data, api_key, monkeypatch
):
    """Records are lost, the sync refuses, and the write that forgets its pages fails (the
    store blinked; or the process died just then): the retry skips the pages already done, and
    must still find the snapshot short, not publish 55 records of 60. What the snapshot must
    hold is kept on the job with its pages, and reset with them in one write."""
    account = sim_data.add_account(api_key, 60)
    job = companies_job(stores, owner, account)
    stores.jobs.start(job.id, job.id, lease_seconds=90)
    client = runtime.client(api_key)

    def losing_pages():
        yield from client.iter_company_pages(account)
        lose_five_records(stores, job.id)

    real_restart = stores.jobs.restart

    def blinking_restart(job_id, *args, **kwargs):
        monkeypatch.setattr(stores.jobs, "restart", real_restart)  # once
        raise AutoReconnect("connection reset")

    monkeypatch.setattr(stores.jobs, "restart", blinking_restart)
    with pytest.raises(AutoReconnect):
        pages = losing_pages()
        sync_tasks.store_pages(stores.jobs.get(job.id), runtime, "companies", account, pages)
    assert stores.jobs.get(job.id).progress.pages_done == [1, 2, 3]  # not forgotten
    with pytest.raises(SnapshotIncomplete) as refused:  # the retry: every page skipped
        sync_tasks.sync_companies_work(stores.jobs.get(job.id), runtime, client)
    assert (refused.value.held, refused.value.inserted) == (55, 60)
    assert stores.snapshots.current(owner, "companies", account) is None
    outcome = sync_tasks.sync_companies_work(stores.jobs.get(job.id), runtime, client)
    assert outcome.result["counts"]["records"] == 60
    assert stores.jobs.get(job.id).progress.inserted == 60  # 55 kept, and the 5 again


def lose_five_records(stores: Stores, snapshot_id: str) -> None:
    """Five records of a building companies snapshot taken out by hand, on the real server."""
    items = stores.db["callrail_companies"]
    lost = [d["_id"] for d in items.find({"snapshot_id": snapshot_id}, {"_id": 1}).limit(5)]
    assert items.delete_many({"_id": {"$in": lost}}).deleted_count == 5


def store_two_pages(runtime, job: Job, account: str, client) -> None:
    """An attempt of a companies sync stores pages 1 and 2, then fails (CallRail says 404)."""
    client.page_concurrency = 1

    def failing_pages():
        yield from itertools.islice(client.iter_company_pages(account), 2)
        raise errors.UpstreamNotFound("gone", status=404)

    with pytest.raises(errors.UpstreamNotFound):
        sync_tasks.store_pages(job, runtime, "companies", account, failing_pages())
    assert runtime.stores.jobs.get(job.id).progress.pages_done == [1, 2]


@pytest.mark.pages_of(25)
def test_a_failure_not_recorded_leaves_the_snapshot_whole_for_the_retry(
    stores, owner, runtime, sim_data, api_key, monkeypatch
):
    """An attempt stored pages 1 and 2, then failed, and the store refused to record that
    failure: the task is retried with the job's pages still done. Its snapshot must be there
    too: discarded before the failure was written, the retry walked page 3 only and published
    10 records of 60."""
    account = sim_data.add_account(api_key, 60)
    created = companies_job(stores, owner, account)
    job = stores.jobs.start(created.id, "message", lease_seconds=90)
    client = runtime.client(api_key)
    store_two_pages(runtime, job, account, client)
    real_fail = stores.jobs.fail

    def blinking_fail(job_id, *args, **kwargs):
        monkeypatch.setattr(stores.jobs, "fail", real_fail)  # once
        raise AutoReconnect("connection reset")

    monkeypatch.setattr(stores.jobs, "fail", blinking_fail)
    task = RetriedTask()
    with pytest.raises(Retry):
        jobs_tasks._fail(task, runtime, job, errors.UpstreamNotFound("gone", status=404), {})
    assert task.retries == [runtime.settings.job_lease_seconds]
    retry = stores.jobs.get(job.id)
    assert retry.status == "running" and retry.progress.pages_done == [1, 2]
    outcome = sync_tasks.sync_companies_work(retry, runtime, client)
    assert outcome.result["counts"]["records"] == 60
    assert len(all_records(stores, "companies", owner, account)) == 60


@pytest.mark.pages_of(25)
def test_a_snapshot_gone_under_pages_done_is_refused(stores, owner, runtime, sim_data, api_key):
    """Whatever took a building snapshot away (its records and its document) while its job
    kept its pages, the retry that skips those pages finds fewer records than the job says
    they inserted: refused, not published with the last page's 10 records of 60."""
    account = sim_data.add_account(api_key, 60)
    job = companies_job(stores, owner, account)
    stores.jobs.start(job.id, job.id, lease_seconds=90)
    client = runtime.client(api_key)
    store_two_pages(runtime, stores.jobs.get(job.id), account, client)
    stores.snapshots.discard(job.id)
    with pytest.raises(SnapshotIncomplete) as refused:
        sync_tasks.sync_companies_work(stores.jobs.get(job.id), runtime, client)
    assert (refused.value.held, refused.value.inserted) == (10, 60)
    assert stores.snapshots.current(owner, "companies", account) is None
    outcome = sync_tasks.sync_companies_work(stores.jobs.get(job.id), runtime, client)
    assert outcome.result["counts"]["records"] == 60


@pytest.mark.pages_of(25)
def test_a_snapshot_that_lost_records_its_pages_wrote_is_not_published_but_walked_again(
    stores, owner, runtime, sim, sim_data, api_key
):
    """Whatever loses them (a store that drops acknowledged writes in a restart; records taken
    out by hand here, on the real server), a snapshot that holds fewer records than its pages
    inserted is never published with a head that counts what is not there: the sync refuses,
    forgets its pages, and its retry walks them all again and publishes the whole listing.
    (SecantusDB kept every acknowledged write across the SIGTERM restarts measured for the
    fault suite's Mongo-restart case; this is the guard for a store that would not.)"""
    account = sim_data.add_account(api_key, 60)
    job = companies_job(stores, owner, account)
    stores.jobs.start(job.id, job.id, lease_seconds=90)
    client = runtime.client(api_key)

    def losing_pages():
        for number, (page, records) in enumerate(client.iter_company_pages(account)):
            if number == 2:  # pages 1 and 2 stored: five of their records are lost
                lose_five_records(stores, job.id)
            yield page, records

    with pytest.raises(SnapshotIncomplete) as refused:
        pages = losing_pages()
        sync_tasks.store_pages(stores.jobs.get(job.id), runtime, "companies", account, pages)
    assert (refused.value.held, refused.value.inserted) == (55, 60)
    assert stores.snapshots.current(owner, "companies", account) is None
    assert stores.jobs.get(job.id).progress.pages_done == []  # every page is walked again
    sim.reset()
    outcome = sync_tasks.sync_companies_work(stores.jobs.get(job.id), runtime, client)
    assert outcome.result["counts"]["records"] == 60
    assert len({r["id"] for r in all_records(stores, "companies", owner, account)}) == 60
    progress = stores.jobs.get(job.id).progress
    assert progress.inserted == 60 and progress.records == 60  # the pages again added up
    assert stores.snapshots.verify("companies", job.id, progress.inserted) == 60


def test_an_attempt_taken_over_while_it_walked_stops_before_publishing(
    stores, owner, runtime, sim_data, api_key
):
    """An attempt stalls past its lease (the fault suite's Mongo-restart case, a worker starved
    of CPU) and another claims the job; when the first resumes it must not run on beside the
    second, publishing and tracking changes twice. It finds out at the latest before it
    publishes, and leaves the job as the other attempt holds it. (The takeover itself, by
    the reviver after a real stall, is what the fault suite's stalled-worker runs covered.)"""
    account = sim_data.add_account(api_key, 300)
    job = companies_job(stores, owner, account)
    first = stores.jobs.start(job.id, "first", lease_seconds=90)

    def walk_then_stall(job: Job, rt, client) -> jobs_tasks.Outcome:
        def pages():
            yield from client.iter_company_pages(account)
            # The lease ran out meanwhile: another message claims the job.
            assert stores.jobs.start(job.id, "second", lease_seconds=0) is not None

        return sync_tasks.store_pages(job, rt, "companies", account, pages())

    with jobs_tasks.heartbeat(runtime, job.id, first.claimed_by):
        ended = jobs_tasks._run(None, runtime, first, walk_then_stall, {"job_id": job.id})
    assert ended == {"job_id": job.id, "status": "taken over"}
    assert stores.snapshots.current(owner, "companies", account) is None  # nothing published
    now = stores.jobs.get(job.id)
    assert now.status == "running" and now.attempts == 2  # the second attempt's, untouched
    assert now.claimed_by.startswith("second:")


def test_a_page_written_again_never_takes_a_record_out_of_the_snapshot(stores, mongo_server):
    """Two attempts of one job can overlap (one stalled past its lease, then resumed): the
    slower one rewrites pages of a snapshot the other already published. The rewrite used to
    delete the page's records and insert them again: readers found them missing meanwhile
    (the fault suite's Mongo-restart case once saw a head of 1,000 records over 750), and for
    good when the insert failed. Here the rewrite's second write fails (a fail point of the
    real server): every record is still there, and a rewrite that succeeds replaces them."""
    records = [{"id": f"COM{n}", "name": f"Company {n}", "status": "active"} for n in range(40)]
    snapshots = stores.snapshots
    snapshots.begin("snap_again", OWNER, "companies", "ACC1")
    assert snapshots.write_records("companies", "snap_again", OWNER, records) == 40  # inserted
    everything = PageQuery(page=1, per_page=100)
    admin = MongoClient(mongo_server + "/?directConnection=true")
    admin.admin.command(
        "configureFailPoint",
        "failCommand",
        mode={"skip": 1, "times": 1},  # the rewrite's insert goes through, its next write fails
        data={"failCommands": ["insert", "update"], "errorCode": 2},
    )
    try:
        with pytest.raises(PyMongoError):
            snapshots.write_records("companies", "snap_again", OWNER, records)
    finally:
        admin.admin.command("configureFailPoint", "failCommand", mode="off")
    assert snapshots.count("companies", "snap_again", everything) == 40
    renamed = [{**r, "name": r["name"] + " (renamed)"} for r in records]
    assert snapshots.write_records("companies", "snap_again", OWNER, renamed) == 0  # replaced
    names = {r["name"] for r in snapshots.read_page("companies", "snap_again", everything)}
    assert names == {r["name"] for r in renamed}


def test_snapshots_belong_to_the_owner_that_asked(worker, stores, owner, submit_job, sim_data):
    stores.keys.set(OTHER_OWNER, sim_data.api_keys[1])
    for who in (owner, OTHER_OWNER):
        job, _ = submit_job(who, "sync_accounts")
        assert wait_job(stores, job.id).status == "succeeded"
    mine = {a["id"] for a in all_records(stores, "accounts", owner)}
    theirs = {a["id"] for a in all_records(stores, "accounts", OTHER_OWNER)}
    assert mine and theirs and not mine & theirs


# --- webhooks --------------------------------------------------------------------------------


def first_company(sim_data, api_key) -> tuple[str, str]:
    account = sim_data.accounts_by_key[api_key][0]
    return account, sim_data.companies(sim_data.accounts[account])[0]["id"]


def companies_job(stores: Stores, owner: str, account: str) -> Job:
    """A queued companies sync of `account`, made in the store (no message sent)."""
    params = JobParams(callrail_account_id=account)
    job, _ = stores.jobs.create(NewJob(owner=owner, type=JobType.SYNC_COMPANIES, params=params))
    return job


def run(stores: Stores, submit_job: Submitter, owner: str, job_type: str, **params) -> Job:
    job, _ = submit_job(owner, job_type, **params)
    return wait_job(stores, job.id)


def test_webhook_create_is_idempotent(worker, stores, owner, submit_job, sim_data, api_key):
    account, company = first_company(sim_data, api_key)
    url = "https://dash.example/hooks/callrail"
    ref = {"account_id": account, "company_id": company}
    first = run(stores, submit_job, owner, "webhook_create", **ref, webhook_url=url)
    again = run(stores, submit_job, owner, "webhook_create", **ref, webhook_url=url)
    assert first.status == again.status == "succeeded", first.error
    hook = first.result
    assert again.result["id"] == hook["id"] and hook["id"].startswith("web_")
    assert hook["status"] == "enabled" and hook["url"] == url
    assert hook["events"] == ["call.completed", "call.received"]
    assert (hook["account_id"], hook["company_id"]) == (account, company)
    integrations = [i for i in sim_data.integrations.values() if i["company_id"] == company]
    assert len(integrations) == 1
    assert integrations[0]["config"] == {"post_call_webhook": [url], "pre_call_webhook": [url]}
    listed = run(stores, submit_job, owner, "webhook_list", **ref)
    assert [w["id"] for w in listed.result["webhooks"]] == [hook["id"]]


def test_a_second_url_joins_the_same_integration(
    worker, stores, owner, submit_job, sim_data, api_key
):
    account, company = first_company(sim_data, api_key)
    ref = {"account_id": account, "company_id": company}
    run(stores, submit_job, owner, "webhook_create", **ref, webhook_url="https://a.example/1")
    second = run(
        stores,
        submit_job,
        owner,
        "webhook_create",
        **ref,
        webhook_url="https://b.example/2",
        events=["form.submission"],
    )
    assert second.result["events"] == ["form.submission"]
    (integration,) = [i for i in sim_data.integrations.values() if i["company_id"] == company]
    assert integration["config"]["form_captured_webhook"] == ["https://b.example/2"]
    assert integration["config"]["post_call_webhook"] == ["https://a.example/1"]


def test_webhook_update_changes_url_and_status_both_ways(
    worker, stores, owner, submit_job, sim_data, api_key
):
    account, company = first_company(sim_data, api_key)
    ref = {"account_id": account, "company_id": company}
    made = run(
        stores, submit_job, owner, "webhook_create", **ref, webhook_url="https://a.example/old"
    ).result
    ids = {**ref, "webhook_id": made["id"]}
    moved = run(
        stores, submit_job, owner, "webhook_update", **ids, webhook_url="https://a.example/new"
    )
    assert moved.status == "succeeded", moved.error
    assert moved.result["url"] == "https://a.example/new" and moved.result["id"] == made["id"]
    (integration,) = [i for i in sim_data.integrations.values() if i["company_id"] == company]
    assert integration["config"]["post_call_webhook"] == ["https://a.example/new"]
    off = run(stores, submit_job, owner, "webhook_update", **ids, status="disabled")
    assert off.result["status"] == "disabled" and integration["state"] == "disabled"
    on = run(stores, submit_job, owner, "webhook_update", **ids, status="enabled")
    assert on.result["status"] == "enabled" and integration["state"] == "active"
    assert on.result["updated_at"] is not None


# --- error paths -----------------------------------------------------------------------------


def test_missing_key_fails_with_the_spec_message(worker, stores, submit_job, sim):
    done = run(stores, submit_job, OTHER_OWNER, "sync_accounts")
    assert done.status == "failed"
    assert (done.error.errno, done.error.message) == (400, API_KEY_NOT_FOUND)
    assert done.error.error_class == "auth" and done.error.remedy
    assert sim.stats()["requests"] == 0


def test_soft_deleted_key_is_never_used(worker, stores, owner, submit_job, sim):
    stores.keys.remove(owner)
    done = run(stores, submit_job, owner, "sync_accounts")
    assert (done.error.errno, done.error.message) == (400, API_KEY_NOT_FOUND)
    assert done.error.error_class == "auth" and done.error.remedy
    assert sim.stats()["requests"] == 0


def test_revoked_key_fails_the_job_and_is_not_used_again(worker, stores, owner, submit_job, sim):
    stores.keys.set(owner, "revoked-key")
    done = run(stores, submit_job, owner, "sync_accounts")
    assert done.status == "failed" and done.attempts == 1
    assert done.error.errno == 401 and "re-enter" in done.error.message
    assert stores.keys.record(owner).invalid_at is not None
    sim.reset()
    again = run(stores, submit_job, owner, "sync_accounts")
    assert again.error.message.startswith("CallRail rejected this account's API key on ")
    assert again.error.errno == 400 and sim.stats()["requests"] == 0
    stores.keys.set(owner, sim.data.api_keys[0])  # re-entering the key heals it
    assert run(stores, submit_job, owner, "sync_accounts").status == "succeeded"


def test_unknown_callrail_account_fails_without_retrying(worker, stores, owner, submit_job):
    done = run(stores, submit_job, owner, "sync_companies", callrail_account_id="ACCdoesnotexist")
    assert done.status == "failed" and done.attempts == 1
    assert done.error.model_dump(mode="json") == {
        "errno": 404,
        "message": "Not found in CallRail: Account not found",
        "class": "not_found",
        "retryable": False,
        "remedy": "Check that the account and company ids belong to this CallRail key.",
    }


def test_missing_permission_fails_webhook_create_clearly(
    worker, stores, owner, submit_job, sim_data, api_key
):
    sim_data.read_only_keys.add(api_key)
    account, company = first_company(sim_data, api_key)
    done = run(
        stores,
        submit_job,
        owner,
        "webhook_create",
        callrail_account_id=account,
        company_id=company,
        webhook_url="https://a.example/x",
    )
    assert done.status == "failed" and done.error.errno == 403
    assert "permission" in done.error.message


def test_updating_an_unknown_webhook_fails_with_404(
    worker, stores, owner, submit_job, sim_data, api_key
):
    account, company = first_company(sim_data, api_key)
    done = run(
        stores,
        submit_job,
        owner,
        "webhook_update",
        callrail_account_id=account,
        company_id=company,
        webhook_id="web_nope",
        status="disabled",
    )
    assert (done.error.errno, done.error.message) == (404, "Webhook not found.")


def test_retriable_errors_retry_then_succeed(worker, stores, owner, submit_job, sim):
    sim.set_knobs(fail_next=["503", "drop"])
    done = run(stores, submit_job, owner, "sync_accounts")
    assert done.status == "succeeded" and done.attempts == 3


def test_a_retrying_job_says_so_with_its_next_retry_time(
    worker, stores, owner, submit_job, runtime, sim
):
    runtime.settings.backoff_base = 2.0  # long enough to observe
    runtime.settings.backoff_cap = 2.0
    sim.set_knobs(fail_next=["500"])
    job, _ = submit_job(owner, "sync_accounts")
    seen = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = stores.jobs.get(job.id)
        if current.status == "retrying":
            seen = current
            break
        time.sleep(0.02)
    assert seen is not None and seen.next_retry_at is not None
    assert seen.error.errno == 502
    assert wait_job(stores, job.id).status == "succeeded"


def test_queue_down_fails_the_job_at_once(stores, owner, submit_job, worker_app, monkeypatch):
    """The broker refusing the message (stopping the shared Redis here would stop every other
    test, so the refusal is injected at send_task) leaves a failed job, not a queued one."""
    from kombu.exceptions import OperationalError

    from callrail_sync.errors import QueueUnavailable

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(worker_app, "send_task", refuse)
    with pytest.raises(QueueUnavailable):
        submit_job(owner, "sync_accounts")
    (job,) = stores.jobs.recent(owner)
    assert job.status == "failed" and job.error.errno == 503
    assert stores.jobs.active(f"{owner}:accounts") is None  # the dedupe slot is free again


def test_threads_do_not_matter_for_dedupe_of_webhook_writes(stores, owner):
    """Writes are never deduplicated: two creates are two jobs (the task makes them idempotent)."""
    barrier = threading.Barrier(2)

    def make(_: int) -> str:
        barrier.wait()
        params = JobParams(webhook_url="https://x")
        job, _ = stores.jobs.create(NewJob(owner=owner, type=JobType.WEBHOOK_CREATE, params=params))
        return job.id

    with ThreadPoolExecutor(2) as pool:
        assert len(set(pool.map(make, range(2)))) == 2


def test_a_user_request_hurries_a_sync_that_beat_queued_for_later(
    worker, stores, owner, submit_job
):
    later, created = submit_job(owner, "sync_accounts", countdown=600)
    assert created and stores.jobs.get(later.id).not_before is not None
    now, created = submit_job(owner, "sync_accounts")
    assert not created and now.id == later.id
    assert wait_job(stores, later.id, timeout=15).status == "succeeded"


def test_a_second_message_for_a_running_job_does_not_run_it_again(stores, owner):
    job, _ = stores.jobs.create(NewJob(owner=owner, type=JobType.SYNC_ACCOUNTS))
    first = stores.jobs.start(job.id, "message-1", lease_seconds=90)
    assert first is not None and first.claimed_by.startswith("message-1:")
    assert stores.jobs.start(job.id, "message-2", lease_seconds=90) is None
    assert stores.jobs.start(job.id, "message-1", lease_seconds=90) is None  # the same id twice
    # Untouched for the lease but its process still beats: slow, not lost; it stays.
    jobs = stores.db["callrail_jobs"]
    jobs.update_one({"_id": job.id}, {"$set": {"updated_at": utcnow() - timedelta(seconds=91)}})
    assert stores.jobs.beat(job.id, first.claimed_by)
    assert stores.jobs.start(job.id, "message-2", lease_seconds=90) is None
    # Once its process fell silent for the lease (its worker died), a message takes it back.
    jobs.update_one({"_id": job.id}, {"$set": {"alive_at": utcnow() - timedelta(seconds=91)}})
    again = stores.jobs.start(job.id, "message-1", lease_seconds=90)
    assert again is not None and again.attempts == 2
    # The same message (a retry, a redelivery) claims it as a new attempt: the attempt that
    # stalled holds nothing any more, though its message id is the same.
    assert again.claimed_by != first.claimed_by and again.claimed_by.startswith("message-1:")
    assert not stores.jobs.beat(job.id, first.claimed_by)
    assert stores.jobs.fail(job.id, JobError(errno=1, message="x"), first.claimed_by) is None
    assert stores.jobs.beat(job.id, again.claimed_by)


def test_a_failure_that_cannot_be_recorded_comes_back_after_the_lease(stores, owner, runtime):
    """MongoDB is down when a job's failure is to be written: the task is retried once the
    job's lease is out, instead of leaving the job `running` until the sweeper. (The store is
    wrapped to refuse that one write: a fail point on the server could not single it out.)"""
    from celery.exceptions import Retry
    from pymongo.errors import AutoReconnect

    from callrail_sync.errors import UpstreamNotFound
    from tasks.jobs import _fail

    created, _ = stores.jobs.create(NewJob(owner=owner, type=JobType.SYNC_ACCOUNTS))
    job = stores.jobs.start(created.id, "m", lease_seconds=90)
    real_fail, calls = stores.jobs.fail, []

    def fail_while_down(job_id, error, claim=None):
        calls.append(job_id)
        if len(calls) == 1:
            raise AutoReconnect("connection refused")
        return real_fail(job_id, error, claim)

    class Task:
        def retry(self, countdown, exc):
            return Retry(when=countdown)

    stores.jobs.fail = fail_while_down
    with pytest.raises(Retry) as retried:
        _fail(Task(), runtime, job, UpstreamNotFound("gone", status=404), {})
    assert retried.value.when == runtime.settings.job_lease_seconds
    assert stores.jobs.get(job.id).status == "running"  # nothing was written
    _fail(Task(), runtime, job, UpstreamNotFound("gone", status=404), {})  # the retry
    assert stores.jobs.get(job.id).status == "failed"
