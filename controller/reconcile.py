"""One reconcile pass: load -> list -> plan -> act, with the memory written ahead of every create.

The order of a pass lives here and nowhere else. Every decision is the planner's; this module
carries the decisions out in the safe order and keeps the memory true while doing it:

- the state directory is re-read every pass (a changed file only once it has settled), so a retry
  always sees the current spec;
- exactly one list call per pass, whatever the number of sets; a failed list means no action, and
  so does a list the planner finds suspect;
- a live owned session the list left out is looked up by id before planning (``controller.lookups``,
  the rule *Disappearance confirmed*): once when it vanishes, a bounded number per pass;
- destroys go first (an ended or surplus session frees quota for the creates);
- a memory that cannot be written (full or read-only directory) is the ``MemoryUnwritable``
  condition: no create is sent while it lasts, each pass tries the write again, and the controller
  goes on by itself once it succeeds (``controller.memoryhealth``);
- creates go last, written ahead to the ledger's journal before they are sent, in a slow-start
  window per set (``controller.creates``);
- creates are planned against the capacity budget from the platform's statistics
  (``controller.platform``), which the pass never fetches itself; a stats call has its own short
  timeout (``STATS_TIMEOUT``), so statistics never delay a pass for long (``StatsUnavailable``);
- interactive sessions are renewed before they expire; a refused renew is reported and never
  becomes a destroy; the memory keeps when each renew was accepted, so the next list tells what it
  did to the expiry (the platform's lifetime, or ``RenewIneffective``);
- a session Pending too long, or Terminating or Unknown too long (stuck), is reported once, with
  its events; a destroy the service answered but ignored is retried with the destroy back-off; a
  failed session's evidence (log tail, events) is kept for the set's ``CrashLooping`` condition;
- a destroy that fails (a 5xx, no answer, a 4xx other than 404) backs off per session with the same
  destroy back-off (the planner does not plan it again before then); its ``FailedDestroy`` warning
  is logged when the session's error changes, not per retry; a 404 means it is already gone;
- ``canfar-controller restart SET`` requests are consumed at the start of a pass
  (``controller.restarts``);
- once a stop is requested nothing new starts; calls in flight finish (the daemon gives them a
  grace period, then cancels; a cancelled create stays expected by name).

What a pass did is returned as a ``PassOutcome`` (with when it wants to run again); logging its
summary, metrics, health and the status file are ``controller.outcome``'s job. Audit events (one
per action) are written as the actions happen; ``pass_id`` and the action's ``sessionset`` ride
along as structlog context variables.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from controller.clock import STEP_TOLERANCE, ProcessClock, process_time
from controller.creates import CreateRunner, server_text
from controller.errors import ControllerError, NotFoundError
from controller.ledger import Ledger, apply
from controller.listanswer import anomalies_of
from controller.lookups import LOOKUP_TIMEOUT, look_up
from controller.memoryhealth import MemoryUnwritable, unwritable
from controller.models import Event, ObservedSession
from controller.observability.audit import AuditLog, AuditReason, evidence
from controller.observability.metrics import failure_reason
from controller.passoutcome import PassOutcome
from controller.plan import Create, Destroy, Memory, Plan, PlanOptions, Renew, Stuck, Unschedulable, plan
from controller.plan.lingering import destroy_failed, destroy_sent, retry_now
from controller.plan.memory import Destroyed
from controller.platform import STATS_TIMEOUT, PlatformView
from controller.rebase import rebase
from controller.restarts import RestartRequests
from controller.sessionapi import SessionAPI
from controller.signals import SignalReader
from controller.spec import DesiredState
from controller.statedir import StateLoader


class Reconciler:
    """Carries out passes and owns the memory that must survive between them (and restarts)."""

    def __init__(
        self,
        *,
        loader: StateLoader,
        client: SessionAPI,
        options: PlanOptions,
        ledger: Ledger | None = None,
        dry_run: bool = False,
        concurrency: int = 32,
        clock: Callable[[], float] = process_time,
        rng: random.Random | None = None,
        requests_dir: Path | None = None,
        stats_max_age: float = 180.0,
        signals: SignalReader | None = None,
        stats_timeout: float = STATS_TIMEOUT,
        lookup_timeout: float = LOOKUP_TIMEOUT,
    ) -> None:
        self.loader = loader
        self.client = client
        self.options = options
        self.ledger = ledger
        self.dry_run = dry_run
        self.clock = clock
        self.lookup_timeout = lookup_timeout
        self.memory = ledger.load() if ledger is not None else Memory()
        self._log = structlog.get_logger("canfar_controller")
        self._rebase()
        self._offset = 0.0  # the clock offset the ledger was last given (see _clock_offset)
        self.requests = RestartRequests(requests_dir)
        self.platform = PlatformView(client, max_age=stats_max_age, clock=clock, timeout=stats_timeout)
        self._rng = rng if rng is not None else random.Random()
        #: Reads autoscaled sets' signals (made when the first autoscaled set appears).
        self.signals = signals
        #: The service's last message per set (refused creates, failed destroys).
        self.last_errors: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._bound = asyncio.Semaphore(concurrency)
        self._pass_ids = itertools.count(1)
        self._audit = AuditLog(self._log)
        #: Set while the memory cannot be written (no create is sent then).
        self.unwritable: MemoryUnwritable | None = None
        if ledger is not None and ledger.torn:
            self._log.warning("the journal had torn records: every complete one is kept", torn=len(ledger.torn),
                              copy=str(ledger.torn_copy or ""), journal=str(ledger.journal))
        self.creates = CreateRunner(client=client, ledger=ledger, clock=clock, memory_failed=self._memory_failed,
                                    writable=lambda: self.unwritable is None,
                                    rng=self._rng, bound=self._bound,
                                    stopping=self._stopping.is_set, audit=self._audit, set_errors=self.last_errors)

    def _rebase(self) -> None:
        """Persisted times onto this process's clock; any still in the future are clamped (``controller.rebase``)."""
        moved = rebase(self.memory, self.clock(), self.ledger.clock_offset if self.ledger is not None else 0.0)
        if moved:
            self._log.warning("persisted times lay in the future (the wall clock was stepped back since they were "
                              "written): windows restart from now, back-offs end within their caps", times=moved)

    # -- control ---------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Start nothing new; calls already sent finish."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def reset_backoffs(self) -> None:
        """Forget every create back-off and pause, and retry ignored and failed destroys at once (SIGHUP:
        the user says the cause is fixed)."""
        self.memory.reset_backoffs()
        retry_now(self.memory.lingering)

    # -- one pass --------------------------------------------------------------------------------

    async def run_pass(self) -> PassOutcome:
        pass_id = next(self._pass_ids)
        with bound_contextvars(pass_id=pass_id):
            return await self._run_pass(pass_id)

    async def _run_pass(self, pass_id: int) -> PassOutcome:
        started = time.perf_counter()
        now = self.clock()
        self.save_clock_offset()
        desired = self.loader.load(now)
        self.requests.take(self.memory)
        if self.unwritable is not None:  # has space come back? (no create is sent until it has)
            self._save(force=True)
        reader = self._signal_reader(desired)
        if reader is not None:  # read beside the list call
            reader.start(desired.sets)

        observed: list[ObservedSession] | None
        list_error: str | None = None
        try:
            observed = await self.client.observe()
        except ControllerError as exc:  # the service failed, or our credential could not be read
            observed = None
            list_error = f"list sessions: {exc}"

        lookups = None
        if observed is not None:  # the rule *Disappearance confirmed*: the answers go in through the memory
            lookups = await look_up(self.client, self.memory, {row.id for row in observed}, now,
                                    bound=self._bound, empty_list_window=self.options.empty_list_window,
                                    timeout=self.lookup_timeout)
        await self.platform.await_prefetch()
        anomalies = anomalies_of(observed or ())
        readings = await reader.collect(desired.sets) if reader is not None else None
        decided = plan(desired, observed, self.memory, now, options=self.options, capacity=self.platform.budget(now),
                       anomalies=anomalies, signals=readings)
        self.memory = decided.memory
        if decided.suspect:
            list_error = (f"list answer suspect: it lost all {len(decided.left_out)} live owned sessions at once; "
                          "nothing is done until a second list confirms")
        outcome = PassOutcome(pass_id, "success", 0.0, desired, decided, list_error=list_error, observed=observed,
                              list_anomalies=anomalies, prefix=self.options.prefix, context=self.platform.context)
        if lookups:
            outcome.lookups.update(lookups)
        if anomalies.suspect:
            outcome.errors.append(anomalies.describe())
        try:
            if self.dry_run:
                actions: list[Create | Destroy] = [*decided.destroys, *decided.creates]
                for action in actions:
                    self._log.info("dry-run: would act", action=describe(action))
            elif observed is not None and not decided.suspect:
                self._report_ineffective(decided)
                await asyncio.gather(*(self._destroy(d, outcome) for d in decided.destroys))
                await asyncio.gather(*(self._renew(r, outcome) for r in decided.renews),
                                     *(self._report(u) for u in decided.unschedulable),
                                     *(self._report(s) for s in decided.stuck))
                await self.creates.run(decided.creates, self.memory, outcome)
        finally:
            # Also when cancelled at a stop: what was learnt so far is kept.
            self._save()
        self._forget_removed_sets(decided)
        return self._finish(outcome, started)

    def _finish(self, outcome: PassOutcome, started: float) -> PassOutcome:
        """The pass's result, its errors, and when it wants to run again."""
        decided, memory = outcome.plan, self.memory
        failed = bool(outcome.errors) or bool(outcome.uncertain)
        outcome.result = "error" if outcome.list_error is not None else "partial" if failed else "success"
        outcome.more_work = decided.deferred > 0 and not failed
        outcome.set_errors = dict(self.last_errors)
        outcome.creates_paused_until = memory.creates_paused_until
        outcome.memory_unwritable = self.unwritable
        now = self.clock()
        wakes = [outcome.desired.settles_at, memory.creates_paused_until,
                 *(backoff.until for backoff in memory.backoffs.values()),
                 *(change.acts_at for change in decided.pending)]
        soonest = min((when for when in wakes if when is not None and when > now), default=None)
        outcome.requeue_after = 0.0 if outcome.more_work else None if soonest is None else soonest - now
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _signal_reader(self, desired: DesiredState) -> SignalReader | None:
        if self.signals is None and any(s.spec.autoscale is not None for s in desired.sets.values()):
            self.signals = SignalReader()
        return self.signals

    async def close(self) -> None:
        """Stop reading signals (reads in flight are cancelled)."""
        if self.signals is not None:
            await self.signals.aclose()

    def _forget_removed_sets(self, decided: Plan) -> None:
        """A removed set leaves no memory behind (its last error, its audit repeat counts)."""
        if decided.blind or decided.suspect:
            return
        for name in [name for name in self.last_errors if name not in decided.statuses]:
            del self.last_errors[name]
            self._audit.forget(name)

    def _save(self, *, force: bool = False) -> None:
        if self.ledger is not None and not self.dry_run:
            try:
                self.ledger.save(self.memory, force=force, clock_offset=self._clock_offset())
            except OSError as exc:
                self._memory_failed(exc, self.ledger.snapshot)
            else:
                self._memory_written()

    def save_clock_offset(self) -> None:
        """After a step of the wall clock the ledger says so at once, not at the end of the next pass: a
        restart moves the persisted times by it (``controller.rebase``), even after a kill mid-pass."""
        if self.ledger is not None and self._clock_offset() != self.ledger.clock_offset:
            self._save(force=True)

    def _clock_offset(self) -> float:
        """How far the wall clock is ahead of process time, for the ledger: it changes only with a step."""
        offset = self.clock.offset() if isinstance(self.clock, ProcessClock) else 0.0
        if abs(offset - self._offset) > STEP_TOLERANCE:
            self._offset = offset
        return self._offset

    def _memory_failed(self, exc: OSError, path: Path) -> None:
        """The memory could not be written: the condition starts (logged once), creates stop."""
        if self.unwritable is None:
            self.unwritable = unwritable(exc, str(path), self.clock())
            self._log.warning("the controller's memory cannot be written: no create is sent until it can",
                              condition="MemoryUnwritable", reason=self.unwritable.reason,
                              path=self.unwritable.path, error=self.unwritable.message)

    def _memory_written(self) -> None:
        if self.unwritable is not None:
            self._log.warning("the controller's memory can be written again: creates resume",
                              condition="MemoryUnwritable", reason=self.unwritable.reason,
                              path=self.unwritable.path,
                              seconds=round(max(self.clock() - self.unwritable.since, 0.0), 1))
            self.unwritable = None

    # -- destroying ------------------------------------------------------------------------------

    async def _destroy(self, action: Destroy, outcome: PassOutcome) -> None:
        async with self._bound:
            if self.stopping:
                return
            with bound_contextvars(sessionset=action.set_name, session_id=action.session_id, session=action.name):
                await self._destroy_one(action, outcome)

    async def _destroy_one(self, action: Destroy, outcome: PassOutcome) -> None:
        if action.report_end:
            found = await self._evidence(action) if action.collect_evidence else {}
            self._audit.event("Ended", sessionset=action.set_name, phase=action.phase, **found)
            self.memory.reported_end(action.session_id)
        if action.reason == "retry":
            retry = self.memory.lingering.retries.get(action.session_id)
            self._audit.event("DestroyIgnored", sessionset=action.set_name, phase=action.phase,
                              message="answered but still listed: destroying it again",
                              attempts=retry.attempts if retry is not None else 0)
        try:
            await self.client.destroy(action.session_id)
        except NotFoundError:
            pass  # already gone: as good as destroyed (a lagging list must not count it)
        except ControllerError as exc:
            self._destroy_failed(action, exc, outcome)
            return
        at = self.clock()
        apply(Destroyed(action.session_id, at), self.memory, self.ledger)
        destroy_sent(self.memory.lingering, action.session_id, at, self._rng, action.slot_of)
        outcome.destroyed[(action.set_name, action.reason)] += 1
        reason: AuditReason = "SuccessfulDestroy" if action.reason in ("ended", "retry") else "Pruned"
        self._audit.event(reason, sessionset=action.set_name, cause=action.reason, phase=action.phase,
                          subject=action.session_id)

    def _destroy_failed(self, action: Destroy, exc: ControllerError, outcome: PassOutcome) -> None:
        """The rule *Failing destroys*: this session's destroy backs off; the warning is said once per error
        (the audit log's repeat memory is per session here), not per retry."""
        message, at = str(exc), self.clock()
        self.last_errors[action.set_name] = server_text(exc)
        outcome.errors.append(f"destroy {action.session_id}: {message}")
        outcome.destroy_failures[(action.set_name, failure_reason(exc))] += 1
        destroy_failed(self.memory.lingering, action.session_id, at, self._rng, message)
        retry = self.memory.lingering.retries[action.session_id]
        self._audit.event("FailedDestroy", sessionset=action.set_name, message=message, cause=action.reason,
                          subject=action.session_id, attempts=retry.attempts, retry_in=round(retry.retry_at - at, 1))

    async def _evidence(self, action: Destroy) -> dict[str, Any]:
        """The tail of a failed session's logs and its events, before it is gone for good."""
        logs: str | None = None
        events: list[Event] = []
        problems = {}
        try:
            logs = (await self.client.logs(action.session_id)).get(action.session_id, "")
        except ControllerError as exc:
            problems["logs_error"] = str(exc)
        events = await self._events(action.session_id, problems)
        found = evidence(logs, events)
        self.memory.note(action.set_name, last_failure=summary(action.session_id, found["logs_tail"], events))
        return {**found, **problems}

    async def _events(self, session_id: str, problems: dict[str, str]) -> list[Event]:
        """A session's events; a failure to get them is noted in ``problems``, not raised."""
        try:
            return (await self.client.events(session_id)).get(session_id, [])
        except ControllerError as exc:
            problems["events_error"] = str(exc)
            return []

    # -- renewing and reporting --------------------------------------------------------------------

    async def _renew(self, action: Renew, outcome: PassOutcome) -> None:
        """Extend an interactive session; a refusal is reported and retried later, never a destroy."""
        async with self._bound:
            if self.stopping:
                return
            with bound_contextvars(sessionset=action.set_name, session_id=action.session_id, session=action.name):
                try:
                    await self.client.renew(action.session_id)
                except ControllerError as exc:
                    self.memory.renew_refused(action.session_id, self.clock())
                    outcome.renew_failures[action.set_name] += 1
                    self._audit.event("FailedRenew", sessionset=action.set_name, message=str(exc))
                    return
                self.memory.renewed(action.session_id, self.clock(), action.expires)
                outcome.renewed[action.set_name] += 1
                self._audit.event("Renewed", sessionset=action.set_name, expired_at=action.expires)

    def _report_ineffective(self, decided: Plan) -> None:
        """Renews a list showed had not moved the expiry: reported once each (rule *Renewal*)."""
        for report in decided.renew_ineffective:
            self._audit.event("RenewIneffective", sessionset=report.set_name, session_id=report.session_id,
                              session=report.name, renewed_at=report.renewed_at, expires_at=report.expires,
                              message="the renew was accepted but did not move the expiry; not renewed again "
                                      "until the expiry changes or an hour passes")

    async def _report(self, action: Unschedulable | Stuck) -> None:
        """Report a session Pending, or Terminating or Unknown, for too long: once, with its events."""
        async with self._bound:
            if self.stopping:
                return
            with bound_contextvars(sessionset=action.set_name, session_id=action.session_id, session=action.name):
                problems: dict[str, str] = {}
                events = await self._events(action.session_id, problems)
                found = summary(action.session_id, "", events)
                if isinstance(action, Stuck):
                    self.memory.lingering.reported.add(action.session_id)
                    self.memory.lingering.evidence[action.set_name] = found
                    self._audit.event("Stuck", sessionset=action.set_name, phase=action.phase,
                                      stuck_seconds=round(self.clock() - action.since),
                                      **evidence(None, events), **problems)
                    return
                self.memory.reported_unschedulable(action.session_id)
                self.memory.note(action.set_name, unschedulable=found)
                self._audit.event("Unschedulable", sessionset=action.set_name,
                                  pending_seconds=round(self.clock() - action.pending_since),
                                  **evidence(None, events), **problems)


def summary(session_id: str, logs_tail: str, events: list[Event]) -> str:
    """A short, one-paragraph account of what happened to a session, for condition messages."""
    lines = [line for line in logs_tail.splitlines() if line.strip()][-5:]
    parts = [f"session {session_id}"]
    if lines:
        parts.append("log: " + " | ".join(lines))
    if events:
        parts.append("events: " + "; ".join(f"{e.reason}: {e.message}" for e in events[-3:]))
    text = ", ".join(parts)
    return text if len(text) <= 1000 else text[:999] + "…"


def describe(action: Create | Destroy) -> str:
    if isinstance(action, Create):
        return f"create {action.name} (set {action.set_name}, slot {action.slot}, {action.reason})"
    return f"destroy {action.session_id} {action.name} (set {action.set_name}, {action.reason}, was {action.phase})"
