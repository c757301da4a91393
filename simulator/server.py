"""The simulator's HTTP server: its lifecycle, the `/_sim/*` controls and the request log.

A request to `/v3/...` passes latency, authentication, injected failures and the quota
(`faults.py`) before the CallRail resources answer it (`api.py`). Calls placed through the
controls (`calls.py`) are delivered to webhooks from threads of their own (`deliveries.py`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from simulator.api import CallRailApi
from simulator.calls import CallBook, CallPlan
from simulator.data import Conflict, NotFound, SimData
from simulator.deliveries import Deliveries, Delivery
from simulator.faults import DROP, LOST, Faults, Knobs, QuotaUnit
from simulator.query import param
from simulator.replies import Reply, error, json_object
from simulator.requestlog import LoggedRequest, RequestLog


class SimServer(ThreadingHTTPServer):
    """The CallRail simulator on a real socket, with its data, knobs and request log."""

    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(
        self, data: SimData, host: str = "127.0.0.1", port: int = 0, knobs: Knobs | None = None
    ) -> None:
        super().__init__((host, port), _Handler)
        self.data = data
        self.calls = CallBook(data)
        self.api = CallRailApi(data, self.calls)
        self.faults = Faults(knobs)
        self.deliveries = Deliveries(data, self.calls, self.faults)
        self.log = RequestLog()
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on: the one asked for, or the free one picked for port 0."""
        return int(self.server_address[1])

    @property
    def base_url(self) -> str:
        """Where the CallRail API is served, e.g. `http://127.0.0.1:8790/v3`."""
        return f"http://{self.server_address[0]!s}:{self.port}/v3"

    def start(self) -> SimServer:
        """Serve from a background thread; returns self, so `SimServer(data).start()` reads."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="callrail-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; requests in flight end with their threads, and
        deliveries still due are not made."""
        self.deliveries.cancel()
        self.shutdown()
        self.server_close()

    # --- controls ------------------------------------------------------------------------

    @property
    def knobs(self) -> Knobs:
        """The knobs in force (change them with `set_knobs`, which checks their names)."""
        return self.faults.knobs

    def reset(self) -> None:
        """Forget the request log, counters and rate-limit windows, and the deliveries made or
        due (the calls stay); knobs return to defaults."""
        self.log.clear()
        self.deliveries.clear()
        self.faults.reset()

    def set_knobs(self, **changes: Any) -> None:
        """Turn the named knobs, e.g. `set_knobs(latency=0.1, fail_next=["500"])`."""
        self.faults.set_knobs(**changes)

    def stats(self) -> dict[str, Any]:
        """Requests by status and the knobs in force, as `GET /_sim/stats` answers them."""
        counts = self.log.counts()
        return {
            "requests": sum(counts.values()),
            "by_status": {str(k): v for k, v in sorted(counts.items())},
            "knobs": asdict(self.knobs),
        }

    def requests_logged(
        self, method: str | None = None, path_contains: str = ""
    ) -> list[LoggedRequest]:
        """What the simulator was asked, oldest first: for tests to check what a client sent."""
        return self.log.select(method, path_contains)

    def place_call(
        self,
        company_id: str,
        *,
        post_call_delay: float | None = None,
        updated: dict[str, Any] | None = None,
        drop: list[str] | tuple[str, ...] = (),
        **fields: Any,
    ) -> dict[str, Any]:
        """Place an inbound call on a company now, as `POST /_sim/calls` does; returns its
        calls.json form. `fields` set the call's own (`calls.CHECKS`), the rest its deliveries
        (`deliveries.py`), which follow from a thread of their own. NotFound: no such company
        (or a removed one); ValueError: a bad argument."""
        plan = CallPlan.of(post_call_delay, updated, drop)
        call = self.calls.place(company_id, **fields)
        with self.data.lock:
            public = call.public()
        self.deliveries.schedule(call, plan)
        return public

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until the deliveries of every call placed so far are made; False on timeout."""
        return self.deliveries.settle(timeout)

    def deliveries_logged(self, event: str | None = None) -> list[Delivery]:
        """The deliveries made or dropped (of one event, if named), in the order they ended."""
        return [d for d in self.deliveries.logged() if event in (None, d.event)]

    def control(self, method: str, path: str, raw: bytes, query: str = "") -> Reply:
        """Answer a `/_sim/*` request: how tests and benchmarks steer a running simulator.

        GET `stats`, `log`, `keys`; POST `reset`, `knobs` (a JSON object of knobs),
        `accounts` ({"key", "companies"}: add an account), `keys` ({"key", "accounts"}: the
        key, added if new, sees those accounts); companies changing while the simulator runs:
        POST `companies` ({"account", "id"?, ...fields}: add, or restore a removed id),
        PATCH `companies/{id}` (change fields), DELETE `companies/{id}` (remove); calls:
        POST `calls` ({"company_id", ...}: `place_call`), GET `deliveries` (`?wait=1` first
        waits for those due, up to `timeout` seconds, 10 by default).
        """
        try:
            return self._control(method, path, raw, parse_qs(query))
        except NotFound as exc:
            return error(404, str(exc))
        except Conflict as exc:
            return error(409, str(exc))
        except (ValueError, TypeError) as exc:
            return error(400, str(exc))
        except Reply as reply:
            return reply

    def _control(self, method: str, path: str, raw: bytes, query: dict[str, list[str]]) -> Reply:
        if path == "/_sim/stats" and method == "GET":
            return Reply(200, self.stats())
        if path == "/_sim/reset" and method == "POST":
            self.reset()
            return Reply(200, self.stats())
        if path == "/_sim/knobs" and method == "POST":
            self.set_knobs(**json_object(raw))
            return Reply(200, self.stats())
        if path == "/_sim/keys" and method == "GET":
            return Reply(200, {"keys": self.data.api_keys})
        if path == "/_sim/log" and method == "GET":
            return Reply(200, {"requests": [asdict(r) for r in self.requests_logged()]})
        if path == "/_sim/keys" and method == "POST":
            return self._share_accounts(json_object(raw))
        if path == "/_sim/calls" and method == "POST":
            body = json_object(raw)
            company_id = _text(body, "company_id")
            fields = {k: v for k, v in body.items() if k != "company_id"}
            return Reply(201, {"call": self.place_call(company_id, **fields)})
        if path == "/_sim/deliveries" and method == "GET":
            if param(query, "wait") in ("1", "true"):
                self.settle(float(param(query, "timeout") or 10.0))
            made = [asdict(d) for d in self.deliveries_logged()]
            return Reply(200, {"deliveries": made, "pending": self.deliveries.pending})
        if path == "/_sim/companies" and method == "POST":
            return self._post_company(json_object(raw))
        if path.startswith("/_sim/companies/") and method in ("PATCH", "DELETE"):
            company_id = unquote(path.removeprefix("/_sim/companies/"))
            with self.data.lock:  # the reply copies the record before another change can
                if method == "DELETE":
                    self.data.remove_company(company_id)
                    return Reply(204)
                return Reply(200, dict(self.data.update_company(company_id, **json_object(raw))))
        if path == "/_sim/accounts" and method == "POST":
            body = json_object(raw)
            key = self.data.add_key(_text(body, "key"))
            account = self.data.add_account(key, int(body.get("companies", 0)))
            return Reply(201, {"id": account})
        return error(404, "Not Found")

    def _share_accounts(self, body: dict[str, Any]) -> Reply:
        key, accounts = _text(body, "key"), body.get("accounts", [])
        if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
            raise ValueError("accounts must be a list of account ids")
        with self.data.lock:
            for account_id in accounts:  # all or nothing: look every one up before sharing
                self.data.account(account_id)
            is_new = key not in self.data.accounts_by_key
            self.data.add_key(key)
            for account_id in accounts:
                self.data.share_account(key, account_id)
            visible = list(self.data.accounts_by_key[key])
        return Reply(201 if is_new else 200, {"key": key, "accounts": visible})

    def _post_company(self, body: dict[str, Any]) -> Reply:
        account_id = _text(body, "account")
        fields = {name: value for name, value in body.items() if name != "account"}
        company_id = str(fields.get("id", ""))
        with self.data.lock:
            home = self.data.removed_from(company_id)
            if home is None:
                return Reply(201, dict(self.data.add_company(account_id, **fields)))
            if self.data.account(account_id).id != home:
                raise ValueError(f"Company {company_id} was removed from account {home}")
            return Reply(200, dict(self.data.restore_company(company_id, **fields)))


def _text(body: dict[str, Any], name: str) -> str:
    """A required, non-empty string field of a control's body."""
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests: `/_sim/*` to the controls, the rest to the CallRail API."""

    protocol_version = "HTTP/1.1"
    # Answers are small and the connections keep-alive: without TCP_NODELAY, a write that
    # follows unacknowledged data waits for the client's delayed ACK (~40 ms on Linux).
    disable_nagle_algorithm = True
    server: SimServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the server keeps its own log
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if parts.path.startswith("/_sim/"):
            self._send(self.server.control(method, parts.path, raw, parts.query))
        else:
            self._serve_api(method, parts.path, parts.query, raw)

    def _serve_api(self, method: str, path: str, query: str, raw: bytes) -> None:
        """Latency, authentication, an injected failure, the quota, then the resource.

        Failures come after authentication so a scripted one is not spent on a 401.
        """
        server = self.server
        key: str | None = None
        unit: QuotaUnit | None = None

        def log(status: int) -> None:
            label = unit.label if unit else None
            server.log.record(LoggedRequest(method, path, query, status, key, time.time(), label))

        try:
            server.faults.delay()
            key = server.api.authenticate(self.headers.get("Authorization", ""))
            unit = QuotaUnit.of(key, server.api.account_named(key, path))
            failure = server.faults.pick()
            if failure == DROP:
                log(0)
                self.close_connection = True
                return
            server.faults.fail(failure)
            server.faults.admit(unit)
            host = self.headers.get("Host") or f"{server.server_address[0]!s}:{server.port}"
            origin = f"http://{host}"  # links name the server as the client did
            reply = server.api.handle(method, path, parse_qs(query), raw, key, origin)
            if failure == LOST:
                # The request took effect, but the answer never arrives (a reset mid-response).
                log(0)
                self.close_connection = True
                return
        except Reply as refused:
            reply = refused
        log(reply.status)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        """Write a reply, head and body in one write: no second small segment exists for
        the client's delayed ACK to hold back."""
        ctype, payload = reply.payload()
        head = [
            f"{self.protocol_version} {reply.status} {HTTPStatus(reply.status).phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
        ]
        if ctype:
            head.append(f"Content-Type: {ctype}")
        head.append(f"Content-Length: {len(payload)}")
        head.extend(f"{name}: {value}" for name, value in reply.headers.items())
        try:
            self.wfile.write("\r\n".join([*head, "", ""]).encode("latin-1") + payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
