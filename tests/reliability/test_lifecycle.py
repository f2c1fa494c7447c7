"""Session lifecycle end to end, in-process: completion, crash loops, capacity, renewals, update strategies.

The simulator plays the platform (workloads that end with their exit code, a cluster of a given
size, interactive sessions that die at their expiry unless renewed); the controller runs as in
production; the test reads what a user would read: the status file, the metrics, the audit log.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.plan import DESTRUCTIVE_SETTLE
from controller.restarts import request_restart
from tests.reliability.rig import IMAGE, LIVE, Rig

SETTLE = 1.0


def sessionset(name: str, replicas: int, *, cmd: str | None = None, args: str | None = None, kind: str = "headless",
               cores: int | None = 1, ram: int | None = 1, policy: str = "Always", extra: str = "",
               revision: int = 1) -> str:
    lines = ["apiVersion: canfar.controller/v1alpha1", "kind: SessionSet", "metadata:", f"  name: {name}", "spec:",
             f"  replicas: {replicas}", f"  restartPolicy: {policy}", "  template:", f"    kind: {kind}",
             f"    image: {IMAGE}"]
    if cores is not None:
        lines.append(f"    cores: {cores}")
    if ram is not None:
        lines.append(f"    ram: {ram}")
    if cmd is not None:
        lines.append(f'    cmd: "{cmd}"')
    if args is not None:
        lines.append(f'    args: "{args}"')
    if kind == "headless":
        lines += ["    env:", f'      REVISION: "{revision}"']
    return "\n".join(lines) + "\n" + extra


def start(rig: Rig, name: str, text: str) -> None:
    rig.write(name, text)
    rig.run_pass()
    rig.clock.advance(SETTLE)


def status(rig: Rig, name: str) -> dict[str, Any]:
    return json.loads(rig.status_file.read_text())["sets"][name]


def condition(rig: Rig, name: str, kind: str) -> dict[str, Any]:
    return next(c for c in status(rig, name)["conditions"] if c["type"] == kind)


def gauge(rig: Rig, name: str, labels: dict[str, str]) -> float | None:
    return rig.metrics.registry.get_sample_value(name, labels)


def test_a_finished_batch_set_is_complete_not_broken(rig: Rig) -> None:
    """OnFailure jobs that succeed: the set ends Complete and Ready, and nothing runs again."""
    start(rig, "batch", sessionset("batch", 2, cmd="python", args="-c print(42)", policy="OnFailure"))
    rig.passes(6, every=10)
    assert status(rig, "batch")["complete"]
    assert condition(rig, "batch", "Complete")["status"] == "True"
    assert condition(rig, "batch", "Ready")["status"] == "True"
    assert gauge(rig, "canfar_controller_sessionset_condition",
                 {"sessionset": "batch", "condition": "Complete", "status": "True"}) == 1
    creates = [r for r in rig.requests("POST")]
    rig.passes(5, every=60)
    assert len(list(rig.requests("POST"))) == len(creates) == 2


def test_restart_runs_a_complete_set_afresh_without_touching_its_manifest(rig: Rig) -> None:
    start(rig, "batch", sessionset("batch", 2, cmd="true", policy="Never"))
    rig.passes(4, every=10)
    assert status(rig, "batch")["complete"]
    request_restart(rig.status_file, "batch")
    rig.passes(2, every=10)
    assert len(list(rig.requests("POST"))) == 4
    assert not rig.reconciler.requests.directory or not list(rig.reconciler.requests.directory.glob("restart.*"))


def test_a_set_whose_sessions_fail_at_once_is_crash_looping_with_the_evidence(rig: Rig) -> None:
    """Three early failures in half an hour: CrashLooping, with the last failure's output; restarts go on."""
    start(rig, "flaky", sessionset("flaky", 1, cmd="python", args="-c print(40404);exit(3)"))
    for _ in range(40):
        rig.run_pass()
        rig.clock.advance(15)
    crash = condition(rig, "flaky", "CrashLooping")
    assert crash["status"] == "True" and "40404" in crash["message"]
    assert gauge(rig, "canfar_controller_sessionset_condition",
                 {"sessionset": "flaky", "condition": "CrashLooping", "status": "True"}) == 1
    attempts = len(list(rig.requests("POST")))
    rig.passes(20, every=60)
    assert len(list(rig.requests("POST"))) > attempts  # it never gives up silently


def test_creates_wait_for_capacity_instead_of_piling_up_pending_sessions() -> None:
    """A 4-core cluster and a set of 6 two-core sessions: 2 run, the set waits, no session queues."""
    from pathlib import Path
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as root:
        rig = Rig(Path(root), service={"cores": 4, "ram_gb": 64})
        try:
            start(rig, "big", sessionset("big", 6, cmd="sleep", args="100000", cores=2, ram=2))
            rig.passes(5, every=10)
            live = [s for s in rig.truth() if s[2] in LIVE]
            assert len(live) == 2 and all(s[2] == "Running" for s in live)
            waiting = condition(rig, "big", "WaitingForCapacity")
            assert waiting["status"] == "True" and "needs 2 cores" in waiting["message"]
            assert len(list(rig.requests("POST"))) == 2
        finally:
            rig.close()


def test_without_statistics_creates_go_ahead_and_the_status_says_so(rig: Rig) -> None:
    rig.reconciler.platform.max_age = -1  # statistics are never fresh enough to plan with
    start(rig, "w", sessionset("w", 2, cmd="sleep", args="100000"))
    rig.passes(3)
    assert rig.live_by_slot("w").total() == 2
    assert condition(rig, "w", "WaitingForCapacity")["status"] == "Unknown"


def test_sessions_pending_too_long_are_reported_once_with_their_events() -> None:
    """A session that cannot be placed: reported as unschedulable after 10 min, once, with FailedScheduling."""
    from pathlib import Path
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as root:
        rig = Rig(Path(root), service={"cores": 4, "ram_gb": 64})
        try:
            rig.write("squat", sessionset("squat", 1, cmd="sleep", args="100000", cores=4))
            rig.run_pass()
            rig.clock.advance(SETTLE)
            rig.run_pass()
            # Someone else takes the cluster first: our session, created before, stays queued.
            rig.reconciler.options = type(rig.reconciler.options)(prefix="cc", check_capacity=False)
            rig.write("late", sessionset("late", 1, cmd="sleep", args="100000", cores=4))
            with capture_logs() as logs:
                rig.passes(3, every=1)
                rig.passes(30, every=30)
            reports = [e for e in logs if e.get("reason") == "Unschedulable"]
            assert len(reports) == 1 and reports[0]["events"]
            assert "FailedScheduling" in json.dumps(reports[0]["events"])
            assert condition(rig, "late", "WaitingForCapacity")["reason"] == "Unschedulable"
            assert gauge(rig, "canfar_controller_sessionset_unschedulable_sessions", {"sessionset": "late"}) == 1
        finally:
            rig.close()


def test_interactive_sessions_are_renewed_and_outlive_their_expiry() -> None:
    """Notebooks with a 4-hour expiry live through a whole day: renewed as their lifetime runs out."""
    from pathlib import Path
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as root:
        rig = Rig(Path(root), service={"session_expiry": 4 * 3600})
        rig.reconciler.options = type(rig.reconciler.options)(prefix="cc", session_expiry=4 * 3600)
        try:
            start(rig, "nb", sessionset("nb", 1, kind="notebook", cores=None, ram=None))
            rig.run_pass()
            first = {s[0] for s in rig.truth() if s[2] in LIVE}
            with capture_logs() as logs:
                rig.passes(24 * 4, every=900)
            assert {s[0] for s in rig.truth() if s[2] in LIVE} == first  # the same session, a day later
            renewed = [e for e in logs if e.get("reason") == "Renewed"]
            assert len(renewed) >= 5
            assert gauge(rig, "canfar_controller_sessions_renewed_total", {"sessionset": "nb"}) == len(renewed)
        finally:
            rig.close()


def test_without_renew_an_interactive_session_dies_at_its_expiry_and_is_replaced() -> None:
    from pathlib import Path
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as root:
        rig = Rig(Path(root), service={"session_expiry": 3600})
        rig.reconciler.options = type(rig.reconciler.options)(prefix="cc", session_expiry=3600)
        try:
            start(rig, "nb", sessionset("nb", 1, kind="notebook", cores=None, ram=None, extra="  renew: false\n"))
            rig.run_pass()
            first = {s[0] for s in rig.truth() if s[2] in LIVE}
            rig.passes(12, every=600)
            now = {s[0] for s in rig.truth() if s[2] in LIVE}
            assert len(now) == 1 and now != first  # it died at its expiry and was replaced
            assert not [r for r in rig.simulator.requests if r.param("action") == "renew"]
        finally:
            rig.close()


def test_a_refused_renew_is_reported_and_never_destroys(rig: Rig) -> None:
    start(rig, "nb", sessionset("nb", 1, kind="notebook", cores=None, ram=None))
    rig.run_pass()
    rig.simulator.inject_fault("POST", "/session/*", status=400, count=None)
    rig.clock.advance(3.5 * 86400)  # past the point where renewal is due: less than a day of 4 left
    with capture_logs() as logs:
        rig.run_pass()
    assert [e["reason"] for e in logs if e.get("reason") in ("FailedRenew", "Renewed")] == ["FailedRenew"]
    assert list(rig.requests("DELETE")) == []


@pytest.mark.parametrize("strategy", ["OnCompletion", "Recreate", "RollingUpdate"])
def test_a_template_change_replaces_sessions_as_the_strategy_says(rig: Rig, strategy: str) -> None:
    """OnCompletion never kills a running job; Recreate empties the set first; RollingUpdate surges."""
    extra = f"  updateStrategy:\n    type: {strategy}\n"
    start(rig, "jobs", sessionset("jobs", 4, cmd="sleep", args="600", extra=extra))
    rig.passes(3)
    old = {s[0] for s in rig.truth() if s[2] in LIVE}
    assert len(old) == 4
    rig.write("jobs", sessionset("jobs", 4, cmd="sleep", args="600", extra=extra, revision=2))
    with capture_logs() as logs:
        rig.run_pass()
        rig.clock.advance(SETTLE)
        rig.run_pass()
        # Destroying running sessions waits until the file has been unchanged for --destructive-settle.
        assert list(rig.requests("DELETE")) == []
        rig.clock.advance(DESTRUCTIVE_SETTLE)
        rig.passes(3)
        deleted = {r.path.rsplit("/", 1)[-1] for r in rig.requests("DELETE")}
        if strategy == "OnCompletion":
            assert deleted == set() and condition(rig, "jobs", "Progressing")["reason"] == "OnCompletion"
        elif strategy == "Recreate":
            assert deleted == old
        else:
            assert len(deleted) < 4  # one slot at a time (25% of 4)
        rig.passes(30, every=30)  # long enough for the old jobs to finish their 600 s
    killed = [e for e in logs if e.get("reason") == "Pruned" and e.get("cause") == "outdated"]
    assert (killed == []) == (strategy == "OnCompletion")  # OnCompletion never kills a running job
    live = rig.live_by_slot("jobs")
    assert sorted(slot for _, slot in live) == [1, 2, 3, 4]
    assert len({template for template, _ in live}) == 1


def test_a_failed_list_keeps_the_last_known_status(rig: Rig) -> None:
    """The list fails: the status file and metrics still show the sessions last seen, not empty sets."""
    start(rig, "w", sessionset("w", 3, cmd="sleep", args="100000"))
    rig.passes(3)
    rig.simulator.inject_fault("GET", "/session", status=500)
    assert rig.run_pass().result == "error"
    row = status(rig, "w")
    assert row["running"] == 3 and condition(rig, "w", "Ready")["status"] == "True"
    assert json.loads(rig.status_file.read_text())["result"] == "error"
    assert gauge(rig, "canfar_controller_sessions", {"sessionset": "w", "status": "Running"}) == 3


def test_a_restart_request_that_cannot_be_removed_is_applied_once(rig: Rig) -> None:
    start(rig, "batch", sessionset("batch", 1, cmd="true", policy="Never"))
    rig.passes(3, every=10)
    assert status(rig, "batch")["complete"]
    requests = rig.reconciler.requests.directory
    assert requests is not None
    (requests / "restart.batch").mkdir(parents=True)  # a directory: it cannot be unlinked
    rig.passes(6, every=10)
    assert len(list(rig.requests("POST"))) == 2  # one restart, not one per pass


def test_audit_events_carry_the_pass_and_the_set_they_belong_to(rig: Rig) -> None:
    """``jq 'select(.pass_id == 3 and .sessionset == "w")'`` finds a pass's actions on a set."""
    from structlog.contextvars import merge_contextvars

    start(rig, "w", sessionset("w", 2, cmd="sleep", args="100000"))
    with capture_logs(processors=[merge_contextvars]) as logs:
        rig.run_pass()
    created = [e for e in logs if e.get("reason") == "SuccessfulCreate"]
    assert len(created) == 2
    assert all(e["sessionset"] == "w" and e["session"].startswith("cc-w-") and e["pass_id"] >= 1 for e in created)
    assert not [e for e in logs if e.get("event") == "pass done" and "session" in e]  # bound per action only
