"""Figures for the planner over 10,000 sessions in 500 sets (reported with ``--benchmark-enable``).

``plan()`` is a pure function, so it is timed alone, on the rows the list path makes
(``ObservedSession``) and the memory a previous pass left (every live session seen once): what
a pass of the daemon spends planning at that size. Names repeat from pass to pass, so the
planner's name parser is warm after the first round, as in the daemon. The goal for the converged
median is 30 ms.

With the default ``--benchmark-disable`` each benchmark runs once as a plain test that checks the
plan is right; the timings are figures to read, not assertions that could flake.
"""

from __future__ import annotations

from collections import Counter

import pytest

from controller.models import ObservedSession
from controller.plan import Memory, Plan, PlanOptions, plan
from controller.spec import DesiredState, SessionSet

SETS, REPLICAS = 500, 20
NOW = 1_800_000_000.0
STARTED = NOW - 3600
#: Churn: every tenth session has ended; ROLLING sets have a new template; set000 was removed.
ENDED_EVERY = 10
ROLLING = 10


def _set(name: str, *, args: str = "100000") -> SessionSet:
    return SessionSet.model_validate({
        "apiVersion": "canfar.controller/v1alpha1", "kind": "SessionSet", "metadata": {"name": name},
        "spec": {"replicas": REPLICAS, "template": {"image": "images.canfar.net/skaha/astroml:latest",
                                                     "cores": 1, "ram": 1, "cmd": "sleep", "args": args}},
    })


def _sets() -> dict[str, SessionSet]:
    return {f"set{index:03d}": _set(f"set{index:03d}") for index in range(SETS)}


def _observed(sets: dict[str, SessionSet]) -> list[ObservedSession]:
    """Every slot of every set Running, as ``parse_observed`` makes the rows."""
    rows = []
    for name, session_set in sets.items():
        template_hash = session_set.spec.template.hash()
        for slot in range(1, REPLICAS + 1):
            rows.append(ObservedSession(f"{name}x{slot}", f"cc-{name}-{template_hash}-{slot}", "Running",
                                        "headless", STARTED, None, 1.0, 1e9))
    return rows


def _settled(desired: DesiredState, observed: list[ObservedSession]) -> Memory:
    """The memory after a pass that saw ``observed``: what the next pass plans with."""
    return plan(desired, observed, Memory(), NOW - 30, options=PlanOptions()).memory


@pytest.mark.benchmark(group="plan")
def test_plan_converged_ten_thousand(benchmark) -> None:  # type: ignore[no-untyped-def]
    """500 sets x 20 sessions, all running, as the last pass saw them: nothing to do (goal: 30 ms)."""
    sets = _sets()
    desired, observed = DesiredState(sets=sets), _observed(sets)
    memory = _settled(desired, observed)
    result: Plan = benchmark(plan, desired, observed, memory, NOW, options=PlanOptions())
    assert not result.changes
    assert sum(status.running for status in result.statuses.values()) == SETS * REPLICAS
    assert len(result.memory.seen_live) == SETS * REPLICAS


@pytest.mark.benchmark(group="plan")
def test_plan_churn_ten_thousand(benchmark) -> None:  # type: ignore[no-untyped-def]
    """The same 10,000, churning: a tenth ended, a removed set's 20 orphans, 10 sets rolling out."""
    sets = _sets()
    observed = _observed(sets)
    memory = _settled(DesiredState(sets=sets), observed)
    ended = {row.id for index, row in enumerate(observed) if index % ENDED_EVERY == 0}
    observed = [row._replace(phase="Failed" if index % 2 else "Completed") if row.id in ended else row
                for index, row in enumerate(observed)]
    del sets["set000"]
    memory.orphans_seen = frozenset(f"set000x{slot}" for slot in range(1, REPLICAS + 1))
    rolling = [f"set{index:03d}" for index in range(1, ROLLING + 1)]
    sets.update({name: _set(name, args="200000") for name in rolling})
    desired = DesiredState(sets=sets)

    result: Plan = benchmark(plan, desired, observed, memory, NOW, options=PlanOptions())

    reasons = Counter(destroy.reason for destroy in result.destroys)
    ended_in_sets = sum(1 for sid in ended if not sid.startswith("set000x"))
    assert reasons == {"ended": ended_in_sets, "orphaned": REPLICAS}
    creates = Counter(create.reason for create in result.creates)
    # maxSurge 25%: five new sessions per rolling set, beside the old ones.
    assert creates == {"rollout": ROLLING * REPLICAS // 4}
    assert "set000" not in result.statuses and len(result.statuses) == SETS - 1
