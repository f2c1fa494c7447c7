"""The planner: desired sets + observed sessions + memory + time -> actions and statuses.

This is where every risky decision is made, so it is a pure function: no I/O, no clock reads,
no randomness. The same inputs always give the same plan, in the same order.

Rules, in the order they protect users:

1. A session whose name does not parse as ``<prefix>-<set>-<hash>-<slot>`` is foreign: never touched.
2. Sessions of a set whose manifest is invalid and never was valid are left alone.
3. Orphans (owned sessions of sets that no longer exist) are destroyed only when every manifest
   parsed cleanly, the desired state is not empty (unless ``allow_empty``), and the same orphan
   was already seen in the previous pass.
4. Expectations: a session we just created counts as present until the list shows it (or 5 min
   pass); one we just destroyed counts as gone. A lagging list never causes a duplicate.
5. A slot is the identity: slot N of a set has at most one live session of the current template.
   Extra ones (a crash between create and record) are destroyed as duplicates.
6. Ended sessions are destroyed; whether the slot runs again follows ``restartPolicy``, with a
   per-slot exponential back-off so a session that fails at once does not hot-loop (10 s doubling
   to 5 min, reset once a session has run for 10 min).
7. A template change rolls: the new session of a slot is created first and the old one destroyed
   once the new one is Running, with at most 25% of the slots (at least one) in flight.
8. Creates are capped per pass and interleaved across sets so one big set cannot starve the rest.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from controller.models import SessionInfo
from controller.names import NameParser, owned_name
from controller.spec import DesiredState, SessionSet, Template

DestroyReason = Literal["ended", "scaled-down", "orphaned", "duplicate", "outdated"]
SlotKey = tuple[str, int]

EXPECTATION_TTL = 300.0
RESTART_BACKOFF_BASE = 10.0
RESTART_BACKOFF_CAP = 300.0
RESTART_RESET_AFTER = 600.0
MAX_SURGE_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class ExpectedCreate:
    name: str
    session_id: str | None  # None when the create's answer was lost: matched by name instead
    at: float


@dataclass(frozen=True, slots=True)
class SlotRestarts:
    count: int
    last_end: float
    last_session: str


@dataclass(frozen=True)
class Expectations:
    """What the controller remembers between passes (and persists across restarts)."""

    creates: Mapping[SlotKey, ExpectedCreate] = field(default_factory=dict)
    destroys: Mapping[str, float] = field(default_factory=dict)
    orphans_seen: frozenset[str] = frozenset()
    restarts: Mapping[SlotKey, SlotRestarts] = field(default_factory=dict)
    #: Slots whose session ended and must not run again under this template (OnFailure/Never).
    finished: frozenset[tuple[str, int, str]] = frozenset()

    def created(self, create: Create, session_id: str | None, now: float) -> Expectations:
        creates = {**self.creates, (create.set_name, create.slot): ExpectedCreate(create.name, session_id, now)}
        return replace(self, creates=creates)

    def destroyed(self, session_id: str, now: float) -> Expectations:
        return replace(self, destroys={**self.destroys, session_id: now})

    def to_json(self) -> dict[str, Any]:
        return {
            "creates": [[s, n, e.name, e.session_id, e.at] for (s, n), e in sorted(self.creates.items())],
            "destroys": dict(sorted(self.destroys.items())),
            "orphans_seen": sorted(self.orphans_seen),
            "restarts": [[s, n, r.count, r.last_end, r.last_session] for (s, n), r in sorted(self.restarts.items())],
            "finished": sorted(list(f) for f in self.finished),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Expectations:
        return cls(
            creates={(s, int(n)): ExpectedCreate(name, sid, float(at))
                     for s, n, name, sid, at in data.get("creates", [])},
            destroys={str(k): float(v) for k, v in data.get("destroys", {}).items()},
            orphans_seen=frozenset(data.get("orphans_seen", [])),
            restarts={(s, int(n)): SlotRestarts(int(c), float(t), str(last))
                      for s, n, c, t, last in data.get("restarts", [])},
            finished=frozenset((s, int(n), h) for s, n, h in data.get("finished", [])),
        )


@dataclass(frozen=True, slots=True)
class Create:
    set_name: str
    slot: int
    name: str
    template: Template
    replicas: int
    reason: str  # "missing", "restart", "rollout"

    def env(self) -> dict[str, str]:
        """The environment to send: the template's plus the slot identity (headless only)."""
        if self.template.kind != "headless":
            return {}
        return {**self.template.env_text(), "REPLICA_ID": str(self.slot), "REPLICA_COUNT": str(self.replicas)}


@dataclass(frozen=True, slots=True)
class Destroy:
    set_name: str
    session_id: str
    name: str
    reason: DestroyReason
    phase: str
    #: Fetch logs and events first: the session failed, and this is the last chance to see why.
    collect_evidence: bool = False


@dataclass(frozen=True)
class SetStatus:
    name: str
    desired: int | None
    running: int = 0
    pending: int = 0
    unknown: int = 0
    completed: int = 0
    failed: int = 0
    terminating: int = 0
    outdated: int = 0
    in_flight: int = 0
    suspended: bool = False
    invalid: str | None = None
    waiting: str | None = None  # why some slot is not being filled right now

    @property
    def ended(self) -> int:
        return self.completed + self.failed

    def counts(self) -> dict[str, int]:
        """Sessions by phase, as the metrics report them."""
        return {"Running": self.running, "Pending": self.pending, "Unknown": self.unknown,
                "Completed": self.completed, "Failed": self.failed, "Terminating": self.terminating}


@dataclass(frozen=True)
class Plan:
    creates: tuple[Create, ...]
    destroys: tuple[Destroy, ...]
    statuses: Mapping[str, SetStatus]
    expectations: Expectations
    #: Creates held back by the per-pass cap: the next pass should come at once.
    deferred: int = 0
    #: Set when the list failed: nothing was decided.
    blind: bool = False

    @property
    def changes(self) -> bool:
        return bool(self.creates or self.destroys or self.deferred)


@dataclass(frozen=True)
class PlanOptions:
    prefix: str = "cc"
    allow_empty: bool = False
    max_creates: int = 20
    expectation_ttl: float = EXPECTATION_TTL
    restart_backoff: float = RESTART_BACKOFF_BASE
    restart_backoff_cap: float = RESTART_BACKOFF_CAP


def restart_delay(count: int, base: float = RESTART_BACKOFF_BASE, cap: float = RESTART_BACKOFF_CAP) -> float:
    """Seconds to wait before the ``count``-th consecutive restart of a slot."""
    return min(base * 2 ** max(count - 1, 0), cap)


def plan(
    desired: DesiredState,
    observed: Sequence[SessionInfo] | None,
    expectations: Expectations,
    now: float,
    *,
    options: PlanOptions,
) -> Plan:
    """Decide one pass. ``observed`` is ``None`` when the list call failed: then nothing is done."""
    if observed is None:
        statuses = {name: SetStatus(name, s.spec.replicas, suspended=s.spec.suspend,
                                    invalid=desired.invalid.get(name)) for name, s in desired.sets.items()}
        return Plan((), (), statuses, expectations, blind=True)
    return _Planner(desired, observed, expectations, now, options).run()


class _Seen(NamedTuple):
    """An owned session as the planner needs it, with everything derived once (a tuple: cheap to build)."""

    id: str
    name: str
    phase: str
    started: float  # epoch seconds; +inf while the service has not started it
    set_name: str
    slot: int
    template_hash: str

    @property
    def ended(self) -> bool:
        return self.phase in ("Completed", "Failed")

    def keep_order(self) -> tuple[int, float, str]:
        """Prefer Running over Pending, then the oldest, then the smallest id (stable)."""
        return (0 if self.phase == "Running" else 1, self.started, self.id)


class _Planner:
    """One planning run; a class only to share its inputs between small steps."""

    def __init__(self, desired: DesiredState, observed: Sequence[SessionInfo], memory: Expectations,
                 now: float, options: PlanOptions) -> None:
        self.desired = desired
        self.now = now
        self.options = options
        ttl = options.expectation_ttl
        ids = {s.id for s in observed}
        names = {s.name for s in observed}
        # A create is satisfied once the list shows it; a destroy once the list no longer does.
        self.expected_creates = {
            key: e for key, e in memory.creates.items()
            if now - e.at < ttl and (e.session_id not in ids if e.session_id else e.name not in names)
        }
        self.expected_destroys = {sid: at for sid, at in memory.destroys.items() if sid in ids and now - at < ttl}
        self.memory = memory
        self.restarts = dict(memory.restarts)
        self.finished = set(memory.finished)
        self.creates: list[Create] = []
        self.destroys: list[Destroy] = []
        self.slots: dict[str, dict[int, list[_Seen]]] = defaultdict(lambda: defaultdict(list))
        self.orphans: list[_Seen] = []
        self.terminating: dict[str, int] = defaultdict(int)
        parser = NameParser(options.prefix)
        for session in observed:
            owned = parser.parse(session.name)
            if owned is None:
                continue  # foreign: not ours, never touched
            seen = _Seen(session.id, session.name, session.phase,
                         session.start_time.timestamp() if session.start_time else math.inf,
                         owned.set_name, owned.slot, owned.template_hash)
            if seen.id in self.expected_destroys or seen.phase == "Terminating":
                self.terminating[seen.set_name] += 1
            elif seen.set_name in desired.sets:
                self.slots[seen.set_name][seen.slot].append(seen)
            elif seen.set_name not in desired.invalid:
                self.orphans.append(seen)

    def run(self) -> Plan:
        statuses: dict[str, SetStatus] = {}
        wanted: list[list[Create]] = []
        for name in sorted(self.desired.sets):
            status, creates = self._plan_set(self.desired.sets[name])
            statuses[name] = status
            wanted.append(creates)
        for name in sorted(set(self.desired.invalid) - set(self.desired.sets)):
            statuses[name] = SetStatus(name, None, invalid=self.desired.invalid[name],
                                       terminating=self.terminating.get(name, 0))
        orphans_seen = self._plan_orphans()
        ordered = list(_round_robin(wanted))
        allowed = ordered[: self.options.max_creates]
        self.finished = {f for f in self.finished
                         if f[0] in self.desired.sets and f[1] <= self.desired.sets[f[0]].spec.replicas}
        memory = Expectations(
            creates=self.expected_creates,
            destroys=self.expected_destroys,
            orphans_seen=orphans_seen,
            restarts={k: v for k, v in self.restarts.items() if k[0] in self.desired.sets},
            finished=frozenset(self.finished),
        )
        destroys = tuple(sorted(self.destroys, key=lambda d: (d.set_name, d.name, d.session_id)))
        return Plan(tuple(allowed), destroys, statuses, memory, deferred=len(ordered) - len(allowed))

    def _plan_set(self, session_set: SessionSet) -> tuple[SetStatus, list[Create]]:
        spec = session_set.spec
        name = session_set.name
        current = spec.template.hash()
        slots = self.slots.get(name, {})
        counts: dict[str, int] = defaultdict(int)
        act = not spec.suspend
        keep_by_slot: dict[int, list[_Seen]] = {}

        for slot in sorted(slots):
            sessions = slots[slot]
            if len(sessions) > 1:
                sessions = sorted(sessions, key=lambda seen: (seen.started, seen.id))
            for seen in sessions:
                counts[seen.phase] += 1
            if slot > spec.replicas:
                for seen in sessions:
                    self._destroy(act, seen, "scaled-down")
                continue
            live = []
            for seen in sessions:
                if seen.ended:
                    self._destroy(act, seen, "ended")
                    if act:
                        self._note_end(seen, spec.restart_policy)
                else:
                    live.append(seen)
            keep_by_slot[slot] = self._dedupe(act, live, current)

        creates: list[Create] = []
        waiting: str | None = None
        in_flight = 0
        surge_budget = max(1, math.floor(spec.replicas * MAX_SURGE_FRACTION)) if spec.replicas else 0
        surging = sum(1 for kept in keep_by_slot.values()
                      if any(s.template_hash == current for s in kept)
                      and any(s.template_hash != current for s in kept))
        for slot in range(1, spec.replicas + 1):
            kept = keep_by_slot.get(slot, [])
            expected = self.expected_creates.get((name, slot))
            if expected is not None:
                in_flight += 1
            fresh = [s for s in kept if s.template_hash == current]
            has_current = bool(fresh) or (
                expected is not None and expected.name == owned_name(self.options.prefix, name, current, slot))
            self._reset_backoff(name, slot, fresh)
            if has_current:
                continue
            if (name, slot, current) in self.finished:
                continue
            restarts = self.restarts.get((name, slot))
            delay = restart_delay(restarts.count, self.options.restart_backoff,
                                  self.options.restart_backoff_cap) if restarts is not None else 0.0
            if restarts is not None and self.now < restarts.last_end + delay:
                waiting = f"slot {slot} restarts after back-off ({restarts.count} recent ends)"
                continue
            if len(fresh) < len(kept) or expected is not None:
                if surging >= surge_budget:
                    continue
                surging += 1
                reason = "rollout"
            else:
                reason = "restart" if restarts is not None else "missing"
            if act:
                creates.append(Create(name, slot, owned_name(self.options.prefix, name, current, slot),
                                      spec.template, spec.replicas, reason))

        outdated_total = sum(1 for kept in keep_by_slot.values() for s in kept if s.template_hash != current)
        status = SetStatus(
            name=name, desired=spec.replicas, running=counts["Running"], pending=counts["Pending"],
            unknown=counts["Unknown"], completed=counts["Completed"], failed=counts["Failed"],
            terminating=self.terminating.get(name, 0), outdated=outdated_total, in_flight=in_flight,
            suspended=spec.suspend, invalid=self.desired.invalid.get(name), waiting=waiting,
        )
        return status, creates

    def _dedupe(self, act: bool, live: list[_Seen], current: str) -> list[_Seen]:
        """Keep one session of the current template (and one outdated while it rolls)."""
        if len(live) < 2:
            return live
        fresh = sorted((s for s in live if s.template_hash == current), key=_Seen.keep_order)
        stale = sorted((s for s in live if s.template_hash != current), key=_Seen.keep_order)
        kept = fresh[:1]
        for seen in fresh[1:]:
            self._destroy(act, seen, "duplicate")
        if stale:
            if fresh and fresh[0].phase == "Running":
                for seen in stale:
                    self._destroy(act, seen, "outdated")
            else:
                kept.append(stale[0])
                for seen in stale[1:]:
                    self._destroy(act, seen, "duplicate")
        return kept

    def _note_end(self, seen: _Seen, policy: str) -> None:
        """Record an ended session: count a restart, or mark the slot finished."""
        key = (seen.set_name, seen.slot)
        restart = policy == "Always" or (policy == "OnFailure" and seen.phase == "Failed")
        if not restart:
            self.finished.add((*key, seen.template_hash))
            return
        previous = self.restarts.get(key)
        if previous is not None and previous.last_session == seen.id:
            return
        count = previous.count + 1 if previous is not None else 1
        self.restarts[key] = SlotRestarts(count, self.now, seen.id)

    def _reset_backoff(self, set_name: str, slot: int, current: list[_Seen]) -> None:
        if (set_name, slot) not in self.restarts:
            return
        for seen in current:
            if seen.phase == "Running" and self.now - seen.started >= RESTART_RESET_AFTER:
                self.restarts.pop((set_name, slot), None)

    def _plan_orphans(self) -> frozenset[str]:
        seen_now = frozenset(seen.id for seen in self.orphans)
        allowed = self.desired.complete and (bool(self.desired.sets) or self.options.allow_empty)
        if allowed:
            for seen in self.orphans:
                if seen.id in self.memory.orphans_seen:
                    self._destroy(True, seen, "orphaned")
        return seen_now

    def _destroy(self, act: bool, seen: _Seen, reason: DestroyReason) -> None:
        if act:
            self.destroys.append(Destroy(seen.set_name, seen.id, seen.name, reason, seen.phase,
                                         collect_evidence=seen.phase == "Failed"))


def _round_robin(groups: Iterable[list[Create]]) -> Iterable[Create]:
    queues = [list(group) for group in groups if group]
    index = 0
    while queues:
        for queue in queues:
            if index < len(queue):
                yield queue[index]
        index += 1
        queues = [q for q in queues if index < len(q)]
