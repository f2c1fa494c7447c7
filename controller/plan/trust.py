"""The rule *List trust*: how much of a list answer the planner believes.

Words used throughout the planner: a list *leaves out* an owned session it showed live last time
(and that the controller did not destroy); the slot of such a session is *held*: not refilled
until the service confirms the session is gone when asked for it by id (the rule *Disappearance
confirmed*, ``controller.plan.vanished``), or, without a usable answer, until a second list
confirms it. A *lossy* answer confirms nothing; a *suspect* answer (no owned session at all) is not
acted on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from controller.plan import vanished
from controller.plan.actions import PlanOptions
from controller.plan.listing import Listing, parser
from controller.plan.memory import Memory


@dataclass(frozen=True, slots=True)
class Trust:
    """What one list answer is believed to say about the sessions the last one showed."""

    #: Owned live sessions of the last list that this one left out for the first time (and that the
    #: service did not confirm gone).
    newly_left_out: frozenset[str]
    #: The answer left out a session the service still has, or something other than exactly what the
    #: last one left out: it confirms nothing.
    lossy: bool
    #: Sessions left out whose slots stay held (all of them when the answer is lossy, else none).
    held_ids: frozenset[str]
    #: The held slots, by set.
    held: dict[str, set[int]]


def left_out(memory: Memory, listing: Listing) -> frozenset[str]:
    """Owned live sessions of the last list that this one left out (and that we did not destroy)."""
    return vanished.left_out(memory, listing.ids)


def is_suspect(memory: Memory, listing: Listing, newly_left_out: frozenset[str], now: float,
               options: PlanOptions) -> bool:
    """No owned session in an answer that left out live ones, for less than ``empty_list_window``.

    Once such answers have persisted for the window they are believed: an account really emptied by
    hand is refilled then.
    """
    if not newly_left_out or listing.by_name:
        return False
    since = memory.suspect_since
    return since is None or now - since < options.empty_list_window


def judge(memory: Memory, listing: Listing, gone: frozenset[str]) -> Trust:
    """Decide which slots stay held. ``gone`` is :func:`left_out`; the answer is not suspect.

    A session the service answered 404 or ended for (``memory.lookups``) is gone: its slot is not
    held. One it still has live makes the answer lossy. For the rest (the lookup failed, or was not
    made) the two-list rule is the fallback: only an answer that leaves out exactly what the last
    one left out (nothing new, nothing back) confirms them, and an empty answer believed after the
    window confirms everything, unless a lookup found a session live.
    """
    lookups = memory.lookups
    confirmed = frozenset(sid for sid in gone if sid in lookups and lookups[sid].answer == "gone")
    still_live = any(lookups[sid].answer == "live" for sid in gone - confirmed if sid in lookups)
    rest, before = gone - confirmed, memory.missing - confirmed
    newly = rest - memory.missing
    believed_empty = bool(newly) and not listing.by_name and not still_live
    lossy = still_live or (bool(rest or before) and rest != before and not believed_empty)
    held_ids = rest if lossy else frozenset()
    held: dict[str, set[int]] = {}
    for sid in held_ids:
        seen = memory.seen_live[sid]
        held.setdefault(seen.set_name, set()).add(seen.slot)
    return Trust(newly, lossy, held_ids, held)


def hold_names(trust: Trust, names: Iterable[str], prefix: str) -> Trust:
    """The rule *One id, one session*: the slot of a row without an id, or of an id under two names,
    is held too (not refilled while the answer cannot say which session it is)."""
    held = {name: set(slots) for name, slots in trust.held.items()}
    for name in names:
        owned = parser(prefix).parse(name)
        if owned is not None:
            held.setdefault(owned.set_name, set()).add(owned.slot)
    return replace(trust, held=held) if held != trust.held else trust
