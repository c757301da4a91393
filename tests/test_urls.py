"""The URL policy: what CallRail (or our workers) may be told to call."""

from __future__ import annotations

import pytest

from callrail_sync.errors import ValidationFailed
from callrail_sync.urls import check_url


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://example.com/hook", "must use https"),
        ("https://user:pass@example.com/hook", "must not carry credentials"),
        ("https://user@example.com/hook", "must not carry credentials"),
        ("https://example.com/" + "a" * 2048, "must be at most 2048 characters"),
        ("https://localhost/hook", "must not point at localhost"),
        ("https://LOCALHOST./hook", "must not point at localhost"),
        ("https://api.localhost/hook", "must not point at localhost"),
        ("https://127.0.0.1/", "a loopback address"),
        ("https://127.1/", "a loopback address"),
        ("https://2130706433/", "a loopback address"),
        ("https://0x7f000001/", "a loopback address"),
        ("https://0177.0.0.1/", "a loopback address"),
        ("https://[::1]/", "a loopback address"),
        ("https://[::ffff:127.0.0.1]/", "a loopback address"),
        ("https://169.254.169.254/latest/meta-data", "a link-local address"),
        ("https://[fe80::1]/", "a link-local address"),
        ("https://10.0.0.8/", "a private address"),
        ("https://192.168.1.10:8443/", "a private address"),
        ("https://172.16.0.1/", "a private address"),
        ("https://[fd00::1]/", "a private address"),
        ("https://[::ffff:10.1.2.3]/", "a private address"),
        ("https://224.0.0.1/", "a multicast address"),
        ("https://0.0.0.0/", "an unspecified address"),
        ("https://[::]/", "an unspecified address"),
        # Spellings a resolver folds into the same host (IDNA): fullwidth, ideographic dots.
        ("https://１２７.０.０.１/", "a loopback address"),
        ("https://０ｘ７ｆ０００００１/", "a loopback address"),
        ("https://ｌｏｃａｌｈｏｓｔ/", "must not point at localhost"),
        ("https://localhost。/", "must not point at localhost"),
        ("https://１０。０。０。１/", "a private address"),
        # Not globally routable, though neither private nor reserved in every Python's table.
        ("https://100.100.100.200/latest", "an address that is not public"),
        ("https://100.64.0.1/", "an address that is not public"),
        ("https://192.0.0.8/", "an address that is not public"),
        # IPv6 forms that carry an IPv4 address are judged by the one they carry.
        ("https://[2002:7f00:1::]/", "a loopback address"),
        ("https://[2002:a9fe:a9fe::]/", "a link-local address"),
        ("https://[::127.0.0.1]/", "a loopback address"),
        ("https://[64:ff9b::7f00:1]/", "a loopback address"),
        ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "a loopback address"),
        ("https://[2001:db8::1]/", "must not point at"),
        # urllib3 would decode this host to 127.0.0.1; a zone names a local interface.
        ("https://%31%32%37.0.0.1/", "must not contain % in its host"),
        ("https://[fe80::1%25eth0]/", "must not contain % in its host"),
        # Well-known service ports other than 443 are refused.
        ("https://example.com:25/", "must use port 443 or a port from 1024 to 65535"),
        ("https://example.com:22/", "must use port 443 or a port from 1024 to 65535"),
        ("https://example.com:80/", "must use port 443 or a port from 1024 to 65535"),
        ("ftp://example.com/", "must be a valid http(s) URL"),
        ("https://", "must be a valid http(s) URL"),
        ("https://example.com:0/", "must be a valid http(s) URL"),
        ("https://exa mple.com/", "must be a valid http(s) URL"),
    ],
)
def test_a_url_breaking_a_rule_is_refused_naming_the_rule(url, rule):
    with pytest.raises(ValidationFailed) as refused:
        check_url(url, "webhook_url")
    assert rule in refused.value.message and refused.value.message.startswith("webhook_url ")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://hooks.dash.example:8443/callrail?x=1",
        "https://example.com:443/hook",
        "https://example.com:1024/hook",
        "https://[2002:5db8:d822::]/hook",  # 6to4 of the public 93.184.216.34
        "https://93.184.216.34/hook",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
        "  https://example.com/padded  ",
    ],
)
def test_a_public_https_url_is_taken(url):
    assert check_url(url, "webhook_url") == url.strip()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8999/hook", "http://localhost/hook", "https://10.0.0.1/"]
)
def test_allow_private_urls_lets_development_targets_through(url):
    assert check_url(url, "callback_url", allow_private=True) == url


def test_credentials_are_refused_even_when_private_urls_are_allowed():
    with pytest.raises(ValidationFailed, match="credentials"):
        check_url("http://u:p@localhost/", "callback_url", allow_private=True)
