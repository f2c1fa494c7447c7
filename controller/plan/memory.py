"""What the controller remembers between passes, and across restarts (see ``controller.ledger``).

A pass plans from the service's list *and* this memory, because a list alone cannot tell apart a
session that is still being created, one the controller just destroyed, or one a lossy list
answer left out. Everything here is plain data keyed by set, slot or session id.

The planner never changes the ``Memory`` it is given: it returns a new one in its ``Plan``, which
the reconciler then owns for the rest of the pass and updates in place while it acts (one
structure per pass, no copy per action), before the ledger persists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from controller.plan.autoscale import ScaleState

#: A slot's identity: (SessionSet name, slot number 1..replicas).
SlotKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ExpectedCreate:
    """A create that was sent (or is about to be) and that no list has confirmed yet.

    With ``session_id`` the service answered with an id: the create happened, and only a lagging
    list can hide it. Without one the outcome is *uncertain* (timeout, dropped connection, 5xx, an
    answer that is not an id, or a crash before the answer was recorded): the session may or may
    not exist, so it is looked for by name. ``prior_ids`` are the sessions of that name the list
    already showed before the create was sent, so an old ended session of the slot is never taken
    for the new one.
    """

    name: str
    at: float
    session_id: str | None = None
    prior_ids: tuple[str, ...] = ()
    #: Trusted lists since ``at`` that did not show an uncertain create.
    misses: int = 0

    @property
    def uncertain(self) -> bool:
        return self.session_id is None


@dataclass(frozen=True, slots=True)
class SlotHistory:
    """How a slot's sessions have ended recently: drives the restart back-off."""

    count: int  # consecutive ends since the slot last ran long enough
    last_end: float
    last_session: str
    #: When recent sessions of the slot ended early (within 10 min of starting): crash-loop evidence.
    early_ends: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class CreateBackoff:
    """A set whose creates the service refused (4xx): no creates for it until ``until``.

    ``spec_key`` is the template hash and replica count the refusals were for; a change to
    either ends the back-off at once (the user probably fixed the cause).
    """

    failures: int
    until: float
    message: str
    spec_key: str


@dataclass(frozen=True, slots=True)
class ConditionMark:
    """A condition's last status and since when it has had it (its ``lastTransitionTime``)."""

    status: str
    since: float


@dataclass(frozen=True, slots=True)
class SetNotes:
    """What the reconciler learnt about a set that the planner puts into condition messages."""

    #: The last failed session's log tail and events, as collected before it was destroyed.
    last_failure: str = ""
    #: Events of the set's sessions that have been Pending too long.
    unschedulable: str = ""


@dataclass(frozen=True, slots=True)
class RenewMark:
    """A session's last renew the service accepted, and what the lists showed it did (rule *Renewal*).

    The platform's lifetime is learnt from it (``lifetime``: the expiry the renew produced minus
    ``at``), and a renew that did not move the expiry (``unchanged``) is not sent again until the
    expiry changes or an hour passes.
    """

    #: When the service accepted the renew.
    at: float
    #: The expiry listed when the renew was sent.
    before: float
    #: The session's lifetime as learnt from a renew that moved its expiry (this one or an earlier one).
    lifetime: float | None = None
    #: ``sent`` (no list since), ``moved`` (a list showed another expiry) or ``unchanged`` (it did not).
    outcome: str = "sent"
    #: ``RenewIneffective`` was reported for this session (once, until a renew moves its expiry).
    reported: bool = False


@dataclass(frozen=True, slots=True)
class SeenSession:
    """An owned session that was live in the last trusted list."""

    set_name: str
    slot: int
    name: str


#: What the service said when asked by id for a session a list left out (rule *Disappearance confirmed*):
#: ``gone`` (404, or ended), ``live`` (still there: the list was lossy), ``failed`` (no usable answer).
LookupAnswer = Literal["gone", "live", "failed"]


@dataclass(frozen=True, slots=True)
class Lookup:
    """The last lookup of a live session that a list left out (``controller.plan.vanished``)."""

    answer: LookupAnswer
    #: When it was asked (clock seconds): the next re-check is due a back-off later.
    at: float
    #: Lookups since the session was last listed live (the re-check back-off doubles with it).
    count: int = 1
    #: The status the service answered, or why there was no usable answer.
    detail: str = ""


class _Expectations:
    """Creates and destroys not yet seen through in a list: what keeps a slot from being filled twice.

    These transitions are the ones the ledger's journal records (``Expect``, ``Confirm``,
    ``Withdraw``, ``Destroyed`` below), and replaying the journal calls them again.
    """

    creates: dict[SlotKey, ExpectedCreate]
    destroys: dict[str, float]
    owned: set[str]

    def expect(self, key: SlotKey, expected: ExpectedCreate) -> bool:
        """A create is about to be sent for ``key``: until a list shows it, the slot is taken."""
        self.creates[key] = expected
        return True

    def confirm(self, key: SlotKey, name: str, session_id: str) -> bool:
        """The service answered the create of ``name`` with an id: it happened."""
        expected = self.creates.get(key)
        if expected is None or expected.name != name:
            return False
        self.creates[key] = replace(expected, session_id=session_id)
        self.owned.add(session_id)  # the inventory (``controller.plan.ownership``): ours from its answer
        return True

    def withdraw(self, key: SlotKey, name: str) -> bool:
        """The create of ``name`` surely did not happen (refused, or never sent): the slot is free again."""
        expected = self.creates.get(key)
        if expected is None or expected.name != name or expected.session_id is not None:
            return False
        del self.creates[key]
        return True

    def destroyed(self, session_id: str, at: float) -> bool:
        """The service accepted the destroy of ``session_id``: a lagging list must not count it."""
        self.destroys[session_id] = at
        return True


class _Backoffs:
    """Why creates wait: a set's refused creates, a pause the service asked for, finished slots."""

    restarts: dict[SlotKey, SlotHistory]
    finished: set[tuple[str, int, str]]
    backoffs: dict[str, CreateBackoff]
    creates_paused_until: float
    progress: dict[str, tuple[str, float]]
    notes: dict[str, SetNotes]

    def back_off(self, set_name: str, backoff: CreateBackoff) -> None:
        """The service refused a create of ``set_name``: no create for it until ``backoff.until``."""
        self.backoffs[set_name] = backoff

    def created(self, set_name: str) -> None:
        """A create of ``set_name`` succeeded: its back-off, if any, is over."""
        self.backoffs.pop(set_name, None)

    def pause_creates(self, until: float) -> None:
        """The service asked for no create before ``until`` (429, or 503 with Retry-After)."""
        self.creates_paused_until = max(self.creates_paused_until, until)

    def reset_backoffs(self) -> None:
        """Forget every create back-off and pause (SIGHUP: the user says the cause is fixed)."""
        self.backoffs.clear()
        self.creates_paused_until = 0.0

    def forget_set(self, name: str) -> None:
        """Start a set afresh (``canfar-controller restart``): finished slots run again, histories reset."""
        for entry in [entry for entry in self.finished if entry[0] == name]:
            self.finished.discard(entry)
        for key in [key for key in self.restarts if key[0] == name]:
            del self.restarts[key]
        self.backoffs.pop(name, None)
        self.progress.pop(name, None)
        self.notes.pop(name, None)


class _Reports:
    """What was already reported about a session, so that it is reported once, and what was learnt."""

    ended_reported: set[str]
    unschedulable_reported: set[str]
    renew_failures: dict[str, float]
    renews: dict[str, RenewMark]
    notes: dict[str, SetNotes]
    lookups: dict[str, Lookup]

    def reported_end(self, session_id: str) -> None:
        self.ended_reported.add(session_id)

    def reported_unschedulable(self, session_id: str) -> None:
        self.unschedulable_reported.add(session_id)

    def renew_refused(self, session_id: str, at: float) -> None:
        """The service refused to renew ``session_id``: it is retried only after a while."""
        self.renew_failures[session_id] = at

    def renewed(self, session_id: str, at: float, before: float) -> None:
        """The service accepted the renew of ``session_id``, listed expiring at ``before``: the next
        list tells what it did to the expiry (rule *Renewal*)."""
        self.renew_failures.pop(session_id, None)
        last = self.renews.get(session_id)
        self.renews[session_id] = RenewMark(at, before, last.lifetime if last else None,
                                            reported=last.reported if last else False)

    def looked_up(self, session_id: str, answer: LookupAnswer, at: float, detail: str = "") -> None:
        """The service was asked for ``session_id``, which a list left out (rule *Disappearance confirmed*)."""
        previous = self.lookups.get(session_id)
        self.lookups[session_id] = Lookup(answer, at, previous.count + 1 if previous is not None else 1, detail)

    def note(self, set_name: str, **notes: str) -> None:
        """Keep what was learnt about a set (``SetNotes`` fields) for its condition messages."""
        self.notes[set_name] = replace(self.notes.get(set_name, SetNotes()), **notes)
@dataclass(frozen=True, slots=True)
class DestroyRetry:
    """A destroy to send again with back-off: answered with a 200 while the service may still list the
    session live (*Ignored destroys*), or failed (*Failing destroys*: ``error`` says how)."""

    #: Destroys sent so far (the back-off doubles per attempt).
    attempts: int
    #: Not retried before this time (set with jitter by the reconciler, when a destroy is answered).
    retry_at: float
    #: Lists since then that still showed it Running or Pending (``DestroyFailing`` from the second).
    lists: int = 0
    #: Its slot, once a list showed it live after the destroy (the slot stays held while it lingers).
    set_name: str = ""
    slot: int = 0
    template: str = ""
    #: Trusted lists in a row that left it out: gone once two did (one lossy list proves nothing).
    misses: int = 0
    #: The service's answer to the last destroy when it failed (5xx, no answer, a 4xx other than 404);
    #: "" once one was answered. A failed destroy is not planned again before ``retry_at``.
    error: str = ""
    #: Destroyed while live and not listed since: its slot (above) is held through a lossy list, and
    #: freed by the first trusted list that leaves it out (a partial answer must not hide an ignored
    #: destroy and let its slot be refilled beside it).
    fresh: bool = False


@dataclass(slots=True)
class Lingering:
    """Sessions the service will not let go (``controller.plan.lingering``): destroys it ignored, and
    sessions stuck Terminating or Unknown."""

    #: Destroyed sessions by id, while they are listed live.
    retries: dict[str, DestroyRetry] = field(default_factory=dict)
    #: When each owned session was first seen Terminating or Unknown (stuck after ``terminating_limit``).
    since: dict[str, float] = field(default_factory=dict)
    #: Stuck sessions already reported (events fetched, audit written): once per session.
    reported: set[str] = field(default_factory=set)
    #: Per set, the events of its stuck sessions, for the ``Stuck`` condition's message.
    evidence: dict[str, str] = field(default_factory=dict)

    def copy(self) -> Lingering:
        return Lingering(dict(self.retries), dict(self.since), set(self.reported), dict(self.evidence))


@dataclass(slots=True)
class Memory(_Expectations, _Backoffs, _Reports):
    """Everything a pass needs from earlier passes. See the module docstring for who may change it.

    Its fields are grouped by concern: expectations (``creates``, ``destroys``), list trust
    (``orphans_seen``, ``seen_live``, ``missing``, ``suspect_since``, ``lookups``), back-offs and restarts, and
    what was reported (conditions, notes). Outside the planner it changes only through the methods
    of its parts.
    """

    #: Creates not yet seen in a list, by slot.
    creates: dict[SlotKey, ExpectedCreate] = field(default_factory=dict)
    #: Sessions this controller destroyed (id -> when), so a lagging list does not count them.
    destroys: dict[str, float] = field(default_factory=dict)
    #: Orphans seen in the last pass: an orphan is destroyed only when seen twice in a row.
    orphans_seen: frozenset[str] = frozenset()
    #: Restart back-off history per slot.
    restarts: dict[SlotKey, SlotHistory] = field(default_factory=dict)
    #: Slots whose session ended and must not run again under that template: (set, slot, hash).
    finished: set[tuple[str, int, str]] = field(default_factory=set)
    #: Owned sessions live in the last trusted list, by id.
    seen_live: dict[str, SeenSession] = field(default_factory=dict)
    #: Ids of ``seen_live`` that a list left out and nothing confirmed gone yet: their slots stay held.
    missing: frozenset[str] = frozenset()
    #: When the current run of suspect lists began (no owned session at all where live ones were).
    suspect_since: float | None = None
    #: Sessions left out of a list that the service was asked for by id, and what it answered.
    lookups: dict[str, Lookup] = field(default_factory=dict)
    #: Per-set back-off after the service refused a create.
    backoffs: dict[str, CreateBackoff] = field(default_factory=dict)
    #: No create at all before this time (the service said 429 or 503 with Retry-After).
    creates_paused_until: float = 0.0
    #: Ended sessions whose end was already reported (logs, events, audit): once per session.
    ended_reported: set[str] = field(default_factory=set)
    #: Each set's conditions as last reported, for their transition times.
    conditions: dict[str, dict[str, ConditionMark]] = field(default_factory=dict)
    #: Each set's rollout progress: what it looked like, and since when (the progress deadline).
    progress: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: When each owned session was first seen Pending (unschedulable after a while).
    pending_since: dict[str, float] = field(default_factory=dict)
    #: Pending-too-long sessions already reported (events fetched, audit written): once per session.
    unschedulable_reported: set[str] = field(default_factory=set)
    #: Sessions whose last renew the service refused, and when: retried only after a while.
    renew_failures: dict[str, float] = field(default_factory=dict)
    #: What the reconciler learnt per set (failure evidence, scheduling events).
    notes: dict[str, SetNotes] = field(default_factory=dict)
    #: Autoscaled sets: the count in force and the recent recommendations (HPA's windows).
    autoscale: dict[str, ScaleState] = field(default_factory=dict)
    #: Sessions the service will not let go.
    lingering: Lingering = field(default_factory=Lingering)
    #: Each live session's last accepted renew and what it did: the learnt lifetime (rule *Renewal*).
    renews: dict[str, RenewMark] = field(default_factory=dict)
    #: The inventory (``controller.plan.ownership``): whether the first pass has adopted what it found
    #: (``False`` on a fresh memory and on one written before the inventory existed) ...
    inventoried: bool = False
    #: ... the sets this controller manages or managed (while they have sessions) ...
    managed_sets: set[str] = field(default_factory=set)
    #: ... the session ids it created or adopted ...
    owned: set[str] = field(default_factory=set)
    #: ... those no list has shown since (id -> when first missed): kept for ``INVENTORY_KEEP``, since a
    #: lossy or partial list may leave out a session that still runs ...
    owned_missed: dict[str, float] = field(default_factory=dict)
    #: ... and the names of uncertain creates written off (name -> when): a session that appears under
    #: one of them later (a create applied after the window) is ours, not a second writer's.
    written_off: dict[str, float] = field(default_factory=dict)

    def copy(self) -> Memory:
        """A copy whose containers can be changed without touching this one."""
        return replace(self, creates=dict(self.creates), destroys=dict(self.destroys),
                       restarts=dict(self.restarts), finished=set(self.finished), seen_live=dict(self.seen_live),
                       backoffs=dict(self.backoffs), ended_reported=set(self.ended_reported),
                       conditions={name: dict(marks) for name, marks in self.conditions.items()},
                       progress=dict(self.progress), pending_since=dict(self.pending_since),
                       unschedulable_reported=set(self.unschedulable_reported),
                       renew_failures=dict(self.renew_failures), notes=dict(self.notes),
                       autoscale=dict(self.autoscale), lookups=dict(self.lookups),
                       lingering=self.lingering.copy(),
                       renews=dict(self.renews),
                       managed_sets=set(self.managed_sets), owned=set(self.owned),
                       owned_missed=dict(self.owned_missed), written_off=dict(self.written_off))


@dataclass(frozen=True, slots=True)
class Expect:
    """Journaled transition: a create is about to be sent (written ahead, before it leaves)."""

    key: SlotKey
    expected: ExpectedCreate

    def apply(self, memory: Memory) -> bool:
        return memory.expect(self.key, self.expected)


@dataclass(frozen=True, slots=True)
class Confirm:
    """Journaled transition: a create was answered with an id."""

    key: SlotKey
    name: str
    session_id: str

    def apply(self, memory: Memory) -> bool:
        return memory.confirm(self.key, self.name, self.session_id)


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Journaled transition: a create surely did not happen."""

    key: SlotKey
    name: str

    def apply(self, memory: Memory) -> bool:
        return memory.withdraw(self.key, self.name)


@dataclass(frozen=True, slots=True)
class Destroyed:
    """Journaled transition: a destroy was accepted."""

    session_id: str
    at: float

    def apply(self, memory: Memory) -> bool:
        return memory.destroyed(self.session_id, self.at)


#: The transitions of the memory that the ledger's journal records; replay applies them again.
Transition = Expect | Confirm | Withdraw | Destroyed
