"""The bodies of the write routes: documented as models, checked field by field.

The spec names its own message for missing fields, so a body is first checked for presence
(one message for all of them), then each value is checked on its own (a message per field).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from api_shim import validation as check
from callrail_sync.callrail.webhooks import MOVE_RECEIVER, RECEIVER_EVENTS
from callrail_sync.errors import ValidationFailed
from callrail_sync.job import JobParams
from callrail_sync.urls import check_url, receiver_url

MSG_CREATE_REQUIRED = "Callrail account id, company id and webhook url are required."
MSG_UPDATE_REQUIRED = (
    "Callrail account id, company id, webhook id and webhook url or status are required."
)


class WebhookCreate(BaseModel):
    """Body of POST /companies/webhook."""

    account_id: str = Field(examples=["470306151"])
    company_id: str = Field(examples=["COM8154748ae6bd4e278a7cddd38a662f4f"])
    webhook_url: str | None = Field(
        None,
        examples=["https://dashclicks.com/api/webhooks/callrail"],
        description="Where CallRail sends the events. Left out (where the service has a "
        "PUBLIC_BASE_URL): this service's own receiver, for every call and form event "
        "(read them with GET /calls).",
    )
    events: list[str] | None = Field(None, examples=[["call.completed", "call.received"]])
    status: str | None = Field(
        None,
        examples=["enabled"],
        description="`enabled`: also enable the company's webhooks if they are disabled in "
        "CallRail (else a webhook made there says it will not fire).",
    )

    @staticmethod
    def params(
        body: dict[str, Any], allow_private: bool = False, public_base_url: str | None = None
    ) -> JobParams:
        """The job parameters of a create request, or the error that refuses it. Without a
        URL, our own receiver's (when the service has a public address)."""
        url_given = check.present(body, "webhook_url")
        if (
            not check.present(body, "account_id", "company_id")
            or body.get("webhook_url") == ""  # present but empty is not "left out"
            or not (url_given or public_base_url)
        ):
            raise ValidationFailed(MSG_CREATE_REQUIRED)
        callrail_account_id, company_id = company_ref(body)
        ours = receiver_url(public_base_url, company_id)
        events = check.events(body.get("events"))
        if not url_given:
            url, events = ours, events or list(RECEIVER_EVENTS)
        elif body["webhook_url"] == ours:
            url = ours  # our own receiver is not a user's URL: the URL policy is not for it
        else:
            url = check_url(body["webhook_url"], "webhook_url", allow_private=allow_private)
        return JobParams(
            callrail_account_id=callrail_account_id,
            company_id=company_id,
            webhook_url=url,
            events=events,
            status=webhook_status(body.get("status")),
        )


class WebhookUpdate(BaseModel):
    """Body of PUT /companies/webhook: webhook_url and/or status."""

    account_id: str
    company_id: str
    webhook_id: str = Field(examples=["web_3f2a9c0d1e4b5a6f"])
    webhook_url: str | None = None
    status: str | None = Field(None, examples=["disabled"])

    @staticmethod
    def params(
        body: dict[str, Any], allow_private: bool = False, public_base_url: str | None = None
    ) -> JobParams:
        """The job parameters of an update request, or the error that refuses it."""
        has_change = check.present(body, "webhook_url") or check.present(body, "status")
        if (
            not check.present(body, "account_id", "company_id", "webhook_id")
            or not has_change
            or body.get("webhook_url") == ""
        ):
            raise ValidationFailed(MSG_UPDATE_REQUIRED)
        callrail_account_id, company_id = company_ref(body)
        webhook_id = check.callrail_id(body["webhook_id"], "webhook_id")
        url = body.get("webhook_url")
        if url not in (None, "") and url == receiver_url(public_base_url, company_id):
            raise ValidationFailed(MOVE_RECEIVER)
        if url not in (None, ""):
            url = check_url(url, "webhook_url", allow_private=allow_private)
        else:
            url = None
        status = webhook_status(body.get("status"))
        return JobParams(
            callrail_account_id=callrail_account_id,
            company_id=company_id,
            webhook_id=webhook_id,
            webhook_url=url,
            status=status,
        )


def webhook_status(value: Any) -> str | None:
    """`enabled`, `disabled`, or not given."""
    if value in (None, ""):
        return None
    if value not in ("enabled", "disabled"):
        raise ValidationFailed("status must be 'enabled' or 'disabled'.")
    return str(value)


def company_ref(source: dict[str, Any]) -> tuple[str, str]:
    """The checked CallRail account and company ids of a request."""
    return (
        check.callrail_id(source.get("account_id"), "account_id"),
        check.callrail_id(source.get("company_id"), "company_id"),
    )


def openapi_query(model: type[BaseModel], required: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The OpenAPI query parameters of a route that reads its query itself (so that every bad
    value gets the spec's envelope and message, not FastAPI's 422)."""
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": field.description or "",
            "schema": {"type": "string"},
        }
        for name, field in model.model_fields.items()
    ]
    return {"parameters": parameters}


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its JSON itself."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
