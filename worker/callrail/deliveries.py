"""What CallRail POSTs to a webhook receiver: how it is signed, which event it is, and what of it
we keep. Pure functions; the shim's receiver and the normalizing task share them.

CallRail signs each delivery with the company's signing key: the `Signature` header is
base64(HMAC-SHA1(key, raw body)). Only the raw bytes verify: a body parsed and serialized again
differs (spacing, key order, escapes), so nothing here is ever computed from parsed JSON.

A delivery does not name its event. The receiver tells them apart by what CallRail puts in
each: a call-modified delivery carries `changes`; a form submission carries form fields; a
pre-call delivery is sent while the phone rings, before the call has a duration; the post-call
one has it (0 for a call nobody answered).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any, Literal

Event = Literal["pre_call", "post_call", "updated_call", "form_captured"]
CALL_EVENTS: tuple[Event, ...] = ("pre_call", "post_call", "updated_call")
FORM_FIELDS = ("form_data", "form_url", "submitted_at")
CALL_FIELDS = (
    "answered",
    "business_phone_number",
    "customer_city",
    "customer_name",
    "customer_phone_number",
    "customer_state",
    "direction",
    "duration",
    "lead_status",
    "note",
    "recording",
    "source_name",
    "start_time",
    "tags",
    "tracking_phone_number",
    "value",
    "voicemail",
)
"""What a call event keeps of a payload besides ids and times (the raw body stays in the inbox)."""


def sign(key: str, raw: bytes) -> str:
    """The `Signature` CallRail sends with `raw`, signed with a company's key."""
    digest = hmac.new(key.encode(), raw, hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify(key: str | None, raw: bytes, header: str | None) -> bool:
    """Whether `header` is CallRail's signature of exactly these bytes (constant time)."""
    if not key or not header:
        return False
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, hmac.new(key.encode(), raw, hashlib.sha1).digest())


def parse(raw: bytes) -> dict[str, Any] | None:
    """The delivery's JSON object, or None when the body is not one."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def event_of(payload: dict[str, Any]) -> Event:
    if isinstance(payload.get("changes"), list):
        return "updated_call"
    if any(name in payload for name in FORM_FIELDS) and "call_type" not in payload:
        return "form_captured"
    return "pre_call" if payload.get("duration") in (None, "") else "post_call"


def resource_id(payload: dict[str, Any]) -> str:
    """The call's (or form's) id: `resource_id` where CallRail sends one (`CAL…`), else the
    legacy numeric `id`."""
    for name in ("resource_id", "id"):
        value = payload.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return ""


def changes_of(payload: dict[str, Any]) -> list[Any]:
    changes = payload.get("changes")
    return changes if isinstance(changes, list) else []


def dedupe_key(company_id: str, event: str, resource: str, changes: list[Any]) -> str:
    """One delivery, however often CallRail sends it: same company, event, call and changes."""
    what = json.dumps([company_id, event, resource, changes], sort_keys=True, default=str)
    return "evt_" + hashlib.sha256(what.encode()).hexdigest()[:32]


def unreadable_key(company_id: str, raw: bytes) -> str:
    """A signed body that is not a JSON object: kept under its bytes' hash."""
    return "evt_raw_" + hashlib.sha256(company_id.encode() + b"\0" + raw).hexdigest()[:28]


def call_fields(payload: dict[str, Any]) -> dict[str, Any]:
    return {name: payload[name] for name in CALL_FIELDS if name in payload}


def instant(value: Any) -> datetime | None:
    """A CallRail time (ISO 8601 with an offset) in UTC, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
