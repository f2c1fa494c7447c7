"""The simulator as one object: simulated clock, cluster, fault plan and the logs of requests and creates.

Simulated time is ``t0 + (clock() - t0) * time_scale``, so a manual ``clock`` gives fully
deterministic tests and a big ``time_scale`` makes hours of TTL pass in seconds.

A request goes through three steps, so that a front end can wait between them the way it
waits for I/O: ``receive`` (the fault is decided; the request takes effect now unless its fault
says otherwise), a wait of ``InFlight.delay`` real seconds (a thread sleeps, a coroutine awaits),
then ``InFlight.answer()``. ``serve`` does all three in one call. A request whose effect is
deferred (``apply_after``, or an abandoned slow request) waits in a queue ordered by simulated
time and is applied, at its due time, before the first request that arrives at or after it, so
a test with a ``ManualClock`` decides exactly when it lands (``catch_up()`` applies it without a
request).
"""

from __future__ import annotations

import fnmatch
import heapq
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from controller.simulator.config import SimulatorConfig
from controller.simulator.faults import DELETE_FAILURE, Fault, FaultInjector, ListMode
from controller.simulator.routes import handle, relative_path
from controller.simulator.state import Cluster
from controller.simulator.transport import AsyncSimulatorTransport, SimulatorTransport
from controller.simulator.wire import Request, Response


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the simulator saw it: tests assert on these rather than on our own classes.

    ``path`` is relative to ``/skaha/v1`` (``/session``, ``/session/abc``); ``status`` is the
    answer the client got, ``None`` when none was delivered (dropped connection, or an in-process
    caller cancelled while waiting); ``fault`` says a fault was injected. ``at`` is the simulated
    arrival time and ``seq`` the arrival order (1, 2, ...; never reused, unlike list positions).
    ``applied_at`` is when the request took effect, ``None`` while it has not (a fault refused
    it, or its effect is still deferred); ``session_id`` is the session a create made, also
    filled in when a deferred create lands later.
    """

    method: str
    path: str
    params: Mapping[str, tuple[str, ...]]
    status: int | None
    fault: bool = False
    at: float = 0.0
    seq: int = 0
    applied_at: float | None = None
    session_id: str | None = None

    @property
    def applied(self) -> bool:
        """Whether the service handled it (one it refused itself, say with a 400, counts; a faulted one not)."""
        return self.applied_at is not None

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class Creation:
    """A session the service created, whatever the client was told: the ground truth for duplicates."""

    session_id: str
    name: str
    """The session's name as lists show it (the server stores a lower-cased label)."""
    at: float
    """Simulated time the create took effect (its ``startTime`` when there was room)."""
    seq: int | None
    """``RecordedRequest.seq`` of the request that made it; ``None`` for set-up through ``Simulator.handle``."""


@dataclass(slots=True, eq=False)
class InFlight:
    """A request the simulator has received and not yet answered.

    The front end waits ``delay`` real seconds, then calls ``answer()`` once; if its caller went
    away meanwhile (an in-process task cancelled), it calls ``abandon()`` instead, and a request
    that was to take effect when answered takes effect at its due simulated time all the same.
    """

    simulator: Simulator = field(repr=False)
    request: Request
    path: str
    params: dict[str, list[str]]
    fault: Fault | None
    seq: int
    arrived: float
    """Simulated arrival time."""
    served: Response | None = None
    """The service's own answer, once it has handled the request."""
    applied_at: float | None = None
    session_id: str | None = None
    done: bool = False
    recorded: bool = False

    @property
    def delay(self) -> float:
        """Real seconds to wait before ``answer()``."""
        return self.fault.delay if self.fault is not None else 0.0

    def answer(self) -> Response | None:
        """The answer to send now; ``None`` means close the connection without one."""
        return self.simulator._answer(self)

    def abandon(self) -> None:
        """The caller is gone: record the request unanswered; the service carries on regardless."""
        self.simulator._abandon(self)


class Simulator:
    """An in-memory skaha session service; thread-safe, one lock around every change."""

    def __init__(self, config: SimulatorConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.RLock()
        self.cluster = Cluster(self.config, random.Random(self.config.seed))
        self._faults = FaultInjector(self.config)
        if self.config.ignore_renews:
            self.ignore_renews(None)
        self._seq = 0
        self._in_flight = 0
        self._horizon = -math.inf  # the simulated time the cluster has been advanced to
        self._deferred: list[tuple[float, int, InFlight]] = []  # heap by due time, then arrival
        #: Recent requests in the order answered; trimmed to ``max_recorded_requests`` so a long run stays small.
        self.requests: list[RecordedRequest] = []
        #: Every session created, in the order created (deferred creates when they land); never trimmed.
        self.created: list[Creation] = []
        #: Called with each request as it is recorded (``--request-log`` writes them out); under the lock.
        self.on_record: Callable[[RecordedRequest], None] | None = None

    def now(self) -> float:
        """Simulated time in epoch seconds."""
        return self._t0 + (self._clock() - self._t0) * self.config.time_scale

    # -- faults ------------------------------------------------------------------------------------

    def inject_fault(self, method: str | None = None, path: str | None = None, status: int | None = 500,
                     count: int | None = 1, *, processed: bool = False, apply_after: float | None = None,
                     delay: float = 0.0, retry_after: float | None = None, name: str | None = None) -> None:
        """Fail the next ``count`` matching requests (``None``: all of them) with ``status``.

        ``path`` is relative to ``/skaha/v1``, matched exactly, or as a prefix when it ends in ``*``;
        ``None`` matches any path, as ``method=None`` matches any method. ``name`` is a glob
        (``fnmatch``, case-sensitive) the request's ``name`` parameter must match, so one set's
        creates can fail while others succeed. ``status=None`` closes the connection without
        answering.

        By default a failed request has no effect. ``processed=True`` applies it on arrival (the
        answer is lost, the session made); ``apply_after=s`` applies it ``s`` simulated seconds
        later, in simulated-time order before any request that arrives after that (a gateway
        timeout in front of a slow create). ``delay`` real seconds pass before the answer;
        ``retry_after`` adds a ``Retry-After`` header (seconds) to the error answer.
        """
        if processed and apply_after is not None:
            raise ValueError("processed=True applies the request at once; apply_after defers it: choose one")
        fault = Fault(status=status, drop=status is None,
                      effect="arrival" if processed else "later" if apply_after is not None else "none",
                      apply_after=apply_after or 0.0, delay=delay, retry_after=retry_after)
        self._faults.add(fault, method=method, path=path, name=name, count=count)

    def inject_delay(self, method: str | None = None, path: str | None = None, *, seconds: float,
                     count: int | None = 1, apply: Literal["before", "after"] = "after",
                     name: str | None = None) -> None:
        """Answer the next ``count`` matching requests normally, but ``seconds`` real seconds late.

        ``apply="after"`` (a slow service): the request takes effect when the wait is over, just
        before its answer is sent, even if the client has gone away meanwhile (over HTTP the
        handler carries on and ignores the failed write; an in-process caller cancelled while
        waiting leaves it to take effect at simulated arrival + ``seconds`` x ``time_scale``).
        ``apply="before"`` (a slow way back): it takes effect on arrival and only the answer is late.
        Matching is as for ``inject_fault``.
        """
        if apply not in ("before", "after"):
            raise ValueError(f"apply must be 'before' or 'after' the delay, got {apply!r}")
        fault = Fault(effect="arrival" if apply == "before" else "answer", delay=seconds)
        self._faults.add(fault, method=method, path=path, name=name, count=count)

    def inject_list_fault(self, mode: ListMode, count: int | None = 1, *, keep: float = 0.5, seed: int = 0) -> None:
        """Spoil the next ``count`` session lists (``GET /session`` without an id, not ``view=stats``).

        The answer is still ``200``: ``mode="partial"`` keeps ``floor(rows * keep)`` rows, chosen
        by the seeded dice, in order; ``"empty"`` answers ``[]``; ``"garbage"`` a JSON object
        instead of an array; ``"truncated"`` the real answer cut in half (invalid JSON);
        ``"repeated"`` the real answer with ``floor(rows * keep)`` of its rows listed twice;
        ``"consistent"`` keeps about ``rows * keep`` rows, each by its id and ``seed`` alone, so every
        list it spoils leaves out the same sessions. ``GET /session/{id}`` still answers truthfully.
        """
        fault = Fault(effect="arrival", list_mode=mode, keep=keep, seed=seed)
        self._faults.add(fault, method="GET", path="/session", count=count)

    def inject_stats(self, answer: Any, count: int | None = 1) -> None:
        """Answer the next ``count`` ``view=stats`` calls with ``answer`` (JSON; a ``str`` is sent as is)."""
        body = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self._faults.add(Fault(effect="arrival", stats_body=body), method="GET", path="/session", count=count)

    def ignore_deletes(self, count: int | None = 1, *, name: str | None = None) -> None:
        """Answer the next ``count`` DELETEs ``200`` and do nothing: the sessions keep running.

        ``name`` is a glob of the *session's* name (a DELETE carries only the id).
        """
        self._fault_deletes(Fault(ignored=True), count, name)

    def fail_deletes(self, count: int | None = None, *, name: str | None = None, status: int = 500,
                     message: str = DELETE_FAILURE) -> None:
        """Fail the next ``count`` DELETEs (``None``: every one) with ``status`` and the service's ``message``;
        the sessions keep running. ``name`` is a glob of the session's name, as for ``ignore_deletes``."""
        self._fault_deletes(Fault(status=status, message=message), count, name)

    def _fault_deletes(self, fault: Fault, count: int | None, name: str | None) -> None:
        if name is None:
            self._faults.add(fault, method="DELETE", path="/session/*", count=count)
            return
        with self._lock:
            ids = [record.id for record in self.cluster if fnmatch.fnmatchcase(record.name, name)]
        for session_id in ids:
            self._faults.add(fault, method="DELETE", path=f"/session/{session_id}", count=count)

    def ignore_renews(self, count: int | None = 1, *, session_id: str | None = None) -> None:
        """Answer the next ``count`` renews ``200`` and do nothing: the expiry does not move.

        ``session_id`` limits it to one session's renews (``None``: any session's).
        """
        path = "/session/*" if session_id is None else f"/session/{session_id}"
        self._faults.add(Fault(ignored=True), method="POST", path=path, count=count)

    def hang_stats(self, seconds: float, *, status: int | None = 504, count: int | None = 1) -> None:
        """The next ``count`` statistics calls answer after ``seconds`` real seconds, with ``status``."""
        fault = Fault(status=status, drop=status is None, delay=seconds)
        self._faults.add(fault, method="GET", path="/session", count=count, view="stats")

    def stick(self, session_id: str, status: str = "Terminating") -> None:
        """List a session as ``Terminating`` or ``Unknown`` from now on, a DELETE included, until ``unstick``."""
        with self._lock:
            now = self.now()
            self._catch_up(now)
            self._advance(now)
            record = self.cluster.get(session_id)
            if record is None:
                raise KeyError(f"no session {session_id} to stick")
            self.cluster.stick(record, status)

    def unstick(self, session_id: str | None = None) -> None:
        """Let one stuck session (or all of them) go: one stuck Terminating (or deleted) is gone, one
        stuck Unknown carries on."""
        with self._lock:
            now = self._advance(self.now())
            for record in list(self.cluster):
                if record.stuck is not None and session_id in (None, record.id):
                    self.cluster.unstick(record, now)

    def clear_faults(self) -> None:
        """Forget every targeted fault that has not fired yet (deferred requests still land)."""
        self._faults.clear()

    # -- serving -----------------------------------------------------------------------------------

    def serve(self, request: Request) -> Response | None:
        """Answer ``request`` as the service would, faults and their delays included; ``None``: drop."""
        flight = self.receive(request)
        if flight.delay:
            try:
                time.sleep(flight.delay)
            except BaseException:  # interrupted while waiting: the request was sent all the same
                flight.abandon()
                raise
        return flight.answer()

    def receive(self, request: Request) -> InFlight:
        """Take ``request`` in: decide its fault and apply it now unless the fault defers its effect."""
        path = relative_path(request.path)
        params = _safe_params(request)
        with self._lock:  # faults are decided in arrival order, so a seed replays the same run
            fault = self._faults.decide(request.method, path, params)
            now = self.now()
            self._catch_up(now)
            self._seq += 1
            self._in_flight += 1
            flight = InFlight(self, request, path, params, fault, self._seq, now)
            if fault is None or fault.effect == "arrival":
                self._apply(flight, now)
            elif fault.effect == "later":
                self._defer(flight, now + fault.apply_after)
            return flight

    def handle(self, request: Request) -> Response:
        """Answer ``request`` without faults and without recording it (fast in-process set-up)."""
        with self._lock:
            now = self.now()
            self._catch_up(now)
            response, _ = self._handle(request, relative_path(request.path), self._advance(now), None)
            return response

    def catch_up(self) -> None:
        """Apply the deferred requests due by now and advance the cluster, without a request.

        For tests that read ``cluster`` directly; any request does the same first.
        """
        with self._lock:
            now = self.now()
            self._catch_up(now)
            self._advance(now)

    def in_flight(self) -> int:
        """How many requests have arrived and not been answered yet: wait on it to act mid-request."""
        with self._lock:
            return self._in_flight

    def deferred(self) -> list[float]:
        """Simulated times at which deferred requests will take effect, soonest first."""
        with self._lock:
            return sorted(due for due, _, _ in self._deferred)

    def transport(self) -> SimulatorTransport:
        """An ``httpx`` transport that serves this simulator in-process (``httpx.Client(transport=...)``)."""
        return SimulatorTransport(self)

    def async_transport(self) -> AsyncSimulatorTransport:
        """The ``httpx.AsyncClient`` counterpart of ``transport()``; delays are awaited, so they can be cancelled."""
        return AsyncSimulatorTransport(self)

    # -- internals (called with the lock held, or taking it) -----------------------------------

    def _answer(self, flight: InFlight) -> Response | None:
        with self._lock:
            if flight.done:
                raise RuntimeError(f"request {flight.seq} was already answered or abandoned")
            flight.done = True
            self._in_flight -= 1
            now = self.now()
            self._catch_up(now)
            if flight.fault is not None and flight.fault.effect == "answer":
                self._apply(flight, now)
            response = flight.served if flight.fault is None else flight.fault.respond(flight.path, flight.served)
            self._record(flight, None if response is None else response.status)
            return response

    def _abandon(self, flight: InFlight) -> None:
        with self._lock:
            if flight.done:
                return
            flight.done = True
            self._in_flight -= 1
            if flight.fault is not None and flight.fault.effect == "answer":
                self._defer(flight, flight.arrived + flight.delay * self.config.time_scale)
            self._record(flight, None)

    def _defer(self, flight: InFlight, due: float) -> None:
        heapq.heappush(self._deferred, (due, flight.seq, flight))

    def _catch_up(self, now: float) -> None:
        """Apply every deferred request due by ``now``, each at its own due time, in order."""
        while self._deferred and self._deferred[0][0] <= now:
            due, _, flight = heapq.heappop(self._deferred)
            self._apply(flight, due)
            if flight.recorded:
                self._update_record(flight)

    def _advance(self, when: float) -> float:
        """Bring the cluster to ``when``; never backward (a late-landing request lands at the horizon)."""
        when = max(when, self._horizon)
        self.cluster.advance(when)
        self._horizon = when
        return when

    def _apply(self, flight: InFlight, when: float) -> None:
        when = self._advance(when)
        flight.served, flight.session_id = self._handle(flight.request, flight.path, when, flight.seq)
        flight.applied_at = when

    def _handle(self, request: Request, path: str, when: float, seq: int | None) -> tuple[Response, str | None]:
        """Handle at ``when`` (the cluster already advanced to it) and log a create it made."""
        response = handle(request, cluster=self.cluster, now=when)
        session_id = None
        if request.method == "POST" and path == "/session" and response.status == 200:
            session_id = response.body.decode("utf-8").strip()
            record = self.cluster.get(session_id)
            self.created.append(Creation(session_id, record.name if record else "", when, seq))
        return response, session_id

    def _record(self, flight: InFlight, status: int | None) -> None:
        recorded = RecordedRequest(
            method=flight.request.method,
            path=flight.path,
            params={key: tuple(values) for key, values in flight.params.items()},
            status=status,
            fault=flight.fault is not None,
            at=flight.arrived,
            seq=flight.seq,
            applied_at=flight.applied_at,
            session_id=flight.session_id,
        )
        self.requests.append(recorded)
        if self.on_record is not None:
            self.on_record(recorded)
        flight.recorded = True
        excess = len(self.requests) - self.config.max_recorded_requests
        if excess > self.config.max_recorded_requests // 10:  # trim in batches, not on every request
            del self.requests[:excess]

    def _update_record(self, flight: InFlight) -> None:
        """A deferred request landed after it was recorded: fill in its effect (newest records first)."""
        for index in range(len(self.requests) - 1, -1, -1):
            if self.requests[index].seq == flight.seq:
                self.requests[index] = replace(self.requests[index], applied_at=flight.applied_at,
                                               session_id=flight.session_id)
                return


def _safe_params(request: Request) -> dict[str, list[str]]:
    try:
        return request.params()
    except Exception:  # a request too broken to parse is still recorded
        return {}
