"""CPU of one steady-state pass at 5,000 sessions in 50 sets (reported with ``--benchmark-enable``).

Method: the simulator runs in a child process (``canfar-controller simulator``, 20 ms latency,
simulated time 10x faster so new sessions are ``Running`` within a fifth of a second), and the
controller's side runs here: ``Reconciler.run_pass()`` with default options, the real
``AsyncSession`` over loopback HTTP with the daemon's metrics hook, a real ledger and a state
directory of 50 manifests. This process does nothing else, so its CPU time
(``time.process_time``, the benchmark's timer here) is the controller's alone: loading the state
directory, the list call (sending it, reading and parsing 5,000 rows), planning and saving the
memory. The simulator's share is in the other process and not counted. Once converged, a pass
makes one list call and changes nothing; the goal is 60 ms of CPU.

``extra_info`` adds the wall time of the pass (the 20 ms latency and the server's own work
included) and the CPU of reporting it (``OutcomeHandler.handle``: metrics, status file), which
the daemon does after every pass.

With the default ``--benchmark-disable`` it runs once at 100 sessions.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.client import AsyncSession
from controller.ledger import Ledger
from controller.observability.metrics import ControllerMetrics
from controller.outcome import OutcomeHandler
from controller.passoutcome import PassOutcome
from controller.plan import PlanOptions
from controller.reconcile import Reconciler
from controller.statedir import SETTLE_WINDOW, StateLoader
from tests.benchmarks.support import CORES, RAM_GB, TOKEN, simulator_process, write_sets

SETS, REPLICAS = 50, 100
ROUNDS = 20


@pytest.fixture(scope="module")
def simulator_url() -> Iterator[str]:
    """A simulator in a child process, so the pass's CPU time is the controller's alone."""
    with simulator_process("--cores", str(CORES), "--ram", str(RAM_GB), "--latency", "0.02",
                           "--time-scale", "10") as url:
        yield url


class _Daemon:
    """The daemon's wiring of one pass, on an event loop that lives across rounds."""

    def __init__(self, url: str, work: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.metrics = ControllerMetrics()
        self.requests: list[tuple[str, int | None]] = []
        self.client = AsyncSession(url=url, token=TOKEN, on_request=self._observe)
        self.reconciler = Reconciler(
            loader=StateLoader(work / "state", prefix="cc", settle_window=SETTLE_WINDOW), client=self.client,
            options=PlanOptions(), ledger=Ledger.beside(work / "status.json"), requests_dir=work / "requests")
        self.handler = OutcomeHandler(metrics=self.metrics, status_file=work / "status.json")

    def _observe(self, operation: str, status: int | None, seconds: float) -> None:
        self.requests.append((operation, status))
        self.metrics.observe_api(operation, status, seconds)

    def refresh_platform(self) -> None:
        """What the daemon's stats job does before the first pass and every minute after."""
        self.loop.run_until_complete(self.reconciler.platform.refresh())

    def run_pass(self) -> PassOutcome:
        return self.loop.run_until_complete(self.reconciler.run_pass())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


def _converge(daemon: _Daemon, total: int) -> None:
    """Passes until every slot is filled and every session runs."""
    deadline = time.monotonic() + 300
    while True:
        outcome = daemon.run_pass()
        assert outcome.result == "success", outcome.errors[:3]
        assert outcome.plan is not None
        running = sum(status.running for status in outcome.plan.statuses.values())
        if running == total and not outcome.plan.changes:
            return
        assert time.monotonic() < deadline, f"{running} of {total} running after 300 s"
        if not outcome.more_work:
            time.sleep(0.05)  # the last sessions are still Pending: give them simulated time


@pytest.mark.benchmark(group="pass-cpu", timer=time.process_time)
def test_steady_state_pass_cpu(benchmark, simulator_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A converged pass over 5,000 sessions in 50 sets: one list call, nothing to do (goal: 60 ms CPU)."""
    replicas = 2 if benchmark.disabled else REPLICAS
    write_sets(tmp_path / "state", SETS, replicas)
    daemon = _Daemon(simulator_url, tmp_path)
    walls: list[float] = []
    reporting: list[float] = []
    outcomes: list[PassOutcome] = []

    def one_pass() -> None:
        started = time.perf_counter()
        outcomes.append(daemon.run_pass())
        walls.append(time.perf_counter() - started)

    def report() -> None:
        started = time.process_time()
        daemon.handler.handle(outcomes[-1])
        reporting.append(time.process_time() - started)

    try:
        daemon.refresh_platform()
        _converge(daemon, SETS * replicas)
        daemon.refresh_platform()  # fresh for every measured pass, as the stats job keeps them
        daemon.requests.clear()
        benchmark.pedantic(one_pass, teardown=report, rounds=ROUNDS, iterations=1)
    finally:
        daemon.close()

    assert all(o.result == "success" and o.plan is not None and not o.plan.changes for o in outcomes)
    assert all(o.plan is not None and o.plan.capacity_unknown is None for o in outcomes), "planned against stats"
    assert daemon.requests == [("list", 200)] * len(outcomes), "a converged pass makes one list call"
    benchmark.extra_info.update({
        "sessions": SETS * replicas,
        "wall_ms_median": round(statistics.median(walls) * 1e3, 1),
        "outcome_cpu_ms_median": round(statistics.median(reporting) * 1e3, 1) if reporting else None,
    })
