"""Figures for whole passes against the simulator over loopback HTTP (``--benchmark-enable``).

The assertions are about behaviour (one list call per converged pass whatever the number of sets,
every slot filled); the timings are figures to read, not pass/fail thresholds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.client import AsyncSession
from controller.passoutcome import PassOutcome
from controller.plan import PlanOptions
from controller.reconcile import Reconciler
from controller.simulator import Simulator, SimulatorConfig, SimulatorServer
from controller.statedir import StateLoader
from tests.benchmarks.support import write_sets

TOKEN = "bench-token"


@pytest.fixture
def served() -> Iterator[tuple[Simulator, str]]:
    """A roomy simulator with 20 ms added to every answer, like a nearby real service."""
    simulator = Simulator(SimulatorConfig(token=TOKEN, cores=100_000, ram_gb=400_000, latency=0.02))
    with SimulatorServer(simulator) as server:
        yield simulator, server.url


class _Controller:
    """A reconciler and its client on one event loop that lives across benchmark rounds."""

    def __init__(self, url: str, state: Path, *, concurrency: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = AsyncSession(url=url, token=TOKEN, concurrency=concurrency)
        self.reconciler = Reconciler(loader=StateLoader(state, prefix="cc"), client=self.client,
                                     options=PlanOptions(max_creates=10_000), concurrency=concurrency)

    def run_pass(self) -> PassOutcome:
        return self.loop.run_until_complete(self.reconciler.run_pass())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@pytest.mark.benchmark(group="reconcile")
@pytest.mark.parametrize("concurrency", [1, 8, 32])
def test_creating_one_hundred_sessions(benchmark, served, tmp_path, concurrency) -> None:  # type: ignore[no-untyped-def]
    """One pass creating 100 slots of one set with 20 ms latency: slow start under the bound at work."""
    simulator, url = served
    replicas = 10 if benchmark.disabled else 100  # a check of behaviour only, when disabled
    controllers: list[_Controller] = []

    def setup() -> tuple[tuple[_Controller], dict[str, object]]:
        state = tmp_path / f"state-{len(controllers)}"
        write_sets(state, 1, replicas)
        controllers.append(_Controller(url, state, concurrency=concurrency))
        return (controllers[-1],), {}

    def run(controller: _Controller) -> None:
        outcome = controller.run_pass()
        assert sum(outcome.created.values()) == replicas

    try:
        benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    finally:
        for controller in controllers:
            controller.close()
    names = {r.param("name") for r in simulator.requests if r.method == "POST"}
    assert len(names) == replicas


@pytest.mark.benchmark(group="reconcile")
def test_converged_pass_over_many_sets_lists_once(benchmark, served, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """200 sets of 5 sessions, converged: each pass costs one list call and no other request."""
    simulator, url = served
    state = tmp_path / "state"
    write_sets(state, 200, 1 if benchmark.disabled else 5)
    controller = _Controller(url, state, concurrency=32)
    try:
        controller.run_pass()
        controller.run_pass()
        before = len(simulator.requests)
        passes: list[PassOutcome] = []
        benchmark.pedantic(lambda: passes.append(controller.run_pass()), rounds=3, iterations=1)
    finally:
        controller.close()
    assert all(not outcome.plan.changes for outcome in passes if outcome.plan is not None)
    after = simulator.requests[before:]
    assert [(r.method, r.path) for r in after] == [("GET", "/session")] * len(passes)
