"""The daemon: APScheduler drives passes, one at a time, forever, and stops safely.

- Each pass schedules the next one: ``OutcomeHandler`` says when (at once when work was held back,
  when a manifest settles or a back-off ends, else after the interval with jitter). A pass never
  overlaps another, and a long pass does not make the scheduler skip ticks (and log it every tick).
- A cheap watch polls the state directory's fingerprint twice a second; a change, or SIGHUP,
  pulls the next pass forward to now. Polling rather than inotify also sees Kubernetes ConfigMap
  updates, which swap a symlink. SIGHUP also ends every create back-off and sends ignored destroys
  again at once (the cause may be fixed).
- Platform stats are their own job on their own interval (the first call beside the first pass's
  list, so creates are checked against capacity from the start); each call has its own short
  timeout (``STATS_TIMEOUT``, 5 s), so a hanging stats endpoint delays the first pass by that
  much at most, and it goes ahead as ``StatsUnavailable``; a failure there is counted and logged
  and never touches the reconcile loop.
- SIGTERM/SIGINT: nothing new starts, calls in flight get ``STOP_GRACE`` seconds to finish, then
  the pass is cancelled (a create cancelled mid-flight stays expected by name in the ledger), and
  the process exits. Stopping never destroys anything.
- Time inside the process cannot jump (``controller.clock``): the reconciler measures on process
  time, which runs at monotonic speed, and the scheduler's jobs follow a step of the wall clock
  (``controller.scheduler``), so NTP or a resumed VM neither stalls the loop nor ends a window
  early. A step is logged once, with its size.
- One writer per state directory: an exclusive ``flock`` on the directory itself, which works on a
  read-only mount too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.triggers.date import DateTrigger

from controller.clock import ProcessClock, StepWatch, process_time
from controller.errors import ControllerError, LockError
from controller.models import PlatformStats
from controller.observability.metrics import ControllerMetrics, failure_reason
from controller.observability.repeats import repeat_fields
from controller.outcome import OutcomeHandler, PassReport, run_one_pass
from controller.reconcile import Reconciler
from controller.scheduler import SteadyScheduler
from controller.statedir import fingerprint

WATCH_PERIOD = 0.5
#: How long a stop waits for the calls in flight before cancelling them.
STOP_GRACE = 5.0


@dataclass(frozen=True)
class Schedule:
    interval: float = 30.0
    stats_interval: float = 60.0


def lock_state_dir(directory: Path) -> int:
    """Take the single-writer lock; raises ``LockError`` naming the directory if it is taken."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = lock_holder(directory)
        holder = f"process {pid}" if pid is not None else "another process"
        raise LockError(
            f"another canfar-controller is already managing {directory} ({holder} holds the lock file "
            f"{directory.absolute()}, an flock on the state directory itself); "
            "only one controller may act on a state directory at a time"
        ) from None
    return fd


def lock_holder(directory: Path) -> int | None:
    """The PID holding the flock on ``directory``, from ``/proc/locks``; ``None`` where it cannot tell."""
    try:
        st = os.stat(directory)
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks", encoding="ascii") as locks:
            for line in locks:
                fields = line.split()  # "1: FLOCK ADVISORY WRITE <pid> <maj:min:inode> 0 EOF"; waiters have "->"
                if "FLOCK" in fields and "->" not in fields and key in fields:
                    return int(fields[fields.index(key) - 1])
    except (OSError, ValueError):
        pass
    return None


class Daemon:
    def __init__(
        self,
        reconciler: Reconciler,
        handler: OutcomeHandler,
        *,
        schedule: Schedule,
        metrics: ControllerMetrics,
        state_dir: Path,
        clock: ProcessClock = process_time,
    ) -> None:
        self.reconciler = reconciler
        self.handler = handler
        self.schedule = schedule
        self.metrics = metrics
        self.state_dir = state_dir
        self._log = structlog.get_logger("canfar_controller")
        self._stopped = asyncio.Event()
        self._fingerprint: Any = None
        self._pass_task: asyncio.Task[PassReport] | None = None
        self._wake_requested = False
        self._scheduler: SteadyScheduler | None = None
        self._steps = StepWatch(clock)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        scheduler = SteadyScheduler(self._steps, self._stepped, event_loop=loop,
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._scheduler = scheduler
        self._fingerprint = (fingerprint(self.state_dir), self.reconciler.requests.pending())
        scheduler.add_job(self._watch, "interval", seconds=WATCH_PERIOD, id="watch")
        # Asked for now, so that the first pass's creates are checked against capacity; the pass waits
        # for them after its list call, which goes out meanwhile.
        self.reconciler.platform.prefetch().add_done_callback(self._stats_fetched)
        self._later("stats", self._stats, self.schedule.stats_interval)
        self._later("reconcile", self._reconcile, 0.0)
        scheduler.start()
        self._log.info("controller started", state=str(self.state_dir), interval=self.schedule.interval,
                       dry_run=self.reconciler.dry_run, prefix=self.reconciler.options.prefix)
        await self._stopped.wait()
        scheduler.shutdown(wait=False)
        await self._finish_pass()
        self._log.info("controller stopped")
        return 0

    def stop(self, why: str = "stop") -> None:
        """Start nothing new; the pass in flight gets ``STOP_GRACE`` seconds to finish its calls."""
        if not self._stopped.is_set():
            self._log.info("stopping", signal=why)
            self.reconciler.request_stop()
            self._stopped.set()

    def wake(self, why: str) -> None:
        """Run the next pass now (manifest change, SIGHUP); after the current one if one is running."""
        if self._scheduler is None or self._stopped.is_set():
            return
        self._log.info("pass requested", cause=why)
        if self._pass_task is not None:
            self._wake_requested = True
            return
        self._scheduler.follow_steps()  # a step not yet seen must not move the job set now
        job = self._scheduler.get_job("reconcile")
        if job is not None:
            job.modify(next_run_time=datetime.now() + timedelta(milliseconds=10))

    def _hangup(self) -> None:
        self.reconciler.reset_backoffs()
        self.wake("SIGHUP")

    def _later(self, job_id: str, job: Callable[[], Coroutine[Any, Any, None]], seconds: float) -> None:
        """(Re)schedule a one-shot job: each run schedules the next, so runs never overlap."""
        if self._scheduler is None or self._stopped.is_set():
            return
        # Two instances: the run scheduling its successor is still counted as running, and passes
        # cannot overlap anyway (each is scheduled only when the previous one is done).
        self._scheduler.follow_steps()  # a step not yet seen must not move the job added now
        self._scheduler.add_job(job, DateTrigger(datetime.now() + timedelta(seconds=seconds)), id=job_id,
                                replace_existing=True, max_instances=2)

    def _stepped(self, seconds: float) -> None:
        """The wall clock stepped: said once; nothing the controller measures moved with it."""
        self._log.warning("the wall clock stepped: intervals, windows and back-offs keep running on the monotonic "
                          "clock; times shown and persisted follow the wall clock",
                          step_seconds=round(seconds, 1), direction="forward" if seconds > 0 else "back")
        if self._pass_task is None:  # a pass in flight saves it when it ends
            self.reconciler.save_clock_offset()

    async def _reconcile(self) -> None:
        if self._stopped.is_set():
            return
        self._wake_requested = False
        self._pass_task = asyncio.ensure_future(run_one_pass(self.reconciler, self.handler))
        try:
            # Shielded: a scheduler shutdown cancels this job, but the pass must finish its calls.
            report = await asyncio.shield(self._pass_task)
        except asyncio.CancelledError:
            return
        finally:
            self._pass_task = None
        self._later("reconcile", self._reconcile, 0.0 if self._wake_requested else report.delay)

    async def _finish_pass(self) -> None:
        task = self._pass_task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            with contextlib.suppress(BaseException):  # cancelled, or already reported
                await task  # let the pass save what it learnt before the process ends
        except Exception:  # already reported by _reconcile
            pass

    async def _watch(self) -> None:
        files, requests = fingerprint(self.state_dir), self.reconciler.requests.pending()
        if (files, requests) == self._fingerprint:
            return
        new = sorted(set(requests) - set(self._fingerprint[1]))
        changed = files != self._fingerprint[0]
        self._fingerprint = (files, requests)
        if changed:
            self.wake("state directory changed")
        elif new:  # a request the pass consumed needs no pass of its own
            self.wake("restart of " + ", ".join(name.removeprefix("restart.") for name in new))

    async def _stats(self) -> None:
        await self.fetch_stats()
        self._later("stats", self._stats, self.schedule.stats_interval)

    async def fetch_stats(self) -> None:
        """One stats call: good figures reach the metrics; a failure or an unusable answer is counted."""
        try:
            stats = await self.reconciler.platform.refresh()
        except ControllerError as exc:  # the service failed, the credential could not be read, or garbage
            self._stats_failed(exc)
        else:
            self._stats_ok(stats)

    def _stats_fetched(self, task: asyncio.Task[PlatformStats]) -> None:
        """Report the first statistics call, which runs beside the first pass."""
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, ControllerError):
            self._stats_failed(error)
        elif error is None:
            self._stats_ok(task.result())

    def _stats_ok(self, stats: PlatformStats) -> None:
        """Good figures reach the metrics, and a failure said before is over."""
        self.metrics.record_stats(stats, time.time())
        self.handler.repeats.clear("stats")

    def _stats_failed(self, error: ControllerError) -> None:
        self.metrics.stats_failed(failure_reason(error))
        suppressed = self.handler.repeats.admit("stats", str(error))  # a repeat is logged once per 10 min
        if suppressed is not None:
            self._log.warning("stats call failed; keeping the last values", error=str(error),
                              **repeat_fields(suppressed))
