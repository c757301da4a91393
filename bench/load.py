"""Load for the benchmarks, on httpx's async client: keep-alive connections, many at once.

A `Connection` is one keep-alive HTTP/1.1 connection (an `httpx.AsyncClient` limited to one),
so a single Python process can hold a thousand open requests or drive a few thousand a second,
which a thread per request cannot.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import httpx


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
    """One keep-alive connection to a server at `url` that sends requests one at a time."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        self.client = httpx.AsyncClient(
            base_url=url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return await self.request("GET", path, b"", headers)

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        answer = await self.client.request(method, path, content=body or None, headers=headers)
        return answer.status_code, answer.content

    async def close(self) -> None:
        await self.client.aclose()


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
        await conn.close()

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
    await conn.close()
    return figures
