"""The simulated cluster: sessions, their lifecycle over simulated time, and CPU/RAM capacity.

Nothing here runs in the background. A session stores the few instants that decide its life
(created, admitted, deleted) and its status is computed from the simulated time when read. The
only thing that cannot be computed lazily is capacity: when a session ends, queued ones may
start. So every read first calls ``advance(now)``, which replays the timeline (ends, deletions,
TTL reaps) in time order from a heap and admits queued sessions at the instant room appears.

Life of a session (times in simulated seconds)::

    queued (Pending, no startTime)  --room-->  admitted (Pending: image pull, ``pending_seconds``)
    --> Running --> Completed | Failed (command outcome, or the deadline passed)
    --> reaped after the TTL (404, gone from lists)
    DELETE: gone from lists and GET at once (the Job is deleted with Background propagation);
    an admitted session's pod still stops for ``terminating_seconds``, holding its cores and RAM,
    with its logs and events readable; queued or ended sessions leave nothing behind.

A *stuck* session (a fault: ``Cluster.stick``) is listed as ``Terminating`` or ``Unknown`` whatever
happens to it, a DELETE included, and holds its capacity until ``unstick``; then one stuck
Terminating (or deleted meanwhile) is gone, one stuck Unknown carries on.

Queued sessions are like Kueue-suspended Jobs: no ``startTime`` yet and the deadline starts at
admission. Admission is best-effort FIFO: a big session at the head does not block small ones.
"""

from __future__ import annotations

import heapq
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from controller.simulator.config import SimulatorConfig
from controller.simulator.workload import Outcome

ID_LENGTH = 8
GIB = 2**30
GB = 1e9
#: The smallest request any session can make (firefly's 0.1 core; 1 GiB, the lowest RAM option).
MIN_CORES = 0.1 - 1e-9
MIN_RAM_BYTES = GIB - 1.0
#: Kinds that the per-user cap counts (``PostAction.checkExistingSessions``).
HEADLESS_KINDS = ("headless", "desktop-app")


@dataclass(slots=True)
class SessionRecord:
    """One session as the simulated cluster knows it; times are simulated epoch seconds."""

    id: str
    user: str
    name: str
    kind: str
    image: str
    cores: float
    ram_bytes: float
    fixed: bool
    gpus: int
    outcome: Outcome
    pulls: bool
    deadline: float
    created: float
    env: tuple[tuple[str, str], ...] = ()
    cmd: str | None = None
    args: str | None = None
    blocked_by: str = ""
    started: float | None = None
    running_at: float | None = None
    ends_at: float | None = None
    deleted: float | None = None
    released: bool = False
    #: ``Terminating`` or ``Unknown``: the status the service reports, whatever happens, until unstuck.
    stuck: str | None = None

    def compute_end(self) -> float | None:
        """When the Job finishes on its own: command exit or deadline, whichever is first."""
        if self.started is None:
            return None
        deadline_at = self.started + self.deadline
        running_at = self.running_at
        if running_at is None or self.outcome.runtime is None:
            return deadline_at
        return min(running_at + self.outcome.runtime, deadline_at)

    def ended_by_deadline(self) -> bool:
        running_at = self.running_at
        if running_at is None or self.outcome.runtime is None or self.started is None:
            return True
        return running_at + self.outcome.runtime > self.started + self.deadline

    def status(self, now: float) -> str:
        """The status the server would report at ``now`` (``SessionBuilder.withStatus`` values)."""
        if self.stuck is not None:
            return self.stuck
        if self.deleted is not None:
            return "Terminating"  # its pod is stopping; never listed (see ``listed``)
        if self.started is None:
            return "Pending"
        if self.ends_at is not None and now >= self.ends_at:
            return "Completed" if not self.ended_by_deadline() and self.outcome.exit_code == 0 else "Failed"
        running_at = self.running_at
        if running_at is None or now < running_at:
            return "Pending"
        return "Running"

    @property
    def listed(self) -> bool:
        """Whether the Job still exists: list, GET and renew see it (not after DELETE, unless stuck)."""
        return self.deleted is None or self.stuck is not None

    def is_active(self, now: float) -> bool:
        """Whether the Job has a live pod (``.status.active == 1``): what renew requires."""
        return self.started is not None and self.deleted is None and (
            self.ends_at is None or now < self.ends_at)

    @property
    def interactive(self) -> bool:
        return self.kind not in HEADLESS_KINDS


class _Event(Enum):
    END = 1  # the Job finished on its own: release capacity, schedule the reap
    GONE = 2  # the deleted session's pod has stopped: release capacity, remove
    REAP = 3  # TTL after finishing passed: remove


@dataclass(slots=True)
class Cluster:
    """All sessions of the simulated service plus the capacity they hold."""

    config: SimulatorConfig
    rng: random.Random
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    used_cores: float = 0.0
    used_ram_bytes: float = 0.0
    _queue: dict[str, None] = field(default_factory=dict)  # insertion-ordered set of queued ids
    _heap: list[tuple[float, int, _Event, str]] = field(default_factory=list)
    _seq: int = 0

    # -- reading ------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Replay everything that happened up to ``now``; later reads see a consistent cluster."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, kind, session_id = heapq.heappop(heap)
            record = self.sessions.get(session_id)
            if record is None:
                continue
            if kind is _Event.END and record.deleted is None and record.ends_at == when:
                self._release(record)
                ttl = self.config.interactive_ttl if record.interactive else self.config.headless_ttl
                self._push(when + ttl, _Event.REAP, record.id)
                self._admit(when)
            elif kind is _Event.GONE and record.deleted is not None and record.stuck is None:
                self._release(record)
                self._remove(record)
                self._admit(when)
            elif kind is _Event.REAP and record.deleted is None and record.ends_at is not None \
                    and record.ends_at <= when:
                self._remove(record)

    def get(self, session_id: str) -> SessionRecord | None:
        return self.sessions.get(session_id)

    def __iter__(self) -> Iterator[SessionRecord]:
        return iter(self.sessions.values())

    def __len__(self) -> int:
        return len(self.sessions)

    def active_interactive(self, user: str, now: float) -> int:
        """The user's non-headless sessions that count against the cap (Pending or Running)."""
        return sum(1 for record in self.sessions.values()
                   if record.user == user and record.interactive
                   and record.status(now) in ("Pending", "Running"))

    # -- changing -----------------------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh id like the server's ``RandomStringGenerator(8)``: ``[a-z][a-z0-9]{7}``."""
        rest = string.ascii_lowercase + string.digits
        while True:
            session_id = self.rng.choice(string.ascii_lowercase) + "".join(
                self.rng.choices(rest, k=ID_LENGTH - 1))
            if session_id not in self.sessions:
                return session_id

    def add(self, record: SessionRecord, now: float) -> None:
        """Queue a new session and start it at once if it fits."""
        self.sessions[record.id] = record
        self._queue[record.id] = None
        if not self._admit_one(record, now):
            record.blocked_by = self._shortage(record)

    def delete(self, record: SessionRecord, now: float) -> None:
        """Delete a session: an admitted one terminates for a while, anything else goes at once."""
        if record.deleted is not None:
            return
        if record.is_active(now) or record.stuck is not None:
            record.deleted = now
            self._push(now + self.config.terminating_seconds, _Event.GONE, record.id)
        else:
            freed = self._release(record)
            self._remove(record)
            if freed:
                self._admit(now)

    def stick(self, record: SessionRecord, status: str) -> None:
        """List ``record`` as ``status`` (``Terminating`` or ``Unknown``) until ``unstick``."""
        if status not in ("Terminating", "Unknown"):
            raise ValueError(f"a session can be stuck Terminating or Unknown, not {status!r}")
        record.stuck = status

    def unstick(self, record: SessionRecord, now: float) -> None:
        """The service lets go: a session stuck Terminating, or deleted while stuck, is gone now; a session
        stuck Unknown and never deleted carries on (its node came back)."""
        was, record.stuck = record.stuck, None
        if was == "Terminating" and record.deleted is None:
            record.deleted = now - self.config.terminating_seconds  # it was stopping all along
        if record.deleted is not None and record.deleted + self.config.terminating_seconds <= now:
            freed = self._release(record)
            self._remove(record)
            if freed:
                self._admit(now)

    def extend(self, record: SessionRecord, now: float) -> None:
        """Renew: push the deadline to ``now + session_expiry`` when less than that remains."""
        assert record.started is not None
        expiry = self.config.session_expiry
        if expiry > record.started + record.deadline - now:
            record.deadline = now - record.started + expiry
            self._schedule_end(record)

    # -- internals ----------------------------------------------------------------------------

    def _push(self, when: float, kind: _Event, session_id: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, session_id))

    def _fits(self, record: SessionRecord) -> bool:
        return (self.used_cores + record.cores <= self.config.cores + 1e-9
                and self.used_ram_bytes + record.ram_bytes <= self.config.ram_gb * GB + 1e-3)

    def _shortage(self, record: SessionRecord) -> str:
        missing = []
        if self.used_cores + record.cores > self.config.cores + 1e-9:
            missing.append("Insufficient cpu")
        if self.used_ram_bytes + record.ram_bytes > self.config.ram_gb * GB + 1e-3:
            missing.append("Insufficient memory")
        return ", ".join(f"1 {reason}" for reason in missing)

    def _admit_one(self, record: SessionRecord, when: float) -> bool:
        if not self._fits(record):
            return False
        del self._queue[record.id]
        record.started = when
        # The image pull: a session whose image cannot be pulled never gets a running container.
        record.running_at = when + self.config.pending_seconds if record.pulls else None
        self.used_cores += record.cores
        self.used_ram_bytes += record.ram_bytes
        self._schedule_end(record)
        return True

    def _admit(self, when: float) -> None:
        """Start queued sessions, oldest first, that fit in what is free at ``when``."""
        for session_id in list(self._queue):
            # Stop as soon as not even the smallest possible session fits: keeps a release O(1)
            # when thousands of sessions wait.
            if (self.config.cores - self.used_cores < MIN_CORES
                    or self.config.ram_gb * GB - self.used_ram_bytes < MIN_RAM_BYTES):
                return
            self._admit_one(self.sessions[session_id], when)

    def _schedule_end(self, record: SessionRecord) -> None:
        record.ends_at = record.compute_end()
        if record.ends_at is not None:
            self._push(record.ends_at, _Event.END, record.id)

    def _release(self, record: SessionRecord) -> bool:
        """Give back what an admitted session holds; whether anything was freed."""
        if record.started is None or record.released:
            return False
        record.released = True
        self.used_cores = max(0.0, self.used_cores - record.cores)
        self.used_ram_bytes = max(0.0, self.used_ram_bytes - record.ram_bytes)
        return True

    def _remove(self, record: SessionRecord) -> None:
        self.sessions.pop(record.id, None)
        self._queue.pop(record.id, None)
