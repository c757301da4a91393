"""Work without limits is refused: new jobs per owner a minute (shared by every shim process,
429 with Retry-After, joining an active job free), event streams open per owner, and the size
of a `GET /calls` page. Real uvicorn servers, real Redis, a MongoDB wire server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from callrail_sync.config import Settings
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.inbox import NewCallEvent

from .conftest import OTHER_OWNER, serving

P = "/v1/e/callrail"


def test_the_defaults_are_documented_limits():
    s = Settings()
    assert (s.jobs_per_minute, s.streams_per_owner, s.calls_page_max_bytes) == (60, 20, 1 << 20)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"jobs_per_minute": 3, "streams_per_owner": 2, "calls_page_max_bytes": 30_000}
    )


@pytest.fixture
def second_shim(runtime, queue) -> Iterator[str]:
    """Another shim process's app on the same Redis and MongoDB."""
    from api_shim.app import create_app

    with serving(create_app(runtime.settings, runtime=runtime, queue=queue)) as url:
        yield url


def get(url: str, token: str, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(url, params=params, headers=headers, timeout=20)


def test_new_jobs_per_owner_are_limited_across_shim_processes_and_joining_is_free(
    shim_url, second_shim, token, owner, sim_data, api_key, stores
):
    accounts = sim_data.accounts_by_key[api_key]
    first = get(f"{shim_url}{P}/companies", token, account_id=accounts[0], refresh="true")
    assert first.status_code == 202, first.text
    # Joining the active job of the same listing costs nothing, on either process.
    for url in (shim_url, second_shim, shim_url):
        again = get(f"{url}{P}/companies", token, account_id=accounts[0], refresh="true")
        assert (
            again.status_code == 202
            and again.json()["data"]["job_id"] == first.json()["data"]["job_id"]
        )
    # Two more new jobs, one through each process: the limit (3) is reached.
    assert get(f"{second_shim}{P}/companies", token, account_id=accounts[1]).status_code == 202
    assert get(f"{shim_url}{P}/accounts", token, refresh="true").status_code == 202
    refused = get(
        f"{second_shim}{P}/companies/webhook", token, account_id=accounts[0], company_id="COM1"
    )
    assert refused.status_code == 429, refused.text
    assert refused.json()["message"] == "Too many new jobs (at most 3 a minute); try again shortly."
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    sync = requests.post(
        f"{shim_url}{P}/sync",
        json={"kind": "companies", "account_id": accounts[1]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=20,
    )
    assert sync.status_code == 202  # the same job as the companies listing: joined
    assert len(stores.jobs.recent(owner)) == 3


def open_stream(url: str, token: str) -> requests.Response:
    return requests.get(
        f"{url}{P}/events", headers={"Authorization": f"Bearer {token}"}, stream=True, timeout=20
    )


def test_event_streams_per_owner_are_capped_and_a_closed_one_frees_its_slot(
    shim_url, second_shim, token, owner, runtime
):
    from api_shim.auth import issue_token

    opened = [open_stream(shim_url, token), open_stream(second_shim, token)]
    try:
        assert [s.status_code for s in opened] == [200, 200]
        third = open_stream(shim_url, token)
        assert third.status_code == 429
        assert (
            third.json()["message"] == "Too many event streams open (at most 2); close one first."
        )
        assert third.headers["Retry-After"]
        # Another owner has slots of its own.
        other = open_stream(shim_url, issue_token(OTHER_OWNER, runtime.settings.jwt_secret))
        assert other.status_code == 200
        other.close()
        opened.pop().close()
        answer: list[int] = []

        def reopen() -> bool:
            stream = open_stream(shim_url, token)
            answer.append(stream.status_code)
            if stream.status_code == 200:
                opened.append(stream)
                return True
            return False

        from callrail_sync.cli.processes import wait_until

        assert wait_until(reopen, 10, 0.2), answer  # the server notices the close, then frees it
    finally:
        for stream in opened:
            stream.close()


def test_a_calls_page_is_bounded_in_bytes_and_the_rest_follows_by_cursor(
    shim_url, token, owner, stores
):
    from callrail_sync.stores.receivers import Registration

    account, now = "ACC" + "0" * 31 + "1", utcnow()
    # Our receiver on the company, registered by this owner: its calls are the owner's to read.
    registration = Registration(callrail_account_id=account, company_id="COM1", integration_id="1")
    stores.receivers.register(owner, registration)
    events = [
        NewCallEvent(
            id=f"evt_{n}",
            owners=[owner],
            callrail_account_id=account,
            company_id="COM1",
            kind="call",
            event="post_call",
            resource_id=f"CAL{n}",
            source="webhook",
            received_at=now,
            fields={"transcription": "x" * 10_000},
        )
        for n in range(8)
    ]
    stores.inbox.record(events)
    seen: list[str] = []
    params = {"account_id": account, "limit": "1000"}
    while True:
        page = get(f"{shim_url}{P}/calls", token, **params)
        assert page.status_code == 200, page.text
        assert len(page.content) < 30_000 + 2_000  # the bound, plus the envelope
        data = page.json()["data"]
        seen += [c["id"] for c in data["calls"]]
        if not data["has_more"]:
            break
        params["cursor"] = data["next_cursor"]
    assert sorted(seen) == sorted(e.id for e in events) and len(seen) == len(set(seen))
