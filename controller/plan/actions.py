"""What the planner decides: actions for the reconciler, a status per set, and the knobs it decides with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from controller.plan.autoscale import Decision
from controller.plan.backoff import Backoff
from controller.plan.conditions import Condition
from controller.plan.memory import Memory
from controller.spec import Template

DestroyReason = Literal["ended", "scaled-down", "orphaned", "duplicate", "outdated", "retry"]

EXPECTATION_TTL = 300.0
#: How long an uncertain create blocks its slot at least (and it takes two lists without it too).
UNCERTAIN_WINDOW = 120.0
UNCERTAIN_MIN_LISTS = 2
#: How long answers with no owned session at all must persist before they are believed.
EMPTY_LIST_WINDOW = 60.0
RESTART_BACKOFF_BASE = 10.0
RESTART_BACKOFF_CAP = 300.0
#: A session that ran this long counts as healthy: its slot's restart back-off starts afresh.
RESTART_RESET_AFTER = 600.0
#: Crash loop: this many early ends (a session ending within RESTART_RESET_AFTER of its start) ...
CRASH_LOOP_ENDS = 3
#: ... within this window.
CRASH_LOOP_WINDOW = 1800.0
#: ReplicaSet's ``BurstReplicas``: the most creates one pass starts.
MAX_CREATES_PER_PASS = 500
#: The platform's interactive session lifetime (``skaha.sessionexpiry``, 4 days), assumed for a session
#: until its own is learnt (its start to its expiry, or what a renew did to its expiry).
SESSION_EXPIRY = 345_600.0
#: Renew an interactive session once less than this part of its lifetime remains: with 4-day sessions,
#: once less than a day remains (every 3 days). Whatever the fraction, a session gets at most one renew
#: per quarter of its lifetime.
RENEW_WHEN_REMAINING = 0.25
#: After the service refused a renew, try again only after this long.
RENEW_RETRY = 600.0
#: A renew that did not move the expiry is sent again only once the expiry changes, or after this long.
RENEW_INEFFECTIVE_RETRY = 3600.0
#: A learnt lifetime shorter than this is taken as this: whatever the service answers, a session gets
#: at most one renew per quarter of it (5 s).
MIN_LIFETIME = 20.0
#: A session Pending this long is reported as unschedulable.
PENDING_LIMIT = 600.0
#: A rollout or scale-up that changes nothing for this long is reported as stalled.
PROGRESS_DEADLINE = 600.0
#: A session Terminating or Unknown this long is reported as stuck.
TERMINATING_LIMIT = 600.0
#: A destroy the service answered but did not carry out, or that failed, is sent again after 5 s,
#: doubling to 10 min, ±10% (the jitter spreads the retries of many sessions destroyed together).
DESTROY_BACKOFF = Backoff(base=5.0, cap=600.0, jitter=0.1)
#: A manifest change that would destroy live sessions acts only once its file has been unchanged this long.
DESTRUCTIVE_SETTLE = 30.0


@dataclass(frozen=True, slots=True)
class Create:
    set_name: str
    slot: int
    name: str
    template: Template
    replicas: int
    reason: str  # "missing", "restart", "rollout"
    #: Sessions already listed under this name: a later list showing any other id proves the create.
    prior_ids: tuple[str, ...] = ()

    @property
    def spec_key(self) -> str:
        """What a create back-off is tied to: the template and the replica count."""
        return spec_key(self.template.hash(), self.replicas)

    def env(self) -> dict[str, str]:
        """The environment to send: the template's plus the slot identity (headless only)."""
        if self.template.kind != "headless":
            return {}
        return {**self.template.env_text(), "REPLICA_ID": str(self.slot), "REPLICA_COUNT": str(self.replicas)}


@dataclass(frozen=True, slots=True)
class Destroy:
    set_name: str
    session_id: str
    name: str
    reason: DestroyReason
    phase: str
    #: Report the end (audit ``Ended``) before destroying: only the first time this session is seen ended.
    report_end: bool = False
    #: Fetch logs and events first: the session failed, and this is the last chance to see why.
    collect_evidence: bool = False
    #: The slot of a live session (set, slot, template hash): held after the destroy until a trusted
    #: list shows it gone (rule *Ignored destroys*); ``None`` for an ended one.
    slot_of: tuple[str, int, str] | None = None


@dataclass(frozen=True, slots=True)
class Renew:
    """Extend an interactive session's lifetime before the platform ends it."""

    set_name: str
    session_id: str
    name: str
    expires: float


@dataclass(frozen=True, slots=True)
class RenewIneffective:
    """A renew the service accepted that did not move the session's expiry: report it once."""

    set_name: str
    session_id: str
    name: str
    expires: float
    renewed_at: float


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """A session Pending for longer than the limit: report it once, with its events."""

    set_name: str
    session_id: str
    name: str
    pending_since: float


@dataclass(frozen=True, slots=True)
class Stuck:
    """A session Terminating or Unknown for longer than the limit: report it once, with its events."""

    set_name: str
    session_id: str
    name: str
    phase: str
    since: float


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A manifest change that would destroy live sessions, held by the rule *Destructive settle*."""

    set_name: str
    #: What would happen, e.g. ``scale-down 30→3``, ``template change (Recreate)``, ``set removed``.
    change: str
    #: Live sessions it would destroy now.
    sessions: int
    #: When it acts if the file stays as it is (the planner's clock, epoch seconds).
    acts_at: float
    #: ``--destructive-settle``.
    window: float

    def describe(self, at: str) -> str:
        """One line, with ``at`` the time it acts as the reader shows it."""
        return (f"{self.change} acts at {at} (manifest unchanged for {self.window:g} s; "
                f"{self.sessions} live session(s) wait)")


@dataclass(frozen=True)
class SetStatus:
    name: str
    desired: int | None
    running: int = 0
    pending: int = 0
    unknown: int = 0
    completed: int = 0
    failed: int = 0
    terminating: int = 0
    outdated: int = 0
    #: Slots with a live session of the current template.
    updated: int = 0
    #: Slots with a Running session of the current template.
    ready: int = 0
    in_flight: int = 0
    #: Creates whose outcome is unknown, blocking their slots.
    uncertain: int = 0
    #: Slots whose session one list left out: they wait for a second list before being refilled.
    held: int = 0
    suspended: bool = False
    invalid: str | None = None
    waiting: str | None = None  # why some slot is not being filled right now
    #: The service refused this set's creates: none until then (epoch seconds), and its message.
    backoff_until: float | None = None
    backoff_message: str | None = None
    #: Every slot has ended and will not run again.
    complete: bool = False
    #: Sessions Pending for longer than the limit.
    unschedulable: int = 0
    #: Sessions Terminating or Unknown for longer than ``terminating_limit``.
    stuck: int = 0
    #: The soonest time a live session of the set reaches its deadline (epoch seconds).
    next_expiry: float | None = None
    conditions: tuple[Condition, ...] = ()
    #: Autoscaled sets: this pass's signal values, recommendation and count in force (``desired``).
    scaling: Decision | None = None
    #: Autoscaled sets: sessions in slots above the count still running (Drain waits for them to end).
    draining: int = 0
    #: Sessions the set wants gone whose destroy fails or is ignored (``DestroyFailing``).
    destroy_failing: int = 0

    def scaling_why(self) -> str | None:
        """Why the count in force differs from the recommendation, or from the sessions running."""
        if self.scaling is None:
            return None
        reasons = [self.scaling.why] if self.scaling.why else []
        if self.draining:
            reasons.append(f"Drain: waiting for {self.draining} session(s) above the count to end")
        return "; ".join(reasons) or None

    @property
    def ended(self) -> int:
        return self.completed + self.failed

    def counts(self) -> dict[str, int]:
        """Sessions by phase, as the metrics report them."""
        return {"Running": self.running, "Pending": self.pending, "Unknown": self.unknown,
                "Completed": self.completed, "Failed": self.failed, "Terminating": self.terminating}

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


@dataclass(frozen=True)
class Plan:
    creates: tuple[Create, ...]
    destroys: tuple[Destroy, ...]
    statuses: dict[str, SetStatus]
    #: The memory after this plan; the reconciler owns it from here (see ``controller.plan.memory``).
    memory: Memory
    renews: tuple[Renew, ...] = ()
    unschedulable: tuple[Unschedulable, ...] = ()
    stuck: tuple[Stuck, ...] = ()
    #: Creates held back by the per-pass cap: the next pass should come at once.
    deferred: int = 0
    #: Set when the list failed: nothing was decided.
    blind: bool = False
    #: Set when the list left out every owned session at once: nothing was done.
    suspect: bool = False
    #: Owned sessions this list left out for the first time (their slots are held).
    left_out: tuple[str, ...] = ()
    #: Why capacity was not checked (no statistics), or None.
    capacity_unknown: str | None = None
    #: Renews a list showed had not moved the expiry, reported for the first time (rule *Renewal*).
    renew_ineffective: tuple[RenewIneffective, ...] = ()
    #: Sets never managed that have owned-name sessions, and how many (rule *Inventory*): never touched.
    unmanaged: dict[str, int] = field(default_factory=dict)
    #: Managed sets with another writer's live sessions, and their ids (rule *Second writer*).
    conflicts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Sessions adopted into the inventory this pass (the first pass, or a create of ours found by name).
    adopted: tuple[str, ...] = ()
    #: Destructive manifest changes waiting for their file to stay unchanged (rule *Destructive settle*).
    pending: tuple[PendingChange, ...] = ()

    @property
    def changes(self) -> bool:
        return bool(self.creates or self.destroys or self.deferred or self.renews)


@dataclass(frozen=True)
class PlanOptions:
    prefix: str = "cc"
    allow_empty: bool = False
    max_creates: int = MAX_CREATES_PER_PASS
    expectation_ttl: float = EXPECTATION_TTL
    uncertain_window: float = UNCERTAIN_WINDOW
    empty_list_window: float = EMPTY_LIST_WINDOW
    restart_backoff: float = RESTART_BACKOFF_BASE
    restart_backoff_cap: float = RESTART_BACKOFF_CAP
    session_expiry: float = SESSION_EXPIRY
    renew_when_remaining: float = RENEW_WHEN_REMAINING
    pending_limit: float = PENDING_LIMIT
    progress_deadline: float = PROGRESS_DEADLINE
    terminating_limit: float = TERMINATING_LIMIT
    #: Plan creates against the platform's free capacity (when statistics are available).
    check_capacity: bool = True
    #: Seconds a manifest file must stay unchanged before a change that destroys live sessions acts
    #: (0: at once); also the least scale-down stabilization of an autoscaled set.
    destructive_settle: float = DESTRUCTIVE_SETTLE


def spec_key(template_hash: str, replicas: int) -> str:
    return f"{template_hash}/{replicas}"


def restart_delay(count: int, base: float = RESTART_BACKOFF_BASE, cap: float = RESTART_BACKOFF_CAP) -> float:
    """Seconds to wait before the ``count``-th consecutive restart of a slot."""
    return Backoff(base, cap).delay(count)
