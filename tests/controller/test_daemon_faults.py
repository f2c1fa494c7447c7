"""The real daemon process under the service faults that threaten duplicates, over loopback HTTP.

The in-process tier (tests/reliability) proves each guarantee on a manual clock; these tests show
the same guarantees hold with a real process, real signals, real sockets and real time: the
simulator answers slowly, or with a 504 while it still creates the session later.
"""

from __future__ import annotations

import collections
import signal

import pytest

from tests.controller.conftest import manifest, wait_until
from tests.controller.test_daemon import running_slots, slots

pytestmark = pytest.mark.slow


def creates(service, set_name="workers"):
    return [r for r in service.requests("POST") if (r.param("name") or "").startswith(f"cc-{set_name}-")]


def test_kill_9_during_slow_creates_then_restart_makes_no_duplicate(service, state, daemon):
    """Creates take 1.5 s each; the daemon is killed while they are on the wire and started again."""
    service.simulator.inject_delay("POST", "/session", seconds=1.5, count=None, apply="after")
    (state / "workers.yaml").write_text(manifest("workers", 6))
    first = daemon()
    wait_until(lambda: service.simulator.in_flight() >= 2, what="slow creates on the wire")
    first.stop(signal.SIGKILL)
    service.simulator.clear_faults()
    second = daemon()
    wait_until(lambda: running_slots(service) == [1, 2, 3, 4, 5, 6], timeout=40, what="6 distinct running slots")
    second.wait_passes(3)
    assert collections.Counter(slots(service.live())) == collections.Counter(range(1, 7))
    created = collections.Counter(c.name for c in service.simulator.created)
    assert max(created.values()) == 1  # no slot was ever created twice
    # Passes that outlast the interval do not make the scheduler complain on every tick.
    assert "maximum number of running instances" not in first.log_file.read_text()


def test_sigterm_lets_slow_creates_finish_and_a_restart_finds_them(service, state, daemon):
    """SIGTERM while creates are in flight: they finish within the grace period, nothing new is sent."""
    service.simulator.inject_delay("POST", "/session", seconds=1.0, count=None, apply="after")
    (state / "workers.yaml").write_text(manifest("workers", 8))
    process = daemon()
    wait_until(lambda: service.simulator.in_flight() >= 1, what="slow creates on the wire")
    assert process.stop(signal.SIGTERM) == 0
    sent = len(creates(service))
    assert service.simulator.in_flight() == 0  # every call in flight was answered before the exit
    assert all(r.status == 200 for r in creates(service))
    assert service.requests("DELETE") == []
    service.simulator.clear_faults()
    daemon()
    wait_until(lambda: running_slots(service) == list(range(1, 9)), timeout=30, what="8 running slots")
    assert len(creates(service)) == 8 and sent < 8


def test_sigterm_with_creates_slower_than_the_grace_keeps_them_expected(service, state, daemon):
    """Creates that outlast the grace period are cancelled; the restarted daemon waits for them by name."""
    service.simulator.inject_delay("POST", "/session", seconds=7.0, count=2, apply="after")
    (state / "workers.yaml").write_text(manifest("workers", 2))
    process = daemon()
    wait_until(lambda: service.simulator.in_flight() >= 1, what="slow creates on the wire")
    assert process.stop(signal.SIGTERM) == 0
    second = daemon()
    wait_until(lambda: running_slots(service) == [1, 2], timeout=30, what="both slots running")
    second.wait_passes(3)  # passes after convergence: a create sent again would show up here
    assert len(creates(service)) == 2  # the slow creates landed and were found: none sent again
    assert collections.Counter(slots(service.live())) == collections.Counter([1, 2])


def test_a_504_whose_create_still_happens_makes_no_duplicate(service, state, daemon):
    """The gateway times out; the service creates the session 3 s later; the slot gets one session."""
    service.simulator.inject_fault("POST", "/session", status=504, apply_after=3.0 * 20, count=2)
    (state / "workers.yaml").write_text(manifest("workers", 2))
    process = daemon()
    wait_until(lambda: running_slots(service) == [1, 2], timeout=30, what="both slots running")
    process.wait_passes(4)
    assert len(creates(service)) == 2
    assert collections.Counter(slots(service.live())) == collections.Counter([1, 2])
    audit = process.log_file.read_text()
    assert "CreateUncertain" in audit


def test_a_partial_list_answer_does_not_double_the_set(service, state, daemon):
    """For a few passes the list loses half its rows: nothing is created for the missing ones."""
    (state / "workers.yaml").write_text(manifest("workers", 10))
    process = daemon()
    wait_until(lambda: running_slots(service) == list(range(1, 11)), what="10 running slots")
    process.wait_passes(2)
    before = len(creates(service))
    service.simulator.inject_list_fault("partial", count=3, keep=0.5)
    process.wait_passes(5)
    assert len(creates(service)) == before
    assert collections.Counter(slots(service.live())) == collections.Counter(range(1, 11))


def test_lists_that_leave_out_the_same_sessions_double_nothing(service, state, daemon):
    """The issue's case with the real process: every list leaves out the same sessions while the service
    still has them. Each is looked up once by id, found live, and its slot held: nothing is created or
    destroyed (it used to create a replacement for each, beside the original)."""
    (state / "workers.yaml").write_text(manifest("workers", 12))
    process = daemon()
    wait_until(lambda: running_slots(service) == list(range(1, 13)), what="12 running slots")
    process.wait_passes(2)
    before = len(creates(service))
    mark = max(r.seq for r in service.simulator.requests)
    service.simulator.inject_list_fault("consistent", count=None, keep=0.5, seed=3)
    process.wait_passes(8)
    looked_up = collections.Counter(r.path.rsplit("/", 1)[-1] for r in service.requests("GET")
                                    if r.seq > mark and "/session/" in r.path and r.param("view") is None)
    assert looked_up and set(looked_up.values()) == {1}, looked_up
    assert len(creates(service)) == before and not [r for r in service.requests("DELETE") if r.seq > mark]
    assert "the list left out a session the service still has" in process.log_tail(200)
    service.simulator.clear_faults()  # the test's own view of the sessions goes through the list too
    assert collections.Counter(slots(service.live())) == collections.Counter(range(1, 13))
