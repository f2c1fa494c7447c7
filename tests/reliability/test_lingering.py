"""A service that will not let go: deletes it acknowledges and ignores, sessions stuck Terminating or Unknown.

In-process, on the manual clock. The ground truth (what the simulator really runs) is checked after
every pass: no slot ever has two Running sessions because a delete was ignored.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from controller.plan import DESTRUCTIVE_SETTLE, TERMINATING_LIMIT
from tests.reliability.rig import Rig, manifest, owned

SETTLE = 1.0


def status(rig: Rig, name: str) -> dict[str, Any]:
    return json.loads(rig.status_file.read_text())["sets"][name]


def condition(rig: Rig, name: str, kind: str) -> dict[str, Any]:
    return next(c for c in status(rig, name)["conditions"] if c["type"] == kind)


def running_by_slot(rig: Rig, set_name: str) -> Counter[int]:
    """Running sessions per slot of one set (any template), from the ground truth."""
    counts: Counter[int] = Counter()
    for _, name, phase in rig.truth():
        parts = owned(name)
        if parts is not None and parts[0] == set_name and phase == "Running":
            counts[parts[2]] += 1
    return counts


def ids_in_slots(rig: Rig, set_name: str, slots: range) -> set[str]:
    return {sid for sid, name, _ in rig.truth() if (parts := owned(name)) and parts[0] == set_name
            and parts[2] in slots}


def pass_and_check(rig: Rig, set_name: str, *, every: float = 5.0) -> None:
    rig.clock.advance(every)
    rig.run_pass()
    assert max(running_by_slot(rig, set_name).values(), default=0) <= 1, running_by_slot(rig, set_name)


def with_strategy(name: str, replicas: int, strategy: str, revision: int = 1) -> str:
    text = manifest(name, replicas, revision=revision)
    return text.replace(f"  replicas: {replicas}\n", f"  replicas: {replicas}\n  updateStrategy:\n    type: {strategy}\n")


def rewrite(rig: Rig, name: str, text: str) -> None:
    """Write a manifest and let it settle (the pass after this one acts on it)."""
    rig.write(name, text)
    rig.run_pass()
    rig.clock.advance(SETTLE)


def converge(rig: Rig, name: str, text: str, replicas: int) -> None:
    rewrite(rig, name, text)
    rig.passes(3)
    assert sum(running_by_slot(rig, name).values()) == replicas


# -- deletes answered 200 and ignored ------------------------------------------------------------------


def test_ignored_deletes_with_scale_down_then_up_never_give_a_slot_two_running_sessions(rig: Rig) -> None:
    """6 -> 2 while the service ignores the deletes, then back to 6: slots 3-6 are not refilled beside the
    sessions that still run; the deletes are retried with back-off, the set says DestroyFailing (Ignored, with
    the ids), and once the service lets go every slot is filled again, once."""
    converge(rig, "workers", manifest("workers", 6), 6)
    stubborn = ids_in_slots(rig, "workers", range(3, 7))
    for session_id in stubborn:
        rig.simulator.ignore_deletes(count=None, name=next(n for s, n, _ in rig.truth() if s == session_id))
    rewrite(rig, "workers", manifest("workers", 2))
    rig.clock.advance(DESTRUCTIVE_SETTLE)  # a scale-down waits for the file to stay unchanged
    with capture_logs(processors=[merge_contextvars]) as logs:
        rig.run_pass()  # the first destroys: answered 200, ignored
        pass_and_check(rig, "workers")  # the first list that still shows them Running
        assert condition(rig, "workers", "DestroyFailing")["status"] == "False"
        pass_and_check(rig, "workers")  # the second
        failing = condition(rig, "workers", "DestroyFailing")
        assert (failing["status"], failing["reason"]) == ("True", "Ignored")
        assert all(sid in failing["message"] for sid in stubborn)
        rewrite(rig, "workers", manifest("workers", 6))  # scale back up while they still run
        for _ in range(40):  # more than three minutes
            pass_and_check(rig, "workers")
    assert not [r for r in rig.requests("POST")][6:]  # not one create beside a session that still runs
    assert "waiting for it to go" in (status(rig, "workers")["waiting"] or "")
    assert any(e.get("reason") == "DestroyIgnored" and e["log_level"] == "warning" for e in logs)
    one = sorted(stubborn)[0]
    times = [r.at for r in rig.requests("DELETE") if r.path.endswith(one)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 3 <= len(times) <= 7, times  # backing off over 3.5 minutes of passes every 5 s, not once per pass
    assert gaps == sorted(gaps) and gaps[-1] >= 4 * gaps[0], gaps

    rig.simulator.clear_faults()  # the service lets go
    for _ in range(40):
        pass_and_check(rig, "workers", every=10)
    assert sorted(running_by_slot(rig, "workers").items()) == [(slot, 1) for slot in range(1, 7)]
    assert not ids_in_slots(rig, "workers", range(1, 7)) & stubborn
    assert condition(rig, "workers", "DestroyFailing")["status"] == "False"


def test_a_restarted_controller_keeps_retrying_an_ignored_destroy(rig: Rig) -> None:
    """The retry state is in the ledger: after a restart the slot stays held and the set stays DestroyFailing."""
    converge(rig, "workers", manifest("workers", 2), 2)
    [last] = ids_in_slots(rig, "workers", range(2, 3))
    rig.simulator.ignore_deletes(count=None, name="cc-workers-*-2")
    rewrite(rig, "workers", manifest("workers", 1))
    rig.clock.advance(DESTRUCTIVE_SETTLE)  # a scale-down waits for the file to stay unchanged
    rig.passes(3)
    rig.restart()
    rewrite(rig, "workers", manifest("workers", 2))
    for _ in range(10):
        pass_and_check(rig, "workers")
    assert condition(rig, "workers", "DestroyFailing")["status"] == "True"
    assert len(list(rig.requests("POST"))) == 2
    assert last in {sid for sid, _, phase in rig.truth() if phase == "Running"}


# -- sessions stuck Terminating or Unknown ---------------------------------------------------------------


@pytest.mark.parametrize("phase", ["Terminating", "Unknown"])
@pytest.mark.parametrize("strategy", ["RollingUpdate", "OnCompletion", "Recreate"])
def test_a_stuck_session_is_reported_once_and_recreate_waits_for_it(rig: Rig, strategy: str, phase: str) -> None:
    """A template change while one session is stuck: the set says Stuck (with the id) after the limit, the
    Stuck event is written once, a Recreate set waits (and its status says for what), and no slot ever has
    two Running sessions."""
    converge(rig, "jobs", with_strategy("jobs", 3, strategy), 3)
    [stuck] = ids_in_slots(rig, "jobs", range(2, 3))
    rig.simulator.stick(stuck, phase)
    rewrite(rig, "jobs", with_strategy("jobs", 3, strategy, revision=2))
    with capture_logs(processors=[merge_contextvars]) as logs:
        for _ in range(int(TERMINATING_LIMIT / 30) + 4):  # past the limit
            pass_and_check(rig, "jobs", every=30)
    reported = [e for e in logs if e.get("reason") == "Stuck"]
    assert [e["session_id"] for e in reported] == [stuck] and reported[0]["log_level"] == "warning"
    found = condition(rig, "jobs", "Stuck")
    assert (found["status"], found["reason"]) == ("True", "PastTerminatingLimit") and stuck in found["message"]
    assert status(rig, "jobs")["stuck"] == 1
    assert rig.metrics.registry.get_sample_value("canfar_controller_sessionset_stuck_sessions",
                                                 {"sessionset": "jobs"}) == 1
    if strategy == "Recreate":
        assert status(rig, "jobs")["waiting"] == f"waiting for outdated sessions to go (Recreate); stuck: {stuck} ({phase})"
        assert sum(running_by_slot(rig, "jobs").values()) == 0  # nothing new beside a session not yet gone
    rig.simulator.unstick(stuck)  # the service lets go at last
    for _ in range(12):
        pass_and_check(rig, "jobs", every=30)
    if strategy != "OnCompletion":  # OnCompletion waits for the old jobs to end by themselves
        assert sorted(running_by_slot(rig, "jobs").items()) == [(1, 1), (2, 1), (3, 1)]
    assert condition(rig, "jobs", "Stuck")["status"] == "False"
