"""Kubernetes-style conditions of a SessionSet: what a person (or an alert) needs to know at a glance.

Each condition has a type, a status (``True``, ``False`` or ``Unknown``), a one-word reason, a
message, and ``lastTransitionTime``: when its status last changed, kept in the memory so that it
survives restarts. The planner gathers ``SetFacts`` for each set; ``evaluate`` turns them into
statuses and ``stamp`` adds the transition times.

- ``Ready``: every slot that should run has a Running session of the current template (a
  ``Complete`` set is ready: there is nothing left to run), and no live session the set wants gone
  is left running because its destroy fails or is ignored (reason ``DestroyFailing``).
- ``Progressing``: a rollout or a scale-up is under way; ``False`` with ``ProgressDeadlineExceeded``
  when it has made no progress for 10 minutes.
- ``Complete``: every slot has ended and will not run again (``OnFailure`` after success, ``Never``).
- ``CrashLooping``: a slot's sessions ended early (within 10 min) 3 times within 30 min.
- ``CreateFailing``: the service refuses the set's creates (back-off), or asked to slow down.
- ``DestroyFailing``: the service answered a destroy but a second list still shows the session
  Running or Pending (reason ``Ignored``, the ids in the message), or a destroy failed (reason
  ``Failed``: a 5xx, no answer, a 4xx other than 404; the ids and the service's message); it is
  retried with back-off.
- ``WaitingForCapacity``: creates wait because the platform is full, or sessions have been
  ``Pending`` too long; ``Unknown`` when the platform statistics are unavailable.
- ``Stuck``: a session has been Terminating or Unknown for longer than ``--terminating-limit``
  (its events in the message).
- ``RenewIneffective``: a renew the service accepted did not move a session's expiry (reason
  ``ExpiryUnchanged``, the ids in the message); it is not sent again until the expiry changes or an
  hour passes.
- ``Conflict``: another writer (a second controller with the same prefix) has live sessions in the
  set (reason ``SecondWriter``, their ids in the message): the set creates and destroys nothing.
- ``Invalid``: the set's manifest is invalid (its last good spec is in force, if any).
- ``Suspended``: ``spec.suspend`` is set.
- ``ScalingActive`` (autoscaled sets only): the signals can be read; ``False`` with
  ``FailedGetSignal`` after 3 failed reads in a row.
- ``ScalingLimited`` (autoscaled sets only): the recommendation was clamped at ``minReplicas``
  (``TooFewReplicas``) or ``maxReplicas`` (``TooManyReplicas``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from controller.plan.durations import duration
from controller.plan.memory import ConditionMark

ConditionType = Literal[
    "Ready", "Progressing", "Complete", "CrashLooping", "CreateFailing", "DestroyFailing", "WaitingForCapacity",
    "Stuck", "Invalid", "Suspended", "ScalingActive", "ScalingLimited",
    "RenewIneffective", "Conflict",
]
CONDITION_TYPES: tuple[ConditionType, ...] = (
    "Ready", "Progressing", "Complete", "CrashLooping", "CreateFailing", "DestroyFailing", "WaitingForCapacity",
    "Stuck", "Invalid", "Suspended", "ScalingActive", "ScalingLimited",
    "RenewIneffective", "Conflict",
)
#: Conditions only autoscaled sets have.
AUTOSCALE_CONDITIONS: frozenset[ConditionType] = frozenset({"ScalingActive", "ScalingLimited"})
Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class Condition:
    type: ConditionType
    status: Status
    reason: str
    message: str
    last_transition: float


@dataclass(frozen=True, slots=True)
class SetFacts:
    """What the planner found out about one set, in the terms the conditions need."""

    replicas: int
    #: Slots that should have a running session now (replicas minus finished slots).
    wanted: int
    #: Slots with a Running session of the current template.
    ready: int
    complete: bool
    suspended: bool
    invalid: str | None
    #: ``RollingUpdate``, ``OnCompletion`` or ``Recreate``.
    strategy: str
    #: Live sessions of an older template.
    outdated: int
    #: Whether the set is converging (rollout, scale-up, refill) and whether that stalled.
    progressing: bool
    stalled: bool
    crash_loop: str | None
    create_failing: tuple[str, str] | None  # (reason, message)
    capacity: tuple[Status, str, str] | None  # (status, reason, message) when capacity matters
    #: How long a set may make no progress before it is reported as stalled (for the message).
    stall_after: float
    #: Autoscaled sets: ``ScalingActive`` and ``ScalingLimited`` as (status, reason, message).
    scaling: tuple[tuple[str, str, str], tuple[str, str, str]] | None = None
    #: Why destroys are failing: (``Failed`` or ``Ignored``, the message with the ids).
    destroy_failing: tuple[str, str] | None = None
    #: Live sessions the set wants gone whose destroy fails or is ignored: the set is not ``Ready``.
    stranded: int = 0
    #: Which sessions are stuck Terminating or Unknown, with their events.
    stuck: str | None = None
    #: Which sessions' last renew did not move their expiry.
    renew_ineffective: str | None = None
    #: Another writer's live sessions in the set (rule *Second writer*).
    conflict: str | None = None


def evaluate(facts: SetFacts) -> dict[ConditionType, tuple[Status, str, str]]:
    """Each condition's (status, reason, message) for the facts of one set."""
    result: dict[ConditionType, tuple[Status, str, str]] = {}
    if facts.complete:
        result["Ready"] = ("True", "Complete", f"all {facts.replicas} slots have ended and will not run again")
    elif facts.stranded:
        result["Ready"] = ("False", "DestroyFailing", f"{facts.ready} of {facts.wanted} slots running, and "
                           f"{facts.stranded} session(s) that should go still run: their destroy fails")
    elif facts.ready >= facts.wanted:
        result["Ready"] = ("True", "AllRunning", f"{facts.ready} of {facts.wanted} slots running")
    else:
        result["Ready"] = ("False", "NotAllRunning", f"{facts.ready} of {facts.wanted} slots running")

    if facts.stalled:
        result["Progressing"] = ("False", "ProgressDeadlineExceeded",
                                 f"no progress for {duration(facts.stall_after)}: " + _progress(facts))
    elif facts.progressing:
        reason = facts.strategy if facts.outdated else "Creating"
        result["Progressing"] = ("True", reason, _progress(facts))
    else:
        result["Progressing"] = ("False", "Complete" if facts.complete else "UpToDate",
                                 "nothing to do" if not facts.complete else "every slot has finished")

    result["Complete"] = (("True", "AllSlotsEnded", f"all {facts.replicas} slots ended and will not run again")
                          if facts.complete else
                          ("False", "SlotsRemaining", "some slots run, or will run again"))
    result["CrashLooping"] = (("True", "EarlyEnds", facts.crash_loop) if facts.crash_loop is not None
                              else ("False", "Stable", "no slot is ending early repeatedly"))
    result["CreateFailing"] = (("True", *facts.create_failing) if facts.create_failing is not None
                               else ("False", "CreatesSucceed", "no create is being refused"))
    result["DestroyFailing"] = (("True", *facts.destroy_failing) if facts.destroy_failing is not None
                                else ("False", "DestroysTakeEffect", "every destroyed session has gone"))
    result["WaitingForCapacity"] = (facts.capacity if facts.capacity is not None
                                    else ("False", "Fits", "every session fits on the platform"))
    result["Stuck"] = (("True", "PastTerminatingLimit", facts.stuck) if facts.stuck is not None
                       else ("False", "NoneStuck", "no session is stuck Terminating or Unknown"))
    result["Invalid"] = (("True", "ManifestError", facts.invalid) if facts.invalid is not None
                         else ("False", "Valid", "the manifest is valid"))
    result["Suspended"] = (("True", "Suspended", "spec.suspend is set: nothing is created or destroyed")
                           if facts.suspended else ("False", "Active", "the set is managed"))
    result["RenewIneffective"] = (("True", "ExpiryUnchanged", facts.renew_ineffective)
                                  if facts.renew_ineffective is not None
                                  else ("False", "RenewsTakeEffect", "every renew moved its session's expiry"))
    result["Conflict"] = (("True", "SecondWriter", facts.conflict) if facts.conflict is not None
                          else ("False", "NoSecondWriter", "every live session of the set is this controller's"))
    if facts.scaling is not None:
        active, limited = facts.scaling
        result["ScalingActive"] = (_status(active[0]), active[1], active[2])
        result["ScalingLimited"] = (_status(limited[0]), limited[1], limited[2])
    return result


def _status(value: str) -> Status:
    return "True" if value == "True" else "False" if value == "False" else "Unknown"


def _progress(facts: SetFacts) -> str:
    if facts.outdated:
        return f"{facts.outdated} session(s) of an older template left ({facts.strategy}); {facts.ready} of " \
               f"{facts.wanted} slots running the current one"
    return f"{facts.ready} of {facts.wanted} slots running"


def stamp(raw: Mapping[ConditionType, tuple[Status, str, str]], previous: Mapping[str, ConditionMark],
          now: float) -> tuple[tuple[Condition, ...], dict[str, ConditionMark]]:
    """Conditions with their transition times, and the marks to remember for the next pass."""
    conditions = []
    marks: dict[str, ConditionMark] = {}
    for kind in CONDITION_TYPES:
        if kind not in raw:
            continue
        status, reason, message = raw[kind]
        mark = previous.get(kind)
        if mark is None or mark.status != status:
            mark = ConditionMark(status, now)
        marks[kind] = mark
        conditions.append(Condition(kind, status, reason, message, mark.since))
    return tuple(conditions), marks
