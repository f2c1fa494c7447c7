"""What one planning run knows (``PassContext``, computed once) and what it decides (``Decisions``).

Every rule function takes the context and reads it; none changes it. What the rules decide goes
into the one ``Decisions`` of the run, from which the planner builds the plan and the next memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.plan import expectations, settling
from controller.plan.actions import (
    Destroy,
    DestroyReason,
    PlanOptions,
    Renew,
    RenewIneffective,
    Unschedulable,
    spec_key,
)
from controller.plan.autoscale import Decision, Reading
from controller.plan.autoscaled import Room, count_in_force, decisions_for
from controller.plan.capacity import Capacity
from controller.plan.lingering import LingeringView
from controller.plan.listing import LIVE, Listed, Listing
from controller.plan.memory import (
    ConditionMark,
    CreateBackoff,
    ExpectedCreate,
    Memory,
    RenewMark,
    SlotHistory,
    SlotKey,
)
from controller.plan.ownership import Ownership
from controller.plan.trust import Trust
from controller.spec import DesiredState, SessionSet


@dataclass(frozen=True, slots=True)
class PassContext:
    """The inputs of one run and what is derived from them before any set is planned."""

    desired: DesiredState
    now: float
    options: PlanOptions
    #: The memory the run was given (never changed).
    memory: Memory
    #: The platform's free capacity; ``None`` when unknown or not checked (``--no-capacity``).
    capacity: Capacity | None
    listing: Listing
    trust: Trust
    expected_creates: dict[SlotKey, ExpectedCreate]
    expected_by_set: dict[str, dict[int, ExpectedCreate]]
    expected_destroys: dict[str, float]
    #: Create back-offs still tied to the set's current template and replica count.
    backoffs: dict[str, CreateBackoff]
    #: Every create waits for the service's Retry-After.
    paused: bool
    #: The rules *Ignored destroys* and *Stuck sessions*: what this run learnt about lingering sessions.
    lingering: LingeringView
    #: False when the answer broke *One id, one session*: nothing is destroyed from it.
    destroys_allowed: bool = True
    #: Autoscaled sets: this run's decision (the count in force, and why).
    scaling: dict[str, Decision] = field(default_factory=dict)
    #: The rules *Inventory* and *Second writer*: what this run may destroy, and which sets wait.
    ownership: Ownership = field(default_factory=Ownership)


@dataclass(slots=True)
class Decisions:
    """What the rules decided during one run (filled in as the sets are planned)."""

    destroys: list[Destroy] = field(default_factory=list)
    renews: list[Renew] = field(default_factory=list)
    unschedulable: list[Unschedulable] = field(default_factory=list)
    #: Restart histories by set and slot, as the next memory will have them.
    restarts: dict[str, dict[int, SlotHistory]] = field(default_factory=dict)
    #: Slots that ended for good, by set: (slot, template hash).
    finished: dict[str, set[tuple[int, str]]] = field(default_factory=dict)
    conditions: dict[str, dict[str, ConditionMark]] = field(default_factory=dict)
    progress: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: The rule *Renewal*: renew marks as this run's list updated them, sessions whose last renew did not
    #: move their expiry (by set), and those of them reported for the first time.
    renew_marks: dict[str, RenewMark] = field(default_factory=dict)
    renew_unchanged: dict[str, list[str]] = field(default_factory=dict)
    renew_ineffective: list[RenewIneffective] = field(default_factory=list)
    #: Destroys the rule *Destructive settle* held back (their sessions stay, counted where they are).
    held: list[settling.Held] = field(default_factory=list)


def build(desired: DesiredState, listing: Listing, memory: Memory, now: float, options: PlanOptions,
          capacity: Capacity | None, trust: Trust,
          signals: Mapping[str, Sequence[Reading]], lingering: LingeringView, *,
          destroys_allowed: bool = True, ownership: Ownership | None = None) -> tuple[PassContext, Decisions]:
    """The run's context and its decisions as carried over from the memory."""
    expected_creates = expectations.outstanding_creates(memory, listing, now, options, lossy=trust.lossy)
    sets = desired.sets
    scaling = decisions_for(sets, signals, memory.autoscale,
                            Room(capacity, listing.queued_cores, listing.queued_ram), now,
                            settle=options.destructive_settle)
    context = PassContext(
        desired=desired, now=now, options=options, memory=memory, capacity=capacity, listing=listing,
        trust=trust, expected_creates=expected_creates, expected_by_set=expectations.by_set(expected_creates),
        # A destroyed session that lingers stays destroyed (and retried) however long it takes.
        expected_destroys={**expectations.outstanding_destroys(memory, listing, now, options, lossy=trust.lossy),
                           **{sid: at for sid, at in memory.destroys.items() if sid in lingering.retries}},
        backoffs={name: b for name, b in memory.backoffs.items()
                  if name in sets
                  and b.spec_key == spec_key(sets[name].spec.template.hash(),
                                             _in_force(sets[name], scaling, memory))},
        paused=now < memory.creates_paused_until,
        lingering=lingering,
        destroys_allowed=destroys_allowed,
        scaling=scaling,
        ownership=ownership if ownership is not None else Ownership(owned=frozenset(listing.ids)),
    )
    decisions = Decisions(
        conditions={name: marks for name, marks in memory.conditions.items()
                    if name in sets or name in desired.invalid},
        progress={name: p for name, p in memory.progress.items() if name in sets},
    )
    for (set_name, slot), history in memory.restarts.items():
        decisions.restarts.setdefault(set_name, {})[slot] = history
    for set_name, slot, template in memory.finished:
        decisions.finished.setdefault(set_name, set()).add((slot, template))
    return context, decisions


def replicas(context: PassContext, session_set: SessionSet) -> int:
    """The count in force: ``spec.replicas``, or this run's autoscale decision (the *Autoscale* rules)."""
    return _in_force(session_set, context.scaling, context.memory)


def _in_force(session_set: SessionSet, scaling: Mapping[str, Decision], memory: Memory) -> int:
    decision = scaling.get(session_set.name)
    return decision.count if decision is not None else count_in_force(session_set, memory.autoscale)


def acts(context: PassContext, session_set: SessionSet) -> bool:
    """Whether the set creates and destroys this run: not suspended, no second writer in it."""
    return not session_set.spec.suspend and session_set.name not in context.ownership.conflicts


def destroy(context: PassContext, decisions: Decisions, seen: Listed, reason: DestroyReason) -> bool:
    """Destroy ``seen``; report its end first the first time an ended session is destroyed.

    Nothing is destroyed from an answer that broke *One id, one session*, nor what is not in the
    inventory, nor anything of a set another writer uses (``ownership``), nor before the retry time
    of a destroy that failed (rule *Failing destroys*). False when the rule *Destructive settle*
    holds the destroy: ``seen`` stays, and its caller keeps counting it.
    """
    if not context.ownership.may_destroy(seen.id, seen.set_name):
        return True  # never ours to destroy: the callers go on as they did before the hold existed
    hold = settling.holds(context.desired, context.options.destructive_settle, context.now, seen, reason)
    if hold is not None:
        decisions.held.append(hold)
        return False
    live = seen.phase in LIVE
    if live:  # its slot waits for a list that no longer shows it (rule *Ignored destroys*),
        context.lingering.blocked.setdefault(seen.set_name, {})[seen.slot] = seen.id  # destroyed or not
    if context.lingering.failing(seen.set_name, seen.id, live=live) or not context.destroys_allowed:
        return True
    report = reason == "ended" and seen.id not in context.memory.ended_reported
    decisions.destroys.append(Destroy(seen.set_name, seen.id, seen.name, reason, seen.phase, report_end=report,
                                      collect_evidence=report and seen.phase == "Failed",
                                      slot_of=(seen.set_name, seen.slot, seen.template_hash) if live else None))
    return True
