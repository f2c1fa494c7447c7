"""The daemon: APScheduler drives passes, one at a time, forever, and stops safely.

- The reconcile job runs on an interval with jitter, ``max_instances=1`` and ``coalesce=True``,
  so passes never overlap and missed runs collapse into one.
- A cheap watch polls the state directory's fingerprint twice a second; a change (or SIGHUP, or
  a pass that left work behind) pulls the next pass forward to now. Polling rather than inotify
  also sees Kubernetes ConfigMap updates, which swap a symlink.
- Platform stats are their own job on their own interval; a failure there is counted and logged
  and never touches the reconcile loop.
- SIGTERM/SIGINT: no new job or call starts, the call in flight finishes, the process exits within
  a few seconds. Stopping never destroys anything: the pass simply ends early.
- One writer per state directory: an exclusive ``flock`` on the directory itself, which works on a
  read-only mount too.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from controller.errors import APIError, LockError
from controller.observability.health import HealthState
from controller.observability.metrics import ControllerMetrics
from controller.reconcile import PassOutcome, Reconciler
from controller.statedir import fingerprint

WATCH_PERIOD = 0.5
#: How long a stop waits for the call in flight before cancelling it.
STOP_GRACE = 5.0


@dataclass(frozen=True)
class Schedule:
    interval: float = 30.0
    stats_interval: float = 60.0
    jitter_fraction: float = 0.1


def lock_state_dir(directory: Path) -> int:
    """Take the single-writer lock; raises ``LockError`` naming the directory if it is taken."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockError(
            f"another canfar-controller is already managing {directory}; "
            "only one controller may act on a state directory at a time"
        ) from None
    return fd


class Daemon:
    def __init__(
        self,
        reconciler: Reconciler,
        *,
        schedule: Schedule,
        metrics: ControllerMetrics,
        health: HealthState,
        state_dir: Path,
    ) -> None:
        self.reconciler = reconciler
        self.schedule = schedule
        self.metrics = metrics
        self.health = health
        self.state_dir = state_dir
        self._log = structlog.get_logger("canfar_controller")
        self._stopped = asyncio.Event()
        self._fingerprint: Any = None
        self._pass_task: asyncio.Task[PassOutcome] | None = None
        self._scheduler: AsyncIOScheduler | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.wake, "SIGHUP")
        scheduler = AsyncIOScheduler(event_loop=loop, job_defaults={"coalesce": True, "max_instances": 1,
                                                                     "misfire_grace_time": None})
        self._scheduler = scheduler
        jitter = self.schedule.interval * self.schedule.jitter_fraction
        scheduler.add_job(self._reconcile, IntervalTrigger(seconds=self.schedule.interval, jitter=jitter),
                          id="reconcile", next_run_time=datetime.now())
        scheduler.add_job(self._watch, IntervalTrigger(seconds=WATCH_PERIOD), id="watch")
        scheduler.add_job(self._stats, IntervalTrigger(seconds=self.schedule.stats_interval), id="stats",
                          next_run_time=datetime.now())
        self._fingerprint = fingerprint(self.state_dir)
        scheduler.start()
        self._log.info("controller started", state=str(self.state_dir), interval=self.schedule.interval,
                       dry_run=self.reconciler.dry_run, prefix=self.reconciler.options.prefix)
        await self._stopped.wait()
        scheduler.shutdown(wait=False)
        await self._finish_pass()
        self._log.info("controller stopped")
        return 0

    def stop(self, why: str = "stop") -> None:
        """Start nothing new; the pass in flight ends after its current calls."""
        if not self._stopped.is_set():
            self._log.info("stopping", signal=why)
            self.reconciler.stopping.set()
            self._stopped.set()

    def wake(self, why: str) -> None:
        """Run the next pass now (manifest change, SIGHUP, work left over)."""
        if self._scheduler is None or self._stopped.is_set():
            return
        self._log.info("pass requested", cause=why)
        job = self._scheduler.get_job("reconcile")
        if job is not None:
            job.modify(next_run_time=datetime.now() + timedelta(milliseconds=10))

    async def _reconcile(self) -> None:
        if self._stopped.is_set():
            return
        self._pass_task = asyncio.ensure_future(self.reconciler.run_pass())
        try:
            # Shielded: a scheduler shutdown cancels this job, but the pass must finish its call.
            outcome = await asyncio.shield(self._pass_task)
        except asyncio.CancelledError:
            return
        except Exception:  # a bug must not kill the loop: log it, count it, go on
            self._log.exception("pass crashed")
            self.metrics.reconcile_done("error", 0.0, time.time())
            return
        finally:
            self._pass_task = None
        self.health.pass_completed()
        if not any(e.path == str(self.state_dir) for e in outcome.desired.errors):
            self.health.manifests_loaded()
        if outcome.list_ok:
            self.health.list_succeeded()
        if outcome.more_work:
            self.wake("work remains")

    async def _finish_pass(self) -> None:
        task = self._pass_task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception:  # already logged by _reconcile
            pass

    async def _watch(self) -> None:
        current = fingerprint(self.state_dir)
        if current != self._fingerprint:
            self._fingerprint = current
            self.wake("state directory changed")

    async def _stats(self) -> None:
        try:
            stats = await self.reconciler.client.stats()
        except APIError as exc:
            self.metrics.stats_failed()
            self._log.warning("stats call failed; keeping the last values", error=str(exc))
            return
        self.metrics.record_stats(stats, time.time())
