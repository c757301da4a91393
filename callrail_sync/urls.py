"""The policy for every URL the service accepts and something later calls: webhook URLs
(CallRail calls them) and notification callbacks (our workers call them).

A URL must be https, carry no credentials, be at most 2,048 characters, have no `%` in its
host, use port 443 or a port from 1024 to 65535 (no well-known service port: SMTP, SSH...),
and name only a globally routable address (`is_global`, and not carrier-grade NAT nor
192.0.0.0/24) in any spelling the network stack accepts (dotted, decimal `2130706433`, hex
`0x7f000001`, octal, short `127.1`, IPv6, and IPv6 forms that carry an IPv4 address:
IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64, each judged by the address it carries),
nor `localhost`. `ALLOW_PRIVATE_URLS=true`, for development and
tests only, lets http and private targets through. Each refusal names the rule it broke.

A host *name* that resolves to a private address is not caught here (the answer can change
between now and the call): whoever calls the URL resolves it once, checks every address and
connects to exactly the checked one (`callrail_sync.outbound`).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from callrail_sync.errors import ValidationFailed

MAX_URL = 2048
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


INBOUND_PATH = "/v1/e/callrail/inbound/"


def receiver_url(public_base_url: str | None, company_id: str) -> str | None:
    """Our own receiver's URL for a company (None when the service has no public address)."""
    if not public_base_url:
        return None
    return public_base_url.rstrip("/") + INBOUND_PATH + company_id


def check_url(value: object, name: str, *, allow_private: bool = False) -> str:
    """The URL, stripped, if it keeps the policy; else a ValidationFailed naming the rule."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} must be a string.")
    url = value.strip()
    invalid = ValidationFailed(f"{name} must be a valid http(s) URL.")
    try:
        parts = urlsplit(url)
        port_ok = parts.port != 0  # reading the port checks it is a number from 1 to 65535
    except ValueError:
        raise invalid from None
    # Printable excludes whitespace, control characters and lone surrogates (which JSON can
    # carry but MongoDB cannot store); a space is printable, so it is refused on its own.
    if not url.isprintable() or " " in url or not port_ok:
        raise invalid
    if len(url) > MAX_URL:
        raise ValidationFailed(f"{name} must be at most {MAX_URL} characters.")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise invalid
    if scheme != "https" and not allow_private:
        raise ValidationFailed(f"{name} must use https.")
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed(f"{name} must not carry credentials (user:password@).")
    if "%" in parts.netloc:
        # urllib3 decodes `%31%32%37.0.0.1` to 127.0.0.1; an IPv6 zone (`%eth0`) is local.
        raise ValidationFailed(f"{name} must not contain % in its host.")
    host = ascii_host(parts.hostname)
    if host is None:
        raise invalid
    if not allow_private:
        if parts.port is not None and parts.port != 443 and parts.port < 1024:
            raise ValidationFailed(f"{name} must use port 443 or a port from 1024 to 65535.")
        refusal = _private_host(host)
        if refusal:
            raise ValidationFailed(f"{name} must not point at {refusal}.")
    return url


def ascii_host(host: str) -> str | None:
    """The host as resolvers see it (IDNA): fullwidth `１２７.０.０.１` is 127.0.0.1, and
    `ｌｏｃａｌｈｏｓｔ。` is localhost. None if it has no such form."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _private_host(host: str) -> str | None:
    """What is wrong with the host, if it names a non-public target."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return "localhost"
    address = literal_address(name)
    return refusal(address) if address is not None else None


def literal_address(host: str) -> IP | None:
    """The address a host written as an IP literal names, in any spelling; None for names."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton takes what the C library's resolver takes: 127.1, 0x7f000001, 2130706433,
        # 0177.0.0.1. A name like "example.com" is refused by it.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


NOT_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10",  # carrier-grade NAT (100.100.100.200 is a cloud metadata address)
        "192.0.0.0/24",  # IETF protocol assignments (some Pythons call parts of it global)
        "198.18.0.0/15",  # benchmarking
        "2001::/23",  # IETF protocol assignments, Teredo among them
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
"""Ranges refused on top of what `is_global` says, whatever the Python version's table."""
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def unwrapped(address: IP) -> IP:
    """The IPv4 address an IPv6 one carries, where the network delivers to it: IPv4-mapped
    (`::ffff:127.0.0.1`), IPv4-compatible (`::127.0.0.1`), 6to4 (`2002:7f00:1::`), Teredo
    (its client), NAT64 (`64:ff9b::7f00:1`). Others are themselves."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in NAT64:
        return low
    if address in IPV4_COMPATIBLE and not (address.is_loopback or address.is_unspecified):
        return low
    return address


def refusal(address: IP) -> str | None:
    """Which kind of non-public address this is (None: a globally routable one). An IPv6
    address that carries an IPv4 one is judged by both."""
    inner = unwrapped(address)
    for kind, hit in (
        ("an unspecified address", inner.is_unspecified),
        ("a loopback address", inner.is_loopback),
        ("a link-local address", inner.is_link_local),
        ("a multicast address", inner.is_multicast),
        ("a private address", inner.is_private),
        ("a reserved address", inner.is_reserved),
    ):
        if hit:
            return kind
    for candidate in (inner, address):
        if not candidate.is_global or any(candidate in net for net in NOT_GLOBAL):
            return "an address that is not public"
    return None
