"""The caller's sync notifications: a callback URL told, with a signed POST, when a job ends.

The signing secret is in the answer of the PUT that creates the callback and of a rotation,
and never again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, BeforeValidator, Field
from starlette.concurrency import run_in_threadpool

from api_shim.answers import PREFIX
from api_shim.answers_control import (
    Callback,
    CallbackAnswer,
    Deliveries,
    DeliveriesAnswer,
    DeliveryView,
    Removed,
    RemovedAnswer,
)
from api_shim.deps import Owner, Svc
from api_shim.openapi import refused
from api_shim.validation import Checked, json_body, openapi_body, text, whole
from callrail_sync.errors import NotFound
from callrail_sync.stores.notifications import EVENTS, NotificationConfig
from callrail_sync.urls import check_url

MSG_URL_REQUIRED = "url is required."
MSG_EVENTS = f"events must be a non-empty list of: {', '.join(EVENTS)}."
NO_CALLBACK = "No notification callback is set."
router = APIRouter(prefix=PREFIX, tags=["notifications"])
ON_THE_CALLBACK = refused((401, 404, 413, 503), {404: (NO_CALLBACK,)})


def _events(raw: Any) -> list[str]:
    if raw is None:
        return list(EVENTS)
    if not isinstance(raw, list) or not raw or any(e not in EVENTS for e in raw):
        raise ValueError(MSG_EVENTS)
    return list(dict.fromkeys(raw))


class CallbackBody(Checked):
    """Body of PUT /notifications."""

    required, missing = ("url",), MSG_URL_REQUIRED

    url: Annotated[
        str,
        Field(examples=["https://dashboard.example.com/hooks/callrail-sync"]),
        BeforeValidator(text("url")),
    ]
    events: Annotated[
        list[str],
        Field(examples=[list(EVENTS)], description="Default: every event."),
        BeforeValidator(_events),
    ] = list(EVENTS)


class DeliveriesQuery(BaseModel):
    limit: Annotated[
        int,
        Field(ge=1, le=200, description="1 to 200, default 50"),
        BeforeValidator(whole("limit", 50, 200)),
    ] = 50


def shown(config: NotificationConfig | None, *, with_secret: bool) -> CallbackAnswer:
    """The callback, or the 404 that says there is none."""
    if config is None:
        raise NotFound(NO_CALLBACK)
    return CallbackAnswer(data=Callback.of(config, with_secret=with_secret))


@router.get(
    "/notifications",
    summary="The caller's notification callback (without its secret)",
    response_model=CallbackAnswer,
    responses=ON_THE_CALLBACK,
)
async def get_notifications(owner: Owner, svc: Svc) -> Any:
    config = await run_in_threadpool(svc.runtime.stores.notifications.config, owner)
    return shown(config, with_secret=False)


@router.put(
    "/notifications",
    summary="Set the callback told when a job ends (its secret is shown once, on creation)",
    response_model=CallbackAnswer,
    responses=refused(
        (400, 401, 413, 503), {400: (MSG_URL_REQUIRED, MSG_EVENTS, "url must use https.")}
    ),
    openapi_extra=openapi_body(CallbackBody),
)
async def set_notifications(
    owner: Owner,
    svc: Svc,
    body: Annotated[CallbackBody, Depends(json_body(CallbackBody))],
) -> Any:
    url = check_url(body.url, "url", allow_private=svc.runtime.settings.allow_private_urls)
    store = svc.runtime.stores.notifications
    config, created = await run_in_threadpool(store.configure, owner, url, body.events)
    return shown(config, with_secret=created)


@router.post(
    "/notifications/rotate",
    summary="A new signing secret (shown once)",
    response_model=CallbackAnswer,
    responses=ON_THE_CALLBACK,
)
async def rotate_notifications_secret(owner: Owner, svc: Svc) -> Any:
    grace = svc.runtime.settings.notify_secret_grace
    config = await run_in_threadpool(svc.runtime.stores.notifications.rotate, owner, grace)
    return shown(config, with_secret=True)


@router.delete(
    "/notifications",
    summary="Remove the callback (pending deliveries stop)",
    response_model=RemovedAnswer,
    responses=ON_THE_CALLBACK,
)
async def delete_notifications(owner: Owner, svc: Svc) -> Any:
    if not await run_in_threadpool(svc.runtime.stores.notifications.remove, owner):
        raise NotFound(NO_CALLBACK)
    return RemovedAnswer(data=Removed(deleted=True))


@router.get(
    "/notifications/deliveries",
    summary="Recent deliveries to the callback, each with its attempts",
    response_model=DeliveriesAnswer,
    responses=refused((400, 401, 413, 503), {400: ("limit must be between 1 and 200.",)}),
)
async def list_deliveries(owner: Owner, svc: Svc, q: Annotated[DeliveriesQuery, Query()]) -> Any:
    found = await run_in_threadpool(svc.runtime.stores.notifications.recent, owner, q.limit)
    return DeliveriesAnswer(data=Deliveries(deliveries=[DeliveryView.of(d) for d in found]))
