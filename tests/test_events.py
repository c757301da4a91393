"""Results are published, not polled: job events, long polls, event streams and tickets."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from callrail_sync.cli.processes import wait_until
from callrail_sync.job import JobError, JobType, NewJob

from .conftest import OTHER_OWNER, OWNER, serving

P = "/v1/e/callrail"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_job(stores, owner: str = OWNER):
    return stores.jobs.create(NewJob(owner=owner, type=JobType.SYNC_ACCOUNTS))[0]


def read_events(response: requests.Response) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a Server-Sent Events stream, until it closes."""
    events, name = [], None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: ") :])))
    return events


def test_a_long_poll_answers_when_the_job_ends_not_when_the_wait_does(shim_url, stores, token):
    job = new_job(stores)
    stores.jobs.start(job.id, "m", lease_seconds=90)
    threading.Timer(0.5, lambda: stores.jobs.succeed(job.id, {"done": True}, None)).start()
    started = time.monotonic()
    answer = requests.get(f"{shim_url}{P}/jobs/{job.id}?wait=20", headers=auth(token), timeout=30)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.json()["data"]["status"] == "succeeded"
    assert answer.json()["data"]["result"] == {"done": True}
    assert elapsed < 5  # woken by the event, nowhere near the 20 s wait


def test_a_long_poll_still_sees_the_end_while_the_events_are_down(runtime, queue, stores, token):
    """With no event subscription (Redis unreachable for the shim's hub), a waiting poll
    reads the store every second instead: later, never wrong."""
    from api_shim.app import create_app

    deaf = runtime.settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    job = new_job(stores)

    def finish() -> None:
        stores.jobs.fail(job.id, JobError(errno=1, message="x"))

    with serving(create_app(deaf, runtime=runtime, queue=queue)) as url:
        threading.Timer(0.3, finish).start()
        answer = requests.get(f"{url}{P}/jobs/{job.id}?wait=10", headers=auth(token), timeout=30)
    assert answer.json()["data"]["status"] == "failed"


def test_a_thousand_waiting_polls_hold_no_thread_and_stall_nobody(
    shim_url, shim_server, stores, token, owner
):
    jobs = [new_job(stores) for _ in range(10)]
    hub = shim_server[1].app.state.services.hub
    with ThreadPoolExecutor(200) as pool:
        waits = [
            pool.submit(
                requests.get,
                f"{shim_url}{P}/jobs/{jobs[n % 10].id}?wait=30",
                headers=auth(token),
                timeout=60,
            )
            for n in range(200)
        ]
        # They are all waiting now (each on the hub's events), however loaded the machine.
        assert wait_until(lambda: sum(map(len, hub._waiters.values())) == 200, 30, 0.02)
        started = time.monotonic()
        health = requests.get(f"{shim_url}/healthz", timeout=10)
        listing = requests.get(f"{shim_url}{P}/accounts", headers=auth(token), timeout=10)
        elapsed = time.monotonic() - started
        assert health.status_code == 200 and listing.status_code == 202
        assert elapsed < 2  # served beside 200 waiting polls (each used to hold a thread)
        for job in jobs:
            stores.jobs.fail(job.id, JobError(errno=500, message="done"))
        answers = [w.result() for w in waits]
    assert {a.json()["data"]["status"] for a in answers} == {"failed"}


@pytest.mark.pages_of(25)
def test_a_job_streams_its_progress_then_one_status_then_closes(
    worker, shim_url, stores, token, owner, sim, sim_data, api_key, runtime
):
    account = sim_data.add_account(api_key, 100)
    # Four pages one after the other, ~1 s: the stream opens while the job runs (a stream
    # opened after the end is the final status alone, as the reconnect below shows).
    runtime.settings.page_concurrency = 1
    sim.set_knobs(latency=0.25)
    accepted = requests.get(
        f"{shim_url}{P}/companies?account_id={account}", headers=auth(token), timeout=10
    ).json()["data"]
    stream = requests.get(
        f"{shim_url}{P}/jobs/{accepted['job_id']}/events",
        headers=auth(token),
        stream=True,
        timeout=30,
    )
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = read_events(stream)
    names = [name for name, _ in events]
    assert names[-1] == "status" and set(names[:-1]) == {"progress"} and len(names) >= 2
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["progress"]["records"] == 100
    # A reconnect after the end resumes from the current state: the final status, at once.
    again = read_events(
        requests.get(
            f"{shim_url}{P}/jobs/{accepted['job_id']}/events",
            headers=auth(token),
            stream=True,
            timeout=30,
        )
    )
    assert [name for name, _ in again] == ["status"]


def test_the_events_stream_carries_the_callers_jobs_and_no_one_elses(shim_url, stores, token):
    mine, theirs = new_job(stores), new_job(stores, OTHER_OWNER)
    stream = requests.get(f"{shim_url}{P}/events", headers=auth(token), stream=True, timeout=30)
    lines = stream.iter_lines(decode_unicode=True)
    assert next(lines) == ": connected"
    stores.jobs.fail(theirs.id, JobError(errno=500, message="theirs"))
    stores.jobs.fail(mine.id, JobError(errno=500, message="mine"))
    seen = []
    for line in lines:
        if line.startswith("data: "):
            seen.append(json.loads(line[len("data: ") :]))
            break
    stream.close()
    assert [job["job_id"] for job in seen] == [mine.id]
    assert seen[0]["status"] == "failed"


def ticket_for(shim_url: str, token: str, stream: str | None = None) -> str:
    body = {"stream": stream} if stream else None
    minted = requests.post(
        f"{shim_url}{P}/events/ticket", headers=auth(token), json=body, timeout=10
    )
    assert minted.status_code == 200, minted.text
    return str(minted.json()["data"]["ticket"])


def test_a_stream_ticket_opens_one_stream_once_for_its_owner_within_a_minute(
    shim_url, stores, token, redis_url
):
    minted = requests.post(f"{shim_url}{P}/events/ticket", headers=auth(token), timeout=10)
    assert minted.status_code == 200
    ticket = minted.json()["data"]["ticket"]
    assert minted.json()["data"]["expires_in"] <= 60 and token not in ticket
    client = redis.Redis.from_url(redis_url)
    names = client.keys("callrail:ticket:*")
    assert len(names) == 1 and 0 < client.ttl(names[0]) <= 60
    assert ticket.encode() not in names[0]  # only its hash is stored
    mine, theirs = new_job(stores), new_job(stores, OTHER_OWNER)
    stores.jobs.fail(mine.id, JobError(errno=500, message="x"))
    by_ticket = requests.get(
        f"{shim_url}{P}/jobs/{mine.id}/events?ticket={ticket}", stream=True, timeout=10
    )
    assert by_ticket.status_code == 200 and read_events(by_ticket)[-1][0] == "status"
    # Redeemed once: the same ticket (copied from a URL, a log) opens nothing more.
    again = requests.get(f"{shim_url}{P}/jobs/{mine.id}/events?ticket={ticket}", timeout=10)
    assert again.status_code == 401
    assert again.json()["message"] == "Invalid or expired stream ticket."
    other = ticket_for(shim_url, token)
    theirs_answer = requests.get(
        f"{shim_url}{P}/jobs/{theirs.id}/events?ticket={other}", timeout=10
    )
    assert theirs_answer.status_code == 404
    # Streams only: a ticket is no bearer token for anything else.
    unused = ticket_for(shim_url, token)
    assert requests.get(f"{shim_url}{P}/accounts?ticket={unused}", timeout=10).status_code == 401
    forged = requests.get(f"{shim_url}{P}/events?ticket=tkt_forged", timeout=10)
    assert forged.status_code == 401 and forged.json()["message"] == (
        "Invalid or expired stream ticket."
    )
    client.delete(*client.keys("callrail:ticket:*"))  # as they expire
    gone = requests.get(f"{shim_url}{P}/events?ticket={unused}", timeout=10)
    assert gone.status_code == 401


def test_a_ticket_that_names_a_stream_opens_only_that_one(shim_url, stores, token):
    mine = new_job(stores)
    stores.jobs.fail(mine.id, JobError(errno=500, message="x"))
    path = f"{P}/jobs/{mine.id}/events"
    wrong = requests.get(f"{shim_url}{P}/events?ticket={ticket_for(shim_url, token, path)}")
    assert wrong.status_code == 401
    right = requests.get(
        f"{shim_url}{path}?ticket={ticket_for(shim_url, token, path)}", stream=True, timeout=10
    )
    assert right.status_code == 200 and read_events(right)[-1][0] == "status"
    for stream in ("/v1/e/callrail/accounts", f"{P}/events/../accounts", 7, ""):
        refused = requests.post(
            f"{shim_url}{P}/events/ticket", headers=auth(token), json={"stream": stream}, timeout=10
        )
        assert refused.status_code == 400, stream
        assert refused.json()["message"] == (
            "stream must be /v1/e/callrail/events or /v1/e/callrail/jobs/<job_id>/events."
        )


def test_a_stream_closes_when_the_token_it_was_opened_with_expires(shim_url, settings):
    from api_shim.auth import issue_token

    for by_ticket in (False, True):
        short = issue_token(OWNER, settings.jwt_secret, ttl_seconds=3)
        url, headers = f"{shim_url}{P}/events", auth(short)
        if by_ticket:
            url, headers = f"{url}?ticket={ticket_for(shim_url, short)}", {}
        started = time.monotonic()
        stream = requests.get(url, headers=headers, stream=True, timeout=20)
        assert stream.status_code == 200
        lines = [line for line in stream.iter_lines(decode_unicode=True) if line]
        assert lines[-1] == ": the token expired", lines
        assert time.monotonic() - started < 10


@pytest.mark.slow  # a real process of the service
def test_uvicorns_access_log_never_prints_a_ticket(settings, tmp_path):
    """The shim as Compose runs it (uvicorn's own access log at INFO): the request line of a
    stream opened with a ticket is printed with the ticket scrubbed."""
    import os
    import subprocess
    import sys

    from api_shim.auth import issue_token
    from callrail_sync.cli.processes import free_port

    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "MONGO_URL": settings.mongo_url,
        "MONGO_DB": settings.mongo_db,
        "JWT_SECRET": settings.jwt_secret,
        "SECRETS_KEYS": settings.secrets_keys,
        "CALLRAIL_BASE_URL": settings.callrail_base_url,
        "LOG_LEVEL": "INFO",
        "METRICS_PORT": "0",
    }
    log_path = tmp_path / "shim.log"
    argv = [sys.executable, "-m", "uvicorn", "--factory", "api_shim.app:create_app"]
    argv += ["--port", str(port), "--log-level", "info"]
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: requests.get(f"{base}/healthz", timeout=1).ok, 60)
        token = issue_token(OWNER, settings.jwt_secret)
        ticket = ticket_for(base, token)
        stream = requests.get(f"{base}{P}/events?ticket={ticket}", stream=True, timeout=10)
        assert stream.status_code == 200
        stream.close()
        assert wait_until(lambda: f"{P}/events?ticket=" in log_path.read_text(), 10)
    finally:
        proc.terminate()
        proc.wait(30)
    printed = log_path.read_text()
    assert f"{P}/events?ticket=[REDACTED]" in printed
    assert ticket not in printed and ticket[len("tkt_") :] not in printed


def test_the_event_hub_closes_at_once_however_soon_after_it_started(redis_url):
    """redis-py sometimes swallows the cancel of a task waiting in `pubsub.listen()`; the hub
    cancels again until its task ends, or the shim's shutdown would never end (one close in
    ten hung before). Each close here must end: a hang is a close that never does (10 s)."""
    import asyncio

    from api_shim.hub import EventHub

    async def cycles() -> list[int]:
        hung = []
        for n in range(25):
            hub = EventHub(redis_url)
            hub.start()
            await asyncio.sleep((0.0, 0.001, 0.01, 0.03, 0.1)[n % 5])
            try:
                await asyncio.wait_for(hub.close(), 10)
            except TimeoutError:
                hung.append(n)
        return hung

    assert asyncio.run(cycles()) == []


def test_a_job_event_is_published_for_every_write_of_a_job(stores, redis_url):
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.psubscribe("*callrail:events:*")
    pubsub.get_message(timeout=1)  # the subscription itself
    job = new_job(stores)
    stores.jobs.start(job.id, "m", lease_seconds=90)
    stores.jobs.beat(job.id, "m")  # a heartbeat is not news: no event
    stores.jobs.record_page(job.id, 1, 2, 250)
    stores.jobs.requeue(job.id)
    stores.jobs.start(job.id, "m2", lease_seconds=90)
    stores.jobs.succeed(job.id, {}, None)
    seen: list[str] = []
    # Until this job's last event and a moment after it (not until the channel is quiet: pub/sub
    # spans Redis databases, and the other test processes publish all along).
    deadline, last = time.monotonic() + 10, None
    while time.monotonic() < (deadline if last is None else min(deadline, last + 0.3)):
        message = pubsub.get_message(timeout=0.1)
        event = json.loads(message["data"]) if message and message["type"] == "pmessage" else {}
        if event.get("job_id") == job.id:
            seen.append(event["status"])
            last = time.monotonic() if event["status"] == "succeeded" else last
    assert seen == ["queued", "running", "running", "queued", "running", "succeeded"]
    assert stores.jobs.get(job.id).status == "succeeded"
