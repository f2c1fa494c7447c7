"""Process time: epoch-like seconds that never jump, and the watch that notices the wall clock step.

Every interval, window and back-off inside a running controller (the uncertain-create window,
create and destroy back-offs, settle windows, restart delays, stuck and pending limits) is a
difference of two readings of one clock. ``time.time`` is the wrong clock for that: NTP or a
resumed VM may step it by hours, and a step back then stalls every wait, a step forward ends a
safety window at once. ``ProcessClock`` reads like ``time.time`` (so the planner's times stay
epoch seconds, comparable with the service's start and expiry times, and fit to persist) but runs
at the speed of a steady clock from a wall-clock anchor taken when the process started: a step of
the wall clock moves nothing inside the process. The steady source is ``CLOCK_BOOTTIME`` where
there is one: unlike ``CLOCK_MONOTONIC`` it goes on counting while the machine is suspended, so
the sessions' real ageing during a suspend is not hidden from the controller.

The wall clock is used for what is shown (the status file's time, Unix-time metrics), and, across a
restart, to re-base what was persisted (``controller.rebase``): a new process takes a new anchor.
``StepWatch`` compares the two clocks at each look and reports a step (more than
``STEP_TOLERANCE``) once; the daemon logs it and moves its scheduler's jobs by it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: A change of (wall - process time) larger than this between two looks is a step, not drift.
STEP_TOLERANCE = 2.0


def _steady_source() -> Callable[[], float]:
    """``CLOCK_BOOTTIME`` (counts a suspend) where the platform has it, else ``time.monotonic``."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic
    return lambda: time.clock_gettime(boottime)


class ProcessClock:
    """Callable like ``time.time``, but it runs at ``steady`` speed from the wall clock at construction."""

    def __init__(self, *, wall: Callable[[], float] = time.time, steady: Callable[[], float] | None = None) -> None:
        self.wall = wall
        self._steady = steady if steady is not None else _steady_source()
        self._anchor_steady = self._steady()
        self._anchor_wall = wall()

    def __call__(self) -> float:
        return self._anchor_wall + (self._steady() - self._anchor_steady)

    def offset(self) -> float:
        """How far the wall clock is ahead of process time now (0 until the wall clock steps)."""
        return self.wall() - self()


class StepWatch:
    """Reports each step of the wall clock against a ``ProcessClock`` once, with its size.

    The reference is taken again at every look, so the slow drift of an NTP slew never adds up to a
    step; a step is a change larger than ``tolerance`` between two looks.
    """

    def __init__(self, clock: ProcessClock, *, tolerance: float = STEP_TOLERANCE) -> None:
        self.clock = clock
        self.tolerance = tolerance
        self._offset = clock.offset()

    def look(self) -> float | None:
        """Seconds the wall clock stepped since the last look (forward is positive), or ``None``."""
        offset = self.clock.offset()
        step, self._offset = offset - self._offset, offset
        return step if abs(step) > self.tolerance else None


#: The controller's process time: the default clock of everything that measures intervals.
process_time = ProcessClock()


def file_clock() -> float:
    """Now, for the age of a file's mtime (a wall-clock time): the earlier of the wall clock and process time.

    Whether a file was written before or after a step of the wall clock, an age measured from this
    is never longer than the file's real age, so a step forward never makes a file that is still
    being written look settled.
    """
    return min(process_time.wall(), process_time())
