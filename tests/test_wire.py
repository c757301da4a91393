"""A request the HTTP parser refuses before any route sees it still gets our envelope, from
every server that runs the shim."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from api_shim.wire import HTTP_PROTOCOL, UNREADABLE
from callrail_sync.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def raw_request(url: str, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send bytes as they are (no client would send them) and read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = dict(line.decode().lower().split(": ", 1) for line in lines)
    return status, fields, body


def test_a_pasted_non_ascii_byte_in_the_url_gets_our_400_envelope(shim_url, token, owner):
    """`ACC…` pasted from a document: `…` is three bytes outside ASCII in the request line,
    which the HTTP parser refuses before any route sees it. The answer is still our envelope."""
    auth = f"Authorization: Bearer {token}\r\n".encode()
    for target in (
        "/v1/e/callrail/companies?account_id=ACC…".encode(),
        "/v1/e/callrail/jobs/job_…".encode(),
        b"/v1/e/callrail/accounts?search=a b",
    ):
        request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
        status, fields, body = raw_request(shim_url, request)
        assert status == b"HTTP/1.1 400 Bad Request", target
        assert fields["content-type"] == "application/json"
        assert json.loads(body) == {"success": False, "errno": 400, "message": UNREADABLE}
    # The same URL percent-encoded is read, and answered by the route itself.
    status, _, body = raw_request(
        shim_url,
        b"GET /v1/e/callrail/companies?account_id=ACC%E2%80%A6 HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Connection: close\r\n\r\n",
    )
    assert status == b"HTTP/1.1 400 Bad Request"
    assert "account_id" in json.loads(body)["message"]


def test_every_server_of_the_shim_runs_the_envelope_protocol():
    assert HTTP_PROTOCOL == "api_shim.wire:EnvelopeH11Protocol"
    assert f'"--http", "{HTTP_PROTOCOL}"' in (ROOT / "Dockerfile").read_text()
    assert f"--http {HTTP_PROTOCOL}" in (ROOT / "docker-compose.yml").read_text()
    from callrail_sync.cli.stack import Stack, StackConfig

    stack = Stack(StackConfig(run_dir=ROOT / ".run" / "unused"), Settings(mongo_url="x"))
    argv = stack.shim_part().argv
    assert argv[argv.index("--http") + 1] == HTTP_PROTOCOL
