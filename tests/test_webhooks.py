"""Webhook writes under concurrency: serialized per company, one id per URL, answers that say
what happened (an existing URL, a merge, a webhook that will not fire)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from pymongo.errors import DuplicateKeyError

from callrail_sync.callrail import webhooks as wh
from callrail_sync.callrail.models import Integration
from callrail_sync.job import JobParams

from .conftest import OWNER, wait_job

P = "/v1/e/callrail"


@pytest.fixture
def company(sim_data, api_key) -> tuple[str, str]:
    account = sim_data.accounts_by_key[api_key][0]
    return account, sim_data.companies(sim_data.accounts[account])[0]["id"]


class Dashboard:
    def __init__(self, base: str, token: str, stores) -> None:
        self.base, self.headers, self.stores = base, {"Authorization": f"Bearer {token}"}, stores

    def write(self, method: str, **body: object):
        answer = requests.request(
            method, f"{self.base}{P}/companies/webhook", json=body, headers=self.headers, timeout=30
        )
        assert answer.status_code == 202, answer.text
        return wait_job(self.stores, answer.json()["data"]["job_id"], timeout=60)


@pytest.fixture
def dashboard(shim_url, token, owner, stores, worker) -> Dashboard:
    return Dashboard(shim_url, token, stores)


def integration_of(sim_data, company_id: str) -> Integration:
    (found,) = [i for i in sim_data.integrations.values() if i["company_id"] == company_id]
    return Integration.model_validate(found)


def test_twenty_concurrent_creates_for_one_company_keep_every_url_once(
    dashboard, company, sim, sim_data, stores
):
    account, company_id = company
    sim.set_knobs(latency=0.05)  # a real round trip: room for writes to interleave
    urls = [f"https://h{n}.example/hook" for n in range(20)]
    with ThreadPoolExecutor(20) as pool:
        done = list(
            pool.map(
                lambda url: dashboard.write(
                    "POST", account_id=account, company_id=company_id, webhook_url=url
                ),
                urls,
            )
        )
    assert [job.status for job in done] == ["succeeded"] * 20, [j.error for j in done]
    assert set(wh.urls_in(integration_of(sim_data, company_id))) == set(urls)
    records = list(stores.db["callrail_webhooks"].find({"company_id": company_id}))
    assert sorted(r["url"] for r in records) == sorted(urls)
    assert len({r["_id"] for r in records}) == 20
    assert {job.result["id"] for job in done} == {r["_id"] for r in records}


def test_the_store_gives_one_url_one_id_however_many_remember_it(stores):
    args = (
        OWNER,
        "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        "COM1",
        "https://one.example/hook",
        {"status": "enabled"},
    )
    with ThreadPoolExecutor(8) as pool:
        ids = {
            record.id for record in pool.map(lambda _: stores.webhooks.remember(*args), range(8))
        }
    assert len(ids) == 1
    with pytest.raises(DuplicateKeyError):
        stores.db["callrail_webhooks"].insert_one(
            {
                "owner": OWNER,
                "callrail_account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
                "company_id": "COM1",
                "url": args[3],
            }
        )


def test_creating_a_url_the_company_has_answers_the_existing_webhook(dashboard, company):
    account, company_id = company
    body = {"account_id": account, "company_id": company_id, "webhook_url": "https://a.example/1"}
    first = dashboard.write("POST", **body).result
    again = dashboard.write("POST", **body).result
    assert first["existing"] is False and again["existing"] is True
    assert again["id"] == first["id"] and again["fires"] is True


def test_a_url_added_to_an_older_integration_is_created_when_it_was_added(
    dashboard, company, sim_data
):
    """`created_at` is this webhook's: a second URL added to an integration made long ago
    says when it was added, and the first URL keeps its own time."""
    account, company_id = company
    ref = {"account_id": account, "company_id": company_id}
    first = dashboard.write("POST", **ref, webhook_url="https://a.example/hook").result
    (integration,) = [i for i in sim_data.integrations.values() if i["company_id"] == company_id]
    integration["created_at"] = "2020-01-15T10:00:00.000Z"  # the integration is years old
    before = datetime.now(UTC)
    second = dashboard.write("POST", **ref, webhook_url="https://b.example/hook").result
    assert before <= datetime.fromisoformat(second["created_at"]) <= datetime.now(UTC)
    again = dashboard.write("POST", **ref, webhook_url="https://a.example/hook").result
    assert again["existing"] is True and again["created_at"] == first["created_at"]
    assert datetime.fromisoformat(first["created_at"]) < before


def test_moving_a_url_onto_another_webhooks_merges_them_and_the_old_id_is_gone(
    dashboard, company, sim_data
):
    account, company_id = company
    ref = {"account_id": account, "company_id": company_id}
    a = dashboard.write("POST", **ref, webhook_url="https://a.example/hook").result
    b = dashboard.write("POST", **ref, webhook_url="https://b.example/hook").result
    merged = dashboard.write(
        "PUT", **ref, webhook_id=a["id"], webhook_url="https://b.example/hook"
    ).result
    assert merged["id"] == b["id"] and merged["existing"] is True
    assert merged["replaced_id"] == a["id"]
    assert set(wh.urls_in(integration_of(sim_data, company_id))) == {"https://b.example/hook"}
    gone = dashboard.write("PUT", **ref, webhook_id=a["id"], status="disabled")
    assert gone.status == "failed" and gone.error.errno == 404
    assert gone.error.message == "Webhook not found." and gone.error.error_class == "not_found"


def test_a_webhook_made_where_webhooks_are_disabled_says_it_will_not_fire(
    dashboard, company, sim_data
):
    account, company_id = company
    ref = {"account_id": account, "company_id": company_id}
    first = dashboard.write("POST", **ref, webhook_url="https://a.example/hook").result
    dashboard.write("PUT", **ref, webhook_id=first["id"], status="disabled")
    quiet = dashboard.write("POST", **ref, webhook_url="https://b.example/hook").result
    assert quiet["status"] == "disabled" and quiet["fires"] is False
    assert "will not fire until they are enabled" in quiet["note"]
    assert integration_of(sim_data, company_id).state == "disabled"
    loud = dashboard.write(
        "POST", **ref, webhook_url="https://c.example/hook", status="enabled"
    ).result
    assert loud["status"] == "enabled" and loud["fires"] is True and "note" not in loud
    assert integration_of(sim_data, company_id).state == "active"


def test_a_403_on_a_webhook_write_says_the_key_needs_integration_admin(
    dashboard, company, sim_data, api_key
):
    sim_data.read_only_keys.add(api_key)
    account, company_id = company
    failed = dashboard.write(
        "POST", account_id=account, company_id=company_id, webhook_url="https://a.example/h"
    )
    assert failed.status == "failed" and failed.error.errno == 403
    assert failed.error.error_class == "permission" and failed.error.retryable is False
    assert "Integration Admin" in failed.error.remedy


def test_a_webhook_url_the_policy_refuses_is_a_400_naming_the_rule(shim_url, token, owner):
    body = {
        "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        "company_id": "COM1",
        "webhook_url": "http://169.254.169.254/x",
    }
    answer = requests.post(
        f"{shim_url}{P}/companies/webhook",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["message"] == "webhook_url must use https."
    body["webhook_url"] = "https://169.254.169.254/latest/meta-data"
    answer = requests.post(
        f"{shim_url}{P}/companies/webhook",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.json()["message"] == "webhook_url must not point at a link-local address."


def test_records_stored_before_the_callrail_account_rename_are_migrated(stores):
    """`account_id` meant CallRail's account in these documents: ensure_indexes renames it."""
    account = "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
    webhooks = stores.db["callrail_webhooks"]
    webhooks.drop_indexes()
    old_key = [("owner", 1), ("account_id", 1), ("company_id", 1), ("url", 1)]
    webhooks.create_index(old_key, unique=True)
    webhooks.insert_one(
        {"_id": "web_old", "owner": OWNER, "account_id": account, "company_id": "COM9", "url": "u"}
    )
    stores.db["callrail_receivers"].insert_one({"_id": "COM9", "account_id": account})
    stores.webhooks.ensure_indexes()
    stores.receivers.ensure_indexes()
    found = stores.webhooks.find(OWNER, account, "COM9", "u")
    assert found is not None and found.id == "web_old"
    assert stores.receivers.get("COM9").callrail_account_id == account
    old_job_params = {"account_id": account, "company_id": "COM9"}
    assert JobParams.model_validate(old_job_params).callrail_account_id == account
