"""The planner's autoscale rules: each autoscaled set's count for this pass, and its slots above the count.

Slots keep their identity (``REPLICA_ID``), so a scale-down always gives up the highest slots, as a
StatefulSet does. What happens to the sessions in those slots is ``scaleDown.policy``:

- ``Drain`` (the default): a Running (or Unknown) session is never destroyed; its slot is simply not
  refilled when it ends, and kept if the count rises again. A Pending one is destroyed (nothing is
  lost: it never ran);
- ``Destroy``: the sessions go, Pending ones first, then the highest slots, at most
  ``scaleDown.maxStep`` per pass.

Ended sessions above the count are destroyed in both cases, and their slots never restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from controller.plan.autoscale import Decision, Reading, ScaleState, decide, platform_count
from controller.plan.capacity import Capacity
from controller.spec import SessionSet

_ENDED = frozenset({"Completed", "Failed"})


class _Session(Protocol):
    @property
    def phase(self) -> str: ...
    @property
    def slot(self) -> int: ...


S = TypeVar("S", bound=_Session)


@dataclass(frozen=True, slots=True)
class Room:
    """The platform's free room as the planner sees it this pass (for ``platform`` signals)."""

    capacity: Capacity | None
    queued_cores: float = 0.0
    queued_ram: float = 0.0


def decisions_for(sets: Mapping[str, SessionSet], signals: Mapping[str, Sequence[Reading]],
              memory: Mapping[str, ScaleState], room: Room, now: float, *, settle: float = 0.0) -> dict[str, Decision]:
    """The autoscaler's decision for every autoscaled set (a set without readings reads as failed);
    ``settle`` is the least scale-down window (``--destructive-settle``)."""
    decided = {}
    for name, session_set in sets.items():
        autoscale = session_set.spec.autoscale
        if autoscale is None:
            continue
        state = memory.get(name)
        current = state.count if state is not None else autoscale.min_replicas
        given = list(signals.get(name, ()))
        readings = []
        for index, signal in enumerate(autoscale.signals):
            if signal.platform is not None:
                readings.append(platform_count(signal.platform, room.capacity, session_set.spec.template, current,
                                               queued_cores=room.queued_cores, queued_ram=room.queued_ram))
            elif index < len(given):
                readings.append(given[index])
            else:
                readings.append(Reading(error="not read this pass"))
        decided[name] = decide(autoscale, readings, state, now, settle=settle)
    return decided


def remembered(decided: Mapping[str, Decision], memory: Mapping[str, ScaleState], complete: bool,
               sets: Mapping[str, SessionSet]) -> dict[str, ScaleState]:
    """The autoscale memory after a pass: a set whose manifest is not in force right now (unsettled,
    invalid, unreadable) keeps its windows; only a set really removed forgets them."""
    kept = {} if complete else {name: state for name, state in memory.items() if name not in sets}
    return {**kept, **{name: decision.state for name, decision in decided.items()}}


def count_in_force(session_set: SessionSet, memory: Mapping[str, ScaleState]) -> int:
    """The replica count a set runs at: ``spec.replicas``, or the autoscaler's last count."""
    spec = session_set.spec
    if spec.replicas is not None:
        return spec.replicas
    state = memory.get(session_set.name)
    assert spec.autoscale is not None
    return state.count if state is not None else spec.autoscale.min_replicas


def above_count(session_set: SessionSet, above: Sequence[S],
                             destroy: Callable[[S, str], bool]) -> int:
    """Apply ``scaleDown.policy`` to the sessions in slots above the count; returns how many are left running.

    ``destroy(session, reason)`` is called for each session to go (``ended`` or ``scaled-down``); it
    answers False when the destroy is held (rule *Destructive settle*): that session is left running.
    """
    autoscale = session_set.spec.autoscale
    assert autoscale is not None
    live = []
    for seen in above:
        if seen.phase in _ENDED:
            destroy(seen, "ended")
        else:
            live.append(seen)
    if autoscale.scale_down.policy == "Drain":
        return sum(1 for seen in live if seen.phase != "Pending" or not destroy(seen, "scaled-down"))
    ordered = sorted(live, key=lambda seen: (seen.phase != "Pending", -seen.slot))
    budget = autoscale.scale_down.max_step
    return len(ordered[budget:]) + sum(1 for seen in ordered[:budget] if not destroy(seen, "scaled-down"))
