"""The CallRail v3 API as the simulator serves it: its routes, then accounts, companies,
Webhooks integrations and calls (`call_listing.py`), shaped as CALLRAIL_API.md describes
the real ones.

Where the real API's behaviour is unknown, the guess made here is written next to the code
that makes it, and the client must tolerate either answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.call_listing import list_calls, summary, timeseries
from simulator.calls import CallBook
from simulator.data import WEBHOOK_KEYS, SimAccount, SimData
from simulator.query import Query, asked_fields, paginate, param, sort_asked
from simulator.replies import Reply, error, json_object
from simulator.streams import Configuration, Streams

TIMESTAMP_SORTS = {"created_at", "disabled_at"}
"""Sorted by the instant, whatever the offset: a text sort would put 10:07-07:00 (17:07 UTC)
before 11:33-05:00 (16:33 UTC). `disabled_at` is our addition (unverified upstream)."""
COMPANY_SORTS = {"id", "name", "status", "time_zone", *TIMESTAMP_SORTS}
ACCOUNT_SORTS = {"id", "name"}
TOKEN_RE = re.compile(r'^Token\s+token=(?:"([^"]*)"|([^\s"]+))\s*$')
KEY = "callrail.key"
"""The scope entry in which `gate.py` leaves the caller's authenticated API key."""
ORIGIN = "callrail.origin"
"""The scope entry holding `http://host:port` as the client named the server (for links)."""
JSON = "application/json; charset=utf-8"
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def now() -> str:
    """The current time as CallRail writes timestamps (here in UTC)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class CallRailApi:
    """Answers CallRail v3 requests from the simulator's data; one instance serves all requests.

    `routes` declares the paths; `gate.py` has authenticated the caller before a route runs.
    """

    def __init__(self, data: SimData, calls: CallBook, streams: Streams) -> None:
        self.data = data
        self.calls = calls
        self.streams = streams
        self.configuration = Configuration(self.streams)

    def routes(self) -> list[Route]:
        """The API's routes, under `/v3`."""
        account = "/v3/a/{account_id}"
        integration = account + "/integrations/{integration_id}.json"
        reads: list[tuple[str, Callable[[SimAccount, Query], dict[str, Any]]]] = [
            ("/calls/summary.json", functools.partial(summary, self.calls)),
            ("/calls/timeseries.json", functools.partial(timeseries, self.calls)),
            ("/form_submissions.json", self.streams.list_forms),
            ("/text-messages.json", self.streams.list_texts),
            ("/trackers.json", self.configuration.list_trackers),
            ("/tags.json", self.configuration.list_tags),
            ("/users.json", self.configuration.list_users),
        ]
        return [
            Route("/v3/a.json", self._list_accounts, methods=["GET"]),
            Route(account + ".json", self._get_account, methods=["GET"]),
            Route(account + "/calls.json", self._list_calls, methods=["GET"]),
            # next_page names the listing without `.json`, as CallRail's does.
            Route(account + "/calls", self._list_calls, methods=["GET"]),
            *(Route(account + path, self._read(answer), methods=["GET"]) for path, answer in reads),
            Route(account + "/companies.json", self._list_companies, methods=["GET"]),
            Route(account + "/companies/{company_id}.json", self._get_company, methods=["GET"]),
            Route(account + "/integrations.json", self._list_integrations, methods=["GET"]),
            Route(account + "/integrations.json", self._create_integration, methods=["POST"]),
            Route(integration, self._get_integration, methods=["GET"]),
            Route(integration, self._update_integration, methods=["PUT"]),
            Route(integration, self._disable_integration, methods=["DELETE"]),
        ]

    def authenticate(self, header: str) -> str:
        """The API key of an `Authorization: Token token=...` header, or a 401 reply."""
        match = TOKEN_RE.match(header)
        key = (match.group(1) or match.group(2)) if match else None
        if not key or key not in self.data.accounts_by_key:
            # Rails' token authentication answers in plain text (a guess for CallRail).
            raise Reply(401, text="HTTP Token: Access denied.\n")
        return key

    def account_named(self, key: str, path: str) -> str | None:
        """The id (`ACC…`) of the account a path names, if `key` may see it, however named."""
        segments = _segments(path)
        if len(segments) < 2 or segments[0] != "a":
            return None
        named = segments[1].removesuffix(".json") if len(segments) == 2 else segments[1]
        account = self.data.account_for(key, named)
        return account.id if account else None

    def _account(self, request: Request, write: bool = False) -> SimAccount:
        """The account the path names (a 404 reply if the key may not see it); for a write,
        a 403 reply if the key may not manage integrations."""
        key = request.scope[KEY]
        account = self.data.account_for(key, request.path_params["account_id"])
        if account is None:
            raise error(404, "Account not found")
        if write and key in self.data.read_only_keys:
            raise error(403, "You do not have permission to manage integrations")
        return account

    # --- accounts and companies ----------------------------------------------------------

    async def _list_accounts(self, request: Request) -> Response:
        query, key = _query(request), request.scope[KEY]
        wanted = asked_fields(query)
        accounts = [self.data.accounts[a].public(wanted) for a in self.data.accounts_by_key[key]]
        return ok(paginate("accounts", _sorted(accounts, query, ACCOUNT_SORTS), query))

    async def _get_account(self, request: Request) -> Response:
        return ok(self._account(request).public(asked_fields(_query(request))))

    async def _list_calls(self, request: Request) -> Response:
        account, url = self._account(request), request.scope[ORIGIN] + request.url.path
        text = list_calls(self.calls, account, _query(request), url)
        return Response(text, media_type=JSON)

    def _read(
        self, answer: Callable[[SimAccount, Query], dict[str, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint of a listing that is `answer(account, query)` as JSON."""

        async def endpoint(request: Request) -> Response:
            return ok(answer(self._account(request), _query(request)))

        return endpoint

    async def _list_companies(self, request: Request) -> Response:
        account, query = self._account(request), _query(request)
        status, search = param(query, "status"), (param(query, "search") or "").lower()
        if status not in (None, "active", "disabled"):
            raise error(400, "Invalid status filter")
        # Under the lock, so a page never shows a company half-way through a change.
        with self.data.lock:
            companies = self.data.companies(account)
            if status is not None or search:  # a plain listing need not look at each company
                companies = [
                    c
                    for c in companies
                    if status in (None, c["status"]) and search in c["name"].lower()
                ]
            return ok(paginate("companies", _sorted(companies, query, COMPANY_SORTS), query))

    async def _get_company(self, request: Request) -> Response:
        return ok(self._company(self._account(request), request.path_params["company_id"]))

    def _company(self, account: SimAccount, company_id: str) -> dict[str, Any]:
        """A copy of a listed company of the account, or a 404 reply."""
        with self.data.lock:
            for company in self.data.companies(account):
                if company["id"] == company_id:
                    return dict(company)
        raise error(404, "Company not found")

    # --- Webhooks integrations -----------------------------------------------------------

    async def _list_integrations(self, request: Request) -> Response:
        account, query = self._account(request), _query(request)
        company_id = param(query, "company_id")
        if not company_id:
            raise error(400, "company_id is required")
        self._company(account, company_id)
        with self.data.lock:
            found = [
                self._public_integration(i, query)
                for i in self.data.integrations.values()
                if i["account_id"] == account.id and i["company_id"] == company_id
            ]
        return ok(paginate("integrations", found, query))

    async def _create_integration(self, request: Request) -> Response:
        account = self._account(request, write=True)
        body, query = json_object(await request.body()), _query(request)
        if body.get("type") != "Webhooks":
            raise error(422, "Type is not a supported integration type")
        company_id = body.get("company_id")
        if not isinstance(company_id, str) or not company_id:
            raise error(400, "company_id is required")
        self._company(account, company_id)
        config = _config(body.get("config"))
        with self.data.lock:
            for existing in self.data.integrations.values():
                if existing["company_id"] == company_id and existing["type"] == "Webhooks":
                    raise error(422, "Company already has a Webhooks integration")
            record = self.data.new_integration(account.id, company_id, config, now())
        return ok(self._public_integration(record, query), 201)

    async def _get_integration(self, request: Request) -> Response:
        integration = self._integration(request, write=False)
        return ok(self._public_integration(integration, _query(request)))

    async def _update_integration(self, request: Request) -> Response:
        integration = self._integration(request, write=True)
        body, query = json_object(await request.body()), _query(request)
        config = body.get("config")
        state = body.get("state")
        if config is None and state is None:
            raise error(400, "Nothing to update")
        if state is not None and state not in ("active", "disabled"):
            raise error(422, "State is not included in the list")
        checked = _config(config) if config is not None else None
        with self.data.lock:
            if checked is not None:
                integration["config"] = checked
            if state is not None:
                integration["state"] = state
            integration["updated_at"] = now()
            self.data.changed()
            return ok(self._public_integration(integration, query))

    async def _disable_integration(self, request: Request) -> Response:
        integration = self._integration(request, write=True)
        with self.data.lock:
            integration["state"] = "disabled"
            integration["updated_at"] = now()
            self.data.changed()
        return Reply(204).response()

    def _integration(self, request: Request, write: bool) -> dict[str, Any]:
        account = self._account(request, write)
        record = self.data.integrations.get(request.path_params["integration_id"])
        if record is None or record["account_id"] != account.id:
            raise error(404, "Integration not found")
        return record

    @staticmethod
    def _public_integration(record: dict[str, Any], query: Query) -> dict[str, Any]:
        body = {k: v for k, v in record.items() if k not in ("signing_key", "account_id")}
        body["config"] = {k: list(v) for k, v in record["config"].items()}
        if "signing_key" in asked_fields(query):
            body["signing_key"] = record["signing_key"]
        return body


def ok(body: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return Reply(status, body).response()


def _query(request: Request) -> Query:
    """The query string as lists of values by name (blank values dropped, as before)."""
    return parse_qs(request.url.query)


# --- query parameters and bodies ---------------------------------------------------------


def _segments(path: str) -> list[str]:
    """["a.json"] | ["a", "ACC.json"] | ["a", "ACC", "companies.json"] | ...; [] off the API."""
    if not path.startswith("/v3/a"):
        return []
    return [unquote(s) for s in path[len("/v3/") :].split("/")]


def _sorted(items: list[dict[str, Any]], query: Query, allowed: set[str]) -> list[dict[str, Any]]:
    asked = sort_asked(query, allowed)
    if asked is None:
        return items
    sort, descending = asked
    value = _instant if sort in TIMESTAMP_SORTS else _text
    # Nulls last in both orders: `order` reverses the values, never where the nulls go (the
    # rule the shim follows too; what CallRail does is unverified).
    valued = [i for i in items if i.get(sort) is not None]
    nulls = [i for i in items if i.get(sort) is None]
    return sorted(valued, key=lambda i: value(i[sort]), reverse=descending) + nulls


def _text(value: Any) -> str:
    return str(value or "").lower()


def _instant(value: Any) -> datetime:
    """A timestamp as an aware datetime (one without an offset is taken as UTC)."""
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _config(config: Any) -> dict[str, list[str]]:
    if not isinstance(config, dict) or not config:
        raise error(422, "Config can't be blank")
    clean: dict[str, list[str]] = {}
    for name, urls in config.items():
        if name not in WEBHOOK_KEYS:
            raise error(422, f"Config has an unknown webhook type: {name}")
        if not isinstance(urls, list) or not all(
            isinstance(u, str) and URL_RE.match(u) for u in urls
        ):
            raise Reply(422, {"errors": [f"{name} must be a list of http(s) URLs"]})
        clean[name] = list(dict.fromkeys(urls))
    return clean
