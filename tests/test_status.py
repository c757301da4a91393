"""Status per listing, and the controls: sync now (with reset), pause, resume, own intervals;
the same status and the change feed from the command line."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import requests

from api_shim.answers import PREFIX as P
from callrail_sync.cli import main
from callrail_sync.cli.ops import Context
from callrail_sync.job import JobError, JobParams, JobType, NewJob
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.snapshots import HEADS
from tasks import sync as sync_tasks
from tasks.schedule import plan_syncs
from tests.conftest import OWNER, wait_job

GONE = "ACC" + "0" * 32
"""A CallRail account id of the right shape that no key of the simulator sees."""


def call(shim_url, token, method, path, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, shim_url + path, headers=headers, timeout=30, **kw)


def listings(shim_url, token) -> dict:
    answer = call(shim_url, token, "GET", f"{P}/status")
    assert answer.status_code == 200, answer.text
    return {(e["kind"], e["account_id"]): e for e in answer.json()["data"]["listings"]}


def finish(stores, answer: requests.Response):
    assert answer.status_code == 202, answer.text
    return wait_job(stores, answer.json()["data"]["job_id"])


@pytest.fixture
def accounts(sim_data, api_key) -> list[str]:
    return sim_data.accounts_by_key[api_key]


def test_status_follows_a_listing_from_never_to_fresh_to_error_to_paused(
    shim_url, token, worker, owner, stores, accounts, submit_job
):
    assert listings(shim_url, token)[("accounts", None)]["state"] == "never"
    finish(stores, call(shim_url, token, "POST", f"{P}/sync"))
    first = accounts[0]
    done = finish(stores, call(shim_url, token, "POST", f"{P}/sync", json={"account_id": first}))
    stores.userconfig.set(owner, [first, GONE])
    entries = listings(shim_url, token)
    listed = {e for e in entries if e[0] in ("accounts", "companies")}  # streams: test_streams_*
    assert listed == {("accounts", None), *(("companies", a) for a in accounts)} | {
        ("companies", GONE)
    }
    fresh = entries[("companies", first)]
    assert fresh["state"] == "fresh" and fresh["last_error"] is None
    assert fresh["counts"]["records"] == done.result["counts"]["records"]
    assert fresh["counts"]["deleted"] == 0
    assert fresh["last_success_at"] and fresh["next_scheduled_at"] > fresh["last_success_at"]
    assert fresh["account_name"]
    # One request was charged to this CallRail account (a single page), none to the others.
    assert fresh["budget"]["hour_left"] == 999 and fresh["budget"]["day_left"] == 9999
    assert entries[("companies", accounts[1])]["budget"]["hour_left"] == 1000
    assert entries[("companies", accounts[1])]["state"] == "never"
    assert entries[("companies", accounts[1])]["next_scheduled_at"] is None  # not configured

    refused = call(shim_url, token, "POST", f"{P}/sync", json={"account_id": GONE})
    assert refused.status_code == 404  # the fresh accounts snapshot does not list it
    gone, _ = submit_job(owner, "sync_companies", callrail_account_id=GONE)  # as beat would
    assert wait_job(stores, gone.id).status.value == "failed"
    error = listings(shim_url, token)[("companies", GONE)]
    assert error["state"] == "error"
    assert error["last_error"]["class"] == "not_found" and error["last_error"]["remedy"]

    paused = {"account_id": first, "paused": True}
    assert call(shim_url, token, "PUT", f"{P}/schedule", json=paused).status_code == 200
    entry = listings(shim_url, token)[("companies", first)]
    assert entry["state"] == "paused" and entry["next_scheduled_at"] is None


def test_retrying_and_syncing_states(shim_url, token, owner, stores, accounts):
    params = JobParams(callrail_account_id=accounts[0])
    job, _ = stores.jobs.create(NewJob(owner=owner, type=JobType.SYNC_COMPANIES, params=params))
    assert listings(shim_url, token)[("companies", accounts[0])]["state"] == "syncing"
    stores.jobs.start(job.id, job.id, lease_seconds=90)
    error = JobError(errno=503, message="CallRail is down", retryable=True)
    stores.jobs.retry_later(job.id, error, utcnow() + timedelta(seconds=30))
    entry = listings(shim_url, token)[("companies", accounts[0])]
    assert entry["state"] == "retrying"
    assert entry["job"] == {"id": job.id, "status": "retrying"}
    assert entry["last_error"]["message"] == "CallRail is down"


def test_a_paused_account_is_not_synced_by_anyone(
    shim_url, token, worker, owner, stores, accounts, runtime, queue
):
    first = accounts[0]
    companies = f"{P}/companies?account_id={first}"
    finish(stores, call(shim_url, token, "GET", companies))
    body = {"account_id": first, "paused": True}
    assert call(shim_url, token, "PUT", f"{P}/schedule", json=body).json()["data"]["paused"]
    for method, path, kw in (
        ("POST", f"{P}/sync", {"json": {"account_id": first}}),
        ("GET", companies + "&refresh=true", {}),
    ):
        refused = call(shim_url, token, method, path, **kw)
        assert refused.status_code == 409
        assert refused.json()["message"].startswith("Syncing is paused for this CallRail account")
    # A stale snapshot of a paused account is served as it is, without a refresh.
    runtime.settings = runtime.settings.model_copy(update={"snapshot_max_age": 0.0})
    served = call(shim_url, token, "GET", companies)
    assert served.status_code == 200
    assert served.json()["data"]["snapshot"] == {
        **served.json()["data"]["snapshot"],
        "stale": True,
        "refresh_job_id": None,
    }
    stores.userconfig.set(owner, [first])
    queued = plan_syncs(runtime, queue)
    assert [q["kind"] for q in queued] == ["accounts"]
    body["paused"] = False
    call(shim_url, token, "PUT", f"{P}/schedule", json=body)
    assert finish(stores, call(shim_url, token, "GET", companies + "&refresh=true")).status.value


def test_beat_keeps_each_accounts_own_interval(owner, stores, runtime, queue, worker, accounts):
    first, second = accounts[:2]
    stores.userconfig.set(owner, [first, second])
    for account in (None, first, second):
        job_type = "sync_companies" if account else "sync_accounts"
        params = JobParams(callrail_account_id=account)
        job, _ = stores.jobs.create(NewJob(owner=owner, type=JobType(job_type), params=params))
        from tasks.submit import resend

        resend(stores.jobs, queue, job, job.id)
        wait_job(stores, job.id)
    # All three synced 20 minutes ago: only the account with a 10-minute interval is due.
    twenty_minutes_ago = utcnow() - timedelta(minutes=20)
    stores.db[HEADS].update_many({}, {"$set": {"synced_at": twenty_minutes_ago}})
    stores.schedules.set(owner, first, paused=False, interval_seconds=600)
    queued = plan_syncs(runtime, queue)
    assert [(q["kind"], q["callrail_account_id"]) for q in queued] == [("companies", first)]
    assert 0 <= queued[0]["countdown"] < 150  # spread over a quarter of its own interval


def test_schedule_and_sync_input_is_checked(shim_url, token, owner):
    cases = [
        ("PUT", "/schedule", {}, "account_id and paused are required."),
        (
            "PUT",
            "/schedule",
            {"account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "paused": "yes"},
            "paused must be true",
        ),
        (
            "PUT",
            "/schedule",
            {
                "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
                "paused": False,
                "interval_seconds": 5,
            },
            "interval_seconds must be a whole number from 300 to 604800.",
        ),
        ("POST", "/sync", {"kind": "calendars"}, "kind must be one of: accounts, companies,"),
        ("POST", "/sync", {"kind": 7}, "kind must be one of: accounts, companies,"),
        ("POST", "/sync", {"kind": "calls"}, "account_id is required for every kind but"),
        ("POST", "/sync", {"kind": "companies"}, "account_id is required for every kind but"),
        ("POST", "/sync", {"reset": "please"}, "reset must be true or false."),
    ]
    for method, path, body, message in cases:
        answer = call(shim_url, token, method, P + path, json=body)
        assert answer.status_code == 400, (path, body)
        assert answer.json()["message"].startswith(message), answer.json()


@pytest.mark.pages_of(25)
def test_reset_walks_from_the_first_page_even_when_pages_were_stored(
    stores, owner, runtime, sim, sim_data, api_key
):
    account = sim_data.add_account(api_key, 60)
    params = JobParams(callrail_account_id=account)
    job, _ = stores.jobs.create(NewJob(owner=owner, type=JobType.SYNC_COMPANIES, params=params))
    stores.jobs.start(job.id, job.id, lease_seconds=90)
    client = runtime.client(api_key)
    client.page_concurrency = 1
    pages = client.iter_company_pages(account)

    class Killed(BaseException):
        pass

    def two_pages():
        for n, item in enumerate(pages):
            if n == 2:
                raise Killed
            yield item

    with pytest.raises(Killed):
        sync_tasks.store_pages(stores.jobs.get(job.id), runtime, "companies", account, two_pages())
    assert stores.jobs.ask_reset(job.id).params.reset is True
    sim.reset()
    outcome = sync_tasks.sync_companies_work(stores.jobs.get(job.id), runtime, client)
    fetched = sorted(int(re.search(r"page=(\d+)", r.query)[1]) for r in sim.requests_logged())
    assert fetched == [1, 2, 3]
    assert outcome.result["counts"]["records"] == 60


def test_cli_status_and_changes(
    runtime, queue, worker, owner, stores, submit_job, accounts, capsys
):
    # OWNER differs per xdist worker: make it the demo account the default --account names.
    settings = runtime.settings.model_copy(update={"demo_account_id": OWNER})
    cli = Context(settings, given_stores=stores, given_queue=queue)
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=accounts[0])
    total = wait_job(stores, job.id).result["counts"]["records"]
    assert main(["status"], cli) == 0  # --account defaults to DEMO_ACCOUNT_ID, as token's
    out = capsys.readouterr().out
    assert main(["status", "--account", OWNER], cli) == 0
    assert capsys.readouterr().out == out
    line = next(x for x in out.splitlines() if x.startswith(f"companies of {accounts[0]}"))
    assert line.split()[3:5] == ["fresh", str(total)]
    argv = ["changes", "--account", OWNER, "--callrail-account", accounts[0], "--limit", "5"]
    assert main(argv, cli) == 0
    out = capsys.readouterr().out
    assert out.count(" added ") == 5 and "(more: run again with it)" in out
    cursor = out.strip().splitlines()[-1].split()[2]
    assert main([*argv[:-2], "--limit", "1000", "--cursor", cursor], cli) == 0
    rest = capsys.readouterr().out
    assert rest.count(" added ") == total - 5 and "(more" not in rest


def test_real_answers_of_the_new_routes_fit_the_document(
    shim_url, token, worker, owner, stores, accounts, runtime
):
    from tests.test_openapi import assert_documented

    runtime.settings = runtime.settings.model_copy(update={"allow_private_urls": True})
    spec = requests.get(f"{shim_url}/openapi.json", timeout=10).json()

    def check(method: str, path: str, **kw) -> requests.Response:
        answer = call(shim_url, token, method, P + path, **kw)
        assert_documented(spec, method, P + path.split("?")[0], answer)
        return answer

    check("GET", "/notifications")  # 404 before one is set
    check("PUT", "/notifications", json={"url": "http://127.0.0.1:9/hook"})
    check("GET", "/notifications")
    check("POST", "/notifications/rotate")
    finish(stores, check("POST", "/sync", json={"account_id": accounts[0]}))
    check("GET", f"/changes?kind=companies&account_id={accounts[0]}")
    check("GET", "/changes?kind=companies")  # 400
    check("GET", "/status")
    check("PUT", "/schedule", json={"account_id": accounts[0], "paused": True})
    check("POST", "/sync", json={"account_id": accounts[0]})  # 409
    check("GET", "/notifications/deliveries")
    check("DELETE", "/notifications")


def test_a_sync_queued_before_the_pause_ends_saying_so(owner, stores, queue, worker, accounts):
    from tasks.submit import resend

    params = JobParams(callrail_account_id=accounts[0])
    job, _ = stores.jobs.create(NewJob(owner=owner, type=JobType.SYNC_COMPANIES, params=params))
    stores.schedules.set(owner, accounts[0], paused=True, interval_seconds=None)
    resend(stores.jobs, queue, job, job.id)
    done = wait_job(stores, job.id)
    assert done.status.value == "failed" and done.error.errno == 409
    assert done.error.message.startswith("Syncing is paused") and done.error.remedy
    assert stores.snapshots.current(owner, "companies", accounts[0]) is None


def test_an_accounts_own_longer_interval_keeps_its_snapshot_fresh(
    shim_url, token, worker, owner, stores, accounts, runtime
):
    companies = f"{P}/companies?account_id={accounts[0]}"
    finish(stores, call(shim_url, token, "GET", companies))
    runtime.settings = runtime.settings.model_copy(update={"snapshot_max_age": 0.0})
    body = {"account_id": accounts[0], "paused": False, "interval_seconds": 86400}
    call(shim_url, token, "PUT", f"{P}/schedule", json=body)
    served = call(shim_url, token, "GET", companies).json()["data"]["snapshot"]
    assert served["stale"] is False and served["refresh_job_id"] is None
    assert listings(shim_url, token)[("companies", accounts[0])]["state"] == "fresh"
    body["interval_seconds"] = None  # back to the default: stale at once, and refreshed
    call(shim_url, token, "PUT", f"{P}/schedule", json=body)
    served = call(shim_url, token, "GET", companies).json()["data"]["snapshot"]
    assert served["stale"] is True and served["refresh_job_id"]
