"""The shim's FastAPI application, made by `create_app` (run it with
`uvicorn --factory api_shim.app:create_app`; JWT_SECRET or JWT_PUBLIC_KEY is required)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from celery import Celery
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from api_shim import openapi
from api_shim.admission import Admission, StreamSlots
from api_shim.auth import Authenticator
from api_shim.cache import ShimCache
from api_shim.deps import Services
from api_shim.envelope import install
from api_shim.hub import EventHub
from api_shim.inbox_writer import InboxWriter
from api_shim.limits import BodyLimit
from api_shim.metrics_server import MetricsServer
from api_shim.routes import (
    changes,
    control,
    events,
    health,
    inbound,
    jobs,
    listings,
    notifications,
    records,
    ui,
    webhooks,
)
from api_shim.routes.inbound import REFRESHES_PER_HOUR
from api_shim.tickets import Tickets
from callrail_sync.budget import SlidingWindows, Window
from callrail_sync.config import Settings
from callrail_sync.logs import scrub_handlers, setup_logging
from callrail_sync.runtime import Runtime, build_runtime
from callrail_sync.urls import INBOUND_PATH
from celeryconfig import create_celery
from tasks.submit import JobQueue
from tasks.table import CeleryQueue


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    queue: JobQueue | None = None,
) -> FastAPI:
    """The shim. Called with nothing (by uvicorn), it is an entry point: it reads the
    environment once and sets up logging; tests and `serve` hand in their own parts."""
    if settings is None:
        settings = runtime.settings if runtime else Settings()
        setup_logging(settings.log_level, json_lines=settings.log_json)
    # uvicorn's own handlers (its access log prints request lines, where stream tickets
    # travel) do not pass through ours: their final lines are scrubbed too.
    scrub_handlers("uvicorn.access", "uvicorn.error", "uvicorn")
    celery = create_celery(settings)
    runtime = runtime or build_runtime(settings)
    cache = ShimCache(runtime.stores)
    hub = EventHub(settings.redis_url, settings.redis_prefix)
    hub.listen(cache.forget)
    inbox = InboxWriter(runtime.stores, task_sender(celery))
    # /metrics on a port of its own, started now so that its URL is known to whoever made the
    # app (serve's banner); stopped with the app.
    metrics_server = MetricsServer(runtime, settings.shim_metrics_host, settings.shim_metrics_port)
    metrics_url = metrics_server.start()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        hub.start()
        yield
        await inbox.close()
        await hub.close()
        metrics_server.stop()

    app = FastAPIOffline(  # /docs: Swagger UI from files the shim serves (no CDN)
        title="callrail-sync",
        version="0.1.0",
        description="The dashboard's CallRail contract, served from jobs and snapshots.",
        lifespan=lifespan,
        # Paths are matched exactly: `/accounts/` is a 404 envelope, not a redirect built
        # from the request's Host header.
        redirect_slashes=False,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.services = Services(
        runtime=runtime,
        queue=queue or CeleryQueue(celery),
        auth=Authenticator(settings),
        cache=cache,
        hub=hub,
        tickets=Tickets(settings.redis_url, settings.redis_prefix),
        admission=Admission(settings, runtime.stores.jobs, runtime.redis),
        streams=StreamSlots(settings.redis_url, settings.streams_per_owner, settings.redis_prefix),
        inbox=inbox,
        key_readings=SlidingWindows(
            runtime.redis,
            [Window(REFRESHES_PER_HOUR, 3600)],
            prefix=f"{runtime.settings.redis_prefix}:inbound-keys",
        ),
        inbound_failures=SlidingWindows(
            runtime.redis,
            [Window(settings.inbound_failures_per_minute, 60)],
            prefix=f"{settings.redis_prefix}:inbound-failures",
        ),
    )
    app.state.broker_reachable = broker_check(celery)
    app.state.metrics_url = metrics_url
    install(app)
    app.add_middleware(BodyLimit, wider={INBOUND_PATH: settings.inbound_max_bytes})
    routers = [listings, webhooks, jobs, events, changes, records, notifications, control]
    routers += [inbound, health, ui]
    for module in routers:
        app.include_router(module.router)
    openapi.install(app)
    return app


def operation_id(route: APIRoute) -> str:
    """An operation's id is its route function's name (`list_accounts`), so a generated
    client's calls are named as the routes are."""
    return route.name


def task_sender(celery: Celery) -> Callable[[str, list[str]], None]:
    def send(name: str, arg: list[str]) -> None:
        retry_policy = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}
        celery.send_task(name, args=[arg], retry=True, retry_policy=retry_policy)

    return send


def broker_check(celery: Celery) -> Callable[[], bool]:
    def reachable() -> bool:
        try:
            with celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception:
            return False

    return reachable
