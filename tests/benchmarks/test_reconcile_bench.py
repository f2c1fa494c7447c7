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
from controller.plan import PlanOptions
from controller.reconcile import Reconciler
from controller.simulator import Simulator, SimulatorConfig, SimulatorServer
from controller.statedir import StateLoader
from tests.controller.conftest import manifest

TOKEN = "bench-token"


@pytest.fixture
def served() -> Iterator[tuple[Simulator, str]]:
    """A roomy simulator with 20 ms added to every answer, like a nearby real service."""
    simulator = Simulator(SimulatorConfig(token=TOKEN, cores=100_000, ram_gb=400_000, latency=0.02))
    with SimulatorServer(simulator) as server:
        yield simulator, server.url


def _write_sets(state: Path, sets: int, replicas: int) -> None:
    state.mkdir(exist_ok=True)
    for index in range(sets):
        (state / f"set{index:03d}.yaml").write_text(manifest(f"set{index:03d}", replicas))


async def _passes(url: str, state: Path, count: int, *, concurrency: int) -> Reconciler:
    async with AsyncSession(url=url, token=TOKEN, concurrency=64) as client:
        reconciler = Reconciler(loader=StateLoader(state, prefix="cc"), client=client,
                                options=PlanOptions(max_creates=10_000), concurrency=concurrency)
        for _ in range(count):
            await reconciler.run_pass()
        return reconciler


@pytest.mark.benchmark(group="reconcile")
@pytest.mark.parametrize("concurrency", [1, 8, 32])
def test_creating_one_hundred_sessions(benchmark, served, tmp_path, concurrency) -> None:  # type: ignore[no-untyped-def]
    """One pass creating 100 slots with 20 ms latency: the bound on concurrent creates at work."""
    simulator, url = served
    _write_sets(tmp_path / "state", 1, 100)

    def run() -> None:
        asyncio.run(_passes(url, tmp_path / "state", 1, concurrency=concurrency))

    benchmark.pedantic(run, rounds=1, iterations=1)
    names = {r.param("name") for r in simulator.requests if r.method == "POST"}
    assert len(names) == 100


@pytest.mark.benchmark(group="reconcile")
def test_converged_pass_over_many_sets_lists_once(benchmark, served, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """200 sets of 5 sessions, converged: each pass costs one list call and no other request."""
    simulator, url = served
    state = tmp_path / "state"
    _write_sets(state, 200, 5)
    asyncio.run(_passes(url, state, 2, concurrency=32))
    before = len(simulator.requests)

    passes = []

    def one_pass() -> None:
        asyncio.run(_passes(url, state, 1, concurrency=32))
        passes.append(1)

    benchmark.pedantic(one_pass, rounds=3, iterations=1)  # a single round under --benchmark-disable
    after = simulator.requests[before:]
    assert [(r.method, r.path) for r in after] == [("GET", "/session")] * len(passes)
