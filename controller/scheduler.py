"""APScheduler's asyncio scheduler, with its jobs measured on the monotonic clock.

APScheduler 3.x keeps each job's next run as a wall-clock ``datetime`` and compares it with
``datetime.now()`` whenever it wakes (its timer itself is the event loop's, which is monotonic).
So a step of the wall clock moves every job: a step back by 2 h leaves the next pass, and the
state-directory watch, 2 h away (the loop stops), a step forward makes them all due at once.

``SteadyScheduler`` looks at a ``StepWatch`` each time it wakes, before it looks for due jobs (and
before a job is added), and moves every job's next run by the step: the jobs keep the spacing they had on the monotonic
clock. It wakes at least every half second (the watch job), so a step is caught within that.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from controller.clock import StepWatch


class SteadyScheduler(AsyncIOScheduler):  # type: ignore[misc]  # APScheduler has no type hints
    """An ``AsyncIOScheduler`` whose jobs follow wall-clock steps; ``on_step(seconds)`` hears of each once."""

    def __init__(self, watch: StepWatch, on_step: Callable[[float], None], **options: Any) -> None:
        super().__init__(**options)
        self._watch = watch
        self._on_step = on_step

    def follow_steps(self) -> None:
        """Look for a step of the wall clock now, and move every job by it.

        Called when the scheduler wakes, and before a job is added at ``datetime.now() + delay``: a
        job added on the stepped clock must not be moved by that step afterwards.
        """
        step = self._watch.look()
        if step is None:
            return
        delta = timedelta(seconds=step)
        for job in self.get_jobs():
            if job.next_run_time is not None:
                job.modify(next_run_time=job.next_run_time + delta)
        self._on_step(step)

    def _process_jobs(self) -> float | None:
        # The one place every scheduler of APScheduler 3.x calls when it wakes, before it looks for due jobs.
        self.follow_steps()
        result: float | None = super()._process_jobs()
        return result
