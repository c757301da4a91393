"""The `/_sim/*` routes: how tests, benchmarks and `stack` steer a running simulator.

GET `stats`, `log`, `keys`; POST `reset`, `knobs` (a JSON object of knobs),
`accounts` ({"key", "companies"}: add an account), `keys` ({"key", "accounts"}: the key,
added if new, sees those accounts); companies changing while the simulator runs: POST
`companies` ({"account", "id"?, ...fields}: add, or restore a removed id), PATCH
`companies/{id}` (change fields), DELETE `companies/{id}` (remove); calls: POST `calls`
({"company_id", ...}: `SimServer.place_call`), PATCH `calls/{id}` (edit a call later: tags,
note, lead_status, value...), POST `calls/{id}/spam` (it leaves the call log), POST
`forms` ({"company_id", ...fields}: a form submitted now), POST `texts` ({"company_id",
"customer_phone_number"?, "content"?, "direction"?}: a text now, in that number's
conversation or a new one), DELETE `trackers/{id}` (disabled, still listed), `tags/{id}`,
`users/{id}` (gone), GET `deliveries` (`?wait=1` first waits for those due, up to
`timeout` seconds, 10 by default). `control.py` is their client.

An unknown id is a 404, an id taken a 409, a bad body a 400, each `{"error": ...}`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.data import Conflict, NotFound
from simulator.query import param
from simulator.replies import Reply, error, json_object

if TYPE_CHECKING:
    from simulator.server import SimServer

Endpoint = Callable[[Request], Awaitable[Reply]]


def _answers(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """A control's reply as a response; the data's refusals as 404, 409 and 400 replies."""

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            reply = await endpoint(request)
        except Reply as refused:
            reply = refused
        except NotFound as exc:
            reply = error(404, str(exc))
        except Conflict as exc:
            reply = error(409, str(exc))
        except (ValueError, TypeError) as exc:
            reply = error(400, str(exc))
        return reply.response()

    return answer


def routes(sim: SimServer) -> list[Route]:
    """The control routes of one simulator."""

    async def stats(request: Request) -> Reply:
        return Reply(200, sim.stats())

    async def reset(request: Request) -> Reply:
        sim.reset()
        return Reply(200, sim.stats())

    async def knobs(request: Request) -> Reply:
        sim.set_knobs(**json_object(await request.body()))
        return Reply(200, sim.stats())

    async def keys(request: Request) -> Reply:
        return Reply(200, {"keys": sim.data.api_keys})

    async def log(request: Request) -> Reply:
        return Reply(200, {"requests": [asdict(r) for r in sim.requests_logged()]})

    async def share(request: Request) -> Reply:
        body = json_object(await request.body())
        key, accounts = _text(body, "key"), body.get("accounts", [])
        if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
            raise ValueError("accounts must be a list of account ids")
        data = sim.data
        with data.lock:
            for account_id in accounts:  # all or nothing: look every one up before sharing
                data.account(account_id)
            is_new = key not in data.accounts_by_key
            data.add_key(key)
            for account_id in accounts:
                data.share_account(key, account_id)
            visible = list(data.accounts_by_key[key])
        return Reply(201 if is_new else 200, {"key": key, "accounts": visible})

    async def place_call(request: Request) -> Reply:
        company_id, fields = _split(json_object(await request.body()), "company_id")
        return Reply(201, {"call": sim.place_call(company_id, **fields)})

    async def deliveries(request: Request) -> Reply:
        query = parse_qs(request.url.query)
        if param(query, "wait") in ("1", "true"):
            await run_in_threadpool(sim.settle, float(param(query, "timeout") or 10.0))
        made = [asdict(d) for d in sim.deliveries_logged()]
        return Reply(200, {"deliveries": made, "pending": sim.deliveries.pending})

    async def add_company(request: Request) -> Reply:
        account_id, fields = _split(json_object(await request.body()), "account")
        company_id = str(fields.get("id", ""))
        data = sim.data
        with data.lock:
            home = data.removed_from(company_id)
            if home is None:
                return Reply(201, dict(data.add_company(account_id, **fields)))
            if data.account(account_id).id != home:
                raise ValueError(f"Company {company_id} was removed from account {home}")
            return Reply(200, dict(data.restore_company(company_id, **fields)))

    async def change_company(request: Request) -> Reply:
        company_id = request.path_params["company_id"]
        body = json_object(await request.body())
        with sim.data.lock:  # the reply copies the record before another change can
            return Reply(200, dict(sim.data.update_company(company_id, **body)))

    async def remove_company(request: Request) -> Reply:
        sim.data.remove_company(request.path_params["company_id"])
        return Reply(204)

    async def add_account(request: Request) -> Reply:
        body = json_object(await request.body())
        key = sim.data.add_key(_text(body, "key"))
        calls, days = body.get("calls_per_company"), body.get("call_days")
        account = sim.data.add_account(
            key,
            int(body.get("companies", 0)),
            calls_per_company=None if calls is None else int(calls),
            call_days=None if days is None else int(days),
        )
        return Reply(201, {"id": account})

    async def edit_call(request: Request) -> Reply:
        call_id = request.path_params["call_id"]
        sim.calls.edit(call_id, json_object(await request.body()))
        return Reply(200, {"id": call_id, "edits": sim.calls.edits[call_id]})

    async def add_form(request: Request) -> Reply:
        company_id, fields = _split(json_object(await request.body()), "company_id")
        return Reply(201, {"form_submission": sim.streams.add_form(company_id, **fields)})

    async def add_text(request: Request) -> Reply:
        company_id, fields = _split(json_object(await request.body()), "company_id")
        unknown = set(fields) - {"customer_phone_number", "content", "direction"}
        if unknown:
            raise ValueError(f"Unknown text field: {', '.join(sorted(unknown))}")
        return Reply(201, {"conversation": sim.streams.add_text(company_id, **fields)})

    def delete(kind: str) -> Endpoint:
        async def endpoint(request: Request) -> Reply:
            record = sim.api.configuration.delete(kind, request.path_params["id"])
            return Reply(200, record) if kind == "trackers" else Reply(204)

        return endpoint

    async def mark_spam(request: Request) -> Reply:
        sim.calls.mark_spam(request.path_params["call_id"])
        return Reply(204)

    table: list[tuple[str, Endpoint, str]] = [
        ("/_sim/stats", stats, "GET"),
        ("/_sim/reset", reset, "POST"),
        ("/_sim/knobs", knobs, "POST"),
        ("/_sim/keys", keys, "GET"),
        ("/_sim/keys", share, "POST"),
        ("/_sim/log", log, "GET"),
        ("/_sim/calls", place_call, "POST"),
        ("/_sim/calls/{call_id}", edit_call, "PATCH"),
        ("/_sim/calls/{call_id}/spam", mark_spam, "POST"),
        ("/_sim/deliveries", deliveries, "GET"),
        ("/_sim/forms", add_form, "POST"),
        ("/_sim/texts", add_text, "POST"),
        ("/_sim/trackers/{id}", delete("trackers"), "DELETE"),
        ("/_sim/tags/{id}", delete("tags"), "DELETE"),
        ("/_sim/users/{id}", delete("users"), "DELETE"),
        ("/_sim/companies", add_company, "POST"),
        ("/_sim/companies/{company_id}", change_company, "PATCH"),
        ("/_sim/companies/{company_id}", remove_company, "DELETE"),
        ("/_sim/accounts", add_account, "POST"),
    ]
    return [Route(path, _answers(endpoint), methods=[method]) for path, endpoint, method in table]


def _text(body: dict[str, Any], name: str) -> str:
    """A required, non-empty string field of a control's body."""
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _split(body: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """A control body's required `name` (see `_text`), and its other fields."""
    return _text(body, name), {k: v for k, v in body.items() if k != name}
