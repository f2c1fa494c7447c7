"""The platform statistics creates are planned against: the first fetch asks for stats and context at once."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from controller.daemon import Daemon, Schedule
from controller.errors import TransportError
from controller.passoutcome import PassOutcome
from controller.statedir import SETTLE_WINDOW
from tests.reliability.rig import STATS_INTERVAL, Rig, manifest


def _kinds(rig: Rig) -> list[str]:
    """The reads the service answered, in the order answered: stats, context or list."""
    kinds = []
    for request in rig.simulator.requests:
        if request.method == "GET" and request.path == "/context":
            kinds.append("context")
        elif request.method == "GET" and request.path == "/session":
            kinds.append("stats" if request.param("view") == "stats" else "list")
    return kinds


def test_the_first_fetch_asks_for_stats_and_context_at_once(rig: Rig) -> None:
    """A slow stats answer does not hold up the context call: the daemon's first pass waits one round trip, not two."""
    rig.simulator.inject_delay("GET", "/session", seconds=0.2)  # the stats call: the only list-path read here
    stats = rig.loop.run_until_complete(rig.reconciler.platform.refresh())
    assert _kinds(rig) == ["context", "stats"]
    assert stats.cpu_cores_available is not None
    assert rig.reconciler.platform.budget(rig.clock()) is not None


def test_later_fetches_ask_for_stats_only(rig: Rig) -> None:
    """The context is read once; every later refresh is one stats call."""
    rig.loop.run_until_complete(rig.reconciler.platform.refresh())
    rig.loop.run_until_complete(rig.reconciler.platform.refresh())
    assert Counter(_kinds(rig)) == {"stats": 2, "context": 1}


#: Statistics no platform has: each is StatsUnavailable, with the reason label it is counted under.
_GOOD = {"cores": {"requestedCPUCores": 4, "cpuCoresAvailable": 64, "maxCPUCores": {"cpuCores": 16}},
         "ram": {"requestedRAM": "8G", "ramAvailable": "256G", "maxRAM": {"ram": "64G"}}}
BAD_STATS = {
    "NotANumber": json.dumps(_GOOD).replace('"cpuCoresAvailable": 64', '"cpuCoresAvailable": NaN'),
    "Infinite": json.dumps(_GOOD).replace('"cpuCoresAvailable": 64', '"cpuCoresAvailable": Infinity'),
    "Negative": json.dumps(_GOOD).replace('"requestedCPUCores": 4', '"requestedCPUCores": -10'),
    "ZeroCapacity": json.dumps({"cores": {"requestedCPUCores": 0, "cpuCoresAvailable": 0, "maxCPUCores": {"cpuCores": 0}},
                                "ram": {"requestedRAM": "0G", "ramAvailable": "0G", "maxRAM": {"ram": "0G"}}}),
}


@pytest.mark.parametrize("reason", sorted(BAD_STATS))
def test_garbage_stats_neither_stall_creates_nor_reach_the_metrics(rig: Rig, reason: str) -> None:
    """A bad stats answer is StatsUnavailable: creates go ahead, the gauges keep the last good value,
    and the failure is counted with its reason."""
    daemon = Daemon(rig.reconciler, rig.handler, schedule=Schedule(), metrics=rig.metrics, state_dir=rig.state)
    registry = rig.metrics.registry
    rig.simulator.inject_stats(_GOOD)
    rig.loop.run_until_complete(daemon.fetch_stats())
    assert registry.get_sample_value("canfar_platform_cpu_cores_available") == 64.0
    rig.simulator.inject_stats(BAD_STATS[reason], count=None)
    rig.loop.run_until_complete(daemon.fetch_stats())
    assert registry.get_sample_value("canfar_platform_stats_failures_total", {"reason": reason}) == 1.0
    assert registry.get_sample_value("canfar_platform_cpu_cores_available") == 64.0  # the last good value
    assert rig.reconciler.platform.budget(rig.clock()) is None
    rig.write("a", manifest("a", 5))
    for _ in range(4):
        rig.clock.advance(5.0)
        rig.loop.run_until_complete(daemon.fetch_stats())
        outcome = rig.loop.run_until_complete(rig.reconciler.run_pass())
        rig.handler.handle(outcome)
    assert sum(rig.live_by_slot("a").values()) == 5  # created, unchecked: never a wait on garbage
    conditions = {c.type: c.reason for c in outcome.plan.statuses["a"].conditions}
    assert conditions.get("WaitingForCapacity") == "StatsUnavailable"
    exported = [s.value for f in registry.collect() if f.name.startswith("canfar_platform_") for s in f.samples]
    assert all(math.isfinite(v) and v >= 0 for v in exported)


def test_a_hanging_stats_call_does_not_hold_up_the_first_create(tmp_path: Path) -> None:
    """The daemon's first pass fetches stats beside its list: a stats call that hangs is given up on, the
    sessions are created without capacity checks, and the set says why (StatsUnavailable)."""
    rig = Rig(tmp_path, stats_timeout=0.2)
    try:
        rig.write("workers", manifest("workers", 2))
        rig.run_pass()
        rig.clock.advance(SETTLE_WINDOW + 0.1)
        rig.reconciler.platform.at = -math.inf  # a fresh controller: no statistics yet
        rig.simulator.hang_stats(30.0, status=504)

        async def first_pass() -> PassOutcome:
            rig.reconciler.platform.prefetch()  # as the daemon does before its first pass
            return await rig.reconciler.run_pass()

        outcome = rig.loop.run_until_complete(first_pass())
        assert outcome.created["workers"] == 2
        assert outcome.seconds < 30.0  # not the hang's length: the stats call was given up on
        assert rig.reconciler.platform.budget(rig.clock()) is None
        condition = outcome.plan.statuses["workers"].condition("WaitingForCapacity")
        assert condition is not None and (condition.status, condition.reason) == ("Unknown", "StatsUnavailable")
        rig.clock.advance(STATS_INTERVAL)
        rig.run_pass()  # the stats job's next call is answered: capacity is checked again
        assert rig.reconciler.platform.budget(rig.clock()) is not None
    finally:
        rig.close()


def test_a_stats_call_past_its_timeout_is_a_transport_error(tmp_path: Path) -> None:
    """The stats job's call fails after its own timeout, with a message that says so."""
    rig = Rig(tmp_path, stats_timeout=0.1)
    try:
        rig.simulator.hang_stats(30.0)
        with pytest.raises(TransportError, match=r"no answer within 0\.1 s"):
            rig.loop.run_until_complete(rig.reconciler.platform.refresh())
    finally:
        rig.close()
