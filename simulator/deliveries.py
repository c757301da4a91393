"""Webhook deliveries of call events, sent as CallRail sends them (CALLRAIL_API.md).

A placed call gets a thread of its own (never the request's): `pre_call` at once,
`post_call` after the `post_call_delay`, then, if the placement gave `updated`, the change is
made to the call and `updated_call` follows with its `changes`. Each event goes to every URL of
its `<event>_webhook` key in the company's Webhooks integration while that integration is
active: one HTTP POST per URL, sent once with no retry, its JSON body serialized once and
signed over those exact bytes: `Signature: base64(HMAC-SHA1(signing_key, body))`. Deliveries
named in the placement's `drop`, or lost to the `delivery_drop_rate` dice, are logged as
dropped and never sent. `disable_after_failures` consecutive failures disable the integration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from urllib.parse import urlsplit

from simulator.api import now
from simulator.calls import CallBook, CallPlan, SimCall
from simulator.data import SimData
from simulator.faults import Faults

USER_AGENT = "CallRail-Simulator-Webhooks/1.0"


@dataclass
class Delivery:
    """One delivery as the simulator made it (or lost it)."""

    event: str
    url: str
    call_id: str
    status: int | None
    """The receiver's HTTP status; None if dropped or no answer came."""
    error: str | None
    """Why no answer came (refused, timed out...); None otherwise."""
    dropped: bool
    at: str
    """When it was sent, or would have been."""


def sign(signing_key: str, body: bytes) -> str:
    """The `Signature` header of a body: base64(HMAC-SHA1(signing key, body))."""
    return base64.b64encode(hmac.new(signing_key.encode(), body, hashlib.sha1).digest()).decode()


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int | None, str | None]:
    """POST once, following no redirect: the status, or None and what went wrong."""
    try:
        parts = urlsplit(url)
        kind = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        connection = kind(parts.hostname or "", parts.port, timeout=timeout)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status, None
        finally:
            connection.close()
    except (OSError, HTTPException, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


class Deliveries:
    """Sends the deliveries of placed calls and keeps their log; thread-safe."""

    def __init__(self, data: SimData, book: CallBook, faults: Faults) -> None:
        self.data = data
        self.book = book
        self.faults = faults
        self._state = threading.Condition()
        self._log: list[Delivery] = []
        self._pending = 0
        self._failures: Counter[str] = Counter()
        self._cancel = threading.Event()

    def schedule(self, call: SimCall, plan: CallPlan) -> None:
        """Start the deliveries of a call just placed, from a thread of their own."""
        with self._state:
            self._pending += 1
            cancel = self._cancel
        threading.Thread(
            target=self._run,
            args=(call, plan, cancel),
            name=f"sim-deliveries-{call.id}",
            daemon=True,
        ).start()

    def settle(self, timeout: float) -> bool:
        """Wait until every scheduled delivery is made; False if some are still due."""
        with self._state:
            return self._state.wait_for(lambda: self._pending == 0, timeout)

    @property
    def pending(self) -> int:
        """Placed calls whose deliveries are not all made yet."""
        with self._state:
            return self._pending

    def logged(self) -> list[Delivery]:
        """Every delivery made or dropped since the last `clear`, in the order they ended."""
        with self._state:
            return list(self._log)

    def clear(self) -> None:
        """Forget the log and the failure counts; deliveries still due are not made (the
        changes their calls were placed with are still made)."""
        self.cancel()
        with self._state:
            self._log.clear()
            self._failures.clear()

    def cancel(self) -> None:
        """Make no more of the deliveries scheduled so far."""
        with self._state:
            self._cancel.set()
            self._cancel = threading.Event()

    # --- one call's deliveries -----------------------------------------------------------

    def _run(self, call: SimCall, plan: CallPlan, cancel: threading.Event) -> None:
        try:
            self._deliver("pre_call", call, plan, cancel)
            knob = self.faults.knobs.post_call_delay
            if not cancel.wait(knob if plan.post_call_delay is None else plan.post_call_delay):
                self._deliver("post_call", call, plan, cancel)
            if plan.updated is not None:
                changes = self.book.update(call, plan.updated)
                self._deliver("updated_call", call, plan, cancel, changes)
        finally:
            with self._state:
                self._pending -= 1
                self._state.notify_all()

    def _deliver(
        self,
        event: str,
        call: SimCall,
        plan: CallPlan,
        cancel: threading.Event,
        changes: list[str] | None = None,
    ) -> None:
        """Send one event of a call to each URL the company's active integration lists."""
        with self.data.lock:
            found = [
                i
                for i in self.data.integrations.values()
                if i["account_id"] == call.account_id
                and i["company_id"] == call.company_id
                and i["type"] == "Webhooks"
            ]
            if not found or cancel.is_set():
                return
            integration = found[0]
            urls = list(integration["config"].get(f"{event}_webhook", []))
            body = json.dumps(call.payload(event, now(), changes)).encode()
            signature = sign(integration["signing_key"], body)
        headers = {
            "Content-Type": "application/json",
            "Signature": signature,
            "User-Agent": USER_AGENT,
        }
        for url in urls:
            with self.data.lock:
                if integration["state"] != "active" or cancel.is_set():
                    return  # disabled meanwhile: CallRail sends a disabled integration nothing
            at = now()
            if event in plan.drop or self._lost(call.id, event, url):
                self._record(Delivery(event, url, call.id, None, None, True, at), None, cancel)
                continue
            status, failure = post(url, body, headers, self.faults.knobs.delivery_timeout)
            made = Delivery(event, url, call.id, status, failure, False, at)
            self._record(made, integration, cancel)

    def _lost(self, call_id: str, event: str, url: str) -> bool:
        knobs = self.faults.knobs
        if knobs.delivery_drop_rate <= 0:
            return False
        draw = random.Random(f"{knobs.delivery_seed}:{call_id}:{event}:{url}").random()
        return draw < knobs.delivery_drop_rate

    def _record(
        self, delivery: Delivery, integration: dict[str, object] | None, cancel: threading.Event
    ) -> None:
        """Log a delivery; one that was sent counts towards, or resets, its integration's
        run of failures, which disables the integration once it reaches the knob. One still
        in flight when its batch was cancelled (`clear`, `cancel`) is forgotten."""
        limit = self.faults.knobs.disable_after_failures
        with self._state:
            if cancel.is_set():
                return
            self._log.append(delivery)
            if integration is None:
                return
            iid = str(integration["id"])
            ok = delivery.status is not None and 200 <= delivery.status < 300
            self._failures[iid] = 0 if ok else self._failures[iid] + 1
            disable = limit > 0 and self._failures[iid] >= limit
            if disable:
                self._failures[iid] = 0
        if disable:
            with self.data.lock:
                if integration["state"] == "active":
                    integration["state"] = "disabled"
                    integration["updated_at"] = now()
                    self.data.changed()
