"""The OpenAPI document tells the truth about the shim, and /docs shows it without the internet."""

from __future__ import annotations

import copy
import re

import pytest
import requests
from fastapi.routing import iter_route_contexts
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import OpenAPIV32SpecValidator
from openapi_spec_validator import validate as validate_spec

from api_shim.answers import PREFIX as P
from api_shim.app import create_app

from .conftest import wait_job

pytestmark = pytest.mark.contract  # `spec` asks for a shim over HTTP when it fetches

SPEC_MESSAGES = {
    ("GET", f"{P}/companies"): "Callrail account id is required.",
    ("GET", f"{P}/companies/webhook"): "Callrail account id and company id are required.",
}


@pytest.fixture
def app(runtime, queue):
    return create_app(runtime.settings, runtime=runtime, queue=queue)


_SERVED: dict[str, dict] = {}


@pytest.fixture
def spec(request: pytest.FixtureRequest) -> dict:
    """/openapi.json as a shim serves it over HTTP, fetched by the first test that asks, then
    the same document for the rest of the module (every app of this code builds the same one;
    a shim for each test cost ~0.3 s of CPU, 32 times)."""
    if "document" not in _SERVED:
        shim_url = request.getfixturevalue("shim_url")
        response = requests.get(f"{shim_url}/openapi.json", timeout=10)
        assert response.status_code == 200
        _SERVED["document"] = response.json()
    return copy.deepcopy(_SERVED["document"])


def operations(spec: dict):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def call(base: str, method: str, path: str, token: str, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, base + path, headers=headers, timeout=30, **kw)


# --- the document covers the app ---------------------------------------------------------------

OPERATIONS = {
    ("GET", f"{P}/accounts"): ("list_accounts", "accounts"),
    ("GET", f"{P}/companies"): ("list_companies", "companies"),
    ("GET", f"{P}/companies/webhook"): ("list_webhooks", "webhooks"),
    ("POST", f"{P}/companies/webhook"): ("create_webhook", "webhooks"),
    ("PUT", f"{P}/companies/webhook"): ("update_webhook", "webhooks"),
    ("GET", f"{P}/jobs/{{job_id}}"): ("get_job", "jobs"),
    ("GET", f"{P}/jobs/{{job_id}}/events"): ("stream_job_events", "jobs"),
    ("GET", f"{P}/events"): ("stream_events", "events"),
    ("POST", f"{P}/events/ticket"): ("create_stream_ticket", "events"),
    ("GET", f"{P}/changes"): ("list_changes", "changes"),
    ("GET", f"{P}/status"): ("get_status", "status"),
    ("POST", f"{P}/sync"): ("start_sync", "sync"),
    ("PUT", f"{P}/schedule"): ("set_schedule", "sync"),
    ("GET", f"{P}/notifications"): ("get_notifications", "notifications"),
    ("PUT", f"{P}/notifications"): ("set_notifications", "notifications"),
    ("POST", f"{P}/notifications/rotate"): ("rotate_notifications_secret", "notifications"),
    ("DELETE", f"{P}/notifications"): ("delete_notifications", "notifications"),
    ("GET", f"{P}/notifications/deliveries"): ("list_deliveries", "notifications"),
    ("POST", f"{P}/inbound/{{company_id}}"): ("receive_inbound", "calls"),
    ("GET", f"{P}/calls"): ("list_calls", "calls"),
    ("GET", f"{P}/records/{{stream}}"): ("list_records", "records"),
    ("GET", f"{P}/records/calls/summary"): ("summarize_calls", "records"),
}
"""Every route of the contract: its operation id (a generated client's name for the call)
and its tag (its part of the contract)."""


def test_every_contract_route_is_in_the_document_and_no_other(app):
    routes = {
        (method, route.path): route.include_in_schema
        for route in iter_route_contexts(app.routes)
        if route.path and route.methods
        for method in route.methods - {"HEAD"}
    }
    page = f"{P}/ui"  # the connection page: a page for people, not part of the contract
    contract = {key for key in routes if key[1].startswith(P) and not key[1].startswith(page)}
    assert contract == set(OPERATIONS)
    assert all(routes[key] for key in contract), "a contract route is hidden from the schema"
    outside = {key for key, shown in routes.items() if shown and key not in contract}
    assert outside == set(), "a route outside the contract is in the schema"


def test_operations_have_clean_ids_and_a_tag_for_their_part_of_the_contract(spec):
    found = {
        (method, path): (operation["operationId"], tuple(operation["tags"]))
        for method, path, operation in operations(spec)
    }
    assert found == {key: (op, (tag,)) for key, (op, tag) in OPERATIONS.items()}


# --- what the document says --------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1_and_its_event_streams_3_2(spec):
    """OpenAPI 3.1, as Swagger UI 5 renders it; FastAPI describes each event of a stream with
    OpenAPI 3.2's `itemSchema` (which 3.1 readers skip), so the whole is valid 3.2 too."""
    assert spec["openapi"].startswith("3.1")
    validate_spec({**spec, "openapi": "3.2.0"}, cls=OpenAPIV32SpecValidator)
    streams = [p for p in spec["paths"].values() for o in p.values() if "200" in o["responses"]]
    assert any("itemSchema" in str(s) for s in streams)


WRITES = {"202", "400", "401", "404", "413", "429", "503"}


@pytest.mark.parametrize(
    ("path", "statuses"),
    [(f"{P}/jobs/{{job_id}}/events", {"200", "401", "404", "413", "429", "503"}),
     (f"{P}/events", {"200", "401", "413", "429", "503"})],
)  # fmt: skip
def test_event_streams_are_documented_as_server_sent_events(spec, path, statuses):
    responses = spec["paths"][path]["get"]["responses"]
    assert set(responses) == statuses
    assert set(responses["200"]["content"]) == {"text/event-stream"}
    event = responses["200"]["content"]["text/event-stream"]["itemSchema"]
    assert event["required"] == ["event", "data"] and event["properties"]["event"]["enum"]
    data = event["properties"]["data"]
    assert data["contentMediaType"] == "application/json"
    assert "#/components/schemas/JobView" in str(data["contentSchema"])
    assert "Invalid or expired stream ticket." in str(responses["401"])


@pytest.mark.parametrize(
    ("method", "path", "ok", "statuses"),
    [
        (
            "GET",
            f"{P}/accounts",
            "AccountsAnswer",
            {"200", "202", "400", "401", "413", "429", "503"},
        ),
        (
            "GET",
            f"{P}/companies",
            "CompaniesAnswer",
            {"200", "202", "400", "401", "404", "409", "413", "429", "503"},
        ),
        ("GET", f"{P}/companies/webhook", None, {"202", "400", "401", "404", "413", "429", "503"}),
        ("POST", f"{P}/companies/webhook", None, WRITES),
        ("PUT", f"{P}/companies/webhook", None, WRITES),
        ("GET", f"{P}/jobs/{{job_id}}", "JobAnswer", {"200", "400", "401", "404", "413", "503"}),
        ("POST", f"{P}/events/ticket", "TicketAnswer", {"200", "400", "401", "413", "503"}),
        ("GET", f"{P}/changes", "ChangesAnswer", {"200", "400", "401", "413", "503"}),
        ("GET", f"{P}/status", "StatusAnswer", {"200", "401", "413", "503"}),
        ("POST", f"{P}/sync", None, {"202", "400", "401", "404", "409", "413", "429", "503"}),
        ("PUT", f"{P}/schedule", "ScheduleAnswer", {"200", "400", "401", "413", "503"}),
        ("GET", f"{P}/notifications", "CallbackAnswer", {"200", "401", "404", "413", "503"}),
        ("PUT", f"{P}/notifications", "CallbackAnswer", {"200", "400", "401", "413", "503"}),
        ("DELETE", f"{P}/notifications", "RemovedAnswer", {"200", "401", "404", "413", "503"}),
        (
            "GET",
            f"{P}/notifications/deliveries",
            "DeliveriesAnswer",
            {"200", "400", "401", "413", "503"},
        ),
    ],
)
def test_each_route_documents_every_status_it_answers_with_its_schema(
    spec, method, path, ok, statuses
):
    responses = spec["paths"][path][method.lower()]["responses"]
    assert set(responses) == statuses
    for status, response in responses.items():
        ref = response["content"]["application/json"]["schema"]["$ref"]
        expected = {"200": ok, "202": "AcceptedAnswer"}.get(status, "ErrorAnswer")
        assert ref == f"#/components/schemas/{expected}", status


def test_no_route_is_documented_to_answer_422(spec):
    assert "'422'" not in str(spec)
    assert not [name for name in spec["components"]["schemas"] if "ValidationError" in name]


def test_every_route_but_the_receiver_takes_a_bearer_jwt_that_swagger_ui_can_send(spec):
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for method, path, operation in operations(spec):
        if path == f"{P}/inbound/{{company_id}}":  # CallRail signs it; it sends no JWT
            assert operation["security"] == [], method
            assert "Signature" in operation["responses"]["401"]["description"]
            continue
        assert operation["security"] == [{"bearerAuth": []}], (method, path)


def test_the_400_examples_are_the_spec_messages(spec):
    for (method, path), message in SPEC_MESSAGES.items():
        examples = spec["paths"][path][method.lower()]["responses"]["400"]["content"]
        assert message in examples["application/json"]["examples"]


@pytest.mark.parametrize(
    ("method", "path", "required"),
    [
        ("GET", f"{P}/accounts", set()),
        ("GET", f"{P}/companies", {"account_id"}),
        ("GET", f"{P}/companies/webhook", {"account_id", "company_id"}),
        ("GET", f"{P}/jobs/{{job_id}}", {"job_id"}),
    ],
)
def test_required_parameters_are_marked_required(spec, method, path, required):
    parameters = spec["paths"][path][method.lower()]["parameters"]
    assert {p["name"] for p in parameters if p.get("required")} == required
    assert all('"null"' not in str(p["schema"]) for p in parameters if p.get("required"))


@pytest.mark.parametrize(("method", "path"), list(SPEC_MESSAGES))
def test_a_missing_required_parameter_still_gets_the_spec_message(
    shim_url, owner, token, method, path
):
    response = call(shim_url, method, path, token)
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "errno": 400,
        "message": SPEC_MESSAGES[(method, path)],
    }


# --- what the shim answers is what the document says -------------------------------------------


def assert_documented(spec: dict, method: str, path: str, response: requests.Response) -> None:
    """The answer's status is documented for the route, and its body fits that schema."""
    documented = spec["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, response.text
    schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    validator = OAS31Validator(
        {**schema, "components": spec["components"]}, format_checker=oas31_format_checker
    )
    validator.validate(response.json())


def test_real_answers_fit_their_documented_schemas(spec, shim_url, token, worker, owner, stores):
    jobs = f"{P}/jobs/{{job_id}}"
    accepted = call(shim_url, "GET", f"{P}/accounts", token)
    assert_documented(spec, "GET", f"{P}/accounts", accepted)
    job_id = accepted.json()["data"]["job_id"]
    wait_job(stores, job_id)
    assert_documented(spec, "GET", jobs, call(shim_url, "GET", f"{P}/jobs/{job_id}", token))
    page = call(shim_url, "GET", f"{P}/accounts", token)
    assert page.status_code == 200
    assert_documented(spec, "GET", f"{P}/accounts", page)
    account = page.json()["data"]["accounts"][0]["id"]
    companies = f"{P}/companies?account_id={account}"
    job_id = call(shim_url, "GET", companies, token).json()["data"]["job_id"]
    wait_job(stores, job_id)
    listing = call(shim_url, "GET", companies + "&disabled=true", token)
    assert listing.status_code == 200
    assert_documented(spec, "GET", f"{P}/companies", listing)
    company = listing.json()["data"]["companies"][0]["id"]
    body = {"account_id": account, "company_id": company, "webhook_url": "https://x.io/h"}
    created = call(shim_url, "POST", f"{P}/companies/webhook", token, json=body)
    assert_documented(spec, "POST", f"{P}/companies/webhook", created)
    unknown = f"{P}/companies/webhook?account_id={account}&company_id=COMnothere"
    listed = call(shim_url, "GET", unknown, token)
    assert_documented(spec, "GET", f"{P}/companies/webhook", listed)
    for answer, end in ((created, "succeeded"), (listed, "failed")):
        job_id = answer.json()["data"]["job_id"]
        assert wait_job(stores, job_id).status == end
        assert_documented(spec, "GET", jobs, call(shim_url, "GET", f"{P}/jobs/{job_id}", token))
    missing = call(shim_url, "GET", f"{P}/jobs/job_nothere", token)
    assert_documented(spec, "GET", jobs, missing)
    refused = call(shim_url, "POST", f"{P}/companies/webhook", token, json={})
    assert_documented(spec, "POST", f"{P}/companies/webhook", refused)
    other = call(shim_url, "GET", f"{P}/accounts", token="x.y.z")
    assert_documented(spec, "GET", f"{P}/accounts", other)


# --- /docs without the internet ---------------------------------------------------------------


def test_docs_load_every_asset_from_the_shim_itself(shim_url):
    page = requests.get(f"{shim_url}/docs", timeout=10)
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    bundle = requests.get(shim_url + next(a for a in assets if a.endswith(".js")), timeout=10)
    assert re.search(rb'"5\.\d+\.\d+"', bundle.content), "Swagger UI 5 (renders OpenAPI 3.1)"
    for asset in assets:
        fetched = requests.get(shim_url + asset, timeout=10)
        assert fetched.status_code == 200 and fetched.content, asset
    assert "url: '/openapi.json'" in page.text


def test_redoc_is_not_offered(shim_url):
    response = requests.get(f"{shim_url}/redoc", timeout=10)
    assert response.status_code == 404
