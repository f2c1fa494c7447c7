"""The platform statistics creates are planned against: the first fetch asks for stats and context at once."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from controller.daemon import Daemon, Schedule
from tests.reliability.rig import Rig, manifest


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
