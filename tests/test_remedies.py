"""Every failure a job can end with carries a remedy the frontend shows as it is: what to do,
and, where the cause is CallRail's or ours, when to try again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

import tasks.table  # noqa: F401  (every module that may define an error type is imported)
from callrail_sync import errors
from callrail_sync.job import JobError

from .conftest import wait_job
from .test_jobs import first_company, run


def every_error_type() -> list[type[errors.CallRailSyncError]]:
    found, todo = [], [errors.CallRailSyncError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


AT = datetime(2026, 12, 6, 15, 58, 30, tzinfo=UTC)
MADE = {  # the types whose constructor takes more than a message
    errors.ApiKeyNotFound: lambda c: c(),
    errors.ApiKeyRejected: lambda c: c(AT - timedelta(hours=1)),
    errors.SyncPaused: lambda c: c(),
    errors.JobTimedOut: lambda c: c(),
    errors.WorkerLost: lambda c: c(),
    errors.Crashed: lambda c: c(),
    errors.RateLimitExhausted: lambda c: c(),
    errors.WebhookNotFound: lambda c: c(),
    errors.TooManyRequests: lambda c: c("slow down", retry_after=3),
    errors.SnapshotIncomplete: lambda c: c(995, 1_000),
}


def made(cls: type[errors.CallRailSyncError]) -> errors.CallRailSyncError:
    return MADE.get(cls, lambda c: c("something failed"))(cls)


@pytest.mark.parametrize("cls", every_error_type(), ids=lambda c: c.__name__)
def test_every_error_type_has_a_remedy_to_show_as_it_is(cls):
    remedy = JobError.of(made(cls), now=AT).remedy
    assert remedy and remedy.strip() == remedy
    assert remedy[0].isupper() and remedy.endswith("."), remedy
    assert "{" not in remedy.replace('{"paused"', ""), remedy  # every time filled in
    assert "None" not in remedy


@pytest.mark.parametrize(
    "cls", [errors.CallRailError, errors.ServerError, errors.TransportError, errors.Crashed]
)
def test_a_failure_on_callrails_side_or_ours_says_when_to_try_again(cls):
    remedy = JobError.of(made(cls), now=AT).remedy
    assert "Try again in a few minutes, after 16:03 UTC." in remedy


def test_the_remedies_of_the_user_facing_classes_say_what_to_do():
    def remedy(exc: errors.CallRailSyncError) -> str:
        return JobError.of(exc, now=AT).remedy or ""

    assert "list the company's webhooks again" in remedy(errors.WebhookNotFound()).lower()
    assert "callrail was failing at 15:58 utc" in remedy(errors.ServerError("HTTP 500")).lower()
    assert "callrail could not be reached" in remedy(errors.TransportError("timed out")).lower()
    assert "enter a valid callrail api key" in remedy(errors.Unauthorized("no")).lower()
    assert "integration admin" in remedy(errors.IntegrationForbidden("no")).lower()


def test_a_job_that_will_try_again_says_nothing_is_to_be_done_until_when():
    retry_at = AT + timedelta(seconds=42)
    error = JobError.of(errors.ServerError("HTTP 503"), retry_at=retry_at, now=AT)
    assert error.remedy == "Nothing to do yet: the job tries again by itself at 15:59:12 UTC."


# --- the two the issue named, end to end ---------------------------------------------------


def test_a_webhook_not_found_tells_to_list_the_webhooks_again(
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
    assert (done.error.message, done.error.error_class) == ("Webhook not found.", "not_found")
    assert done.error.remedy.startswith("List the company's webhooks again")


def test_callrail_failing_until_the_job_gives_up_says_so_and_when_to_try_again(
    worker, stores, owner, submit_job, sim
):
    sim.set_knobs(fail_next=["500"] * 10)
    job, _ = submit_job(owner, "sync_accounts")
    done = wait_job(stores, job.id)
    assert done.status == "failed" and done.attempts == 3
    assert done.error.message.startswith("CallRail error: HTTP 500")
    assert done.error.error_class == "upstream"
    ended = done.finished_at.astimezone(UTC)
    # The failure's own minute (or the next one, if it ended just as a minute turned).
    when = {f"{ended - timedelta(seconds=s):%H:%M}" for s in (0, 2)}
    later = {f"{ended + timedelta(minutes=5) - timedelta(seconds=s):%H:%M}" for s in (0, 2)}
    remedy = done.error.remedy
    assert remedy.startswith("CallRail was failing at ")
    assert any(f"failing at {w} UTC" in remedy for w in when), remedy
    assert any(f"Try again in a few minutes, after {t} UTC." in remedy for t in later), remedy


def test_a_retrying_job_shows_when_it_tries_again(worker, stores, owner, submit_job, runtime, sim):
    runtime.settings.backoff_base = 2.0  # long enough to observe
    runtime.settings.backoff_cap = 2.0
    sim.set_knobs(fail_next=["500"])
    job, _ = submit_job(owner, "sync_accounts")
    deadline = time.monotonic() + 10
    seen = None
    while seen is None and time.monotonic() < deadline:
        current = stores.jobs.get(job.id)
        seen = current if current.status == "retrying" else None
        time.sleep(0.02)
    assert seen is not None and seen.next_retry_at is not None
    at = seen.next_retry_at.astimezone(UTC)
    assert (
        seen.error.remedy
        == f"Nothing to do yet: the job tries again by itself at {at:%H:%M:%S} UTC."
    )
    assert wait_job(stores, job.id).status == "succeeded"
