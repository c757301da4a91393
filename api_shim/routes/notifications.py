"""The caller's sync notifications: a callback URL told, with a signed POST, when a job ends.

The signing secret is in the answer of the PUT that creates the callback and of a rotation,
and never again.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api_shim import validation as check
from api_shim.bodies import openapi_body, openapi_query
from api_shim.deps import Owner, RawBody, Svc
from api_shim.envelope import success
from api_shim.presenters import PREFIX, iso
from callrail_sync.errors import NotFound, ValidationFailed
from callrail_sync.stores.notifications import EVENTS, Notification, NotificationConfig
from callrail_sync.urls import check_url

MSG_URL_REQUIRED = "url is required."
MSG_EVENTS = f"events must be a non-empty list of: {', '.join(EVENTS)}."
NO_CALLBACK = "No notification callback is set."
router = APIRouter(prefix=PREFIX)


class CallbackBody(BaseModel):
    """Body of PUT /notifications."""

    url: str = Field(examples=["https://dashboard.example.com/hooks/callrail-sync"])
    events: list[str] | None = Field(
        None, examples=[list(EVENTS)], description="Default: every event."
    )

    @staticmethod
    def checked(body: dict[str, Any], allow_private: bool) -> tuple[str, list[str]]:
        if not check.present(body, "url"):
            raise ValidationFailed(MSG_URL_REQUIRED)
        url = check_url(body["url"], "url", allow_private=allow_private)
        events = body.get("events")
        if events is None:
            return url, list(EVENTS)
        if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
            raise ValidationFailed(MSG_EVENTS)
        return url, list(dict.fromkeys(events))


class DeliveriesQuery(BaseModel):
    limit: str | None = Field(None, description="1 to 200, default 50")


def callback_view(config: NotificationConfig, *, with_secret: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "url": config.url,
        "events": config.events,
        "created_at": iso(config.created_at),
        "updated_at": iso(config.updated_at),
    }
    if with_secret:
        view["secret"] = config.secret.get_secret_value()
    return view


def shown(config: NotificationConfig | None, *, with_secret: bool) -> JSONResponse:
    """The callback, or the 404 that says there is none."""
    if config is None:
        raise NotFound(NO_CALLBACK)
    return success(callback_view(config, with_secret=with_secret))


def delivery_view(delivery: Notification) -> dict[str, Any]:
    return {
        "delivery_id": delivery.id,
        "event": delivery.event,
        "job_id": delivery.job_id,
        "status": delivery.status,
        "payload": json.loads(delivery.body),
        "attempts": [a.model_dump(mode="json") for a in delivery.attempts],
        "created_at": iso(delivery.created_at),
        "next_attempt_at": iso(delivery.next_attempt_at),
        "delivered_at": iso(delivery.delivered_at),
        "give_up_at": iso(delivery.give_up_at),
    }


@router.get("/notifications", summary="The caller's notification callback (without its secret)")
async def get_callback(owner: Owner, svc: Svc) -> JSONResponse:
    config = await run_in_threadpool(svc.runtime.stores.notifications.config, owner)
    return shown(config, with_secret=False)


@router.put(
    "/notifications",
    summary="Set the callback told when a job ends (its secret is shown once, on creation)",
    openapi_extra=openapi_body(CallbackBody),
)
async def put_callback(owner: Owner, svc: Svc, raw: RawBody) -> JSONResponse:
    allow_private = svc.runtime.settings.allow_private_urls
    url, events = CallbackBody.checked(check.json_object(raw), allow_private)
    store = svc.runtime.stores.notifications
    config, created = await run_in_threadpool(store.configure, owner, url, events)
    return success(callback_view(config, with_secret=created))


@router.post("/notifications/rotate", summary="A new signing secret (shown once)")
async def rotate_secret(owner: Owner, svc: Svc) -> JSONResponse:
    config = await run_in_threadpool(svc.runtime.stores.notifications.rotate, owner)
    return shown(config, with_secret=True)


@router.delete("/notifications", summary="Remove the callback (pending deliveries stop)")
async def delete_callback(owner: Owner, svc: Svc) -> JSONResponse:
    if not await run_in_threadpool(svc.runtime.stores.notifications.remove, owner):
        raise NotFound(NO_CALLBACK)
    return success({"deleted": True})


@router.get(
    "/notifications/deliveries",
    summary="Recent deliveries to the callback, each with its attempts",
    openapi_extra=openapi_query(DeliveriesQuery),
)
async def deliveries(request: Request, owner: Owner, svc: Svc) -> JSONResponse:
    q = DeliveriesQuery.model_validate(dict(request.query_params))
    limit = check.page_number(q.limit, "limit", 50, 200)
    found = await run_in_threadpool(svc.runtime.stores.notifications.recent, owner, limit)
    return success({"deliveries": [delivery_view(d) for d in found]})
