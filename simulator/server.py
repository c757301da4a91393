"""The simulator's HTTP server: CallRail v3 routes over real HTTP, plus `/_sim/*` controls.

Where the real API's behaviour is unknown (see CALLRAIL_API.md), the guess made here is
written next to the code that makes it, and the client must tolerate either answer.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from simulator.data import WEBHOOK_KEYS, SimData

MAX_PER_PAGE = 250
COMPANY_SORTS = {"id", "name", "created_at", "status", "time_zone"}
ACCOUNT_SORTS = {"id", "name"}
TOKEN_RE = re.compile(r'^Token\s+token=(?:"([^"]*)"|([^\s"]+))\s*$')
RAILS_ERROR_PAGE = "<html><body><h1>We're sorry, but something went wrong.</h1></body></html>"
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


@dataclass
class Knobs:
    """Behaviour a test or benchmark can turn: latency, rate limits and injected failures."""

    latency: float = 0.0
    """Seconds added to every request."""
    rate_limits: list[tuple[int, float]] = field(default_factory=list)
    """(requests, window seconds) per API key, e.g. [(1000, 3600), (10000, 86400)]. Empty: none."""
    send_retry_after: bool = False
    """Whether a 429 carries `Retry-After` (undocumented upstream: test both)."""
    failure_rate: float = 0.0
    """Share of requests that fail with one of `failure_kinds`."""
    failure_kinds: list[str] = field(default_factory=lambda: ["500", "503", "timeout", "drop"])
    fail_next: list[str] = field(default_factory=list)
    """Scripted outcomes of the next requests, in order: "ok", "429", "500", "503", "timeout",
    "drop" (closed before handling), "lost" (handled, then closed without an answer)."""
    scripted_retry_after: float = 1.0
    """Retry-After of a scripted "429" (sent only with `send_retry_after`)."""
    hang: float = 5.0
    """How long a "timeout" failure keeps the client waiting."""
    failure_seed: int = 7


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: str
    status: int
    key: str | None
    at: float


class SimServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the simulator's data, knobs and request log."""

    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(
        self, data: SimData, host: str = "127.0.0.1", port: int = 0, knobs: Knobs | None = None
    ) -> None:
        super().__init__((host, port), _Handler)
        self.data = data
        self.knobs = knobs or Knobs()
        self.log: deque[LoggedRequest] = deque(maxlen=50_000)
        self.counts: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._accepted: dict[str, deque[float]] = {}
        self._rng = random.Random(self.knobs.failure_seed)
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v3"

    def start(self) -> SimServer:
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="callrail-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    # --- controls ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the request log, counters and rate-limit windows; knobs return to defaults."""
        with self._lock:
            self.log.clear()
            self.counts.clear()
            self._accepted.clear()
            self.knobs = Knobs()
            self._rng = random.Random(self.knobs.failure_seed)

    def set_knobs(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                if not hasattr(self.knobs, name):
                    raise ValueError(f"unknown knob {name}")
                if name == "rate_limits":
                    value = [(int(n), float(w)) for n, w in value]
                setattr(self.knobs, name, value)
            self._rng = random.Random(self.knobs.failure_seed)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": sum(self.counts.values()),
                "by_status": {str(k): v for k, v in sorted(self.counts.items())},
                "knobs": asdict(self.knobs),
            }

    def requests_logged(
        self, method: str | None = None, path_contains: str = ""
    ) -> list[LoggedRequest]:
        with self._lock:
            return [
                r
                for r in self.log
                if (method is None or r.method == method) and path_contains in r.path
            ]

    # --- used by the handler -------------------------------------------------------------

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.log.append(entry)
            self.counts[entry.status] += 1

    def pick_failure(self) -> str | None:
        with self._lock:
            if self.knobs.fail_next:
                return self.knobs.fail_next.pop(0)
            if self.knobs.failure_rate and self._rng.random() < self.knobs.failure_rate:
                return self._rng.choice(self.knobs.failure_kinds)
            return None

    def admit(self, key: str) -> float | None:
        """Count a request against the key's limits; None if allowed, else seconds to wait.

        Sliding windows: a request is refused if any window already holds its limit. Refused
        requests do not count (unverified upstream; the stricter reading would only make our
        budget look better than it is).
        """
        with self._lock:
            limits = self.knobs.rate_limits
            if not limits:
                return None
            now = time.monotonic()
            stamps = self._accepted.setdefault(key, deque())
            longest = max(w for _, w in limits)
            while stamps and stamps[0] <= now - longest:
                stamps.popleft()
            wait = 0.0
            for limit, window in limits:
                in_window = (
                    [t for t in stamps if t > now - window] if window < longest else list(stamps)
                )
                if len(in_window) >= limit:
                    wait = max(wait, in_window[len(in_window) - limit] + window - now)
            if wait > 0:
                return wait
            stamps.append(now)
            return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Reply(Exception):
    def __init__(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        text: str | None = None,
    ) -> None:
        self.status, self.body, self.headers, self.text = status, body, headers or {}, text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
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

    # --- dispatch ------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path.startswith("/_sim/"):
            self._control(method, path, raw)
            return
        key = None
        try:
            if self.server.knobs.latency:
                time.sleep(self.server.knobs.latency)
            key = self._authenticate()
            failure = self.server.pick_failure()
            if failure == "ok":
                failure = None
            if failure == "drop":
                self.server.record(LoggedRequest(method, path, parts.query, 0, key, time.time()))
                self.close_connection = True
                return
            if failure == "timeout":
                time.sleep(self.server.knobs.hang)
                raise _Reply(503, {"error": "Service Unavailable"})
            if failure == "429":
                scripted = self.server.knobs.scripted_retry_after
                raise _Reply(429, {"error": "Too many requests"}, self._retry_after(scripted))
            if failure in ("500", "503"):
                raise _Reply(int(failure), text=RAILS_ERROR_PAGE)
            wait = self.server.admit(key)
            if wait is not None:
                raise _Reply(429, {"error": "Too many requests"}, self._retry_after(wait))
            body = self._route(method, path, query, raw, key)
            if failure == "lost":
                # The request took effect, but the answer never arrives (a reset mid-response).
                self.server.record(LoggedRequest(method, path, parts.query, 0, key, time.time()))
                self.close_connection = True
                return
            status = 201 if method == "POST" else 200
            if method == "DELETE":
                raise _Reply(204)
            raise _Reply(status, body)
        except _Reply as reply:
            self.server.record(
                LoggedRequest(method, path, parts.query, reply.status, key, time.time())
            )
            self._send(reply)

    def _retry_after(self, wait: float) -> dict[str, str]:
        return (
            {"Retry-After": str(max(1, math.ceil(wait)))}
            if self.server.knobs.send_retry_after
            else {}
        )

    def _authenticate(self) -> str:
        match = TOKEN_RE.match(self.headers.get("Authorization", ""))
        key = (match.group(1) or match.group(2)) if match else None
        if not key or key not in self.server.data.accounts_by_key:
            # Rails' token authentication answers in plain text (a guess for CallRail).
            raise _Reply(401, text="HTTP Token: Access denied.\n")
        return key

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes, key: str
    ) -> Any:
        if not path.startswith("/v3/a"):
            raise _Reply(404, {"error": "Not Found"})
        segments = [unquote(s) for s in path[len("/v3/") :].split("/")]
        # segments: ["a.json"] | ["a", "ACC.json"] | ["a", "ACC", "companies.json"] | ...
        if segments == ["a.json"]:
            self._allow(method, "GET")
            return self._list_accounts(query, key)
        if len(segments) < 2 or segments[0] != "a":
            raise _Reply(404, {"error": "Not Found"})
        if len(segments) == 2 and segments[1].endswith(".json"):
            self._allow(method, "GET")
            account = self._account(key, segments[1][:-5])
            return account.public(self._fields(query))
        account = self._account(key, segments[1])
        rest = segments[2:]
        if method in ("POST", "PUT", "DELETE") and key in self.server.data.read_only_keys:
            raise _Reply(403, {"error": "You do not have permission to manage integrations"})
        if rest == ["companies.json"]:
            self._allow(method, "GET")
            return self._list_companies(account, query)
        if len(rest) == 2 and rest[0] == "companies" and rest[1].endswith(".json"):
            self._allow(method, "GET")
            return self._company(account, rest[1][:-5])
        if rest == ["integrations.json"]:
            self._allow(method, "GET", "POST")
            if method == "GET":
                return self._list_integrations(account, query)
            return self._create_integration(account, self._json(raw), query)
        if len(rest) == 2 and rest[0] == "integrations" and rest[1].endswith(".json"):
            self._allow(method, "GET", "PUT", "DELETE")
            integration = self._integration(account, rest[1][:-5])
            if method == "GET":
                return self._public_integration(integration, query)
            if method == "PUT":
                return self._update_integration(integration, self._json(raw), query)
            integration["state"] = "disabled"
            integration["updated_at"] = _now()
            return None
        raise _Reply(404, {"error": "Not Found"})

    # --- resources -----------------------------------------------------------------------

    def _list_accounts(self, query: dict[str, list[str]], key: str) -> dict[str, Any]:
        data = self.server.data
        fields = self._fields(query)
        accounts = [data.accounts[a].public(fields) for a in data.accounts_by_key[key]]
        accounts = self._sorted(accounts, query, ACCOUNT_SORTS)
        return self._paginate("accounts", accounts, query)

    def _list_companies(self, account: Any, query: dict[str, list[str]]) -> dict[str, Any]:
        companies = self.server.data.companies(account)
        status = self._param(query, "status")
        if status is not None:
            if status not in ("active", "disabled"):
                raise _Reply(400, {"error": "Invalid status filter"})
            companies = [c for c in companies if c["status"] == status]
        search = self._param(query, "search")
        if search:
            needle = search.lower()
            companies = [c for c in companies if needle in c["name"].lower()]
        companies = self._sorted(companies, query, COMPANY_SORTS)
        return self._paginate("companies", companies, query)

    def _company(self, account: Any, company_id: str) -> dict[str, Any]:
        for company in self.server.data.companies(account):
            if company["id"] == company_id:
                return company
        raise _Reply(404, {"error": "Company not found"})

    def _list_integrations(self, account: Any, query: dict[str, list[str]]) -> dict[str, Any]:
        company_id = self._param(query, "company_id")
        if not company_id:
            raise _Reply(400, {"error": "company_id is required"})
        self._company(account, company_id)
        with self.server.data.lock:
            found = [
                self._public_integration(i, query)
                for i in self.server.data.integrations.values()
                if i["account_id"] == account.id and i["company_id"] == company_id
            ]
        return self._paginate("integrations", found, query)

    def _create_integration(
        self, account: Any, body: dict[str, Any], query: dict[str, list[str]]
    ) -> dict[str, Any]:
        if body.get("type") != "Webhooks":
            raise _Reply(422, {"error": "Type is not a supported integration type"})
        company_id = body.get("company_id")
        if not isinstance(company_id, str) or not company_id:
            raise _Reply(400, {"error": "company_id is required"})
        self._company(account, company_id)
        config = self._config(body.get("config"))
        data = self.server.data
        with data.lock:
            for existing in data.integrations.values():
                if existing["company_id"] == company_id and existing["type"] == "Webhooks":
                    raise _Reply(422, {"error": "Company already has a Webhooks integration"})
            record = data.new_integration(account.id, company_id, config, _now())
        return self._public_integration(record, query)

    def _update_integration(
        self, integration: dict[str, Any], body: dict[str, Any], query: dict[str, list[str]]
    ) -> dict[str, Any]:
        config = body.get("config")
        state = body.get("state")
        if config is None and state is None:
            raise _Reply(400, {"error": "Nothing to update"})
        if state is not None and state not in ("active", "disabled"):
            raise _Reply(422, {"error": "State is not included in the list"})
        checked = self._config(config) if config is not None else None
        with self.server.data.lock:
            if checked is not None:
                integration["config"] = checked
            if state is not None:
                integration["state"] = state
            integration["updated_at"] = _now()
            return self._public_integration(integration, query)

    def _integration(self, account: Any, integration_id: str) -> dict[str, Any]:
        record = self.server.data.integrations.get(integration_id)
        if record is None or record["account_id"] != account.id:
            raise _Reply(404, {"error": "Integration not found"})
        return record

    def _public_integration(
        self, record: dict[str, Any], query: dict[str, list[str]]
    ) -> dict[str, Any]:
        body = {k: v for k, v in record.items() if k not in ("signing_key", "account_id")}
        body["config"] = {k: list(v) for k, v in record["config"].items()}
        if "signing_key" in self._fields(query):
            body["signing_key"] = record["signing_key"]
        return body

    @staticmethod
    def _config(config: Any) -> dict[str, list[str]]:
        if not isinstance(config, dict) or not config:
            raise _Reply(422, {"error": "Config can't be blank"})
        clean: dict[str, list[str]] = {}
        for name, urls in config.items():
            if name not in WEBHOOK_KEYS:
                raise _Reply(422, {"error": f"Config has an unknown webhook type: {name}"})
            if not isinstance(urls, list) or not all(
                isinstance(u, str) and URL_RE.match(u) for u in urls
            ):
                raise _Reply(422, {"errors": [f"{name} must be a list of http(s) URLs"]})
            clean[name] = list(dict.fromkeys(urls))
        return clean

    # --- helpers -------------------------------------------------------------------------

    def _account(self, key: str, account_id: str) -> Any:
        account = self.server.data.account_for(key, account_id)
        if account is None:
            raise _Reply(404, {"error": "Account not found"})
        return account

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _Reply(405, {"error": "Method Not Allowed"})

    @staticmethod
    def _param(query: dict[str, list[str]], name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    def _fields(self, query: dict[str, list[str]]) -> set[str]:
        raw = self._param(query, "fields") or ""
        return {f.strip() for f in raw.split(",") if f.strip()}

    def _sorted(
        self, items: list[dict[str, Any]], query: dict[str, list[str]], allowed: set[str]
    ) -> list[dict[str, Any]]:
        sort, order = self._param(query, "sort"), self._param(query, "order")
        if order is not None and sort is None:
            raise _Reply(400, {"error": "sort is required when order is given"})
        if order is not None and order not in ("asc", "desc"):
            raise _Reply(400, {"error": "order must be asc or desc"})
        if sort is None:
            return items
        if sort not in allowed:
            raise _Reply(400, {"error": f"Invalid sort field: {sort}"})
        return sorted(
            items,
            key=lambda i: (i.get(sort) is None, str(i.get(sort) or "").lower()),
            reverse=order == "desc",
        )

    def _paginate(
        self, name: str, items: list[dict[str, Any]], query: dict[str, list[str]]
    ) -> dict[str, Any]:
        try:
            page = int(self._param(query, "page") or 1)
            per_page = int(self._param(query, "per_page") or 100)
        except ValueError:
            raise _Reply(400, {"error": "page and per_page must be numbers"}) from None
        if page < 1 or per_page < 1:
            raise _Reply(400, {"error": "page and per_page must be positive"})
        # Guess (unverified): above the documented maximum the API serves the maximum.
        per_page = min(per_page, MAX_PER_PAGE)
        total = len(items)
        start = (page - 1) * per_page
        return {
            "page": page,
            "per_page": per_page,
            "total_pages": math.ceil(total / per_page),
            "total_records": total,
            name: items[start : start + per_page],
        }

    @staticmethod
    def _json(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _Reply(400, {"error": "Request body is not valid JSON"}) from None
        if not isinstance(body, dict):
            raise _Reply(400, {"error": "Request body must be a JSON object"})
        return body

    def _send(self, reply: _Reply) -> None:
        if reply.text is not None:
            payload = reply.text.encode()
            ctype = (
                "text/html; charset=utf-8"
                if reply.text.startswith("<")
                else "text/plain; charset=utf-8"
            )
        elif reply.status == 204:
            payload, ctype = b"", None
        else:
            payload = json.dumps(reply.body).encode()
            ctype = "application/json; charset=utf-8"
        try:
            self.send_response(reply.status)
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if payload:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _control(self, method: str, path: str, raw: bytes) -> None:
        """`/_sim/stats`, `/_sim/log`, `/_sim/keys` (GET); `/_sim/reset`, `/_sim/knobs` (POST a
        JSON object of knobs), `/_sim/accounts` (POST {"key", "companies"}: add an account)."""
        server = self.server
        try:
            if path == "/_sim/stats" and method == "GET":
                self._send(_Reply(200, server.stats()))
            elif path == "/_sim/reset" and method == "POST":
                server.reset()
                self._send(_Reply(200, server.stats()))
            elif path == "/_sim/knobs" and method == "POST":
                server.set_knobs(**self._json(raw))
                self._send(_Reply(200, server.stats()))
            elif path == "/_sim/keys" and method == "GET":
                self._send(_Reply(200, {"keys": server.data.api_keys}))
            elif path == "/_sim/log" and method == "GET":
                entries = [asdict(r) for r in server.requests_logged()]
                self._send(_Reply(200, {"requests": entries}))
            elif path == "/_sim/accounts" and method == "POST":
                body = self._json(raw)
                key = server.data.add_key(str(body["key"]))
                account = server.data.add_account(key, int(body.get("companies", 0)))
                self._send(_Reply(201, {"id": account}))
            else:
                self._send(_Reply(404, {"error": "Not Found"}))
        except (ValueError, TypeError, KeyError) as exc:
            self._send(_Reply(400, {"error": str(exc)}))
        except _Reply as reply:
            self._send(reply)
