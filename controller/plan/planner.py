"""The planner: desired sets + observed sessions + memory + capacity + time -> actions and statuses.

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
   emptied by hand is refilled then. (Two answers in a row that leave out exactly the same
   sessions and nothing else look like a real deletion; if such a session comes back, rule 6
   removes the extra one.)
4. Orphans (owned sessions of sets that no longer exist) are destroyed only when every manifest
   parsed cleanly and has settled, the desired state is not empty (unless ``allow_empty``), and the
   same orphan was already seen in the previous pass.
5. Expectations: a create the service confirmed counts as present until the list shows its id (or
   5 min pass); one we just destroyed counts as gone. A create whose outcome is unknown (timeout,
   5xx, garbled answer, crash before recording) is looked for by name and blocks its slot until a
   list shows it, or until ``uncertain_window`` (2 min) has passed *and* two lists that were not
   lossy did not show it. A slot has one create in flight at a time, whatever its template.
6. A slot is the identity: slot N of a set has at most one live session of the current template.
   If a second one appears anyway (a create applied later than the window), the newer is destroyed
   as a duplicate.
7. Ended sessions are destroyed; whether the slot runs again follows ``restartPolicy``, with a
   per-slot exponential back-off so a session that fails at once does not hot-loop (10 s doubling
   to 5 min, reset once a session has run for 10 min). Three early ends (within 10 min of the
   start) in 30 min make the set ``CrashLooping``; the back-off goes on, it never gives up.
8. A set whose creates the service refused (4xx) creates nothing until its back-off ends (the
   reconciler sets it); a 429 or 503 with Retry-After pauses every create for that long.
9. A template change replaces outdated sessions as ``spec.updateStrategy`` says: ``RollingUpdate``
   (a new session beside the old one, the old one destroyed once the new one runs, at most
   ``maxSurge`` slots at a time; or ``maxUnavailable`` old sessions destroyed first),
   ``OnCompletion`` (outdated sessions are never destroyed while they run; their slots get the new
   template when they end) or ``Recreate`` (all outdated sessions go first).
10. With platform statistics, creates that do not fit the free capacity wait (``WaitingForCapacity``)
    instead of piling up ``Pending`` sessions; without them, creates go ahead and the plan says so.
11. Interactive sessions are renewed before they expire; a refused renew is retried later and never
    becomes a destroy.
12. Creates are capped per pass and interleaved across sets so one big set cannot starve the rest.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from controller.models import ObservedSession
from controller.names import NameParser, owned_name
from controller.plan.actions import (
    CRASH_LOOP_ENDS,
    CRASH_LOOP_WINDOW,
    RENEW_RETRY,
    RESTART_RESET_AFTER,
    UNCERTAIN_MIN_LISTS,
    Create,
    Destroy,
    DestroyReason,
    Plan,
    PlanOptions,
    Renew,
    SetStatus,
    Unschedulable,
    restart_delay,
    spec_key,
)
from controller.plan.capacity import Capacity, CapacityLedger
from controller.plan.conditions import SetFacts, Status, evaluate, stamp
from controller.plan.memory import CreateBackoff, ExpectedCreate, Memory, SeenSession, SlotHistory, SlotKey
from controller.spec import DesiredState, SessionSet

_LIVE = frozenset({"Pending", "Running", "Unknown"})
_ENDED = frozenset({"Completed", "Failed"})

#: Template hashes by template object (loaded manifests are reused pass after pass, and hashing
#: one costs a JSON dump and a SHA-256). Keyed by id, with the object kept to guard against reuse.
_HASHES: dict[int, tuple[SessionSet, str]] = {}


def template_hash(session_set: SessionSet) -> str:
    """``session_set.spec.template.hash()``, computed once per loaded set."""
    entry = _HASHES.get(id(session_set))
    if entry is not None and entry[0] is session_set:
        return entry[1]
    if len(_HASHES) > 100_000:
        _HASHES.clear()
    value = session_set.spec.template.hash()
    _HASHES[id(session_set)] = (session_set, value)
    return value


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
    capacity: Capacity | None = None,
) -> Plan:
    """Decide one pass. ``observed`` is ``None`` when the list call failed: then nothing is done.

    ``capacity`` is what the platform has free (``None``: statistics unavailable, creates are not
    checked against it).
    """
    if observed is None:
        return Plan((), (), _idle_statuses(desired, memory, now), memory.copy(), blind=True)
    return _Planner(desired, observed, memory, now, options, capacity).run()


def _idle_statuses(desired: DesiredState, memory: Memory, now: float) -> dict[str, SetStatus]:
    """Statuses when nothing could be observed: what is known from the manifests and the memory."""
    statuses = {}
    for name, session_set in desired.sets.items():
        backoff = memory.backoffs.get(name)
        statuses[name] = SetStatus(
            name, session_set.spec.replicas, suspended=session_set.spec.suspend,
            invalid=desired.invalid.get(name),
            backoff_until=backoff.until if backoff is not None and backoff.until > now else None,
            backoff_message=backoff.message if backoff is not None else None)
    return statuses


_NONE: list[_Seen] = []  # an empty slot (never appended to)


class _Seen(NamedTuple):
    """An owned session as the planner needs it, with everything derived once (a tuple: cheap to build)."""

    id: str
    name: str
    phase: str
    started: float  # epoch seconds; +inf while the service has not started it
    set_name: str
    slot: int
    template_hash: str
    kind: str
    expires: float | None

    @property
    def ended(self) -> bool:
        return self.phase in _ENDED

    def keep_order(self) -> tuple[int, float, str]:
        """Prefer Running over Pending, then the oldest, then the smallest id (stable)."""
        return (0 if self.phase == "Running" else 1, self.started, self.id)


@dataclass
class _SetPlan:
    """What planning one set produced, before capacity and the per-pass cap are applied."""

    creates: list[Create]
    counts: dict[str, int]
    outdated: int  # live sessions of an older template
    updated: int  # slots with a live session of the current template
    ready: int  # slots with a Running session of the current template
    finished: int  # slots that ended for good under the current template
    live: int
    in_flight: int
    uncertain: int
    held: int
    waiting: str | None
    #: The service refused this set's last create (the back-off is remembered until a create succeeds).
    refused: CreateBackoff | None
    #: A create of this set waits for the service's Retry-After.
    paused: bool
    next_expiry: float | None
    crash_slots: list[tuple[int, int]]  # (slot, early ends in the window)
    unschedulable: int  # sessions Pending for longer than the limit


class _Planner:
    """One planning run; a class only to share its inputs between small steps."""

    def __init__(self, desired: DesiredState, observed: Sequence[ObservedSession], memory: Memory,
                 now: float, options: PlanOptions, capacity: Capacity | None) -> None:
        self.desired = desired
        self.now = now
        self.options = options
        self.memory = memory
        self.capacity = capacity if options.capacity else None
        self.destroys: list[Destroy] = []
        self.renews: list[Renew] = []
        self.unschedulable: list[Unschedulable] = []
        self.slots: dict[str, dict[int, list[_Seen]]] = {}
        self.orphans: list[_Seen] = []
        self.terminating: Counter[str] = Counter()
        self.terminating_outdated: Counter[str] = Counter()
        self.ids: set[str] = {session.id for session in observed}
        #: Owned sessions by name: the first id, and any further ids in ``by_name_more`` (rare).
        self.by_name: dict[str, str] = {}
        self.by_name_more: dict[str, list[str]] = {}
        self.live: dict[str, SeenSession] = {}
        self.pending_since: dict[str, float] = {}
        # What the cluster has not admitted yet but will have to: our queued sessions (stats only
        # count admitted ones).
        self.queued_cores = self.queued_ram = 0.0
        self._scan(observed)

    def _scan(self, observed: Sequence[ObservedSession]) -> None:
        """Sort the owned sessions by set and slot. The hot loop of a pass: 10,000 rows on a busy account."""
        parser = _parser(self.options.prefix)
        memo, parse = parser.memo, parser.parse
        sets, invalid = self.desired.sets, self.desired.invalid
        destroying, seen_before = self.memory.destroys, self.memory.seen_live
        by_name, by_name_more, live, slots = self.by_name, self.by_name_more, self.live, self.slots
        capacity, now, inf = self.capacity, self.now, math.inf
        for session in observed:
            name = session.name
            owned = memo.get(name)
            if owned is None and name not in memo:
                owned = parse(name)
            if owned is None:
                continue  # foreign: not ours, never touched
            sid, phase, set_name = session.id, session.phase, owned.set_name
            started = session.started
            seen = _Seen(sid, name, phase, inf if started is None else started, set_name, owned.slot,
                         owned.template_hash, session.kind, session.expires)
            if name in by_name:
                by_name_more.setdefault(name, []).append(sid)
            else:
                by_name[name] = sid
            if phase == "Terminating" or sid in destroying:
                self.terminating[set_name] += 1
                session_set = sets.get(set_name)
                if session_set is not None and seen.template_hash != template_hash(session_set):
                    self.terminating_outdated[set_name] += 1
                continue
            if phase in _LIVE:
                previous = seen_before.get(sid)
                live[sid] = previous if previous is not None and previous.name == name else SeenSession(
                    set_name, owned.slot, name)
                if phase == "Pending":
                    self.pending_since[sid] = self.memory.pending_since.get(sid, now)
                if capacity is not None and (started is None or started >= capacity.as_of):
                    # Queued, or admitted after the statistics were taken: not in their "requested" yet.
                    self.queued_cores += session.cores if session.cores is not None else capacity.default_cores
                    self.queued_ram += session.ram_bytes if session.ram_bytes is not None else capacity.default_ram
            if set_name in sets:
                per_set = slots.get(set_name)
                if per_set is None:
                    per_set = slots[set_name] = {}
                entries = per_set.get(owned.slot)
                if entries is None:
                    per_set[owned.slot] = [seen]
                else:
                    entries.append(seen)
            elif set_name not in invalid:
                self.orphans.append(seen)

    def _listed(self, name: str) -> tuple[str, ...]:
        """Ids of the owned sessions listed under ``name``."""
        first = self.by_name.get(name)
        if first is None:
            return ()
        more = self.by_name_more.get(name)
        return (first, *more) if more else (first,)

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
        # Per-set views of the per-slot memory, so planning a set never scans the others.
        self.held: dict[str, set[int]] = {}
        for sid in held_ids:
            seen = self.memory.seen_live[sid]
            self.held.setdefault(seen.set_name, set()).add(seen.slot)
        self.expected_creates = self._settle_creates()
        self.expected_by_set: dict[str, dict[int, ExpectedCreate]] = {}
        for (set_name, slot), expected in self.expected_creates.items():
            self.expected_by_set.setdefault(set_name, {})[slot] = expected
        self.expected_destroys = {sid: at for sid, at in self.memory.destroys.items()
                                  if sid in self.ids and self.now - at < self.options.expectation_ttl}
        self.restarts: dict[str, dict[int, SlotHistory]] = {}
        for (set_name, slot), history in self.memory.restarts.items():
            self.restarts.setdefault(set_name, {})[slot] = history
        self.finished: dict[str, set[tuple[int, str]]] = {}
        for set_name, slot, template in self.memory.finished:
            self.finished.setdefault(set_name, set()).add((slot, template))
        self.backoffs = {name: b for name, b in self.memory.backoffs.items()
                         if name in self.desired.sets
                         and b.spec_key == spec_key(template_hash(self.desired.sets[name]),
                                                    self.desired.sets[name].spec.replicas)}
        self.paused = self.now < self.memory.creates_paused_until
        self.conditions = {name: marks for name, marks in self.memory.conditions.items()
                           if name in self.desired.sets or name in self.desired.invalid}
        self.progress = {name: p for name, p in self.memory.progress.items() if name in self.desired.sets}

        plans = {name: self._plan_set(self.desired.sets[name]) for name in sorted(self.desired.sets)}
        allowed, deferred, waiting_for_capacity = self._admit(plans)
        statuses = {name: self._status(self.desired.sets[name], set_plan, waiting_for_capacity.get(name))
                    for name, set_plan in plans.items()}
        for name in sorted(set(self.desired.invalid) - set(self.desired.sets)):
            statuses[name] = self._invalid_status(name)
        orphans_seen = self._plan_orphans()
        sets = self.desired.sets
        memory = Memory(
            creates=self.expected_creates,
            destroys=self.expected_destroys,
            orphans_seen=orphans_seen,
            restarts={(name, slot): history for name, histories in self.restarts.items() if name in sets
                      for slot, history in histories.items()},
            finished={(name, slot, template) for name, entries in self.finished.items() if name in sets
                      for slot, template in entries if slot <= sets[name].spec.replicas},
            seen_live={**self.live, **{sid: self.memory.seen_live[sid] for sid in held_ids}},
            missing=frozenset(held_ids),
            suspect_since=None,
            backoffs=self.backoffs,
            creates_paused_until=self.memory.creates_paused_until,
            ended_reported={sid for sid in self.memory.ended_reported if sid in self.ids},
            conditions=self.conditions,
            progress=self.progress,
            pending_since=self.pending_since,
            unschedulable_reported={sid for sid in self.memory.unschedulable_reported if sid in self.pending_since},
            renew_failures={sid: at for sid, at in self.memory.renew_failures.items() if sid in self.ids},
            notes={name: note for name, note in self.memory.notes.items() if name in sets},
        )
        destroys = tuple(sorted(self.destroys, key=lambda d: (d.set_name, d.name, d.session_id)))
        renews = tuple(sorted(self.renews, key=lambda r: (r.set_name, r.name, r.session_id)))
        unschedulable = tuple(sorted(self.unschedulable, key=lambda u: (u.set_name, u.name, u.session_id)))
        capacity_unknown = (None if self.capacity is not None or not self.options.capacity
                            else "platform statistics unavailable: creates are not checked against capacity")
        return Plan(tuple(allowed), destroys, statuses, memory, renews=renews,
                    unschedulable=unschedulable, deferred=deferred,
                    lost=tuple(sorted(lost_first)), capacity_unknown=capacity_unknown)

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
            listed = self._listed(expected.name)
            if any(sid not in expected.prior_ids for sid in listed):
                continue  # it happened: the session is in the list
            misses = expected.misses + (0 if self.lossy else 1)
            if misses >= UNCERTAIN_MIN_LISTS and now - expected.at >= options.uncertain_window:
                continue  # long enough and often enough not seen: it did not happen
            kept[key] = replace(expected, misses=misses)
        return kept

    # -- one set ----------------------------------------------------------------------------------

    def _plan_set(self, session_set: SessionSet) -> _SetPlan:
        """Plan one set. Written for speed where it matters: a slot with one healthy session of the
        current template, and nothing remembered about it, costs a few dictionary lookups."""
        spec = session_set.spec
        name = session_set.name
        current = template_hash(session_set)
        strategy = spec.update_strategy
        replicas = spec.replicas
        slots = self.slots.get(name, {})
        counts: dict[str, int] = {}
        act = not spec.suspend
        kill_outdated = strategy.type != "OnCompletion"
        renewing = act and spec.renew
        keep_by_slot: dict[int, list[_Seen]] = {}
        outdated_live: list[_Seen] = []
        next_expiry: float | None = None
        unschedulable = 0

        for slot, sessions in slots.items():
            if len(sessions) > 1:
                sessions = sorted(sessions, key=lambda seen: (seen.started, seen.id))
            for seen in sessions:
                phase = seen.phase
                counts[phase] = counts.get(phase, 0) + 1
                if phase in _LIVE:
                    expires = seen.expires
                    if expires is not None and (next_expiry is None or expires < next_expiry):
                        next_expiry = expires
                    if renewing and seen.kind != "headless":
                        self._consider_renew(seen)
                    if phase == "Pending":
                        unschedulable += self._consider_pending(seen)
            if slot > replicas:
                for seen in sessions:
                    self._destroy(act, seen, "scaled-down")
                continue
            if len(sessions) == 1 and sessions[0].phase not in _ENDED:
                live = sessions  # the common case, without a new list
            else:
                live = []
                for seen in sessions:
                    if seen.phase in _ENDED:
                        self._destroy(act, seen, "ended")
                        if act:
                            self._note_end(seen, spec.restart_policy)
                    else:
                        live.append(seen)
                live = self._dedupe(act, live, current, kill_outdated=kill_outdated)
            keep_by_slot[slot] = live
            for seen in live:
                if seen.template_hash != current:
                    outdated_live.append(seen)

        recreating = strategy.type == "Recreate" and bool(outdated_live or self.terminating_outdated[name])
        if recreating:
            for seen in outdated_live:
                self._destroy(act, seen, "outdated")

        expected_here = self.expected_by_set.get(name, {})
        held_here = self.held.get(name, set())
        histories = self.restarts.get(name, {})
        finished_here = self.finished.get(name, set())
        backoff = self.backoffs.get(name)
        backing_off = backoff is not None and self.now < backoff.until
        creates: list[Create] = []
        waiting: str | None = None
        paused = False
        updated = ready = in_flight = uncertain = held = 0
        surge_budget = strategy.surge(replicas)
        unavailable_budget: int | None = None  # counted only when a slot needs it
        surging: int | None = None
        crash_slots: list[tuple[int, int]] = []
        for slot, recent in sorted(histories.items()):
            early = sum(1 for t in recent.early_ends if self.now - t < CRASH_LOOP_WINDOW)
            if early >= CRASH_LOOP_ENDS and slot <= replicas:
                crash_slots.append((slot, early))
        quiet = not (expected_here or held_here or histories)  # nothing remembered about any slot
        for slot in range(1, replicas + 1):
            kept = keep_by_slot.get(slot, _NONE)
            if quiet and len(kept) == 1 and kept[0].template_hash == current:
                updated += 1
                ready += kept[0].phase == "Running"
                continue
            if any(s.template_hash == current for s in kept):
                updated += 1
                ready += any(s.template_hash == current and s.phase == "Running" for s in kept)
            expected = expected_here.get(slot)
            history = histories.get(slot)
            if expected is not None:
                in_flight += 1
                uncertain += expected.uncertain
            if slot in held_here:
                held += 1
                waiting = waiting or f"slot {slot} is missing from the list: waiting for a second list"
                continue
            fresh = [s for s in kept if s.template_hash == current]
            if fresh:
                if history is not None:
                    self._reset_backoff(name, slot, fresh)
                continue
            if expected is not None:
                # One create per slot at a time, whatever its template: a create of an earlier
                # template still in flight (maybe uncertain) must settle before the next, or a slot
                # could end up with three sessions.
                continue
            if (slot, current) in finished_here:
                continue
            delay = restart_delay(history.count, self.options.restart_backoff,
                                  self.options.restart_backoff_cap) if history is not None else 0.0
            if history is not None and self.now < history.last_end + delay:
                waiting = f"slot {slot} restarts after back-off ({history.count} recent ends)"
                continue
            if kept:  # only outdated sessions in the slot: the update strategy decides
                if strategy.type != "RollingUpdate":
                    waiting = waiting or ("waiting for outdated sessions to end (OnCompletion)"
                                          if strategy.type == "OnCompletion" else
                                          "waiting for outdated sessions to go (Recreate)")
                    continue
                if surging is None:
                    surging = self._surging(keep_by_slot, current)
                if surging >= surge_budget:
                    if unavailable_budget is None:
                        unavailable_budget = strategy.unavailable(replicas) - self._unavailable(
                            keep_by_slot, replicas)
                    if unavailable_budget > 0 and all(s.phase == "Running" for s in kept):
                        unavailable_budget -= 1
                        for seen in kept:
                            self._destroy(act, seen, "outdated")
                    continue
                surging += 1
                reason = "rollout"
            elif recreating:
                waiting = waiting or "waiting for outdated sessions to go (Recreate)"
                continue
            else:
                reason = "restart" if history is not None else "missing"
            if not act:
                continue
            if backing_off:
                waiting = "creates back off after the service refused one"
                continue
            if self.paused:
                waiting = "creates paused: the service asked to slow down (Retry-After)"
                paused = True
                continue
            slot_name = owned_name(self.options.prefix, name, current, slot)
            creates.append(Create(name, slot, slot_name, spec.template, replicas, reason,
                                  prior_ids=self._listed(slot_name)))

        finished = sum(1 for slot, template in finished_here if template == current and slot <= replicas)
        live_total = sum(len(kept) for kept in keep_by_slot.values())
        return _SetPlan(creates, counts, len(outdated_live), updated, ready, finished, live_total, in_flight,
                        uncertain, held, waiting, backoff, paused, next_expiry,
                        crash_slots, unschedulable)

    def _status(self, session_set: SessionSet, set_plan: _SetPlan, capacity_wait: str | None) -> SetStatus:
        """The set's status and conditions, once capacity has had its say on its creates."""
        spec, name = session_set.spec, session_set.name
        p = set_plan
        outdated, ready = p.outdated, p.ready
        complete = spec.replicas > 0 and p.finished == spec.replicas and p.live == 0
        wanted = spec.replicas - p.finished
        unschedulable = p.unschedulable
        progressing = not complete and not spec.suspend and (outdated > 0 or ready < wanted)
        fingerprint = f"{ready}/{wanted}/{outdated}/{p.updated}"
        previous = self.progress.get(name)
        since = previous[1] if previous is not None and previous[0] == fingerprint else self.now
        # OnCompletion waits for running jobs by design: that is no stall.
        waits_for_jobs = spec.update_strategy.type == "OnCompletion" and outdated > 0
        stalled = progressing and not waits_for_jobs and self.now - since >= self.options.progress_deadline
        if progressing:
            self.progress[name] = (fingerprint, since)
        else:
            self.progress.pop(name, None)
        notes = self.memory.notes.get(name)
        facts = SetFacts(
            replicas=spec.replicas, wanted=wanted, ready=ready, complete=complete, suspended=spec.suspend,
            invalid=self.desired.invalid.get(name), strategy=spec.update_strategy.type, outdated=outdated,
            progressing=progressing, stalled=stalled,
            crash_loop=self._crash_message(p.crash_slots, notes.last_failure if notes else ""),
            create_failing=self._create_failing(p.refused, p.paused),
            capacity=self._capacity_condition(capacity_wait, unschedulable, notes.unschedulable if notes else ""),
        )
        conditions, marks = stamp(evaluate(facts), self.conditions.get(name, {}), self.now)
        self.conditions[name] = marks
        waiting = p.waiting or (f"waiting for capacity: {capacity_wait}" if capacity_wait else None)
        counts = p.counts
        return SetStatus(
            name=name, desired=spec.replicas, running=counts.get("Running", 0), pending=counts.get("Pending", 0),
            unknown=counts.get("Unknown", 0), completed=counts.get("Completed", 0), failed=counts.get("Failed", 0),
            terminating=self.terminating.get(name, 0), outdated=outdated, updated=p.updated, ready=ready,
            in_flight=p.in_flight, uncertain=p.uncertain, held=p.held,
            suspended=spec.suspend, invalid=self.desired.invalid.get(name), waiting=waiting,
            backoff_until=p.refused.until if p.refused is not None and self.now < p.refused.until else None,
            backoff_message=p.refused.message if p.refused is not None else None,
            complete=complete, unschedulable=unschedulable, next_expiry=p.next_expiry,
            conditions=conditions,
        )

    def _invalid_status(self, name: str) -> SetStatus:
        facts = SetFacts(replicas=0, wanted=0, ready=0, complete=False, suspended=False,
                         invalid=self.desired.invalid[name], strategy="RollingUpdate", outdated=0,
                         progressing=False, stalled=False, crash_loop=None, create_failing=None, capacity=None)
        raw = evaluate(facts)
        raw["Ready"] = ("Unknown", "ManifestInvalid", "the set has no valid spec yet")
        conditions, marks = stamp(raw, self.conditions.get(name, {}), self.now)
        self.conditions[name] = marks
        return SetStatus(name, None, invalid=self.desired.invalid[name], terminating=self.terminating.get(name, 0),
                         conditions=conditions)

    @staticmethod
    def _crash_message(crash_slots: list[tuple[int, int]], evidence: str) -> str | None:
        if not crash_slots:
            return None
        slots = ", ".join(f"slot {slot} ({ends} times)" for slot, ends in crash_slots)
        message = (f"sessions ended within 10 min of starting {CRASH_LOOP_ENDS}+ times in 30 min: {slots}; "
                   "restarts continue with back-off")
        return f"{message}. Last failure: {evidence}" if evidence else message

    @staticmethod
    def _create_failing(refused: CreateBackoff | None, paused: bool) -> tuple[str, str] | None:
        if refused is not None:  # until a create of the set succeeds, also while the back-off retries
            return "CreateRefused", f"the service refused a create: {refused.message}"
        if paused:
            return "CreatesPaused", "the service asked to slow down (429 or 503 with Retry-After)"
        return None

    def _capacity_condition(self, wait: str | None, unschedulable: int,
                            events: str) -> tuple[Status, str, str] | None:
        if wait is not None:
            return "True", "InsufficientCapacity", wait
        if unschedulable:
            minutes = self.options.pending_limit / 60
            message = f"{unschedulable} session(s) Pending for more than {minutes:g} min"
            return "True", "Unschedulable", f"{message}: {events}" if events else message
        if not self.options.capacity:
            return "Unknown", "NotChecked", "creates are not checked against the platform's capacity (--no-capacity)"
        if self.capacity is None:
            return "Unknown", "StatsUnavailable", "platform statistics unavailable: creating without checking capacity"
        return None

    def _admit(self, plans: dict[str, _SetPlan]) -> tuple[list[Create], int, dict[str, str]]:
        """Order the creates round-robin, keep those that fit the capacity, then apply the per-pass cap."""
        ordered = list(_round_robin([set_plan.creates for set_plan in plans.values()]))
        waiting: dict[str, str] = {}
        if self.capacity is not None:
            reserved_cores, reserved_ram = self.queued_cores, self.queued_ram
            for (set_name, _), expected in self.expected_creates.items():  # in flight, not listed yet
                if set_name in self.desired.sets and expected.name not in self.by_name:
                    cores, ram = self.capacity.request(self.desired.sets[set_name].spec.template)
                    reserved_cores += cores
                    reserved_ram += ram
            room = CapacityLedger(self.capacity, reserved_cores=reserved_cores, reserved_ram=reserved_ram)
            fitting = []
            for create in ordered:
                if create.set_name in waiting:
                    continue  # a set's creates are all alike: once one does not fit, none does
                problem = room.take(create.template)
                if problem is None:
                    fitting.append(create)
                else:
                    waiting[create.set_name] = problem
            ordered = fitting
        allowed = ordered[: self.options.max_creates]
        return allowed, len(ordered) - len(allowed), waiting

    def _consider_renew(self, seen: _Seen) -> None:
        """Renew an interactive session once less than the configured part of its lifetime remains."""
        if seen.phase != "Running" or seen.expires is None:
            return
        if seen.expires - self.now >= self.options.renew_when_remaining * self.options.session_expiry:
            return
        refused = self.memory.renew_failures.get(seen.id)
        if refused is not None and self.now - refused < RENEW_RETRY:
            return
        self.renews.append(Renew(seen.set_name, seen.id, seen.name, seen.expires))

    def _consider_pending(self, seen: _Seen) -> int:
        """1 if ``seen`` has been Pending too long (reported once), else 0."""
        since = self.pending_since.get(seen.id)
        if since is None or self.now - since < self.options.pending_limit:
            return 0
        if seen.id not in self.memory.unschedulable_reported:
            self.unschedulable.append(Unschedulable(seen.set_name, seen.id, seen.name, since))
        return 1

    @staticmethod
    def _surging(keep_by_slot: dict[int, list[_Seen]], current: str) -> int:
        """Slots that run a new session beside an outdated one (a rollout in flight)."""
        return sum(1 for kept in keep_by_slot.values()
                   if len(kept) > 1
                   and any(s.template_hash == current for s in kept)
                   and any(s.template_hash != current for s in kept))

    @staticmethod
    def _unavailable(keep_by_slot: dict[int, list[_Seen]], replicas: int) -> int:
        """Slots without a Running session, of any template."""
        running = sum(1 for slot, kept in keep_by_slot.items()
                      if slot <= replicas and any(s.phase == "Running" for s in kept))
        return replicas - running

    def _dedupe(self, act: bool, live: list[_Seen], current: str, *, kill_outdated: bool) -> list[_Seen]:
        """Keep one session of the current template (and one outdated while it rolls)."""
        if len(live) < 2:
            return live
        fresh = sorted((s for s in live if s.template_hash == current), key=_Seen.keep_order)
        stale = sorted((s for s in live if s.template_hash != current), key=_Seen.keep_order)
        kept = fresh[:1]
        for seen in fresh[1:]:
            self._destroy(act, seen, "duplicate")
        if stale:
            if fresh and fresh[0].phase == "Running" and kill_outdated:
                for seen in stale:
                    self._destroy(act, seen, "outdated")
            else:
                kept.append(stale[0])
                for seen in stale[1:]:
                    self._destroy(act, seen, "duplicate")
        return kept

    def _note_end(self, seen: _Seen, policy: str) -> None:
        """Record an ended session: count a restart (and an early end), or mark the slot finished."""
        restart = policy == "Always" or (policy == "OnFailure" and seen.phase == "Failed")
        if not restart:
            self.finished.setdefault(seen.set_name, set()).add((seen.slot, seen.template_hash))
            return
        histories = self.restarts.setdefault(seen.set_name, {})
        previous = histories.get(seen.slot)
        if previous is not None and previous.last_session == seen.id:
            return
        count = previous.count + 1 if previous is not None else 1
        early_ends = tuple(t for t in (previous.early_ends if previous else ()) if self.now - t < CRASH_LOOP_WINDOW)
        if self.now - seen.started < RESTART_RESET_AFTER:  # never started counts as early too
            early_ends = (*early_ends, self.now)
        histories[seen.slot] = SlotHistory(count, self.now, seen.id, early_ends)

    def _reset_backoff(self, set_name: str, slot: int, current: list[_Seen]) -> None:
        for seen in current:
            if seen.phase == "Running" and self.now - seen.started >= RESTART_RESET_AFTER:
                self.restarts.get(set_name, {}).pop(slot, None)

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
