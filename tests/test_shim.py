"""The shim's HTTP contract (the spec's envelope and messages), over a real uvicorn server."""

from __future__ import annotations

import time
from urllib.parse import quote

import jwt
import pytest
import requests

from api_shim.auth import issue_token
from api_shim.bodies import MSG_CREATE_REQUIRED, MSG_UPDATE_REQUIRED
from api_shim.routes.listings import MSG_ACCOUNT_REQUIRED
from callrail_sync.errors import API_KEY_NOT_FOUND
from callrail_sync.job import JobType, NewJob

from .conftest import OTHER_OWNER, OWNER, TEST_SECRET

P = "/v1/e/callrail"


class Shim:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(
        self, method: str, path: str, token: str | None = "default", **kw
    ) -> requests.Response:
        headers = kw.pop("headers", {})
        if token == "default":
            token = self.token
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        return requests.request(method, self.base + path, headers=headers, timeout=40, **kw)


@pytest.fixture
def shim(shim_url: str, token: str) -> Shim:
    return Shim(shim_url, token)


def assert_error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"success": False, "errno": status, "message": message}


# --- auth ----------------------------------------------------------------------------------------


def test_missing_token_is_401(shim, owner):
    assert_error(
        shim.call("GET", f"{P}/accounts", token=None), 401, "Authorization token is required."
    )


def test_wrong_scheme_is_401(shim, owner):
    response = shim.call("GET", f"{P}/accounts", token=None, headers={"Authorization": "Token abc"})
    assert_error(response, 401, "Authorization header must be 'Bearer <token>'.")


@pytest.mark.parametrize("case", ["garbage", "wrong secret", "unsigned", "no exp", "HS512"])
def test_bad_tokens_are_401(shim, owner, case):
    now = int(time.time())
    claims = {"account_id": OWNER, "exp": now + 60}
    bad = {
        "garbage": "not.a.jwt",
        "wrong secret": jwt.encode(claims, "other-secret", algorithm="HS256"),
        "unsigned": jwt.encode(claims, None, algorithm="none"),
        "no exp": jwt.encode({"account_id": OWNER}, TEST_SECRET, algorithm="HS256"),
        "HS512": jwt.encode(claims, TEST_SECRET, algorithm="HS512"),
    }[case]
    assert_error(shim.call("GET", f"{P}/accounts", token=bad), 401, "Invalid token.")


def test_expired_token_is_401(shim, owner):
    expired = jwt.encode(
        {"account_id": OWNER, "exp": int(time.time()) - 10}, TEST_SECRET, algorithm="HS256"
    )
    assert_error(shim.call("GET", f"{P}/accounts", token=expired), 401, "Token has expired.")


@pytest.mark.parametrize("account_id", [None, "", "123", "zz" * 12, 12345])
def test_bad_account_claim_is_400_invalid_account_id(shim, owner, account_id):
    claims = {"exp": int(time.time()) + 60}
    if account_id is not None:
        claims["account_id"] = account_id
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert_error(shim.call("GET", f"{P}/accounts", token=token), 400, "INVALID_ACCOUNT_ID")


# --- the spec's messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/accounts", {}),
        ("GET", "/companies?account_id=ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", {}),
        ("POST", "/companies/webhook", {"json": {}}),
        ("PUT", "/companies/webhook", {"json": {}}),
        ("GET", "/companies/webhook?account_id=470306151&company_id=C", {}),
    ],
)
def test_no_api_key_is_400_with_the_spec_message_and_no_job(shim, stores, method, path, kwargs):
    assert_error(shim.call(method, P + path, **kwargs), 400, API_KEY_NOT_FOUND)
    assert stores.jobs.recent(OWNER) == []


def test_soft_deleted_key_counts_as_no_key(shim, stores, owner):
    stores.keys.remove(owner)
    assert_error(shim.call("GET", f"{P}/accounts"), 400, API_KEY_NOT_FOUND)


def test_companies_without_account_id(shim, owner):
    assert_error(shim.call("GET", f"{P}/companies"), 400, MSG_ACCOUNT_REQUIRED)
    assert_error(shim.call("GET", f"{P}/companies?account_id="), 400, MSG_ACCOUNT_REQUIRED)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "company_id": "COM1"},
        {"account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "webhook_url": "https://x.io"},
        {"company_id": "COM1", "webhook_url": "https://x.io"},
        {"account_id": "", "company_id": "COM1", "webhook_url": "https://x.io"},
        {
            "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
            "company_id": None,
            "webhook_url": "https://x.io",
        },
    ],
)
def test_create_webhook_missing_fields(shim, owner, body):
    assert_error(shim.call("POST", f"{P}/companies/webhook", json=body), 400, MSG_CREATE_REQUIRED)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {
            "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
            "company_id": "COM1",
            "webhook_id": "web_1",
        },
        {
            "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
            "company_id": "COM1",
            "status": "disabled",
        },
        {"company_id": "COM1", "webhook_id": "web_1", "webhook_url": "https://x.io"},
    ],
)
def test_update_webhook_missing_fields(shim, owner, body):
    assert_error(shim.call("PUT", f"{P}/companies/webhook", json=body), 400, MSG_UPDATE_REQUIRED)


# --- our own validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=0", "page must be at least 1."),
        ("page=abc", "page must be a whole number."),
        ("per_page=0", "per_page must be between 1 and 250."),
        ("per_page=251", "per_page must be between 1 and 250."),
        ("sort=color", "sort must be one of: id, name (prefix - for descending)."),
        ("refresh=maybe", "refresh must be true or false."),
    ],
)
def test_listing_parameters_are_validated(shim, owner, query, message):
    assert_error(shim.call("GET", f"{P}/accounts?{query}"), 400, message)


def test_companies_parameters_are_validated(shim, owner):
    assert_error(
        shim.call(
            "GET", f"{P}/companies?account_id=ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1&disabled=perhaps"
        ),
        400,
        "disabled must be true or false.",
    )
    assert_error(
        shim.call("GET", f"{P}/companies?account_id=../etc"), 400, "account_id is not a valid id."
    )
    assert (
        shim.call(
            "GET", f"{P}/companies?account_id=ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1&sort=-created_at"
        ).status_code
        == 202
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"webhook_url": "ftp://x.io/h"}, "webhook_url must be a valid http(s) URL."),
        ({"webhook_url": "not a url"}, "webhook_url must be a valid http(s) URL."),
        ({"webhook_url": "https://"}, "webhook_url must be a valid http(s) URL."),
        ({"webhook_url": 42}, "webhook_url must be a string."),
        ({"company_id": ["COM1"]}, "company_id must be a string."),
        ({"company_id": "COM/../1"}, "company_id is not a valid id."),
        (
            {"events": ["call.exploded"]},
            "events must be a non-empty list of: call.received, call.completed, call.updated, "
            "form.submission.",
        ),
    ],
)
def test_create_webhook_values_are_validated(shim, owner, body, message):
    full = {
        "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        "company_id": "COM1",
        "webhook_url": "https://x.io/h",
        **body,
    }
    assert_error(shim.call("POST", f"{P}/companies/webhook", json=full), 400, message)


def test_update_webhook_status_is_validated(shim, owner):
    body = {
        "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        "company_id": "COM1",
        "webhook_id": "web_1",
        "status": "paused",
    }
    assert_error(
        shim.call("PUT", f"{P}/companies/webhook", json=body),
        400,
        "status must be 'enabled' or 'disabled'.",
    )


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b""])
def test_a_body_that_is_not_a_json_object_is_400(shim, owner, raw):
    response = shim.call(
        "POST", f"{P}/companies/webhook", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["success"] is False
    assert response.json()["message"] in (
        "Request body must be valid JSON.",
        "Request body must be a JSON object.",
    )


def test_numeric_account_ids_are_accepted(shim, owner):
    body = {"account_id": 470306151, "company_id": "COM1", "webhook_url": "https://x.io/h"}
    response = shim.call("POST", f"{P}/companies/webhook", json=body)
    assert response.status_code == 202


def test_unknown_routes_and_methods_answer_in_the_envelope(shim, owner):
    assert_error(shim.call("GET", f"{P}/nope"), 404, "Not found.")
    assert_error(shim.call("DELETE", f"{P}/companies/webhook"), 405, "Method not allowed.")


def test_another_accounts_job_is_404(shim, stores, owner):
    job, _ = stores.jobs.create(NewJob(owner=OTHER_OWNER, type=JobType.SYNC_ACCOUNTS))
    assert_error(shim.call("GET", f"{P}/jobs/{job.id}"), 404, "Job not found.")
    assert_error(shim.call("GET", f"{P}/jobs/job_doesnotexist"), 404, "Job not found.")


def test_job_wait_is_bounded(shim, stores, owner):
    job, _ = stores.jobs.create(NewJob(owner=OWNER, type=JobType.SYNC_ACCOUNTS))
    assert_error(
        shim.call("GET", f"{P}/jobs/{job.id}?wait=31"), 400, "wait must be between 1 and 30."
    )
    started = time.monotonic()
    response = shim.call("GET", f"{P}/jobs/{job.id}?wait=1")
    assert response.status_code == 200 and response.json()["data"]["status"] == "queued"
    assert 0.9 <= time.monotonic() - started < 5


def test_health_readiness_and_docs(shim):
    assert shim.call("GET", "/healthz", token=None).json()["data"] == {"status": "ok"}
    ready = shim.call("GET", "/readyz", token=None)
    assert ready.status_code == 200 and ready.json()["data"] == {"mongo": True, "broker": True}
    spec = shim.call("GET", "/openapi.json", token=None).json()
    assert f"{P}/companies/webhook" in spec["paths"]
    assert "webhook_url" in str(spec["paths"][f"{P}/companies/webhook"]["post"])
    assert shim.call("GET", "/docs", token=None).status_code == 200


def test_nothing_secret_is_echoed(shim, owner, api_key, token):
    responses = [shim.call("GET", f"{P}/accounts"), shim.call("GET", f"{P}/accounts?sort=bad")]
    job_id = responses[0].json()["data"]["job_id"]
    responses.append(shim.call("GET", f"{P}/jobs/{job_id}"))
    for response in responses:
        assert api_key not in response.text and token not in response.text


def test_issue_token_round_trip(settings):
    from api_shim.auth import Authenticator

    token = issue_token(OWNER, TEST_SECRET)
    assert Authenticator(settings).session("Bearer " + token)[0] == OWNER


# --- CallRail account ids (checked before any job) ----------------------------------------------

ACCOUNT = "ACC" + "a1" * 16
UNLISTED = "ACC" + "0" * 32
ACCOUNT_ROUTES = [
    ("GET", "/companies?account_id={}", None),
    ("GET", "/companies/webhook?account_id={}&company_id=COM1", None),
    ("POST", "/companies/webhook", {"company_id": "COM1", "webhook_url": "https://x.io/h"}),
    ("PUT", "/companies/webhook", {"company_id": "COM1", "webhook_id": "w", "status": "enabled"}),
    ("POST", "/sync", {}),
]
"""The routes that start a job for a CallRail account: `{}` (query) or the body takes it."""


def account_call(shim: Shim, method: str, path: str, body: dict | None, account: str):
    if body is None:
        return shim.call(method, P + path.format(quote(account, safe="")))
    return shim.call(method, P + path, json={**body, "account_id": account})


def publish_accounts(stores, records: list[dict]) -> None:
    stores.snapshots.begin("snap_accounts", OWNER, "accounts", None)
    stores.snapshots.write_records("accounts", "snap_accounts", OWNER, records)
    stores.snapshots.publish("snap_accounts", 1)


@pytest.mark.parametrize(
    "account", ["foo", "ACC1", "ACC" + "A1" * 16, "ACC" + "a1" * 17, "12a", "1" * 19]
)
@pytest.mark.parametrize(("method", "path", "body"), ACCOUNT_ROUTES)
def test_an_account_id_that_cannot_be_callrails_is_400_and_no_job(
    shim, owner, stores, method, path, body, account
):
    response = account_call(shim, method, path, body, account)
    assert_error(response, 400, "account_id is not a valid id.")
    assert stores.jobs.recent(OWNER) == []


@pytest.mark.parametrize(
    "path",
    ["/changes?kind=companies&account_id=foo", "/calls?account_id=foo"],
)
def test_reads_refuse_an_account_id_that_cannot_be_callrails(shim, owner, path):
    assert_error(shim.call("GET", P + path), 400, "account_id is not a valid id.")


def test_schedule_refuses_an_account_id_that_cannot_be_callrails(shim, owner):
    body = {"account_id": "foo", "paused": True}
    assert_error(shim.call("PUT", f"{P}/schedule", json=body), 400, "account_id is not a valid id.")


@pytest.mark.parametrize(("method", "path", "body"), ACCOUNT_ROUTES)
def test_an_account_the_accounts_snapshot_does_not_list_is_404_and_no_job(
    shim, owner, stores, method, path, body
):
    publish_accounts(stores, [{"id": ACCOUNT, "name": "Acme", "numeric_id": 470306151}])
    response = account_call(shim, method, path, body, UNLISTED)
    assert_error(response, 404, "CallRail account not found for this API key.")
    assert stores.jobs.recent(OWNER) == []
    for listed in (ACCOUNT, "470306151"):  # its id, or CallRail's older numeric id for it
        assert account_call(shim, method, path, body, listed).status_code == 202, listed
