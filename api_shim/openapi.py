"""What the routes declare of their refusals, and the little FastAPI cannot infer.

Each route declares its answers where it is defined: its 200 model (`response_model`), its 202
and refusals (`responses=refused(...)`). FastAPI writes /openapi.json from them; `install`
takes out only what the shim never answers (422: a refused input is the spec's 400).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api_shim.answers import AcceptedAnswer, ErrorAnswer
from api_shim.envelope import STORE_DOWN
from api_shim.limits import MAX_BODY_BYTES, too_large_message
from callrail_sync.errors import SyncPaused

REFUSED_WHEN = {
    400: "A parameter or field was refused (the message names it, or is the spec's own).",
    401: "The bearer token is missing, malformed, forged or expired.",
    404: "No such job for the caller, or a CallRail account or company a fresh snapshot "
    "does not hold.",
    409: "The CallRail account's syncs are paused (PUT /schedule resumes them).",
    413: f"The request body is over {MAX_BODY_BYTES} bytes.",
    429: "Too many new jobs this minute (JOBS_PER_MINUTE), write jobs active or submitted, or "
    "event streams open (STREAMS_PER_OWNER): see Retry-After.",
    503: "MongoDB or the job queue is unavailable; try again shortly.",
}
COMMON = {
    401: (
        "Authorization token is required.",
        "Authorization header must be 'Bearer <token>'.",
        "Invalid token.",
        "Token has expired.",
    ),
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
ERROR_REF = {"$ref": "#/components/schemas/ErrorAnswer"}


def refused(
    statuses: tuple[int, ...],
    messages: dict[int, tuple[str, ...]] | None = None,
    *,
    why: dict[int, str] | None = None,
    accepted: str | None = None,
    public: bool = False,
) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: its 202 beside a 200 (`accepted`: when), and each refusal
    with the route's own messages first, then the common ones (not for a `public` route's 401
    and 413, which CallRail, not the dashboard, sees)."""
    found: dict[int | str, dict[str, Any]] = {}
    if accepted is not None:
        found[202] = {"model": AcceptedAnswer, "description": accepted}
    for status in statuses:
        own = (messages or {}).get(status, ())
        common = () if public and status in (401, 413) else COMMON.get(status, ())
        examples = {
            m: {"value": {"success": False, "errno": status, "message": m}} for m in own + common
        }
        media: dict[str, Any] = {"schema": ERROR_REF}
        if examples:
            media["examples"] = examples
        description = (why or {}).get(status, REFUSED_WHEN[status])
        found[status] = {"description": description, "content": {"application/json": media}}
    return found


def jobs_only(accepted: str) -> dict[str, Any]:
    """The route arguments of a route that answers only 202 and a job."""
    return {"status_code": 202, "response_model": AcceptedAnswer, "response_description": accepted}


def install(app: FastAPI) -> None:
    """Build the document once, from the routes, without FastAPI's 422 (never answered)."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for operations in spec["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            schemas = spec["components"]["schemas"]
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            schemas["ErrorAnswer"] = ErrorAnswer.model_json_schema(mode="serialization")
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


TICKET_REFUSED = "Invalid or expired stream ticket."


def stream_of(description: str, events: dict[str, str]) -> dict[str, Any]:
    """The 200 of an event stream: each event's name, and its data: JSON of the named schema
    (OpenAPI 3.2's `itemSchema`, which FastAPI writes for event streams)."""
    shapes = [{"$ref": f"#/components/schemas/{name}"} for name in dict.fromkeys(events.values())]
    item = {
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(events)},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": shapes[0] if len(shapes) == 1 else {"anyOf": shapes},
            },
        },
    }
    return {"description": description, "content": {"text/event-stream": {"itemSchema": item}}}
