"""Shared fixtures: real components (simulator over HTTP, Redis) wherever they can run here."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker

import tasks.schedule  # noqa: F401  (importing registers the tasks)
import tasks.sync  # noqa: F401
import tasks.webhooks  # noqa: F401
from simulator import SimData, SimServer
from worker.callrail.client import CallRailClient, Timeouts
from worker.celery_app import app as celery_app
from worker.config import Settings
from worker.runtime import Runtime, budget_for, configure
from worker.store import FINAL_STATUSES, MongoStore, connect


@pytest.fixture
def sim_data() -> SimData:
    return SimData(seed=42, keys=2, accounts_per_key=2, companies_per_account=30)


@pytest.fixture
def sim(sim_data: SimData) -> Iterator[SimServer]:
    server = SimServer(sim_data).start()
    yield server
    server.stop()


@pytest.fixture
def api_key(sim_data: SimData) -> str:
    return sim_data.api_keys[0]


@pytest.fixture
def client(sim: SimServer, api_key: str) -> CallRailClient:
    return CallRailClient(api_key, base_url=sim.base_url, timeouts=Timeouts(connect=2, read=2))


# --- jobs: real Redis broker, real Celery worker (threads), in-process Mongo ----------------


TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
os.environ["METRICS_PORT"] = "0"  # test workers run in threads of this process: no metrics port
OWNER = "64f1c2a9e4b0a1b2c3d4e5f6"
OTHER_OWNER = "650000000000000000000abc"
TEST_SECRET = "test-secret-" + "0123456789abcdef" * 4


@pytest.fixture
def redis_url() -> str:
    """A Redis database of the real server, emptied for each test."""
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    return TEST_REDIS_URL


@pytest.fixture
def settings(sim: SimServer, redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        callrail_base_url=sim.base_url,
        backoff_base=0.05,
        backoff_cap=0.2,
        max_attempts=3,
        callrail_read_timeout=2.0,
        jwt_secret=TEST_SECRET,
    )


@pytest.fixture
def store(settings: Settings) -> MongoStore:
    return connect(settings)


@pytest.fixture
def runtime(settings: Settings, store: MongoStore) -> Iterator[Runtime]:
    client = redis.Redis.from_url(settings.redis_url)
    rt = Runtime(settings=settings, store=store, budget=budget_for(settings, client), redis=client)
    configure(rt)
    yield rt
    configure(None)


@pytest.fixture
def owner(store: MongoStore, api_key: str) -> str:
    store.set_api_key(OWNER, api_key)
    return OWNER


@pytest.fixture
def worker(runtime: Runtime, redis_url: str) -> Iterator[Any]:
    """A real Celery worker (thread pool) consuming both queues from the real Redis."""
    celery_app.conf.broker_url = redis_url
    celery_app.conf.result_backend = redis_url
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=["callrail.listings", "callrail.webhooks"],
        loglevel="WARNING",
        shutdown_timeout=10,
    ) as w:
        yield w


def wait_job(store: MongoStore, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        if job is not None and job["status"] in FINAL_STATUSES:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {store.get_job(job_id)}")


# --- the shim ----------------------------------------------------------------------------------


@pytest.fixture
def token(settings: Settings) -> str:
    from api_shim.auth import issue_token

    return issue_token(OWNER, settings.jwt_secret or "")


@pytest.fixture
def shim_url(runtime: Runtime, redis_url: str) -> Iterator[str]:
    """The shim under a real uvicorn server on a free port."""
    import socket
    import threading

    import uvicorn

    from api_shim.app import create_app

    celery_app.conf.broker_url = redis_url
    celery_app.conf.result_backend = redis_url
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)
    sock.close()
