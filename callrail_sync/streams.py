"""Every CallRail stream the service keeps, declared once.

A `Stream` says what CallRail serves (path, records key, id, pagination, date filter, optional
fields) and what we do with it (how it is synced, which field its records are ordered and
filtered by, how a deletion shows). Sync (`tasks/streams.py`), storage
(`callrail_sync/stores/streams.py`), change tracking and the change feed, status, the HTTP
routes (`/records/{stream}`, `/changes?kind=`, `POST /sync`) and the CLI all read `STREAMS`:
adding a stream is a row here and its tests.

`accounts` and `companies` are rows too; their records live in the snapshots they always had
(`callrail_sync/stores/snapshots.py`, `store="snapshot"`). The others are kept per record in
`callrail_stream_records` (`store="records"`).

Facts: /work/shared/CALLRAIL_STREAMS.md (CallRail's v3 reference and the connectors that read
it). Where a fact is unconfirmed the client is tolerant (e.g. a relative page without
`page`/`total_*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Paging = Literal["offset", "relative"]
"""`offset`: `page`/`per_page` with `total_pages`; `relative`: `offset` from `next_page`
(calls only; pages do not shift when calls arrive mid-walk)."""
Sync = Literal["snapshot", "walk", "windows", "date_range"]
"""How a stream is read: `snapshot` (accounts, companies: a complete walk published at once),
`walk` (a complete walk per run, records kept one by one), `windows` (a backfill of date
windows with explicit `start_date`/`end_date`, newest first, then rescans of a trailing window),
`date_range` (like `windows`, but CallRail takes only `date_range`: conversations)."""
Deletion = Literal["disabled", "vanishes", "spam_vanishes", "never"]
"""How CallRail shows that a record went away: `disabled` (still listed with
`status: disabled`), `vanishes` (no longer listed: a complete walk that lacks it marks it
deleted), `spam_vanishes` (a call marked spam leaves the call log: a rescanned window that lacks
it marks it deleted), `never` (nothing is ever taken away)."""


@dataclass(frozen=True)
class Stream:
    name: str
    """The stream's name in our API (`/records/{name}`, `kind=`)."""
    path: str
    """CallRail's path under `/a/{account_id}/` (`/a.json` for accounts)."""
    records_key: str
    """The key of the records array in CallRail's response."""
    sync: Sync
    time_field: str | None
    """The record's time: what `since`/`until` filter on and the default order (newest
    first); None: no time (accounts)."""
    id_field: str = "id"
    paging: Paging = "offset"
    fields_always: tuple[str, ...] = ()
    """Optional fields (`fields=`) always asked for: what the summary and filters need."""
    fields_optional: tuple[str, ...] = ()
    """Optional fields a deployment may add (setting STREAM_FIELDS)."""
    deletion: Deletion = "vanishes"
    day_counts: str | None = None
    """A timeseries endpoint whose daily counts size the backfill's windows (calls)."""
    account_scoped: bool = True
    """False only for accounts (listed without a CallRail account)."""
    sortable: tuple[str, ...] = ("id",)
    """Fields `/records/{stream}?sort=` takes (with `-` for descending)."""
    filters: tuple[str, ...] = ()
    """Filters `/records/{stream}` takes beside account, company, since, until and search."""
    search_fields: tuple[str, ...] = ("name",)
    """Record fields `search=` matches (a case-insensitive substring)."""
    max_window_days: int = 31
    """The widest window the backfill asks for (windows are narrower where calls are dense)."""

    @property
    def store(self) -> Literal["snapshot", "records"]:
        return "snapshot" if self.sync == "snapshot" else "records"

    @property
    def windowed(self) -> bool:
        return self.sync in ("windows", "date_range")


CALL_FIELDS_ALWAYS = (
    "company_id",
    "company_time_zone",
    "source",
    "source_name",
    "campaign",
    "keywords",
    "medium",
    "first_call",
    "lead_status",
    "tags",
    "tracker_id",
    "created_at",
)
"""What the records filters and the summary read (answer status, direction and duration are
default keys)."""
CALL_FIELDS_OPTIONAL = (
    "landing_page_url",
    "last_requested_url",
    "referring_url",
    "referrer_domain",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "gclid",
    "fbclid",
    "msclkid",
    "ga",
    "session_uuid",
    "device_type",
    "milestones",
    "call_type",
    "value",
    "note",
    "prior_calls",
    "total_calls",
    "agent_email",
    "person_id",
    "timeline_url",
)
"""Attribution and more, asked for when a deployment lists them in STREAM_FIELDS (each costs
response size, never requests)."""

STREAMS: dict[str, Stream] = {
    s.name: s
    for s in (
        Stream(
            name="accounts",
            path="/a.json",
            records_key="accounts",
            sync="snapshot",
            time_field=None,
            account_scoped=False,
            sortable=("id", "name"),
        ),
        Stream(
            name="companies",
            path="companies.json",
            records_key="companies",
            sync="snapshot",
            time_field="created_at",
            deletion="disabled",
            sortable=("created_at", "disabled_at", "id", "name", "status", "time_zone"),
        ),
        Stream(
            name="calls",
            path="calls.json",
            records_key="calls",
            sync="windows",
            time_field="start_time",
            paging="relative",
            fields_always=CALL_FIELDS_ALWAYS,
            fields_optional=CALL_FIELDS_OPTIONAL,
            deletion="spam_vanishes",
            day_counts="calls/timeseries.json",
            sortable=("start_time", "duration", "id"),
            filters=("answer_status", "direction", "source", "first_call", "lead_status", "tag"),
            search_fields=("customer_name", "customer_phone_number", "source", "note"),
            max_window_days=31,
        ),
        Stream(
            name="form_submissions",
            path="form_submissions.json",
            records_key="form_submissions",
            sync="windows",
            time_field="submitted_at",
            fields_always=("lead_status", "tags", "form_name"),
            fields_optional=("company_name", "value", "note", "utm_source", "utm_medium")
            + ("utm_campaign", "timeline_url", "milestones"),
            sortable=("submitted_at", "id"),
            search_fields=("customer_name", "customer_email", "customer_phone_number"),
            max_window_days=31,
        ),
        Stream(
            name="conversations",
            path="text-messages.json",
            records_key="conversations",
            sync="date_range",
            time_field="last_message_at",
            fields_always=("lead_status", "source"),
            deletion="never",
            sortable=("last_message_at", "id"),
            search_fields=("customer_name", "customer_phone_number"),
        ),
        Stream(
            name="trackers",
            path="trackers.json",
            records_key="trackers",
            sync="walk",
            time_field="created_at",
            fields_optional=("campaign_name", "swap_targets"),
            deletion="disabled",
            sortable=("created_at", "name", "id"),
        ),
        Stream(
            name="tags",
            path="tags.json",
            records_key="tags",
            sync="walk",
            time_field="created_at",
            deletion="vanishes",
            sortable=("created_at", "name", "id"),
        ),
        Stream(
            name="users",
            path="users.json",
            records_key="users",
            sync="walk",
            time_field="created_at",
            deletion="vanishes",
            sortable=("created_at", "email", "id"),
            search_fields=("name", "email"),
        ),
    )
}
"""Every stream, by name, in the order status and docs show them."""

RECORD_STREAMS = tuple(s.name for s in STREAMS.values() if s.store == "records")
"""The streams kept record by record (all but accounts and companies)."""


def fields_for(s: Stream, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The optional fields a stream's requests ask for: those it always needs, then those of
    `extra` (a deployment's setting) that the stream has."""
    chosen = [f for f in extra if f in s.fields_optional and f not in s.fields_always]
    return [*s.fields_always, *dict.fromkeys(chosen)]
