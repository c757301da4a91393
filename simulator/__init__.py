"""A CallRail v3 simulator: a real HTTP server that behaves like the real API (see
CALLRAIL_API.md), with knobs for latency, rate limits and failures. Tests, benchmarks and the
embedded `serve` mode run against it because the real CallRail cannot be reached here."""

from simulator.data import SimData
from simulator.faults import Knobs
from simulator.server import SimServer

__all__ = ["Knobs", "SimData", "SimServer"]
