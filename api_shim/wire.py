"""The shim's HTTP/1.1 server protocol: uvicorn's h11 protocol, answering in the spec's envelope
even a request that never reaches the app.

h11 (and httptools alike) refuses a request line that is not valid HTTP before any route sees
it: a byte outside ASCII in the URL (an `ACC…` pasted from a document, where `…` is three
bytes), a space in the path, a malformed header. uvicorn then answers a plain-text
`Invalid HTTP request received.`; this protocol answers the same 400 in our envelope, saying
what to fix. Every server of the shim uses it: `uvicorn --http api_shim.wire:EnvelopeH11Protocol`
(`HTTP_PROTOCOL`), as `serve`, `stack`, Docker and the tests run it.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HTTP_PROTOCOL = "api_shim.wire:EnvelopeH11Protocol"
"""uvicorn's `--http` (and `Config(http=...)`) for the shim."""

UNREADABLE = (
    "The request is not valid HTTP: its URL or a header has a character that must be "
    "percent-encoded (URLs are ASCII only; a pasted '…' is not three dots)."
)
BODY = json.dumps({"success": False, "errno": 400, "message": UNREADABLE}).encode()


class EnvelopeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol; its one answer of its own, the 400 to a request it cannot
    parse, is the envelope every other 400 of the shim is."""

    def send_400_response(self, msg: str) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
            (b"connection", b"close"),
        ]
        event = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
        self.transport.write(self.conn.send(event))
        self.transport.write(self.conn.send(h11.Data(data=BODY)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()
