"""Calls: what the simulator's companies receive, kept per account in `start_time` order.

A call is placed on a company (`POST /_sim/calls`, `SimServer.place_call`) or made up from the
seed (`SimData.calls_per_company`). It is listed by `calls.json` (`call_listing.py`) and its
events are delivered to the company's Webhooks integration (`deliveries.py`), in the two forms
CALLRAIL_API.md describes: `public` (calls.json) and `payload` (a webhook's body).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from simulator import generator
from simulator.data import NotFound, SimAccount, SimData, stamped

EVENTS = ("pre_call", "post_call", "updated_call")
"""The call events delivered, each to the URLs of its `<event>_webhook` config key."""
PUBLIC = (
    "id",
    "company_id",
    "answered",
    "business_phone_number",
    "customer_phone_number",
    "customer_name",
    "customer_city",
    "direction",
    "duration",
    "recording",
    "start_time",
    "tracking_phone_number",
    "voicemail",
    "tags",
    "note",
    "tracker_id",
)
"""A call's fields in calls.json."""
UPDATABLE = ("tags", "note", "customer_name", "customer_city")
"""Fields an `updated` may change; its `updated_call` delivery names them in `changes`."""


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _labels(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "customer_phone_number": (_text, "a non-empty string"),
    "customer_name": (_text, "a non-empty string"),
    "customer_city": (_text, "a non-empty string"),
    "duration": (_count, "a whole number of seconds, 0 or more"),
    "answered": (lambda v: isinstance(v, bool), "true or false"),
    "voicemail": (lambda v: isinstance(v, bool), "true or false"),
    "start_time": (stamped, "an ISO 8601 timestamp with an offset"),
    "tags": (_labels, "a list of strings"),
    "note": (_optional_text, "a string or null"),
    "recording": (_optional_text, "a URL or null"),
}
"""The fields a placed call may be given, and what each must be."""
CHECKS["lead_status"] = (
    lambda v: v in (None, "good_lead", "not_a_lead"),
    "good_lead, not_a_lead or null",
)
CHECKS["value"] = (_optional_text, "a string or null")
EDITABLE = ("tags", "note", "customer_name", "customer_city", "lead_status", "value")
"""What a call's later edits may change (`CallBook.edit`)."""


def check(fields: dict[str, Any], allowed: Iterable[str]) -> None:
    """A ValueError naming the first unknown field or bad value."""
    names = set(allowed)
    for name, value in fields.items():
        if name not in names:
            raise ValueError(f"Unknown call field: {name}")
        valid, meaning = CHECKS[name]
        if not valid(value):
            raise ValueError(f"{name} must be {meaning}")


@dataclass
class SimCall:
    """One inbound call. Change it only under `SimData.lock` (readers copy it under the lock)."""

    id: str
    legacy_id: int
    account_id: str
    company_id: str
    answered: bool
    business_phone_number: str
    customer_phone_number: str
    customer_name: str
    customer_city: str
    duration: int
    recording: str | None
    start_time: str
    tracking_phone_number: str
    voicemail: bool
    tracker_id: str
    created_at: str
    tags: list[str] = field(default_factory=list)
    note: str | None = None
    direction: str = "inbound"

    @property
    def epoch(self) -> float:
        """When the call started, in seconds since the epoch."""
        return datetime.fromisoformat(self.start_time).timestamp()

    def public(self) -> dict[str, Any]:
        """The call as calls.json shows it."""
        body = {name: getattr(self, name) for name in PUBLIC}
        body["tags"] = list(self.tags)
        return body

    def payload(self, event: str, timestamp: str, changes: list[str] | None) -> dict[str, Any]:
        """The body of a webhook delivery of `event`, sent at `timestamp`.

        `pre_call` is sent as the phone rings: not answered, a duration of 0, no recording or
        voicemail yet (as CallRail's support article on webhooks describes it).
        `updated_call` carries `changes`, the names of the fields changed.
        """
        body: dict[str, Any] = {
            "id": self.legacy_id,
            "resource_id": self.id,
            "company_resource_id": self.company_id,
            "tracker_resource_id": self.tracker_id,
            **{n: v for n, v in self.public().items() if n not in ("id", "company_id")},
            "timestamp": timestamp,
        }
        del body["tracker_id"]
        if event == "pre_call":
            body.update(answered=False, duration=0, recording=None, voicemail=False)
        if changes is not None:
            body["changes"] = list(changes)
        return body


@dataclass(frozen=True)
class CallPlan:
    """What follows a placed call: its deliveries, and a change to it after `post_call`."""

    post_call_delay: float | None = None
    """Seconds from `pre_call` to `post_call`; None: the `post_call_delay` knob."""
    updated: dict[str, Any] | None = None
    drop: frozenset[str] = frozenset()
    """Events whose deliveries are lost (logged as dropped, never sent)."""

    @classmethod
    def of(cls, post_call_delay: Any, updated: Any, drop: Any) -> CallPlan:
        """A plan from a placement's arguments; a ValueError if one is bad."""
        number = isinstance(post_call_delay, int | float) and not isinstance(post_call_delay, bool)
        if post_call_delay is not None and not (number and post_call_delay >= 0):
            raise ValueError("post_call_delay must be a number of seconds, 0 or more")
        if updated is not None:
            if not isinstance(updated, dict) or not updated:
                raise ValueError(f"updated must be an object of some of {', '.join(UPDATABLE)}")
            check(updated, UPDATABLE)
        if not isinstance(drop, list | tuple | set | frozenset) or not set(drop) <= set(EVENTS):
            raise ValueError(f"drop must be a list of events among {', '.join(EVENTS)}")
        return cls(post_call_delay, dict(updated) if updated else None, frozenset(drop))


class CallBook:
    """Every account's placed calls, their edits and spam marks, guarded by `SimData.lock`."""

    def __init__(self, data: SimData) -> None:
        self.data = data
        self._placed: dict[str, int] = {}
        self._placed_calls: dict[str, list[SimCall]] = {}
        """The calls placed, by account: what the state file keeps (the seed makes the rest)."""
        self.edits: dict[str, dict[str, Any]] = {}
        """Changes made to calls after the fact, by call id."""
        self.spam: set[str] = set()
        """Calls marked spam: gone from the call log."""

    def place(self, company_id: str, **fields: Any) -> SimCall:
        """A new inbound call on a company, starting now unless `start_time` says otherwise;
        NotFound for an unknown or removed company, ValueError for a bad field."""
        check(fields, CHECKS)
        with self.data.lock:
            account, company = self.data.find_company(company_id)
            n = self._placed[account.id] = self._placed.get(account.id, 0) + 1
            rng = random.Random(f"call:{self.data.seed}:{account.id}:{n}")
            start = datetime.now(generator.zone(company["time_zone"]))
            call = _made(rng, account.id, company["id"], start)
            later: dict[str, Any] = {
                n: fields.pop(n) for n in ("lead_status", "value") if n in fields
            }
            for name, value in fields.items():
                setattr(call, name, list(value) if name == "tags" else value)
            if later:
                self.edits[call.id] = later
            if "recording" not in fields:
                call.recording = _recording(call)
            self._placed_calls.setdefault(account.id, []).append(call)
            self.data.changed()
            return call

    def update(self, call: SimCall, changes: dict[str, Any]) -> list[str]:
        """Change fields of a call (checked by `CallPlan.of`); returns their names."""
        with self.data.lock:
            for name, value in changes.items():
                setattr(call, name, list(value) if name == "tags" else value)
            self.data.changed()
        return list(changes)

    def dump(self) -> dict[str, Any]:
        """The calls placed, as JSON values, for the state file; hold `SimData.lock`."""
        return {
            "placed": self._placed,
            "calls": {a: [asdict(c) for c in calls] for a, calls in self._placed_calls.items()},
            "edits": self.edits,
            "spam": sorted(self.spam),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what `dump` wrote."""
        with self.data.lock:
            self._placed = {a: int(n) for a, n in state["placed"].items()}
            self._placed_calls = {
                a: [SimCall(**fields) for fields in calls] for a, calls in state["calls"].items()
            }
            self.edits = dict(state.get("edits", {}))
            self.spam = set(state.get("spam", []))

    def placed(self, account: SimAccount) -> list[SimCall]:
        """The calls placed on the account, in the order placed; hold `SimData.lock`."""
        return self._placed_calls.get(account.id, [])

    # --- edits and spam, of placed and made-up calls alike ---------------------------------

    def edit(self, call_id: str, changes: dict[str, Any]) -> None:
        """Change fields of a call later, as CallRail's users do (tags, notes, lead status...);
        NotFound for a call no account has (or one marked spam), ValueError for a bad field."""
        check(changes, EDITABLE)
        with self.data.lock:
            account, placed = self.locate(call_id)
            if placed is not None:
                for name, value in changes.items():
                    if hasattr(placed, name) and name != "lead_status":
                        setattr(placed, name, list(value) if name == "tags" else value)
            self.edits.setdefault(call_id, {}).update(changes)
            self.data.changed()

    def mark_spam(self, call_id: str) -> None:
        """Mark a call spam: it leaves the call log (listings, summaries) for good."""
        with self.data.lock:
            self.locate(call_id)
            self.spam.add(call_id)
            self.data.changed()

    def locate(self, call_id: str) -> tuple[SimAccount, SimCall | None]:
        """The account of a call, and the call if it was placed (None: made up)."""
        with self.data.lock:
            if call_id not in self.spam:
                for account_id, calls in self._placed_calls.items():
                    for call in calls:
                        if call.id == call_id:
                            return self.data.accounts[account_id], call
                for account in self.data.accounts.values():
                    if self.data.history(account).place_of(call_id) is not None:
                        return account, None
        raise NotFound(f"Call not found: {call_id}")


def _made(rng: random.Random, account_id: str, company_id: str, start: datetime) -> SimCall:
    """A call of a company starting at `start`, its caller and outcome drawn from `rng`."""
    stamp = start.isoformat(timespec="milliseconds")
    fields: dict[str, Any] = {**generator.call(rng), **generator.tracker(company_id)}
    fields |= {"account_id": account_id, "company_id": company_id, "recording": None}
    return SimCall(**fields, start_time=stamp, created_at=stamp)


def _recording(call: SimCall) -> str | None:
    """Where CallRail would serve the recording of an answered or voicemail call (the
    simulator does not serve it)."""
    if not (call.answered or call.voicemail):
        return None
    return f"https://api.callrail.com/v3/a/{call.account_id}/calls/{call.id}/recording.json"
