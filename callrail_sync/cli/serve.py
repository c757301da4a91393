"""`callrail-sync serve`: the shim, a worker and beat in one process, on embedded defaults.

MongoDB at MONGO_URL when set, else SecantusDB (the dev extra) started beside us with its data
in the run dir (so it survives a restart); with neither, serve says so and stops. Redis at
REDIS_URL when it answers, else a redis-server of our own, else fakeredis' server (the dev
extra) in a process of its own: our code talks to a real protocol either way. CallRail at
CALLRAIL_BASE_URL when set, else the built-in simulator with demo data and a demo key for
DEMO_ACCOUNT_ID. Production runs these as separate processes (docker-compose.yml, or
`callrail-sync stack` on one machine); this is for trying the service.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from celery import Celery, signals
from celery.beat import EmbeddedService
from celery.platforms import EX_OK
from celery.worker import state as worker_state

from api_shim.app import create_app
from api_shim.auth import DEV_SECRET
from api_shim.routes.ui import ui_link
from api_shim.wire import HTTP_PROTOCOL
from callrail_sync.cli.processes import (
    Part,
    Started,
    celery_ok,
    demo_token,
    ensure_mongo,
    ensure_redis,
    namespace_exports,
    run_updates,
)
from callrail_sync.config import Settings
from callrail_sync.logs import setup_logging
from callrail_sync.runtime import Runtime, build_runtime, configure
from celeryconfig import Queues
from simulator import SimData, SimServer
from tasks.names import TaskName
from tasks.table import CeleryQueue
from worker.celery_app import create_worker_app

log = logging.getLogger("callrail_sync.serve")
NO_MONGO = (
    "serve needs MongoDB: set MONGO_URL, or install the dev extra (pip install -e '.[dev]') "
    "for SecantusDB"
)


@dataclass
class Embedded:
    """What `prepare` chose and started."""

    settings: Settings
    runtime: Runtime
    simulator: SimServer | None = None
    started: list[Started] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def cli_exports(self) -> str:
        """The environment with which the CLI verbs reach this process's data and queues."""
        s = self.settings
        exports = f"export MONGO_URL={s.mongo_url} REDIS_URL={s.redis_url}"
        if s.mongo_db != Settings.model_fields["mongo_db"].default:
            exports += f" MONGO_DB={s.mongo_db}"
        return exports + namespace_exports(s)

    def stop(self) -> None:
        stop_all(self.simulator, self.started)


def stop_all(simulator: SimServer | None, started: list[Started]) -> None:
    if simulator is not None:
        simulator.stop()
    for part in reversed(started):
        part.stop()


def prepare(settings: Settings, run_dir: Path) -> Embedded:
    """Choose and start the store, broker and CallRail for this process; build its runtime."""
    started: list[Started] = []
    notes: list[str] = []
    simulator: SimServer | None = None
    updates: dict[str, object] = {}
    if "shim_metrics_port" not in settings.model_fields_set:
        updates["shim_metrics_port"] = 0  # a free port of this run's own, printed
    try:
        if not settings.jwt_secret and not settings.jwt_public_key:
            updates["jwt_secret"] = DEV_SECRET
        if "callrail_base_url" not in settings.model_fields_set:
            # A call history of 120 days, 3,600 calls an account, so calls show at once.
            data = SimData(
                seed=1,
                keys=1,
                accounts_per_key=3,
                companies_per_account=180,
                calls_per_company=20,
                call_days=120,
            )
            # Its state lives in the run dir: a restart keeps the webhooks made, as CallRail would.
            state = run_dir / "simulator-state.json"
            simulator = SimServer(data, state_path=state).start()
            if simulator.state is not None and simulator.state.discarded:
                notes.append(f"simulator: {simulator.state_note}")
            updates["callrail_base_url"] = simulator.base_url
        if not settings.mongo_url:
            try:
                mongo = ensure_mongo(None, run_dir)
            except FileNotFoundError:
                raise SystemExit(NO_MONGO) from None
            except (OSError, RuntimeError):
                raise SystemExit(
                    f"SecantusDB did not start: see {run_dir / 'logs' / 'mongo.log'}"
                ) from None
            started.append(mongo)
            updates["mongo_url"] = mongo.url
        updates |= run_updates(settings, "serve", run_dir, simulator is not None)
        # Ours keeps its data in the run dir: messages left queued survive a restart.
        broker = ensure_redis(settings.redis_url, run_dir, persist=True)
        started.append(broker)
        updates["redis_url"] = broker.url
        if broker.part is not None and broker.part.argv[0] == sys.executable:
            notes.append("no redis-server installed: fakeredis' server, which keeps nothing")
        s = settings.model_copy(update=updates)
        runtime = build_runtime(s)
        if simulator is not None:
            key = simulator.data.api_keys[0]
            keys = runtime.stores.keys
            if keys.usable_key(s.demo_account_id) != key:
                keys.set(s.demo_account_id, key)
            demo = simulator.data.accounts_by_key[key][:1]
            runtime.stores.userconfig.set(s.demo_account_id, demo)
        return Embedded(s, runtime, simulator, started, notes)
    except BaseException:
        stop_all(simulator, started)
        raise


class EmbeddedWorker:
    """A Celery worker (thread pool) and beat in threads of this process, supervised.

    A worker process that loses its broker reconnects; this thread-based one can instead die
    of a kombu error while closing the lost connection ("Unrecoverable error: ... 'hostname'").
    Like a process supervisor, the watchdog starts a new one, so a Redis restart costs a few
    seconds, not the worker.
    """

    def __init__(self, app: Celery, queues: Queues, schedule: Path) -> None:
        self.app, self.queues = app, queues
        self.hostname = f"embedded-{os.getpid()}@localhost"
        self.beat = EmbeddedService(app, thread=True, schedule_filename=str(schedule))
        self.stopping = threading.Event()
        self.restarts = 0
        self._spawn()
        self.watchdog = threading.Thread(target=self._watch, name="worker-watchdog", daemon=True)

    def _spawn(self) -> None:
        self.worker = self.app.WorkController(
            pool_cls="threads",
            concurrency=4,
            # Jobs only: notification attempts have a worker process of their own
            # (`notifier_part`), as in stack and Compose.
            queues=self.queues.jobs,
            hostname=self.hostname,
            loglevel="INFO",
        )
        self.thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(1.0):
            if not self.thread.is_alive():
                self.restarts += 1
                log.warning(
                    "embedded worker stopped; starting a new one", extra={"restarts": self.restarts}
                )
                self._spawn()

    def start(self) -> None:
        self.beat.start()
        self.watchdog.start()

    def stop(self, sig: str = "SIGTERM", timeout: float = 60.0) -> None:
        """A warm shutdown, as SIGTERM gives a worker process: running syncs store the page in
        flight and go back to the queue; the next start resumes them. `sig` is the signal
        that stopped serve (SIGINT for Ctrl-C), as the log says it."""
        self.stopping.set()
        self.beat.stop()
        signals.worker_shutting_down.send(sender=self.hostname, sig=sig, how="Warm", exitcode=0)
        # As Celery's own SIGTERM handler does: the flag makes the worker's loop stop warm in
        # the worker's thread. Calling worker.stop() from this thread instead raced that loop
        # for the broker connection (both read one BRPOP answer) and could hang for good.
        worker_state.should_stop = EX_OK
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("the worker did not stop in time", extra={"timeout": timeout})


def banner(
    embedded: Embedded, host: str, port: int, token: str, metrics_url: str | None = None
) -> str:
    s = embedded.settings
    base = f"http://{host}:{port}"
    broker, store = s.broker, s.mongo_url
    upstream = ("built-in simulator " if embedded.simulator else "") + s.callrail_base_url
    dev_note = (
        "  (JWT signed with the development secret; set JWT_SECRET in production)"
        if s.jwt_secret == DEV_SECRET
        else ""
    )
    lines = [
        f"callrail-sync serving at {base}  (API docs: {base}/docs)",
        f"broker: {broker} | store: {store} | CallRail: {upstream}",
        *(f"note: {note}" for note in embedded.notes),
        f"demo account: {s.demo_account_id}{dev_note}",
        f"token: {token}",
        f"connection page: {ui_link(base, token)}",
        "try:",
        f"  curl -s -H 'Authorization: Bearer {token}' '{base}/v1/e/callrail/accounts'",
        "  (202 with a job the first time; poll its status_url, then ask again for the page)",
        f"metrics (Prometheus; not on the public port): {metrics_url or 'unavailable'}",
    ]
    lines.append(f"the CLI (jobs, keys, sync) reaches this process with:\n  {embedded.cli_exports}")
    return "\n".join(lines)


def notifier_part(s: Settings, run_dir: Path) -> Part:
    """The worker of notification attempts, a process of its own (a slow callback never holds
    a thread of the jobs' worker), with this process's settings."""
    queues = ",".join(Queues(s.queue_suffix).callbacks)
    name = f"notifier-{os.getpid()}"
    argv = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "threads"]
    argv += ["--concurrency", "4", "--queues", queues, "--hostname", f"{name}@%h"]
    argv += ["--without-mingle", "--without-gossip", "--loglevel", "INFO"]
    env = {**os.environ, **settings_env(s), "PYTHONUNBUFFERED": "1", "METRICS_PORT": "0"}
    return Part("notifier", argv, celery_ok(name, lambda: s), env=env, stop_timeout=30)


def settings_env(s: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings (those not at default)."""
    env: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        value = getattr(s, name)
        if value is None or value == info.default:
            continue
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        env[alias or name.upper()] = text
    return env


class Stopping(Exception):
    """SIGTERM arrived: stop serving, then stop the worker warm and what we started."""


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise Stopping


def listen(host: str, port: int) -> socket.socket:
    """The shim's socket, bound before anything starts: a port in use stops serve at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc})"
        raise SystemExit(f"callrail-sync serve: port {port} on {host} {reason}") from None
    return sock


def serve(settings: Settings, host: str, port: int, run_dir: Path) -> int:
    sock = listen(host, port)
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(settings.log_level, json_lines=settings.log_json)
    # uvicorn handles SIGTERM itself, then raises it again once it has shut down (so the
    # process would die on the spot): ours turns that into an exception, and cleanup runs.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if not settings.public_base_url:
        # The simulator (or a CallRail that reaches this machine) delivers events to us here.
        local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        settings = settings.model_copy(update={"public_base_url": f"http://{local}:{port}"})
    embedded = prepare(settings, run_dir)
    s = embedded.settings
    embedded_worker: EmbeddedWorker | None = None
    notifier: Part | None = None
    stopped_by = "SIGTERM"
    try:
        configure(embedded.runtime)
        # The notifier process boots (about 2 s) while this one starts its worker and shim.
        notifier = notifier_part(s, run_dir).start(run_dir)
        worker_app = create_worker_app(s)
        embedded_worker = EmbeddedWorker(worker_app, Queues(s.queue_suffix), run_dir / "beat")
        embedded_worker.start()
        notifier.wait_ready(60)
        # Beat's first tick is one period away; sync the configured accounts now.
        worker_app.send_task(TaskName.PLAN)
        token = demo_token(s, s.jwt_secret or DEV_SECRET)
        shim = create_app(s, runtime=embedded.runtime, queue=CeleryQueue(worker_app))
        # One write: print() writes the text and its newline apart, and a log line of another
        # thread written between them ran into the banner's last line (its export words).
        sys.stdout.write(banner(embedded, host, port, token, shim.state.metrics_url) + "\n")
        sys.stdout.flush()
        config = uvicorn.Config(shim, http=HTTP_PROTOCOL, log_level="warning", log_config=None)
        uvicorn.Server(config).run(sockets=[sock])
        # uvicorn returns once a signal stopped it. SIGTERM, raised again when it is done,
        # reaches our handler (Stopping, below); Ctrl-C's KeyboardInterrupt it swallows.
        stopped_by = "SIGINT"
    except Stopping:
        stopped_by = "SIGTERM"
    except KeyboardInterrupt:  # Ctrl-C before the shim was serving
        stopped_by = "SIGINT"
    finally:
        # The notifier stops beside the embedded worker (each takes about 2 s to stop warm).
        stopping = threading.Thread(target=notifier.stop) if notifier is not None else None
        if stopping is not None:
            stopping.start()
        if embedded_worker is not None:
            log.info(
                "stopping: the worker hands running syncs back to the queue",
                extra={"signal": stopped_by},
            )
            embedded_worker.stop(stopped_by)
        if stopping is not None:
            stopping.join()
        embedded.stop()
        sock.close()
    return 0
