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
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api_shim.answers import (
    AcceptedAnswer,
    AccountsAnswer,
    CompaniesAnswer,
    ErrorAnswer,
    JobAnswer,
    Success,
    TicketAnswer,
)
from api_shim.answers_control import (
    CallbackAnswer,
    CallsAnswer,
    ChangesAnswer,
    DeliveriesAnswer,
    ReceivedAnswer,
    RecordsAnswer,
    RemovedAnswer,
    ScheduleAnswer,
    StatusAnswer,
    SummaryAnswer,
)
from api_shim.bodies import MSG_CREATE_REQUIRED, MSG_UPDATE_REQUIRED
from api_shim.envelope import STORE_DOWN
from api_shim.limits import MAX_BODY_BYTES, too_large_message
from api_shim.oas30 import document_30, without_null
from api_shim.presenters import PREFIX
from api_shim.routes import inbound
from api_shim.routes.changes import MSG_ACCOUNT, MSG_KIND
from api_shim.routes.control import MSG_INTERVAL, MSG_SCHEDULE_REQUIRED
from api_shim.routes.jobs import MAX_WAIT
from api_shim.routes.listings import MSG_ACCOUNT_REQUIRED
from api_shim.routes.notifications import MSG_EVENTS, MSG_URL_REQUIRED, NO_CALLBACK
from api_shim.routes.webhooks import MSG_LIST_REQUIRED
from api_shim.validation import MAX_PER_PAGE
from api_shim.writes import COMPANY_NOT_FOUND
from callrail_sync import records
from callrail_sync.errors import API_KEY_NOT_FOUND, SyncPaused
from callrail_sync.feed import BAD_CURSOR

OPENAPI_URL = "/openapi.json"
GROUPS = ", ".join(records.GROUPS)
BEARER = "bearerAuth"


# --- what each route answers ---------------------------------------------------------------------

REFUSED_WHEN = {
    400: "A parameter or field was refused (the message names it, or is the spec's own).",
    401: "The bearer token is missing, malformed, forged or expired.",
    404: "No such job for the caller, or (writes) a company a fresh snapshot does not hold.",
    413: f"The request body is over {MAX_BODY_BYTES} bytes.",
    409: "The CallRail account's syncs are paused (PUT /schedule resumes them).",
    429: "Too many new jobs this minute (JOBS_PER_MINUTE), write jobs active or submitted, or "
    "event streams open (STREAMS_PER_OWNER): see Retry-After.",
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
    409: (SyncPaused().user_message,),
    413: (too_large_message(MAX_BODY_BYTES),),
    429: (
        "Too many webhook changes in progress (at most 20); wait for one to finish.",
        "Too many webhook changes (at most 60 a minute); try again shortly.",
        "Too many new jobs (at most 60 a minute); try again shortly.",
        "Too many event streams open (at most 20); close one first.",
    ),
    503: (STORE_DOWN,),
}
"""Messages of each status that any route can answer with (shown as examples)."""
TICKET_REFUSED = "Invalid or expired stream ticket."


@dataclass(frozen=True)
class Answers:
    """What one route answers."""

    ok: type[Success] | None = None
    """Its 200 answer, if it has one."""
    stream: str | None = None
    """What its 200 streams as Server-Sent Events, if it is an event stream."""
    accepted: str | None = None
    """When it answers 202 with a job, if it does."""
    refusals: tuple[int, ...] = (400, 401, 413, 503)
    messages: tuple[str, ...] = ()
    """Its own 400 messages (the spec's first), shown as examples."""
    also: tuple[tuple[int, str], ...] = ()
    """Its own messages of other statuses, shown as examples beside the common ones."""
    required: tuple[str, ...] = ()
    """Query parameters it requires. FastAPI must not check them (the route answers the spec's
    own 400), so only the document says so."""
    why: tuple[tuple[int, str], ...] = ()
    """What a status means for this route, where that differs from REFUSED_WHEN."""
    public: bool = False
    """Authenticated by other means than the bearer token (CallRail's signature)."""


def write(does: str, required: str, invalid: str) -> Answers:
    """What a webhook write answers: a job, or one of its refusals."""
    return Answers(
        accepted=f"The job that {does} the webhook (its result holds it); the same write "
        "asked again while it is active answers the same job.",
        refusals=(400, 401, 404, 413, 429, 503),
        also=((404, COMPANY_NOT_FOUND),),
        messages=(required, API_KEY_NOT_FOUND, invalid),
    )


def callback(ok: type[Success]) -> Answers:
    """What a route on the caller's existing callback answers."""
    return Answers(ok=ok, refusals=(401, 404, 413, 503), also=((404, NO_CALLBACK),))


ANSWERS: dict[tuple[str, str], Answers] = {
    ("GET", f"{PREFIX}/accounts"): Answers(
        ok=AccountsAnswer,
        accepted="No snapshot yet, or refresh=true: the job that syncs the accounts.",
        messages=(API_KEY_NOT_FOUND, f"per_page must be between 1 and {MAX_PER_PAGE}."),
        refusals=(400, 401, 413, 429, 503),
    ),
    ("GET", f"{PREFIX}/companies"): Answers(
        ok=CompaniesAnswer,
        accepted="No snapshot yet, or refresh=true: the job that syncs the companies.",
        messages=(MSG_ACCOUNT_REQUIRED, API_KEY_NOT_FOUND, "account_id is not a valid id."),
        required=("account_id",),
        refusals=(400, 401, 409, 413, 429, 503),
    ),
    ("GET", f"{PREFIX}/companies/webhook"): Answers(
        accepted="Always: the job that lists the webhooks (its result holds them).",
        messages=(MSG_LIST_REQUIRED, API_KEY_NOT_FOUND),
        required=("account_id", "company_id"),
        refusals=(400, 401, 413, 429, 503),
    ),
    ("POST", f"{PREFIX}/companies/webhook"): write(
        "creates", MSG_CREATE_REQUIRED, "webhook_url must be a valid http(s) URL."
    ),
    ("PUT", f"{PREFIX}/companies/webhook"): write(
        "changes", MSG_UPDATE_REQUIRED, "status must be 'enabled' or 'disabled'."
    ),
    ("GET", f"{PREFIX}/jobs/{{job_id}}"): Answers(
        ok=JobAnswer,
        refusals=(400, 401, 404, 413, 503),
        messages=(f"wait must be between 1 and {MAX_WAIT}.",),
    ),
    ("GET", f"{PREFIX}/jobs/{{job_id}}/events"): Answers(
        stream="`progress` (the job, as GET /jobs/{job_id} shows it) at each change, then one "
        "`status` when it ends; then the stream closes. A reconnect starts from the job as "
        "it is. Comment lines keep a quiet stream open.",
        refusals=(401, 404, 413, 429, 503),
        also=((401, TICKET_REFUSED),),
    ),
    ("GET", f"{PREFIX}/events"): Answers(
        stream="`job` (the job, as GET /jobs/{job_id} shows it) at each change of any of the "
        "caller's jobs, for as long as the connection stays open.",
        refusals=(401, 413, 429, 503),
        also=((401, TICKET_REFUSED),),
    ),
    ("POST", f"{PREFIX}/events/ticket"): Answers(
        ok=TicketAnswer,
        refusals=(401, 413, 503),
    ),
    ("GET", f"{PREFIX}/changes"): Answers(
        ok=ChangesAnswer,
        messages=(MSG_KIND, MSG_ACCOUNT, BAD_CURSOR, "modified_after must be an ISO 8601 time."),
        required=("kind",),
    ),
    ("GET", f"{PREFIX}/records/{{stream}}"): Answers(
        ok=RecordsAnswer,
        refusals=(400, 401, 404, 413, 503),
        messages=(records.MSG_ACCOUNT, records.BAD_CURSOR, "limit must be a whole number"),
        also=((404, records.unknown_stream("calendars")),),
        why=((404, "No such stream."),),
    ),
    ("GET", f"{PREFIX}/records/calls/summary"): Answers(
        ok=SummaryAnswer,
        messages=(
            "account_id is required.",
            "group_by must be one of: " + ", ".join(records.GROUPS),
        ),
        required=("account_id",),
    ),
    ("GET", f"{PREFIX}/status"): Answers(ok=StatusAnswer, refusals=(401, 413, 503)),
    ("POST", f"{PREFIX}/sync"): Answers(
        accepted="The sync (joined if one is already active).",
        refusals=(400, 401, 409, 413, 429, 503),
        messages=(MSG_KIND, MSG_ACCOUNT, API_KEY_NOT_FOUND, "reset must be true or false."),
    ),
    ("PUT", f"{PREFIX}/schedule"): Answers(
        ok=ScheduleAnswer, messages=(MSG_SCHEDULE_REQUIRED, MSG_INTERVAL)
    ),
    ("GET", f"{PREFIX}/notifications"): callback(CallbackAnswer),
    ("PUT", f"{PREFIX}/notifications"): Answers(
        ok=CallbackAnswer, messages=(MSG_URL_REQUIRED, MSG_EVENTS, "url must use https.")
    ),
    ("POST", f"{PREFIX}/notifications/rotate"): callback(CallbackAnswer),
    ("DELETE", f"{PREFIX}/notifications"): callback(RemovedAnswer),
    ("GET", f"{PREFIX}/notifications/deliveries"): Answers(
        ok=DeliveriesAnswer, messages=("limit must be between 1 and 200.",)
    ),
    ("POST", f"{PREFIX}/inbound/{{company_id}}"): Answers(
        ok=ReceivedAnswer,
        refusals=(400, 401, 413, 429, 503),
        public=True,
        also=(
            (400, inbound.OTHER_COMPANY),
            (401, inbound.BAD_SIGNATURE),
            (429, inbound.TOO_MANY_FAILURES),
        ),
        why=(
            (400, "The signed body names another company (`company_resource_id`)."),
            (
                401,
                "`Signature` is missing, or is not base64(HMAC-SHA1(the company's signing "
                "key, the raw body)), or our receiver is not registered on this company (the "
                "same answer: an outsider cannot tell which); nothing is kept.",
            ),
            (413, "The body is over INBOUND_MAX_BYTES (256 KiB unless set)."),
            (
                429,
                "More than INBOUND_FAILURES_PER_MINUTE refused deliveries from this address "
                "to this company this minute.",
            ),
        ),
    ),
    ("GET", f"{PREFIX}/calls"): Answers(
        ok=CallsAnswer,
        messages=("account_id is required.", inbound.BAD_CURSOR, "since must be an ISO 8601 time."),
        required=("account_id",),
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
            operation["security"] = [] if answers.public else [{BEARER: []}]
            mark_required(operation, answers.required, f"{method.upper()} {path}")
    return document_30(inferred)


def responses(answers: Answers, ref: dict[type[BaseModel], dict[str, str]]) -> dict[str, Any]:
    """The `responses` of a route's operation, one per status it answers."""
    found: dict[str, Any] = {}
    if answers.ok is not None:
        found["200"] = described(answers.ok.__doc__ or "", ref[answers.ok])
    if answers.stream is not None:
        events = {"text/event-stream": {"schema": {"type": "string"}}}
        found["200"] = {"description": answers.stream, "content": events}
    if answers.accepted is not None:
        found["202"] = described(answers.accepted, ref[AcceptedAnswer])
    for status in answers.refusals:
        own = answers.messages if status == 400 else ()
        own += tuple(message for code, message in answers.also if code == status)
        common = () if answers.public and status in (401, 404, 413) else MESSAGES[status]
        examples = {
            message: {"value": {"success": False, "errno": status, "message": message}}
            for message in own + common
        }
        why = dict(answers.why).get(status, REFUSED_WHEN[status])
        found[str(status)] = described(why, ref[ErrorAnswer], examples)
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
