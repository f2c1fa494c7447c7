"""The platform statistics creates are planned against: the first fetch asks for stats and context at once."""

from __future__ import annotations

from collections import Counter

from tests.reliability.rig import Rig


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
    stats = rig.loop.run_until_complete(rig.reconciler.refresh_platform())
    assert _kinds(rig) == ["context", "stats"]
    assert stats.cpu_cores_available is not None
    assert rig.reconciler.capacity(rig.clock()) is not None


def test_later_fetches_ask_for_stats_only(rig: Rig) -> None:
    """The context is read once; every later refresh is one stats call."""
    rig.loop.run_until_complete(rig.reconciler.refresh_platform())
    rig.loop.run_until_complete(rig.reconciler.refresh_platform())
    assert Counter(_kinds(rig)) == {"stats": 2, "context": 1}
