"""The shim's Prometheus metrics, on a port of their own that the public never reaches.

SHIM_METRICS_PORT on SHIM_METRICS_HOST (127.0.0.1 unless set: in Compose the internal network,
where Prometheus scrapes `shim:9809`; the public port 8000 answers 404 for /metrics). Each
uvicorn worker process binds it with SO_REUSEPORT, so a scrape reaches one of them, as a
request to the public port did. `serve` and `stack` print its URL in their banners.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from api_shim.readings import exposition_of
from callrail_sync.metrics import exposition
from callrail_sync.runtime import Runtime

log = logging.getLogger("callrail_sync.metrics")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        if hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class MetricsServer:
    """`GET /metrics`: this process's counters, then the service's state read now."""

    def __init__(self, runtime: Runtime, host: str, port: int) -> None:
        self.runtime, self.host, self.port = runtime, host, port
        self._server: _Server | None = None

    def start(self) -> str | None:
        """Serve in a thread of this process; the URL (None if the port cannot be had)."""
        runtime = self.runtime

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exposition() + exposition_of(runtime)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        try:
            self._server = _Server((self.host, self.port), Handler)
        except OSError as exc:
            log.warning("metrics port unavailable", extra={"port": self.port, "error": str(exc)})
            return None
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        return f"http://{host}:{port}/metrics"

    def stop(self) -> None:
        """Stop at once: `serve_forever` looks for a shutdown only between its half-second
        polls, so a connection is made to wake it until it has stopped."""
        server, self._server = self._server, None
        if server is None:
            return
        stopper = threading.Thread(target=server.shutdown, name="metrics-stop")
        stopper.start()
        while stopper.is_alive():
            with contextlib.suppress(OSError):
                address = (str(server.server_address[0]), server.server_port)
                socket.create_connection(address, timeout=0.2).close()
            stopper.join(0.02)
        server.server_close()
