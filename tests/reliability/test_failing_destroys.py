"""Deletes that fail (the rule *Failing destroys*): they back off per session, say so, and stop at nothing.

In-process, on the manual clock, with the client's own retries on (the daemon's default and more): the
simulator answers every DELETE 500 with the service's message. Issue 15: scaling 6 -> 2 like this made
236 DELETE calls and 181 warnings in 60 s, and the set stayed ``Ready``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from controller.cli.statustable import table
from controller.observability.repeats import RepeatFilter
from controller.outcome import REPEAT_AFTER
from controller.plan import DESTRUCTIVE_SETTLE
from controller.simulator.faults import DELETE_FAILURE
from controller.statusfile import StatusDocument
from tests.reliability.rig import LIVE, Rig, manifest
from tests.reliability.test_lingering import condition, converge, ids_in_slots, rewrite, status

#: Most DELETE calls one session may get in the first minute while every delete fails (client retries included).
FIRST_MINUTE_BOUND = 20


@pytest.fixture
def retrying(tmp_path: Path) -> Iterator[Rig]:
    """A rig whose client retries as the daemon's may: up to 10 times (no wait between, to keep it quick)."""
    rig = Rig(tmp_path, client_settings={"retries": 10, "backoff": 0.0})
    yield rig
    rig.close()


@pytest.fixture
def client_lines(caplog: pytest.LogCaptureFixture, retrying: Rig) -> Iterator[pytest.LogCaptureFixture]:
    """The client's retry lines, through the daemon's repeat filter (as ``canfar-controller run`` installs it)."""
    log = logging.getLogger("controller.client")
    repeats = RepeatFilter(REPEAT_AFTER, clock=retrying.clock)
    log.addFilter(repeats)
    caplog.set_level(logging.WARNING, logger="controller.client")
    yield caplog
    log.removeFilter(repeats)


def deletes_per_minute(rig: Rig, since: float, minutes: int) -> dict[str, list[int]]:
    """DELETE calls per session id in each minute after ``since`` (the client's retries are calls too)."""
    counts: dict[str, list[int]] = {}
    for request in rig.requests("DELETE"):
        minute = int((request.at - since) // 60)
        if 0 <= minute < minutes:
            counts.setdefault(request.path.rsplit("/", 1)[-1], [0] * minutes)[minute] += 1
    return counts


def status_table(rig: Rig) -> str:
    return table(StatusDocument.model_validate_json(rig.status_file.read_text()), rig.status_file)


def sample(rig: Rig, name: str, labels: dict[str, str]) -> float | None:
    return rig.metrics.registry.get_sample_value(name, {"sessionset": "workers", **labels})


def scale_down_while_deletes_fail(rig: Rig) -> tuple[set[str], float]:
    """6 running, then 2 wanted while every DELETE fails: the surplus ids and when the first DELETE went."""
    converge(rig, "workers", manifest("workers", 6), 6)
    surplus = ids_in_slots(rig, "workers", range(3, 7))
    rig.simulator.fail_deletes()
    rewrite(rig, "workers", manifest("workers", 2))
    rig.clock.advance(DESTRUCTIVE_SETTLE)  # a scale-down waits for the file to stay unchanged
    rig.run_pass()  # the first destroys: each fails, after the client's own retries
    first = min(r.at for r in rig.requests("DELETE"))
    return surplus, first


def test_scale_down_while_every_delete_fails_backs_off_says_why_and_recovers(
        retrying: Rig, client_lines: pytest.LogCaptureFixture) -> None:
    rig = retrying
    with capture_logs(processors=[merge_contextvars]) as logs:
        surplus, first = scale_down_while_deletes_fail(rig)
        while rig.clock() < first + 60:
            rig.clock.advance(2.0)  # a pass every 2 s: the back-off, not the interval, bounds the deletes
            rig.run_pass()

    per_session = deletes_per_minute(rig, first, 1)
    assert set(per_session) == surplus  # only the surplus, never a session the set keeps
    assert all(counts[0] <= FIRST_MINUTE_BOUND for counts in per_session.values()), per_session
    assert sum(counts[0] for counts in per_session.values()) <= 4 * FIRST_MINUTE_BOUND  # issue 15: 236
    failing = condition(rig, "workers", "DestroyFailing")
    assert (failing["status"], failing["reason"]) == ("True", "Failed")
    assert DELETE_FAILURE in failing["message"] and all(sid in failing["message"] for sid in surplus)
    ready = condition(rig, "workers", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DestroyFailing")
    assert status(rig, "workers")["destroy_failing"] == 4 and status(rig, "workers")["running"] == 6
    [line] = [line for line in status_table(rig).splitlines() if line.startswith("workers")]
    assert "DestroyFailing" in line and "Ready" not in line and DELETE_FAILURE in line  # `canfar-controller status`
    assert sample(rig, "canfar_controller_sessionset_failing_destroys", {}) == 4
    assert sample(rig, "canfar_controller_destroy_failures_total", {"reason": "ServerError"}) >= 4
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert sorted(e["session_id"] for e in warned if e.get("reason") == "FailedDestroy") == sorted(surplus)
    assert len(warned) == 4, warned  # one per session: its error did not change (issue 15: 181)
    assert len(client_lines.records) <= 2  # "retry 1 of 2", "retry 2 of 2": the same for every session

    rig.simulator.clear_faults()  # the service recovers: each surplus session goes at its next retry
    for _ in range(20):
        rig.clock.advance(10.0)
        rig.run_pass()
    assert not ids_in_slots(rig, "workers", range(1, 7)) & surplus
    assert len(ids_in_slots(rig, "workers", range(1, 3))) == 2
    assert len(list(rig.requests("POST"))) == 6  # nothing was created meanwhile
    assert condition(rig, "workers", "DestroyFailing")["status"] == "False"
    assert condition(rig, "workers", "Ready")["status"] == "True"
    assert sample(rig, "canfar_controller_sessionset_failing_destroys", {}) == 0


def test_a_failing_destroy_keeps_backing_off_across_a_restart_and_sighup_retries_it_at_once(retrying: Rig) -> None:
    """Fewer deletes each minute while they fail, the back-off survives a restart (it is in the memory), and
    SIGHUP sends them again at the next pass."""
    rig = retrying
    surplus, first = scale_down_while_deletes_fail(rig)
    while rig.clock() < first + 240:
        rig.clock.advance(2.0)
        rig.run_pass()
    rig.restart()  # a new process: the back-off is read back from the ledger, not started afresh
    while rig.clock() < first + 600:
        rig.clock.advance(2.0)
        rig.run_pass()
    per_session = deletes_per_minute(rig, first, 10)
    assert set(per_session) == surplus
    for counts in per_session.values():
        assert counts[0] <= FIRST_MINUTE_BOUND and all(later < counts[0] for later in counts[1:]), counts
        assert sum(counts[5:]) <= counts[0] // 2, counts  # doubling: the last five minutes see one try or so
    assert condition(rig, "workers", "DestroyFailing")["reason"] == "Failed"

    rig.simulator.clear_faults()
    rig.reconciler.reset_backoffs()  # SIGHUP: the user says the cause is fixed
    before = Counter(r.path for r in rig.requests("DELETE"))
    rig.clock.advance(2.0)
    rig.run_pass()
    after = Counter(r.path for r in rig.requests("DELETE"))
    assert {path.rsplit("/", 1)[-1] for path in after - before} == surplus  # every one at once
    rig.clock.advance(5.0)
    rig.run_pass()
    assert not ids_in_slots(rig, "workers", range(1, 7)) & surplus
    assert condition(rig, "workers", "DestroyFailing")["status"] == "False"
    assert condition(rig, "workers", "Ready")["status"] == "True"


def test_a_delete_answered_404_means_the_session_is_already_gone(retrying: Rig) -> None:
    """A 404 is no failure: the destroy counts as done (no FailedDestroy, no DestroyFailing Failed, no failure
    counted); a session a list still shows afterwards is an ignored destroy, retried with the destroy back-off."""
    rig = retrying
    converge(rig, "workers", manifest("workers", 3), 3)
    [surplus] = ids_in_slots(rig, "workers", range(3, 4))
    rig.simulator.fail_deletes(count=1, status=404, message=f"session {surplus} not found")
    rewrite(rig, "workers", manifest("workers", 2))
    rig.clock.advance(DESTRUCTIVE_SETTLE)  # a scale-down waits for the file to stay unchanged
    with capture_logs(processors=[merge_contextvars]) as logs:
        rig.run_pass()
        outcome = rig.run_pass()  # the list still shows it (the 404 was a lie): retried after the back-off
        assert condition(rig, "workers", "DestroyFailing")["status"] == "False"
        for _ in range(3):
            rig.clock.advance(2.0)
            rig.run_pass()
    assert [r.status for r in rig.requests("DELETE")] == [404, 200]  # once more, 5 s later, not every pass
    assert outcome.result == "success"
    assert not [sid for sid, _, phase in rig.truth() if sid == surplus and phase in LIVE]
    assert not [e for e in logs if e.get("reason") == "FailedDestroy"]
    assert [e["reason"] for e in logs if e.get("event") == "audit"] == ["Pruned", "DestroyIgnored", "SuccessfulDestroy"]
    assert sample(rig, "canfar_controller_destroy_failures_total", {"reason": "NotFound"}) == 0
