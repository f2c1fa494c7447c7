"""Fixtures for driving the simulator with plain httpx (not our client), over loopback HTTP or in-process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from controller.simulator import Simulator, SimulatorServer


@pytest.fixture
def http(sim_server: SimulatorServer, sim_token: str) -> Iterator[httpx.Client]:
    """An httpx client on the simulator's ``/skaha/v1`` base, authenticated with the accepted token."""
    with httpx.Client(base_url=sim_server.url, headers={"Authorization": f"Bearer {sim_token}"},
                      timeout=10) as client:
        yield client


#: Any host will do in-process; ``.invalid`` makes sure nothing could ever resolve it.
IN_PROCESS_URL = "http://simulator.invalid/skaha/v1"


@pytest.fixture(params=["loopback", "in-process"])
def wire(request: pytest.FixtureRequest, simulator: Simulator, sim_token: str) -> Iterator[httpx.Client]:
    """An httpx client on ``simulator``, over real loopback HTTP or through its in-process transport."""
    headers = {"Authorization": f"Bearer {sim_token}"}
    if request.param == "loopback":
        server: SimulatorServer = request.getfixturevalue("sim_server")
        client = httpx.Client(base_url=server.url, headers=headers, timeout=10)
    else:
        client = httpx.Client(base_url=IN_PROCESS_URL, transport=simulator.transport(), headers=headers)
    with client:
        yield client
