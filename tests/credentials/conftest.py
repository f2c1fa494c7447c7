"""Fixtures of the credential tests: a token endpoint, a simulator that trusts it, canfar's own configs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.simulator import Simulator, SimulatorConfig, SimulatorServer
from tests.credentials.endpoint import TokenEndpoint, serve


@pytest.fixture(autouse=True)
def _no_canfar_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep a developer's CANFAR_* variables and ~/.canfar out of the tests."""
    for key in list(os.environ):
        if key.startswith("CANFAR_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    """The OIDC token endpoint, on loopback; access tokens live 60 s unless a test says otherwise."""
    with serve(TokenEndpoint()) as served:
        yield served


@pytest.fixture
def simulator(endpoint: TokenEndpoint) -> Simulator:
    """A simulator that accepts exactly the access tokens the endpoint issued and that have not expired."""
    return Simulator(SimulatorConfig(identity_provider=endpoint.valid, time_scale=20.0))


@pytest.fixture
def url(simulator: Simulator) -> Iterator[str]:
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        yield server.url
