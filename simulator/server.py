"""The simulator's HTTP server: its lifecycle, the `/_sim/*` controls and the request log.

A Starlette app served by uvicorn from a thread of its own. A request to `/v3/...` passes
latency, authentication, injected failures and the quota (`gate.py`) before the CallRail
resources answer it (`api.py`); `/_sim/*` steers the simulator (`steering.py`). Calls placed
through the controls (`calls.py`) are delivered to webhooks from threads of their own
(`deliveries.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from simulator import steering
from simulator.api import CallRailApi
from simulator.calls import CallBook, CallPlan
from simulator.data import SimData
from simulator.deliveries import Deliveries, Delivery
from simulator.faults import Faults, Knobs
from simulator.gate import Gate, LoggedRequest, RequestLog
from simulator.replies import Reply, error, raised
from simulator.state import StateFile
from simulator.streams import Streams


class SimServer:
    """The CallRail simulator on a real socket, with its data, knobs and request log.

    The socket is bound when the server is made (a port in use fails there, and `port` is
    known before `start`); `start` serves it from a thread, `stop` ends that.
    """

    def __init__(
        self,
        data: SimData,
        host: str = "127.0.0.1",
        port: int = 0,
        knobs: Knobs | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.data = data
        self.calls = CallBook(data)
        self.streams = Streams(data)
        self.state = StateFile(state_path, data, self.calls, self.streams) if state_path else None
        self.state_note = self.state.load() if self.state else None
        """What became of the state file at start (None: the simulator keeps no state)."""
        self.api = CallRailApi(data, self.calls, self.streams)
        self.faults = Faults(knobs)
        self.deliveries = Deliveries(data, self.calls, self.faults)
        self.log = RequestLog()
        self.host = host
        self.app = Gate(self._starlette(), self.api, self.faults, self.log)
        # IPPROTO_TCP named, so asyncio sets TCP_NODELAY on accepted connections: with Nagle on,
        # a body written after its head waits for the client's delayed ACK (~40 ms on Linux).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _starlette(self) -> Starlette:
        async def not_routed(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return error(exc.status_code, exc.detail, dict(exc.headers or {})).response()

        return Starlette(
            routes=[*self.api.routes(), *steering.routes(self)],
            exception_handlers={Reply: raised, HTTPException: not_routed},
        )

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on: the one asked for, or the free one picked for port 0."""
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        """Where the CallRail API is served, e.g. `http://127.0.0.1:8790/v3`."""
        return f"http://{self.host}:{self.port}/v3"

    def start(self, timeout: float = 10.0) -> SimServer:
        """Serve from a background thread, once it answers; returns self, so
        `SimServer(data).start()` reads."""
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            backlog=256,
            timeout_graceful_shutdown=1,
        )
        self._server = server = _Server(config)
        self._socket.listen(256)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._socket]}, name="callrail-sim", daemon=True
        )
        self._thread.start()
        if self.state is not None:
            self.state.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the CallRail simulator did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; requests in flight get a second to end, and
        deliveries still due are not made."""
        self.deliveries.cancel()
        if self._server is not None and self._thread is not None:
            self._server.exit_soon()
            self._thread.join(10)
        self._socket.close()
        if self.state is not None:
            self.state.stop()

    # --- controls ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the request log, counters and rate-limit windows, and the deliveries made or
        due (the calls stay); knobs return to defaults."""
        self.log.clear()
        self.deliveries.clear()
        self.faults.reset()

    def set_knobs(self, **changes: Any) -> None:
        """Turn the named knobs, e.g. `set_knobs(latency=0.1, fail_next=["500"])`."""
        self.faults.set_knobs(**changes)

    def stats(self) -> dict[str, Any]:
        """Requests by status and the knobs in force, as `GET /_sim/stats` answers them."""
        counts = self.log.counts()
        return {
            "requests": sum(counts.values()),
            "by_status": {str(k): v for k, v in sorted(counts.items())},
            "knobs": asdict(self.faults.knobs),
        }

    def requests_logged(
        self, method: str | None = None, path_contains: str = ""
    ) -> list[LoggedRequest]:
        """What the simulator was asked, oldest first: for tests to check what a client sent."""
        return self.log.select(method, path_contains)

    def place_call(
        self,
        company_id: str,
        *,
        post_call_delay: float | None = None,
        updated: dict[str, Any] | None = None,
        drop: list[str] | tuple[str, ...] = (),
        **fields: Any,
    ) -> dict[str, Any]:
        """Place an inbound call on a company now, as `POST /_sim/calls` does; returns its
        calls.json form. `fields` set the call's own (`calls.CHECKS`), the rest its deliveries
        (`deliveries.py`), which follow from a thread of their own. NotFound: no such company
        (or a removed one); ValueError: a bad argument."""
        plan = CallPlan.of(post_call_delay, updated, drop)
        call = self.calls.place(company_id, **fields)
        with self.data.lock:
            public = call.public()
        self.deliveries.schedule(call, plan)
        return public

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until the deliveries of every call placed so far are made; False on timeout."""
        return self.deliveries.settle(timeout)

    def deliveries_logged(self, event: str | None = None) -> list[Delivery]:
        """The deliveries made or dropped (of one event, if named), in the order they ended."""
        return [d for d in self.deliveries.logged() if event in (None, d.event)]


class _Server(uvicorn.Server):
    """uvicorn's server, stopping in milliseconds rather than its 0.1-0.2 s: tests start and
    stop a simulator each, hundreds of times a run."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    def exit_soon(self) -> None:
        """Ask the server to stop, from any thread."""
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self._loop.call_soon_threadsafe(self._wake.set)

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close the listener and idle connections, give requests in flight
        `timeout_graceful_shutdown` seconds to end, then cancel them."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = time.monotonic() + float(self.config.timeout_graceful_shutdown or 0)
        while self.server_state.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for task in self.server_state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()
