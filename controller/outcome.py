"""The one place that interprets a pass: its log line, metrics, health, status file and next run.

Modelled on controller-runtime's ``reconcileHandler``: the reconciler returns what happened as
plain data (``PassOutcome``), or raises; ``OutcomeHandler`` turns either into every visible effect
and decides when the next pass runs. ``run_one_pass`` is the one way to run and report a pass: the
daemon, ``run --once`` and the test rig all use it, so a crash, a failed list and a clean pass are
reported the same way wherever they happen.

When the next pass runs, soonest first:

- when the pass asks (``requeue_after``): at once when the planner held creates back (the per-pass
  cap) and nothing failed, or when an unsettled manifest may have settled, a create pause ends or a
  set's back-off ends;
- otherwise after the interval, with ±10% jitter so many controllers do not synchronise.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from controller.client.credentials import CredentialStatus
from controller.clock import STEP_TOLERANCE, process_time
from controller.errors import ControllerError
from controller.listanswer import LEFT_OUT_LIVE
from controller.models import PlatformContext
from controller.names import NameParser
from controller.observability.autoscale import AutoscaleSnapshot
from controller.observability.health import HealthState
from controller.observability.metrics import ControllerMetrics
from controller.observability.repeats import Repeats, repeat_fields
from controller.observability.utilisation import tally
from controller.passoutcome import PassOutcome
from controller.plan import PendingChange, SetStatus
from controller.plan.backoff import Backoff
from controller.plan.capacity import DEFAULT_CORES, DEFAULT_RAM
from controller.reconcile import Reconciler
from controller.spec import DesiredState
from controller.statusfile import ConditionRow, SetRow, StatusDocument, write_status

#: The pass interval's jitter: ±10%, so that many controllers do not synchronise.
JITTER_FRACTION = 0.1
#: An unchanged error (a 401 every pass) is logged once, then again after this long, with a count.
REPEAT_AFTER = 600.0


class OutcomeHandler:
    """Reports each pass and says when the next one should run."""

    def __init__(
        self,
        *,
        metrics: ControllerMetrics,
        health: HealthState | None = None,
        status_file: Path | None = None,
        interval: float = 30.0,
        clock: Callable[[], float] = process_time,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        log: Any = None,
        credential: Callable[[], CredentialStatus] | None = None,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.status_file = status_file
        self.interval = interval
        self._clock = clock  # process time: what the pass's times are measured on
        self._wall = wall  # only for what is shown: the status file's time, Unix-time metrics, the credential
        self._rng = rng if rng is not None else random.Random()
        self._log = log if log is not None else structlog.get_logger("canfar_controller")
        self.repeats = Repeats(REPEAT_AFTER, clock=clock)
        self._manifest_errors: tuple[str, ...] = ()
        self._last_list_error: str | None = None
        self._capacity_unknown: str | None = None
        #: Each set's status from the last pass that could see the sessions.
        self._seen: dict[str, SetStatus] = {}
        self._names: NameParser | None = None  # kept across passes: its memo makes the tally cheap
        self._credential = credential
        self._credential_problem: str | None = None
        self._status_failing = False
        #: Unmanaged sets and second writers already reported (each said once, and when it ends).
        self._unmanaged: dict[str, int] = {}
        self._conflicts: dict[str, tuple[str, ...]] = {}
        #: Destructive manifest changes waiting for their file (the last plan that decided anything).
        self._pending: tuple[PendingChange, ...] = ()

    def handle(self, outcome: PassOutcome) -> float:
        """Report a finished pass; returns the seconds until the next pass."""
        now, shown = self._clock(), self._wall()
        log = self._log.bind(pass_id=outcome.pass_id)
        self.repeats.clear("pass")  # this pass did not crash: the next crash is news
        statuses = self._statuses(outcome)
        self._report_manifests(outcome.desired, log)
        self._report_pending(outcome, log)
        quiet = not self._report_list(outcome, log)
        self._report_ownership(outcome, log)
        self._count(outcome, statuses)
        self._tally(outcome, statuses)
        self.metrics.reconcile_done(outcome.result, outcome.seconds, shown)
        self.metrics.list_anomalies(outcome.list_anomalies.counts)
        self.metrics.list_anomalies({LEFT_OUT_LIVE: outcome.lookups["live"]})
        self.metrics.memory_unwritable(outcome.memory_unwritable is not None)
        if self.health is not None:
            self.health.pass_completed(outcome.result, outcome.list_error or "")
            self.health.memory_condition(outcome.memory_unwritable.line() if outcome.memory_unwritable else "")
            if outcome.desired.loaded:
                self.health.manifests_loaded()
            if outcome.list_ok:
                self.health.list_succeeded()
        self._write_status(outcome, statuses, now, shown)
        self._report_credential(shown)
        decided = outcome.plan
        report = log.info if decided.changes or (outcome.result != "success" and not quiet) else log.debug
        report("pass done", result=outcome.result, seconds=round(outcome.seconds, 3),
               creates=len(decided.creates), destroys=len(decided.destroys),
               deferred=decided.deferred, sets=len(outcome.desired.sets),
               manifest_errors=len(outcome.desired.errors), unsettled=len(outcome.desired.unsettled))
        return self._next_run(outcome, now)

    def crashed(self, error: BaseException, seconds: float) -> float:
        """Report a pass that raised (a bug, or an error nothing below handled); returns the next run."""
        if isinstance(error, ControllerError):  # expected kinds of failure: one line, no traceback
            suppressed = self.repeats.admit("pass", str(error))
            if suppressed is not None:
                self._log.error("pass failed", error=str(error), **repeat_fields(suppressed))
        else:
            self._log.error("pass crashed", exc_info=error)
        self.metrics.reconcile_done("error", seconds, self._wall())
        if self.health is not None:
            self.health.pass_completed("error", f"{type(error).__name__}: {error}")
        return self._jittered(self.interval)

    # -- reporting --------------------------------------------------------------------------------

    def _report_manifests(self, desired: DesiredState, log: Any) -> None:
        by_file: dict[str, int] = {}
        for error in desired.errors:
            by_file[error.path] = by_file.get(error.path, 0) + 1
        self.metrics.manifest_errors(by_file)
        current = tuple(str(e) for e in desired.errors)
        if current != self._manifest_errors:  # log a problem when it appears, not every pass
            for error in desired.errors:
                log.error("invalid manifest: its sets keep their last good spec", error=str(error))
            if not current:
                log.info("all manifests valid again")
            self._manifest_errors = current

    def _report_pending(self, outcome: PassOutcome, log: Any) -> None:
        """Say once when a destructive manifest change starts to wait (rule *Destructive settle*)."""
        decided = outcome.plan
        if decided.blind or decided.suspect:  # nothing was decided: what waited still waits
            return
        before = {(p.set_name, p.change) for p in self._pending}
        for change in decided.pending:
            if (change.set_name, change.change) not in before:
                log.warning("a manifest change would destroy live sessions: it waits for the file to stay unchanged",
                            sessionset=change.set_name, change=change.change, sessions=change.sessions,
                            acts_in=round(max(change.acts_at - self._clock(), 0.0), 1),
                            destructive_settle=change.window)
        self._pending = decided.pending

    def _report_list(self, outcome: PassOutcome, log: Any) -> bool:
        """Log what the list call did; False when its error was a repeat, left unsaid."""
        said = True
        if outcome.plan.suspect:
            self.metrics.suspect_list()
        if outcome.list_error is not None:
            suppressed = self.repeats.admit("list", outcome.list_error)
            said = suppressed is not None
            if suppressed is not None:
                log.warning("this pass changes nothing", reason=outcome.list_error, **repeat_fields(suppressed))
        elif self._last_list_error is not None:
            self.repeats.clear("list")
            log.info("listing works again")
        elif outcome.plan.left_out:
            log.warning("the list left out live sessions: their slots are held until the service confirms they "
                        "are gone",
                        sessions=list(outcome.plan.left_out))
        self._last_list_error = outcome.list_error
        if not outcome.plan.blind:
            unknown = outcome.plan.capacity_unknown
            if unknown != self._capacity_unknown:  # say it when it starts, and when it ends
                if unknown is not None:
                    log.warning("capacity unknown", reason=unknown)
                else:
                    log.info("platform statistics available again: creates are checked against capacity")
                self._capacity_unknown = unknown
        return said

    def _report_ownership(self, outcome: PassOutcome, log: Any) -> None:
        """The rules *Inventory* and *Second writer*: adoptions, unmanaged sets and second writers,
        each logged when it starts (and a conflict when it ends), exported every pass that listed."""
        decided = outcome.plan
        if decided.blind or decided.suspect:
            return
        if decided.adopted:
            log.info("adopted sessions into the inventory", count=len(decided.adopted),
                     sessions=list(decided.adopted[:20]))
        for name, count in decided.unmanaged.items():
            if name not in self._unmanaged:
                log.warning("sessions with this prefix of a set this controller never managed: left alone "
                            "(`canfar-controller prune` removes leftovers)", set=name, sessions=count)
        for name, ids in decided.conflicts.items():
            if self._conflicts.get(name) != ids:
                log.error("another writer uses this prefix and set: nothing is created or destroyed in it until "
                          "its sessions are gone", condition="Conflict", reason="SecondWriter", sessionset=name,
                          sessions=list(ids))
        for name in self._conflicts.keys() - decided.conflicts.keys():
            log.warning("the other writer's sessions are gone: the set is managed again", condition="Conflict",
                        sessionset=name)
        self._unmanaged, self._conflicts = dict(decided.unmanaged), dict(decided.conflicts)
        self.metrics.ownership(decided.unmanaged, {name: len(ids) for name, ids in decided.conflicts.items()})

    def _statuses(self, outcome: PassOutcome) -> dict[str, SetStatus]:
        """Each set's status to report: a pass that could not see the sessions keeps the last one seen.

        Otherwise a failed list would show every set empty (and every condition reset) in the
        metrics and the status file, exactly when an operator looks.
        """
        decided = outcome.plan
        if decided.blind or decided.suspect:
            return {name: self._seen.get(name, status) for name, status in decided.statuses.items()}
        self._seen = dict(decided.statuses)
        return self._seen

    def _count(self, outcome: PassOutcome, statuses: dict[str, SetStatus]) -> None:
        for name, count in outcome.created.items():
            self.metrics.created(name, count)
        for (name, reason), count in outcome.destroyed.items():
            self.metrics.destroyed(name, reason, count)
        for (name, reason), count in outcome.create_failures.items():
            self.metrics.create_failed(name, reason, count)
        for (name, reason), count in outcome.destroy_failures.items():
            self.metrics.destroy_failed(name, reason, count)
        for name, count in outcome.renewed.items():
            self.metrics.renewed(name, count)
        for name, count in outcome.renew_failures.items():
            self.metrics.renew_failed(name, count)
        self.metrics.sync_sets(statuses)
        self.metrics.autoscale.sync(
            {name: AutoscaleSnapshot(dict(s.scaling.values), s.scaling.recommendation)
             for name, s in statuses.items() if s.scaling is not None},
            count_failures=not (outcome.plan.blind or outcome.plan.suspect))

    def _tally(self, outcome: PassOutcome, statuses: dict[str, SetStatus]) -> None:
        """Resources per set and owner from the list answer; a list not used leaves the last figures."""
        decided = outcome.plan
        if outcome.observed is None or decided.blind or decided.suspect:
            return
        prefix = outcome.prefix
        if self._names is None or self._names.prefix != prefix:
            self._names = NameParser(prefix)
        context = outcome.context or PlatformContext()
        self.metrics.sync_utilisation(tally(
            outcome.observed, self._names, statuses,
            default_cores=context.default_cores or DEFAULT_CORES, default_ram=context.default_ram_bytes or DEFAULT_RAM,
        ))

    def _write_status(self, outcome: PassOutcome, statuses: dict[str, SetStatus], now: float, shown: float) -> None:
        """The status file; its times on the wall clock (``shown``): the controller's own moved onto it."""
        if self.status_file is None:
            return
        paused = outcome.creates_paused_until
        shift = shown - now if abs(shown - now) > STEP_TOLERANCE else 0.0  # process time onto the wall clock
        document = StatusDocument(
            updated_at=shown,
            pass_id=outcome.pass_id,
            result=outcome.result,
            list_ok=outcome.list_ok,
            errors=[e for e in [outcome.list_error, *outcome.errors] if e],
            manifest_errors=[str(e) for e in outcome.desired.errors],
            unsettled=list(outcome.desired.unsettled),
            creates_paused_until=paused + shift if paused > now else None,
            memory_unwritable=dataclasses.asdict(outcome.memory_unwritable) if outcome.memory_unwritable else None,
            sets={name: status_row(s, outcome.set_errors.get(name), shift) for name, s in sorted(statuses.items())},
            credential=None if self._credential is None else dataclasses.asdict(self._credential()),
            unmanaged=dict(self._unmanaged),
            conflicts={name: list(ids) for name, ids in self._conflicts.items()},
            pending_changes=[dataclasses.asdict(change) for change in self._pending],
        )
        try:
            write_status(self.status_file, document)
        except OSError as exc:  # said once, not every pass (a full disk lasts)
            if not self._status_failing:
                self._log.warning("cannot write status file", path=str(self.status_file), error=str(exc))
            self._status_failing = True
        else:
            if self._status_failing:
                self._log.info("status file written again", path=str(self.status_file))
            self._status_failing = False

    def _report_credential(self, now: float) -> None:
        """The credential's expiry and state in the metrics and ``/healthz``; its problem logged once."""
        if self._credential is None:
            return
        status = self._credential()
        self.metrics.credential.update(expiry_kind=status.expiry_kind, expiry=status.expiry, usable=status.usable)
        if self.health is not None:
            self.health.credential(describe_credential(status, now))
        if status.problem != self._credential_problem:
            if status.problem is not None:
                self._log.error("the credential cannot be used: creates and destroys wait", problem=status.problem)
            else:
                self._log.info("the credential works again", source=status.source)
            self._credential_problem = status.problem

    # -- scheduling -------------------------------------------------------------------------------

    def _next_run(self, outcome: PassOutcome, now: float) -> float:
        regular = self._jittered(self.interval)
        return regular if outcome.requeue_after is None else max(0.0, min(outcome.requeue_after, regular))

    def _jittered(self, seconds: float) -> float:
        return Backoff.steady(seconds, JITTER_FRACTION).delay(1, self._rng)


@dataclass(frozen=True)
class PassReport:
    """A pass run and reported: its outcome (``None`` if it raised ``error``) and the seconds to the next."""

    outcome: PassOutcome | None
    delay: float
    error: Exception | None = None


async def run_one_pass(reconciler: Reconciler, handler: OutcomeHandler) -> PassReport:
    """Run one pass and report it (or its crash) through ``handler``: the daemon, ``--once`` and tests."""
    started = time.perf_counter()
    try:
        outcome = await reconciler.run_pass()
    except Exception as error:  # a bug must not kill the loop: report it, the caller decides
        return PassReport(None, handler.crashed(error, time.perf_counter() - started), error)
    return PassReport(outcome, handler.handle(outcome))


def status_row(status: SetStatus, last_error: str | None, shift: float = 0.0) -> SetRow:
    """One set's row of the status file and of ``status -o json``; ``shift`` moves the controller's own times
    (a back-off's end, a condition's transition) onto the wall clock, after a step (``controller.clock``)."""
    fields = dataclasses.asdict(status)
    if shift:
        if fields["backoff_until"] is not None:
            fields["backoff_until"] += shift
        for condition in fields["conditions"]:
            condition["last_transition"] += shift
    del fields["name"]  # the key of the row
    del fields["scaling"], fields["draining"]
    if status.scaling is not None:
        fields["autoscale"] = {
            "signals": dict(status.scaling.values), "recommendation": status.scaling.recommendation,
            "replicas": status.desired, "draining": status.draining, "why": status.scaling_why(),
            "error": status.scaling.state.error or None,
        }
    fields["conditions"] = [ConditionRow(**condition) for condition in fields["conditions"]]
    return SetRow(**fields, ended=status.ended, last_error=last_error)


def describe_credential(status: CredentialStatus, now: float) -> str:
    """One line about the credential, for ``/healthz`` and ``status``: kind, source, time left, problem."""
    expiry = describe_expiry(status, now)
    line = f"{status.kind} ({status.source})" + (f", {expiry}" if status.expiry is not None else "")
    return line + (f": UNUSABLE: {status.problem}" if status.problem else "")


def describe_expiry(status: CredentialStatus, now: float) -> str:
    """When the credential ends, e.g. ``oidc_refresh expires 2026-12-07T10:00:00Z (in 1d 23h)``."""
    if status.expiry is None or status.expiry_kind is None:
        return f"unknown (this {status.kind} credential carries no expiry)"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.expiry))
    left = status.expiry - now
    return (f"{status.expiry_kind} expires {stamp} (in {_duration(left)})" if left > 0
            else f"{status.expiry_kind} expired {stamp}")


def _duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"
