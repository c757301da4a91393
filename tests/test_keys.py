"""A key CallRail rejected: said as such (and when), never "not found", and no job is started
that could only fail on it, until a new key is stored (by us or written by the dashboard)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import requests

from api_shim.auth import issue_token
from callrail_sync.cli import main
from callrail_sync.cli.ops import Context
from callrail_sync.errors import API_KEY_NOT_FOUND
from callrail_sync.stores.keys import COLLECTION

from .conftest import OTHER_OWNER, OWNER, TEST_SECRET, wait_job

P = "/v1/e/callrail"
REJECTED = "CallRail rejected this account's API key on "


def headers(owner: str = OWNER) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(owner, TEST_SECRET)}"}


def rejected_by_callrail(stores, submit_job, owner: str) -> datetime:
    """Store a key CallRail does not know and let a job meet CallRail's 401."""
    stores.keys.set(owner, "revoked-key")
    job, _ = submit_job(owner, "sync_accounts")
    done = wait_job(stores, job.id)
    assert done.status == "failed" and done.error.errno == 401, done.error
    rejected_at = stores.keys.record(owner).rejected_at
    assert rejected_at is not None
    return rejected_at


def eventually(check, timeout: float = 10.0) -> None:
    """`check()` holds before the deadline (the shim remembers a key's state for 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_shim_says_the_key_was_rejected_and_when_and_starts_no_job(
    worker, stores, submit_job, sim, shim_url
):
    rejected_at = rejected_by_callrail(stores, submit_job, OWNER)
    jobs_before = len(stores.jobs.recent(OWNER, limit=100))
    sim.reset()
    account = "ACC" + "0" * 32
    asks = [
        ("GET", f"{P}/accounts", None),
        ("GET", f"{P}/accounts?refresh=true", None),
        ("GET", f"{P}/companies?account_id={account}", None),
        ("GET", f"{P}/companies/webhook?account_id={account}&company_id=COM1", None),
        ("POST", f"{P}/companies/webhook", {"account_id": account, "company_id": "COM1"}),
        ("POST", f"{P}/sync", {}),
    ]
    when = f"{rejected_at.astimezone(UTC):%Y-%m-%d at %H:%M} UTC"
    for method, path, body in asks:
        answer = requests.request(method, shim_url + path, json=body, headers=headers(), timeout=10)
        assert answer.status_code == 400, (path, answer.text)
        message = answer.json()["message"]
        assert message == f"{REJECTED}{when}. Please enter a new CallRail API key.", path
        assert message != API_KEY_NOT_FOUND
    assert len(stores.jobs.recent(OWNER, limit=100)) == jobs_before  # no job started
    assert sim.stats()["requests"] == 0  # and nothing spent at CallRail
    # An account with no key at all still hears the spec's message.
    none = requests.get(shim_url + f"{P}/accounts", headers=headers(OTHER_OWNER), timeout=10)
    assert (none.status_code, none.json()["message"]) == (400, API_KEY_NOT_FOUND)


def test_a_job_that_meets_a_rejected_key_fails_saying_so_without_a_request(
    worker, stores, submit_job, sim
):
    """A job queued before the rejection (or by beat, or the CLI) does not call CallRail."""
    rejected_at = rejected_by_callrail(stores, submit_job, OWNER)
    sim.reset()
    job, _ = submit_job(OWNER, "sync_accounts")
    done = wait_job(stores, job.id)
    assert done.status == "failed" and done.attempts == 1
    error = done.error
    assert (error.errno, error.error_class) == (400, "auth") and not error.retryable
    assert error.message.startswith(REJECTED + f"{rejected_at.astimezone(UTC):%Y-%m-%d}")
    assert "Enter a new CallRail API key" in error.remedy
    assert sim.stats()["requests"] == 0


def test_the_cli_starts_no_sync_on_a_rejected_or_missing_key(
    stores, submit_job, worker, runtime, queue, capsys
):
    rejected_by_callrail(stores, submit_job, OWNER)
    before = len(stores.jobs.recent(limit=100))
    ctx = Context(runtime.settings, given_stores=stores, given_queue=queue)
    capsys.readouterr()
    assert main(["sync", "--account", OWNER], ctx) == 1
    assert capsys.readouterr().out.startswith(REJECTED)
    assert main(["sync", "--account", OTHER_OWNER], ctx) == 1
    assert capsys.readouterr().out.strip() == API_KEY_NOT_FOUND
    assert len(stores.jobs.recent(limit=100)) == before


def test_a_new_key_clears_the_rejection_however_the_dashboard_writes_it(
    worker, stores, submit_job, api_key, shim_url
):
    def serves_again() -> None:
        answer = requests.get(shim_url + f"{P}/accounts", headers=headers(), timeout=10)
        assert answer.status_code in (200, 202), answer.text

    # Written over the rejected key, in the same document.
    rejected_by_callrail(stores, submit_job, OWNER)
    collection = stores.db[COLLECTION]
    record = stores.keys.record(OWNER)
    collection.update_one({"_id": record.record_id}, {"$set": {"api_key": api_key}})
    assert stores.keys.record(OWNER).rejected_at is None
    assert stores.keys.usable_key(OWNER) == api_key
    eventually(serves_again)
    job, _ = submit_job(OWNER, "sync_accounts")
    assert wait_job(stores, job.id).status == "succeeded"

    # A new document beside the rejected one (as our own `keys set` writes it).
    rejected_by_callrail(stores, submit_job, OWNER)
    stores.keys.set(OWNER, api_key)
    eventually(serves_again)


def test_a_rejection_is_not_recorded_over_a_key_written_meanwhile(stores, api_key):
    """The 401 was for the key the job read; if the document holds a new key by the time the
    rejection is written, the new key stays usable."""
    stores.keys.set(OWNER, "revoked-key")
    read_by_the_job = stores.keys.record(OWNER)
    stores.keys.set(OWNER, api_key)
    stores.keys.mark_invalid(read_by_the_job)
    assert stores.keys.usable_key(OWNER) == api_key
