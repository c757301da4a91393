"""Operations: beat planning, the sweeper, graceful stop, CLI, logs and metrics."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from celery import signals

from api_shim.auth import issue_token
from callrail_sync.cli import main
from callrail_sync.cli.ops import Context
from callrail_sync.cli.processes import wait_until
from callrail_sync.job import JobParams, JobType, NewJob
from callrail_sync.logs import setup_logging
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.snapshots import PageQuery
from tasks.names import TaskName
from tasks.schedule import give_up, plan_syncs, sweep_stale_jobs

from .conftest import OTHER_OWNER, OWNER, TEST_SECRET, run_worker, wait_job


@pytest.fixture
def cli(runtime, queue):
    """The command line, handed this test's stores and queue."""
    ctx = Context(runtime.settings, given_stores=runtime.stores, given_queue=queue)
    return lambda argv: main(argv, ctx)


# --- beat -------------------------------------------------------------------------


def test_beat_plans_every_configured_account_and_skips_fresh_ones(
    worker, stores, queue, owner, sim_data, api_key, runtime
):
    runtime.settings.sync_interval = 4.0  # syncs spread over a 1-second window
    accounts = sim_data.accounts_by_key[api_key]
    stores.userconfig.set(OWNER, accounts)
    stores.userconfig.set(OTHER_OWNER, ["ACCnokey"])  # no key: never planned
    planned = plan_syncs(runtime, queue)
    kinds = sorted((p["kind"], p["callrail_account_id"] or "") for p in planned)
    assert kinds == sorted([("accounts", "")] + [("companies", a) for a in accounts])
    assert all(0 <= p["countdown"] < 1.0 for p in planned)
    assert all(p["owner"] == OWNER for p in planned)
    for p in planned:
        assert wait_job(stores, p["job_id"]).status == "succeeded"
    # Everything is fresh now: nothing to plan.
    assert plan_syncs(runtime, queue) == []


def test_beat_shares_the_dedupe_of_manual_jobs(stores, queue, owner, submit_job, runtime):
    stores.userconfig.set(OWNER, [])
    manual, _ = submit_job(OWNER, "sync_accounts")
    assert plan_syncs(runtime, queue) == []  # the manual job is already active for it
    assert stores.jobs.get(manual.id).status == "queued"


def test_the_beat_task_runs_through_the_worker(
    worker, worker_app, stores, owner, sim_data, api_key, runtime
):
    runtime.settings.sync_interval = 0.4
    stores.userconfig.set(OWNER, sim_data.accounts_by_key[api_key][:1])
    result = worker_app.send_task(TaskName.PLAN).get(timeout=20)
    assert len(result["queued"]) == 2
    for planned in result["queued"]:
        assert wait_job(stores, planned["job_id"]).status == "succeeded"


# --- sweeper and graceful stop -----------------------------------------------------------------


def age(stores, job_id: str, seconds: float) -> None:
    """The job last moved, and its process last beat, `seconds` ago."""
    then = utcnow() - timedelta(seconds=seconds)
    stores.db["callrail_jobs"].update_one(
        {"_id": job_id}, {"$set": {"updated_at": then, "alive_at": then}}
    )


def new_job(stores, job_type=JobType.SYNC_ACCOUNTS, params=JobParams(), **kw):
    return stores.jobs.create(NewJob(owner=OWNER, type=job_type, params=params, **kw))[0]


def test_a_job_whose_worker_vanished_is_requeued_and_completes(
    worker, stores, queue, owner, runtime
):
    job = new_job(stores, dedupe_key="x")
    stores.jobs.start(job.id, "a-message-whose-worker-died", lease_seconds=90)
    age(stores, job.id, 3600)
    swept = sweep_stale_jobs(runtime, queue)
    assert swept == [{"job_id": job.id, "action": "requeued", "was": "running"}]
    done = wait_job(stores, job.id)
    assert done.status == "succeeded" and done.sweeps == 1


def test_a_lost_message_is_sent_again(worker, stores, queue, owner, runtime):
    job = new_job(stores)  # queued, but never sent
    age(stores, job.id, 3600)
    assert sweep_stale_jobs(runtime, queue)[0]["was"] == "queued"
    assert wait_job(stores, job.id).status == "succeeded"


def test_a_job_that_keeps_losing_its_worker_fails_clearly(stores, queue, owner, runtime):
    job = new_job(stores, dedupe_key=f"{OWNER}:accounts")
    for n in range(runtime.settings.max_attempts):
        stores.jobs.start(job.id, f"message-{n}", lease_seconds=90)
        stores.db["callrail_jobs"].update_one({"_id": job.id}, {"$set": {"status": "queued"}})
    stores.jobs.start(job.id, "last", lease_seconds=90)
    age(stores, job.id, 3600)
    assert sweep_stale_jobs(runtime, queue) == [{"job_id": job.id, "action": "failed"}]
    failed = stores.jobs.get(job.id)
    assert failed.status == "failed" and "stopped" in failed.error.message
    assert stores.jobs.active(f"{OWNER}:accounts") is None


def test_giving_up_on_a_lost_attempt_leaves_a_job_claimed_again_alone(stores, owner, runtime):
    """The reviver saw a job's last attempt lost and gives up on it; meanwhile another message
    claimed the job (and began its snapshot). Giving up fails only the attempt it saw: the
    job stays the new attempt's, running, its snapshot whole."""
    job = new_job(stores, JobType.SYNC_COMPANIES, JobParams(callrail_account_id="ACC1"))
    assert stores.jobs.start(job.id, "lost", lease_seconds=90) is not None
    seen = stores.jobs.get(job.id)
    assert stores.jobs.start(job.id, "again", lease_seconds=0) is not None
    stores.snapshots.begin(job.id, OWNER, "companies", "ACC1")
    records = [{"id": f"COM{n}", "name": f"Company {n}"} for n in range(3)]
    stores.snapshots.write_records("companies", job.id, OWNER, records)
    assert give_up(runtime, seen, None) is None
    now = stores.jobs.get(job.id)
    assert now.status == "running" and now.error is None and now.claimed_by.startswith("again:")
    assert stores.snapshots.count("companies", job.id, PageQuery()) == 3


def test_fresh_and_waiting_jobs_are_left_alone(stores, queue, owner, runtime):
    running = new_job(stores)
    stores.jobs.start(running.id, "m", lease_seconds=90)
    later = new_job(
        stores,
        JobType.SYNC_COMPANIES,
        JobParams(callrail_account_id="A"),
        not_before=utcnow() + timedelta(hours=1),
    )
    age(stores, later.id, 3600)
    assert sweep_stale_jobs(runtime, queue) == []


@pytest.mark.pages_of(25)
def test_a_stopping_worker_hands_the_sync_back_and_the_next_one_finishes_it(
    worker_app, runtime, stores, owner, submit_job, sim, sim_data, api_key
):
    """The same handler SIGTERM triggers in a real worker (Celery's warm shutdown sends
    worker_shutting_down), run here in-process."""
    account = sim_data.add_account(api_key, 200)
    runtime.settings.page_concurrency = 1
    sim.set_knobs(latency=0.1)
    with run_worker(worker_app, concurrency=2) as first:
        job, _ = submit_job(OWNER, "sync_companies", callrail_account_id=account)
        while len(stores.jobs.get(job.id).progress.pages_done) < 2:
            time.sleep(0.02)
        signals.worker_shutting_down.send(
            sender=first.hostname, sig="SIGTERM", how="Warm", exitcode=0
        )
        # Leaving the block is the warm shutdown that follows: stop consuming; the task ends
        # after the page in flight (the test worker does not wait for it, so we do).
    assert wait_until(lambda: stores.jobs.get(job.id).status != "running", timeout=10)
    handed_back = stores.jobs.get(job.id)
    assert handed_back.status == "queued" and handed_back.attempts == 0
    stored = len(handed_back.progress.pages_done)
    assert 2 <= stored < 8  # stopped after the page in flight, not at the end
    sim.set_knobs(latency=0.0)
    with run_worker(worker_app, concurrency=2):
        done = wait_job(stores, job.id)
    assert done.status == "succeeded" and done.progress.records == 200
    fetched = [
        int(r.query.split("page=")[1].split("&")[0])
        for r in sim.requests_logged()
        if r.status == 200
    ]
    assert sorted(fetched) == list(range(1, 9))  # no page fetched twice


# --- CLI -------------------------------------------------------------------------


@pytest.mark.pages_of(25)
def test_cli_sync_shows_progress_until_the_job_ends(cli, worker, owner, sim_data, api_key, capsys):
    account = sim_data.add_account(api_key, 60)
    assert cli(["sync", "--account", OWNER, "--callrail-account", account]) == 0
    out = capsys.readouterr().out
    assert "(sync_companies)" in out
    assert "pages 3/3  records 60  succeeded" in out
    assert out.strip().endswith("succeeded: 60 records in 3 pages")


def test_cli_sync_reports_a_failure(cli, worker, owner, capsys):
    assert cli(["sync", "--account", OWNER, "--callrail-account", "ACCmissing"]) == 1
    assert "failed (404): Not found in CallRail" in capsys.readouterr().out


def test_cli_jobs_lists_recent_jobs(cli, worker, stores, owner, submit_job, capsys):
    job, _ = submit_job(OWNER, "sync_accounts")
    wait_job(stores, job.id)
    assert cli(["jobs", "--account", OWNER]) == 0
    out = capsys.readouterr().out
    assert job.id in out and "succeeded" in out and "1/1" in out


def test_cli_keys_set_and_remove_never_print_the_key(cli, stores, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("sk_secret_value_123\n"))
    assert cli(["keys", "set", "--account", OTHER_OWNER]) == 0
    out = capsys.readouterr().out
    assert "sk_secret_value_123" not in out and "fingerprint" in out
    assert stores.keys.usable_key(OTHER_OWNER) == "sk_secret_value_123"
    assert cli(["keys", "remove", "--account", OTHER_OWNER]) == 0
    assert stores.keys.usable_key(OTHER_OWNER) is None
    with pytest.raises(SystemExit):
        cli(["keys", "set", "--account", "not-an-object-id"])


# --- logs -------------------------------------------------------------------------


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    setup_logging("DEBUG")
    root = logging.getLogger()
    handler = next(h for h in root.handlers if getattr(h, "_callrail_sync", False))
    handler.setStream(stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def test_log_lines_of_every_kind_are_json_and_free_of_secrets(
    worker, stores, owner, submit_job, sim, api_key, token, shim_url, log_lines
):
    sim.set_knobs(fail_next=["500"])
    job, _ = submit_job(OWNER, "sync_accounts")
    wait_job(stores, job.id)  # started, page stored, will retry, started, page stored, succeeded
    stores.keys.set(OTHER_OWNER, "revoked-key-abcdef")
    failed, _ = submit_job(OTHER_OWNER, "sync_accounts")
    wait_job(stores, failed.id)  # job failed (401)
    log = logging.getLogger("callrail_sync.test")
    log.warning(f'an upstream said: Authorization: Token token="{api_key}" was refused')
    log.warning("header was Bearer %s", token)
    try:
        raise RuntimeError(f"crash while using {api_key}")
    except RuntimeError:
        log.exception("a crash with a key in it")
    requests.get(
        f"{shim_url}/v1/e/callrail/accounts",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    # A job's final status is stored before its last line is logged: wait for that line.
    assert wait_until(lambda: '"job failed"' in log_lines.getvalue(), timeout=5)
    text = log_lines.getvalue()
    assert api_key not in text and "revoked-key-abcdef" not in text and token not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    messages = {line["message"] for line in lines}
    for kind in (
        "job started",
        "page stored",
        "job will retry",
        "job succeeded",
        "job failed",
        "a crash with a key in it",
    ):
        assert kind in messages, kind
    page = next(line for line in lines if line["message"] == "page stored")
    assert page["job_id"] == job.id and page["page"] == 1 and page["owner"] == OWNER
    assert "[REDACTED]" in text and "[key " in text


def test_no_key_or_token_in_any_line_even_the_database_drivers_debug_log(
    cli, shim_url, stores, log_lines, monkeypatch
):
    """The driver logs whole commands and replies (documents included) at DEBUG: a key stored
    by the CLI and read by the shim must not show, though no job ever registered it."""
    logging.getLogger("pymongo").setLevel(logging.DEBUG)  # as an operator debugging the driver
    key = "sk_live_" + "7f3a9c" * 5
    monkeypatch.setattr("sys.stdin", io.StringIO(key + "\n"))
    assert cli(["keys", "set", "--account", OTHER_OWNER]) == 0
    token = issue_token(OTHER_OWNER, TEST_SECRET)
    answer = requests.get(
        f"{shim_url}/v1/e/callrail/accounts",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 202  # the shim read the key (a find whose reply holds it)
    text = log_lines.getvalue()
    assert '"logger": "pymongo.command"' in text and "api_key" in text
    assert key not in text and token not in text


# --- metrics -------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from the Prometheus text format (labels in any order); 0 if absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, value = line.rsplit(" ", 1)
        found_name, _, label_text = series.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if found_name == name and found == labels:
            return float(value)
    return 0.0


def test_metrics_are_served_on_a_port_of_their_own_never_on_the_public_one(shim_url, metrics_url):
    assert requests.get(f"{shim_url}/metrics", timeout=10).status_code == 404
    port = int(metrics_url.rsplit(":", 1)[1].split("/")[0])
    assert port != int(shim_url.rsplit(":", 1)[1])
    answer = requests.get(metrics_url, timeout=10)
    assert answer.status_code == 200 and "callrail_queue_messages" in answer.text
    assert requests.get(metrics_url.replace("/metrics", "/healthz"), timeout=10).status_code == 404


def test_metrics_move_when_jobs_run(worker, stores, owner, submit_job, sim, metrics_url):
    before = requests.get(metrics_url, timeout=10).text
    sim.set_knobs(fail_next=["429"], send_retry_after=True, scripted_retry_after=1)
    job, _ = submit_job(OWNER, "sync_accounts")
    assert wait_job(stores, job.id).status == "succeeded"

    def jobs_counted(text: str) -> float:
        return metric(text, "callrail_jobs_total", type="sync_accounts", status="succeeded")

    # The jobs counter moves just after the job's final status is written (wait_job sees that
    # first): wait for it, or a loaded machine reads the metrics in between (it did).
    scrape = lambda: requests.get(metrics_url, timeout=10).text  # noqa: E731
    assert wait_until(lambda: jobs_counted(scrape()) > jobs_counted(before), 10)
    after = requests.get(metrics_url, timeout=10).text
    moved = {
        "jobs": (
            metric(after, "callrail_jobs_total", type="sync_accounts", status="succeeded")
            - metric(before, "callrail_jobs_total", type="sync_accounts", status="succeeded")
        ),
        "ok": (
            metric(after, "callrail_requests_total", method="GET", status="200")
            - metric(before, "callrail_requests_total", method="GET", status="200")
        ),
        "429": metric(after, "callrail_rate_limited_total")
        - metric(before, "callrail_rate_limited_total"),
        "pages": (
            metric(after, "callrail_pages_total", kind="accounts")
            - metric(before, "callrail_pages_total", kind="accounts")
        ),
        "syncs": (
            metric(after, "callrail_sync_duration_seconds_count", kind="accounts")
            - metric(before, "callrail_sync_duration_seconds_count", kind="accounts")
        ),
    }
    assert moved == {"jobs": 1, "ok": 1, "429": 1, "pages": 1, "syncs": 1}


# --- Flower -----------------------------------------------------------------------------


@pytest.mark.slow  # a real process of the service
def test_flower_runs_behind_basic_auth(redis_url, tmp_path):
    """The documented command: Flower on our app, refusing anyone without the credentials,
    which it reads from the environment: they never show in `ps`."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "REDIS_URL": redis_url, "FLOWER_BASIC_AUTH": "ops:s3cret-pass"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            "--persistent=False",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                anonymous = requests.get(f"{base}/api/workers", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert anonymous.status_code == 401
        assert requests.get(f"{base}/", timeout=5).status_code == 401
        authed = requests.get(f"{base}/", auth=("ops", "s3cret-pass"), timeout=10)
        assert authed.status_code == 200 and "Flower" in authed.text
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"flower" in cmdline and b"s3cret-pass" not in cmdline
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_final_log_line_is_scrubbed_whatever_produced_it(log_lines):
    """A dict in `extra` (printed whole by the formatter, past any field-by-field filter), a
    notification secret and a stream ticket anywhere in a line: none reaches the output."""
    log = logging.getLogger("callrail_sync.test")
    secret, ticket = "whsec_" + "s3cr3tvalue" * 3, "tkt_" + "t1ck3tvalue" * 3
    log.warning(
        "configured",
        extra={"config": {"api_key": "plainkey123456", "secret": secret, "n": 1}},
    )
    log.warning("opened /v1/e/callrail/events?ticket=%s for a browser", ticket)
    log.warning("a list %s", [{"signing_key": "abcdef0123456789"}])
    text = log_lines.getvalue()
    for leaked in ("plainkey123456", secret, "s3cr3tvalue", ticket, "t1ck3tvalue", "abcdef01234"):
        assert leaked not in text, leaked
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {"configured", "a list [{'signing_key': '[REDACTED]'}]"} <= {
        line["message"] for line in lines
    }
