"""Converging from empty, side by side with the official canfar client (``--benchmark-enable``).

Each round runs both contenders against a fresh simulator over loopback HTTP with 20 ms added
to every answer, one after the other, so a busy moment of the machine hits both alike:

- canfar 1.5.2's ``AsyncSession`` in a fresh process creates the sessions (at most 256 replicas
  per ``create`` call, the calls concurrent on one client; ``extra_info["canfar_*"]``);
- the controller daemon, ``canfar-controller run`` with default settings, starts on a state
  directory of SessionSets (written an hour earlier, so the 1 s settle window for freshly edited
  files does not apply) and creates them (the benchmark's own figures).

Both are timed from the start of their process until the simulator holds every session. The
ratio (controller / canfar) is ``extra_info["ratio_of_medians"]``; the goal is 1.2 at most.

With the default ``--benchmark-disable`` each size runs once with one session per set, and
checks that every slot was created exactly once, by either contender.
"""

from __future__ import annotations

import json
import signal
import statistics
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from controller.names import NameParser
from controller.simulator import Simulator, SimulatorConfig, SimulatorServer
from tests.benchmarks.support import (
    CORES,
    RAM_GB,
    TOKEN,
    peak_rss_mib,
    start_canfar,
    start_daemon,
    stop,
    wait_for_sessions,
    write_sets,
)
from tests.simulator.support import wait_until
from tests.tools import missing

LATENCY = 0.02
ROUNDS = 5
#: Sessions per set when the benchmarks are disabled: a check of behaviour, not a figure.
QUICK_REPLICAS = 1


@pytest.fixture(scope="module", autouse=True)
def _canfar_installed() -> None:
    try:
        import canfar.sessions  # noqa: F401
    except ImportError:
        missing("the official canfar client (canfar==1.5.2, a test extra)")


def _served(stack: ExitStack) -> tuple[Simulator, SimulatorServer]:
    simulator = Simulator(SimulatorConfig(token=TOKEN, cores=CORES, ram_gb=RAM_GB, latency=LATENCY))
    return simulator, stack.enter_context(SimulatorServer(simulator))


def _canfar_round(work: Path, total: int) -> float:
    """One fresh canfar process creating ``total`` sessions: seconds until the simulator holds them all."""
    work.mkdir()
    with ExitStack() as stack:
        simulator, server = _served(stack)
        started = time.perf_counter()
        process = start_canfar(server.url, total, work)
        stack.callback(stop, process)
        done = wait_for_sessions(simulator, total, process, log=work / "canfar.log")
        assert process.wait(timeout=60) == 0, (work / "canfar.log").read_text()[-2000:]
    names = Counter(creation.name for creation in simulator.created)
    assert len(names) == total and set(names.values()) == {1}, "canfar created a session twice"
    return done - started


def _assert_each_slot_once(simulator: Simulator, sets: int, replicas: int) -> None:
    parse = NameParser("cc").parse
    created = Counter((owned.set_name, owned.slot) for creation in simulator.created
                      if (owned := parse(creation.name)) is not None)
    assert created.total() == len(simulator.created), "a session the controller does not own"
    expected = {(f"set{index:03d}", slot) for index in range(sets) for slot in range(1, replicas + 1)}
    assert set(created) == expected, "slots missing or unexpected"
    assert set(created.values()) == {1}, f"slots created twice: {[k for k, v in created.items() if v > 1]}"


@pytest.mark.benchmark(group="converge")
@pytest.mark.parametrize(("sessions", "sets"), [(200, 10), (1000, 20)], ids=["200-over-10", "1000-over-20"])
def test_converge_from_empty(benchmark, tmp_path: Path, sessions: int, sets: int) -> None:  # type: ignore[no-untyped-def]
    """The daemon with default settings creates every session of ``sets`` sets once; canfar beside it."""
    replicas = QUICK_REPLICAS if benchmark.disabled else sessions // sets
    total = sets * replicas
    canfar_seconds: list[float] = []
    controller_seconds: list[float] = []
    rounds: list[tuple[Any, ...]] = []
    stack = ExitStack()

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        canfar_seconds.append(_canfar_round(tmp_path / f"canfar-{len(rounds)}", total))
        work = tmp_path / f"controller-{len(rounds)}"
        write_sets(work / "state", sets, replicas)
        simulator, server = _served(stack)
        rounds.append((simulator, server, work))
        return rounds[-1], {}

    def converge(simulator: Simulator, server: SimulatorServer, work: Path) -> None:
        started = time.perf_counter()
        process = start_daemon(server.url, work / "state", work)
        stack.callback(stop, process)
        done = wait_for_sessions(simulator, total, process, log=work / "daemon.log")
        controller_seconds.append(done - started)

    def teardown(simulator: Simulator, server: SimulatorServer, work: Path) -> None:
        stack.close()  # stops the daemon (SIGTERM: a clean stop), then the simulator
        _assert_each_slot_once(simulator, sets, replicas)

    with stack:
        benchmark.pedantic(converge, setup=setup, teardown=teardown, rounds=ROUNDS, iterations=1)
        if benchmark.disabled:  # pedantic() ran one round and skipped its teardown
            teardown(*rounds[-1])

    controller, canfar = statistics.median(controller_seconds), statistics.median(canfar_seconds)
    benchmark.extra_info.update({
        "sessions": total,
        "sets": sets,
        "controller_median_s": round(controller, 3),
        "canfar_median_s": round(canfar, 3),
        "canfar_min_s": round(min(canfar_seconds), 3),
        "canfar_max_s": round(max(canfar_seconds), 3),
        "ratio_of_medians": round(controller / canfar, 2),
        "ratios": [round(c / f, 2) for c, f in zip(controller_seconds, canfar_seconds, strict=True)],
    })


@pytest.mark.benchmark(group="converge-rss")
def test_peak_rss_converging_ten_thousand(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The daemon's peak resident memory while converging 10,000 sessions in 500 sets (goal: 100 MB).

    The simulator answers at once (no added latency) and lives in this process; the daemon is its
    own process, and its ``VmHWM`` (peak RSS, MiB) is read once every session is listed and again
    after a pass that listed all 10,000 (SIGHUP asks for that pass at once instead of after the
    30 s interval). The benchmark's time is the converging, not a figure with a goal.
    """
    sets, replicas = (50, 1) if benchmark.disabled else (500, 20)
    total = sets * replicas
    status_file = tmp_path / "status.json"
    write_sets(tmp_path / "state", sets, replicas)
    simulator = Simulator(SimulatorConfig(token=TOKEN, cores=CORES, ram_gb=RAM_GB))
    peaks: dict[str, float] = {}

    def converge() -> None:
        with SimulatorServer(simulator) as server:
            process = start_daemon(server.url, tmp_path / "state", tmp_path)
            try:
                wait_for_sessions(simulator, total, process, timeout=600, log=tmp_path / "daemon.log")
                peaks["listed"] = peak_rss_mib(process.pid)

                asked = [0.0]

                def listed_all() -> bool:
                    if _listed(status_file) == total:
                        return True
                    if time.monotonic() - asked[0] > 0.5:  # a pass now, not after the 30 s interval
                        process.send_signal(signal.SIGHUP)
                        asked[0] = time.monotonic()
                    return False

                wait_until(listed_all, timeout=120, what="a pass that lists every session")
                peaks["after"] = peak_rss_mib(process.pid)
            finally:
                assert stop(process) == 0

    benchmark.pedantic(converge, rounds=1, iterations=1)
    _assert_each_slot_once(simulator, sets, replicas)
    benchmark.extra_info.update({"sessions": total, "sets": sets,
                                 "peak_rss_mib_when_listed": round(peaks["listed"], 1),
                                 "peak_rss_mib": round(max(peaks.values()), 1)})


def _listed(status_file: Path) -> int:
    """Live sessions the daemon's last recorded pass listed (0 before the first)."""
    try:
        rows = json.loads(status_file.read_text())["sets"].values()
    except (OSError, ValueError, KeyError):
        return 0
    return sum(row["running"] + row["pending"] for row in rows)
