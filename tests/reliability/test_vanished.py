"""A list that leaves out the same sessions is not believed: the service is asked by id (issue 15, item 5).

The in-process tier: the simulator serves *consistent* partial lists (the same sessions left out of
every answer) while ``GET /session/{id}`` still tells the truth; sessions are also deleted by hand,
and lookups fail.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.reliability.rig import LIVE, Rig, manifest


def _live_ids(rig: Rig) -> set[str]:
    return {sid for sid, name, status in rig.truth() if status in LIVE and name.startswith("cc-")}


def _converge(rig: Rig, name: str, replicas: int) -> None:
    rig.write(name, manifest(name, replicas))
    rig.passes(8, every=5.0)
    assert set(rig.live_by_slot(name).values()) == {1} and sum(rig.live_by_slot(name).values()) == replicas


def _mark(rig: Rig) -> int:
    return max((r.seq for r in rig.simulator.requests), default=0)


def _lookups(rig: Rig, since: int) -> Counter[str]:
    """``GET /session/{id}`` calls (no view) per session id since ``since``."""
    return Counter(r.path.rsplit("/", 1)[-1] for r in rig.requests("GET", since)
                   if r.path.startswith("/session/") and r.param("view") is None)


def _every(rig: Rig, seconds: float, passes: int) -> None:
    for _ in range(passes):
        rig.clock.advance(seconds)
        rig.run_pass()


def _left_out_live(rig: Rig) -> float:
    value = rig.metrics.registry.get_sample_value("canfar_controller_list_anomalies_total", {"kind": "left_out_live"})
    return value or 0.0


def test_the_same_half_left_out_of_every_list_creates_and_destroys_nothing(rig: Rig) -> None:
    """The issue's case: half of 12 sessions missing from every list for 6 s made 6 duplicates. Now
    each vanished session is looked up once, found live, and its slot held: nothing created or destroyed."""
    _converge(rig, "a", 12)
    before = _live_ids(rig)
    mark = _mark(rig)
    rig.simulator.inject_list_fault("consistent", count=None, keep=0.5, seed=3)  # leaves out 6 of the 12
    rig.passes(7, every=1.0)
    assert list(rig.requests("POST", mark)) == [] and list(rig.requests("DELETE", mark)) == []
    assert _live_ids(rig) == before and set(rig.live_by_slot("a").values()) == {1}
    looked_up = _lookups(rig, mark)
    assert len(looked_up) == 6 and set(looked_up.values()) == {1}  # one call per vanished session
    assert set(looked_up) <= before
    assert _left_out_live(rig) == 6
    status = rig.reconciler.memory
    assert set(status.lookups) == set(looked_up) and status.missing == set(looked_up)
    rig.simulator.clear_faults()
    rig.passes(3, every=5.0)
    assert _live_ids(rig) == before and rig.reconciler.memory.missing == frozenset()
    assert list(rig.requests("POST", mark)) == [] and list(rig.requests("DELETE", mark)) == []
    assert _lookups(rig, mark) == looked_up  # listed again: not asked about again


def test_a_list_that_stays_lossy_for_ten_minutes_is_rechecked_on_a_back_off(rig: Rig) -> None:
    """Left out of every list for 10 min (a pass every 30 s): each session is asked about at most 5 times
    (at once, then 1, 2, 4 min later...), and still nothing is created or destroyed."""
    _converge(rig, "a", 6)
    before = _live_ids(rig)
    mark = _mark(rig)
    rig.simulator.inject_list_fault("consistent", count=None, keep=0.5, seed=5)
    rig.passes(21, every=30.0)
    assert list(rig.requests("POST", mark)) == [] and list(rig.requests("DELETE", mark)) == []
    assert _live_ids(rig) == before
    looked_up = _lookups(rig, mark)
    assert len(looked_up) == 3 and all(2 <= count <= 5 for count in looked_up.values()), looked_up


def test_a_session_deleted_by_hand_is_refilled_in_the_pass_that_misses_it(rig: Rig) -> None:
    """The lookup answers 404: the slot is refilled in the first pass whose list leaves it out, not the second."""
    _converge(rig, "a", 3)
    victim = next(iter(_live_ids(rig)))
    rig.delete_outside(victim)
    rig.clock.advance(10.0)  # past its Terminating seconds: gone from lists and from GET /session/{id}
    mark = _mark(rig)
    rig.run_pass()
    assert len(list(rig.requests("POST", mark))) == 1
    assert _lookups(rig, mark) == Counter({victim: 1})
    rig.passes(3, every=5.0)
    assert set(rig.live_by_slot("a").values()) == {1} and sum(rig.live_by_slot("a").values()) == 3
    assert _left_out_live(rig) == 0 and rig.reconciler.memory.lookups == {}


def test_a_session_deleted_while_a_lossy_list_hides_it_is_refilled_at_the_recheck(rig: Rig) -> None:
    """Held because the service still had it; deleted by hand later: the re-check a minute on finds it gone."""
    _converge(rig, "a", 4)
    rig.simulator.inject_list_fault("consistent", count=None, keep=0.5, seed=11)
    rig.run_pass()
    hidden = set(rig.reconciler.memory.lookups)
    assert hidden and len(hidden) < 4
    victim = sorted(hidden)[0]
    rig.delete_outside(victim)
    mark = _mark(rig)
    _every(rig, 20.0, 2)  # 40 s after the first lookup: not asked again yet, the slot stays held
    assert list(rig.requests("POST", mark)) == [] and _lookups(rig, mark) == Counter()
    _every(rig, 20.0, 2)  # 80 s: re-checked once, 404, refilled
    assert _lookups(rig, mark) == Counter(hidden)
    assert len(list(rig.requests("POST", mark))) == 1
    assert list(rig.requests("DELETE", mark)) == []


@pytest.mark.parametrize("failure", ["500", "hangs"])
def test_a_failing_lookup_falls_back_to_the_two_list_rule(rig: Rig, failure: str) -> None:
    """Every lookup answered 500, or answered 5 s late (the pass goes on after the lookup's timeout): the
    slot is held by the first list, refilled when the second agrees, and the session is asked about
    once, not once per pass."""
    _converge(rig, "a", 3)
    victim = next(iter(_live_ids(rig)))
    if failure == "500":
        rig.simulator.inject_fault("GET", "/session/*", status=500, count=None)
    else:
        rig.reconciler.lookup_timeout = 0.2
        rig.simulator.inject_delay("GET", "/session/*", seconds=5.0, count=None)
    rig.delete_outside(victim)
    rig.clock.advance(10.0)
    mark = _mark(rig)
    started = time.perf_counter()
    first = rig.run_pass()
    assert time.perf_counter() - started < 3.0
    assert list(rig.requests("POST", mark)) == [] and first.plan.statuses["a"].held == 1
    assert rig.reconciler.memory.lookups[victim].answer == "failed"
    rig.clock.advance(5.0)
    rig.run_pass()
    assert len(list(rig.requests("POST", mark))) == 1
    assert _lookups(rig, mark) == Counter({victim: 1})
