"""Operations routes: liveness and readiness. (Prometheus metrics are served on a port of
their own that the public never reaches: api_shim/metrics_server.py.)"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api_shim.deps import Svc
from api_shim.envelope import failure, success

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """The process is up and its event loop answers (no dependency is asked)."""
    return success({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request, svc: Svc) -> Response:
    """Mongo and the broker answer: the shim can take work (503 otherwise)."""
    broker_reachable: Callable[[], bool] = request.app.state.broker_reachable
    checks = {
        "mongo": await run_in_threadpool(svc.runtime.stores.ping),
        "broker": await run_in_threadpool(broker_reachable),
    }
    if all(checks.values()):
        return success(checks)
    return failure(503, "Not ready: " + ", ".join(k for k, ok in checks.items() if not ok))
