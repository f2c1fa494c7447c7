"""Shared fixtures: a simulated skaha service, in-process and over real loopback HTTP.

The simulator runs on a ``ManualClock`` so tests decide when time passes
(``sim_clock.advance(seconds)``): sessions are ``Pending`` until 2 simulated seconds pass.
Only the bearer token ``sim_token`` is accepted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.simulator import ManualClock, Simulator, SimulatorConfig, SimulatorServer

SIM_TOKEN = "sim-test-token"


@pytest.fixture
def sim_token() -> str:
    """The one bearer token the ``simulator`` fixture accepts."""
    return SIM_TOKEN


@pytest.fixture
def sim_clock() -> ManualClock:
    """The clock of the ``simulator`` fixture; advance it to make simulated time pass."""
    return ManualClock()


@pytest.fixture
def simulator(sim_clock: ManualClock, sim_token: str) -> Simulator:
    """A fresh simulated service with default capacity and no faults, on ``sim_clock``."""
    return Simulator(SimulatorConfig(token=sim_token), clock=sim_clock)


@pytest.fixture
def sim_server(simulator: Simulator) -> Iterator[SimulatorServer]:
    """``simulator`` served on 127.0.0.1 at a free port; ``sim_server.url`` ends in ``/skaha/v1``."""
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        yield server
