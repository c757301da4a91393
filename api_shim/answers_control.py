"""The answers of the change feed, status, control, notification and call routes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from api_shim.answers import Answer, Success, Time
from callrail_sync.status import ListingStatus
from callrail_sync.stores.changes import Action
from callrail_sync.stores.notifications import DeliveryStatus, Notification, NotificationConfig
from callrail_sync.stores.receivers import Receiver
from callrail_sync.stores.schedules import Schedule


class ChangeItem(Answer):
    """A record's latest change: the record as CallRail last sent it, and its history."""

    id: str
    action: Action
    changed_at: Time = Field(description="last_modified_at, or deleted_at for a deletion")
    first_seen_at: Time
    last_modified_at: Time = Field(description="Moves only when CallRail's payload changed.")
    deleted_at: Time | None = Field(description="Gone from a complete walk of CallRail.")
    record: dict[str, Any]


class ChangesPage(Answer):
    kind: str = Field(description="accounts, companies, or a stream (callrail_sync.streams)")
    account_id: str | None
    changes: list[ChangeItem]
    next_cursor: str = Field(description="Pass as `cursor` for the next page (or later, to poll).")
    has_more: bool


class ChangesAnswer(Success):
    """Changes in order, oldest first, after the cursor."""

    data: ChangesPage


class ListingState(ListingStatus, Answer):
    """Where one listing stands."""


class ReceiverState(Answer):
    """A company whose call events CallRail delivers to our receiver."""

    company_id: str
    account_id: str
    state: str = Field(
        description="The Webhooks integration's state as last seen in CallRail: `active`; "
        "`disabled` (CallRail disabled it, or a user did) or `missing`: no deliveries come."
    )
    receiving: bool
    registered_at: Time | None
    reconciled_at: Time | None = Field(description="When calls were last reconciled.")
    counts: dict[str, int] = Field(
        description="received, duplicates, forged, unreadable, missed (found by reconciliation)"
    )

    @classmethod
    def of(cls, receiver: Receiver) -> ReceiverState:
        """What the owner sees of a company's receiver (never its signing key)."""
        return cls(
            company_id=receiver.company_id,
            account_id=receiver.callrail_account_id,
            state=receiver.state,
            receiving=receiver.state == "active",
            registered_at=receiver.registered_at,
            reconciled_at=receiver.reconciled_at,
            counts=receiver.counts,
        )


class StatusPage(Answer):
    generated_at: Time
    listings: list[ListingState]
    receivers: list[ReceiverState]


class StatusAnswer(Success):
    """The accounts listing, then each CallRail account's companies; and the companies whose
    call events we receive."""

    data: StatusPage


class Callback(Answer):
    url: str
    events: list[str]
    created_at: Time
    updated_at: Time
    secret: str | None = Field(
        None,
        exclude_if=lambda secret: secret is None,
        description="The signing secret: only in the answer that creates or rotates it.",
    )

    @classmethod
    def of(cls, config: NotificationConfig, *, with_secret: bool) -> Callback:
        secret = config.secret.get_secret_value() if with_secret else None
        return cls(
            url=config.url,
            events=config.events,
            created_at=config.created_at,
            updated_at=config.updated_at,
            secret=secret,
        )


class CallbackAnswer(Success):
    """The caller's notification callback."""

    data: Callback


class Removed(Answer):
    deleted: Literal[True]


class RemovedAnswer(Success):
    """The callback is gone."""

    data: Removed


class DeliveryAttempt(Answer):
    at: datetime  # as pydantic writes it (the attempt is stored as a model)
    url: str | None
    status_code: int | None
    error: str | None
    ms: float


class DeliveryView(Answer):
    delivery_id: str
    event: str
    job_id: str
    status: DeliveryStatus
    payload: dict[str, Any] = Field(description="The body sent, as JSON.")
    attempts: list[DeliveryAttempt]
    created_at: Time
    next_attempt_at: Time | None
    delivered_at: Time | None
    give_up_at: Time

    @classmethod
    def of(cls, delivery: Notification) -> DeliveryView:
        return cls(
            delivery_id=delivery.id,
            event=delivery.event,
            job_id=delivery.job_id,
            status=delivery.status,
            payload=json.loads(delivery.body),
            attempts=[DeliveryAttempt.model_validate(a.model_dump()) for a in delivery.attempts],
            created_at=delivery.created_at,
            next_attempt_at=delivery.next_attempt_at,
            delivered_at=delivery.delivered_at,
            give_up_at=delivery.give_up_at,
        )


class Deliveries(Answer):
    deliveries: list[DeliveryView]


class DeliveriesAnswer(Success):
    """The caller's recent deliveries, newest first."""

    data: Deliveries


class ScheduleView(Answer):
    account_id: str
    paused: bool
    interval_seconds: int | None
    updated_at: Time | None

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleView:
        return cls(
            account_id=schedule.callrail_account_id,
            paused=schedule.paused,
            interval_seconds=schedule.interval_seconds,
            updated_at=schedule.updated_at,
        )


class ScheduleAnswer(Success):
    """The account's schedule, as it is now."""

    data: ScheduleView


class Received(Answer):
    received: Literal[True]
    duplicate: bool = Field(description="This delivery was kept before; it is kept once.")
    event: str = Field(
        description="pre_call, post_call, updated_call, form_captured; `unreadable`: signed "
        "but not a JSON object (kept as it came)."
    )


class ReceivedAnswer(Success):
    """The delivery is kept (before this answer was sent); it becomes an event shortly."""

    data: Received


class CallItem(Answer):
    id: str
    event: str = Field(description="pre_call, post_call or updated_call")
    call_id: str = Field(description="CallRail's id of the call (`CAL…`, or an old numeric id)")
    account_id: str
    company_id: str
    source: Literal["webhook", "reconciled"] = Field(
        description="`reconciled`: CallRail listed the call but never delivered it to us."
    )
    received_at: Time
    start_time: Time | None
    call: dict[str, Any] = Field(description="What CallRail sent of the call.")
    changes: list[Any] = Field(description="What changed (updated_call only).")


class CallsPage(Answer):
    account_id: str
    calls: list[CallItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")
    has_more: bool


class CallsAnswer(Success):
    """The caller's call events, newest first."""

    data: CallsPage


class RecordsPage(Answer):
    stream: str
    account_id: str | None
    records: list[dict[str, Any]] = Field(
        description="Each as CallRail last sent it (a call merged with what our receiver's "
        "deliveries said), with `tracking`: first_seen_at, last_modified_at, last_action, "
        "sources (history, webhook)."
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
    has_more: bool


class RecordsAnswer(Success):
    """One page of a stream's records, from our own store."""

    data: RecordsPage


class CallTotals(Answer):
    calls: int
    answered: int
    missed: int
    first_time_callers: int
    average_duration: float = Field(description="Seconds.")
    leads: int


class CallGroup(CallTotals):
    key: str


class CallsSummary(Answer):
    account_id: str
    company_id: str | None
    since: str = Field(description="The first day counted (each call in its company's zone).")
    until: str = Field(description="The day after the last day counted.")
    group_by: str | None
    total: CallTotals
    groups: list[CallGroup]


class SummaryAnswer(Success):
    """Totals of the calls, from roll-ups kept as calls are written (no CallRail request)."""

    data: CallsSummary
