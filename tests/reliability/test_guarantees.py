"""Each safety guarantee, shown once with the fault that threatens it (in-process, manual clock).

The randomized soak (``test_soak.py``) mixes all of these; here each one is isolated so that a
failure says which promise broke.
"""

from __future__ import annotations

import itertools
import json

import pytest

from controller.plan import UNCERTAIN_WINDOW
from tests.reliability.rig import LIVE, Rig, manifest, owned

SETTLE = 1.0


def converge(rig: Rig, name: str = "workers", replicas: int = 3) -> None:
    """Write a set, let the manifest settle and the sessions start."""
    rig.write(name, manifest(name, replicas))
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.passes(3)
    assert rig.live_by_slot(name).total() == replicas


def posts(rig: Rig, prefix: str = "cc-") -> list[str]:
    return [r.param("name") for r in rig.simulator.requests
            if r.method == "POST" and r.path == "/session" and (r.param("name") or "").startswith(prefix)]


def test_a_create_answered_504_but_applied_later_makes_no_second_session(rig: Rig) -> None:
    """The gateway says 504, the service creates it 20 s later: the slot still gets one session."""
    rig.write("workers", manifest("workers", 1))
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.simulator.inject_fault("POST", "/session", status=504, apply_after=20.0)
    outcome = rig.run_pass()
    assert outcome.uncertain["workers"] == 1 and outcome.result == "partial"
    for _ in range(12):  # a minute of passes, across the moment the create lands
        rig.clock.advance(5)
        rig.run_pass()
        assert max(rig.live_by_slot("workers").values(), default=0) <= 1
    assert len(posts(rig)) == 1 and rig.live_by_slot("workers").total() == 1


@pytest.mark.parametrize("status", [502, 503, None])
def test_an_uncertain_create_that_never_happened_is_retried_after_the_window(rig: Rig, status: int | None) -> None:
    """No session ever appears: after the documented window and two lists, the slot is filled."""
    rig.write("workers", manifest("workers", 1))
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.simulator.inject_fault("POST", "/session", status=status)
    rig.run_pass()
    rig.clock.advance(UNCERTAIN_WINDOW - 10)
    rig.run_pass()
    rig.run_pass()
    assert len(posts(rig)) == 1  # still inside the window
    rig.clock.advance(11)
    rig.run_pass()
    assert len(posts(rig)) == 2
    rig.clock.advance(5)
    rig.run_pass()
    assert rig.live_by_slot("workers").total() == 1


def test_an_answer_lost_after_the_create_happened_is_matched_by_name(rig: Rig) -> None:
    """The connection drops after the service created the session: it is found, not created again."""
    rig.write("workers", manifest("workers", 2))
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.simulator.inject_fault("POST", "/session", status=None, processed=True, count=2)
    rig.passes(6)
    assert len(posts(rig)) == 2 and rig.live_by_slot("workers").total() == 2


def test_a_late_create_beyond_the_window_is_removed_as_the_newer_duplicate(rig: Rig) -> None:
    """Applied after the window, the lost create makes a second session: the newer one is destroyed."""
    rig.write("workers", manifest("workers", 1))
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.simulator.inject_fault("POST", "/session", status=504, apply_after=UNCERTAIN_WINDOW + 60)
    rig.run_pass()
    rig.passes(45, every=5)  # the slot is refilled after the window; then the old create lands
    assert rig.live_by_slot("workers").total() == 1
    [kept] = [s for s in rig.truth() if s[2] in LIVE]
    first = next(c for c in rig.simulator.created if c.name == kept[1])
    assert kept[0] == first.session_id  # the older session stayed
    deleted = {r.path.rsplit("/", 1)[-1] for r in rig.requests("DELETE")}
    assert len(deleted) == 1 and kept[0] not in deleted


def test_a_kill_between_sending_creates_and_recording_them_makes_no_duplicate(rig: Rig) -> None:
    """kill -9 while slow creates are on the wire; the restarted controller finds them by name."""
    rig.write("workers", manifest("workers", 4))
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.simulator.inject_delay("POST", "/session", seconds=0.05, count=4, apply="after")
    assert rig.crash_mid_pass(in_flight=1)
    rig.clock.advance(SETTLE)
    rig.passes(8)
    assert sorted(rig.live_by_slot("workers").values()) == [1, 1, 1, 1]


def test_an_empty_list_changes_nothing_and_a_real_deletion_is_replaced_at_once(rig: Rig) -> None:
    """`200 []` while sessions run: no creates, no destroys; a session deleted by hand comes back in the
    first pass that misses it (the service, asked by id, confirms it is gone)."""
    converge(rig)
    before = len(posts(rig))
    rig.simulator.inject_list_fault("empty")
    outcome = rig.run_pass()
    assert outcome.plan is not None and outcome.plan.suspect and outcome.result == "error"
    assert len(posts(rig)) == before
    assert rig.metrics.registry.get_sample_value("canfar_controller_suspect_lists_total") == 1
    rig.clock.advance(5)
    assert rig.run_pass().result == "success"  # the sessions are listed again: nothing to do
    assert len(posts(rig)) == before
    victim = next(s for s in rig.truth() if s[2] in LIVE)
    rig.delete_outside(victim[0])
    rig.clock.advance(10)  # past the simulated Terminating
    rig.run_pass()
    assert len(posts(rig)) == before + 1  # missing, and the service answers 404 for it: replaced
    rig.run_pass()
    assert len(posts(rig)) == before + 1


def test_a_partial_list_does_not_double_a_set(rig: Rig) -> None:
    """Half the rows missing for a few passes: nothing is created; afterwards all is as before."""
    converge(rig, replicas=10)
    before = len(posts(rig))
    rig.simulator.inject_list_fault("partial", count=3, keep=0.5)
    rig.passes(5)
    assert len(posts(rig)) == before
    assert sorted(rig.live_by_slot("workers").values()) == [1] * 10


@pytest.mark.parametrize("mode", ["garbage", "truncated"])
def test_a_garbled_list_is_an_error_and_nothing_is_done(rig: Rig, mode: str) -> None:
    converge(rig)
    rig.simulator.inject_list_fault(mode)
    outcome = rig.run_pass()
    assert outcome.result == "error" and not outcome.list_ok and outcome.plan is not None and outcome.plan.blind


def test_a_torn_manifest_write_never_scales_a_set_down(rig: Rig) -> None:
    """'replicas: 12' read as 'replicas: 1' for a moment destroys nothing."""
    converge(rig, replicas=12)
    whole = manifest("workers", 12)
    rig.write("workers", whole[: whole.index("replicas: 12") + len("replicas: 1")])
    rig.run_pass()
    rig.clock.advance(0.5)
    rig.run_pass()
    rig.write("workers", whole)
    rig.clock.advance(0.5)
    rig.passes(4)
    assert list(rig.requests("DELETE")) == []
    assert rig.live_by_slot("workers").total() == 12


def test_a_refused_create_backs_off_while_other_sets_carry_on(rig: Rig) -> None:
    """400 for one set: its attempts space out 5 s, 10 s, 20 s...; the other set fills at once."""
    rig.write("bad", manifest("bad", 2))
    rig.write("good", manifest("good", 2))
    rig.simulator.inject_fault("POST", "/session", status=400, name="cc-bad-*", count=None)
    rig.run_pass()
    rig.clock.advance(SETTLE)
    for _ in range(60):
        rig.run_pass()
        rig.clock.advance(1)
    assert rig.live_by_slot("good").total() == 2
    attempts = [r.at for r in rig.requests("POST") if (r.param("name") or "").startswith("cc-bad-")]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) == 4  # at 0, ~5, ~15, ~35 s: not one per pass
    for gap, base in zip(gaps, (5, 10, 20), strict=True):
        assert base * 0.9 <= gap <= base * 1.1 + 1
    status = json.loads(rig.status_file.read_text())["sets"]["bad"]
    assert status["backoff_until"] and "simulated fault 400" in status["backoff_message"]
    assert rig.metrics.registry.get_sample_value(
        "canfar_controller_sessionset_backoff_seconds", {"sessionset": "bad"}) > 0


def test_a_fixed_manifest_or_sighup_ends_the_back_off(rig: Rig) -> None:
    rig.write("bad", manifest("bad", 1))
    rig.simulator.inject_fault("POST", "/session", status=400, name="cc-bad-*", count=3)
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.passes(2, every=1)
    assert len(posts(rig)) == 1
    rig.write("bad", manifest("bad", 1, revision=2))  # the user fixes the template
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.run_pass()
    assert len(posts(rig)) == 2
    rig.reconciler.reset_backoffs()  # SIGHUP
    rig.clock.advance(0.5)
    rig.run_pass()
    assert len(posts(rig)) == 3


def test_429_with_retry_after_pauses_every_create(rig: Rig) -> None:
    """The service says slow down for 30 s: no set creates until then, then all do."""
    rig.write("a", manifest("a", 3))
    rig.write("b", manifest("b", 3))
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.simulator.inject_fault("POST", "/session", status=429, retry_after=30)
    rig.run_pass()
    sent = len(posts(rig))
    assert sent <= 2  # the other set's first create may already be on its way
    rig.clock.advance(20)
    rig.run_pass()
    assert len(posts(rig)) == sent
    rig.clock.advance(11)
    rig.passes(3)
    assert rig.live_by_slot("a").total() == 3 and rig.live_by_slot("b").total() == 3
    failures = rig.metrics.registry.get_sample_value(
        "canfar_controller_create_failures_total", {"sessionset": "a", "reason": "TooManyRequests"}) or 0
    failures += rig.metrics.registry.get_sample_value(
        "canfar_controller_create_failures_total", {"sessionset": "b", "reason": "TooManyRequests"}) or 0
    assert failures == 1


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_an_unreadable_token_file_fails_the_pass_with_one_clear_line(rig: Rig, problem: str) -> None:
    """No traceback, nothing done; the status file, health and metrics say what is wrong."""
    converge(rig)
    if problem == "missing":
        rig.token_file.unlink()
    else:
        rig.token_file.write_text("  \n")
    before = len(rig.simulator.requests)
    outcome = rig.run_pass()
    assert outcome.result == "error" and str(rig.token_file) in (outcome.list_error or "")
    assert len(rig.simulator.requests) == before  # nothing was even sent
    status = json.loads(rig.status_file.read_text())
    assert status["result"] == "error" and any(str(rig.token_file) in e for e in status["errors"])
    assert str(rig.token_file) in rig.health.liveness()[1]
    assert rig.metrics.registry.get_sample_value("canfar_controller_reconcile_total", {"result": "error"}) == 1
    rig.token_file.write_text("rig-token")
    assert rig.run_pass().result == "success"


def test_a_failed_sessions_end_is_reported_once_however_long_its_destroy_fails(rig: Rig) -> None:
    """Logs and events are fetched once, and one Ended line is logged, across many failing destroys."""
    rig.write("batch", manifest("batch", 1, seconds=5).replace("cmd: sleep", "cmd: sleep"))
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.run_pass()
    rig.clock.advance(30)  # the session ran and completed
    rig.simulator.inject_fault("DELETE", "/session/*", status=500, count=None)
    rig.passes(30)  # 2.5 minutes: the failing destroy is retried with back-off (5 s, 10 s, 20 s, 40 s)
    fetches = [r for r in rig.requests("GET") if r.param("view") in ("logs", "events")]
    deletes = list(rig.requests("DELETE"))
    assert len(deletes) >= 5
    assert len(fetches) <= 2  # a Completed session has no evidence to fetch; a Failed one once


def test_an_unknown_memory_version_stops_the_controller_before_it_acts(rig: Rig) -> None:
    converge(rig)
    snapshot = rig.reconciler.ledger.snapshot if rig.reconciler.ledger else None
    assert snapshot is not None and snapshot.exists()
    snapshot.write_text(json.dumps({"version": 2}))
    from controller.errors import LedgerError

    with pytest.raises(LedgerError, match="version 2"):
        rig.restart()


def test_sessions_of_other_owners_are_never_touched(rig: Rig) -> None:
    foreign = [rig.add_foreign("analysis"), rig.add_foreign("cc"), rig.add_foreign("ccx-workers-abcdef-1")]
    converge(rig)
    rig.passes(5)
    touched = {r.path.rsplit("/", 1)[-1] for r in rig.requests("DELETE")}
    assert touched.isdisjoint(foreign)
    assert all(owned(name) is None or not name.startswith("cc-") for _, name, _ in rig.truth()
               if name in ("analysis", "cc", "ccx-workers-abcdef-1"))
