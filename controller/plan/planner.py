"""The planner: desired sets + observed sessions + memory + time -> actions and statuses.

This is where every risky decision is made, so it is a pure function: no I/O, no clock reads,
no randomness. The same inputs always give the same plan, in the same order.

Rules, in the order they protect users:

1. A session whose name does not parse as ``<prefix>-<set>-<hash>-<slot>`` is foreign: never touched.
2. Sessions of a set whose manifest is invalid and never was valid are left alone.
3. A list answer is not trusted blindly. An owned session that was live in the last list, that the
   controller did not destroy and that cannot have been reaped (only ended sessions are reaped,
   after an hour) may be missing from a new answer: its slot is not refilled until the next list
   confirms it is gone, by leaving out exactly the same sessions and nothing else. Any other
   answer missing sessions is *lossy* and confirms nothing: every slot it is missing stays held.
   An answer with no owned session at all, while the last one had live ones, makes the whole pass
   suspect: nothing is created or destroyed, and nothing is learnt from it. Such answers are
   believed only once they have persisted for ``empty_list_window`` (1 min): an account really
   emptied by hand is refilled then.
   (Two answers in a row that leave out exactly the same sessions and nothing else look like a
   real deletion; if such a session comes back, rule 6 removes the extra one.)
4. Orphans (owned sessions of sets that no longer exist) are destroyed only when every manifest
   parsed cleanly and has settled, the desired state is not empty (unless ``allow_empty``), and the
   same orphan was already seen in the previous pass.
5. Expectations: a create the service confirmed counts as present until the list shows its id (or
   5 min pass); one we just destroyed counts as gone. A create whose outcome is unknown (timeout,
   5xx, garbled answer, crash before recording) is looked for by name and blocks its slot until a
   list shows it, or until ``uncertain_window`` (2 min) has passed *and* two lists that were not
   lossy did not show it. A lagging list never causes a duplicate.
6. A slot is the identity: slot N of a set has at most one live session of the current template.
   If a second one appears anyway (a create applied later than the window), the newer is destroyed
   as a duplicate.
7. Ended sessions are destroyed; whether the slot runs again follows ``restartPolicy``, with a
   per-slot exponential back-off so a session that fails at once does not hot-loop (10 s doubling
   to 5 min, reset once a session has run for 10 min).
8. A set whose creates the service refused (4xx) creates nothing until its back-off ends (the
   reconciler sets it); a 429 or 503 with Retry-After pauses every create for that long.
9. A template change rolls: the new session of a slot is created first and the old one destroyed
   once the new one is Running, with at most 25% of the slots (at least one) in flight.
10. Creates are capped per pass and interleaved across sets so one big set cannot starve the rest.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

from controller.models import ObservedSession
from controller.names import NameParser, OwnedName, owned_name
from controller.plan.memory import ExpectedCreate, Memory, SeenSession, SlotHistory, SlotKey
from controller.spec import DesiredState, SessionSet, Template

DestroyReason = Literal["ended", "scaled-down", "orphaned", "duplicate", "outdated"]

EXPECTATION_TTL = 300.0
#: How long an uncertain create blocks its slot at least (and it takes two lists without it too).
UNCERTAIN_WINDOW = 120.0
UNCERTAIN_MIN_LISTS = 2
#: How long answers with no owned session at all must persist before they are believed.
EMPTY_LIST_WINDOW = 60.0
RESTART_BACKOFF_BASE = 10.0
RESTART_BACKOFF_CAP = 300.0
RESTART_RESET_AFTER = 600.0
MAX_SURGE_FRACTION = 0.25
#: ReplicaSet's ``BurstReplicas``: the most creates one pass starts.
MAX_CREATES_PER_PASS = 500

_LIVE = frozenset({"Pending", "Running", "Unknown"})
_ENDED = frozenset({"Completed", "Failed"})


@dataclass(frozen=True, slots=True)
class Create:
    set_name: str
    slot: int
    name: str
    template: Template
    replicas: int
    reason: str  # "missing", "restart", "rollout"
    #: Sessions already listed under this name: a later list showing any other id proves the create.
    prior_ids: tuple[str, ...] = ()

    @property
    def spec_key(self) -> str:
        """What a create back-off is tied to: the template and the replica count."""
        return spec_key(self.template.hash(), self.replicas)

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
    #: Report the end (audit ``Ended``) before destroying: only the first time this session is seen ended.
    report_end: bool = False
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
    #: Creates whose outcome is unknown, blocking their slots.
    uncertain: int = 0
    #: Slots whose session one list left out: they wait for a second list before being refilled.
    held: int = 0
    suspended: bool = False
    invalid: str | None = None
    waiting: str | None = None  # why some slot is not being filled right now
    #: The service refused this set's creates: none until then (epoch seconds), and its message.
    backoff_until: float | None = None
    backoff_message: str | None = None

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
    statuses: dict[str, SetStatus]
    #: The memory after this plan; the reconciler owns it from here (see ``controller.plan.memory``).
    memory: Memory
    #: Creates held back by the per-pass cap: the next pass should come at once.
    deferred: int = 0
    #: Set when the list failed: nothing was decided.
    blind: bool = False
    #: Set when the list lost every owned session at once: nothing was done, see rule 3.
    suspect: bool = False
    #: Owned sessions this list left out for the first time (their slots are held).
    lost: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return bool(self.creates or self.destroys or self.deferred)


@dataclass(frozen=True)
class PlanOptions:
    prefix: str = "cc"
    allow_empty: bool = False
    max_creates: int = MAX_CREATES_PER_PASS
    expectation_ttl: float = EXPECTATION_TTL
    uncertain_window: float = UNCERTAIN_WINDOW
    empty_list_window: float = EMPTY_LIST_WINDOW
    restart_backoff: float = RESTART_BACKOFF_BASE
    restart_backoff_cap: float = RESTART_BACKOFF_CAP


def spec_key(template_hash: str, replicas: int) -> str:
    return f"{template_hash}/{replicas}"


def restart_delay(count: int, base: float = RESTART_BACKOFF_BASE, cap: float = RESTART_BACKOFF_CAP) -> float:
    """Seconds to wait before the ``count``-th consecutive restart of a slot."""
    return min(base * 2 ** max(count - 1, 0), cap)


#: Name parsers by prefix, with their caches: names repeat every pass, so each is parsed once.
_PARSERS: dict[str, NameParser] = {}


def _parser(prefix: str) -> NameParser:
    parser = _PARSERS.get(prefix)
    if parser is None:
        parser = _PARSERS[prefix] = NameParser(prefix)
    return parser


def plan(
    desired: DesiredState,
    observed: Sequence[ObservedSession] | None,
    memory: Memory,
    now: float,
    *,
    options: PlanOptions,
) -> Plan:
    """Decide one pass. ``observed`` is ``None`` when the list call failed: then nothing is done."""
    if observed is None:
        return Plan((), (), _idle_statuses(desired, memory, now), memory.copy(), blind=True)
    return _Planner(desired, observed, memory, now, options).run()


def _idle_statuses(desired: DesiredState, memory: Memory, now: float) -> dict[str, SetStatus]:
    statuses = {}
    for name, session_set in desired.sets.items():
        backoff = memory.backoffs.get(name)
        statuses[name] = SetStatus(
            name, session_set.spec.replicas, suspended=session_set.spec.suspend,
            invalid=desired.invalid.get(name),
            backoff_until=backoff.until if backoff is not None and backoff.until > now else None,
            backoff_message=backoff.message if backoff is not None else None)
    return statuses


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
        return self.phase in _ENDED

    def keep_order(self) -> tuple[int, float, str]:
        """Prefer Running over Pending, then the oldest, then the smallest id (stable)."""
        return (0 if self.phase == "Running" else 1, self.started, self.id)


class _Planner:
    """One planning run; a class only to share its inputs between small steps."""

    def __init__(self, desired: DesiredState, observed: Sequence[ObservedSession], memory: Memory,
                 now: float, options: PlanOptions) -> None:
        self.desired = desired
        self.now = now
        self.options = options
        self.memory = memory
        self.creates: list[Create] = []
        self.destroys: list[Destroy] = []
        self.slots: dict[str, dict[int, list[_Seen]]] = defaultdict(lambda: defaultdict(list))
        self.orphans: list[_Seen] = []
        self.terminating: dict[str, int] = defaultdict(int)
        self.ids: set[str] = set()
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.live: dict[str, SeenSession] = {}
        parse = _parser(options.prefix).parse
        sets, invalid = desired.sets, desired.invalid
        destroying = memory.destroys
        for session in observed:
            self.ids.add(session.id)
            owned: OwnedName | None = parse(session.name)
            if owned is None:
                continue  # foreign: not ours, never touched
            started = session.started if session.started is not None else math.inf
            seen = _Seen(session.id, session.name, session.phase, started, owned.set_name, owned.slot,
                         owned.template_hash)
            self.by_name[seen.name].append(seen.id)
            if seen.id in destroying or seen.phase == "Terminating":
                self.terminating[seen.set_name] += 1
                continue
            if seen.phase in _LIVE:
                self.live[seen.id] = SeenSession(seen.set_name, seen.slot, seen.name)
            if seen.set_name in sets:
                self.slots[seen.set_name][seen.slot].append(seen)
            elif seen.set_name not in invalid:
                self.orphans.append(seen)

    # -- trust ------------------------------------------------------------------------------------

    def _lost(self) -> tuple[set[str], set[str]]:
        """Owned live sessions of the last list that this one left out: (all of them, the new ones)."""
        gone = {sid for sid in self.memory.seen_live
                if sid not in self.ids and sid not in self.memory.destroys}
        return gone, gone - self.memory.missing

    def run(self) -> Plan:
        gone, lost_first = self._lost()
        believed_empty = False
        if lost_first and not self.by_name:
            since = self.memory.suspect_since
            if since is None or self.now - since < self.options.empty_list_window:
                return self._suspect(lost_first)
            believed_empty = True  # empty for long enough: the sessions really are gone
        # A lossy list confirms nothing: all its missing slots stay held. Only an answer that leaves out
        # exactly what the last one left out (nothing new, nothing back) confirms those are gone.
        self.lossy = bool(gone or self.memory.missing) and gone != self.memory.missing and not believed_empty
        held_ids = gone if self.lossy else set()
        self.held: dict[SlotKey, str] = {}
        for sid in held_ids:
            seen = self.memory.seen_live[sid]
            self.held[(seen.set_name, seen.slot)] = sid
        self.expected_creates = self._settle_creates()
        self.expected_destroys = {sid: at for sid, at in self.memory.destroys.items()
                                  if sid in self.ids and self.now - at < self.options.expectation_ttl}
        self.restarts = dict(self.memory.restarts)
        self.finished = set(self.memory.finished)
        self.backoffs = {name: b for name, b in self.memory.backoffs.items()
                         if name in self.desired.sets
                         and b.spec_key == spec_key(self.desired.sets[name].spec.template.hash(),
                                                    self.desired.sets[name].spec.replicas)}
        self.paused = self.now < self.memory.creates_paused_until

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
        sets = self.desired.sets
        memory = Memory(
            creates=self.expected_creates,
            destroys=self.expected_destroys,
            orphans_seen=orphans_seen,
            restarts={k: v for k, v in self.restarts.items() if k[0] in sets},
            finished={f for f in self.finished if f[0] in sets and f[1] <= sets[f[0]].spec.replicas},
            seen_live={**self.live, **{sid: self.memory.seen_live[sid] for sid in held_ids}},
            missing=frozenset(held_ids),
            suspect_since=None,
            backoffs=self.backoffs,
            creates_paused_until=self.memory.creates_paused_until,
            ended_reported={sid for sid in self.memory.ended_reported if sid in self.ids},
        )
        destroys = tuple(sorted(self.destroys, key=lambda d: (d.set_name, d.name, d.session_id)))
        return Plan(tuple(allowed), destroys, statuses, memory, deferred=len(ordered) - len(allowed),
                    lost=tuple(sorted(lost_first)))

    def _suspect(self, lost: set[str]) -> Plan:
        """No owned session in the answer while the last one had live ones: act on, and learn, nothing."""
        memory = self.memory.copy()
        if memory.suspect_since is None:
            memory.suspect_since = self.now
        return Plan((), (), _idle_statuses(self.desired, self.memory, self.now), memory, suspect=True,
                    lost=tuple(sorted(lost)))

    def _settle_creates(self) -> dict[SlotKey, ExpectedCreate]:
        """The creates still expected after this list (see rule 5)."""
        kept = {}
        options, now = self.options, self.now
        for key, expected in self.memory.creates.items():
            if expected.session_id is not None:
                if expected.session_id not in self.ids and now - expected.at < options.expectation_ttl:
                    kept[key] = expected
                continue
            listed = self.by_name.get(expected.name, ())
            if any(sid not in expected.prior_ids for sid in listed):
                continue  # it happened: the session is in the list
            misses = expected.misses + (0 if self.lossy else 1)
            if misses >= UNCERTAIN_MIN_LISTS and now - expected.at >= options.uncertain_window:
                continue  # long enough and often enough not seen: it did not happen
            kept[key] = replace(expected, misses=misses)
        return kept

    # -- one set ----------------------------------------------------------------------------------

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

        backoff = self.backoffs.get(name)
        backing_off = backoff is not None and self.now < backoff.until
        creates: list[Create] = []
        waiting: str | None = None
        in_flight = uncertain = held = 0
        surge_budget = max(1, math.floor(spec.replicas * MAX_SURGE_FRACTION)) if spec.replicas else 0
        surging: int | None = None  # counted only when a slot needs it
        for slot in range(1, spec.replicas + 1):
            kept = keep_by_slot.get(slot, [])
            expected = self.expected_creates.get((name, slot))
            if expected is not None:
                in_flight += 1
                uncertain += expected.uncertain
            if (name, slot) in self.held:
                held += 1
                waiting = waiting or f"slot {slot} is missing from the list: waiting for a second list"
                continue
            fresh = [s for s in kept if s.template_hash == current]
            if fresh:
                self._reset_backoff(name, slot, fresh)
                continue
            if expected is not None:
                # One create per slot at a time, whatever its template: a create of an earlier
                # template still in flight (maybe uncertain) must settle before the next, or a slot
                # could end up with three sessions.
                continue
            if (name, slot, current) in self.finished:
                continue
            restarts = self.restarts.get((name, slot))
            delay = restart_delay(restarts.count, self.options.restart_backoff,
                                  self.options.restart_backoff_cap) if restarts is not None else 0.0
            if restarts is not None and self.now < restarts.last_end + delay:
                waiting = f"slot {slot} restarts after back-off ({restarts.count} recent ends)"
                continue
            if kept:
                if surging is None:
                    surging = self._surging(keep_by_slot, current)
                if surging >= surge_budget:
                    continue
                surging += 1
                reason = "rollout"
            else:
                reason = "restart" if restarts is not None else "missing"
            if not act:
                continue
            if backing_off:
                waiting = "creates back off after the service refused one"
                continue
            if self.paused:
                waiting = "creates paused: the service asked to slow down (Retry-After)"
                continue
            slot_name = owned_name(self.options.prefix, name, current, slot)
            creates.append(Create(name, slot, slot_name, spec.template, spec.replicas, reason,
                                  prior_ids=tuple(self.by_name.get(slot_name, ()))))

        outdated_total = sum(1 for kept in keep_by_slot.values() for s in kept if s.template_hash != current)
        status = SetStatus(
            name=name, desired=spec.replicas, running=counts["Running"], pending=counts["Pending"],
            unknown=counts["Unknown"], completed=counts["Completed"], failed=counts["Failed"],
            terminating=self.terminating.get(name, 0), outdated=outdated_total, in_flight=in_flight,
            uncertain=uncertain, held=held, suspended=spec.suspend, invalid=self.desired.invalid.get(name),
            waiting=waiting,
            backoff_until=backoff.until if backing_off and backoff is not None else None,
            backoff_message=backoff.message if backoff is not None else None,
        )
        return status, creates

    @staticmethod
    def _surging(keep_by_slot: dict[int, list[_Seen]], current: str) -> int:
        """Slots that run a new session beside an outdated one (a rollout in flight)."""
        return sum(1 for kept in keep_by_slot.values()
                   if len(kept) > 1
                   and any(s.template_hash == current for s in kept)
                   and any(s.template_hash != current for s in kept))

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
        self.restarts[key] = SlotHistory(count, self.now, seen.id)

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
        if not act:
            return
        report = reason == "ended" and seen.id not in self.memory.ended_reported
        self.destroys.append(Destroy(seen.set_name, seen.id, seen.name, reason, seen.phase, report_end=report,
                                     collect_evidence=report and seen.phase == "Failed"))


def _round_robin(groups: Iterable[list[Create]]) -> Iterable[Create]:
    queues = [list(group) for group in groups if group]
    index = 0
    while queues:
        for queue in queues:
            if index < len(queue):
                yield queue[index]
        index += 1
        queues = [q for q in queues if index < len(q)]
