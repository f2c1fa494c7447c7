"""Fixtures for driving the simulator over loopback HTTP with plain httpx (not our client)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from controller.simulator import SimulatorServer


@pytest.fixture
def http(sim_server: SimulatorServer, sim_token: str) -> Iterator[httpx.Client]:
    """An httpx client on the simulator's ``/skaha/v1`` base, authenticated with the accepted token."""
    with httpx.Client(base_url=sim_server.url, headers={"Authorization": f"Bearer {sim_token}"},
                      timeout=10) as client:
        yield client
