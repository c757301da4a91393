"""The CallRail v3 API as the simulator serves it: routing, then accounts, companies,
Webhooks integrations and calls (`call_listing.py`), shaped as CALLRAIL_API.md describes
the real ones.

Where the real API's behaviour is unknown, the guess made here is written next to the code
that makes it, and the client must tolerate either answer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from simulator.call_listing import list_calls
from simulator.calls import CallBook
from simulator.data import WEBHOOK_KEYS, SimAccount, SimData
from simulator.query import Query, asked_fields, paginate, param
from simulator.replies import Reply, error, json_object

TIMESTAMP_SORTS = {"created_at", "disabled_at"}
"""Sorted by the instant, whatever the offset: a text sort would put 10:07-07:00 (17:07 UTC)
before 11:33-05:00 (16:33 UTC). `disabled_at` is our addition (unverified upstream)."""
COMPANY_SORTS = {"id", "name", "status", "time_zone", *TIMESTAMP_SORTS}
ACCOUNT_SORTS = {"id", "name"}
TOKEN_RE = re.compile(r'^Token\s+token=(?:"([^"]*)"|([^\s"]+))\s*$')
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def now() -> str:
    """The current time as CallRail writes timestamps (here in UTC)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class CallRailApi:
    """Answers CallRail v3 requests from the simulator's data; one instance serves all threads."""

    def __init__(self, data: SimData, calls: CallBook | None = None) -> None:
        self.data = data
        self.calls = calls or CallBook(data)

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

    def handle(
        self, method: str, path: str, query: Query, raw: bytes, key: str, origin: str = ""
    ) -> Reply:
        """The reply to an authenticated request; errors are raised as `Reply`. `origin`
        (`http://host:port`, as the client named the server) begins the URLs of links."""
        body = self._route(method, path, query, raw, key, origin)
        if method == "DELETE":
            return Reply(204)
        return Reply(201 if method == "POST" else 200, body)

    # --- routing -------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, query: Query, raw: bytes, key: str, origin: str
    ) -> Any:
        segments = _segments(path)
        if segments == ["a.json"]:
            _allow(method, "GET")
            return self._list_accounts(query, key)
        if len(segments) < 2 or segments[0] != "a":
            raise error(404, "Not Found")
        if len(segments) == 2 and segments[1].endswith(".json"):
            _allow(method, "GET")
            return self._account(key, segments[1][:-5]).public(asked_fields(query))
        account = self._account(key, segments[1])
        rest = segments[2:]
        if method in ("POST", "PUT", "DELETE") and key in self.data.read_only_keys:
            raise error(403, "You do not have permission to manage integrations")
        if rest == ["calls.json"]:
            _allow(method, "GET")
            return list_calls(self.calls, account, query, origin + path)
        if rest == ["companies.json"]:
            _allow(method, "GET")
            return self._list_companies(account, query)
        if len(rest) == 2 and rest[0] == "companies" and rest[1].endswith(".json"):
            _allow(method, "GET")
            return self._company(account, rest[1][:-5])
        if rest == ["integrations.json"]:
            _allow(method, "GET", "POST")
            if method == "GET":
                return self._list_integrations(account, query)
            return self._create_integration(account, json_object(raw), query)
        if len(rest) == 2 and rest[0] == "integrations" and rest[1].endswith(".json"):
            _allow(method, "GET", "PUT", "DELETE")
            integration = self._integration(account, rest[1][:-5])
            if method == "GET":
                return self._public_integration(integration, query)
            if method == "PUT":
                return self._update_integration(integration, json_object(raw), query)
            integration["state"] = "disabled"
            integration["updated_at"] = now()
            return None
        raise error(404, "Not Found")

    def _account(self, key: str, account_id: str) -> SimAccount:
        account = self.data.account_for(key, account_id)
        if account is None:
            raise error(404, "Account not found")
        return account

    # --- accounts and companies ----------------------------------------------------------

    def _list_accounts(self, query: Query, key: str) -> dict[str, Any]:
        wanted = asked_fields(query)
        accounts = [self.data.accounts[a].public(wanted) for a in self.data.accounts_by_key[key]]
        return paginate("accounts", _sorted(accounts, query, ACCOUNT_SORTS), query)

    def _list_companies(self, account: SimAccount, query: Query) -> dict[str, Any]:
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
            return paginate("companies", _sorted(companies, query, COMPANY_SORTS), query)

    def _company(self, account: SimAccount, company_id: str) -> dict[str, Any]:
        """A copy of a listed company of the account, or a 404 reply."""
        with self.data.lock:
            for company in self.data.companies(account):
                if company["id"] == company_id:
                    return dict(company)
        raise error(404, "Company not found")

    # --- Webhooks integrations -----------------------------------------------------------

    def _list_integrations(self, account: SimAccount, query: Query) -> dict[str, Any]:
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
        return paginate("integrations", found, query)

    def _create_integration(
        self, account: SimAccount, body: dict[str, Any], query: Query
    ) -> dict[str, Any]:
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
        return self._public_integration(record, query)

    def _update_integration(
        self, integration: dict[str, Any], body: dict[str, Any], query: Query
    ) -> dict[str, Any]:
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
            return self._public_integration(integration, query)

    def _integration(self, account: SimAccount, integration_id: str) -> dict[str, Any]:
        record = self.data.integrations.get(integration_id)
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


# --- query parameters and bodies ---------------------------------------------------------


def _segments(path: str) -> list[str]:
    """["a.json"] | ["a", "ACC.json"] | ["a", "ACC", "companies.json"] | ...; [] off the API."""
    if not path.startswith("/v3/a"):
        return []
    return [unquote(s) for s in path[len("/v3/") :].split("/")]


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise error(405, "Method Not Allowed")


def _sorted(items: list[dict[str, Any]], query: Query, allowed: set[str]) -> list[dict[str, Any]]:
    sort, order = param(query, "sort"), param(query, "order")
    if order is not None and sort is None:
        raise error(400, "sort is required when order is given")
    if order is not None and order not in ("asc", "desc"):
        raise error(400, "order must be asc or desc")
    if sort is None:
        return items
    if sort not in allowed:
        raise error(400, f"Invalid sort field: {sort}")
    value = _instant if sort in TIMESTAMP_SORTS else _text
    # Nulls rank above every value: last in asc, and first in desc, its mirror (PostgreSQL's
    # default; what CallRail does is unverified).
    return sorted(
        items,
        key=lambda i: (i.get(sort) is None, value(i.get(sort))),
        reverse=order == "desc",
    )


def _text(value: Any) -> str:
    return str(value or "").lower()


def _instant(value: Any) -> datetime:
    """A timestamp as an aware datetime (one without an offset is taken as UTC)."""
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
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
