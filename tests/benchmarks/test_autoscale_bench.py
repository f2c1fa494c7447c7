"""What reading 50 autoscale signals adds to the CPU of a steady pass (goal: at most 5 ms; a reported figure).

Method: the same wiring as ``test_pass_cpu_bench`` (the simulator in a child process, the real client
over loopback HTTP, a real ledger), twice: 50 sets with ``replicas: 2``, then the same 50 sets
autoscaled from one file signal each (the files hold 10, target 5: two sessions each, so the plans are
alike). Both converge first; then each steady pass is timed with ``time.process_time`` (this process's
CPU only). The benchmark measures the autoscaled pass; ``extra_info`` reports the median of the fixed
pass and the difference, and the CPU of the signal reads alone (``SignalReader.start`` + ``collect``).

With the default ``--benchmark-disable`` it runs once, with 5 sets.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from controller.passoutcome import PassOutcome
from controller.signals import SignalReader
from tests.benchmarks.support import CORES, MANIFEST_AGE, RAM_GB, simulator_process, write_sets
from tests.benchmarks.test_pass_cpu_bench import _converge, _Daemon

SETS = 50
ROUNDS = 20
AUTOSCALED = """\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: {name}
spec:
  autoscale: {{maxReplicas: 4, target: 5, signals: [{{file: {signal}}}]}}
  template:
    image: images.canfar.net/skaha/astroml:latest
    cores: 1
    ram: 1
    cmd: sleep
    args: "100000"
"""


def write_autoscaled(work: Path, sets: int) -> None:
    state = work / "state"
    state.mkdir(parents=True, exist_ok=True)
    written = time.time() - MANIFEST_AGE
    for index in range(sets):
        signal = work / "signals" / f"set{index:03d}"
        signal.parent.mkdir(exist_ok=True)
        signal.write_text("10\n")
        path = state / f"set{index:03d}.yaml"
        path.write_text(AUTOSCALED.format(name=f"set{index:03d}", signal=signal))
        os.utime(path, (written, written))


def steady_cpu(daemon: _Daemon, sessions: int, rounds: int) -> list[float]:
    daemon.refresh_platform()
    _converge(daemon, sessions)
    daemon.refresh_platform()
    times = []
    for _ in range(rounds):
        started = time.process_time()
        outcome = daemon.run_pass()
        times.append(time.process_time() - started)
        assert outcome.plan is not None and not outcome.plan.changes
    return times


def simulator() -> AbstractContextManager[str]:
    """A fresh simulator in a child process (each contender gets its own account)."""
    return simulator_process("--cores", str(CORES), "--ram", str(RAM_GB), "--latency", "0.02", "--time-scale", "10")


@pytest.mark.benchmark(group="autoscale", timer=time.process_time)
def test_fifty_signals_cost_of_a_steady_pass(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """50 autoscaled sets, each reading a file signal, against the same 50 sets with fixed replicas."""
    sets = 5 if benchmark.disabled else SETS
    rounds = 3 if benchmark.disabled else ROUNDS
    write_sets(tmp_path / "fixed" / "state", sets, 2)
    with simulator() as url:
        fixed = _Daemon(url, tmp_path / "fixed")
        try:
            fixed_times = steady_cpu(fixed, 2 * sets, rounds)
        finally:
            fixed.close()
    write_autoscaled(tmp_path / "scaled", sets)
    reads: list[float] = []
    outcomes: list[PassOutcome] = []
    with simulator() as url:
        scaled = _Daemon(url, tmp_path / "scaled")
        try:
            steady_cpu(scaled, 2 * sets, 1)
            benchmark.pedantic(lambda: outcomes.append(scaled.run_pass()), rounds=rounds, iterations=1)
            reader = SignalReader()
            loaded = scaled.reconciler.loader.load(time.time()).sets

            async def read_once() -> None:
                reader.start(loaded)
                await reader.collect(loaded)

            for _ in range(rounds):
                started = time.process_time()
                scaled.loop.run_until_complete(read_once())
                reads.append(time.process_time() - started)
            scaled.loop.run_until_complete(reader.aclose())
        finally:
            scaled.loop.run_until_complete(scaled.reconciler.close())
            scaled.close()
    assert all(o.plan is not None and not o.plan.changes for o in outcomes)
    assert all(s.scaling is not None and s.desired == 2 for o in outcomes for s in o.plan.statuses.values())
    fixed_median = statistics.median(fixed_times)
    scaled_median = statistics.median(benchmark.stats.stats.data) if not benchmark.disabled else None
    benchmark.extra_info.update({
        "signals": sets,
        "fixed_pass_cpu_ms_median": round(fixed_median * 1e3, 2),
        "added_cpu_ms_median": round((scaled_median - fixed_median) * 1e3, 2) if scaled_median is not None else None,
        "signal_reads_cpu_ms_median": round(statistics.median(reads) * 1e3, 2),
    })
