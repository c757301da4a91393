"""The spec's response envelope, and the one place where errors become HTTP answers."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from callrail_sync import errors
from callrail_sync.stores.database import UNAVAILABLE as STORE_UNAVAILABLE

log = logging.getLogger("callrail_sync.shim")
HTTP_MESSAGES = {404: "Not found.", 405: "Method not allowed."}
STORE_DOWN = "The database is unavailable; please try again shortly."


def success(data: Any, status: int = 200, message: str = "SUCCESS") -> JSONResponse:
    return JSONResponse({"success": True, "message": message, "data": data}, status_code=status)


def failure(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "errno": status, "message": message}, status_code=status)


def refusal(error: Any) -> str:
    """The message of a query or body model's refusal: the words of the ValueError that a
    field's type raised (`api_shim.validation`), or else pydantic's, naming the field."""
    raised = error.get("ctx", {}).get("error")
    if error.get("type") == "value_error" and isinstance(raised, ValueError):
        return str(raised)
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path"))
    return f"{where}: {error.get('msg', 'invalid value')}" if where else str(error.get("msg"))


def install(app: FastAPI) -> None:
    """Route every error, expected or not, through the envelope. No stack trace leaves."""

    @app.exception_handler(errors.CallRailSyncError)
    async def _service_error(_: Request, exc: errors.CallRailSyncError) -> JSONResponse:
        answer = failure(exc.errno, exc.user_message)
        if isinstance(exc, errors.TooManyRequests):
            answer.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return answer

    async def _store_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning(
            "database unavailable", extra={"path": request.url.path, "error": type(exc).__name__}
        )
        return failure(503, STORE_DOWN)

    for unavailable in STORE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _store_down)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The first refusal, as the checks are ordered: the spec has one message per request.
        errors = exc.errors()
        return failure(400, refusal(errors[0]) if errors else "Invalid request.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return failure(exc.status_code, HTTP_MESSAGES.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return failure(500, "Internal server error.")
