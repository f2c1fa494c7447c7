"""One reconcile pass: load -> list -> plan -> act -> record.

The order of a pass lives here and nowhere else. Every decision is the planner's; this module
only carries the decisions out, in the safe order, and records what happened:

- the state directory is re-read in full every pass, so a retry always sees the current spec;
- exactly one list call per pass, whatever the number of sets; a failed list means no action;
- destroys go first (an ended or surplus session frees quota for the creates);
- creates run per set in slow-start batches (1, 2, 4, ...) that stop at the set's first failure,
  concurrently across sets under one bound; a failure in one set never stops another;
- a create whose answer was lost (timeout, dropped connection) may still have happened, so it is
  recorded as expected by name: the next list settles it and no duplicate is made;
- nothing new starts once a stop was requested; the call in flight finishes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from controller.errors import APIError, ControllerError, TransportError
from controller.models import Event, PlatformStats, SessionInfo
from controller.observability.audit import AuditLog, AuditReason, evidence
from controller.observability.metrics import ControllerMetrics, SetSnapshot, failure_reason
from controller.plan import Create, Destroy, Expectations, Plan, PlanOptions, SetStatus, plan
from controller.rules import SessionSpec
from controller.spec import DesiredState
from controller.statedir import StateLoader

Result = Literal["success", "partial", "error"]

class SessionAPI(Protocol):
    """The part of ``AsyncSession`` a pass uses (so tests and the CLI can share one wiring)."""

    async def fetch(self, kind: str | None = None, status: str | None = None,
                    view: str | None = None) -> list[SessionInfo]: ...
    async def create(self, spec: SessionSpec, *, replicas: int = 1) -> list[str]: ...
    async def destroy(self, ids: str | list[str]) -> list[str]: ...
    async def logs(self, ids: str | list[str]) -> dict[str, str]: ...
    async def events(self, ids: str | list[str]) -> dict[str, list[Event]]: ...
    async def stats(self) -> PlatformStats: ...


@dataclass
class PassOutcome:
    pass_id: int
    result: Result
    plan: Plan | None
    desired: DesiredState
    list_ok: bool
    #: True when the planner held work back (cap) and nothing failed: run again at once.
    more_work: bool = False
    errors: list[str] = field(default_factory=list)


class Reconciler:
    """Carries out passes and keeps what must survive between them (expectations, last errors)."""

    def __init__(
        self,
        *,
        loader: StateLoader,
        client: SessionAPI,
        options: PlanOptions,
        metrics: ControllerMetrics,
        dry_run: bool = False,
        concurrency: int = 8,
        status_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.loader = loader
        self.client = client
        self.options = options
        self.metrics = metrics
        self.dry_run = dry_run
        self.status_file = status_file
        self.clock = clock
        self.expectations = Expectations()
        self.last_errors: dict[str, str] = {}
        self.stopping = asyncio.Event()
        self._bound = asyncio.Semaphore(concurrency)
        self._pass_ids = itertools.count(1)
        self._log = structlog.get_logger("canfar_controller")
        self._audit = AuditLog(self._log)
        self._manifest_errors: tuple[str, ...] = ()
        self._known_sets: set[str] = set()
        self._restore()

    # -- one pass --------------------------------------------------------------------------

    async def run_pass(self) -> PassOutcome:
        pass_id = next(self._pass_ids)
        started = time.perf_counter()
        log = self._log.bind(pass_id=pass_id)
        desired = self.loader.load()
        self._report_manifest_errors(desired, log)

        observed: list[SessionInfo] | None
        errors: list[str] = []
        try:
            observed = await self.client.fetch()
        except APIError as exc:
            observed = None
            errors.append(f"list sessions: {exc}")
            log.warning("list failed: this pass changes nothing", error=str(exc))

        decided = plan(desired, observed, self.expectations, self.clock(), options=self.options)
        self.expectations = decided.expectations
        statuses = dict(decided.statuses)
        failed = False
        if self.dry_run:
            actions: list[Create | Destroy] = [*decided.destroys, *decided.creates]
            for action in actions:
                log.info("dry-run: would act", action=describe(action))
        elif not decided.blind:
            failed = not await self._destroy_all(decided.destroys, log)
            failed = not await self._create_all(decided.creates, log) or failed
        for name in set(self._known_sets) - set(statuses):  # a removed set leaves no memory behind
            self.last_errors.pop(name, None)
            self._audit.forget(name)
        self._known_sets = set(statuses)

        result: Result = "error" if observed is None else "partial" if failed else "success"
        outcome = PassOutcome(pass_id, result, decided, desired, list_ok=observed is not None,
                              more_work=decided.deferred > 0 and not failed, errors=errors)
        seconds = time.perf_counter() - started
        self.metrics.sync_sets({
            name: SetSnapshot(desired=s.desired or 0, counts=s.counts(), suspended=s.suspended)
            for name, s in statuses.items()
        })
        self.metrics.reconcile_done(result, seconds, self.clock())
        self._save(outcome)
        # A quiet pass is a debug line: a steady-state daemon should not fill the log every interval.
        report = log.info if decided.changes or result != "success" else log.debug
        report("pass done", result=result, seconds=round(seconds, 3), creates=len(decided.creates),
               destroys=len(decided.destroys), deferred=decided.deferred,
               sets=len(desired.sets), manifest_errors=len(desired.errors))
        return outcome

    # -- acting ----------------------------------------------------------------------------

    async def _destroy_all(self, destroys: tuple[Destroy, ...], log: Any) -> bool:
        results = await asyncio.gather(*(self._destroy(d, log) for d in destroys))
        return all(results)

    async def _destroy(self, action: Destroy, log: Any) -> bool:
        async with self._bound:
            if self.stopping.is_set():
                return True
            log = log.bind(sessionset=action.set_name, session_id=action.session_id, session=action.name)
            if action.reason == "ended":
                found = await self._evidence(action) if action.collect_evidence else {}
                self._audit.event("Ended", sessionset=action.set_name, log=log, phase=action.phase, **found)
            try:
                await self.client.destroy(action.session_id)
            except APIError as exc:
                self._audit.event("FailedDestroy", sessionset=action.set_name, log=log, message=str(exc),
                                  cause=action.reason)
                return False
            self.expectations = self.expectations.destroyed(action.session_id, self.clock())
            self.metrics.destroyed(action.set_name, action.reason)
            reason: AuditReason = "SuccessfulDestroy" if action.reason == "ended" else "Pruned"
            self._audit.event(reason, sessionset=action.set_name, log=log, cause=action.reason,
                              phase=action.phase)
            return True

    async def _evidence(self, action: Destroy) -> dict[str, Any]:
        """The tail of a failed session's logs and its events, before it is gone for good."""
        logs: str | None = None
        events: list[Event] = []
        problems = {}
        try:
            logs = (await self.client.logs(action.session_id)).get(action.session_id, "")
        except APIError as exc:
            problems["logs_error"] = str(exc)
        try:
            events = (await self.client.events(action.session_id)).get(action.session_id, [])
        except APIError as exc:
            problems["events_error"] = str(exc)
        return {**evidence(logs, events), **problems}

    async def _create_all(self, creates: tuple[Create, ...], log: Any) -> bool:
        by_set: dict[str, list[Create]] = {}
        for create in creates:
            by_set.setdefault(create.set_name, []).append(create)
        results = await asyncio.gather(*(self._slow_start(items, log) for items in by_set.values()))
        return all(results)

    async def _slow_start(self, creates: list[Create], log: Any) -> bool:
        """Batches of 1, 2, 4, ...; the first failing batch ends this set's creates for the pass."""
        remaining, size = list(creates), 1
        while remaining:
            batch, remaining = remaining[:size], remaining[size:]
            outcomes = await asyncio.gather(*(self._create(c, log) for c in batch))
            if not all(outcomes):
                return False
            size *= 2
        return True

    async def _create(self, action: Create, log: Any) -> bool:
        async with self._bound:
            if self.stopping.is_set():
                return True
            log = log.bind(sessionset=action.set_name, slot=action.slot, session=action.name)
            try:
                ids = await self.client.create(action.template.session_spec(action.name, action.env()))
            except ControllerError as exc:  # the service's refusal, or the client's own
                if isinstance(exc, TransportError):
                    # The request may have reached the service: expect it by name, never duplicate.
                    self.expectations = self.expectations.created(action, None, self.clock())
                self.last_errors[action.set_name] = getattr(exc, "server_message", "") or str(exc)
                self.metrics.create_failed(action.set_name, failure_reason(exc))
                self._audit.event("FailedCreate", sessionset=action.set_name, log=log, message=str(exc))
                return False
            session_id = ids[0] if ids else None
            self.expectations = self.expectations.created(action, session_id, self.clock())
            self.last_errors.pop(action.set_name, None)
            self.metrics.created(action.set_name)
            self._audit.event("SuccessfulCreate", sessionset=action.set_name, log=log, session_id=session_id,
                              cause=action.reason)
            return True

    # -- records ---------------------------------------------------------------------------

    def _report_manifest_errors(self, desired: DesiredState, log: Any) -> None:
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

    def status_document(self, outcome: PassOutcome) -> dict[str, Any]:
        statuses: Mapping[str, SetStatus] = outcome.plan.statuses if outcome.plan else {}
        return {
            "updated_at": self.clock(),
            "pass_id": outcome.pass_id,
            "result": outcome.result,
            "list_ok": outcome.list_ok,
            "errors": outcome.errors,
            "manifest_errors": [str(e) for e in outcome.desired.errors],
            "sets": {name: status_row(s, self.last_errors.get(name)) for name, s in sorted(statuses.items())},
            "expectations": self.expectations.to_json(),
        }

    def _save(self, outcome: PassOutcome) -> None:
        if self.status_file is None:
            return
        document = self.status_document(outcome)
        try:
            write_atomically(self.status_file, json.dumps(document, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            self._log.warning("cannot write status file", path=str(self.status_file), error=str(exc))

    def _restore(self) -> None:
        """Pick up expectations from the last run, so a restart mid-rollout remembers its work."""
        if self.status_file is not None:
            self.expectations, self.last_errors = read_status_file(self.status_file, self._log)
            self._known_sets = set(self.last_errors)


def read_status_file(path: Path, log: Any = None) -> tuple[Expectations, dict[str, str]]:
    """The expectations and each set's last error from a status file; empty when there is none."""
    if not path.exists():
        return Expectations(), {}
    try:
        document = json.loads(path.read_text())
        expectations = Expectations.from_json(document.get("expectations", {}))
        last_errors = {name: row["last_error"] for name, row in document.get("sets", {}).items()
                       if row.get("last_error")}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        if log is not None:
            log.warning("ignoring unreadable status file", path=str(path), error=str(exc))
        return Expectations(), {}
    return expectations, last_errors


def status_row(status: SetStatus, last_error: str | None) -> dict[str, Any]:
    """One set's row of the status file and of ``status -o json``."""
    row = dataclasses.asdict(status)
    del row["name"]  # the key of the row
    return {**row, "ended": status.ended, "last_error": last_error}


def describe(action: Create | Destroy) -> str:
    if isinstance(action, Create):
        return f"create {action.name} (set {action.set_name}, slot {action.slot}, {action.reason})"
    return f"destroy {action.session_id} {action.name} (set {action.set_name}, {action.reason}, was {action.phase})"


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
