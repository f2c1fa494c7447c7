"""Figures for the simulator's 10,000-session list (reported with ``--benchmark-enable``).

With the default ``--benchmark-disable`` each benchmark runs once as a plain test.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from controller.simulator import Simulator, SimulatorConfig, SimulatorServer
from tests.simulator.support import fill

COUNT = 10_000


@pytest.fixture(scope="module")
def full_server() -> Iterator[SimulatorServer]:
    """A simulator holding 10,000 sessions, served over loopback HTTP."""
    simulator = Simulator(SimulatorConfig(token="t", cores=20_000, ram_gb=50_000))
    fill(simulator, COUNT, token="t")
    with SimulatorServer(simulator) as server:
        yield server


@pytest.mark.benchmark(group="simulator")
def test_list_ten_thousand_sessions(benchmark, full_server: SimulatorServer) -> None:  # type: ignore[no-untyped-def]
    """GET /session with 10,000 sessions, over HTTP with keep-alive, parsed as JSON."""
    with httpx.Client(base_url=full_server.url, headers={"Authorization": "Bearer t"}, timeout=30) as http:
        rows = benchmark(lambda: http.get("/session").json())
    assert len(rows) == COUNT


@pytest.mark.benchmark(group="simulator")
def test_filtered_list_of_ten_thousand(benchmark, full_server: SimulatorServer) -> None:  # type: ignore[no-untyped-def]
    """GET /session?status=Completed over 10,000 sessions (none match: the cost of the scan)."""
    with httpx.Client(base_url=full_server.url, headers={"Authorization": "Bearer t"}, timeout=30) as http:
        rows = benchmark(lambda: http.get("/session", params={"status": "Completed"}).json())
    assert rows == []
