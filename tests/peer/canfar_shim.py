"""A pytest plugin that points the official ``canfar`` client's own tests at our simulator.

Loaded into canfar's test run with ``-p canfar_shim``; the tests themselves run unchanged. Their
``conftest.py`` clears every ``CANFAR_*`` variable before each test so that nothing of the user's
shell leaks in. This shim puts back the two that say where the service is and which token to use,
after that fixture has run, from ``PEER_CANFAR_URL`` and ``PEER_CANFAR_TOKEN``. It imports nothing
of canfar's, so canfar still reads its configuration from the isolated HOME the run provides.
"""

from __future__ import annotations

import os

import pytest

#: canfar's own autouse fixture that clears ``CANFAR_*``; ours must run after it.
ISOLATING_FIXTURE = "isolate_canfar_environment"


@pytest.fixture(autouse=True)
def canfar_points_at_the_simulator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give each test the simulator's URL and token, the way a user's shell would."""
    if ISOLATING_FIXTURE in request.fixturenames:
        request.getfixturevalue(ISOLATING_FIXTURE)
    monkeypatch.setenv("CANFAR_URL", os.environ["PEER_CANFAR_URL"])
    monkeypatch.setenv("CANFAR_TOKEN", os.environ["PEER_CANFAR_TOKEN"])
