"""Running the service's parts as OS processes: start, health-check, signal, stop.

`callrail-sync stack`, `serve`'s embedded MongoDB and Redis, and the fault-suite tests all
start their processes through `Part`, so each one logs to a file, writes a pid file, lives in
its own process group (a signal reaches its children too: Celery's prefork pool, uvicorn's
workers) and is stopped the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests
from cryptography.fernet import Fernet

from callrail_sync.config import Settings


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the process that started it dies (even by SIGKILL),
    so no part outlives `serve`, `stack` or a test run that was killed."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_port(run_dir: Path, name: str) -> int:
    """The port of the run dir's `name` (mongo, redis): the one it had before while nothing
    else holds it, else a new one, remembered in RUN_DIR/ports.json; so the URLs a run prints
    stay valid across its restarts."""
    path = run_dir / "ports.json"
    try:
        ports = json.loads(path.read_text())
    except (OSError, ValueError):
        ports = {}
    port = ports.get(name)
    if not isinstance(port, int) or not port_free(port):
        port = ports[name] = free_port()
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ports) + "\n")
    return port


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on the port now."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def run_namespace(kind: str, run_dir: Path) -> str:
    """The namespace of a `serve` or `stack` run dir (CALLRAIL_NAMESPACE): its own queues and
    Redis keys, the same at every restart, so the next run finds what the last one left."""
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:8]
    return f"{kind}-{digest}"


def namespace_exports(s: Settings) -> str:
    """The words of an export line that put the CLI into a run's namespace."""
    words = f" CALLRAIL_NAMESPACE={s.namespace}" if s.namespace else ""
    words += f" BUDGET_SCOPE={s.budget_scope}" if s.budget_scope != "shared" else ""
    return words + (f" SECRETS_KEYS_FILE={s.secrets_keys_file}" if s.secrets_keys_file else "")


def run_updates(settings: Settings, kind: str, run_dir: Path, simulator: bool) -> dict[str, str]:
    """A `serve` or `stack` run's own namespace (unless CALLRAIL_NAMESPACE names one), so two
    runs on one Redis never see each other's work; and, against the built-in simulator, its
    own request budget (a real CallRail's quota is every run's: that budget stays shared)."""
    updates = {}
    if "namespace" not in settings.model_fields_set:
        updates["namespace"] = run_namespace(kind, run_dir)
    if simulator and "budget_scope" not in settings.model_fields_set:
        updates["budget_scope"] = "run"
    if not settings.secrets_keys:
        # Secrets at rest sealed with a key of this run dir's own (its data lives there too),
        # handed to the parts and the CLI by its file, never shown.
        path = run_dir / "secrets_keys"
        key = kept_secret(path) or Fernet.generate_key().decode()
        run_dir.mkdir(parents=True, exist_ok=True)
        keep_secret(path, key)
        updates |= {"secrets_keys": key, "secrets_keys_file": str(path)}
    return updates


def kept_secret(path: Path) -> str | None:
    """The secret a run dir kept from its last start, if any."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def keep_secret(path: Path, secret: str) -> None:
    """Write the secret where only this user can read it (0600, also if the file was there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret)


def demo_token(settings: Settings, secret: str) -> str:
    """A token for the demo account, signed with `secret`: what `serve` and `stack` print."""
    from api_shim.auth import DEV_TOKEN_TTL, issue_token

    s = settings
    return issue_token(
        s.demo_account_id, secret, DEV_TOKEN_TTL, issuer=s.jwt_issuer, audience=s.jwt_audience
    )


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `check` until it is true or `timeout` passes; exceptions count as false."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if check():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tool(name: str) -> str:
    """A command installed next to this Python (the venv's bin) or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed")
    return found


@dataclass
class Part:
    """One process of the stack: its command, its readiness check, its log and pid files."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 20.0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    run_dir: Path | None = None

    @property
    def log_path(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "logs" / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "pids" / f"{self.name}.pid"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, run_dir: Path) -> Part:
        """Start the process (in its own process group), logging to RUN_DIR/logs/NAME.log."""
        self.run_dir = run_dir
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        log.close()
        self.pid_path.write_text(f"{self.proc.pid}\n")
        return self

    def wait_ready(self, timeout: float = 30.0) -> Part:
        """Block until the readiness check passes; raise with the log's tail if it never does."""
        if not wait_until(lambda: self.ready() or not self.alive, timeout) or not self.alive:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{self.name} did not become ready:\n{tail}")
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def signal(self, sig: int) -> None:
        """Send `sig` to the process itself, as `docker stop` does to a container's main
        process: a Celery worker then stops its pool warm (its children, signalled directly,
        would die mid-task)."""
        if self.proc is not None and self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the process and every child of its group."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float | None = None) -> None:
        """Ask it to stop; kill it (and its children) if it has not within the timeout."""
        if self.proc is None:
            return
        self.signal(self.stop_signal)
        try:
            self.proc.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(10)
        # Children left behind (a prefork pool whose parent was killed) go with the group.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.pid_path.unlink()

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or an OOM kill would."""
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)


def http_ok(url: str, auth: tuple[str, str] | None = None) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=1, auth=auth).status_code == 200


def redis_ok(url: str) -> Callable[[], bool]:
    return lambda: bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())


def celery_ok(name: str, settings: Callable[[], Settings]) -> Callable[[], bool]:
    """Whether the Celery worker `name` of this machine answers a control ping (through the
    broker of `settings()` as it is then: a stack knows its Redis once it started)."""
    from celeryconfig import create_celery

    node = f"{name}@{socket.gethostname()}"
    return lambda: bool(create_celery(settings()).control.ping(destination=[node], timeout=0.5))


def log_says(part_name: str, text: str, run_dir: Path) -> Callable[[], bool]:
    path = run_dir / "logs" / f"{part_name}.log"
    return lambda: text in path.read_text(errors="replace")


def mongo_part(run_dir: Path, port: int, *, test_commands: bool = False) -> Part:
    """SecantusDB (a MongoDB-compatible server on WiredTiger; a development and test
    dependency, GPL-2.0, never a production one), its data in RUN_DIR/mongo."""
    from pymongo import MongoClient

    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def ping() -> bool:
        client: MongoClient[dict[str, object]]
        with MongoClient(url, serverSelectionTimeoutMS=300) as client:
            return bool(client.admin.command("ping").get("ok"))

    argv = [tool("secantusd-py"), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--storage-path", str(run_dir / "mongo"), "--log-level", "WARNING"]
    if test_commands:
        argv.append("--enable-test-commands")
    return Part("mongo", argv, ping, stop_timeout=15)


def redis_part(run_dir: Path, port: int, *, persist: bool = False) -> Part:
    """A redis-server of our own; with `persist`, its data (queued messages) lives in
    RUN_DIR/redis and survives a restart, else it keeps nothing (as the machine's does)."""
    data = run_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [tool("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    argv += ["--appendonly", "yes" if persist else "no", "--dir", str(data)]
    return Part("redis", argv, redis_ok(f"redis://127.0.0.1:{port}/0"), stop_timeout=5)


def fakeredis_part(port: int) -> Part:
    """fakeredis' TCP server as a process of its own, for machines with no redis-server: it
    speaks the protocol (Lua included), and keeps its data in memory only."""
    argv = [sys.executable, "-m", "callrail_sync.cli.fakeredis_server", "--port", str(port)]
    return Part("redis", argv, redis_ok(f"redis://127.0.0.1:{port}/0"), stop_timeout=5)


@dataclass
class Started:
    """A service's URL, and the part we started for it (None: it was already there)."""

    url: str
    part: Part | None = None

    def stop(self) -> None:
        if self.part is not None:
            self.part.stop()


def ensure_mongo(mongo_url: str | None, run_dir: Path, *, test_commands: bool = False) -> Started:
    """MONGO_URL when given, else SecantusDB with its data in RUN_DIR/mongo."""
    if mongo_url:
        return Started(mongo_url)
    port = run_port(run_dir, "mongo")
    part = mongo_part(run_dir, port, test_commands=test_commands).start(run_dir)
    part.wait_ready(60)
    return Started(f"mongodb://127.0.0.1:{port}", part)


def ensure_redis(
    redis_url: str, run_dir: Path, *, own: bool = False, persist: bool = False
) -> Started:
    """REDIS_URL when it answers (and `own` is not asked), else a redis-server of our own,
    else (none installed) fakeredis' server in a process of its own."""
    if not own:
        with contextlib.suppress(Exception):
            if redis_ok(redis_url)():
                return Started(redis_url)
    port = run_port(run_dir, "redis")
    try:
        part = redis_part(run_dir, port, persist=persist)
    except FileNotFoundError:
        part = fakeredis_part(port)
    return Started(f"redis://127.0.0.1:{port}/0", part.start(run_dir).wait_ready(20))
