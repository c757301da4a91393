"""The calls API and a Webhooks integration's signing key: what reconciliation and the receiver
read from CallRail.

Calls are listed with relative pagination (`relative_pagination=true`): CallRail answers
`has_next_page` and a `next_page` URL whose `offset` names the place after the last call sent,
so calls that arrive during the walk neither shift nor repeat its pages. Only the `offset` of
`next_page` is used: the request goes to our own base URL with our key, never to a host a
response named.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from callrail_sync import errors
from callrail_sync.callrail.client import CallRailClient, segment
from callrail_sync.streams import STREAMS

MAX_CALLS = 100_000
"""A walk of one window that has read this many calls and not ended is refused (400 pages of
250)."""


def signing_key(
    client: CallRailClient, callrail_account_id: str, integration_id: str
) -> str | None:
    """The key CallRail signs the integration's deliveries with (only sent when asked for)."""
    path = f"/a/{segment(callrail_account_id)}/integrations/{segment(integration_id)}.json"
    body = client.request("GET", path, params={"fields": "signing_key"})
    key = body.get("signing_key") if isinstance(body, dict) else None
    return key if isinstance(key, str) and key else None


def iter_calls(
    client: CallRailClient,
    callrail_account_id: str,
    start: datetime,
    end: datetime,
    company_id: str | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The account's calls that started between `start` and `end`, page by page."""
    path = f"/a/{segment(callrail_account_id)}/calls.json"
    params: dict[str, Any] = {
        "relative_pagination": "true",
        "per_page": client.page_size,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        # company_id, tags... are optional fields: without them a call names no company.
        "fields": ",".join(STREAMS["calls"].fields_always),
        "time_zone": "UTC",
    }
    if company_id:
        params["company_id"] = company_id
    offsets: set[str] = set()
    pages = client.pages_for(MAX_CALLS)
    for _ in range(pages):
        body = client.request("GET", path, params=params)
        if not isinstance(body, dict) or not isinstance(body.get("calls", []), list):
            raise errors.ServerError("unexpected response body for calls", status=200)
        yield [c for c in body.get("calls") or [] if isinstance(c, dict)]
        offset = next_offset(body)
        if offset is None:
            return
        if offset in offsets:
            raise errors.ServerError("CallRail sent the same next page twice", status=200)
        offsets.add(offset)
        params = {**params, "offset": offset}
    raise errors.ServerError(f"more than {pages} pages of calls", status=200)


def next_offset(body: dict[str, Any]) -> str | None:
    """The `offset` of the next page, or None when this was the last."""
    next_page = body.get("next_page")
    if not body.get("has_next_page") or not isinstance(next_page, str):
        return None
    values = parse_qs(urlsplit(next_page).query).get("offset")
    return values[0] if values else None
