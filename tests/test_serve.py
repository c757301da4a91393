"""`callrail-sync serve` as a newcomer runs it: one process, embedded defaults, real HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests

from callrail_sync.budget import SlidingWindows, Window
from callrail_sync.cli import main as cli
from callrail_sync.cli.processes import ensure_redis, free_port, redis_part, run_port, wait_until
from callrail_sync.cli.serve import Embedded, prepare
from callrail_sync.config import Settings
from callrail_sync.job import JobParams, JobType
from callrail_sync.stores import connect
from celeryconfig import Queues, create_celery
from simulator import Knobs, SimData, SimServer
from tasks.submit import submit
from tasks.table import CeleryQueue

from .conftest import TEST_SECRETS_KEYS

P = "/v1/e/callrail"
ROOT = Path(__file__).resolve().parents[1]
DEMO_OWNER = "64f1c2a9e4b0a1b2c3d4e5f6"
NO_REDIS = "redis://127.0.0.1:9/0"  # nothing listens there


@dataclass
class Serve:
    """A `callrail-sync serve` subprocess and what it printed."""

    run_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir.parent / f"serve-{self.port}.log"

    def start(self) -> Serve:
        argv = [sys.executable, "-m", "callrail_sync.cli", "serve", "--port", str(self.port)]
        argv += ["--run-dir", str(self.run_dir)]
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        # The banner's last line (logs of other threads may come between its lines).
        done = ("  export ", "the CLI verbs cannot reach")
        assert wait_until(lambda: any(d in self.printed for d in done), 60), self.printed
        assert wait_until(lambda: requests.get(self.base + "/healthz", timeout=1).ok, 30)
        return self

    @property
    def printed(self) -> str:
        return self.log_path.read_text(errors="replace")

    def line(self, prefix: str) -> str:
        return next(x for x in self.printed.splitlines() if x.startswith(prefix))[len(prefix) :]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.line('token: ')}"}

    @property
    def exports(self) -> dict[str, str]:
        """The environment the banner says the CLI needs."""
        words = self.line("  export ").split()
        return dict(word.split("=", 1) for word in words)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, timeout=40)

    def finish(self, path: str) -> dict:
        """Ask; when answered 202, wait for the job; return the job as last seen."""
        answer = self.get(path)
        assert answer.status_code == 202, answer.text
        return self.get(answer.json()["data"]["status_url"] + "?wait=25").json()["data"]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(90)


def clean_env(**extra: str) -> dict[str, str]:
    """`serve`'s environment on a machine with nothing set up. Its beat plans no stream syncs
    (SYNC_STREAMS=none, as in tests/conftest.py): these tests are about serve's processes, and
    each serve's backfill of the demo calls cost ~5 s of CPU; the README tour and the streams
    tests sync calls."""
    drop = {"MONGO_URL", "CALLRAIL_BASE_URL", "JWT_SECRET", "BROKER_URL", "RESULT_BACKEND"}
    drop |= {"CALLRAIL_NAMESPACE", "BUDGET_SCOPE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    base = {"REDIS_URL": NO_REDIS, "PYTHONUNBUFFERED": "1", "SYNC_STREAMS": "none"}
    return {**env, **base, **extra}


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    running = Serve(tmp_path / "run", clean_env()).start()
    yield running
    if running.proc and running.proc.poll() is None:
        running.stop()


def test_serve_runs_the_whole_flow_with_no_services(serve):
    printed = serve.printed
    # No Redis answered and no MONGO_URL: it started its own of both.
    assert "broker: redis://127.0.0.1:" in printed and "store: mongodb://127.0.0.1:" in printed
    token = serve.line("token: ")
    assert f"curl -s -H 'Authorization: Bearer {token}' '{serve.base}{P}/accounts'" in printed
    job = serve.finish(f"{P}/accounts")
    assert job["status"] == "succeeded", job
    page = serve.get(f"{P}/accounts").json()
    assert page["data"]["total_records"] == 3
    ready = requests.get(serve.base + "/readyz", timeout=5).json()["data"]
    assert ready == {"mongo": True, "broker": True}
    assert (serve.run_dir / "pids" / "mongo.pid").exists()


def test_the_cli_verbs_reach_a_running_serve(serve, capsys):
    exports = serve.exports
    names = {"MONGO_URL", "REDIS_URL", "CALLRAIL_NAMESPACE", "BUDGET_SCOPE", "SECRETS_KEYS_FILE"}
    assert set(exports) == names  # the run dir's SECRETS_KEYS by its file: never the key
    job = serve.finish(f"{P}/accounts")
    env = {**clean_env(), **exports}
    jobs = subprocess.run(
        [sys.executable, "-m", "callrail_sync.cli", "jobs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert job["job_id"] in jobs.stdout and "succeeded" in jobs.stdout
    account = serve.get(f"{P}/accounts").json()["data"]["accounts"][0]["id"]
    synced = subprocess.run(
        # No --account: it defaults to DEMO_ACCOUNT_ID, the account of serve's demo key.
        [sys.executable, "-m", "callrail_sync.cli", "sync"]
        + ["--callrail-account", account, "--timeout", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert synced.stdout.strip().endswith("succeeded: 180 records in 1 pages")
    page = serve.get(f"{P}/companies?account_id={account}&disabled=true").json()["data"]
    assert page["total_records"] == 180  # the sync the CLI queued is what serve now serves


def stop_lines(printed: str) -> list[str]:
    return [line for line in printed.splitlines() if '"worker shutting down' in line]


def test_serve_keeps_its_data_across_a_restart(tmp_path):
    """Stopped by Ctrl-C (SIGINT) the first time, by SIGTERM the second: the log names each."""
    first = Serve(tmp_path / "run", clean_env()).start()
    try:
        assert first.finish(f"{P}/accounts")["status"] == "succeeded"
    finally:
        assert first.stop(signal.SIGINT) == 0
    (stopped,) = stop_lines(first.printed)
    assert '"signal": "SIGINT"' in stopped
    second = Serve(tmp_path / "run", clean_env()).start()
    try:
        assert second.get(f"{P}/accounts").status_code == 200  # the snapshot is still there
        assert second.exports == first.exports  # the same ports: the printed URLs still work
    finally:
        assert second.stop() == 0
    (stopped,) = stop_lines(second.printed)
    assert '"signal": "SIGTERM"' in stopped


def test_serve_hands_a_running_sync_back_on_sigterm_and_the_next_serve_finishes_it(
    tmp_path, mongo_server, mongo_db
):
    """With its MongoDB outside (so the job can be read while no serve runs)."""
    data = SimData(seed=5, keys=1, accounts_per_key=1, companies_per_account=250)
    sim = SimServer(data, knobs=Knobs(latency=0.15)).start()
    key, (account,) = next(iter(data.accounts_by_key.items()))
    # Ten pages of 25 (as many as of 250, a tenth of the records to store).
    env = clean_env(
        CALLRAIL_BASE_URL=sim.base_url,
        CALLRAIL_PAGE_SIZE="25",
        PAGE_CONCURRENCY="1",
        JWT_SECRET="s" * 40,
    )
    env.update(MONGO_URL=mongo_server, MONGO_DB=mongo_db)
    try:
        first = Serve(tmp_path / "run", env).start()
        cli_env = {**env, **first.exports}
        assert cli_env["MONGO_URL"] == mongo_server
        subprocess.run(
            [sys.executable, "-m", "callrail_sync.cli", "keys", "set", "--account", DEMO_OWNER],
            input=key + "\n",
            env=cli_env,
            check=True,
            capture_output=True,
            text=True,
        )
        answer = first.get(f"{P}/companies?account_id={account}")
        job_id = answer.json()["data"]["job_id"]
        job = lambda: first.get(f"{P}/jobs/{job_id}").json()["data"]  # noqa: E731
        assert wait_until(lambda: job()["progress"]["pages_done"] >= 2, 60)
        assert first.stop() == 0
        stored = pages_and_status(cli_env, job_id)
        assert stored[1] == "queued" and 2 <= stored[0] < 10  # handed back, not lost
        sim.set_knobs(latency=0.0)
        second = Serve(tmp_path / "run", env).start()
        try:
            done = second.get(f"{P}/jobs/{job_id}?wait=30").json()["data"]
            assert done["status"] == "succeeded" and done["progress"]["records"] == 250
        finally:
            second.stop()
    finally:
        sim.stop()


def pages_and_status(env: dict[str, str], job_id: str) -> tuple[int, str]:
    """A job's stored page count and status, read with the CLI from serve's MongoDB."""
    out = subprocess.run(
        [sys.executable, "-m", "callrail_sync.cli", "jobs"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = next(line.split() for line in out.splitlines() if line.startswith(job_id))
    return int(row[3].split("/")[0]), row[2]


def test_serves_worker_survives_a_redis_restart(serve):
    assert serve.finish(f"{P}/accounts")["status"] == "succeeded"
    port = int(serve.exports["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    pid = int((serve.run_dir / "pids" / "redis.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not listening(port), 20, 0.05)  # it has stopped
    again = redis_part(serve.run_dir, port).start(serve.run_dir).wait_ready(20)
    try:
        ready = lambda: requests.get(serve.base + "/readyz", timeout=2).status_code == 200  # noqa: E731
        assert wait_until(ready, 30, 0.1)  # the shim reaches the broker again
        job = serve.finish(f"{P}/accounts?refresh=true")
        assert job["status"] == "succeeded", job
    finally:
        serve.stop()
        again.stop()


def test_without_mongodb_serve_says_so_in_one_line(tmp_path, monkeypatch):
    from callrail_sync.cli import serve as serve_module

    def cannot(*args, **kwargs):
        raise FileNotFoundError("secantusd-py is not installed")

    monkeypatch.setattr(serve_module, "ensure_mongo", cannot)
    with pytest.raises(SystemExit) as stopped:
        serve_module.prepare(Settings(redis_url=NO_REDIS, mongo_url=None), tmp_path)
    assert str(stopped.value) == serve_module.NO_MONGO
    assert "\n" not in serve_module.NO_MONGO and "MONGO_URL" in serve_module.NO_MONGO
    monkeypatch.delenv("MONGO_URL", raising=False)
    with pytest.raises(SystemExit) as refused:
        cli(["jobs"])
    assert "MONGO_URL is not set" in str(refused.value)


def without_redis_server(tmp_path: Path) -> str:
    """A PATH with python only: no redis-server on it (SecantusDB is in the venv's bin)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").symlink_to(sys.executable)
    assert shutil.which("redis-server", path=str(bin_dir)) is None
    return str(bin_dir)


@pytest.mark.slow
def test_with_no_redis_server_serves_redis_is_fakeredis_speaking_the_protocol(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", without_redis_server(tmp_path))
    started = ensure_redis(NO_REDIS, tmp_path)
    try:
        assert started.part is not None and "fakeredis_server" in " ".join(started.part.argv)
        client = redis.Redis.from_url(started.url)
        budget = SlidingWindows(client, [Window(2, 60)])  # a Lua script
        assert [budget.try_acquire("unit")[0] for _ in range(3)] == [True, True, False]
        listener = client.pubsub()
        listener.psubscribe("callrail:events:*")
        assert wait_until(lambda: listener.get_message(timeout=0.1) is not None, 5)
        client.lpush("callrail.listings", "m")
        assert client.brpop(["callrail.webhooks", "callrail.listings"], timeout=5) == (
            b"callrail.listings",
            b"m",
        )
        client.publish("callrail:events:x", "e")
        got: list[dict] = []
        assert wait_until(lambda: got.append(listener.get_message(timeout=0.1)) or got[-1], 5)
        assert got[-1]["data"] == b"e"
        listener.close()
    finally:
        started.stop()


@pytest.mark.slow
def test_serve_runs_the_whole_flow_on_fakeredis_when_no_redis_server_is_installed(tmp_path):
    env = clean_env(PATH=without_redis_server(tmp_path))
    running = Serve(tmp_path / "run", env).start()
    try:
        assert "fakeredis' server" in running.printed
        job = running.finish(f"{P}/accounts")
        assert job["status"] == "succeeded", job
        assert running.get(f"{P}/accounts").json()["data"]["total_records"] == 3
    finally:
        running.stop()


# --- runs that share a machine ------------------------------------------------------------


def prepared(tmp_path: Path, name: str, **settings: object) -> Embedded:
    """serve's parts for a run dir of its own, on the test Redis and MongoDB."""
    return prepare(Settings(**settings), tmp_path / name)  # type: ignore[arg-type]


def test_two_runs_on_one_redis_never_see_each_others_work(
    tmp_path, redis_url, mongo_server, mongo_db, monkeypatch
):
    monkeypatch.delenv("CALLRAIL_BASE_URL", raising=False)  # the built-in simulator
    client = redis.Redis.from_url(redis_url)
    runs = [
        prepared(
            tmp_path, name, redis_url=redis_url, mongo_url=mongo_server, mongo_db=mongo_db + name
        )
        for name in ("a", "b")
    ]
    try:
        a, b = runs
        assert a.settings.namespace != b.settings.namespace
        assert {r.settings.budget_scope for r in runs} == {"run"}  # the simulator's quota
        assert f"CALLRAIL_NAMESPACE={a.settings.namespace}" in a.cli_exports
        job, _ = submit(
            a.runtime.stores.jobs,
            CeleryQueue(create_celery(a.settings)),
            DEMO_OWNER,
            JobType.SYNC_ACCOUNTS,
            JobParams(),
        )
        mine, theirs = Queues(a.settings.queue_suffix), Queues(b.settings.queue_suffix)
        assert client.llen(mine.listings) == 1
        assert client.llen(theirs.listings) == 0 and client.llen(Queues().listings) == 0
        unit = "account:ACCdemo"
        a.runtime.budget.acquire(unit)
        hour = a.settings.hourly_limit
        assert a.runtime.budget.left(unit).left[3600] == hour - 1
        assert b.runtime.budget.left(unit).left[3600] == hour  # not b's budget
        with a.runtime.locks.hold("feed:x"), b.runtime.locks.hold("feed:x"):
            pass  # each run its own lock
        ours = [k.decode() for k in client.scan_iter("callrail:*")]
        assert ours and all(
            k.startswith((a.settings.redis_prefix + ":", mine.listings)) for k in ours
        ), ours
    finally:
        for run in runs:
            run.stop()


def test_against_a_real_callrail_the_budget_stays_shared(
    tmp_path, redis_url, mongo_server, mongo_db, sim
):
    runs = [
        prepared(
            tmp_path,
            name,
            redis_url=redis_url,
            mongo_url=mongo_server,
            mongo_db=mongo_db + name,
            callrail_base_url=sim.base_url,
        )
        for name in ("a", "b")
    ]
    try:
        a, b = runs
        assert a.settings.namespace != b.settings.namespace  # queues and keys: still each own
        assert {r.settings.budget_scope for r in runs} == {"shared"}
        assert "BUDGET_SCOPE" not in a.cli_exports
        unit = "account:ACCshared"
        a.runtime.budget.acquire(unit)
        assert b.runtime.budget.left(unit).left[3600] == a.settings.hourly_limit - 1
    finally:
        for run in runs:
            run.stop()


def test_a_run_dir_keeps_its_ports_while_they_are_free(tmp_path):
    first = run_port(tmp_path, "mongo")
    assert run_port(tmp_path, "mongo") == first != run_port(tmp_path, "redis")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        moved = run_port(tmp_path, "mongo")  # another process holds it now: a new one
    assert moved != first and run_port(tmp_path, "mongo") == moved


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callrail_sync.cli", *args],
        env={**clean_env(), "SECRETS_KEYS": TEST_SECRETS_KEYS, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_cli_verbs_that_cannot_reach_mongodb_or_redis_say_so_in_one_line(mongo_server, mongo_db):
    no_mongo = run_cli(
        "jobs",
        MONGO_URL="mongodb://admin:s3cret@127.0.0.1:9/?directConnection=true",
        MONGO_TIMEOUT="0.5",
    )
    no_redis = run_cli(
        "status",
        MONGO_URL=mongo_server,
        MONGO_DB=mongo_db,
        REDIS_URL="redis://:s3cret@127.0.0.1:9/0",
    )
    connect(Settings(mongo_url=mongo_server, mongo_db=mongo_db, development=True)).keys.set(
        DEMO_OWNER, "key"
    )
    no_broker = run_cli(
        "sync", "--no-wait", MONGO_URL=mongo_server, MONGO_DB=mongo_db, REDIS_URL=NO_REDIS
    )
    said = {
        "jobs: cannot reach MongoDB at mongodb://127.0.0.1:9/?directConnection=true": no_mongo,
        "status: cannot reach Redis at redis://127.0.0.1:9/0": no_redis,
        "sync: cannot reach the broker (Redis) at redis://127.0.0.1:9/0": no_broker,
    }
    for line, done in said.items():
        assert done.returncode != 0, done
        # sync also logs that the job it wrote could not be queued (it is failed, not lost)
        assert done.stderr.strip().splitlines()[-1] == f"callrail-sync {line}", done.stderr
        assert "Traceback" not in done.stderr and "s3cret" not in done.stdout + done.stderr
    assert len(no_mongo.stderr.strip().splitlines()) == len(no_redis.stderr.splitlines()) == 1


@pytest.mark.slow
def test_serve_on_a_port_in_use_says_so_in_one_line_before_anything_else(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", "--port", str(port), "--run-dir", str(tmp_path / "run"))
    assert done.returncode != 0
    assert (done.stdout + done.stderr).strip().splitlines() == [
        f"callrail-sync serve: port {port} on 127.0.0.1 is in use"
    ]
    assert not (tmp_path / "run").exists()  # nothing started


def test_a_stack_owns_its_queues_and_keys_and_says_how_to_reach_them(tmp_path, monkeypatch):
    from callrail_sync.cli.stack import Stack, StackConfig, banner

    monkeypatch.delenv("CALLRAIL_NAMESPACE", raising=False)
    monkeypatch.delenv("CALLRAIL_BASE_URL", raising=False)
    own = Stack(StackConfig(run_dir=tmp_path / "a"), Settings())
    other = Stack(StackConfig(run_dir=tmp_path / "b"), Settings())
    assert own.settings.namespace.startswith("stack-")
    assert own.settings.namespace != other.settings.namespace
    assert own.settings.budget_scope == "run"  # its own simulator's quota
    env = own.env()
    assert env["CALLRAIL_NAMESPACE"] == own.settings.namespace and env["BUDGET_SCOPE"] == "run"
    assert f"CALLRAIL_NAMESPACE={own.settings.namespace} BUDGET_SCOPE=run" in banner(own, "t")
    real = Stack(StackConfig(run_dir=tmp_path / "a"), Settings(callrail_base_url="https://x/v3"))
    assert real.settings.budget_scope == "shared"


def test_a_stack_on_a_port_in_use_says_so_before_starting_anything(tmp_path):
    from callrail_sync.cli.stack import StackConfig, run_stack

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as stopped:
            run_stack(Settings(), StackConfig(run_dir=tmp_path / "run", port=port))
    assert str(stopped.value) == f"callrail-sync stack: port {port} on 127.0.0.1 is in use"
    assert not (tmp_path / "run").exists()


def test_serve_runs_notification_attempts_on_a_worker_process_of_their_own(tmp_path):
    """The jobs' worker takes no notification: a process of its own (pids/notifier.pid) does,
    and the owner's callback hears of the sync."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    heard: list[bytes] = []

    class Callback(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            heard.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    running = Serve(tmp_path / "run", clean_env(ALLOW_PRIVATE_URLS="true")).start()
    try:
        pid = int((running.run_dir / "pids" / "notifier.pid").read_text())
        assert pid != running.proc.pid
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        put = requests.put(
            running.base + f"{P}/notifications",
            json={"url": url},
            headers=running.headers,
            timeout=20,
        )
        assert put.status_code == 200, put.text
        job = running.finish(f"{P}/accounts")
        assert job["status"] == "succeeded", job
        assert wait_until(lambda: bool(heard), 30), "the callback heard nothing"
        notifier_log = (running.run_dir / "logs" / "notifier.log").read_text()
        assert "callrail.notify.deliver" in notifier_log
    finally:
        running.stop()
        receiver.shutdown()
