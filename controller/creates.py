"""Sending a pass's creates: slow start, the write-ahead group commit, and the three create outcomes.

- Before a create is sent its name is recorded in the ledger's journal and fsynced; creates leaving
  at the same moment share one write and one fsync (group commit). A crash at any instant therefore
  never makes a second session for a slot, and a create never sent blocks nothing.
- A create ends in one of three ways: *created* (an id came back), *refused* (a 4xx: surely not
  created; the set backs off), or *uncertain* (timeout, dropped connection, 5xx, an answer that is
  not an id): then it stays expected by name until a list shows it or the uncertain window ends.
- Creates run per set in a pipelined slow-start window (1, then ``SLOW_START_GROWTH`` more for
  every success) that closes at the set's first failure, with all sets concurrent under one bound.
- A 429, or a 503 with Retry-After, pauses every create for as long as the service asked.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import structlog

from controller.errors import APIError, ClientError, ControllerError, TooManyRequestsError
from controller.ledger import Ledger, apply
from controller.observability.audit import AuditLog
from controller.observability.metrics import failure_reason
from controller.passoutcome import PassOutcome
from controller.plan import Create, CreateBackoff, ExpectedCreate, Memory
from controller.plan.backoff import Backoff
from controller.plan.memory import Confirm, Expect, Withdraw
from controller.sessionapi import SessionAPI

CreateResult = Literal["created", "refused", "throttled", "uncertain", "not-sent"]

#: Back-off of a set after the service refused a create: 5 s doubling to 15 min, ±10% jitter.
CREATE_BACKOFF = Backoff(base=5.0, cap=900.0, jitter=0.1)
#: Slow start: a set's first create goes out alone; each success lets this many more go out, so the
#: window triples every round trip (1, 3, 9, 27...) and one failure stops it (as ReplicaSet's
#: batches do, but without waiting for a whole batch to finish).
SLOW_START_GROWTH = 2
#: How long creates pause after a 429 that carries no Retry-After.
DEFAULT_THROTTLE = 5.0


class CreateRunner:
    """Sends creates for the reconciler and keeps the memory and the journal true while doing it."""

    def __init__(self, *, client: SessionAPI, ledger: Ledger | None, clock: Callable[[], float],
                 rng: random.Random, bound: asyncio.Semaphore, stopping: Callable[[], bool],
                 audit: AuditLog, set_errors: dict[str, str],
                 memory_failed: Callable[[OSError, Path], None], writable: Callable[[], bool]) -> None:
        self.client = client
        self.ledger = ledger
        self.clock = clock
        self._rng = rng
        self._bound = bound
        self._stopping = stopping
        self._audit = audit
        #: The service's last message per set, shared with the reconciler (a success clears it).
        self.set_errors = set_errors
        #: The memory could not be written (``MemoryUnwritable`` starts); is it writable (creates may go)?
        self._memory_failed = memory_failed
        self._writable = writable
        self.memory = Memory()
        self._intents: list[tuple[Expect, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("canfar_controller")

    async def run(self, creates: tuple[Create, ...], memory: Memory, outcome: PassOutcome) -> None:
        """Send ``creates``, each set in its own slow-start window, recording what happens in ``memory``."""
        self.memory = memory
        if not creates or self._stopping():
            return
        by_set: dict[str, list[Create]] = {}
        for create in creates:
            by_set.setdefault(create.set_name, []).append(create)
        await asyncio.gather(*(self._create_set(items, outcome) for items in by_set.values()))

    async def _create_set(self, creates: list[Create], outcome: PassOutcome) -> None:
        """One set's creates in a pipelined slow-start window that closes at the first failure."""
        queue = list(reversed(creates))
        window, failed = 1, False
        running: set[asyncio.Task[CreateResult]] = set()
        try:
            while queue or running:
                while queue and len(running) < window and not failed and self._may_create():
                    action = queue.pop()
                    running.add(asyncio.ensure_future(self._create(action, outcome)))
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
                self._withdraw(action)

    async def _write_ahead(self, action: Create) -> None:
        """Record the create as expected, durably, before it is sent (group commit across creates)."""
        intent = Expect((action.set_name, action.slot),
                        ExpectedCreate(action.name, self.clock(), None, action.prior_ids))
        intent.apply(self.memory)
        if self.ledger is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._intents.append((intent, waiter))
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
                self.ledger.write_ahead([intent for intent, _ in batch])
            except BaseException as exc:
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
                if isinstance(exc, OSError):  # the waiters report it; nothing is sent for this turn
                    self._memory_failed(exc, self.ledger.journal)
                    continue
                raise
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_result(None)

    def _may_create(self) -> bool:
        return not self._stopping() and self._writable() and self.clock() >= self.memory.creates_paused_until

    async def _create(self, action: Create, outcome: PassOutcome) -> CreateResult:
        async with self._bound:
            if not self._may_create():
                return "not-sent"
            try:
                await self._write_ahead(action)
            except OSError as exc:  # without the record on disk the create must not leave
                outcome.errors.append(f"create {action.name}: not sent, the ledger cannot be written: {exc}")
                self._withdraw(action)
                return "not-sent"
            if not self._may_create():
                self._withdraw(action)
                return "not-sent"
            with structlog.contextvars.bound_contextvars(sessionset=action.set_name, slot=action.slot,
                                                         session=action.name):
                try:
                    ids = await self.client.create(action.template.session_spec(action.name, action.env()))
                except ControllerError as exc:
                    return self._failed(action, exc, outcome)
                return self._answered(action, ids[0] if ids else None, outcome)

    def _answered(self, action: Create, session_id: str | None, outcome: PassOutcome) -> CreateResult:
        if session_id is None:  # a 2xx without an id: it may or may not exist
            return self._failed(action, APIError("create", server_message="no session id in the answer"), outcome)
        apply(Confirm((action.set_name, action.slot), action.name, session_id), self.memory, self.ledger)
        self.memory.created(action.set_name)
        self.set_errors.pop(action.set_name, None)
        outcome.created[action.set_name] += 1
        self._audit.event("SuccessfulCreate", sessionset=action.set_name, session_id=session_id,
                          cause=action.reason)
        return "created"

    def _failed(self, action: Create, exc: ControllerError, outcome: PassOutcome) -> CreateResult:
        """Sort a failed create into refused, throttled, uncertain or not sent, and remember it."""
        message = str(exc)
        server_message = server_text(exc)
        retry_after = exc.retry_after if isinstance(exc, APIError) else None
        result = create_result(exc)
        now = self.clock()
        if retry_after is not None or result == "throttled":
            self.memory.pause_creates(now + (retry_after if retry_after is not None else DEFAULT_THROTTLE))
        if result == "uncertain":
            # It may have happened: the slot stays expected by name (the planner's rule *Expectations*).
            outcome.uncertain[action.set_name] += 1
            outcome.create_failures[(action.set_name, failure_reason(exc))] += 1
            self._audit.event("CreateUncertain", sessionset=action.set_name, message=message)
            return result
        self._withdraw(action)
        if result == "refused":
            self._back_off(action, server_message, now)
        if result != "not-sent":
            outcome.create_failures[(action.set_name, failure_reason(exc))] += 1
        self.set_errors[action.set_name] = server_message
        outcome.errors.append(f"create {action.name}: {message}")
        self._audit.event("FailedCreate", sessionset=action.set_name, message=message)
        return result

    def _back_off(self, action: Create, message: str, now: float) -> None:
        previous = self.memory.backoffs.get(action.set_name)
        failures = previous.failures + 1 if previous is not None and previous.spec_key == action.spec_key else 1
        delay = CREATE_BACKOFF.delay(failures, self._rng)
        self.memory.back_off(action.set_name, CreateBackoff(failures, now + delay, message, action.spec_key))

    def _withdraw(self, action: Create) -> None:
        """This create surely did not happen: free its slot, in memory and in the journal."""
        apply(Withdraw((action.set_name, action.slot), action.name), self.memory, self.ledger)


def server_text(exc: ControllerError) -> str:
    """What the service said, when it said something; else the whole error."""
    return (exc.server_message if isinstance(exc, APIError) else "") or str(exc)


def create_result(exc: ControllerError) -> CreateResult:
    """What a failed create proves. Only a 4xx proves "not created"; skaha has no idempotency key."""
    if isinstance(exc, TooManyRequestsError):
        return "throttled"
    if isinstance(exc, ClientError):
        return "refused"
    if isinstance(exc, APIError):
        return "uncertain"  # no answer, a 5xx, or an answer that is not an id
    return "not-sent"  # refused before sending: a bad credential file, an invalid request
