"""The request body limit: a body over 64 KB is answered 413 and never read into memory.

A pure ASGI middleware, so it holds for every route, whether or not the route reads its body,
and for both ways a body arrives. A Content-Length over the limit is refused before the app
runs; a chunked body (whose length nobody knows up front) is counted as it is read and refused
as soon as more than the limit has arrived, so at most one chunk past the limit is ever held.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_shim.envelope import failure

MAX_BODY_BYTES = 64 * 1024
"""The largest request body the shim reads. Its bodies are a few short fields."""


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, when it sent a well-formed one."""
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def too_large_message(limit: int) -> str:
    return f"Request body is too large (at most {limit} bytes)."


class BodyTooLarge(HTTPException):
    """Raised from `receive` when more than the limit has arrived. An HTTPException, so that
    FastAPI's own body parsing passes it on (instead of making it a 400) and the envelope's
    handler answers it."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


class BodyLimit:
    """Refuses request bodies over MAX_BODY_BYTES with the 413 envelope."""

    def __init__(self, app: ASGIApp, wider: dict[str, int]) -> None:
        self.app = app
        self.wider = wider
        """Other limits for paths under these prefixes (CallRail's deliveries can be longer)."""

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.wider.items():
            if path.startswith(prefix):
                return limit
        return MAX_BODY_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(str(scope.get("path", "")))
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def noted_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, noted_send)
        except BodyTooLarge:
            # The app let the refusal through unanswered (it is normally answered by the
            # envelope's handler); once an answer has begun, nothing better can be sent.
            if started:
                raise
            await self._refuse(scope, receive, send, limit)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        await failure(413, too_large_message(limit))(scope, receive, send)
