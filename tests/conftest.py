"""Shared fixtures: real components (simulator over HTTP, Redis) wherever they can run here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator import SimData, SimServer
from worker.callrail.client import CallRailClient, Timeouts


@pytest.fixture
def sim_data() -> SimData:
    return SimData(seed=42, keys=2, accounts_per_key=2, companies_per_account=30)


@pytest.fixture
def sim(sim_data: SimData) -> Iterator[SimServer]:
    server = SimServer(sim_data).start()
    yield server
    server.stop()


@pytest.fixture
def api_key(sim_data: SimData) -> str:
    return sim_data.api_keys[0]


@pytest.fixture
def client(sim: SimServer, api_key: str) -> CallRailClient:
    return CallRailClient(api_key, base_url=sim.base_url, timeouts=Timeouts(connect=2, read=2))
