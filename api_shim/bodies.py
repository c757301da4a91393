"""The bodies of the webhook writes. The spec names one message for missing fields, so a body
is first checked for presence (one message for all of them), then each value on its own."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from api_shim.validation import AccountId, CompanyId, Events, WebhookId, present, text

MSG_CREATE_REQUIRED = "Callrail account id, company id and webhook url are required."
MSG_UPDATE_REQUIRED = (
    "Callrail account id, company id, webhook id and webhook url or status are required."
)


def _status(raw: Any) -> str | None:
    if raw in (None, ""):
        return None
    if raw not in ("enabled", "disabled"):
        raise ValueError("status must be 'enabled' or 'disabled'.")
    return str(raw)


Status = Annotated[Literal["enabled", "disabled"] | None, BeforeValidator(_status)]
_url = text("webhook_url")
Url = Annotated[str | None, BeforeValidator(lambda raw: None if raw is None else _url(raw))]


class WebhookCreate(BaseModel):
    """Body of POST /companies/webhook."""

    account_id: Annotated[AccountId, Field(examples=["470306151"])]
    company_id: Annotated[CompanyId, Field(examples=["COM8154748ae6bd4e278a7cddd38a662f4f"])]
    events: Annotated[Events | None, Field(examples=[["call.completed", "call.received"]])] = None
    webhook_url: Annotated[
        Url,
        Field(
            examples=["https://dashclicks.com/api/webhooks/callrail"],
            description="Where CallRail sends the events. Left out (where the service has a "
            "PUBLIC_BASE_URL): this service's own receiver, for every call and form event "
            "(read them with GET /calls).",
        ),
    ] = None
    status: Annotated[
        Status,
        Field(
            examples=["enabled"],
            description="`enabled`: also enable the company's webhooks if they are disabled in "
            "CallRail (else a webhook made there says it will not fire).",
        ),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _required(cls, body: Any) -> Any:
        # A present but empty webhook_url is not "left out" (that is our own receiver).
        if not present(body, "account_id", "company_id") or body.get("webhook_url") == "":
            raise ValueError(MSG_CREATE_REQUIRED)
        return body


class WebhookUpdate(BaseModel):
    """Body of PUT /companies/webhook: webhook_url and/or status."""

    account_id: AccountId
    company_id: CompanyId
    webhook_id: Annotated[WebhookId, Field(examples=["web_3f2a9c0d1e4b5a6f"])]
    webhook_url: Url = None
    status: Annotated[Status, Field(examples=["disabled"])] = None

    @model_validator(mode="before")
    @classmethod
    def _required(cls, body: Any) -> Any:
        change = present(body, "webhook_url") or present(body, "status")
        given = present(body, "account_id", "company_id", "webhook_id")
        if not (given and change) or body.get("webhook_url") == "":
            raise ValueError(MSG_UPDATE_REQUIRED)
        return body
