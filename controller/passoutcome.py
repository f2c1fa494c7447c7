"""What one pass saw and did, as plain data: the reconciler's result, ``controller.outcome``'s input.

Modelled on controller-runtime's ``Result``: besides what happened, the pass says when it wants
to run again (``requeue_after``) and which errors it met, so the handler that reports it needs
nothing else (no reconciler, no memory internals).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from controller.listanswer import NO_ANOMALIES, ListAnomalies
from controller.memoryhealth import MemoryUnwritable
from controller.models import ObservedSession, PlatformContext
from controller.plan import Plan
from controller.spec import DesiredState

Result = Literal["success", "partial", "error"]


@dataclass
class PassOutcome:
    """What one pass saw and did: everything ``controller.outcome`` needs."""

    pass_id: int
    result: Result
    seconds: float
    desired: DesiredState
    #: The plan; its ``memory`` is the controller's memory at the end of the pass (updated in place).
    plan: Plan
    #: Why the list failed (or was not trusted), in one line; None when it was used.
    list_error: str | None = None
    errors: list[str] = field(default_factory=list)
    #: The service's last message per set (refused creates, failed destroys), until a create succeeds.
    set_errors: dict[str, str] = field(default_factory=dict)
    created: Counter[str] = field(default_factory=Counter)
    #: (set, reason) of each destroyed session.
    destroyed: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (set, reason label) of each create that failed or whose outcome is unknown.
    create_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (set, reason label) of each destroy that failed (``failure_reason``).
    destroy_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Creates whose outcome is unknown this pass, by set.
    uncertain: Counter[str] = field(default_factory=Counter)
    renewed: Counter[str] = field(default_factory=Counter)
    renew_failures: Counter[str] = field(default_factory=Counter)
    #: The planner held work back (the per-pass cap) and nothing failed: run again at once.
    more_work: bool = False
    #: No create before this time (clock seconds): the service asked for a pause.
    creates_paused_until: float = 0.0
    #: What broke one id, one session in the list answer (its rows by kind).
    list_anomalies: ListAnomalies = NO_ANOMALIES
    #: Sessions the list left out that were looked up by id this pass, by answer (``gone``, ``live``, ``failed``).
    lookups: Counter[str] = field(default_factory=Counter)
    #: Set while the memory cannot be written (no create was sent).
    memory_unwritable: MemoryUnwritable | None = None
    #: The list answer the pass planned with (None: the list failed); read for the utilisation metrics.
    observed: list[ObservedSession] | None = None
    #: The owned-name prefix and the platform's context the pass planned with (for the utilisation metrics).
    prefix: str = ""
    context: PlatformContext | None = None
    #: Run again within this many seconds (work held back, a manifest settling, a pause or back-off
    #: ending); ``None``: at the regular interval.
    requeue_after: float | None = None

    @property
    def list_ok(self) -> bool:
        return self.list_error is None

