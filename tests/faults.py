"""What the fault-suite tests share: a multi-process stack, tenants, and checks of what users
see through the shim and what the store holds."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from bson import ObjectId

from api_shim.auth import issue_token
from callrail_sync.cli.processes import wait_until
from callrail_sync.cli.stack import Stack, StackConfig
from callrail_sync.config import Settings
from callrail_sync.job import Job
from callrail_sync.stores import Stores
from simulator.control import SimControl

from .conftest import TEST_SECRET

P = "/v1/e/callrail"

# Short periods, so that what takes minutes in production takes seconds here.
FAULT_ENV = {
    "STALE_JOB_SECONDS": "6",
    "SWEEP_INTERVAL": "2",
    "JOB_LEASE_SECONDS": "5",
    "MAX_ATTEMPTS": "8",
    "BACKOFF_BASE": "0.3",
    "BACKOFF_CAP": "2",
    "PAGE_CONCURRENCY": "2",
    # Pages of 25: a test walks as many pages as with 250 and stores a tenth of the records.
    "CALLRAIL_PAGE_SIZE": "25",
    "SYNC_INTERVAL": "8",
    # Beat plans no stream syncs here (as in tests/conftest.py): these cases sync companies.
    "SYNC_STREAMS": "none",
    "MONGO_TIMEOUT": "2",
    "CALLRAIL_READ_TIMEOUT": "5",
    "BUDGET_MAX_INLINE_WAIT": "2",
    "LOG_LEVEL": "INFO",
    "JWT_SECRET": TEST_SECRET,
}


def start_stack(run_dir: Path, **config: Any) -> Stack:
    """Every part a process of its own: SecantusDB (fail points on), a redis-server of the
    stack's own (so a test may restart it), the simulator, the shim, two prefork workers and
    beat (no Flower: it is not what these tests are about, and the CPU is short)."""
    settings = Settings(mongo_url=None, jwt_secret=TEST_SECRET, mongo_timeout=2)
    stack_config = StackConfig(
        run_dir=run_dir,
        port=config.pop("port"),
        workers=2,
        concurrency=2,
        shim_workers=1,
        flower=False,
        env=FAULT_ENV,
        mongo_test_commands=True,
        own_redis=True,
        **config,
    )
    stack = Stack(stack_config, settings).start()
    # The demo owner would be synced by beat all along; these tests bring their own tenants.
    stack.stores().userconfig.set(settings.demo_account_id, [])
    return stack


@dataclass
class Tenant:
    """A DashClicks account with its own CallRail key and accounts in the simulator."""

    stack: Stack
    owner: str
    key: str
    accounts: list[str]
    sizes: list[int]

    @property
    def token(self) -> str:
        return issue_token(self.owner, TEST_SECRET, ttl_seconds=3600)

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(
            method, self.stack.shim_url + path, headers=headers, timeout=30, **kw
        )

    def sync_companies(self, account: str) -> str:
        """Ask for the companies as the frontend does; the job id of the 202."""
        answer = self.call("GET", f"{P}/companies?account_id={account}&refresh=true")
        assert answer.status_code == 202, answer.text
        return str(answer.json()["data"]["job_id"])


def simulator(stack: Stack) -> SimControl:
    """The controls of the stack's simulator."""
    assert stack.simulator_url is not None
    return SimControl(stack.simulator_url)


def new_tenant(stack: Stack, *sizes: int) -> Tenant:
    key = "key_" + secrets.token_hex(8)
    accounts = [simulator(stack).add_account(key, n) for n in sizes]
    owner = str(ObjectId())
    stack.stores().keys.set(owner, key)
    return Tenant(stack, owner, key, accounts, list(sizes))


def wait_final(stores: Stores, job_id: str, timeout: float = 90.0) -> Job:
    assert wait_until(lambda: stores.jobs.get(job_id).is_final, timeout, 0.2), (
        f"job {job_id} did not end: {stores.jobs.get(job_id)}"
    )
    job = stores.jobs.get(job_id)
    assert job is not None
    return job


def assert_snapshot_whole(stores: Stores, tenant: Tenant, account: str, size: int) -> None:
    """The current snapshot holds exactly the account's companies, each once, and nothing of
    an abandoned build is left; the shim serves the same count."""
    head = stores.snapshots.current(tenant.owner, "companies", account)
    assert head is not None and head.counts["records"] == size
    records = stores.db["callrail_companies"]
    ids = [r["id"] for r in records.find({"snapshot_id": head.snapshot_id}, {"id": 1})]
    assert len(ids) == len(set(ids)) == size
    building = stores.db["callrail_snapshots"].count_documents(
        {"owner": tenant.owner, "callrail_account_id": account, "state": "building"}
    )
    assert building == 0
    page = tenant.call("GET", f"{P}/companies?account_id={account}&disabled=true&per_page=1")
    assert page.status_code == 200 and page.json()["data"]["total_records"] == size


def worker_running(stack: Stack, job_id: str) -> str:
    """The name of the worker whose log says it started the job."""
    for name in stack.worker_names:
        text = stack.parts[name].log_path.read_text(errors="replace")
        if f'"message": "job started", "job_id": "{job_id}"' in text:
            return name
    raise AssertionError(f"no worker started {job_id}")


def pages_fetched(stack: Stack, account: str) -> list[int]:
    """Page numbers of the account's companies fetched with a 200, from the simulator's log."""
    log = simulator(stack).log()
    return sorted(
        int(r["query"].split("page=")[1].split("&")[0])
        for r in log
        if r["status"] == 200 and f"/a/{account}/companies.json" in r["path"]
    )


class BlackholeProxy:
    """A TCP proxy to a local port that can swallow what clients send (`swallow = True`):
    a broker that takes the bytes and never acts on them, so a client is stuck mid-send."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.swallow = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._sockets: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                self._sockets += [client, upstream]
                threading.Thread(
                    target=self._pump, args=(client, upstream, True), daemon=True
                ).start()
                threading.Thread(
                    target=self._pump, args=(upstream, client, False), daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket, outbound: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not (outbound and self.swallow):
                    target.sendall(data)

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
