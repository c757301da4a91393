"""A small HTTP/1.1 load client on asyncio: keep-alive connections, no dependency.

It speaks just enough HTTP for GETs and POSTs to our own servers (Content-Length bodies), so a
single Python process can hold a thousand open requests or drive a few thousand a second,
which a thread per request cannot.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Figures:
    """Latencies (seconds) of a run, and how long it took."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        """The p-th percentile, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


class Connection:
    """One keep-alive connection that sends requests and reads their answers."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return await self.request("GET", path, b"", headers)

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method != "GET":
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def hammer(
    url: str, path: str, *, connections: int, seconds: float, headers: dict[str, str] | None = None
) -> Figures:
    """As many GETs as `connections` keep-alive connections manage in `seconds`."""
    figures = Figures()
    deadline = time.perf_counter() + seconds

    async def one(conn: Connection) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status, _ = await conn.get(path, headers)
            if status == 200:
                figures.latencies.append(time.perf_counter() - started)
            else:
                figures.errors += 1
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(Connection(url)) for _ in range(connections)))
    figures.seconds = time.perf_counter() - started
    return figures


async def probe(url: str, path: str, count: int) -> Figures:
    """`count` GETs one after another on one connection: the latency a caller sees."""
    figures = Figures()
    conn = Connection(url)
    started = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        status, _ = await conn.get(path)
        if status == 200:
            figures.latencies.append(time.perf_counter() - began)
        else:
            figures.errors += 1
        await asyncio.sleep(0.005)
    figures.seconds = time.perf_counter() - started
    conn.close()
    return figures
