"""The rule *Destructive settle*: a manifest change that would destroy live sessions waits for a stable file.

A file is acted on once it has been the same for the loader's 1 s settle window, but a write can
stall for longer: ``replicas: 30`` rewritten as ``replicas: 3`` … (2 s) … ``0`` reads as a
scale-down of 27 sessions. So a destroy of a live session (Pending, Running or Unknown) for a
reason that only a manifest change gives (``scaled-down``, ``outdated``, ``orphaned``) is held
until the set's file has been unchanged for ``--destructive-settle`` (a removed set: until it has
been absent that long). Creates are not held. A held session stays where it is and is counted as
such: its slot is not refilled, a ``Recreate`` set creates nothing beside it, a rolling update's
surge stays within ``maxSurge``. Ended sessions and duplicates are never held: nothing a user runs
is lost by cleaning them up, and a duplicate is the controller's own mistake.

Pending sessions are held too: the torn write must destroy nothing (a Pending session keeps its
place in the platform's queue, and destroying it would only be undone when the write completes).

The times come from the state-directory loader (``DesiredState.unchanged_since``,
``removed_since``, ``directory_unchanged_since``); a state without them holds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.plan.actions import DestroyReason, PendingChange
from controller.plan.listing import LIVE, Listed
from controller.spec import DesiredState, UpdateStrategy

#: The destroy reasons a manifest change gives (the rest never wait).
HELD_REASONS: frozenset[DestroyReason] = frozenset({"scaled-down", "outdated", "orphaned"})


@dataclass(frozen=True, slots=True)
class Held:
    """One destroy the rule held this run."""

    set_name: str
    session_id: str
    slot: int
    reason: DestroyReason
    acts_at: float


def acts_at(desired: DesiredState, window: float, now: float, set_name: str) -> float | None:
    """When a destructive change of ``set_name`` may act, if it must still wait at ``now``; else ``None``."""
    if window <= 0:
        return None
    if set_name in desired.sets:
        since = desired.unchanged_since.get(set_name)
    else:  # removed: since it went, or (gone unseen, before a restart) since the directory last changed
        since = desired.removed_since.get(set_name, desired.directory_unchanged_since)
    if since is None or now >= since + window:
        return None
    return since + window


def holds(desired: DesiredState, window: float, now: float, seen: Listed, reason: DestroyReason) -> Held | None:
    """The hold on destroying ``seen`` for ``reason``, or ``None`` when it may go now."""
    if reason not in HELD_REASONS or seen.phase not in LIVE:
        return None
    at = acts_at(desired, window, now, seen.set_name)
    return None if at is None else Held(seen.set_name, seen.id, seen.slot, reason, at)


def pending(held: Iterable[Held], sets: Mapping[str, tuple[int, UpdateStrategy]],
            window: float) -> tuple[PendingChange, ...]:
    """The held destroys as one pending change per set: what would happen, to how many, and when.

    ``sets`` gives each present set's count in force and update strategy.
    """
    by_set: dict[str, list[Held]] = {}
    for hold in held:
        by_set.setdefault(hold.set_name, []).append(hold)
    changes = []
    for name, holds_ in sorted(by_set.items()):
        reasons = {hold.reason for hold in holds_}
        parts = []
        if name not in sets:
            parts.append("set removed")
        else:
            replicas, strategy = sets[name]
            if "scaled-down" in reasons:
                top = max(hold.slot for hold in holds_ if hold.reason == "scaled-down")
                parts.append(f"scale-down {max(top, replicas)}→{replicas}")
            if "outdated" in reasons:
                parts.append(f"template change ({strategy.type})")
        changes.append(PendingChange(name, " and ".join(parts), len({h.session_id for h in holds_}),
                                     min(hold.acts_at for hold in holds_), window))
    return tuple(changes)
