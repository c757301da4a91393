"""Operations: beat planning, the sweeper, graceful stop, CLI, logs and metrics."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from datetime import timedelta

import pytest
import requests
from celery import signals

from callrail_sync.cli import main as cli
from tasks.schedule import plan_syncs, sweep_stale_jobs
from tasks.submit import submit
from worker.logs import setup_logging
from worker.store import utcnow

from .conftest import OTHER_OWNER, OWNER, wait_job

# --- beat -------------------------------------------------------------------------


def test_beat_plans_every_configured_account_and_skips_fresh_ones(
    worker, store, owner, sim_data, api_key, runtime
):
    runtime.settings.sync_interval = 4.0  # syncs spread over a 1-second window
    accounts = sim_data.accounts_by_key[api_key]
    store.set_userconfig(OWNER, accounts)
    store.set_userconfig(OTHER_OWNER, ["ACCnokey"])  # no key: never planned
    planned = plan_syncs()
    kinds = sorted((p["kind"], p["callrail_account_id"] or "") for p in planned)
    assert kinds == sorted([("accounts", "")] + [("companies", a) for a in accounts])
    assert all(0 <= p["countdown"] < 1.0 for p in planned)
    assert all(p["owner"] == OWNER for p in planned)
    for p in planned:
        assert wait_job(store, p["job_id"])["status"] == "succeeded"
    # Everything is fresh now: nothing to plan.
    assert plan_syncs() == []


def test_beat_shares_the_dedupe_of_manual_jobs(store, owner, sim_data, api_key, runtime):
    store.set_userconfig(OWNER, [])
    manual, _ = submit(store, OWNER, "sync_accounts", {})
    assert plan_syncs() == []  # the manual job is already active for the same resource
    assert store.get_job(manual["_id"])["status"] == "queued"


def test_the_beat_task_runs_through_the_worker(worker, store, owner, sim_data, api_key, runtime):
    from tasks.schedule import configured_accounts

    runtime.settings.sync_interval = 0.4
    store.set_userconfig(OWNER, sim_data.accounts_by_key[api_key][:1])
    result = configured_accounts.delay().get(timeout=20)
    assert len(result["queued"]) == 2
    for planned in result["queued"]:
        assert wait_job(store, planned["job_id"])["status"] == "succeeded"


# --- sweeper and graceful stop -----------------------------------------------------------------


def age(store, job_id: str, seconds: float) -> None:
    store.jobs.update_one(
        {"_id": job_id}, {"$set": {"updated_at": utcnow() - timedelta(seconds=seconds)}}
    )


def test_a_job_whose_worker_vanished_is_requeued_and_completes(worker, store, owner, runtime):
    job, _ = store.create_job(OWNER, "sync_accounts", {}, "x")
    store.start_job(job["_id"], "a-message-whose-worker-died")
    age(store, job["_id"], 3600)
    swept = sweep_stale_jobs()
    assert swept == [{"job_id": job["_id"], "action": "requeued", "was": "running"}]
    done = wait_job(store, job["_id"])
    assert done["status"] == "succeeded" and done["sweeps"] == 1


def test_a_lost_message_is_sent_again(worker, store, owner, runtime):
    job, _ = store.create_job(OWNER, "sync_accounts", {})  # queued, but never sent
    age(store, job["_id"], 3600)
    assert sweep_stale_jobs()[0]["was"] == "queued"
    assert wait_job(store, job["_id"])["status"] == "succeeded"


def test_a_job_that_keeps_losing_its_worker_fails_clearly(store, owner, runtime):
    job, _ = store.create_job(OWNER, "sync_accounts", {})
    for n in range(runtime.settings.max_attempts):
        store.start_job(job["_id"], f"message-{n}")
        store.jobs.update_one({"_id": job["_id"]}, {"$set": {"status": "queued"}})
    store.start_job(job["_id"], "last")
    age(store, job["_id"], 3600)
    assert sweep_stale_jobs() == [{"job_id": job["_id"], "action": "failed"}]
    failed = store.get_job(job["_id"])
    assert failed["status"] == "failed" and "stopped" in failed["error"]["message"]
    assert "active_key" not in failed


def test_fresh_and_waiting_jobs_are_left_alone(store, owner, runtime):
    running, _ = store.create_job(OWNER, "sync_accounts", {})
    store.start_job(running["_id"], "m")
    later, _ = store.create_job(
        OWNER,
        "sync_companies",
        {"callrail_account_id": "A"},
        not_before=utcnow() + timedelta(hours=1),
    )
    age(store, later["_id"], 3600)
    assert sweep_stale_jobs() == []


def test_a_stopping_worker_hands_the_sync_back_and_the_next_one_finishes_it(
    redis_url, runtime, store, owner, sim, sim_data, api_key
):
    """The same handler SIGTERM triggers in a real worker (Celery's warm shutdown sends
    worker_shutting_down), run here in-process: a worker in another process would need a Mongo
    shared between processes, and none can run on this machine."""
    from celery.contrib.testing.worker import start_worker

    from worker.celery_app import app

    account = sim_data.add_account(api_key, 2_000)
    runtime.settings.page_concurrency = 1
    sim.set_knobs(latency=0.1)
    queues = ["callrail.listings", "callrail.webhooks"]
    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=queues,
        loglevel="WARNING",
        shutdown_timeout=10,
    ) as first:
        job, _ = submit(store, OWNER, "sync_companies", {"callrail_account_id": account})
        while len((store.get_job(job["_id"]) or {}).get("progress", {}).get("pages_done", [])) < 2:
            time.sleep(0.02)
        signals.worker_shutting_down.send(
            sender=first.hostname, sig="SIGTERM", how="Warm", exitcode=0
        )
        # Leaving the block is the warm shutdown that follows: stop consuming, let the task end.
    handed_back = store.get_job(job["_id"])
    assert handed_back["status"] == "queued" and handed_back["attempts"] == 0
    stored = len(handed_back["progress"]["pages_done"])
    assert 2 <= stored < 8  # stopped after the page in flight, not at the end
    sim.set_knobs(latency=0.0)
    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=queues,
        loglevel="WARNING",
        shutdown_timeout=10,
    ):
        done = wait_job(store, job["_id"])
    assert done["status"] == "succeeded" and done["progress"]["records"] == 2_000
    fetched = [
        int(r.query.split("page=")[1].split("&")[0])
        for r in sim.requests_logged()
        if r.status == 200
    ]
    assert sorted(fetched) == list(range(1, 9))  # no page fetched twice


# --- CLI -------------------------------------------------------------------------


def test_cli_sync_shows_progress_until_the_job_ends(
    worker, store, owner, sim_data, api_key, capsys
):
    account = sim_data.add_account(api_key, 600)
    assert cli(["sync", "--account", OWNER, "--callrail-account", account]) == 0
    out = capsys.readouterr().out
    assert "(sync_companies)" in out
    assert "pages 3/3  records 600  succeeded" in out
    assert out.strip().endswith("succeeded: 600 records in 3 pages")


def test_cli_sync_reports_a_failure(worker, store, owner, capsys):
    assert cli(["sync", "--account", OWNER, "--callrail-account", "ACCmissing"]) == 1
    assert "failed (404): Not found in CallRail" in capsys.readouterr().out


def test_cli_jobs_lists_recent_jobs(worker, store, owner, capsys):
    job, _ = submit(store, OWNER, "sync_accounts", {})
    wait_job(store, job["_id"])
    assert cli(["jobs", "--account", OWNER]) == 0
    out = capsys.readouterr().out
    assert job["_id"] in out and "succeeded" in out and "1/1" in out


def test_cli_keys_set_and_remove_never_print_the_key(store, runtime, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("sk_secret_value_123\n"))
    assert cli(["keys", "set", "--account", OTHER_OWNER]) == 0
    out = capsys.readouterr().out
    assert "sk_secret_value_123" not in out and "fingerprint" in out
    assert store.usable_api_key(OTHER_OWNER) == "sk_secret_value_123"
    assert cli(["keys", "remove", "--account", OTHER_OWNER]) == 0
    assert store.usable_api_key(OTHER_OWNER) is None
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
    worker, store, owner, sim, api_key, token, shim_url, log_lines
):
    sim.set_knobs(fail_next=["500"])
    job, _ = submit(store, OWNER, "sync_accounts", {})
    wait_job(store, job["_id"])  # started, page stored, will retry, started, page stored, succeeded
    store.set_api_key(OTHER_OWNER, "revoked-key-abcdef")
    failed, _ = submit(store, OTHER_OWNER, "sync_accounts", {})
    wait_job(store, failed["_id"])  # job failed (401)
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
    assert page["job_id"] == job["_id"] and page["page"] == 1 and page["owner"] == OWNER
    assert "[REDACTED]" in text and "[key " in text


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


def test_metrics_move_when_jobs_run(worker, store, owner, sim, shim_url):
    before = requests.get(f"{shim_url}/metrics", timeout=10).text
    sim.set_knobs(fail_next=["429"], send_retry_after=True, scripted_retry_after=1)
    job, _ = submit(store, OWNER, "sync_accounts", {})
    assert wait_job(store, job["_id"])["status"] == "succeeded"
    after = requests.get(f"{shim_url}/metrics", timeout=10).text
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


def test_flower_runs_behind_basic_auth(redis_url, tmp_path):
    """The documented command: Flower on our app, refusing anyone without the credentials."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "REDIS_URL": redis_url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            "--basic-auth=ops:s3cret-pass",
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
    finally:
        proc.terminate()
        proc.wait(10)
