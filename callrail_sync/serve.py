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

from api_shim.auth import DEV_SECRET, issue_token
from simulator import SimData, SimServer
from worker.celery_app import app as celery_app
from worker.config import Settings
from worker.logs import setup_logging
from worker.runtime import Runtime, budget_for, configure
from worker.store import connect

log = logging.getLogger("callrail_sync.serve")


@dataclass
class Embedded:
    settings: Settings
    broker: str
    simulator: SimServer | None


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def prepare(settings: Settings) -> Embedded:
    """Choose the broker, store and CallRail for this process, and wire the runtime to them."""
    updates: dict[str, object] = {}
    if not settings.jwt_secret and not settings.jwt_public_key:
        updates["jwt_secret"] = DEV_SECRET
    simulator = None
    if "CALLRAIL_BASE_URL" not in os.environ:
        data = SimData(seed=1, keys=1, accounts_per_key=3, companies_per_account=180)
        simulator = SimServer(data).start()
        updates["callrail_base_url"] = simulator.base_url
    if not settings.mongo_url:
        # This process's jobs live only in its own store: keep its queues its own.
        os.environ.setdefault("CALLRAIL_QUEUE_SUFFIX", f".serve-{os.getpid()}")
    if not redis_answers(settings.redis_url):
        # Through the environment, before celeryconfig is first read: a value set on
        # app.conf afterwards is not seen by the worker's pool threads.
        os.environ["BROKER_URL"] = "memory://"
        os.environ["RESULT_BACKEND"] = "cache+memory://"
        updates.update(broker_url="memory://", result_backend="cache+memory://")
    settings = settings.model_copy(update=updates)
    broker = settings.broker_url or settings.redis_url
    store = connect(settings)
    if simulator is not None:
        key = simulator.data.api_keys[0]
        if store.usable_api_key(settings.demo_account_id) != key:
            store.set_api_key(settings.demo_account_id, key)
        store.set_userconfig(settings.demo_account_id, simulator.data.accounts_by_key[key][:1])
    if broker == settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url)
        configure(
            Runtime(
                settings=settings, store=store, budget=budget_for(settings, client), redis=client
            )
        )
    else:
        # No Redis: no shared budget (the built-in simulator has no quota) and no stop flags.
        configure(Runtime(settings=settings, store=store))
    return Embedded(settings, broker, simulator)


def start_worker_thread() -> threading.Thread:
    import celeryconfig  # read only now: prepare() may have set the queue suffix

    worker = celery_app.WorkController(
        pool_cls="threads",
        concurrency=4,
        queues=[celeryconfig.LISTINGS, celeryconfig.WEBHOOKS],
        hostname=f"embedded-{os.getpid()}@localhost",
        loglevel="INFO",
    )
    thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
    thread.start()
    return thread


def start_beat_thread() -> None:
    from celery.beat import EmbeddedService

    schedule = os.path.join(tempfile.mkdtemp(prefix="callrail-beat-"), "schedule")
    beat = EmbeddedService(celery_app, thread=True, schedule_filename=schedule)
    beat.start()


def serve(host: str, port: int) -> int:
    from api_shim.app import create_app

    os.environ.setdefault("METRICS_PORT", "0")  # one process: the shim's /metrics shows all
    embedded = prepare(Settings.from_env())
    s = embedded.settings
    setup_logging(s.log_level, json_lines=s.log_json)
    start_worker_thread()
    start_beat_thread()
    # Beat's first tick is one period away; sync the configured accounts now.
    celery_app.send_task("callrail.sync.configured_accounts")
    token = issue_token(s.demo_account_id, s.jwt_secret or DEV_SECRET, ttl_seconds=7 * 24 * 3600)
    base = f"http://{host}:{port}"
    broker = "in-process" if embedded.broker == "memory://" else embedded.broker
    store = "MONGO_URL" if s.mongo_url else "in-process"
    upstream = ("built-in simulator " if embedded.simulator else "") + s.callrail_base_url
    lines = [
        f"callrail-sync serving at {base}  (API docs: {base}/docs)",
        f"broker: {broker} | store: {store} | CallRail: {upstream}",
        f"demo account: {s.demo_account_id}"
        + (
            "  (JWT signed with the development secret; set JWT_SECRET in production)"
            if s.jwt_secret == DEV_SECRET
            else ""
        ),
        f"token: {token}",
        "try:",
        f"  curl -s -H 'Authorization: Bearer {token}' '{base}/v1/e/callrail/accounts'",
        "  (202 with a job the first time; poll its status_url, then ask again for the page)",
    ]
    print("\n".join(lines), flush=True)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning", log_config=None)
    return 0
