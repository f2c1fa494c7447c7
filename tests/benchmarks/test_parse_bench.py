"""Figures for parsing a 10,000-session list answer (reported with ``--benchmark-enable``).

The answer is what the simulator really sends for 10,000 sessions created a second apart, in a
mix of kinds, fixed and flexible resources, and states (``Pending``, ``Running``, ``Completed``,
``Failed``), so no two share a start time (the worst case for ``parse_observed``'s time cache).
Both parsers include ``json.loads``; the goal for the controller's path (``parse_observed``) is
60 ms. With the default ``--benchmark-disable`` each runs once on 1,000 sessions.
"""

from __future__ import annotations

import json

import pytest

from controller.client.operations import parse_sessions
from controller.models import ObservedSession, parse_observed
from controller.simulator import ManualClock, Simulator, SimulatorConfig
from controller.simulator.wire import Request

COUNT = 10_000
IMAGE = "images.canfar.net/skaha/astroml:latest"
#: (kind, cmd, resources) cycled through the sessions: mostly headless work, a few notebooks.
#: Commands that end (true, false) are used only in the last half hour, so none is reaped yet.
MIX = (
    ("headless", "sleep", "&cores=1&ram=2"),
    ("headless", "sleep", ""),
    ("headless", "true", "&cores=2&ram=4"),
    ("headless", "false", ""),
    ("headless", "sleep", "&cores=1&ram=1"),
    ("notebook", None, "&cores=1&ram=2"),
)
RECENT = 1800


def _bearer() -> dict[str, str]:
    return {"authorization": "Bearer t"}


@pytest.fixture(scope="module")
def count(request: pytest.FixtureRequest) -> int:
    """10,000; a tenth of that when the benchmarks are disabled (a check of behaviour, not a figure)."""
    options = request.config.getoption
    return COUNT // 10 if options("benchmark_disable") and not options("benchmark_enable") else COUNT


@pytest.fixture(scope="module")
def answer(count: int) -> str:
    """The body of GET /session for ``count`` sessions, created a simulated second apart."""
    clock = ManualClock()
    simulator = Simulator(SimulatorConfig(token="t", cores=40_000, ram_gb=100_000, max_interactive=count),
                          clock=clock)
    for index in range(count):
        kind, cmd, resources = MIX[index % len(MIX)]
        if cmd in ("true", "false") and index < count - RECENT:
            cmd = "sleep"
        command = "" if cmd is None else f"&cmd={cmd}" + ("&args=100000" if cmd == "sleep" else "")
        response = simulator.handle(Request(
            "POST", "/skaha/v1/session", headers=_bearer(),
            query=f"name=job-{index}&image={IMAGE}&type={kind}{command}{resources}",
        ))
        assert response.status == 200, response.body
        clock.advance(1.0)
    clock.advance(30)
    return simulator.handle(Request("GET", "/skaha/v1/session", headers=_bearer())).body.decode()


@pytest.mark.benchmark(group="list-parse")
def test_parse_observed_ten_thousand(benchmark, answer: str, count: int) -> None:  # type: ignore[no-untyped-def]
    """The controller's list path: json.loads plus the eight fields it needs (goal: 60 ms)."""
    rows = benchmark(parse_observed, answer)
    assert len(rows) == count and all(type(row) is ObservedSession for row in rows)
    phases = {row.phase for row in rows}
    assert {"Running", "Completed", "Failed"} <= phases
    assert len({row.started for row in rows}) == count  # no two alike: no help from the cache
    assert any(row.cores is None for row in rows) and any(row.cores == 2.0 for row in rows)


@pytest.mark.benchmark(group="list-parse")
def test_parse_sessions_ten_thousand(benchmark, answer: str, count: int) -> None:  # type: ignore[no-untyped-def]
    """The full SessionInfo models (what fetch() returns), for comparison."""
    rows = benchmark(parse_sessions, answer)
    assert len(rows) == count


@pytest.mark.benchmark(group="list-parse")
def test_json_loads_ten_thousand(benchmark, answer: str, count: int) -> None:  # type: ignore[no-untyped-def]
    """json.loads alone: the floor both parsers stand on."""
    assert len(benchmark(json.loads, answer)) == count
