"""Admission of webhook writes: joined when identical, refused (429) beyond the limits, and
answered 404 at once for a company that a fresh snapshot does not hold."""

from __future__ import annotations

import pytest
import requests

from callrail_sync.config import Settings

from .conftest import OWNER, wait_job

P = "/v1/e/callrail"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small limits, so that a few requests reach them."""
    return settings.model_copy(update={"writes_per_minute": 4, "write_jobs_per_owner": 3})


def post(shim_url: str, token: str, **body: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.post(f"{shim_url}{P}/companies/webhook", json=body, headers=headers, timeout=10)


def hook(n: int) -> dict[str, str]:
    return {
        "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        "company_id": "COM1",
        "webhook_url": f"https://h.example/{n}",
    }


def test_the_same_write_asked_twice_is_one_job(shim_url, token, owner, stores):
    first = post(shim_url, token, **hook(1)).json()["data"]
    again = post(shim_url, token, **hook(1)).json()["data"]
    assert first["job_id"] == again["job_id"]
    other = post(shim_url, token, **hook(2)).json()["data"]
    assert other["job_id"] != first["job_id"]
    assert len(stores.jobs.recent(OWNER)) == 2


def test_too_many_active_writes_are_refused_with_retry_after(shim_url, token, owner):
    for n in range(3):  # no worker runs: they stay queued, active
        assert post(shim_url, token, **hook(n)).status_code == 202
    refused = post(shim_url, token, **hook(99))
    assert refused.status_code == 429
    assert refused.json() == {
        "success": False,
        "errno": 429,
        "message": "Too many webhook changes in progress (at most 3); wait for one to finish.",
    }
    assert int(refused.headers["Retry-After"]) >= 1
    assert post(shim_url, token, **hook(0)).status_code == 202  # joining costs nothing


def test_more_writes_a_minute_than_allowed_are_refused(shim_url, token, owner, stores, worker):
    answers = []
    for n in range(5):
        answer = post(shim_url, token, **hook(n))
        if answer.status_code == 202:
            wait_job(stores, answer.json()["data"]["job_id"])  # done: not active any more
        answers.append(answer)
    assert [a.status_code for a in answers] == [202, 202, 202, 202, 429]
    assert answers[-1].json()["message"] == (
        "Too many webhook changes (at most 4 a minute); try again shortly."
    )
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 61


def test_a_write_for_a_company_missing_from_a_fresh_snapshot_is_404_without_a_job(
    shim_url, token, owner, stores, worker, sim, sim_data, api_key
):
    account = sim_data.accounts_by_key[api_key][0]
    company = sim_data.companies(sim_data.accounts[account])[0]["id"]
    headers = {"Authorization": f"Bearer {token}"}
    listing = requests.get(f"{shim_url}{P}/companies?account_id={account}", headers=headers)
    wait_job(stores, listing.json()["data"]["job_id"])
    sim.reset()
    before = len(stores.jobs.recent(OWNER))
    body = {"account_id": account, "webhook_url": "https://h.example/x"}
    missing = post(shim_url, token, company_id="COMnotthere", **body)
    assert missing.status_code == 404
    assert missing.json()["message"] == "Company not found in this CallRail account."
    assert len(stores.jobs.recent(OWNER)) == before and sim.stats()["requests"] == 0
    found = post(shim_url, token, company_id=company, **body)
    assert found.status_code == 202
