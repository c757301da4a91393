"""Shared fixtures: real components (simulator over HTTP, Redis, Celery) wherever they run here.

What is costly is made once per run and handed to each test clean: one SecantusDB with one
database (indexes made once, every collection written emptied before each test: a large one
dropped and its indexes made again), one uvicorn server
(each test's own shim app is switched in, its lifespan run as uvicorn runs it), one Redis
database (flushed before each test). A Celery worker is each test's own (it starts in about
0.05 s and stops in about 0.1 s once its tasks have ended), so no message, countdown or task
outlives its test.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from pymongo import monitoring

from callrail_sync.callrail.client import CallRailClient, Timeouts
from callrail_sync.cli.processes import free_port, mongo_part, wait_until
from callrail_sync.config import Settings
from callrail_sync.events import JobEvents, channel
from callrail_sync.job import FINAL_STATUSES, Job, JobParams, JobType
from callrail_sync.locks import RedisLocks
from callrail_sync.runtime import Runtime, budget_for, configure
from callrail_sync.stores import Stores, connect
from celeryconfig import Queues
from simulator import SimData, SimServer
from tasks.submit import submit
from tasks.table import CeleryQueue
from worker.celery_app import create_worker_app


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


# --- jobs: real Redis broker, real Celery worker (threads), a MongoDB wire server ------------


# Overridable so that two checkouts can run their suites on one Redis at the same time.
def _redis_url_of_this_worker(urls: str) -> str:
    """CALLRAIL_TEST_REDIS_URL: one Redis database URL per pytest-xdist worker, comma-separated
    (worker gwK takes the K-th); never one guessed, which another suite may be using."""
    given = [url.strip() for url in urls.split(",") if url.strip()]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:] or 0) if worker.startswith("gw") else 0
    if index >= len(given):
        raise RuntimeError(
            f"CALLRAIL_TEST_REDIS_URL names {len(given)} Redis database(s); pytest-xdist worker "
            f"{worker} needs one of its own: give one URL per worker, comma-separated"
        )
    return given[index]


TEST_REDIS_URL = _redis_url_of_this_worker(
    os.environ.get(
        "CALLRAIL_TEST_REDIS_URL", ",".join(f"redis://127.0.0.1:6379/{n}" for n in (15, 14, 13, 12))
    )
)

# Each pytest-xdist worker tests as accounts of its own: job events go through Redis pub/sub,
# which spans databases, and one worker's events must not reach the other's shim.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
OWNER = f"64f1c2a9e4b0a1b2c3d4e5f{6 + _WORKER:x}"
OTHER_OWNER = f"650000000000000000000a{0xBC + _WORKER:x}"
TEST_SECRET = "test-secret-" + "0123456789abcdef" * 4
TEST_SECRETS_KEYS = "k6ltHn1nN8Qf9r4wG0cR1B2p3sW4x5y6z7A8b9C0d1E="
"""A Fernet key: the stores seal secrets in tests as outside development."""


@pytest.fixture
def redis_url() -> str:
    """A Redis database of the real server, emptied for each test."""
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MongoDB wire server (SecantusDB) for the session. Fail points are on, for the tests
    that inject Mongo failures."""
    run_dir = tmp_path_factory.mktemp("mongo")
    port = free_port()
    part = mongo_part(run_dir, port, test_commands=True).start(run_dir).wait_ready(60)
    yield f"mongodb://127.0.0.1:{port}"
    part.kill()  # its data is thrown away: a clean stop spent ~2 s checkpointing it


@pytest.fixture(scope="session")
def session_stores(mongo_server: str) -> Iterator[Stores]:
    """The stores over the run's one database, their indexes created once (`connect`, as every
    process of the service makes them; `WrittenCollections.empty` makes a dropped collection's
    again), their job writes published as events."""
    name = f"test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:8]}"
    # The run's one client looks for the server again within half a second of an error that
    # marks it unknown (a test's fail point), not at its next 10-second heartbeat.
    url = f"{mongo_server}/?heartbeatFrequencyMS=500"
    settings = Settings(
        mongo_url=url, mongo_db=name, redis_url=TEST_REDIS_URL, secrets_keys=TEST_SECRETS_KEYS
    )
    stores = connect(settings, on_job_change=JobEvents(redis.Redis.from_url(TEST_REDIS_URL)))
    yield stores
    stores.db.client.drop_database(name)
    stores.db.client.close()


class WrittenCollections(monitoring.CommandListener):
    """Which collections this process wrote to (every MongoClient made here reports to it), so
    that only those are emptied before the next test. Real processes of the service (the slow
    tests) write unseen: after one of them, every collection is emptied. A collection that was
    sent many documents is dropped and its indexes made again: SecantusDB takes a document out
    of each index one by one, and dropping cost it about half as much from ~100 documents on."""

    WRITES = frozenset({"insert", "update", "delete", "findAndModify", "create", "createIndexes"})
    MANY = 100

    def __init__(self) -> None:
        self.written: dict[tuple[str, str], int] = {}
        self.unseen = True
        self.lock = threading.Lock()  # the threads of a test's worker and shim write too

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in self.WRITES:
            where = (event.database_name, str(event.command.get(event.command_name)))
            sent = event.command.get("documents") or event.command.get("updates") or ()
            with self.lock:
                self.written[where] = self.written.get(where, 0) + len(sent)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def empty(self, db: Any) -> None:
        """Empty what was written in `db` since the last call (everything, after unseen writes)."""
        if self.unseen:
            sent = dict.fromkeys(db.list_collection_names(), 0)
        else:
            with self.lock:
                written = list(self.written.items())
            sent = {collection: n for (name, collection), n in written if name == db.name}
        for name, documents in sent.items():
            if documents < self.MANY:
                db[name].delete_many({})
                continue
            indexes = db[name].index_information()
            db[name].drop()
            for index, spec in indexes.items():
                if index != "_id_":
                    options = {k: v for k, v in spec.items() if k not in ("key", "v", "ns")}
                    db[name].create_index(spec["key"], name=index, **options)
        self.written.clear()
        self.unseen = False


WRITTEN = WrittenCollections()
monitoring.register(WRITTEN)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if item.get_closest_marker("slow") is not None:
        WRITTEN.unseen = True


@pytest.fixture
def mongo_db(session_stores: Stores) -> str:
    """The name of this test's database: the run's one, every collection written to emptied
    before the test (its indexes stay, or are made again where it was dropped)."""
    WRITTEN.empty(session_stores.db)
    return session_stores.db.name


@pytest.fixture
def settings(
    request: pytest.FixtureRequest,
    sim: SimServer,
    redis_url: str,
    mongo_db: str,
    run_settings: Settings,
) -> Settings:
    """The test's settings: the run's, with this test's simulator. A test marked `pages_of(n)`
    reads CallRail's listings and streams in pages of n records (CALLRAIL_PAGE_SIZE): it walks
    as many pages as one of 250s with a tenth of the records to store (SecantusDB spends ~1 ms
    of CPU on each). Pages of 250 are walked by the tests unmarked,
    `test_companies_sync_of_1234_companies_over_five_pages` among them."""
    marker = request.node.get_closest_marker("pages_of")
    pages = {"callrail_page_size": marker.args[0]} if marker else {}  # else the setting's default
    assert 1 <= pages.get("callrail_page_size", 250) <= 250  # what validation would refuse
    return run_settings.model_copy(update={"callrail_base_url": sim.base_url, **pages})


@pytest.fixture(scope="session")
def run_settings(mongo_server: str, session_stores: Stores) -> Settings:
    """The settings every test starts from, read and validated once (2.5 ms a test)."""
    return Settings(
        redis_url=TEST_REDIS_URL,
        mongo_url=mongo_server,
        mongo_db=session_stores.db.name,
        callrail_base_url="http://127.0.0.1:9/v3",  # each test's simulator replaces it
        backoff_base=0.05,
        backoff_cap=0.2,
        max_attempts=3,
        callrail_read_timeout=2.0,
        jwt_secret=TEST_SECRET,
        secrets_keys=TEST_SECRETS_KEYS,
        metrics_port=0,
        shim_metrics_port=0,  # each shim app's /metrics on a free port of its own
        # Beat plans no stream syncs here: tests/test_streams_* say when streams are synced.
        sync_streams="none",
    )


@pytest.fixture
def stores(settings: Settings, mongo_server: str, session_stores: Stores) -> Stores:
    """The stores, their job writes published as events (as a worker's and the shim's are).
    On the run's database (emptied for this test) they are the run's stores, in a `Stores` of
    the test's own (a test may replace one of them); other settings get stores of their own."""
    run = session_stores
    where = (settings.mongo_url, settings.mongo_db, settings.redis_url)
    if where == (mongo_server, run.db.name, TEST_REDIS_URL):
        return dataclasses.replace(run)
    return connect(settings, on_job_change=JobEvents(redis.Redis.from_url(settings.redis_url)))


@pytest.fixture
def worker_app(settings: Settings) -> Celery:
    return create_worker_app(settings)


@pytest.fixture
def queue(worker_app: Celery) -> CeleryQueue:
    return CeleryQueue(worker_app)


@pytest.fixture
def runtime(settings: Settings, stores: Stores) -> Iterator[Runtime]:
    client = redis.Redis.from_url(settings.redis_url)
    budget = budget_for(settings, client)
    rt = Runtime(settings, stores, budget=budget, redis=client, locks=RedisLocks(client))
    configure(rt)
    yield rt
    configure(None)


@pytest.fixture
def owner(stores: Stores, api_key: str) -> str:
    stores.keys.set(OWNER, api_key)
    return OWNER


@contextlib.contextmanager
def run_worker(app: Celery, concurrency: int = 4, queues: list[str] | None = None) -> Iterator[Any]:
    """A real Celery worker (thread pool) of `app`, consuming `queues` (all of them) from Redis.

    Its BRPOP waits 0.05 s instead of 1 s (kombu's `polling_interval`): a stopping worker
    closes its connection only once the BRPOP in flight has answered, so each test's worker
    stops in about 0.1 s instead of a second. Celery's test worker returns from its stop while
    its threads still run the tasks they took: those end before this does (up to 60 s), or a
    job of one test would go on writing into the next test's data (it did: a companies
    snapshot published after the next test had emptied the database)."""
    options = app.conf.broker_transport_options or {}
    app.conf.broker_transport_options = {**options, "polling_interval": 0.05}
    with start_worker(
        app,
        pool="threads",
        concurrency=concurrency,
        perform_ping_check=False,
        queues=queues or Queues().all,
        loglevel="WARNING",
        shutdown_timeout=10,
    ) as worker:
        yield worker
    running = worker_state.active_requests
    assert wait_until(lambda: not running, 60, 0.02), f"tasks still running: {running}"


@pytest.fixture
def worker(worker_app: Celery, runtime: Runtime) -> Iterator[Any]:
    with run_worker(worker_app) as w:
        yield w


@dataclass
class Submitter:
    """`submit` as the shim calls it, with the job type and parameters spelled briefly."""

    stores: Stores
    queue: CeleryQueue

    def __call__(
        self, owner: str, job_type: str, countdown: float | None = None, **params: Any
    ) -> tuple[Job, bool]:
        return submit(
            self.stores.jobs,
            self.queue,
            owner,
            JobType(job_type),
            JobParams(**params),
            countdown=countdown,
        )


@pytest.fixture
def submit_job(stores: Stores, queue: CeleryQueue, runtime: Runtime) -> Submitter:
    return Submitter(stores, queue)


def wait_job(stores: Stores, job_id: str, timeout: float = 30.0) -> Job:
    """The job once it has ended. The store is read again when an event on the owner's channel
    says the job ended (the tests' stores publish every write of a job with its status,
    `callrail_sync/events.py`; pub/sub spans the databases) and at least every half second (a
    store that publishes nothing): polled every 50 ms, these reads were 1,269 of a quick run's
    ~2,200 finds of jobs in SecantusDB."""
    deadline = time.monotonic() + timeout
    first = stores.jobs.get(job_id)
    if first is not None and first.is_final:
        return first
    with contextlib.closing(redis.Redis.from_url(TEST_REDIS_URL).pubsub()) as events:
        # The owner's channel under any prefix (a run's namespace has its own).
        events.psubscribe(channel(first.owner if first else "*", prefix="*"))
        while (heard := events.get_message(timeout=5)) and heard["type"] != "psubscribe":
            pass  # subscribed before the next read: no event can fall between the two
        while (left := deadline - time.monotonic()) > 0:
            job = stores.jobs.get(job_id)
            if job is not None and job.is_final:
                return job
            until = time.monotonic() + min(0.5, left)
            while (wait := until - time.monotonic()) > 0:
                message = events.get_message(timeout=wait)
                if message and ended(message["data"], job_id):
                    break
    raise AssertionError(f"job {job_id} did not finish: {stores.jobs.get(job_id)}")


def ended(data: bytes, job_id: str) -> bool:
    """Whether an event (a message of an events channel) says the job has ended."""
    with contextlib.suppress(ValueError):
        event = json.loads(data)
        return (
            isinstance(event, dict)
            and event.get("job_id") == job_id
            and (event.get("status") in FINAL_STATUSES)
        )
    return False


# --- the shim ----------------------------------------------------------------------------------


@pytest.fixture
def token(settings: Settings) -> str:
    from api_shim.auth import issue_token

    return issue_token(OWNER, settings.jwt_secret or "")


def listening_socket() -> socket.socket:
    """A socket bound to a free port, for a server to listen on. TCP_NODELAY is set on it (the
    accepted connections inherit it): asyncio sets it only on the sockets it makes itself, and
    without it every answer written in two parts waits 40 ms for a delayed ACK."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serving(app: Any, sock: socket.socket | None = None) -> Iterator[str]:
    """An ASGI app under a real uvicorn server on a free port (or on `sock`, bound already)."""
    import uvicorn

    if sock is None:
        sock = listening_socket()
    port = sock.getsockname()[1]
    from api_shim.wire import HTTP_PROTOCOL

    config = uvicorn.Config(app, http=HTTP_PROTOCOL, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)
    sock.close()


class AppSwitch:
    """An ASGI app that passes each request to the app switched in now (`use`): one uvicorn
    server for the run serves each test's own app. `use` enters and leaves that app's lifespan
    in the server's event loop, as uvicorn does for the app it serves."""

    def __init__(self) -> None:
        self.app: Any = None
        self.state: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the server's own: there is nothing to start
            self.loop = asyncio.get_running_loop()
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.app is not None, "a request came between two tests"
        await self.app({**scope, "state": dict(self.state)}, receive, send)

    def _run(self, coroutine: Any) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    @contextlib.contextmanager
    def use(self, app: Any) -> Iterator[None]:
        lifespan = contextlib.AsyncExitStack()

        async def start() -> dict[str, Any] | None:
            return await lifespan.enter_async_context(app.router.lifespan_context(app))

        self.state = dict(self._run(start()) or {})
        self.app = app
        try:
            yield
        finally:
            self.app = None
            self._run(lifespan.aclose())


@pytest.fixture(scope="session")
def shim_server() -> Iterator[tuple[str, AppSwitch]]:
    """The run's one uvicorn server (a real socket, real HTTP) and its switch."""
    switch = AppSwitch()
    with serving(switch) as url:
        yield url, switch


@pytest.fixture
def shim_url(
    shim_server: tuple[str, AppSwitch], runtime: Runtime, queue: CeleryQueue
) -> Iterator[str]:
    """This test's shim, served by the run's real uvicorn server (see `AppSwitch`)."""
    from api_shim.app import create_app

    url, switch = shim_server
    with switch.use(create_app(runtime.settings, runtime=runtime, queue=queue)):
        yield url


@pytest.fixture
def metrics_url(shim_url: str, shim_server: tuple[str, AppSwitch]) -> str:
    """Where this test's shim serves /metrics (a port of its own, not the public one)."""
    url: str = shim_server[1].app.state.metrics_url
    return url


# --- how the suite is organised: one kind per test, from what it uses (docs/development.md) ---

SLOW_MODULES = {"test_chaos", "test_faults", "test_serve", "test_ui_browser"}
"""Modules whose every test runs the service's real processes (stack, serve, a browser)."""
KINDS = ("unit", "sim", "storage", "contract", "jobs", "processes")


def kind_of(item: pytest.Item) -> str:
    """The first that fits: `processes` (slow: real processes of the service), `jobs` (a real
    Celery worker), `contract` (the shim over HTTP), `storage` (SecantusDB or Redis, no
    server of ours), `sim` (the simulator over HTTP), else `unit` (plain code)."""
    used = set(getattr(item, "fixturenames", ()))
    names = getattr(getattr(item, "function", None), "__code__", None)
    calls = set(names.co_names) if names is not None else set()
    if item.get_closest_marker("slow") is not None:
        return "processes"
    for kind in KINDS:  # said by the module (`pytestmark`): a fixture may ask for a server late
        if item.get_closest_marker(kind) is not None:
            return kind
    if "worker" in used or "run_worker" in calls:
        return "jobs"
    if used & {"shim_url", "shim_server"}:
        return "contract"
    if used & {"stores", "mongo_db", "mongo_server", "runtime", "redis_url"}:
        return "storage"
    if used & {"sim", "client"}:
        return "sim"
    return "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        item.add_marker(getattr(pytest.mark, kind_of(item)))
        # Under `-n 2 --dist loadgroup` (./dev test) a module with fixtures of its own scope
        # (the fault stack, the browser) stays on one worker; the rest spreads over both.
        fixtures = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(d.scope == "module" for defs in fixtures.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(module))
    # The slow tests first (a module's order kept), then the longest of the others: the longest
    # work starts while the rest fills the other workers, instead of a long test starting last
    # and running alone (the fuzz test did, adding ~15 s to a `-m "not slow"` run).
    items.sort(
        key=lambda item: (item.get_closest_marker("slow") is None, item.originalname not in LONG)
    )


LONG = {
    "test_no_request_gets_a_500_and_every_answer_is_the_envelope",
    "test_a_webhook_without_a_url_registers_our_receiver_and_reads_its_key_again",
    "test_refused_deliveries_are_limited_per_source_and_company",
    "test_forged_missing_and_unknown_are_refused_and_nothing_is_kept",
    "test_a_stream_closes_when_the_token_it_was_opened_with_expires",
    "test_the_default_concurrency_reads_10_000_companies_in_two_round_trips",
    "test_companies_sync_of_1234_companies_over_five_pages",
    "test_a_users_refresh_starts_before_a_backlog_of_periodic_syncs",
    "test_roll_ups_agree_with_the_calls_through_edits_and_deletions",
    "test_a_429_storm_without_retry_after_ends_in_a_complete_snapshot",
    "test_a_slow_job_keeps_beating_and_is_never_taken_from_its_worker",
    "test_twenty_concurrent_creates_for_one_company_keep_every_url_once",
    "test_a_running_job_whose_process_fell_silent_is_taken_up_and_finished",
    "test_a_write_stopped_half_way_is_counted_again_by_the_next",
}
"""The tests not marked slow that take longest (2-9 s each, `--durations`): started last, one
of them kept its worker busy ~5 s after the other three had finished."""


_cost: dict[str, list[float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    kind = next((k for k in KINDS if k in report.keywords), "unit")
    spent = _cost.setdefault(kind, [0, 0.0])
    spent[0] += report.when == "call"
    spent[1] += report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line: what each kind of test cost in this run (setup and teardown included)."""
    if _cost:
        parts = [f"{k} {_cost[k][0]:.0f} in {_cost[k][1]:.0f} s" for k in KINDS if k in _cost]
        terminalreporter.write_line("kinds: " + ", ".join(parts))


# --- the end of an xdist worker ---------------------------------------------------------------

_exit_status = 0


def pytest_sessionfinish(exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def _exit_without_finalizing() -> None:
    """An xdist worker leaves once its session has ended and the exit functions registered
    after this one have run, without the interpreter's finalization: tearing down the modules
    and objects of a whole run took each worker ~1 s, and the run's end waited for the last
    (the controller's session end: 2.8-3.0 s -> 0.9-1.2 s). Not under coverage (its exit
    function, registered earlier, writes its data) nor with a child process left."""
    import logging
    import multiprocessing

    if "coverage" in sys.modules or multiprocessing.active_children():
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)


if os.environ.get("PYTEST_XDIST_WORKER"):
    atexit.register(_exit_without_finalizing)
