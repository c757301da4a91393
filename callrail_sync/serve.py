"""`callrail-sync serve`: the shim, a worker and beat in one process, on embedded defaults.

Redis at REDIS_URL when it answers, else an in-process broker; Mongo at MONGO_URL when set,
else an in-process store; CallRail at CALLRAIL_BASE_URL when set, else the built-in simulator
with demo data and a demo key for DEMO_ACCOUNT_ID. Production runs these as separate
processes (docker-compose.yml); this is for trying the service and for development.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass

import redis
import uvicorn
from celery import Celery
from celery.beat import EmbeddedService

from api_shim.app import create_app
from api_shim.auth import DEV_SECRET, issue_token
from celeryconfig import PLAN_TASK, Queues
from simulator import SimData, SimServer
from tasks.celery_app import create_worker_app
from tasks.submit import CeleryQueue
from worker.config import Settings
from worker.logs import setup_logging
from worker.runtime import Runtime, budget_for, configure
from worker.stores import connect

log = logging.getLogger("callrail_sync.serve")


@dataclass
class Embedded:
    """What `prepare` chose and built."""

    settings: Settings
    runtime: Runtime
    simulator: SimServer | None


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def prepare(settings: Settings) -> Embedded:
    """Choose the broker, store and CallRail for this process, and build its runtime."""
    updates: dict[str, object] = {}
    if not settings.jwt_secret and not settings.jwt_public_key:
        updates["jwt_secret"] = DEV_SECRET
    simulator = None
    if "callrail_base_url" not in settings.model_fields_set:
        data = SimData(seed=1, keys=1, accounts_per_key=3, companies_per_account=180)
        simulator = SimServer(data).start()
        updates["callrail_base_url"] = simulator.base_url
    if not settings.mongo_url and not settings.queue_suffix:
        # This process's jobs live only in its own store: keep its queues its own.
        updates["queue_suffix"] = f".serve-{os.getpid()}"
    has_redis = redis_answers(settings.redis_url)
    if not has_redis:
        updates.update(broker_url="memory://", result_backend="cache+memory://")
    settings = settings.model_copy(update=updates)
    stores = connect(settings)
    if simulator is not None:
        key = simulator.data.api_keys[0]
        if stores.keys.usable_key(settings.demo_account_id) != key:
            stores.keys.set(settings.demo_account_id, key)
        demo_accounts = simulator.data.accounts_by_key[key][:1]
        stores.userconfig.set(settings.demo_account_id, demo_accounts)
    if has_redis:
        client = redis.Redis.from_url(settings.redis_url)
        rt = Runtime(settings, stores, budget=budget_for(settings, client), redis=client)
    else:
        # No Redis: no shared budget (the built-in simulator has no quota) and no stop flags.
        rt = Runtime(settings, stores)
    return Embedded(settings, rt, simulator)


def start_worker_thread(app: Celery, queues: Queues) -> threading.Thread:
    worker = app.WorkController(
        pool_cls="threads",
        concurrency=4,
        queues=queues.all,
        hostname=f"embedded-{os.getpid()}@localhost",
        loglevel="INFO",
    )
    thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
    thread.start()
    return thread


def start_beat_thread(app: Celery) -> None:
    schedule = os.path.join(tempfile.mkdtemp(prefix="callrail-beat-"), "schedule")
    EmbeddedService(app, thread=True, schedule_filename=schedule).start()


def banner(embedded: Embedded, host: str, port: int, token: str) -> str:
    s = embedded.settings
    base = f"http://{host}:{port}"
    broker = "in-process" if s.broker == "memory://" else s.broker
    store = "MONGO_URL" if s.mongo_url else "in-process"
    upstream = ("built-in simulator " if embedded.simulator else "") + s.callrail_base_url
    dev_note = (
        "  (JWT signed with the development secret; set JWT_SECRET in production)"
        if s.jwt_secret == DEV_SECRET
        else ""
    )
    return "\n".join(
        [
            f"callrail-sync serving at {base}  (API docs: {base}/docs)",
            f"broker: {broker} | store: {store} | CallRail: {upstream}",
            f"demo account: {s.demo_account_id}{dev_note}",
            f"token: {token}",
            "try:",
            f"  curl -s -H 'Authorization: Bearer {token}' '{base}/v1/e/callrail/accounts'",
            "  (202 with a job the first time; poll its status_url, then ask again for the page)",
        ]
    )


def serve(settings: Settings, host: str, port: int) -> int:
    embedded = prepare(settings)
    s = embedded.settings
    setup_logging(s.log_level, json_lines=s.log_json)
    configure(embedded.runtime)
    worker_app = create_worker_app(s)
    start_worker_thread(worker_app, Queues(s.queue_suffix))
    start_beat_thread(worker_app)
    # Beat's first tick is one period away; sync the configured accounts now.
    worker_app.send_task(PLAN_TASK)
    token = issue_token(s.demo_account_id, s.jwt_secret or DEV_SECRET, ttl_seconds=7 * 24 * 3600)
    print(banner(embedded, host, port, token), flush=True)
    shim = create_app(s, runtime=embedded.runtime, queue=CeleryQueue(worker_app))
    uvicorn.run(shim, host=host, port=port, log_level="warning", log_config=None)
    return 0
