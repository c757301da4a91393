"""What a route needs, handed in by FastAPI: the runtime, the job queue, the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api_shim.auth import authenticate
from tasks.submit import JobQueue
from worker import errors
from worker.runtime import Runtime


@dataclass
class Services:
    """The parts `create_app` wired for this app."""

    runtime: Runtime
    queue: JobQueue


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def current_owner(request: Request, svc: Annotated[Services, Depends(services)]) -> str:
    """The DashClicks account of the bearer token."""
    return authenticate(request.headers.get("Authorization"), svc.runtime.settings)


def require_key(svc: Services, owner: str) -> None:
    """The spec checks the caller's CallRail key before anything else of the request."""
    if svc.runtime.stores.keys.usable_key(owner) is None:
        raise errors.ApiKeyNotFound()


Svc = Annotated[Services, Depends(services)]
Owner = Annotated[str, Depends(current_owner)]
