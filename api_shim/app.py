"""Routes of the dashboard contract (`/v1/e/callrail`), served from jobs and snapshots.

Run with `uvicorn api_shim.app:app` (JWT_SECRET or JWT_PUBLIC_KEY required), or as part of
`callrail-sync serve`.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from api_shim import validation as check
from api_shim.auth import authenticate
from api_shim.envelope import ApiError, failure, install, success
from tasks.submit import JobType, dedupe_key, submit
from worker.celery_app import app as celery_app
from worker.config import Settings
from worker.errors import API_KEY_NOT_FOUND
from worker.logs import setup_logging
from worker.metrics import exposition
from worker.runtime import Runtime, runtime
from worker.store import FINAL_STATUSES, SORTABLE, Kind, utcnow

PREFIX = "/v1/e/callrail"
MSG_ACCOUNT_REQUIRED = "Callrail account id is required."
MSG_CREATE_REQUIRED = "Callrail account id, company id and webhook url are required."
MSG_UPDATE_REQUIRED = (
    "Callrail account id, company id, webhook id and webhook url or status are required."
)
MSG_LIST_REQUIRED = "Callrail account id and company id are required."
MAX_WAIT = 30


class WebhookCreate(BaseModel):
    """Body of POST /companies/webhook."""

    account_id: str = Field(examples=["470306151"])
    company_id: str = Field(examples=["COM8154748ae6bd4e278a7cddd38a662f4f"])
    webhook_url: str = Field(examples=["https://dashclicks.com/api/webhooks/callrail"])
    events: list[str] | None = Field(None, examples=[["call.completed", "call.received"]])


class WebhookUpdate(BaseModel):
    """Body of PUT /companies/webhook: webhook_url and/or status."""

    account_id: str
    company_id: str
    webhook_id: str = Field(examples=["web_3f2a9c0d1e4b5a6f"])
    webhook_url: str | None = None
    status: str | None = Field(None, examples=["disabled"])


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def get_runtime() -> Runtime:
    return runtime()


def current_owner(request: Request, rt: Runtime = Depends(get_runtime)) -> str:
    return authenticate(request.headers.get("Authorization"), rt.settings)


def require_key(owner: str, rt: Runtime) -> None:
    if rt.store.usable_api_key(owner) is None:
        raise ApiError(400, API_KEY_NOT_FOUND)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """What the frontend sees of a job: never the owner's key, never internal fields."""
    progress = job.get("progress") or {}
    return {
        "job_id": job["_id"],
        "type": job["type"],
        "status": job["status"],
        "params": job.get("params") or {},
        "progress": {
            "pages_done": len(progress.get("pages_done") or []),
            "total_pages": progress.get("total_pages"),
            "records": progress.get("records", 0),
        },
        "result": job.get("result"),
        "error": job.get("error") if job["status"] in ("failed", "retrying") else None,
        "attempts": job.get("attempts", 0),
        "next_retry_at": _iso(job.get("next_retry_at")),
        "created_at": _iso(job.get("created_at")),
        "started_at": _iso(job.get("started_at")),
        "finished_at": _iso(job.get("finished_at")),
        "updated_at": _iso(job.get("updated_at")),
    }


def accepted(job: dict[str, Any]) -> JSONResponse:
    return success(
        {
            "job_id": job["_id"],
            "status": job["status"],
            "status_url": f"{PREFIX}/jobs/{job['_id']}",
        },
        status=202,
        message="ACCEPTED",
    )


def _serve_listing(
    rt: Runtime,
    owner: str,
    kind: Kind,
    job_type: JobType,
    params: dict[str, Any],
    request: Request,
    *,
    allowed_sorts: list[str],
    include_disabled: bool = True,
) -> JSONResponse:
    q = request.query_params
    page = check.page_number(q.get("page"), "page", 1)
    per_page = check.page_number(q.get("per_page"), "per_page", 10, check.MAX_PER_PAGE)
    sort, descending = check.sort_order(q.get("sort"), allowed_sorts)
    search = check.search_text(q.get("search"))
    refresh = check.flag(q.get("refresh"), "refresh")
    account_id = params.get("callrail_account_id")
    head = rt.store.current_snapshot(owner, kind, account_id)
    if head is None or refresh:
        job, _ = submit(rt.store, owner, job_type, params)
        return accepted(job)
    age = (utcnow() - head["synced_at"]).total_seconds()
    stale = age > rt.settings.snapshot_max_age
    if stale:
        refresh_job: dict[str, Any] | None = submit(rt.store, owner, job_type, params)[0]
    else:
        refresh_job = rt.store.active_job(dedupe_key(owner, job_type, params) or "")
    items, total = rt.store.read_page(
        kind,
        head["snapshot_id"],
        page=page,
        per_page=per_page,
        sort=sort,
        descending=descending,
        search=search,
        include_disabled=include_disabled,
    )
    if kind == "accounts":
        counts = rt.store.company_counts(owner, [a["id"] for a in items])
        items = [{**a, "companies_count": counts.get(a["id"])} for a in items]
    return success(
        {
            kind: items,
            "page": page,
            "per_page": per_page,
            "total_pages": math.ceil(total / per_page),
            "total_records": total,
            "snapshot": {
                "synced_at": _iso(head["synced_at"]),
                "stale": stale,
                "refresh_job_id": refresh_job["_id"] if refresh_job else None,
            },
        }
    )


async def _keyed_body(request: Request, owner: str, rt: Runtime) -> dict[str, Any]:
    """The JSON object of a write request, once the caller is known to have a usable key
    (the spec checks the key before the fields)."""
    raw = await request.body()
    require_key(owner, rt)
    return check.json_object(raw)


def _company_ref(account_id: Any, company_id: Any) -> dict[str, Any]:
    return {
        "account_id": check.callrail_id(account_id, "account_id"),
        "company_id": check.callrail_id(company_id, "company_id"),
    }


router = APIRouter(prefix=PREFIX)


@router.get("/accounts", summary="List the CallRail accounts of the caller's API key")
def list_accounts(
    request: Request,
    owner: str = Depends(current_owner),
    rt: Runtime = Depends(get_runtime),
    page: str | None = Query(None, description="page number, from 1"),
    per_page: str | None = Query(None, description="1 to 250, default 10"),
    sort: str | None = Query(None, description="name or id; prefix - for descending"),
    search: str | None = Query(None, description="case-insensitive substring of the name"),
    refresh: str | None = Query(None, description="true: sync from CallRail now (202)"),
) -> JSONResponse:
    require_key(owner, rt)
    return _serve_listing(
        rt,
        owner,
        "accounts",
        "sync_accounts",
        {},
        request,
        allowed_sorts=sorted(SORTABLE["accounts"]),
    )


@router.get("/companies", summary="List, search and sort the companies of a CallRail account")
def list_companies(
    request: Request,
    owner: str = Depends(current_owner),
    rt: Runtime = Depends(get_runtime),
    account_id: str | None = Query(None, description="CallRail account id (required)"),
    page: str | None = Query(None),
    per_page: str | None = Query(None, description="1 to 250, default 10"),
    sort: str | None = Query(
        None, description="name, id, created_at, status, time_zone, disabled_at"
    ),
    disabled: str | None = Query(None, description="true: include disabled companies"),
    search: str | None = Query(None, description="case-insensitive substring of the name"),
    refresh: str | None = Query(None),
) -> JSONResponse:
    require_key(owner, rt)
    if not account_id:
        raise ApiError(400, MSG_ACCOUNT_REQUIRED)
    account = check.callrail_id(account_id, "account_id")
    include_disabled = check.flag(disabled, "disabled")
    return _serve_listing(
        rt,
        owner,
        "companies",
        "sync_companies",
        {"callrail_account_id": account},
        request,
        allowed_sorts=sorted(SORTABLE["companies"]),
        include_disabled=include_disabled,
    )


@router.get("/companies/webhook", summary="List a company's webhooks (a job)")
def list_webhooks(
    owner: str = Depends(current_owner),
    rt: Runtime = Depends(get_runtime),
    account_id: str | None = Query(None),
    company_id: str | None = Query(None),
) -> JSONResponse:
    require_key(owner, rt)
    if not account_id or not company_id:
        raise ApiError(400, MSG_LIST_REQUIRED)
    job, _ = submit(rt.store, owner, "webhook_list", _company_ref(account_id, company_id))
    return accepted(job)


@router.post(
    "/companies/webhook",
    summary="Create a webhook for a company (a job)",
    openapi_extra=_body_doc(WebhookCreate),
)
async def create_webhook(
    request: Request, owner: str = Depends(current_owner), rt: Runtime = Depends(get_runtime)
) -> JSONResponse:
    body = await _keyed_body(request, owner, rt)
    if not check.present(body, "account_id", "company_id", "webhook_url"):
        raise ApiError(400, MSG_CREATE_REQUIRED)
    params = _company_ref(body["account_id"], body["company_id"])
    params["webhook_url"] = check.http_url(body["webhook_url"], "webhook_url")
    chosen = check.events(body.get("events"))
    if chosen:
        params["events"] = chosen
    job, _ = submit(rt.store, owner, "webhook_create", params)
    return accepted(job)


@router.put(
    "/companies/webhook",
    summary="Change a webhook's URL and/or status (a job)",
    openapi_extra=_body_doc(WebhookUpdate),
)
async def update_webhook(
    request: Request, owner: str = Depends(current_owner), rt: Runtime = Depends(get_runtime)
) -> JSONResponse:
    body = await _keyed_body(request, owner, rt)
    if not check.present(body, "account_id", "company_id", "webhook_id") or not (
        check.present(body, "webhook_url") or check.present(body, "status")
    ):
        raise ApiError(400, MSG_UPDATE_REQUIRED)
    params = _company_ref(body["account_id"], body["company_id"])
    params["webhook_id"] = check.callrail_id(body["webhook_id"], "webhook_id")
    if check.present(body, "webhook_url"):
        params["webhook_url"] = check.http_url(body["webhook_url"], "webhook_url")
    if check.present(body, "status"):
        if body["status"] not in ("enabled", "disabled"):
            raise ApiError(400, "status must be 'enabled' or 'disabled'.")
        params["status"] = body["status"]
    job, _ = submit(rt.store, owner, "webhook_update", params)
    return accepted(job)


@router.get("/jobs/{job_id}", summary="A job's status, progress and result")
def get_job(
    job_id: str,
    owner: str = Depends(current_owner),
    rt: Runtime = Depends(get_runtime),
    wait: str | None = Query(None, description=f"seconds (≤ {MAX_WAIT}) to wait for the end"),
) -> JSONResponse:
    seconds = check.page_number(wait, "wait", 0, MAX_WAIT) if wait not in (None, "", "0") else 0
    deadline = time.monotonic() + seconds
    while True:
        job = rt.store.get_job(job_id, owner=owner)
        if job is None:
            raise ApiError(404, "Job not found.")
        if job["status"] in FINAL_STATUSES or time.monotonic() >= deadline:
            return success(job_view(job))
        time.sleep(0.2)


def create_app() -> FastAPI:
    app = FastAPI(
        title="callrail-sync",
        version="0.1.0",
        description="The dashboard's CallRail contract, served from jobs and snapshots.",
    )
    install(app)
    app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return success({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/readyz", include_in_schema=False)
    def readyz(rt: Runtime = Depends(get_runtime)) -> Response:
        checks = {"mongo": rt.store.ping(), "broker": broker_reachable()}
        if all(checks.values()):
            return success(checks)
        return failure(503, "Not ready: " + ", ".join(k for k, ok in checks.items() if not ok))

    return app


def broker_reachable() -> bool:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


def _app_for_uvicorn() -> FastAPI:
    settings = Settings.from_env()
    setup_logging(settings.log_level, json_lines=settings.log_json)
    return create_app()


app = _app_for_uvicorn()
