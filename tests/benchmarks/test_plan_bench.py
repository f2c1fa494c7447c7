"""Figures for the planner over 10,000 sessions (reported with ``--benchmark-enable``).

With the default ``--benchmark-disable`` each benchmark runs once as a plain test that checks the
plan is right; the timings are figures to read, not assertions that could flake.
"""

from __future__ import annotations

import pytest

from controller.models import ObservedSession
from controller.plan import Memory, PlanOptions, plan
from controller.spec import DesiredState, SessionSet

SETS, REPLICAS = 100, 100
NOW = 1_800_000_000.0
STARTED = NOW - 3600


def _sets() -> dict[str, SessionSet]:
    return {
        f"set{i:03d}": SessionSet.model_validate({
            "apiVersion": "canfar.controller/v1alpha1", "kind": "SessionSet", "metadata": {"name": f"set{i:03d}"},
            "spec": {"replicas": REPLICAS, "template": {"image": "images.canfar.net/skaha/astroml:latest",
                                                         "cmd": "sleep", "args": "100000"}},
        })
        for i in range(SETS)
    }


def _observed(sets: dict[str, SessionSet]) -> list[ObservedSession]:
    return [
        ObservedSession(f"{name}x{slot}", f"cc-{name}-{s.spec.template.hash()}-{slot}", "Running", "headless",
                        STARTED, STARTED + 1_209_600, None, None)
        for name, s in sets.items() for slot in range(1, REPLICAS + 1)
    ]


@pytest.mark.benchmark(group="plan")
def test_plan_converged_ten_thousand(benchmark) -> None:  # type: ignore[no-untyped-def]
    """A converged state of 100 sets x 100 sessions: the steady-state cost of one pass's planning."""
    sets = _sets()
    desired, observed = DesiredState(sets=sets), _observed(sets)
    result = benchmark(plan, desired, observed, Memory(), NOW, options=PlanOptions())
    assert not result.changes
    assert sum(s.running for s in result.statuses.values()) == SETS * REPLICAS


@pytest.mark.benchmark(group="plan")
def test_plan_churn_ten_thousand(benchmark) -> None:  # type: ignore[no-untyped-def]
    """10,000 sessions where every tenth ended and a removed set's 100 are orphans."""
    sets = _sets()
    observed = [s._replace(phase="Failed") if i % 10 == 0 else s for i, s in enumerate(_observed(sets))]
    removed = sets.pop("set000")
    desired = DesiredState(sets=sets)
    memory = Memory(orphans_seen=frozenset(f"set000x{slot}" for slot in range(1, REPLICAS + 1)))
    result = benchmark(plan, desired, observed, memory, NOW, options=PlanOptions(max_creates=10_000))
    assert len(result.destroys) == REPLICAS + (SETS - 1) * REPLICAS // 10
    assert removed.name not in result.statuses
