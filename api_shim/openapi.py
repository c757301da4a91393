"""The OpenAPI document at /openapi.json: what each route of the shim really answers.

FastAPI infers a document from the route functions, and for this shim the inference is wrong:
the routes read their inputs as text (so that each bad one gets the spec's own message) and
answer with JSONResponse, so every answer would be an untyped 200, every route would seem to
answer 422 (the shim never does), no query parameter would be required, and nothing would say
that a bearer token is needed. This module keeps FastAPI's paths, parameters and request
bodies and takes the rest from ANSWERS, a table of what each route answers. A route missing
from the table is an error, so a new route cannot go undocumented.

The document is OpenAPI 3.0.3, the version the bundled Swagger UI (4.x) renders; `oas30`
rewrites the JSON Schema that pydantic writes into that dialect.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from api_shim.bodies import MSG_CREATE_REQUIRED, MSG_UPDATE_REQUIRED
from api_shim.envelope import STORE_DOWN
from api_shim.limits import MAX_BODY_BYTES, too_large_message
from api_shim.oas30 import document_30, without_null
from api_shim.presenters import PREFIX
from api_shim.routes.jobs import MAX_WAIT
from api_shim.routes.listings import MSG_ACCOUNT_REQUIRED
from api_shim.routes.webhooks import MSG_LIST_REQUIRED
from api_shim.validation import MAX_PER_PAGE
from worker.callrail.models import Account, Company
from worker.errors import API_KEY_NOT_FOUND
from worker.job import JobError, JobParams, JobStatus, JobType

OPENAPI_URL = "/openapi.json"
BEARER = "bearerAuth"


# --- what the routes answer, as models --------------------------------------------------------


class Answer(BaseModel):
    """A shape the shim answers with. Fields it does not document are refused, so that a
    test that checks real answers against the document sees a new field."""

    model_config = ConfigDict(extra="forbid")


class SnapshotInfo(Answer):
    """Which snapshot a page was read from."""

    synced_at: datetime
    stale: bool = Field(description="Older than SNAPSHOT_MAX_AGE; a refresh job is running.")
    refresh_job_id: str | None = Field(description="The job refreshing the snapshot, if any.")


class Page(Answer):
    """The paging of a listing, and the snapshot it was read from."""

    page: int
    per_page: int
    total_pages: int
    total_records: int
    snapshot: SnapshotInfo


class ListedAccount(Account):
    """A CallRail account, as CallRail sent it, with the size of its companies snapshot."""

    companies_count: int | None = Field(
        description="Companies in the account's companies snapshot; null before the first."
    )


class AccountsPage(Page):
    accounts: list[ListedAccount]


class CompaniesPage(Page):
    companies: list[Company]


class JobProgress(Answer):
    """How far a sync has come."""

    pages_done: int
    total_pages: int | None
    records: int


class JobView(Answer):
    """A job: its status, progress, and its result or error."""

    job_id: str
    type: JobType
    status: JobStatus
    params: JobParams
    progress: JobProgress
    result: dict[str, Any] | None = Field(description="What a succeeded job produced.")
    error: JobError | None = Field(description="Why it failed, or what a retrying job waits out.")
    attempts: int
    next_retry_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobAccepted(Answer):
    """The job that will produce the answer, and where to poll it."""

    job_id: str
    status: JobStatus
    status_url: str = Field(examples=[f"{PREFIX}/jobs/job_3f2a9c0d1e4b5a6f7a8b9c0d"])


class Success(Answer):
    """The envelope of a 200; each route's answer adds its `data`."""

    success: Literal[True]
    message: Literal["SUCCESS"]


class AccountsAnswer(Success):
    """A page of the caller's CallRail accounts, from their snapshot."""

    data: AccountsPage


class CompaniesAnswer(Success):
    """A page of the account's companies, from their snapshot."""

    data: CompaniesPage


class JobAnswer(Success):
    """The job."""

    data: JobView


class AcceptedAnswer(Answer):
    """The request became a job: poll `status_url` until it ends."""

    success: Literal[True]
    message: Literal["ACCEPTED"]
    data: JobAccepted


class ErrorAnswer(Answer):
    """A refusal or a failure: `errno` repeats the HTTP status."""

    success: Literal[False]
    errno: int
    message: str


# --- what each route answers ---------------------------------------------------------------------

REFUSED_WHEN = {
    400: "A parameter or field was refused (the message names it, or is the spec's own).",
    401: "The bearer token is missing, malformed, forged or expired.",
    404: "No such job for the caller.",
    413: f"The request body is over {MAX_BODY_BYTES} bytes.",
    503: "MongoDB or the job queue is unavailable; try again shortly.",
}
MESSAGES = {
    400: ("INVALID_ACCOUNT_ID",),
    401: (
        "Authorization token is required.",
        "Authorization header must be 'Bearer <token>'.",
        "Invalid token.",
        "Token has expired.",
    ),
    404: ("Job not found.",),
    413: (too_large_message(MAX_BODY_BYTES),),
    503: (STORE_DOWN,),
}
"""Messages of each status that any route can answer with (shown as examples)."""


@dataclass(frozen=True)
class Answers:
    """What one route answers."""

    ok: type[Success] | None = None
    """Its 200 answer, if it has one."""
    accepted: str | None = None
    """When it answers 202 with a job, if it does."""
    refusals: tuple[int, ...] = (400, 401, 413, 503)
    messages: tuple[str, ...] = ()
    """Its own 400 messages (the spec's first), shown as examples."""
    required: tuple[str, ...] = ()
    """Query parameters it requires. FastAPI must not check them (the route answers the spec's
    own 400), so only the document says so."""


ANSWERS: dict[tuple[str, str], Answers] = {
    ("GET", f"{PREFIX}/accounts"): Answers(
        ok=AccountsAnswer,
        accepted="No snapshot yet, or refresh=true: the job that syncs the accounts.",
        messages=(API_KEY_NOT_FOUND, f"per_page must be between 1 and {MAX_PER_PAGE}."),
    ),
    ("GET", f"{PREFIX}/companies"): Answers(
        ok=CompaniesAnswer,
        accepted="No snapshot yet, or refresh=true: the job that syncs the companies.",
        messages=(MSG_ACCOUNT_REQUIRED, API_KEY_NOT_FOUND, "account_id is not a valid id."),
        required=("account_id",),
    ),
    ("GET", f"{PREFIX}/companies/webhook"): Answers(
        accepted="Always: the job that lists the webhooks (its result holds them).",
        messages=(MSG_LIST_REQUIRED, API_KEY_NOT_FOUND),
        required=("account_id", "company_id"),
    ),
    ("POST", f"{PREFIX}/companies/webhook"): Answers(
        accepted="Always: the job that creates the webhook (its result holds it).",
        messages=(
            MSG_CREATE_REQUIRED,
            API_KEY_NOT_FOUND,
            "webhook_url must be a valid http(s) URL.",
        ),
    ),
    ("PUT", f"{PREFIX}/companies/webhook"): Answers(
        accepted="Always: the job that changes the webhook (its result holds it).",
        messages=(
            MSG_UPDATE_REQUIRED,
            API_KEY_NOT_FOUND,
            "status must be 'enabled' or 'disabled'.",
        ),
    ),
    ("GET", f"{PREFIX}/jobs/{{job_id}}"): Answers(
        ok=JobAnswer,
        refusals=(400, 401, 404, 413, 503),
        messages=(f"wait must be between 1 and {MAX_WAIT}.",),
    ),
}

BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "HS256 or RS256; claim `account_id` is the DashClicks account (24 hex), "
    "`exp` is required.",
}


# --- the document --------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Serve the app's document at /openapi.json, built at the first request (when every
    route is in). Create the app with `openapi_url=None`, so that FastAPI serves none."""

    @functools.cache
    def built() -> dict[str, Any]:
        return build(app)

    async def openapi_json() -> JSONResponse:
        return JSONResponse(built())

    app.add_api_route(OPENAPI_URL, openapi_json, methods=["GET"], include_in_schema=False)


def build(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of the app's routes that are in the schema."""
    inferred = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    models: list[type[BaseModel]] = [a.ok for a in ANSWERS.values() if a.ok is not None]
    models += [AcceptedAnswer, ErrorAnswer]
    refs, schemas = models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/components/schemas/{model}"
    )
    components = inferred.setdefault("components", {})
    # FastAPI's own schemas are kept, but for those of its 422 (the shim never answers 422).
    components["schemas"] = {
        **{k: v for k, v in components.get("schemas", {}).items() if "ValidationError" not in k},
        **schemas.get("$defs", {}),
    }
    components["securitySchemes"] = {BEARER: BEARER_SCHEME}
    ref = {model: refs[(model, "serialization")] for model in models}
    for path, operations in inferred["paths"].items():
        for method, operation in operations.items():
            answers = ANSWERS.get((method.upper(), path))
            if answers is None:
                raise LookupError(f"{method.upper()} {path} is missing from openapi.ANSWERS")
            operation["responses"] = responses(answers, ref)
            operation["security"] = [{BEARER: []}]
            mark_required(operation, answers.required, f"{method.upper()} {path}")
    return document_30(inferred)


def responses(answers: Answers, ref: dict[type[BaseModel], dict[str, str]]) -> dict[str, Any]:
    """The `responses` of a route's operation, one per status it answers."""
    found: dict[str, Any] = {}
    if answers.ok is not None:
        found["200"] = described(answers.ok.__doc__ or "", ref[answers.ok])
    if answers.accepted is not None:
        found["202"] = described(answers.accepted, ref[AcceptedAnswer])
    for status in answers.refusals:
        own = answers.messages if status == 400 else ()
        examples = {
            message: {"value": {"success": False, "errno": status, "message": message}}
            for message in own + MESSAGES[status]
        }
        found[str(status)] = described(REFUSED_WHEN[status], ref[ErrorAnswer], examples)
    return found


def described(
    description: str, schema: dict[str, str], examples: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One response: what it means, and its JSON's schema (and examples)."""
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    return {"description": description, "content": {"application/json": media}}


def mark_required(operation: dict[str, Any], names: tuple[str, ...], route: str) -> None:
    """Required parameters say so; none is nullable (a query string has no null)."""
    parameters = operation.get("parameters", [])
    missing = set(names) - {p["name"] for p in parameters}
    if missing:
        raise LookupError(f"{route} has no parameter {sorted(missing)} that ANSWERS requires")
    for parameter in parameters:
        parameter["schema"] = without_null(parameter["schema"])
        if parameter["name"] in names:
            parameter["required"] = True
