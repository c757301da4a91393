"""Calling a user's URL (notification callbacks): the checked address is the one connected to,
TLS is verified against the host name, one deadline bounds an attempt, and only the start of
the answer is read. Real TLS and TCP servers on loopback addresses play the callbacks; a name
server that answers differently the second time plays the rebinding attacker."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callrail_sync.stores.database import utcnow

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


# --- a certificate authority of the test's own, trusted through SSL_CERT_FILE -----------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


class Authority:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("callrail-sync test CA"))
            .issuer_name(_name("callrail-sync test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = directory / "ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server's TLS context with a certificate for `host`, signed by this authority."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = self.dir / f"{host}.pem", self.dir / f"{host}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context


@pytest.fixture
def authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Authority:
    ca = Authority(tmp_path)
    # OpenSSL's default verify paths read this when a client context is made.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.bundle))
    return ca


# --- raw servers ------------------------------------------------------------------------------


class Server:
    """A TCP server on `address` (optionally TLS) whose connections `answer` handles; it
    records each request's first bytes."""

    def __init__(
        self,
        address: str,
        answer: Callable[[socket.socket], None],
        tls: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        self.listener = socket.create_server((address, port))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.answer, self.tls = answer, tls
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(5)
            self.requests.append(conn.recv(65536))
            self.answer(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def rebinding_resolver(
    monkeypatch: pytest.MonkeyPatch, name: str, first: str, then: str
) -> list[str]:
    """Make `name` resolve to `first` once and to `then` every time after; other names
    resolve as usual. Returns the answers given, in order."""
    real = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        address = first if not given else then
        given.append(address)
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def deliver_once(runtime: Any, owner: str, url: str) -> Any:
    """One attempt of a fresh delivery to `url` through the notification task; the delivery
    as recorded afterwards."""
    from tasks.notify import deliver

    store = runtime.stores.notifications
    store.configure(owner, url, ["sync.succeeded"])
    later = utcnow() + dt.timedelta(hours=1)
    job_id = f"job_{time.monotonic_ns()}"
    delivery = store.new_notification(owner, "sync.succeeded", job_id, url, '{"event":"x"}', later)
    deliver(None, delivery.id)
    return store.notification(delivery.id)


# --- DNS rebinding ----------------------------------------------------------------------------


def test_a_callback_is_called_at_the_address_that_was_checked_when_its_name_rebinds(
    runtime, settings, owner, authority, servers, monkeypatch
):
    """The name answers an allowed address to the check and a refused one (the stand-in for
    169.254.169.254) afterwards: the POST goes to the checked address, the other one sees
    nothing, and the name is resolved once."""
    receiver = Server("127.0.0.1", lambda c: c.sendall(OK), authority.server_context("hooks.test"))
    metadata = Server("127.0.0.2", lambda c: c.sendall(OK), port=receiver.port)
    servers += [receiver, metadata]
    given = rebinding_resolver(monkeypatch, "hooks.test", "127.0.0.1", "127.0.0.2")
    runtime.settings = settings.model_copy(
        update={"allow_private_urls": False, "allowed_networks": "127.0.0.1/32"}
    )
    delivery = deliver_once(runtime, owner, f"https://hooks.test:{receiver.port}/hook")
    assert delivery.status == "delivered", delivery.attempts
    assert delivery.attempts[0].status_code == 200
    assert len(receiver.requests) == 1 and receiver.requests[0].startswith(b"POST /hook HTTP/1.1")
    assert b"\r\nHost: hooks.test:" in receiver.requests[0]
    assert metadata.requests == []
    assert given == ["127.0.0.1"]


def test_a_name_that_resolves_to_a_refused_address_is_not_called(
    runtime, settings, owner, servers, monkeypatch
):
    target = Server("127.0.0.2", lambda c: c.sendall(OK))
    servers.append(target)
    rebinding_resolver(monkeypatch, "hooks.test", "127.0.0.2", "127.0.0.2")
    runtime.settings = settings.model_copy(
        update={"allow_private_urls": False, "allowed_networks": "127.0.0.1/32"}
    )
    delivery = deliver_once(runtime, owner, f"https://hooks.test:{target.port}/hook")
    assert delivery.status == "failed"
    assert delivery.attempts[0].error == "the callback host resolves to a loopback address."
    assert target.requests == []


def test_tls_is_verified_against_the_host_name_not_the_pinned_address(
    runtime, settings, owner, authority, servers, monkeypatch
):
    """A certificate for another name is refused although the address was the checked one."""
    impostor = Server("127.0.0.1", lambda c: c.sendall(OK), authority.server_context("other.test"))
    servers.append(impostor)
    rebinding_resolver(monkeypatch, "hooks.test", "127.0.0.1", "127.0.0.1")
    runtime.settings = settings.model_copy(
        update={"allow_private_urls": False, "allowed_networks": "127.0.0.1/32"}
    )
    delivery = deliver_once(runtime, owner, f"https://hooks.test:{impostor.port}/hook")
    assert delivery.status == "pending" and delivery.attempts[0].status_code is None
    assert delivery.attempts[0].error == "the certificate does not verify"


# --- one deadline, a bounded answer -----------------------------------------------------------


def _trickle(conn: socket.socket) -> None:
    """Answer one byte every 0.2 s, for up to 20 s: every read gets something in time."""
    for byte in (OK * 100)[:100]:
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def _endless(conn: socket.socket) -> None:
    """A 200 whose body never ends (for up to 20 s)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
    chunk, until = b"x" * 65536, time.monotonic() + 20
    while time.monotonic() < until:
        conn.sendall(chunk)


def test_a_callback_that_trickles_its_answer_is_cut_off_at_the_deadline(
    runtime, settings, owner, servers
):
    slow = Server("127.0.0.1", _trickle)
    servers.append(slow)
    runtime.settings = settings.model_copy(
        update={"notify_timeout": 1.0, "allow_private_urls": True}
    )
    started = time.monotonic()
    delivery = deliver_once(runtime, owner, f"http://127.0.0.1:{slow.port}/hook")
    took = time.monotonic() - started
    assert delivery.attempts[0].error == "timed out" and delivery.status == "pending"
    assert took < 1.0 + 2.0, took  # the deadline, plus the task's own Mongo writes


def test_only_the_status_line_of_a_callbacks_answer_is_read(runtime, settings, owner, servers):
    endless = Server("127.0.0.1", _endless)
    servers.append(endless)
    runtime.settings = settings.model_copy(
        update={"notify_timeout": 2.0, "allow_private_urls": True}
    )
    started = time.monotonic()
    delivery = deliver_once(runtime, owner, f"http://127.0.0.1:{endless.port}/hook")
    took = time.monotonic() - started
    assert delivery.status == "delivered" and delivery.attempts[0].status_code == 200
    assert took < 2.0 + 2.0, took


# --- a queue of their own ---------------------------------------------------------------------


def test_slow_callbacks_never_delay_a_webhook_write(
    worker_app, runtime, settings, owner, stores, submit_job, sim_data, api_key, servers
):
    """Notification attempts to a callback that holds every connection, and one job worker
    process: it runs a webhook write at once and takes no notification, which wait on a queue
    of their own for the notifier (serve, stack and Compose run one; tests/test_serve.py
    sees serve's deliver)."""
    import redis

    from celeryconfig import Queues
    from tasks.names import TaskName
    from tests.conftest import run_worker, wait_job

    release = threading.Event()

    def hold(conn: socket.socket) -> None:
        release.wait(60)
        conn.sendall(OK)

    slow = Server("127.0.0.1", hold)
    servers.append(slow)
    runtime.settings = settings.model_copy(
        update={"allow_private_urls": True, "notify_timeout": 90.0}
    )
    url = f"http://127.0.0.1:{slow.port}/hook"
    store = runtime.stores.notifications
    store.configure(owner, url, ["sync.succeeded"])
    later = utcnow() + dt.timedelta(hours=1)
    queues = Queues(settings.queue_suffix)
    account = sim_data.accounts_by_key[api_key][0]
    company = sim_data.companies(sim_data.accounts[account])[0]["id"]
    try:
        with run_worker(worker_app, 1, queues.jobs):
            for n in range(3):
                d = store.new_notification(owner, "sync.succeeded", f"job_{n}", url, "{}", later)
                worker_app.send_task(str(TaskName.NOTIFY), args=[d.id])
            ref = {"account_id": account, "company_id": company}
            job, _ = submit_job(owner, "webhook_create", webhook_url="https://a.example/1", **ref)
            done = wait_job(stores, job.id, timeout=60)
            assert done.status.value == "succeeded", done.error
            assert slow.requests == []  # the job worker took no notification
        waiting = redis.Redis.from_url(settings.redis_url).llen(queues.notify)
        assert waiting == 3  # all three wait for the notifier, on their own queue
    finally:
        release.set()
