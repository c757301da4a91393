"""The policy for every URL the service accepts and something later calls: webhook URLs
(CallRail calls them) and notification callbacks (our workers call them).

A URL must be https, carry no credentials, be at most 2,048 characters, and not name a
loopback, private, link-local, multicast, reserved or unspecified address in any spelling the
network stack accepts (dotted, decimal `2130706433`, hex `0x7f000001`, octal, short `127.1`,
IPv6 and IPv4-mapped IPv6), nor `localhost`. `ALLOW_PRIVATE_URLS=true`, for development and
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
    host = ascii_host(parts.hostname)
    if host is None:
        raise invalid
    if not allow_private:
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


def refusal(address: IP) -> str | None:
    """Which kind of non-public address this is (None: a public one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, hit in (
        ("an unspecified address", address.is_unspecified),
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("a private address", address.is_private),
        ("a reserved address", address.is_reserved),
    ):
        if hit:
            return kind
    return None
