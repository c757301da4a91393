"""What a request to the CallRail API passes before its route answers it, as ASGI middleware.

In order: the latency knob, authentication (401), an injected failure (`faults.py`), then the
account's quota (429); failures come after authentication so a scripted one is not spent on a
401. Every request that reaches the gate is logged with the status it got, 0 for a connection
closed unanswered ("drop": before the route runs; "lost": after it took effect). The routes
find the caller's key and the URL origin it used in the scope (`KEY`, `ORIGIN`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulator.api import KEY, ORIGIN, CallRailApi
from simulator.faults import DROP, LOST, Faults, QuotaUnit
from simulator.replies import Reply


class Gate:
    """Latency, authentication, failures and the quota in front of every path but `/_sim/`."""

    def __init__(self, app: ASGIApp, api: CallRailApi, faults: Faults, log: RequestLog) -> None:
        self.app = app
        self.api = api
        self.faults = faults
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        raw_path = scope.get("raw_path")  # as sent: `%2F` stays escaped in the log
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        query = scope["query_string"].decode("latin-1")
        key: str | None = None
        unit: QuotaUnit | None = None

        def log(status: int) -> None:
            label = unit.label if unit else None
            self.log.record(LoggedRequest(method, path, query, status, key, time.time(), label))

        try:
            if self.faults.knobs.latency:
                await asyncio.sleep(self.faults.knobs.latency)
            key = self.api.authenticate(headers.get("authorization", ""))
            unit = QuotaUnit.of(key, self.api.account_named(key, path))
            failure = self.faults.pick()
            if failure == DROP:
                log(0)
                await abort(send)
                return
            if failure == "timeout":  # long enough for the client's read timeout to fire
                await asyncio.sleep(self.faults.knobs.hang)
            self.faults.fail(failure)
            self.faults.admit(unit)
        except Reply as refused:
            log(refused.status)
            await refused.response()(scope, receive, send)
            return
        server = scope.get("server") or ("127.0.0.1", 0)
        host = headers.get("host") or f"{server[0]}:{server[1]}"
        scope[KEY], scope[ORIGIN] = key, f"http://{host}"

        async def sent(message: Message) -> None:
            if failure == LOST:
                return
            if message["type"] == "http.response.start":
                log(int(message["status"]))  # before the client can read the answer
            await send(message)

        await self.app(scope, receive, sent)
        if failure == LOST:
            # The request took effect, but the answer never arrives (a reset mid-response).
            log(0)
            await abort(send)


async def abort(send: Send) -> None:
    """Close the connection without an answer, as a server that died mid-request would.

    ASGI has no message for that, so this reaches the transport of uvicorn's protocol through
    its `send`, then lets the loop run the connection's loss, so uvicorn sends nothing either.
    """
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("the ASGI server gives no transport to close")
    transport.close()
    await asyncio.sleep(0)


@dataclass
class LoggedRequest:
    """One request as the simulator answered it; status 0: the connection closed unanswered."""

    method: str
    path: str
    query: str
    status: int
    key: str | None
    at: float
    quota_unit: str | None = None
    """Whose quota the request was charged to (`QuotaUnit.label`); None before authentication."""


class RequestLog:
    """The latest requests, oldest first, with a count by status that outlives the window."""

    def __init__(self, maxlen: int = 50_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[LoggedRequest] = deque(maxlen=maxlen)
        self._counts: Counter[int] = Counter()

    def record(self, entry: LoggedRequest) -> None:
        """Keep an answered (or dropped) request; the oldest falls out past `maxlen`."""
        with self._lock:
            self._entries.append(entry)
            self._counts[entry.status] += 1

    def clear(self) -> None:
        """Forget every entry and count."""
        with self._lock:
            self._entries.clear()
            self._counts.clear()

    def counts(self) -> dict[int, int]:
        """Requests by status since the last `clear`, 0 for connections closed unanswered."""
        with self._lock:
            return dict(self._counts)

    def select(self, method: str | None, path_contains: str) -> list[LoggedRequest]:
        """The kept entries of a method (None: any) whose path contains a text, oldest first."""
        with self._lock:
            return [
                r
                for r in self._entries
                if (method is None or r.method == method) and path_contains in r.path
            ]
