"""One list answer, sorted for the planner: owned sessions by set and slot, foreign ones dropped.

The rule *Foreign sessions* lives here (a name that does not parse as an owned name is never
touched), and so does the part of *Invalid manifests* that leaves the sessions of a set that never
had a valid manifest alone. The scan is the hot loop of a pass: 10,000 rows on a busy account, so
each row becomes one small tuple and a few dictionary entries.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from controller.models import ObservedSession
from controller.names import NameParser
from controller.plan.capacity import Capacity
from controller.plan.memory import Memory, SeenSession
from controller.spec import DesiredState

LIVE = frozenset({"Pending", "Running", "Unknown"})
ENDED = frozenset({"Completed", "Failed"})


class Listed(NamedTuple):
    """An owned session of this list, with everything derived once (a tuple: cheap to build)."""

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
        return self.phase in ENDED

    def keep_order(self) -> tuple[int, float, str]:
        """Prefer Running over Pending, then the oldest, then the smallest id (stable)."""
        return (0 if self.phase == "Running" else 1, self.started, self.id)


@dataclass
class Listing:
    """The owned sessions of one list answer, as every rule of the pass reads them."""

    #: Every id in the answer, owned or not.
    ids: set[str]
    #: Owned sessions of existing sets, by set and slot (Terminating and destroyed ones left out).
    slots: dict[str, dict[int, list[Listed]]] = field(default_factory=dict)
    #: Owned sessions of sets that no longer exist (and never were invalid).
    orphans: list[Listed] = field(default_factory=list)
    terminating: Counter[str] = field(default_factory=Counter)
    terminating_outdated: Counter[str] = field(default_factory=Counter)
    #: Owned sessions by name: the first id, and any further ids in ``by_name_more`` (rare).
    by_name: dict[str, str] = field(default_factory=dict)
    by_name_more: dict[str, list[str]] = field(default_factory=dict)
    #: Owned live sessions, as the memory keeps them for the next list.
    live: dict[str, SeenSession] = field(default_factory=dict)
    #: When each owned Pending session was first seen Pending.
    pending_since: dict[str, float] = field(default_factory=dict)
    #: Owned sessions Terminating or Unknown, or destroyed by us, and whether we destroyed them (the
    #: rules *Ignored destroys* and *Stuck sessions*, ``controller.plan.lingering``).
    lingering: list[tuple[Listed, bool]] = field(default_factory=list)
    #: What the cluster has not admitted yet but will have to: our queued sessions (the platform's
    #: statistics count only admitted ones).
    queued_cores: float = 0.0
    queued_ram: float = 0.0

    def ids_named(self, name: str) -> tuple[str, ...]:
        """Ids of the owned sessions listed under ``name``."""
        first = self.by_name.get(name)
        if first is None:
            return ()
        more = self.by_name_more.get(name)
        return (first, *more) if more else (first,)


#: Name parsers by prefix, with their caches: names repeat every pass, so each is parsed once.
_PARSERS: dict[str, NameParser] = {}


def parser(prefix: str) -> NameParser:
    """The cached name parser of ``prefix``."""
    parser = _PARSERS.get(prefix)
    if parser is None:
        parser = _PARSERS[prefix] = NameParser(prefix)
    return parser


def scan(observed: Sequence[ObservedSession], desired: DesiredState, memory: Memory, now: float, *,
         prefix: str, capacity: Capacity | None) -> Listing:
    """Sort the owned sessions of ``observed`` by set and slot."""
    names = parser(prefix)
    memo, parse = names.memo, names.parse
    sets, invalid = desired.sets, desired.invalid
    destroying, seen_before, pending_before = memory.destroys, memory.seen_live, memory.pending_since
    listing = Listing({session.id for session in observed})
    by_name, by_name_more, live, slots = listing.by_name, listing.by_name_more, listing.live, listing.slots
    terminating, terminating_outdated = listing.terminating, listing.terminating_outdated
    queued_cores = queued_ram = 0.0
    inf = math.inf
    for session in observed:
        name = session.name
        owned = memo.get(name)
        if owned is None and name not in memo:
            owned = parse(name)
        if owned is None:
            continue  # foreign: not ours, never touched
        sid, phase, set_name = session.id, session.phase, owned.set_name
        started = session.started
        seen = Listed(sid, name, phase, inf if started is None else started, set_name, owned.slot,
                      owned.template_hash, session.kind, session.expires)
        if name in by_name:
            by_name_more.setdefault(name, []).append(sid)
        else:
            by_name[name] = sid
        if phase == "Terminating" or sid in destroying:
            listing.lingering.append((seen, sid in destroying))
            terminating[set_name] += 1
            session_set = sets.get(set_name)
            if session_set is not None and seen.template_hash != session_set.spec.template.hash():
                terminating_outdated[set_name] += 1
            continue
        if phase == "Unknown":
            listing.lingering.append((seen, False))
        if phase in LIVE:
            previous = seen_before.get(sid)
            live[sid] = previous if previous is not None and previous.name == name else SeenSession(
                set_name, owned.slot, name)
            if phase == "Pending":
                listing.pending_since[sid] = pending_before.get(sid, now)
            if capacity is not None and (started is None or started >= capacity.as_of):
                # Queued, or admitted after the statistics were taken: not in their "requested" yet.
                queued_cores += session.cores if session.cores is not None else capacity.default_cores
                queued_ram += session.ram_bytes if session.ram_bytes is not None else capacity.default_ram
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
            listing.orphans.append(seen)
    listing.queued_cores, listing.queued_ram = queued_cores, queued_ram
    return listing
