"""The rules *Inventory* and *Second writer*: what is this controller's to destroy.

A name that parses as ``<prefix>-<set>-<hash>-<slot>`` says only that *some* controller with this
prefix made the session: two controllers (a second Helm release, a demo run with a real token)
may share a prefix. So the memory keeps an inventory, as Flux keeps the objects it applied:

- the sets this controller manages (those of its manifests, and a removed one while it still has
  sessions, so that they are pruned as orphans);
- the session ids it created (the create's answer gave the id, or a list showed the name of a
  create written ahead) or adopted.

Only sessions in the inventory are ever destroyed, whatever the rule that wants them gone.

*Adoption*: the first pass of a memory without an inventory (fresh, or written before it existed)
adopts every listed owned-name session of the sets it manages, and the ids the memory already
knows (expected creates, sessions seen live, destroys sent). It closes once a pass saw a trusted
list with a complete desired state that names a set (a controller started before its manifests
are there has nothing to adopt for yet); until then each pass adopts again.

*Unmanaged sets*: owned-name sessions of a set never managed are reported (``unmanaged``), never
touched: ``canfar-controller prune`` removes them on purpose.

*Second writer*: after the first pass, a live session of a managed set that is not in the inventory
(nor the answer to a create of ours: the name of an uncertain create, or of one written off in the
last ``INVENTORY_KEEP``) was made by another writer with the same prefix and set. That set creates
and destroys nothing (condition ``Conflict``, reason ``SecondWriter``) until those sessions are gone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from controller.models import ObservedSession
from controller.plan.expectations import could_be_its_session
from controller.plan.listing import Listing, parser
from controller.plan.memory import ExpectedCreate, Memory, SlotKey
from controller.spec import DesiredState

#: How long an owned id no list shows stays in the inventory (a lossy or partial list may leave out
#: a session that still runs), and how long a written-off create's name still claims a session.
INVENTORY_KEEP = 3600.0


@dataclass(frozen=True, slots=True)
class Ownership:
    """What this pass may act on, and the strangers it found."""

    #: Ids this pass may destroy: the inventory plus what it adopted.
    owned: frozenset[str] = frozenset()
    #: Sets in the inventory after this pass.
    managed: frozenset[str] = frozenset()
    #: Ids adopted in this pass (first pass, or a create of ours found by name).
    adopted: frozenset[str] = frozenset()
    #: Listed ids of managed sets that are not ours (any phase): never touched, never counted.
    strangers: frozenset[str] = frozenset()
    #: Managed sets with live sessions of another writer: their ids (the rule *Second writer*).
    conflicts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Sets never managed that have owned-name sessions: how many.
    unmanaged: dict[str, int] = field(default_factory=dict)
    #: The ids of those sessions.
    unmanaged_ids: frozenset[str] = frozenset()
    #: Whether the inventory is established after this pass (the first pass is over).
    inventoried: bool = False

    def ours(self, session_id: str) -> bool:
        """Whether the memory may remember ``session_id`` as an owned session (seen live, orphan seen)."""
        return session_id not in self.strangers and session_id not in self.unmanaged_ids

    def may_destroy(self, session_id: str, set_name: str) -> bool:
        """Only our sessions, and none of a set another writer is using."""
        return session_id in self.owned and set_name not in self.conflicts

    def conflict_message(self, set_name: str) -> str | None:
        ids = self.conflicts.get(set_name)
        if not ids:
            return None
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        return (f"{len(ids)} live session(s) of this set were not created by this controller (another writer "
                f"uses the same prefix and set): {shown}; nothing is created or destroyed in the set until "
                "they are gone")


def judge(memory: Memory, listing: Listing, desired: DesiredState, now: float, *, prefix: str,
          trusted: bool) -> Ownership:
    """Adopt what this pass may adopt, and sort the other owned-name sessions into strangers.

    ``trusted``: the answer broke no rule of *List trust* or *One id, one session*: only such a
    pass closes the first pass's adoption.
    """
    first = not memory.inventoried
    managed = set(desired.sets) | set(desired.invalid) | memory.managed_sets
    if first:
        managed |= _sets_remembered(memory)
    adopted = set(_ours_by_name(memory, listing, now))
    if first:
        adopted |= _ids_remembered(memory)
    names = parser(prefix)
    owned = memory.owned
    strangers: set[str] = set()
    unmanaged: dict[str, int] = {}
    outside: set[str] = set()
    for name, sid in _unknown(listing, owned, adopted):
        parsed = names.parse(name)
        if parsed is None:  # pragma: no cover - listing.by_name holds owned names only
            continue
        if parsed.set_name in managed:
            if first:
                adopted.add(sid)
            else:
                strangers.add(sid)
        else:
            unmanaged[parsed.set_name] = unmanaged.get(parsed.set_name, 0) + 1
            outside.add(sid)
    conflicts: dict[str, list[str]] = {}
    for sid, seen in listing.live.items():
        if sid in strangers:
            conflicts.setdefault(seen.set_name, []).append(sid)
    return Ownership(
        owned=frozenset(owned | adopted), managed=frozenset(managed), adopted=frozenset(adopted - owned),
        strangers=frozenset(strangers),
        conflicts={name: tuple(sorted(ids)) for name, ids in sorted(conflicts.items())},
        unmanaged=dict(sorted(unmanaged.items())), unmanaged_ids=frozenset(outside),
        inventoried=memory.inventoried or (trusted and desired.complete and bool(desired.sets)))


def _unknown(listing: Listing, owned: set[str], adopted: set[str]) -> Iterator[tuple[str, str]]:
    """The owned-name sessions of the answer that are neither in the inventory nor adopted, as (name, id).

    Set operations first: in the common case (every session known) this costs no loop over the answer.
    """
    named = set(listing.by_name.values())
    for more in listing.by_name_more.values():
        named.update(more)
    unknown = named - owned - adopted
    if not unknown:
        return
    for name, sid in listing.by_name.items():
        if sid in unknown:
            yield name, sid
    for name, more in listing.by_name_more.items():
        yield from ((name, sid) for sid in more if sid in unknown)


def _ours_by_name(memory: Memory, listing: Listing, now: float) -> Iterator[str]:
    """Sessions listed under the name of a create of ours: one written ahead (its answer lost, or
    never recorded before a crash) or one written off lately (applied after the window)."""
    for expected in memory.creates.values():
        if expected.uncertain:
            yield from (sid for sid in listing.ids_named(expected.name) if could_be_its_session(expected, sid, memory))
    for name, at in memory.written_off.items():
        if now - at < INVENTORY_KEEP:
            yield from (sid for sid in listing.ids_named(name) if sid not in memory.destroys)


def _sets_remembered(memory: Memory) -> set[str]:
    """Sets a memory without an inventory shows this controller managed (a version-1 memory)."""
    sets = {key[0] for key in memory.creates} | {key[0] for key in memory.restarts}
    sets |= {entry[0] for entry in memory.finished}
    for names in (memory.conditions, memory.backoffs, memory.progress, memory.notes, memory.autoscale):
        sets |= set(names)
    return sets


def _ids_remembered(memory: Memory) -> set[str]:
    """Ids a memory without an inventory shows this controller created or watched (a version-1 memory)."""
    ids = {expected.session_id for expected in memory.creates.values() if expected.session_id is not None}
    return (ids | set(memory.seen_live) | set(memory.destroys) | set(memory.lingering.retries)
            | set(memory.orphans_seen))


@dataclass(frozen=True, slots=True)
class Inventory:
    """The inventory the next memory keeps."""

    inventoried: bool
    managed_sets: set[str]
    owned: set[str]
    owned_missed: dict[str, float]
    written_off: dict[str, float]


def after(ownership: Ownership, memory: Memory, listing: Listing, desired: DesiredState,
          outstanding: dict[SlotKey, ExpectedCreate], now: float) -> Inventory:
    """The inventory after this pass: ids no list has shown for ``INVENTORY_KEEP`` are forgotten, and
    a removed set stays while any of its sessions is listed."""
    owned = set(ownership.owned & listing.ids)
    missed: dict[str, float] = {}
    for sid in ownership.owned - listing.ids:
        since = memory.owned_missed.get(sid, now)
        if now - since < INVENTORY_KEEP:
            owned.add(sid)
            missed[sid] = since
    current = set(desired.sets) | set(desired.invalid)
    removed = ownership.managed - current
    managed = current | (removed & _listed_removed_sets(listing) if removed else set())
    written_off = {name: at for name, at in memory.written_off.items() if now - at < INVENTORY_KEEP}
    for key, expected in memory.creates.items():
        if expected.uncertain and not _still_expected(expected, outstanding.get(key)) and not any(
                could_be_its_session(expected, sid, memory) for sid in listing.ids_named(expected.name)):
            written_off[expected.name] = now  # neither seen nor expected any more: written off
    return Inventory(ownership.inventoried, managed, owned, missed, written_off)


def _still_expected(expected: ExpectedCreate, outstanding: ExpectedCreate | None) -> bool:
    """Whether ``outstanding`` is still the same create (only its misses may have grown)."""
    return outstanding is not None and outstanding.name == expected.name and outstanding.at == expected.at


def _listed_removed_sets(listing: Listing) -> set[str]:
    """The sets of the answer's owned-name sessions of sets not in the manifests (orphans, or leaving)."""
    return {seen.set_name for seen in listing.orphans} | {seen.set_name for seen, _ in listing.lingering}


@dataclass(frozen=True, slots=True)
class Leftovers:
    """What ``canfar-controller prune`` finds: sessions with our prefix that the inventory does not claim."""

    #: Sessions of sets this controller does not manage (nor its manifests name): safe to remove on purpose.
    prunable: tuple[ObservedSession, ...]
    #: Sessions of managed sets that are not ours: another writer's (``Conflict``), never pruned.
    strangers: tuple[ObservedSession, ...]


def leftovers(memory: Memory, observed: Sequence[ObservedSession], desired: DesiredState, *,
              prefix: str) -> Leftovers:
    """Owned-name sessions outside the inventory, split into leftovers and another writer's.

    Terminating sessions are on their way out already; a session listed under the name of a create
    of ours (uncertain, or written off lately) is ours.
    """
    names = parser(prefix)
    managed = memory.managed_sets | set(desired.sets) | set(desired.invalid)
    claimed = {expected.name for expected in memory.creates.values() if expected.uncertain} | set(memory.written_off)
    prunable: list[ObservedSession] = []
    strangers: list[ObservedSession] = []
    for session in observed:
        parsed = names.parse(session.name)
        if parsed is None or session.id in memory.owned or session.name in claimed or session.phase == "Terminating":
            continue
        (strangers if parsed.set_name in managed else prunable).append(session)
    return Leftovers(tuple(sorted(prunable, key=_by_name)), tuple(sorted(strangers, key=_by_name)))


def _by_name(session: ObservedSession) -> tuple[str, str]:
    return session.name, session.id
