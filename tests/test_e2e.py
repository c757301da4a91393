"""The spec's flows end to end: real uvicorn shim, real Redis, real Celery worker, simulator."""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from api_shim.auth import issue_token

from .conftest import OTHER_OWNER, TEST_SECRET

P = "/v1/e/callrail"


class Frontend:
    """What the dashboard does: call, and when answered 202, poll the job until it ends."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.headers = base, {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.base + path, headers=self.headers, timeout=40, **kw)

    def finish(self, accepted: requests.Response) -> dict:
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        assert body["success"] is True and body["message"] == "ACCEPTED"
        for _ in range(10):
            polled = self.call("GET", body["data"]["status_url"] + "?wait=5").json()["data"]
            if polled["status"] in ("succeeded", "failed"):
                return polled
        raise AssertionError("job did not finish")

    def listing(self, path: str) -> dict:
        response = self.call("GET", path)
        if response.status_code == 202:
            assert self.finish(response)["status"] == "succeeded"
            response = self.call("GET", path)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True and body["message"] == "SUCCESS"
        return body["data"]


@pytest.fixture
def frontend(shim_url, token, worker, owner) -> Frontend:
    return Frontend(shim_url, token)


def test_list_accounts_202_then_poll_then_a_page(frontend, sim_data, api_key):
    first = frontend.call("GET", f"{P}/accounts?page=1&per_page=10&sort=name")
    job = frontend.finish(first)
    assert job["type"] == "sync_accounts" and job["progress"]["pages_done"] == 1
    data = frontend.listing(f"{P}/accounts?page=1&per_page=10&sort=name")
    expected = sorted(
        (sim_data.accounts[a] for a in sim_data.accounts_by_key[api_key]),
        key=lambda a: a.name.lower(),
    )
    assert [a["id"] for a in data["accounts"]] == [a.id for a in expected]
    account = data["accounts"][0]
    assert set(account) >= {
        "id",
        "name",
        "outbound_recording_enabled",
        "hipaa_account",
        "companies_count",
    }
    assert account["companies_count"] is None  # no companies snapshot yet
    assert (data["page"], data["per_page"], data["total_pages"], data["total_records"]) == (
        1,
        10,
        1,
        2,
    )
    assert data["snapshot"]["synced_at"] and data["snapshot"]["stale"] is False


@pytest.mark.pages_of(50)
def test_companies_search_disabled_sort_and_pagination(frontend, sim_data, api_key):
    account = sim_data.add_account(api_key, 210)  # pages of 50, the last short
    companies = sim_data.companies(sim_data.accounts[account])
    data = frontend.listing(f"{P}/companies?account_id={account}")
    active = [c for c in companies if c["status"] == "active"]
    assert data["total_records"] == len(active) and data["per_page"] == 10
    assert data["total_pages"] == -(-len(active) // 10)
    # disabled=true brings the disabled ones back.
    everything = frontend.listing(f"{P}/companies?account_id={account}&disabled=true&per_page=250")
    assert everything["total_records"] == 210
    # Search is case-insensitive, and a regex metacharacter is literal.
    word = companies[0]["name"].split()[1]
    found = frontend.listing(
        f"{P}/companies?account_id={account}&search={word.upper()}&disabled=true&per_page=250"
    )
    assert found["total_records"] == sum(word.lower() in c["name"].lower() for c in companies) > 0
    assert frontend.listing(f"{P}/companies?account_id={account}&search=.*")["total_records"] == 0
    # Sort by created_at descending, across pages: by the instant, not by the text (the
    # listing mixes offsets, so the two orders differ).
    page1 = frontend.listing(
        f"{P}/companies?account_id={account}&sort=-created_at&per_page=50&page=1"
    )
    page2 = frontend.listing(
        f"{P}/companies?account_id={account}&sort=-created_at&per_page=50&page=2"
    )
    shown = page1["companies"] + page2["companies"]
    instants = [datetime.fromisoformat(c["created_at"]) for c in shown]
    assert instants == sorted(instants, reverse=True) and len({c["id"] for c in shown}) == 100
    assert len({c["created_at"][-6:] for c in companies}) > 1  # offsets are mixed
    by_instant = sorted(active, key=lambda c: datetime.fromisoformat(c["created_at"]), reverse=True)
    by_text = sorted(active, key=lambda c: c["created_at"], reverse=True)
    assert [c["id"] for c in by_instant] != [c["id"] for c in by_text]  # the test can tell
    assert [c["id"] for c in shown] == [c["id"] for c in by_instant[:100]]
    # The accounts listing now knows how many companies the account has.
    accounts = frontend.listing(f"{P}/accounts?per_page=250")
    (mine,) = [a for a in accounts["accounts"] if a["id"] == account]
    assert mine["companies_count"] == 210
    # Past the last page: an empty page, not an error.
    assert frontend.listing(f"{P}/companies?account_id={account}&page=999")["companies"] == []


def test_create_a_webhook_see_it_listed_then_disable_it(frontend, sim_data, api_key):
    account = sim_data.accounts_by_key[api_key][0]
    company = sim_data.companies(sim_data.accounts[account])[0]["id"]
    url = "https://dashclicks.example/api/webhooks/callrail"
    created = frontend.finish(
        frontend.call(
            "POST",
            f"{P}/companies/webhook",
            json={"account_id": account, "company_id": company, "webhook_url": url},
        )
    )
    assert created["status"] == "succeeded", created["error"]
    hook = created["result"]
    assert {k: hook[k] for k in ("account_id", "company_id", "url", "status")} == {
        "account_id": account,
        "company_id": company,
        "url": url,
        "status": "enabled",
    }
    assert hook["events"] == ["call.completed", "call.received"] and hook["created_at"]
    listed = frontend.finish(
        frontend.call("GET", f"{P}/companies/webhook?account_id={account}&company_id={company}")
    )
    assert [w["id"] for w in listed["result"]["webhooks"]] == [hook["id"]]
    updated = frontend.finish(
        frontend.call(
            "PUT",
            f"{P}/companies/webhook",
            json={
                "account_id": account,
                "company_id": company,
                "webhook_id": hook["id"],
                "status": "disabled",
            },
        )
    )
    assert updated["status"] == "succeeded" and updated["result"]["status"] == "disabled"
    assert updated["result"]["id"] == hook["id"] and updated["result"]["updated_at"]


def test_a_failed_job_reads_as_failed_with_its_message(frontend):
    # No accounts snapshot yet to refuse it at once: the job asks CallRail, which says no.
    notmine = "ACC" + "0" * 32
    job = frontend.finish(frontend.call("GET", f"{P}/companies?account_id={notmine}"))
    assert job["status"] == "failed"
    assert job["error"]["errno"] == 404
    assert job["error"]["message"] == "Not found in CallRail: Account not found"
    assert job["error"]["class"] == "not_found" and job["error"]["retryable"] is False
    assert job["error"]["remedy"]


def test_another_account_sees_none_of_it(frontend, shim_url, stores, sim_data):
    frontend.listing(f"{P}/accounts")
    stores.keys.set(OTHER_OWNER, sim_data.api_keys[1])
    other = Frontend(shim_url, issue_token(OTHER_OWNER, TEST_SECRET))
    first = other.call("GET", f"{P}/accounts")
    assert first.status_code == 202  # no snapshot of its own yet, whatever the first owner has
    job_id = first.json()["data"]["job_id"]
    assert frontend.call("GET", f"{P}/jobs/{job_id}").status_code == 404
    other.finish(first)
    theirs = {a["id"] for a in other.listing(f"{P}/accounts")["accounts"]}
    mine = {a["id"] for a in frontend.listing(f"{P}/accounts")["accounts"]}
    assert theirs == set(sim_data.accounts_by_key[sim_data.api_keys[1]]) and not theirs & mine


def test_a_stale_snapshot_is_served_and_refreshed_in_the_background(frontend, runtime):
    frontend.listing(f"{P}/accounts")
    runtime.settings.snapshot_max_age = 0
    stale = frontend.call("GET", f"{P}/accounts")
    assert stale.status_code == 200
    snapshot = stale.json()["data"]["snapshot"]
    assert snapshot["stale"] is True and snapshot["refresh_job_id"]
    job = frontend.call("GET", f"{P}/jobs/{snapshot['refresh_job_id']}?wait=10").json()["data"]
    assert job["status"] == "succeeded"


def test_refresh_true_forces_a_sync(frontend):
    frontend.listing(f"{P}/accounts")
    forced = frontend.call("GET", f"{P}/accounts?refresh=true")
    assert forced.status_code == 202 and frontend.finish(forced)["status"] == "succeeded"
