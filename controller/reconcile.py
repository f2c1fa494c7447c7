"""One reconcile pass: load -> list -> plan -> act, with the memory written ahead of every create.

The order of a pass lives here and nowhere else. Every decision is the planner's; this module
carries the decisions out in the safe order and keeps the memory true while doing it:

- the state directory is re-read every pass (a changed file only once it has settled), so a retry
  always sees the current spec;
- exactly one list call per pass, whatever the number of sets; a failed list means no action, and
  so does a list the planner finds suspect;
- destroys go first (an ended or surplus session frees quota for the creates);
- before any create is sent, its name is recorded in the ledger's journal and fsynced (creates
  leaving at the same moment share one write and one fsync), so a crash at any instant never makes
  a second session for a slot, and a create never sent blocks nothing;
- a create ends in one of three ways: *created* (an id came back), *refused* (a 4xx: surely not
  created; the set backs off), or *uncertain* (timeout, dropped connection, 5xx, an answer that is
  not an id): then it stays expected by name until a list settles it;
- creates run per set in a pipelined slow-start window (1, then two more for every success) that
  stops at the set's first failure, with all sets concurrent under one bound;
- a 429, or a 503 with Retry-After, pauses every create for as long as the service asked;
- a memory that cannot be written (full or read-only directory) is the ``MemoryUnwritable``
  condition: no create is sent while it lasts, each pass tries the write again, and the controller
  goes on by itself once it succeeds (``controller.memoryhealth``);
- creates are planned against the platform's free capacity from its statistics (fetched by the
  daemon's stats job through ``refresh_platform``, never by the pass itself, so a steady pass
  still costs one call); without statistics younger than ``stats_max_age`` creates go ahead
  unchecked, and the plan says so (``StatsUnavailable``). A stats call never delays a pass for
  long: it has its own short timeout (``STATS_TIMEOUT``), and the first one runs beside the
  first pass's list;
- interactive sessions are renewed before they expire; a refused renew is reported and never
  becomes a destroy;
- a session Pending too long is reported once, with its events; a failed session's evidence (log
  tail, events) is kept for the set's ``CrashLooping`` condition;
- ``canfar-controller restart SET`` leaves a request file that the next pass consumes: the set's
  finished slots, restart histories and back-off are forgotten, so it runs afresh;
- once a stop is requested nothing new starts; calls in flight finish (the daemon gives them a
  grace period, then cancels; a cancelled create stays expected by name).

What a pass did is returned as a ``PassOutcome``; logging its summary, metrics, health, the status
file and when to run next are ``controller.outcome``'s job. Audit events (one per action) are
written here, as the actions happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from controller.errors import APIError, ClientError, ControllerError, StatsError, TooManyRequestsError, TransportError
from controller.ledger import Ledger
from controller.listanswer import NO_ANOMALIES, ListAnomalies, anomalies_of
from controller.memoryhealth import MemoryUnwritable, unwritable
from controller.models import Event, ObservedSession, PlatformContext, PlatformStats, stats_problem
from controller.observability.audit import AuditLog, AuditReason, evidence
from controller.observability.metrics import failure_reason
from controller.plan import (
    Capacity,
    Create,
    CreateBackoff,
    Destroy,
    ExpectedCreate,
    Memory,
    Plan,
    PlanOptions,
    Renew,
    SetNotes,
    Stuck,
    Unschedulable,
    plan,
    restart_delay,
)
from controller.plan.capacity import DEFAULT_CORES, DEFAULT_RAM
from controller.plan.lingering import destroy_sent, retry_now
from controller.rules import SessionSpec
from controller.signals import SignalReader
from controller.spec import DesiredState
from controller.statedir import StateLoader

Result = Literal["success", "partial", "error"]
CreateResult = Literal["created", "refused", "throttled", "uncertain", "not-sent"]

#: Back-off of a set after the service refused a create: 5 s doubling to 15 min, ±10% jitter (the
#: jitter also spreads the retries of destroys the service ignored).
CREATE_BACKOFF_BASE = 5.0
CREATE_BACKOFF_CAP = 900.0
CREATE_BACKOFF_JITTER = 0.1
#: Slow start: a set's first create goes out alone; each success lets this many more go out, so the
#: window triples every round trip (1, 3, 9, 27...) and one failure stops it (as ReplicaSet's
#: batches do, but without waiting for a whole batch to finish).
SLOW_START_GROWTH = 2
#: How long creates pause after a 429 that carries no Retry-After.
DEFAULT_THROTTLE = 5.0
#: The most a statistics call may take: a pass that would wait longer goes ahead without them.
STATS_TIMEOUT = 5.0


class SessionAPI(Protocol):
    """The part of ``AsyncSession`` a pass uses (so tests and the CLI can share one wiring)."""

    async def observe(self, kind: str | None = None) -> list[ObservedSession]: ...
    async def create(self, spec: SessionSpec, *, replicas: int = 1) -> list[str]: ...
    async def destroy(self, ids: str | list[str]) -> list[str]: ...
    async def logs(self, ids: str | list[str]) -> dict[str, str]: ...
    async def events(self, ids: str | list[str]) -> dict[str, list[Event]]: ...
    async def stats(self) -> PlatformStats: ...
    async def context(self) -> PlatformContext: ...
    async def renew(self, ids: str | list[str]) -> list[str]: ...


@dataclass
class PassOutcome:
    """What one pass saw and did: everything ``controller.outcome`` needs, as plain data."""

    pass_id: int
    result: Result
    seconds: float
    desired: DesiredState
    #: The plan; its ``memory`` is the controller's memory at the end of the pass (updated in place).
    plan: Plan
    #: Why the list failed (or was not trusted), in one line; None when it was used.
    list_error: str | None = None
    errors: list[str] = field(default_factory=list)
    created: Counter[str] = field(default_factory=Counter)
    #: (set, reason) of each destroyed session.
    destroyed: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (set, reason label) of each create that failed or whose outcome is unknown.
    create_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Creates whose outcome is unknown this pass, by set.
    uncertain: Counter[str] = field(default_factory=Counter)
    renewed: Counter[str] = field(default_factory=Counter)
    renew_failures: Counter[str] = field(default_factory=Counter)
    #: What broke one id, one session in the list answer (its rows by kind).
    list_anomalies: ListAnomalies = NO_ANOMALIES
    #: The planner held work back (cap) and nothing failed: run again at once.
    more_work: bool = False
    #: The list answer the pass planned with (None: the list failed); read for the utilisation metrics.
    observed: list[ObservedSession] | None = None

    @property
    def list_ok(self) -> bool:
        return self.list_error is None


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
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        requests_dir: Path | None = None,
        stats_max_age: float = 180.0,
        signals: SignalReader | None = None,
        stats_timeout: float = STATS_TIMEOUT,
    ) -> None:
        self.loader = loader
        self.client = client
        self.options = options
        self.ledger = ledger
        self.dry_run = dry_run
        self.clock = clock
        self.memory = ledger.load() if ledger is not None else Memory()
        self.requests_dir = requests_dir
        self._applied_requests: dict[Path, int] = {}
        self.stats_max_age = stats_max_age
        #: Reads autoscaled sets' signals (made when the first autoscaled set appears).
        self.signals = signals
        self.stats_timeout = stats_timeout
        #: The platform's last statistics and when they were fetched (clock seconds), and its context.
        self.platform: PlatformStats | None = None
        self.platform_at = -math.inf
        self.context: PlatformContext | None = None
        self._platform_task: asyncio.Task[PlatformStats] | None = None
        #: The service's last message per set (refused creates, failed destroys).
        self.last_errors: dict[str, str] = {}
        self._rng = rng if rng is not None else random.Random()
        self._stopping = asyncio.Event()
        self._bound = asyncio.Semaphore(concurrency)
        self._pass_ids = itertools.count(1)
        self._intents: list[tuple[tuple[str, int], ExpectedCreate, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("canfar_controller")
        self._audit = AuditLog(self._log)
        #: Set while the memory cannot be written (no create is sent then).
        self.unwritable: MemoryUnwritable | None = None
        if ledger is not None and ledger.torn:
            self._log.warning("the journal had torn records: every complete one is kept", torn=len(ledger.torn),
                              copy=str(ledger.torn_copy or ""), journal=str(ledger.journal))

    # -- control ---------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Start nothing new; calls already sent finish."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def refresh_platform(self) -> PlatformStats:
        """Fetch the platform statistics (and, the first time, its context, at the same time).

        Within ``stats_timeout`` or not at all (a ``TransportError``): a hanging stats endpoint must
        not hold up the pass that waits for it. Statistics that cannot be believed (``stats_problem``)
        raise ``StatsError`` and leave the controller without statistics until a good answer comes.
        """
        try:
            async with asyncio.timeout(self.stats_timeout):
                if self.context is None:  # one round trip, not two, before the daemon's first pass
                    stats, context = await asyncio.gather(self.client.stats(), self._fetch_context())
                    self.context = context
                else:
                    stats = await self.client.stats()
        except TimeoutError:
            raise TransportError("platform stats", server_message=(
                f"no answer within {self.stats_timeout:g} s; planning without them")) from None
        problem = stats_problem(stats)
        if problem is not None:  # garbage: plan as without statistics (StatsUnavailable), never wait on it
            self.platform, self.platform_at = None, -math.inf
            raise StatsError(*problem)
        self.platform, self.platform_at = stats, self.clock()
        return stats

    async def _fetch_context(self) -> PlatformContext:
        try:
            return await self.client.context()
        except ControllerError as exc:  # the chart's defaults will do
            self._log.warning("cannot read the platform context; assuming 1 core and 4 GiB for flexible "
                              "sessions", error=str(exc))
            return PlatformContext()

    def prefetch_platform(self) -> asyncio.Task[PlatformStats]:
        """Start fetching the statistics now; the next pass waits for them after its list call.

        The first pass of a daemon then plans against capacity at the cost of one round trip
        (statistics and list overlap), not two; a stats call that hangs holds it up for
        ``stats_timeout`` at most, and the pass goes ahead as ``StatsUnavailable``.
        """
        self._platform_task = asyncio.ensure_future(self.refresh_platform())
        return self._platform_task

    def capacity(self, now: float) -> Capacity | None:
        """Free capacity from fresh statistics, or ``None`` when there are none."""
        stats = self.platform
        if stats is None or now - self.platform_at > self.stats_max_age:
            return None
        cores, cores_used = stats.cpu_cores_available, stats.cpu_cores_requested
        ram, ram_used = stats.ram_available_bytes, stats.ram_requested_bytes
        if cores is None or cores_used is None or ram is None or ram_used is None:
            return None
        context = self.context or PlatformContext()
        return Capacity(
            cores_free=cores - cores_used,
            ram_free=ram - ram_used,
            as_of=self.platform_at,
            max_cores=stats.session_max_cpu_cores, max_ram=stats.session_max_ram_bytes,
            default_cores=context.default_cores or DEFAULT_CORES,
            default_ram=context.default_ram_bytes or DEFAULT_RAM,
        )

    def reset_backoffs(self) -> None:
        """Forget every create back-off and pause, and retry ignored destroys at once (SIGHUP: the user
        says the cause is fixed)."""
        self.memory.backoffs.clear()
        self.memory.creates_paused_until = 0.0
        retry_now(self.memory.lingering)

    # -- one pass --------------------------------------------------------------------------------

    async def run_pass(self) -> PassOutcome:
        pass_id = next(self._pass_ids)
        started = time.perf_counter()
        log = self._log.bind(pass_id=pass_id)
        now = self.clock()
        desired = self.loader.load(now)
        self._take_requests(log)
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

        if self._platform_task is not None:  # statistics asked for before the pass: wait for them now
            task, self._platform_task = self._platform_task, None
            with contextlib.suppress(ControllerError):  # the stats job reports a failure; plan without
                await task
        anomalies = anomalies_of(observed or ())
        readings = await reader.collect(desired.sets) if reader is not None else None
        decided = plan(desired, observed, self.memory, now, options=self.options, capacity=self.capacity(now),
                       anomalies=anomalies, signals=readings)
        self.memory = decided.memory
        if decided.suspect:
            list_error = (f"list answer suspect: it lost all {len(decided.left_out)} live owned sessions at once; "
                          "nothing is done until a second list confirms")
        outcome = PassOutcome(pass_id, "success", 0.0, desired, decided, list_error=list_error, observed=observed,
                              list_anomalies=anomalies)
        if anomalies.suspect:
            outcome.errors.append(anomalies.describe())
        try:
            if self.dry_run:
                actions: list[Create | Destroy] = [*decided.destroys, *decided.creates]
                for action in actions:
                    log.info("dry-run: would act", action=describe(action))
            elif observed is not None and not decided.suspect:
                await self._destroy_all(decided.destroys, outcome, log)
                await asyncio.gather(*(self._renew(r, outcome, log) for r in decided.renews),
                                     *(self._report(u, log) for u in decided.unschedulable),
                                     *(self._report(s, log) for s in decided.stuck))
                await self._create_all(decided.creates, outcome, log)
        finally:
            # Also when cancelled at a stop: what was learnt so far is kept.
            self._save()
        self._forget_removed_sets(decided)
        failed = bool(outcome.errors) or bool(outcome.uncertain)
        outcome.result = "error" if list_error is not None else "partial" if failed else "success"
        outcome.more_work = decided.deferred > 0 and not failed
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
                self.ledger.save(self.memory, force=force)
            except OSError as exc:
                self._memory_failed(exc, self.ledger.snapshot)
            else:
                self._memory_written()

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

    async def _destroy_all(self, destroys: tuple[Destroy, ...], outcome: PassOutcome, log: Any) -> None:
        await asyncio.gather(*(self._destroy(d, outcome, log) for d in destroys))

    async def _destroy(self, action: Destroy, outcome: PassOutcome, log: Any) -> None:
        async with self._bound:
            if self.stopping:
                return
            log = log.bind(sessionset=action.set_name, session_id=action.session_id, session=action.name)
            if action.report_end:
                found = await self._evidence(action) if action.collect_evidence else {}
                self._audit.event("Ended", sessionset=action.set_name, log=log, phase=action.phase, **found)
                self.memory.ended_reported.add(action.session_id)
            if action.reason == "retry":
                retry = self.memory.lingering.retries.get(action.session_id)
                self._audit.event("DestroyIgnored", sessionset=action.set_name, log=log, phase=action.phase,
                                  message="answered but still listed: destroying it again",
                                  attempts=retry.attempts if retry is not None else 0)
            try:
                await self.client.destroy(action.session_id)
            except ControllerError as exc:
                message = str(exc)
                self.last_errors[action.set_name] = _server_text(exc)
                outcome.errors.append(f"destroy {action.session_id}: {message}")
                self._audit.event("FailedDestroy", sessionset=action.set_name, log=log, message=message,
                                  cause=action.reason)
                return
            at = self.clock()
            self.memory.destroys[action.session_id] = at
            destroy_sent(self.memory.lingering, action.session_id, at,
                         1 + self._rng.uniform(-CREATE_BACKOFF_JITTER, CREATE_BACKOFF_JITTER))
            if self.ledger is not None:
                self.ledger.note_destroyed(action.session_id, at)
            outcome.destroyed[(action.set_name, action.reason)] += 1
            reason: AuditReason = "SuccessfulDestroy" if action.reason in ("ended", "retry") else "Pruned"
            self._audit.event(reason, sessionset=action.set_name, log=log, cause=action.reason,
                              phase=action.phase)

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
        self._note(action.set_name, last_failure=summary(action.session_id, found["logs_tail"], events))
        return {**found, **problems}

    async def _events(self, session_id: str, problems: dict[str, str]) -> list[Event]:
        """A session's events; a failure to get them is noted in ``problems``, not raised."""
        try:
            return (await self.client.events(session_id)).get(session_id, [])
        except ControllerError as exc:
            problems["events_error"] = str(exc)
            return []

    def _note(self, set_name: str, **notes: str) -> None:
        """Keep what was learnt about a set for its condition messages."""
        self.memory.notes[set_name] = replace(self.memory.notes.get(set_name, SetNotes()), **notes)

    # -- renewing and reporting --------------------------------------------------------------------

    async def _renew(self, action: Renew, outcome: PassOutcome, log: Any) -> None:
        """Extend an interactive session; a refusal is reported and retried later, never a destroy."""
        async with self._bound:
            if self.stopping:
                return
            log = log.bind(sessionset=action.set_name, session_id=action.session_id, session=action.name)
            try:
                await self.client.renew(action.session_id)
            except ControllerError as exc:
                self.memory.renew_failures[action.session_id] = self.clock()
                outcome.renew_failures[action.set_name] += 1
                self._audit.event("FailedRenew", sessionset=action.set_name, log=log, message=str(exc))
                return
            self.memory.renew_failures.pop(action.session_id, None)
            outcome.renewed[action.set_name] += 1
            self._audit.event("Renewed", sessionset=action.set_name, log=log, expired_at=action.expires)

    async def _report(self, action: Unschedulable | Stuck, log: Any) -> None:
        """Report a session Pending, or Terminating or Unknown, for too long: once, with its events."""
        async with self._bound:
            if self.stopping:
                return
            log = log.bind(sessionset=action.set_name, session_id=action.session_id, session=action.name)
            problems: dict[str, str] = {}
            events = await self._events(action.session_id, problems)
            found = summary(action.session_id, "", events)
            if isinstance(action, Stuck):
                self.memory.lingering.reported.add(action.session_id)
                self.memory.lingering.evidence[action.set_name] = found
                self._audit.event("Stuck", sessionset=action.set_name, log=log, phase=action.phase,
                                  stuck_seconds=round(self.clock() - action.since),
                                  **evidence(None, events), **problems)
                return
            self.memory.unschedulable_reported.add(action.session_id)
            self._note(action.set_name, unschedulable=found)
            self._audit.event("Unschedulable", sessionset=action.set_name, log=log,
                              pending_seconds=round(self.clock() - action.pending_since),
                              **evidence(None, events), **problems)

    def _take_requests(self, log: Any) -> None:
        """Carry out ``canfar-controller restart`` requests left in the requests directory."""
        if self.requests_dir is None or not self.requests_dir.is_dir():
            return
        for path in sorted(self.requests_dir.glob("restart.*")):
            try:
                stamp = path.stat().st_mtime_ns
            except OSError:
                continue
            if self._applied_requests.get(path) == stamp:
                continue  # applied already; it could not be removed (see below)
            name = path.name.removeprefix("restart.")
            self.memory.forget_set(name)
            log.info("restart requested: the set runs afresh", sessionset=name)
            try:
                path.unlink()
            except OSError as exc:
                # Applied once all the same; a request the controller cannot remove (written by
                # another user) must not restart the set again on every pass.
                self._applied_requests[path] = stamp
                log.error("cannot remove a restart request after applying it; it is ignored until it changes",
                          path=str(path), error=str(exc))

    # -- creating --------------------------------------------------------------------------------

    async def _create_all(self, creates: tuple[Create, ...], outcome: PassOutcome, log: Any) -> None:
        if not creates or self.stopping:
            return
        by_set: dict[str, list[Create]] = {}
        for create in creates:
            by_set.setdefault(create.set_name, []).append(create)
        await asyncio.gather(*(self._create_set(items, outcome, log) for items in by_set.values()))

    async def _create_set(self, creates: list[Create], outcome: PassOutcome, log: Any) -> None:
        """One set's creates in a pipelined slow-start window that closes at the first failure."""
        queue = list(reversed(creates))
        window, failed = 1, False
        running: set[asyncio.Task[CreateResult]] = set()
        try:
            while queue or running:
                while queue and len(running) < window and not failed and self._may_create():
                    action = queue.pop()
                    running.add(asyncio.ensure_future(self._create(action, outcome, log)))
                if not running:
                    break
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.result() == "created":
                        window += SLOW_START_GROWTH
                    else:
                        failed = True
        finally:
            for task in running:  # only when cancelled: the requests stay expected by name
                task.cancel()
            for action in queue:  # never sent: the slot is free again
                self._settle(action)

    async def _write_ahead(self, action: Create) -> None:
        """Record the create as expected, durably, before it is sent (group commit across creates)."""
        key = (action.set_name, action.slot)
        expected = ExpectedCreate(action.name, self.clock(), None, action.prior_ids)
        self.memory.creates[key] = expected
        if self.ledger is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._intents.append((key, expected, waiter))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_intents())
        await asyncio.shield(waiter)

    async def _commit_intents(self) -> None:
        """Write every intent queued so far in one append and one fsync, until none is left.

        It first yields once, so that every create getting ready in the same turn of the event loop
        joins the batch (group commit). The fsync then runs in the loop itself: it takes about a
        tenth of a millisecond on a local disk, less than handing the work to a thread and back.
        """
        assert self.ledger is not None
        while self._intents:
            await asyncio.sleep(0)
            batch, self._intents = self._intents, []
            try:
                self.ledger.write_ahead([(key, expected) for key, expected, _ in batch])
            except BaseException as exc:
                for _, _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
                if isinstance(exc, OSError):  # the waiters report it; nothing is sent for this turn
                    self._memory_failed(exc, self.ledger.journal)
                    continue
                raise
            for _, _, waiter in batch:
                if not waiter.done():
                    waiter.set_result(None)

    def _may_create(self) -> bool:
        return (not self.stopping and self.unwritable is None
                and self.clock() >= self.memory.creates_paused_until)

    async def _create(self, action: Create, outcome: PassOutcome, log: Any) -> CreateResult:
        async with self._bound:
            if not self._may_create():
                return "not-sent"
            try:
                await self._write_ahead(action)
            except OSError as exc:  # without the record on disk the create must not leave
                outcome.errors.append(f"create {action.name}: not sent, the ledger cannot be written: {exc}")
                self._settle(action)
                return "not-sent"
            if not self._may_create():
                self._settle(action)
                return "not-sent"
            log = log.bind(sessionset=action.set_name, slot=action.slot, session=action.name)
            try:
                ids = await self.client.create(action.template.session_spec(action.name, action.env()))
            except ControllerError as exc:
                return self._create_failed(action, exc, outcome, log)
        key = (action.set_name, action.slot)
        session_id = ids[0] if ids else None
        if session_id is None:  # a 2xx without an id: it may or may not exist
            return self._create_failed(action, APIError("create", server_message="no session id in the answer"),
                                       outcome, log)
        expected = self.memory.creates.get(key)
        if expected is not None and expected.name == action.name:
            self.memory.creates[key] = replace(expected, session_id=session_id)
        if self.ledger is not None:
            self.ledger.note_created(key, action.name, session_id)
        self.memory.backoffs.pop(action.set_name, None)
        self.last_errors.pop(action.set_name, None)
        outcome.created[action.set_name] += 1
        self._audit.event("SuccessfulCreate", sessionset=action.set_name, log=log, session_id=session_id,
                          cause=action.reason)
        return "created"

    def _create_failed(self, action: Create, exc: ControllerError, outcome: PassOutcome, log: Any) -> CreateResult:
        """Sort a failed create into refused, throttled, uncertain or not sent, and remember it."""
        message = str(exc)
        server_message = _server_text(exc)
        retry_after = exc.retry_after if isinstance(exc, APIError) else None
        result = create_result(exc)
        now = self.clock()
        if retry_after is not None or result == "throttled":
            pause = retry_after if retry_after is not None else DEFAULT_THROTTLE
            self.memory.creates_paused_until = max(self.memory.creates_paused_until, now + pause)
        if result == "uncertain":
            # It may have happened: the slot stays expected by name (the planner's rule *Expectations*).
            outcome.uncertain[action.set_name] += 1
            outcome.create_failures[(action.set_name, failure_reason(exc))] += 1
            self._audit.event("CreateUncertain", sessionset=action.set_name, log=log, message=message)
            return result
        self._settle(action)
        if result == "refused":
            self._back_off(action, server_message, now)
        if result != "not-sent":
            outcome.create_failures[(action.set_name, failure_reason(exc))] += 1
        self.last_errors[action.set_name] = server_message
        outcome.errors.append(f"create {action.name}: {message}")
        self._audit.event("FailedCreate", sessionset=action.set_name, log=log, message=message)
        return result

    def _back_off(self, action: Create, message: str, now: float) -> None:
        previous = self.memory.backoffs.get(action.set_name)
        failures = previous.failures + 1 if previous is not None and previous.spec_key == action.spec_key else 1
        delay = restart_delay(failures, CREATE_BACKOFF_BASE, CREATE_BACKOFF_CAP)
        delay *= 1 + self._rng.uniform(-CREATE_BACKOFF_JITTER, CREATE_BACKOFF_JITTER)
        self.memory.backoffs[action.set_name] = CreateBackoff(failures, now + delay, message, action.spec_key)

    def _settle(self, action: Create) -> None:
        """This create surely did not happen: free its slot, in memory and in the journal."""
        key = (action.set_name, action.slot)
        expected = self.memory.creates.get(key)
        if expected is not None and expected.name == action.name and expected.session_id is None:
            del self.memory.creates[key]
            if self.ledger is not None:
                self.ledger.note_settled(key, action.name)


def _server_text(exc: ControllerError) -> str:
    """What the service said, when it said something; else the whole error."""
    return (exc.server_message if isinstance(exc, APIError) else "") or str(exc)


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


def create_result(exc: ControllerError) -> CreateResult:
    """What a failed create proves. Only a 4xx proves "not created"; skaha has no idempotency key."""
    if isinstance(exc, TooManyRequestsError):
        return "throttled"
    if isinstance(exc, ClientError):
        return "refused"
    if isinstance(exc, APIError):
        return "uncertain"  # no answer, a 5xx, or an answer that is not an id
    return "not-sent"  # refused before sending: a bad credential file, an invalid request


def describe(action: Create | Destroy) -> str:
    if isinstance(action, Create):
        return f"create {action.name} (set {action.set_name}, slot {action.slot}, {action.reason})"
    return f"destroy {action.session_id} {action.name} (set {action.set_name}, {action.reason}, was {action.phase})"
