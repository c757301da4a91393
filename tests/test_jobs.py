"""Worker-side jobs end to end: real Redis broker, real Celery worker, simulator over HTTP."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tasks import sync as sync_tasks
from tasks.submit import submit
from worker.errors import API_KEY_NOT_FOUND
from worker.store import MongoStore, utcnow

from .conftest import OTHER_OWNER, wait_job


def all_records(store: MongoStore, kind: str, owner: str, account: str | None = None) -> list[dict]:
    head = store.current_snapshot(owner, kind, account)
    assert head is not None
    items, total = store.read_page(kind, head["snapshot_id"], page=1, per_page=100_000)
    assert len(items) == total
    return items


def test_accounts_sync_lands_every_account_in_a_snapshot(worker, store, owner, sim_data, api_key):
    job, created = submit(store, owner, "sync_accounts", {})
    done = wait_job(store, job["_id"])
    assert created and done["status"] == "succeeded", done["error"]
    ids = [a["id"] for a in all_records(store, "accounts", owner)]
    assert sorted(ids) == sorted(sim_data.accounts_by_key[api_key])
    head = store.current_snapshot(owner, "accounts")
    assert head["counts"]["records"] == 2 and head["synced_at"] is not None
    assert done["result"]["counts"]["records"] == 2 and done["attempts"] == 1


def test_companies_sync_of_1234_companies_over_five_pages(
    worker, store, owner, sim, sim_data, api_key
):
    account = sim_data.add_account(api_key, 1_234)
    sim.reset()
    job, _ = submit(store, owner, "sync_companies", {"callrail_account_id": account})
    done = wait_job(store, job["_id"])
    assert done["status"] == "succeeded", done["error"]
    records = all_records(store, "companies", owner, account)
    upstream = sim_data.companies(sim_data.accounts[account])
    assert sorted(r["id"] for r in records) == sorted(c["id"] for c in upstream)
    assert done["progress"] == {"pages_done": [1, 2, 3, 4, 5], "total_pages": 5, "records": 1_234}
    head = store.current_snapshot(owner, "companies", account)
    assert head["callrail_account_id"] == account
    assert head["counts"]["disabled"] == sum(c["status"] == "disabled" for c in upstream) > 0
    assert sim.stats()["requests"] == 5
    # Unknown upstream fields are stored as they came.
    assert records[0]["swap_cookie_duration_unit"] == "months"


def test_a_reader_sees_the_old_snapshot_then_the_new_never_a_mix(
    worker, store, owner, sim, sim_data, api_key
):
    account = sim_data.add_account(api_key, 1_000)
    first, _ = submit(store, owner, "sync_companies", {"callrail_account_id": account})
    assert wait_job(store, first["_id"])["status"] == "succeeded"
    for company in sim_data.companies(sim_data.accounts[account]):
        company["name"] += " v2"
    sim.set_knobs(latency=0.15)
    second, _ = submit(store, owner, "sync_companies", {"callrail_account_id": account})
    generations: list[str] = []
    while store.get_job(second["_id"])["status"] not in ("succeeded", "failed"):
        names = [r["name"] for r in all_records(store, "companies", owner, account)]
        kinds = {n.endswith(" v2") for n in names}
        assert len(names) == 1_000 and len(kinds) == 1, "a reader saw a half-written snapshot"
        generations.append("new" if kinds == {True} else "old")
    assert store.get_job(second["_id"])["status"] == "succeeded"
    names = [r["name"] for r in all_records(store, "companies", owner, account)]
    assert all(n.endswith(" v2") for n in names) and len(names) == 1_000
    assert generations and generations[0] == "old"
    assert generations == sorted(generations, key=lambda g: g == "new")  # never back to old


def test_a_failed_sync_keeps_the_previous_snapshot(worker, store, owner, sim, sim_data, api_key):
    account = sim_data.add_account(api_key, 600)
    first, _ = submit(store, owner, "sync_companies", {"callrail_account_id": account})
    assert wait_job(store, first["_id"])["status"] == "succeeded"
    before = store.current_snapshot(owner, "companies", account)
    sim.set_knobs(fail_next=["ok"] + ["500"] * 30)
    second, _ = submit(store, owner, "sync_companies", {"callrail_account_id": account})
    failed = wait_job(store, second["_id"])
    assert failed["status"] == "failed" and failed["attempts"] == 3
    assert failed["error"]["errno"] == 502 and failed["error"]["message"].startswith(
        "CallRail error"
    )
    after = store.current_snapshot(owner, "companies", account)
    assert after["snapshot_id"] == before["snapshot_id"]
    assert len(all_records(store, "companies", owner, account)) == 600
    # The half-built snapshot is gone, not left behind.
    assert store.db["callrail_companies"].count_documents({"snapshot_id": second["_id"]}) == 0


def test_companies_gone_upstream_disappear_from_the_next_snapshot(
    worker, store, owner, sim_data, api_key
):
    account = sim_data.add_account(api_key, 300)
    job, _ = submit(store, owner, "sync_companies", {"callrail_account_id": account})
    wait_job(store, job["_id"])
    companies = sim_data.companies(sim_data.accounts[account])
    removed = companies.pop(0)
    job, _ = submit(store, owner, "sync_companies", {"callrail_account_id": account})
    assert wait_job(store, job["_id"])["status"] == "succeeded"
    ids = {r["id"] for r in all_records(store, "companies", owner, account)}
    assert removed["id"] not in ids and len(ids) == 299


def test_concurrent_identical_requests_share_one_job(store, owner, redis_url, runtime):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: submit(store, owner, "sync_accounts", {}), range(16)))
    ids = {job["_id"] for job, _ in results}
    assert len(ids) == 1 and sum(created for _, created in results) == 1
    # A different owner or resource is a different job.
    other, created = submit(store, owner, "sync_companies", {"callrail_account_id": "ACC1"})
    assert created and other["_id"] not in ids


def test_a_finished_job_frees_its_dedupe_slot(worker, store, owner):
    first, _ = submit(store, owner, "sync_accounts", {})
    wait_job(store, first["_id"])
    second, created = submit(store, owner, "sync_accounts", {})
    assert created and second["_id"] != first["_id"]


def test_the_same_job_run_twice_leaves_one_snapshot_without_duplicates(
    store, owner, runtime, sim, sim_data, api_key
):
    """A worker dies after storing two pages; the redelivered job resumes and refetches nothing."""
    account = sim_data.add_account(api_key, 1_100)
    job, _ = store.create_job(owner, "sync_companies", {"callrail_account_id": account})
    store.start_job(job["_id"], job["_id"])
    client = runtime.client(api_key)
    client.page_concurrency = 1
    crash_after = 2

    class WorkerKilled(BaseException):
        pass

    seen = 0

    def dying_pages(*args, **kwargs):
        nonlocal seen
        for item in client.iter_company_pages(account):
            if seen == crash_after:
                raise WorkerKilled
            seen += 1
            yield item

    with pytest.raises(WorkerKilled):
        sync_tasks._store_pages(
            store.get_job(job["_id"]), runtime, "companies", account, dying_pages()
        )
    assert store.get_job(job["_id"])["progress"]["pages_done"] == [1, 2]
    sim.reset()
    outcome = sync_tasks.sync_companies_work(store.get_job(job["_id"]), runtime, client)
    fetched = sorted(int(r.query.split("page=")[1].split("&")[0]) for r in sim.requests_logged())
    assert fetched == [3, 4, 5]
    records = all_records(store, "companies", owner, account)
    assert len(records) == len({r["id"] for r in records}) == 1_100
    assert outcome["result"]["counts"]["records"] == 1_100
    # And once more, as a second redelivery after the end: same snapshot, same records.
    sync_tasks.sync_companies_work(store.get_job(job["_id"]), runtime, client)
    assert len(all_records(store, "companies", owner, account)) == 1_100


def test_snapshots_belong_to_the_owner_that_asked(worker, store, owner, sim_data):
    other_key = sim_data.api_keys[1]
    store.set_api_key(OTHER_OWNER, other_key)
    for who in (owner, OTHER_OWNER):
        job, _ = submit(store, who, "sync_accounts", {})
        assert wait_job(store, job["_id"])["status"] == "succeeded"
    mine = {a["id"] for a in all_records(store, "accounts", owner)}
    theirs = {a["id"] for a in all_records(store, "accounts", OTHER_OWNER)}
    assert mine and theirs and not mine & theirs


# --- webhooks --------------------------------------------------------------------------------


def first_company(sim_data, api_key) -> tuple[str, str]:
    account = sim_data.accounts_by_key[api_key][0]
    return account, sim_data.companies(sim_data.accounts[account])[0]["id"]


def run(store: MongoStore, owner: str, job_type: str, **params) -> dict:
    job, _ = submit(store, owner, job_type, params)
    return wait_job(store, job["_id"])


def test_webhook_create_is_idempotent(worker, store, owner, sim_data, api_key):
    account, company = first_company(sim_data, api_key)
    url = "https://dash.example/hooks/callrail"
    first = run(
        store, owner, "webhook_create", account_id=account, company_id=company, webhook_url=url
    )
    again = run(
        store, owner, "webhook_create", account_id=account, company_id=company, webhook_url=url
    )
    assert first["status"] == again["status"] == "succeeded", first["error"]
    hook = first["result"]
    assert again["result"]["id"] == hook["id"] and hook["id"].startswith("web_")
    assert hook["status"] == "enabled" and hook["url"] == url
    assert hook["events"] == ["call.completed", "call.received"]
    assert (hook["account_id"], hook["company_id"]) == (account, company)
    integrations = [i for i in sim_data.integrations.values() if i["company_id"] == company]
    assert len(integrations) == 1
    assert integrations[0]["config"] == {"post_call_webhook": [url], "pre_call_webhook": [url]}
    listed = run(store, owner, "webhook_list", account_id=account, company_id=company)
    assert [w["id"] for w in listed["result"]["webhooks"]] == [hook["id"]]


def test_a_second_url_joins_the_same_integration(worker, store, owner, sim_data, api_key):
    account, company = first_company(sim_data, api_key)
    run(
        store,
        owner,
        "webhook_create",
        account_id=account,
        company_id=company,
        webhook_url="https://a.example/1",
    )
    second = run(
        store,
        owner,
        "webhook_create",
        account_id=account,
        company_id=company,
        webhook_url="https://b.example/2",
        events=["form.submission"],
    )
    assert second["result"]["events"] == ["form.submission"]
    (integration,) = [i for i in sim_data.integrations.values() if i["company_id"] == company]
    assert integration["config"]["form_captured_webhook"] == ["https://b.example/2"]
    assert integration["config"]["post_call_webhook"] == ["https://a.example/1"]


def test_webhook_update_changes_url_and_status_both_ways(worker, store, owner, sim_data, api_key):
    account, company = first_company(sim_data, api_key)
    made = run(
        store,
        owner,
        "webhook_create",
        account_id=account,
        company_id=company,
        webhook_url="https://a.example/old",
    )["result"]
    ids = {"account_id": account, "company_id": company, "webhook_id": made["id"]}
    moved = run(store, owner, "webhook_update", **ids, webhook_url="https://a.example/new")
    assert moved["status"] == "succeeded", moved["error"]
    assert moved["result"]["url"] == "https://a.example/new" and moved["result"]["id"] == made["id"]
    (integration,) = [i for i in sim_data.integrations.values() if i["company_id"] == company]
    assert integration["config"]["post_call_webhook"] == ["https://a.example/new"]
    off = run(store, owner, "webhook_update", **ids, status="disabled")
    assert off["result"]["status"] == "disabled" and integration["state"] == "disabled"
    on = run(store, owner, "webhook_update", **ids, status="enabled")
    assert on["result"]["status"] == "enabled" and integration["state"] == "active"
    assert on["result"]["updated_at"] is not None


# --- error paths -----------------------------------------------------------------------------


def test_missing_key_fails_with_the_spec_message(worker, store, sim):
    done = run(store, OTHER_OWNER, "sync_accounts")
    assert done["status"] == "failed" and done["error"] == {
        "errno": 400,
        "message": API_KEY_NOT_FOUND,
    }
    assert sim.stats()["requests"] == 0


def test_soft_deleted_key_is_never_used(worker, store, owner, sim):
    store.remove_api_key(owner)
    done = run(store, owner, "sync_accounts")
    assert done["error"] == {"errno": 400, "message": API_KEY_NOT_FOUND}
    assert sim.stats()["requests"] == 0


def test_revoked_key_fails_the_job_and_is_not_used_again(worker, store, owner, sim):
    store.set_api_key(owner, "revoked-key")
    done = run(store, owner, "sync_accounts")
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["errno"] == 401 and "re-enter" in done["error"]["message"]
    assert store.api_key_record(owner)["invalid_at"] is not None
    sim.reset()
    again = run(store, owner, "sync_accounts")
    assert again["error"]["errno"] == 401 and sim.stats()["requests"] == 0
    store.set_api_key(owner, sim.data.api_keys[0])  # re-entering the key heals it
    assert run(store, owner, "sync_accounts")["status"] == "succeeded"


def test_unknown_callrail_account_fails_without_retrying(worker, store, owner, sim):
    done = run(store, owner, "sync_companies", callrail_account_id="ACCdoesnotexist")
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"] == {"errno": 404, "message": "Not found in CallRail: Account not found"}


def test_missing_permission_fails_webhook_create_clearly(worker, store, owner, sim_data, api_key):
    sim_data.read_only_keys.add(api_key)
    account, company = first_company(sim_data, api_key)
    done = run(
        store,
        owner,
        "webhook_create",
        account_id=account,
        company_id=company,
        webhook_url="https://a.example/x",
    )
    assert done["status"] == "failed" and done["error"]["errno"] == 403
    assert "permission" in done["error"]["message"]


def test_updating_an_unknown_webhook_fails_with_404(worker, store, owner, sim_data, api_key):
    account, company = first_company(sim_data, api_key)
    done = run(
        store,
        owner,
        "webhook_update",
        account_id=account,
        company_id=company,
        webhook_id="web_nope",
        status="disabled",
    )
    assert done["error"] == {"errno": 404, "message": "Webhook not found."}


def test_retriable_errors_retry_then_succeed(worker, store, owner, sim):
    sim.set_knobs(fail_next=["503", "drop"])
    done = run(store, owner, "sync_accounts")
    assert done["status"] == "succeeded" and done["attempts"] == 3


def test_a_retrying_job_says_so_with_its_next_retry_time(worker, store, owner, runtime, sim):
    runtime.settings.backoff_base = 2.0  # long enough to observe
    runtime.settings.backoff_cap = 2.0
    sim.set_knobs(fail_next=["500"])
    job, _ = submit(store, owner, "sync_accounts", {})
    seen = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = store.get_job(job["_id"])
        if current["status"] == "retrying":
            seen = current
            break
        time.sleep(0.02)
    assert seen is not None and seen["next_retry_at"] is not None
    assert seen["error"]["errno"] == 502
    assert wait_job(store, job["_id"])["status"] == "succeeded"


def test_queue_down_fails_the_job_at_once(store, owner, runtime, monkeypatch):
    """The broker refusing the message (stopping the shared Redis here would stop every other
    test, so the refusal is injected at send_task) leaves a failed job, not a queued one."""
    from kombu.exceptions import OperationalError

    from tasks.submit import QueueUnavailable
    from worker.celery_app import app

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(app, "send_task", refuse)
    with pytest.raises(QueueUnavailable):
        submit(store, owner, "sync_accounts", {})
    (job,) = store.recent_jobs(owner)
    assert job["status"] == "failed" and job["error"]["errno"] == 503
    assert "active_key" not in job  # the dedupe slot is free for the next try


def test_threads_do_not_matter_for_dedupe_of_webhook_writes(store, owner, runtime):
    """Writes are never deduplicated: two creates are two jobs (the task makes them idempotent)."""
    barrier = threading.Barrier(2)

    def make(_: int) -> str:
        barrier.wait()
        job, _ = store.create_job(owner, "webhook_create", {"webhook_url": "https://x"}, None)
        return job["_id"]

    with ThreadPoolExecutor(2) as pool:
        assert len(set(pool.map(make, range(2)))) == 2


def test_a_user_request_hurries_a_sync_that_beat_queued_for_later(worker, store, owner):
    later, created = submit(store, owner, "sync_accounts", {}, countdown=600)
    assert created and store.get_job(later["_id"])["not_before"] is not None
    now, created = submit(store, owner, "sync_accounts", {})
    assert not created and now["_id"] == later["_id"]
    assert wait_job(store, later["_id"], timeout=15)["status"] == "succeeded"


def test_a_second_message_for_a_running_job_does_not_run_it_again(store, owner):
    job, _ = store.create_job(owner, "sync_accounts", {})
    assert store.start_job(job["_id"], "message-1") is not None
    assert store.start_job(job["_id"], "message-2") is None
    assert store.start_job(job["_id"], "message-1") is None  # the same id twice, too
    # Once the job has not moved for the lease (its worker died), a message takes it back.
    store.jobs.update_one(
        {"_id": job["_id"]}, {"$set": {"updated_at": utcnow() - timedelta(seconds=91)}}
    )
    again = store.start_job(job["_id"], "message-1")
    assert again is not None and again["attempts"] == 2
