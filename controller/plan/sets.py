"""One set's part of a run: which of its slots want a create, and what was counted on the way.

The slot loop asks each rule in turn; the first that says "not now" ends the slot's turn:
*List trust* (a held slot waits), *Expectations* (a create in flight), *Ended sessions and
restarts* (finished, or backing off), *Rollout* (only outdated sessions in the slot), and finally
*Refused creates* (the set's back-off, a Retry-After pause).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.names import owned_name
from controller.plan import admission, restarts
from controller.plan import context as ctx
from controller.plan.actions import Create
from controller.plan.context import Decisions, PassContext
from controller.plan.listing import Listed
from controller.plan.memory import CreateBackoff, ExpectedCreate, SlotHistory
from controller.plan.rollout import RECREATE, Rollout
from controller.plan.slots import Kept, keep
from controller.spec import SessionSet

_NONE: list[Listed] = []  # an empty slot (never appended to)
# Nothing remembered about a set (never written to).
_NO_EXPECTED: dict[int, ExpectedCreate] = {}
_NO_HELD: set[int] = set()
_NO_HISTORY: dict[int, SlotHistory] = {}
_NO_FINISHED: set[tuple[int, str]] = set()
_NO_BLOCKED: dict[int, str] = {}


@dataclass(slots=True)
class SetPlan:
    """What planning one set produced, before capacity and the per-pass cap are applied."""

    kept: Kept
    creates: list[Create] = field(default_factory=list)
    updated: int = 0  # slots with a live session of the current template
    ready: int = 0  # slots with a Running session of the current template
    finished: int = 0  # slots that ended for good under the current template
    in_flight: int = 0
    uncertain: int = 0
    held: int = 0
    waiting: str | None = None
    #: The service refused this set's last create (the back-off is remembered until a create succeeds).
    refused: CreateBackoff | None = None
    #: A create of this set waits for the service's Retry-After.
    paused: bool = False
    crash_slots: list[tuple[int, int]] = field(default_factory=list)  # (slot, early ends in the window)

    @property
    def live(self) -> int:
        return sum(len(kept) for kept in self.kept.by_slot.values())

    def wait(self, message: str) -> None:
        """Say why a slot is not filled, unless an earlier slot already did."""
        self.waiting = self.waiting or message


def plan_set(context: PassContext, decisions: Decisions, session_set: SessionSet) -> SetPlan:
    """Plan one set. Written for speed where it matters: a slot with one session of the current
    template, and nothing remembered about it, costs a few dictionary lookups."""
    spec, name = session_set.spec, session_set.name
    current = spec.template.hash()
    replicas, act = ctx.replicas(context, session_set), ctx.acts(context, session_set)
    kept = keep(context, decisions, session_set, current)
    recreating = spec.update_strategy.type == "Recreate" and bool(
        kept.outdated or context.listing.terminating_outdated[name])
    if recreating and act:
        for seen in kept.outdated:
            ctx.destroy(context, decisions, seen, "outdated")
    result = SetPlan(kept, refused=context.backoffs.get(name))
    expected = context.expected_by_set.get(name, _NO_EXPECTED)
    held = context.trust.held.get(name, _NO_HELD)
    histories = decisions.restarts.get(name, _NO_HISTORY)
    blocked = context.lingering.blocked.get(name, _NO_BLOCKED)
    if histories:
        result.crash_slots = restarts.crash_slots(context, histories, replicas)
    backing_off = result.refused is not None and context.now < result.refused.until
    quiet = not (expected or held or histories or blocked)  # nothing remembered about any slot
    slots: _Slots | None = None  # made when a slot needs more than the quick look
    by_slot = kept.by_slot
    for slot in range(1, replicas + 1):
        here = by_slot.get(slot, _NONE)
        if len(here) == 1 and here[0].template_hash == current and (
                quiet or (slot not in expected and slot not in held and slot not in histories
                          and slot not in blocked)):
            result.updated += 1
            result.ready += here[0].phase == "Running"
            continue
        if slots is None:
            slots = _Slots(context, decisions, session_set, current, result, expected, held, histories,
                           blocked, recreating=recreating)
        reason = slots.need(slot, here)
        if reason is None or not act:
            continue
        if backing_off:
            result.waiting = admission.REFUSED
            continue
        if context.paused:
            result.waiting = admission.PAUSED
            result.paused = True
            continue
        slot_name = owned_name(context.options.prefix, name, current, slot)
        result.creates.append(Create(name, slot, slot_name, spec.template, replicas, reason,
                                     prior_ids=context.listing.ids_named(slot_name)))
    finished = decisions.finished.get(name, _NO_FINISHED)
    result.finished = sum(1 for slot, template in finished if template == current and slot <= replicas)
    return result


class _Slots:
    """One set's views of the run (its expectations, held slots, histories), shared by its slots."""

    __slots__ = (
        "act",
        "blocked",
        "context",
        "current",
        "decisions",
        "expected",
        "finished",
        "held",
        "histories",
        "name",
        "result",
        "rollout",
    )

    def __init__(self, context: PassContext, decisions: Decisions, session_set: SessionSet, current: str,
                 result: SetPlan, expected: dict[int, ExpectedCreate], held: set[int],
                 histories: dict[int, SlotHistory], blocked: dict[int, str], *, recreating: bool) -> None:
        spec = session_set.spec
        self.context, self.decisions, self.name, self.current = context, decisions, session_set.name, current
        self.act = ctx.acts(context, session_set)
        self.rollout = Rollout(spec.update_strategy, ctx.replicas(context, session_set), current, result.kept.by_slot,
                               recreating=recreating)
        self.result, self.expected, self.held, self.histories = result, expected, held, histories
        self.blocked = blocked
        self.finished = decisions.finished.get(session_set.name, _NO_FINISHED)

    def need(self, slot: int, kept: list[Listed]) -> str | None:
        """Why the slot wants a create ("missing", "restart", "rollout"), or ``None``."""
        result, current = self.result, self.current
        if any(s.template_hash == current for s in kept):
            result.updated += 1
            result.ready += any(s.template_hash == current and s.phase == "Running" for s in kept)
        expected = self.expected.get(slot)
        history = self.histories.get(slot)
        if expected is not None:
            result.in_flight += 1
            result.uncertain += expected.uncertain
        if slot in self.held:
            result.held += 1
            result.wait(f"slot {slot} is missing from the list: waiting for a second list")
            return None
        if slot in self.blocked:  # its destroyed session may still run (rule *Ignored destroys*)
            result.wait(self.context.lingering.waiting(slot, self.blocked[slot]))
            return None
        fresh = [s for s in kept if s.template_hash == current]
        if fresh:
            if history is not None:
                restarts.forget_if_healthy(self.context, self.decisions, self.name, slot, fresh)
            return None
        if expected is not None:
            # One create per slot at a time, whatever its template: a create of an earlier template
            # still in flight (maybe uncertain) must be seen or written off before the next, or a
            # slot could end up with three sessions.
            return None
        if (slot, current) in self.finished:
            return None
        if history is not None and restarts.backing_off(self.context, history):
            result.waiting = f"slot {slot} restarts after back-off ({history.count} recent ends)"
            return None
        if kept:  # only outdated sessions in the slot: the update strategy decides
            reason, wait = self.rollout.replace(self.context, self.decisions, kept, act=self.act)
            if wait is not None:
                result.wait(self.context.lingering.recreate_waiting(self.name) if wait == RECREATE else wait)
            return reason
        if self.rollout.recreating:
            result.wait(self.context.lingering.recreate_waiting(self.name))
            return None
        return "restart" if history is not None else "missing"
