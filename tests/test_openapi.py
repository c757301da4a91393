"""The OpenAPI document tells the truth about the shim, and /docs shows it without the internet."""

from __future__ import annotations

import re

import pytest
import requests
from fastapi.routing import iter_route_contexts
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec

from api_shim.app import create_app
from api_shim.oas30 import NULL_30, schema_30
from api_shim.openapi import ANSWERS, build
from api_shim.presenters import PREFIX as P
from api_shim.routes.ui import UI_PATH

from .conftest import wait_job

SPEC_MESSAGES = {
    ("GET", f"{P}/companies"): "Callrail account id is required.",
    ("GET", f"{P}/companies/webhook"): "Callrail account id and company id are required.",
}


@pytest.fixture
def app(runtime, queue):
    return create_app(runtime.settings, runtime=runtime, queue=queue)


@pytest.fixture
def spec(shim_url) -> dict:
    response = requests.get(f"{shim_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    return response.json()


def operations(spec: dict):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def call(base: str, method: str, path: str, token: str, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, base + path, headers=headers, timeout=30, **kw)


# --- the table covers the app ------------------------------------------------------------------


def test_every_route_of_the_app_is_in_the_answer_table_and_no_other(app):
    routes = {
        (method, route.path): route.include_in_schema
        for route in iter_route_contexts(app.routes)
        if route.path and route.methods
        for method in route.methods - {"HEAD"}
    }
    # The connection page (HTML for people, api_shim/routes/ui.py) is not part of the contract.
    contract = {key for key in routes if key[1].startswith(P) and not key[1].startswith(UI_PATH)}
    assert contract == set(ANSWERS)
    assert all(routes[key] for key in contract), "a contract route is hidden from the schema"
    outside = {key for key, shown in routes.items() if shown and key not in contract}
    assert outside == set(), "a route outside the contract is in the schema"


def test_a_route_missing_from_the_table_stops_the_document(app):
    app.add_api_route(f"{P}/texts", lambda: None, methods=["GET"])
    with pytest.raises(LookupError, match=f"GET {P}/texts is missing from openapi.ANSWERS"):
        build(app)


# --- what the document says --------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_0_which_the_bundled_swagger_ui_renders(spec):
    assert spec["openapi"] == "3.0.3"
    validate_spec(spec)


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
            {"200", "202", "400", "401", "409", "413", "429", "503"},
        ),
        ("GET", f"{P}/companies/webhook", None, {"202", "400", "401", "413", "429", "503"}),
        ("POST", f"{P}/companies/webhook", None, WRITES),
        ("PUT", f"{P}/companies/webhook", None, WRITES),
        ("GET", f"{P}/jobs/{{job_id}}", "JobAnswer", {"200", "400", "401", "404", "413", "503"}),
        ("POST", f"{P}/events/ticket", "TicketAnswer", {"200", "401", "413", "503"}),
        ("GET", f"{P}/changes", "ChangesAnswer", {"200", "400", "401", "413", "503"}),
        ("GET", f"{P}/status", "StatusAnswer", {"200", "401", "413", "503"}),
        ("POST", f"{P}/sync", None, {"202", "400", "401", "409", "413", "429", "503"}),
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
    assert "422" not in str(spec)
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
    assert all("nullable" not in p["schema"] for p in parameters)


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
    validator = OAS30Validator(
        {**schema, "components": spec["components"]}, format_checker=oas30_format_checker
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


# --- the 3.0 dialect ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "rewritten"),
    [
        (
            {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "T"},
            {"type": "string", "title": "T", "nullable": True},
        ),
        (
            {"anyOf": [{"$ref": "#/components/schemas/E"}, {"type": "null"}], "description": "d"},
            {"description": "d", "anyOf": [{"$ref": "#/components/schemas/E"}, NULL_30]},
        ),
        ({"type": "boolean", "const": True}, {"type": "boolean", "enum": [True]}),
        ({"type": "string", "examples": ["a", "b"]}, {"type": "string", "example": "a"}),
        (
            {
                "type": "object",
                "properties": {"const": {"const": 1}, "examples": {"type": "array"}},
            },
            {
                "type": "object",
                "properties": {"const": {"enum": [1]}, "examples": {"type": "array"}},
            },
        ),
        (
            {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
            {"type": "array", "items": {"type": "integer", "nullable": True}},
        ),
    ],
    ids=["nullable type", "nullable reference", "const", "examples", "property names", "items"],
)
def test_json_schema_is_rewritten_in_openapi_3_0_terms(written, rewritten):
    assert schema_30(written) == rewritten


def test_a_nullable_reference_takes_null_and_the_referenced_shape_only():
    components = {"schemas": {"E": {"type": "object", "required": ["x"]}}}
    schema = schema_30({"anyOf": [{"$ref": "#/components/schemas/E"}, {"type": "null"}]})
    validator = OAS30Validator({**schema, "components": components})
    assert validator.is_valid(None) and validator.is_valid({"x": 1})
    assert not validator.is_valid({}) and not validator.is_valid("text")


# --- /docs without the internet ---------------------------------------------------------------


def test_docs_load_every_asset_from_the_shim_itself(shim_url):
    page = requests.get(f"{shim_url}/docs", timeout=10)
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        fetched = requests.get(shim_url + asset, timeout=10)
        assert fetched.status_code == 200 and fetched.content, asset
    assert "url: '/openapi.json'" in page.text


def test_redoc_is_not_offered(shim_url):
    response = requests.get(f"{shim_url}/redoc", timeout=10)
    assert response.status_code == 404
