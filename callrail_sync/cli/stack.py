"""`callrail-sync stack`: the production topology on one machine, one OS process per part.

MongoDB (MONGO_URL, else SecantusDB with its data in the run dir), Redis (REDIS_URL when it
answers, else a redis-server of our own), the simulator (unless CALLRAIL_BASE_URL is set), the
shim under uvicorn, N Celery workers (prefork), exactly one beat and Flower: each
health-checked before what needs it starts. Every part logs to RUN_DIR/logs/<part>.log and
writes RUN_DIR/pids/<part>.pid. The fault-suite tests start the same `Stack`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from api_shim.routes.ui import ui_link
from api_shim.wire import HTTP_PROTOCOL
from callrail_sync.cli.processes import (
    Part,
    celery_ok,
    demo_token,
    ensure_mongo,
    ensure_redis,
    free_port,
    http_ok,
    keep_secret,
    kept_secret,
    log_says,
    namespace_exports,
    port_free,
    run_updates,
)
from callrail_sync.config import Settings
from callrail_sync.stores import Stores, connect
from celeryconfig import Queues
from simulator.control import SimControl

PY = sys.executable
DEMO_SIMULATOR = ["--seed", "1", "--keys", "1", "--accounts", "3"]
DEMO_SIMULATOR += ["--companies-per-account", "180"]


@dataclass
class StackConfig:
    """What to run, and where."""

    run_dir: Path
    port: int = 8000
    workers: int = 2
    concurrency: int = 2
    """Prefork processes per worker."""
    shim_workers: int = 2
    flower: bool = True
    simulator_args: list[str] = field(default_factory=lambda: list(DEMO_SIMULATOR))
    env: dict[str, str] = field(default_factory=dict)
    """Settings for every part, as environment variables (tests shorten the periods)."""
    mongo_test_commands: bool = False
    """Start SecantusDB with fail points (configureFailPoint) enabled: tests only."""
    own_redis: bool = False
    """Start a redis-server of our own even when REDIS_URL answers (tests restart it)."""


class Stack:
    """The parts of one deployment, started and stopped together."""

    def __init__(self, config: StackConfig, settings: Settings) -> None:
        self.config = config
        simulator = "callrail_base_url" not in settings.model_fields_set
        self.settings = settings.model_copy(
            update=run_updates(settings, "stack", config.run_dir, simulator)
        )
        self.parts: dict[str, Part] = {}
        self.flower_auth = ("admin", secrets.token_urlsafe(9))
        given = "shim_metrics_port" in settings.model_fields_set
        self.shim_metrics_port = settings.shim_metrics_port if given else free_port()
        # Like Flower's password: a secret of this stack's own unless one is given (the public
        # development secret would let anyone who read this code sign tokens for it), kept in
        # the run dir (a restart keeps its tokens valid) and passed by its file, never shown.
        self.jwt_secret_file = config.run_dir / "jwt_secret"
        self.jwt_secret = (
            config.env.get("JWT_SECRET")
            or settings.jwt_secret
            or kept_secret(self.jwt_secret_file)
            or secrets.token_urlsafe(32)
        )
        self.mongo_url = settings.mongo_url or ""
        self.redis_url = settings.redis_url
        self.callrail_url = settings.callrail_base_url
        self.simulator_url: str | None = None
        self.flower_url: str | None = None
        self.demo_key: str | None = None
        self.restarts: dict[str, list[float]] = {}
        self._stores: Stores | None = None

    # --- where things are ------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    @property
    def shim_url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    @property
    def worker_names(self) -> list[str]:
        return [name for name in self.parts if name.startswith("worker-")]

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every part runs with."""
        env = {**os.environ, **self.config.env, "PYTHONUNBUFFERED": "1"}
        env.update(MONGO_URL=self.mongo_url, REDIS_URL=self.redis_url)
        env.update(
            CALLRAIL_NAMESPACE=self.settings.namespace, BUDGET_SCOPE=self.settings.budget_scope
        )
        env["CALLRAIL_BASE_URL"] = self.callrail_url
        env.pop("JWT_SECRET", None)  # the parts read it from the file, as the CLI does
        env["JWT_SECRET_FILE"] = str(self.jwt_secret_file)
        if self.settings.secrets_keys_file:
            env.pop("SECRETS_KEYS", None)
            env["SECRETS_KEYS_FILE"] = self.settings.secrets_keys_file
        env.setdefault("METRICS_PORT", "0")
        env.setdefault("PUBLIC_BASE_URL", self.shim_url)
        return {**env, **extra}

    def cli_settings(self) -> Settings:
        """What the CLI (and a test or benchmark) needs to act on this stack."""
        update = {"mongo_url": self.mongo_url, "redis_url": self.redis_url}
        return self.settings.model_copy(update=update | {"callrail_base_url": self.callrail_url})

    def stores(self) -> Stores:
        """The stack's stores: one client for its database, its indexes made the first time."""
        if self._stores is None:
            self._stores = connect(self.cli_settings())
        return self._stores

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Stack:
        """Start every part; on any failure stop what started and raise. Parts that do not
        need each other start together: the simulator beside the storage, then the shim, the
        workers, beat and Flower at once (about 3 s instead of 10 one after another)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        keep_secret(self.jwt_secret_file, self.jwt_secret)
        try:
            simulator = self._simulator_part()
            if simulator is not None:
                self.parts[simulator.name] = simulator.start(self.run_dir)
            self._start_storage()
            if simulator is not None:
                simulator.wait_ready(60)
                self.demo_key = SimControl(self.simulator_url or "").keys()[0]
                self.seed_demo()
            parts = [self.shim_part()]
            parts += [self.worker_part(n) for n in range(1, self.config.workers + 1)]
            parts += [self.notifier_part(), self.beat_part()]
            if self.config.flower:
                parts.append(self.flower_part())
            self.launch(*parts)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self, *parts: Part, timeout: float = 60.0) -> None:
        """Start `parts` together, then wait until each is ready."""
        for part in parts:
            self.parts[part.name] = part.start(self.run_dir)
        for part in parts:
            part.wait_ready(timeout)

    def restart(self, name: str, timeout: float = 60.0) -> Part:
        """Stop a part (if it runs) and start it again with the same command."""
        part = self.parts[name]
        part.stop()
        return part.start(self.run_dir).wait_ready(timeout)

    def stop(self) -> None:
        """Celery workers first (a warm shutdown hands running syncs back), then the processes
        of ours, then the storage they wrote to; each group's parts stop together."""
        storage = {"mongo", "redis"}
        celery = {*self.worker_names, "notifier"}
        groups = [[name for name in self.parts if name in celery]]
        groups.append([name for name in self.parts if name not in storage | celery])
        groups.append([name for name in self.parts if name in storage])
        for group in groups:
            threads = [threading.Thread(target=self.parts[name].stop) for name in group]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    # --- the parts -------------------------------------------------------------------------

    def _start_storage(self) -> None:
        run, c = self.run_dir, self.config
        mongo = ensure_mongo(self.settings.mongo_url, run, test_commands=c.mongo_test_commands)
        redis = ensure_redis(self.settings.redis_url, run, own=c.own_redis)
        for started in (mongo, redis):
            if started.part is not None:
                self.parts[started.part.name] = started.part
        self.mongo_url, self.redis_url = mongo.url, redis.url

    def _simulator_part(self) -> Part | None:
        """The simulator, unless CallRail's address is given (a real or external CallRail)."""
        if "callrail_base_url" in self.settings.model_fields_set:
            return None
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [PY, "-m", "callrail_sync.cli", "simulator", "--port", str(port)]
        self.simulator_url = base
        self.callrail_url = f"{base}/v3"
        return Part("simulator", argv + self.config.simulator_args, http_ok(f"{base}/_sim/stats"))

    def seed_demo(self) -> None:
        """The demo key and user config, as `serve` stores them."""
        if self.demo_key is None or self.simulator_url is None:
            return
        owner = self.settings.demo_account_id
        stores = self.stores()
        if stores.keys.usable_key(owner) != self.demo_key:
            stores.keys.set(owner, self.demo_key)
        accounts = requests.get(
            f"{self.simulator_url}/v3/a.json",
            timeout=10,
            headers={"Authorization": f'Token token="{self.demo_key}"'},
        ).json()["accounts"]
        stores.userconfig.set(owner, [accounts[0]["id"]])

    def shim_part(self) -> Part:
        argv = [PY, "-m", "uvicorn", "--factory", "api_shim.app:create_app"]
        argv += ["--host", "127.0.0.1", "--port", str(self.config.port)]
        argv += ["--workers", str(self.config.shim_workers), "--log-level", "warning"]
        argv += ["--http", HTTP_PROTOCOL]  # a request uvicorn cannot parse: our envelope
        env = self.env(SHIM_METRICS_PORT=str(self.shim_metrics_port))
        return Part("shim", argv, http_ok(f"{self.shim_url}/healthz"), env=env)

    @property
    def metrics_url(self) -> str:
        """The shim's /metrics, on a port of its own (never the public one)."""
        return f"http://127.0.0.1:{self.shim_metrics_port}/metrics"

    def worker_part(self, number: int) -> Part:
        """A job worker: webhook writes, listings, periodic syncs (never a notification)."""
        return self._celery_worker(f"worker-{number}", Queues(self.settings.queue_suffix).jobs)

    def notifier_part(self) -> Part:
        """The worker of notification attempts: a slow callback holds only its processes."""
        return self._celery_worker("notifier", Queues(self.settings.queue_suffix).callbacks)

    def _celery_worker(self, name: str, queues: list[str]) -> Part:
        metrics_dir = self.run_dir / "metrics" / name
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        argv = [PY, "-m", "celery", "-A", "worker.app", "worker", "--pool", "prefork"]
        argv += ["--concurrency", str(self.config.concurrency), "--hostname", f"{name}@%h"]
        argv += ["--queues", ",".join(queues)]
        argv += ["--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        env = self.env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        # Ready when it answers a control ping (whatever its LOG_LEVEL lets it say).
        # Warm shutdown: a running sync stores the page in flight, then is handed back.
        return Part(name, argv, celery_ok(name, self.cli_settings), env=env, stop_timeout=90)

    def beat_part(self) -> Part:
        argv = [PY, "-m", "celery", "-A", "worker.app", "beat", "--loglevel", "INFO"]
        argv += ["--schedule", str(self.run_dir / "beat-schedule")]
        # Beat logs at INFO whatever LOG_LEVEL says (a line a tick): its start is its readiness.
        env = self.env(LOG_LEVEL="INFO")
        return Part("beat", argv, log_says("beat", "beat: Starting", self.run_dir), env=env)

    def flower_part(self) -> Part:
        port = free_port()
        user, password = self.flower_auth
        argv = [PY, "-m", "celery", "-A", "worker.app", "flower", f"--port={port}"]
        argv += ["--address=127.0.0.1", "--persistent=False"]
        self.flower_url = f"http://127.0.0.1:{port}"
        # Through the environment, which Flower reads: an argument would show in `ps`.
        env = self.env(FLOWER_BASIC_AUTH=f"{user}:{password}")
        return Part("flower", argv, http_ok(self.flower_url, self.flower_auth), env=env)


def banner(stack: Stack, token: str) -> str:
    c, run, shim = stack.config, stack.run_dir, stack.shim_url
    user, password = stack.flower_auth
    ours = "" if stack.settings.mongo_url else f"  (SecantusDB, data in {run}/mongo)"
    workers = ", ".join(stack.worker_names)
    lines = [
        f"callrail-sync stack is up (run dir {run}; logs in {run}/logs, pids in {run}/pids)",
        f"  shim       {shim}  (API docs {shim}/docs; {c.shim_workers} uvicorn workers)",
        f"  workers    {workers}: celery prefork, concurrency {c.concurrency} each",
        f"  notifier   1: notification attempts only, concurrency {c.concurrency}",
        "  beat       1 (exactly one)",
    ]
    if c.flower:
        lines.append(f"  flower     {stack.flower_url}  (user {user}, password {password})")
    lines.append(f"  metrics    {stack.metrics_url}  (the shim's; not on its public port)")
    lines += [f"  mongo      {stack.mongo_url}{ours}", f"  redis      {stack.redis_url}"]
    if stack.simulator_url:
        sim = stack.simulator_url
        lines.append(f"  simulator  {sim}/v3  (controls {sim}/_sim/stats)")
    lines += [
        f"token for the demo account {stack.settings.demo_account_id}: {token}",
        f"connection page: {ui_link(shim, token)}",
        "Every CLI verb works against this stack with:",
        f"  export MONGO_URL={stack.mongo_url} REDIS_URL={stack.redis_url}"
        + namespace_exports(stack.settings)
        + f" JWT_SECRET_FILE={stack.jwt_secret_file}",
        "  .venv/bin/callrail-sync jobs",
        "Ctrl-C stops everything (workers first: a running sync is handed back, not lost).",
    ]
    return "\n".join(lines)


def supervise(stack: Stack, max_restarts: int = 5, window: float = 60.0) -> bool:
    """Restart parts that exited, as Compose's `restart: unless-stopped` does; False (give
    up) when one keeps dying: more than `max_restarts` in `window` seconds."""
    now = time.monotonic()
    for part in list(stack.parts.values()):
        if part.alive:
            continue
        recent = [t for t in stack.restarts.get(part.name, []) if now - t < window]
        if len(recent) >= max_restarts:
            print(f"{part.name} keeps exiting (see {part.log_path}); stopping", flush=True)
            return False
        stack.restarts[part.name] = [*recent, now]
        code = part.proc.returncode if part.proc else None
        print(f"{part.name} exited (code {code}); restarting it (see {part.log_path})", flush=True)
        try:
            stack.restart(part.name)
        except RuntimeError as exc:
            print(str(exc), flush=True)
    return True


def run_stack(settings: Settings, config: StackConfig) -> int:
    """The `stack` command: start, print where everything is, stop on Ctrl-C or SIGTERM."""
    if not port_free(config.port):
        raise SystemExit(f"callrail-sync stack: port {config.port} on 127.0.0.1 is in use")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack(config, settings)
    print(f"starting the stack in {config.run_dir} ...", flush=True)
    stack.start()
    try:
        print(banner(stack, demo_token(settings, stack.jwt_secret)), flush=True)
        while not stop.wait(2.0):
            if not supervise(stack):
                stop.set()
    finally:
        print("stopping: workers first ...", flush=True)
        stack.stop()
        print("stopped", flush=True)
    return 0
