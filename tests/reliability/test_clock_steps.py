"""A wall-clock step either way (NTP, a resumed VM) changes nothing the controller does (in-process).

``Rig.wall`` is what the controller reads as the wall clock; the manual clock stays its monotonic
time and the service's clock, so a step here is what libfaketime does to the real process
(``tests/controller/test_clock_steps.py`` does that, with the real scheduler).
"""

from __future__ import annotations

import asyncio
import json
import time

import structlog

from controller.clock import ProcessClock
from controller.daemon import Daemon, Schedule
from controller.outcome import OutcomeHandler
from controller.plan import UNCERTAIN_WINDOW
from controller.statedir import SETTLE_WINDOW
from tests.reliability.rig import Rig, manifest, owned

HOURS_2 = 7200.0


def posts(rig: Rig, set_name: str, slot: int | None = None) -> list[str]:
    names = [r.param("name") or "" for r in rig.simulator.requests if r.method == "POST" and r.path == "/session"]
    return [name for name in names if (parts := owned(name)) is not None and parts[0] == set_name
            and (slot is None or parts[2] == slot)]


def converge(rig: Rig, name: str, replicas: int) -> None:
    rig.write(name, manifest(name, replicas))
    rig.run_pass()
    rig.clock.advance(SETTLE_WINDOW)
    rig.passes(3)
    assert rig.live_by_slot(name).total() == replicas


def uncertain_second_slot(rig: Rig) -> None:
    """One session runs; the create of a second one is answered 503 and never happens (uncertain)."""
    converge(rig, "workers", 1)
    rig.simulator.inject_fault("POST", "/session", status=503)  # never applied
    rig.write("workers", manifest("workers", 2))
    rig.run_pass()
    rig.clock.advance(SETTLE_WINDOW)
    assert rig.run_pass().uncertain["workers"] == 1


def test_a_step_forward_does_not_end_an_uncertain_creates_window(rig: Rig) -> None:
    """+2 h while a 504'd create is pending: the slot still waits its window; the late session is the only one."""
    converge(rig, "workers", 2)
    rig.simulator.inject_fault("POST", "/session", status=504, apply_after=40.0)
    rig.write("workers", manifest("workers", 3))
    rig.run_pass()
    rig.clock.advance(SETTLE_WINDOW)
    assert rig.run_pass().uncertain["workers"] == 1
    rig.wall.step(HOURS_2)
    for _ in range(12):  # a minute of passes, across the moment the create lands
        rig.clock.advance(5)
        rig.run_pass()
        assert max(rig.live_by_slot("workers").values()) == 1
    assert len(posts(rig, "workers", 3)) == 1 and rig.live_by_slot("workers").total() == 3


def test_a_step_forward_still_refills_a_slot_only_after_the_window(rig: Rig) -> None:
    """The window is measured on the monotonic clock: +2 h neither ends it nor stretches it."""
    uncertain_second_slot(rig)
    rig.wall.step(HOURS_2)
    rig.clock.advance(UNCERTAIN_WINDOW - 10)
    rig.passes(2, every=1)
    assert len(posts(rig, "workers", 2)) == 1  # still inside the window
    rig.clock.advance(20)
    rig.passes(2, every=1)
    assert len(posts(rig, "workers", 2)) == 2 and rig.live_by_slot("workers").total() == 2


def test_after_a_step_back_a_changed_manifest_still_acts_after_its_settle_window(rig: Rig) -> None:
    """-2 h between reading a change and acting on it: it settles 1 s later, not 2 h later."""
    converge(rig, "workers", 2)
    rig.write("workers", manifest("workers", 4))
    assert rig.run_pass().desired.unsettled
    rig.wall.step(-HOURS_2)
    rig.clock.advance(SETTLE_WINDOW)
    outcome = rig.passes(2)
    assert not outcome.desired.unsettled and rig.live_by_slot("workers").total() == 4


def refused_once(rig: Rig) -> None:
    """A set whose creates the service refuses, refused once: it backs off from now."""
    rig.simulator.inject_fault("POST", "/session", status=400, name="cc-bad-*", count=None)
    rig.write("bad", manifest("bad", 1))
    rig.run_pass()
    rig.clock.advance(SETTLE_WINDOW)
    rig.run_pass()


def test_a_back_off_set_before_a_step_forward_ends_on_time_after_the_clock_returns(rig: Rig) -> None:
    """Refused creates back off 5 s, then 10 s, on the monotonic clock, whatever the wall clock does."""
    refused_once(rig)
    assert len(posts(rig, "bad")) == 1
    rig.wall.step(HOURS_2)
    rig.clock.advance(2)
    rig.run_pass()
    assert len(posts(rig, "bad")) == 1  # the 5 s back-off still holds: the step did not end it
    rig.wall.step(-HOURS_2)  # the clock returns
    rig.clock.advance(4)  # 6 s after the refusal: more than 5 s + 10 % jitter
    rig.run_pass()
    assert len(posts(rig, "bad")) == 2  # ended on time, not 2 h later
    rig.clock.advance(11.5)
    rig.run_pass()
    assert len(posts(rig, "bad")) == 3


def test_what_is_shown_follows_the_wall_clock(rig: Rig) -> None:
    """After +2 h the status file's time and a back-off's end read on the wall clock, as `status` compares them."""
    refused_once(rig)
    rig.wall.step(HOURS_2)
    rig.clock.advance(1)
    rig.run_pass()
    status = json.loads(rig.status_file.read_text())
    assert status["updated_at"] == rig.wall()
    assert rig.wall() < status["sets"]["bad"]["backoff_until"] < rig.wall() + 5
    failing = next(c for c in status["sets"]["bad"]["conditions"] if c["type"] == "CreateFailing")
    assert rig.wall() - 5 < failing["lastTransitionTime"] <= rig.wall()


def test_a_restart_after_a_step_back_re_bases_what_was_persisted(rig: Rig) -> None:
    """The new process anchors on the stepped-back clock: the back-off ends within its wait, the uncertain
    create's window starts again in full (never shorter), and nothing waits 2 h."""
    converge(rig, "workers", 1)
    rig.simulator.inject_fault("POST", "/session", status=400, name="cc-bad-*", count=None)
    rig.simulator.inject_fault("POST", "/session", status=503, name="cc-workers-*")  # never applied
    rig.write("bad", manifest("bad", 1))
    rig.write("workers", manifest("workers", 2))
    rig.run_pass()
    rig.clock.advance(SETTLE_WINDOW)
    rig.run_pass()
    assert (len(posts(rig, "bad")), len(posts(rig, "workers", 2))) == (1, 1)
    rig.wall.step(-HOURS_2)
    rig.restart()
    rig.run_pass()  # a new process reads its manifests afresh: they settle first
    rig.clock.advance(6)
    rig.run_pass()
    assert len(posts(rig, "bad")) == 2  # the back-off did not become 2 h long
    rig.clock.advance(UNCERTAIN_WINDOW - 10)
    rig.passes(2, every=1)
    assert len(posts(rig, "workers", 2)) == 1  # the window restarted at the restart: not cut short
    rig.clock.advance(20)
    rig.passes(2, every=1)
    assert len(posts(rig, "workers", 2)) == 2  # and not 2 h long either


def test_a_restart_after_a_step_forward_does_not_cut_an_uncertain_creates_window_short(rig: Rig) -> None:
    """The old process saw +2 h and said so in its ledger: the new one, anchored 2 h later, still waits."""
    uncertain_second_slot(rig)
    rig.wall.step(HOURS_2)
    rig.clock.advance(5)
    rig.run_pass()
    rig.restart()
    rig.run_pass()
    rig.clock.advance(SETTLE_WINDOW)
    rig.passes(3, every=20)
    assert len(posts(rig, "workers", 2)) == 1  # 46 s after the create: inside its window
    rig.clock.advance(UNCERTAIN_WINDOW)
    rig.passes(2, every=1)
    assert len(posts(rig, "workers", 2)) == 2 and rig.live_by_slot("workers").total() == 2


def test_the_daemon_logs_a_step_once_and_its_passes_go_on(rig: Rig) -> None:
    """The real daemon and scheduler, on real time, with a wall clock that steps back 2 h: one warning."""
    rig.write("workers", manifest("workers", 1))
    wall = Stepping()
    handler = OutcomeHandler(metrics=rig.metrics, interval=0.1)
    daemon = Daemon(rig.reconciler, handler, schedule=Schedule(interval=0.1, stats_interval=60.0),
                    metrics=rig.metrics, state_dir=rig.state, clock=ProcessClock(wall=wall))
    passes: list[int] = []

    async def scenario() -> None:
        running = asyncio.ensure_future(daemon.run())
        await until(lambda: len(passes_done(rig)) >= 2)
        passes.append(len(passes_done(rig)))
        wall.offset -= HOURS_2
        await asyncio.sleep(1.0)
        passes.append(len(passes_done(rig)))
        daemon.stop()
        await running

    with structlog.testing.capture_logs() as logs:
        rig.loop.run_until_complete(scenario())
    steps = [line for line in logs if line["event"].startswith("the wall clock stepped")]
    assert [(line["step_seconds"], line["direction"], line["log_level"]) for line in steps] == [
        (-HOURS_2, "back", "warning")]
    assert passes[1] - passes[0] >= 3  # about ten passes at 0.1 s: the loop did not stop


class Stepping:
    """The real wall clock plus an offset a test changes."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def passes_done(rig: Rig) -> list[object]:
    return [r for r in rig.simulator.requests if r.method == "GET" and r.path == "/session"
            and r.param("view") is None]


async def until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
