"""The rules *Refused creates*, *Capacity* and *Fair creates*: which of the wanted creates go ahead.

A set whose creates the service refused creates nothing until its back-off ends; a Retry-After
pauses every create. With platform statistics, creates that do not fit the free capacity wait
(``WaitingForCapacity``) instead of piling up Pending sessions. What is left is interleaved across
sets and capped per pass, so one big set cannot starve the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

from controller.plan.actions import Create, Unschedulable
from controller.plan.capacity import CapacityBudget
from controller.plan.context import Decisions, PassContext
from controller.plan.listing import Listed

REFUSED = "creates back off after the service refused one"
PAUSED = "creates paused: the service asked to slow down (Retry-After)"


def consider_pending(context: PassContext, decisions: Decisions, seen: Listed) -> int:
    """1 if ``seen`` has been Pending too long (reported once), else 0."""
    since = context.listing.pending_since.get(seen.id)
    if since is None or context.now - since < context.options.pending_limit:
        return 0
    if seen.id not in context.memory.unschedulable_reported:
        decisions.unschedulable.append(Unschedulable(seen.set_name, seen.id, seen.name, since))
    return 1


def admit(context: PassContext, wanted: Iterable[list[Create]]) -> tuple[list[Create], int, dict[str, str]]:
    """Order the creates round-robin, keep those that fit the capacity, then apply the per-pass cap.

    Returns the creates to send, how many the cap deferred, and why each set's creates wait for capacity.
    """
    ordered = list(_round_robin(wanted))
    waiting: dict[str, str] = {}
    capacity, listing, sets = context.capacity, context.listing, context.desired.sets
    if capacity is not None:
        reserved_cores, reserved_ram = listing.queued_cores, listing.queued_ram
        for (set_name, _), expected in context.expected_creates.items():  # in flight, not listed yet
            if set_name in sets and expected.name not in listing.by_name:
                cores, ram = capacity.request(sets[set_name].spec.template)
                reserved_cores += cores
                reserved_ram += ram
        budget = CapacityBudget(capacity, reserved_cores=reserved_cores, reserved_ram=reserved_ram)
        fitting = []
        for create in ordered:
            if create.set_name in waiting:
                continue  # a set's creates are all alike: once one does not fit, none does
            problem = budget.take(create.template)
            if problem is None:
                fitting.append(create)
            else:
                waiting[create.set_name] = problem
        ordered = fitting
    allowed = ordered[: context.options.max_creates]
    return allowed, len(ordered) - len(allowed), waiting


def _round_robin(groups: Iterable[list[Create]]) -> Iterable[Create]:
    queues = [list(group) for group in groups if group]
    index = 0
    while queues:
        for queue in queues:
            if index < len(queue):
                yield queue[index]
        index += 1
        queues = [q for q in queues if index < len(q)]
