"""How the simulator ends a request: a reply as a value, raised from wherever the answer is known.

The resource handlers (`api.py`), the injected faults (`faults.py`) and the `/_sim` controls
(`steering.py`) answer by returning or raising a `Reply`; `response` turns one into Starlette's.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

RAILS_ERROR_PAGE = "<html><body><h1>We're sorry, but something went wrong.</h1></body></html>"
"""What a 5xx looks like: Rails' stock error page (a guess; the client must parse defensively)."""


class Reply(Exception):
    """An HTTP answer: a JSON `body`, or a `text` body (HTML when it starts with "<").

    An exception so that a check deep in a handler can end the request; successes are
    returned, not raised.
    """

    def __init__(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        text: str | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.text = text

    def payload(self) -> tuple[str | None, bytes]:
        """The body's content type (None for no body) and bytes."""
        if self.text is not None:
            kind = "html" if self.text.startswith("<") else "plain"
            return f"text/{kind}; charset=utf-8", self.text.encode()
        if self.status == 204:
            return None, b""
        return "application/json; charset=utf-8", json.dumps(self.body).encode()

    def response(self) -> Response:
        """The reply as the response Starlette sends."""
        ctype, payload = self.payload()
        return Response(payload, self.status, self.headers, media_type=ctype)


async def raised(request: Request, exc: Exception) -> Response:
    """Starlette's handler of a raised `Reply`: the reply it carries."""
    assert isinstance(exc, Reply)
    return exc.response()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """An error in the most common shape upstream: `{"error": message}`."""
    return Reply(status, {"error": message}, headers)


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 reply (an empty body is `{}`)."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise error(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise error(400, "Request body must be a JSON object")
    return body
