"""One POST to a URL a user gave us (a notification callback): the host resolved once, every
address checked, the connection made to exactly the checked address, one deadline for the whole
call, and at most ANSWER_BYTES of the answer read.

Why not `requests`: it resolves the name again when it connects, so a name can answer a public
address to our check and 169.254.169.254 to the connect (DNS rebinding); its timeout bounds each
read, not the call, so a receiver that trickles a byte a second holds a worker as long as it
likes; and it reads the whole answer into memory. Here TLS is still verified against the host
*name* (SNI, certificate and host name check as any client does), and only the status line is
read: it is all we record.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from callrail_sync.errors import ValidationFailed
from callrail_sync.urls import IP, refusal

ANSWER_BYTES = 4096
"""The most of an answer read: the status line must come within it."""


class CallFailed(Exception):
    """The call got no usable answer; `reason` says why in a few words (never the body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    status_code: int
    address: str
    """The address the call was made to (the checked one)."""


@dataclass(frozen=True)
class Policy:
    """Which addresses a call may reach."""

    allow_private: bool = False
    """Development and tests: any address."""
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Networks reachable although not global (an operator's internal receivers)."""

    @classmethod
    def of(cls, allow_private: bool, networks: str) -> Policy:
        """From the settings: ALLOW_PRIVATE_URLS and ALLOWED_NETWORKS (comma-separated CIDRs)."""
        parsed = tuple(
            ipaddress.ip_network(n.strip(), strict=False) for n in networks.split(",") if n.strip()
        )
        return cls(allow_private, parsed)

    def refuse(self, address: IP) -> str | None:
        """Why `address` may not be called (None: it may)."""
        if self.allow_private or any(address in net for net in self.allowed_networks):
            return None
        return refusal(address)


def addresses(host: str, port: int, timeout: float) -> list[str]:
    """`host`'s addresses, within `timeout` seconds (the C resolver has no deadline of ours)."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        found = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        infos = found.result(timeout=max(timeout, 0.001))
    except FutureTimeout:
        raise CallFailed("timed out resolving the host") from None
    except OSError as exc:
        raise CallFailed(f"cannot resolve the host ({type(exc).__name__})") from None
    finally:
        pool.shutdown(wait=False)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))  # in order, each once


def checked_addresses(host: str, port: int, policy: Policy, timeout: float) -> list[str]:
    """The addresses to call `host` at, resolved once; ValidationFailed if any is refused (a
    name with one private address among public ones is refused whole)."""
    found = addresses(host, port, timeout)
    for address in found:
        kind = policy.refuse(ipaddress.ip_address(address.split("%")[0]))
        if kind:
            raise ValidationFailed(f"the callback host resolves to {kind}.")
    return found


def post(
    url: str,
    body: bytes,
    headers: Sequence[tuple[str, str]],
    *,
    timeout: float,
    policy: Policy,
    ssl_context: ssl.SSLContext | None = None,
) -> Answer:
    """POST `body` to `url` within `timeout` seconds all told; the answer's status.

    Raises ValidationFailed when the host resolves to an address the policy refuses, and
    CallFailed when no status line came in time (or at all)."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    secure = parts.scheme.lower() == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    found = checked_addresses(host, port, policy, _left(deadline))
    sock = _connect(found, port, deadline)
    try:
        if secure:
            context = ssl_context or ssl.create_default_context()
            sock.settimeout(_left(deadline))
            # Verified against the name, not the address: the certificate must be the host's.
            sock = context.wrap_socket(sock, server_hostname=host)
        sock.settimeout(_left(deadline))
        sock.sendall(
            _request(parts.path or "/", parts.query, _host_header(host, parts.port), body, headers)
        )
        status = _status(sock, deadline)
        return Answer(status, str(sock.getpeername()[0]))
    except ssl.SSLCertVerificationError:
        raise CallFailed("the certificate does not verify") from None
    except TimeoutError:
        raise CallFailed("timed out") from None
    except OSError as exc:
        raise CallFailed(f"no answer ({type(exc).__name__})") from None
    finally:
        sock.close()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise CallFailed("timed out")
    return left


def _connect(found: list[str], port: int, deadline: float) -> socket.socket:
    """A socket to the first checked address that takes the connection."""
    error: OSError | None = None
    for address in found:
        try:
            return socket.create_connection((address, port), timeout=_left(deadline))
        except TimeoutError:
            raise CallFailed("timed out") from None
        except OSError as exc:
            error = exc
    raise CallFailed(f"no answer ({type(error).__name__})")


def _host_header(host: str, port: int | None) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port is None else f"{name}:{port}"


def _request(
    path: str, query: str, host: str, body: bytes, headers: Sequence[tuple[str, str]]
) -> bytes:
    target = path + (f"?{query}" if query else "")
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += ["Connection: close", *(f"{name}: {value}" for name, value in headers)]
    for line in lines:
        if "\r" in line or "\n" in line:
            raise CallFailed("a header cannot be sent")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _status(sock: socket.socket, deadline: float) -> int:
    """The status code of the answer's first line, read within the deadline and ANSWER_BYTES."""
    seen = b""
    while b"\r\n" not in seen:
        if len(seen) >= ANSWER_BYTES:
            raise CallFailed("the answer has no status line")
        sock.settimeout(_left(deadline))
        chunk = sock.recv(ANSWER_BYTES - len(seen))
        if not chunk:
            break
        seen += chunk
    line = seen.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not code.isdigit() or len(code) != 3:
        raise CallFailed("the answer has no status line")
    return int(code)
