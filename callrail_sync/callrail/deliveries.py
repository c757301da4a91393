"""What CallRail POSTs to a webhook receiver: how it is signed, which event it is, and what of it
we keep. Pure functions; the shim's receiver and the normalizing task share them.

CallRail signs each delivery with the company's signing key: the `Signature` header is
base64(HMAC-SHA1(key, raw body)). Only the raw bytes verify: a body parsed and serialized again
differs (spacing, key order, escapes), so nothing here is ever computed from parsed JSON.

A delivery does not name its event, so our receiver is registered under one URL per event
(`?event=post_call`…) and the URL says it. For a URL that does not, the event is guessed from
what CallRail puts in it: a call-modified delivery carries `changes`, a form submission form
fields; a pre-call delivery (sent while the phone rings) has no duration or 0.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any, Literal

Event = Literal["pre_call", "post_call", "updated_call", "form_captured"]
EVENTS: tuple[Event, ...] = ("pre_call", "post_call", "updated_call", "form_captured")
"""What our receiver's URLs name (`?event=…`): the config key without `_webhook`."""
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


def plausible(header: str, raw: bytes, company_id: str) -> bool:
    """Whether a delivery that did not verify could still be CallRail's (signed with a key we
    do not have yet): a SHA-1-sized signature over a JSON object about this company."""
    try:
        if len(base64.b64decode(header.strip(), validate=True)) != hashlib.sha1().digest_size:
            return False
    except (binascii.Error, ValueError):
        return False
    payload = parse(raw)
    if payload is None:
        return False
    named = payload.get("company_resource_id")
    return named is None or named == company_id


def parse(raw: bytes) -> dict[str, Any] | None:
    """The delivery's JSON object, or None when the body is not one."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def named_event(name: str | None) -> Event | None:
    """The event a receiver URL names, if it names one of ours."""
    return next((event for event in EVENTS if event == name), None)


def event_of(payload: dict[str, Any]) -> Event:
    """The event of a delivery to a URL that does not name it, from what it carries (a guess
    for pre- and post-call: CallRail's pre-call has a duration of 0 or none)."""
    if isinstance(payload.get("changes"), list):
        return "updated_call"
    if any(name in payload for name in FORM_FIELDS) and "call_type" not in payload:
        return "form_captured"
    return "pre_call" if payload.get("duration") in (None, "", 0, "0") else "post_call"


def event_for(named: Event | None, payload: dict[str, Any]) -> Event:
    """The delivery's event: the payload's own word where it tells (a `changes` list is a
    call-modified, form fields a form, a call that lasted has ended), else the event our
    receiver URL names (the URL is not signed: it never overrules the payload)."""
    told = event_of(payload)
    if named is None or told in ("updated_call", "form_captured"):
        return told
    if named in ("updated_call", "form_captured"):
        return told  # the payload is a call, whatever the URL says
    return "post_call" if told == "post_call" else named


def company_named(payload: dict[str, Any]) -> str | None:
    """The company a delivery names (`company_resource_id`, COM…), if it names one."""
    value = payload.get("company_resource_id")
    return value if isinstance(value, str) and value else None


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


def dedupe_key(
    company_id: str, event: str, resource: str, changes: list[Any], raw: bytes = b""
) -> str:
    """One delivery, however often it is sent: same company, event, call and changes. A call's
    pre- and post-call deliveries are one each; a call-modified or form delivery is also told
    apart by its bytes (two updates of the same fields are two), and so is one with no id."""
    what: list[Any] = [company_id, event, resource, changes]
    if event in ("updated_call", "form_captured") or not resource:
        what.append(hashlib.sha256(raw).hexdigest())
    text = json.dumps(what, sort_keys=True, default=str)
    return "evt_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def unreadable_key(company_id: str, raw: bytes) -> str:
    """A signed body that is not a JSON object: kept under its bytes' hash."""
    return "evt_raw_" + hashlib.sha256(company_id.encode() + b"\0" + raw).hexdigest()[:28]


def call_fields(payload: dict[str, Any]) -> dict[str, Any]:
    return {name: payload[name] for name in CALL_FIELDS if name in payload}
