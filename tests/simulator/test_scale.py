"""The simulator holds 10,000 sessions and lists them all over HTTP."""

from __future__ import annotations

import httpx

from controller.simulator import Simulator, SimulatorConfig, SimulatorServer
from tests.simulator.support import fill

COUNT = 10_000


def test_ten_thousand_sessions_list_over_http() -> None:
    """A full list of 10,000 sessions answers 200 with every session in it."""
    simulator = Simulator(SimulatorConfig(token="t", cores=20_000, ram_gb=50_000))
    fill(simulator, COUNT, token="t")
    with SimulatorServer(simulator) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": "Bearer t"}, timeout=30) as http:
        rows = http.get("/session").json()
    assert len(rows) == COUNT
    assert len({row["id"] for row in rows}) == COUNT
