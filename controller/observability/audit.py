"""Audit events: one log line per create, destroy and failure, with a Kubernetes-style reason.

An audit event is an ordinary structlog event named ``audit`` that carries ``reason`` (one of
``REASONS``), ``type`` (``Normal`` or ``Warning``, as Kubernetes events have) and whatever context
the caller binds (pass id, sessionset, session id). ``jq 'select(.event == "audit")'`` is the
audit trail.

A failure that repeats every pass (quota full, image missing) would bury everything else, so
``AuditLog`` logs identical failures once: an event with the same sessionset, reason and message
as the previous one of its kind is suppressed until the message changes, the same action
succeeds again, or ``repeat_after`` seconds pass; the next line says how many were suppressed.
A failure about one session (``subject``: a destroy that keeps failing) is counted per session, so
each session's error is said when it changes, not once per retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

import structlog

from controller.models import Event
from controller.observability.repeats import Repeats

__all__ = [
    "CREATE_UNCERTAIN",
    "DESTROY_IGNORED",
    "ENDED",
    "FAILED_CREATE",
    "FAILED_DESTROY",
    "FAILED_RENEW",
    "PRUNED",
    "REASONS",
    "RENEWED",
    "RENEW_INEFFECTIVE",
    "STUCK",
    "SUCCESSFUL_CREATE",
    "SUCCESSFUL_DESTROY",
    "UNSCHEDULABLE",
    "AuditLog",
    "AuditReason",
    "evidence",
]

AuditReason = Literal[
    "SuccessfulCreate", "FailedCreate", "CreateUncertain", "SuccessfulDestroy", "FailedDestroy", "Pruned", "Ended",
    "Renewed", "FailedRenew", "Unschedulable", "DestroyIgnored", "Stuck",
    "RenewIneffective",
]
SUCCESSFUL_CREATE: Final = "SuccessfulCreate"
FAILED_CREATE: Final = "FailedCreate"
#: A create whose outcome is unknown (timeout, 5xx, an answer that is not an id): it may exist.
CREATE_UNCERTAIN: Final = "CreateUncertain"
SUCCESSFUL_DESTROY: Final = "SuccessfulDestroy"
FAILED_DESTROY: Final = "FailedDestroy"
#: A session was destroyed because it no longer belongs to a wanted slot (old template, scaled down).
PRUNED: Final = "Pruned"
#: A session reached Completed or Failed; for a failure the evidence rides along on this event.
ENDED: Final = "Ended"
#: An interactive session's lifetime was extended before the platform would end it.
RENEWED: Final = "Renewed"
FAILED_RENEW: Final = "FailedRenew"
#: A session has been Pending longer than the limit: the platform cannot place it.
UNSCHEDULABLE: Final = "Unschedulable"
#: A session the service acknowledged destroying is still listed live: the destroy is sent again.
DESTROY_IGNORED: Final = "DestroyIgnored"
#: A session has been Terminating or Unknown longer than the limit: the service does not let it go.
STUCK: Final = "Stuck"
#: A renew the service accepted did not move the session's expiry: not sent again for a while.
RENEW_INEFFECTIVE: Final = "RenewIneffective"
REASONS: Final = (SUCCESSFUL_CREATE, FAILED_CREATE, CREATE_UNCERTAIN, SUCCESSFUL_DESTROY, FAILED_DESTROY, PRUNED,
                  ENDED, RENEWED, FAILED_RENEW, UNSCHEDULABLE, DESTROY_IGNORED, STUCK, RENEW_INEFFECTIVE)

#: Failure reasons, each with the successes that show the action works again.
_FAILURES: Final = {FAILED_CREATE: (SUCCESSFUL_CREATE,), CREATE_UNCERTAIN: (SUCCESSFUL_CREATE,),
                    FAILED_DESTROY: (SUCCESSFUL_DESTROY, PRUNED), FAILED_RENEW: (RENEWED,)}
#: Events that are warnings without being failures of an action.
_WARNINGS: Final = (UNSCHEDULABLE, DESTROY_IGNORED, STUCK, RENEW_INEFFECTIVE)
#: Default pause before an unchanged failure is logged again.
REPEAT_AFTER: Final = 3600.0
#: Remembered failures beyond which the expired ones are dropped, so memory stays bounded.
MAX_REMEMBERED: Final = 1000
#: How much of a failed session's log is kept: the end is where the error is.
LOG_TAIL_LINES: Final = 50
LOG_TAIL_CHARS: Final = 8000


class AuditLog:
    """Writes audit events to ``log`` and de-duplicates identical repeated failures.

    ``clock`` (monotonic seconds) is injectable for tests. Thread-safe.
    """

    def __init__(
        self,
        log: Any = None,
        *,
        repeat_after: float = REPEAT_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log if log is not None else structlog.get_logger("controller.audit")
        self._repeats = Repeats(repeat_after, clock=clock)

    def event(self, reason: AuditReason, *, sessionset: str, message: str = "", log: Any = None,
              subject: str = "", **fields: Any) -> bool:
        """Record one audit event; returns False when it was suppressed as a repeat.

        ``log`` overrides the logger for this event (pass the pass's bound logger so its context
        rides along); ``fields`` are added as they are (``session_id=``, ``phase=``, ``evidence(...)``).
        ``subject`` (a session id) keeps a failure's repeats apart from other sessions' of the set.
        Failures, and ``Ended`` with ``phase="Failed"``, are ``Warning`` events; the rest ``Normal``.
        """
        if reason not in REASONS:
            raise ValueError(f"unknown audit reason {reason!r}: use one of {', '.join(REASONS)}")
        suppressed = self._admit(reason, sessionset, message, subject)
        if suppressed is None:
            return False
        if suppressed:
            fields["suppressed_repeats"] = suppressed
        failed_session = reason == ENDED and fields.get("phase") == "Failed"
        kind = "Warning" if reason in _FAILURES or failed_session or reason in _WARNINGS else "Normal"
        target = log if log is not None else self._log
        emit = target.warning if kind == "Warning" else target.info
        emit("audit", reason=reason, type=kind, sessionset=sessionset, message=message, **fields)
        return True

    def forget(self, sessionset: str) -> None:
        """Drop the repeat memory of a removed set, so memory stays bounded by the live sets."""
        self._repeats.forget(lambda key: isinstance(key, tuple) and key[0] == sessionset)

    def _admit(self, reason: str, sessionset: str, message: str, subject: str) -> int | None:
        """``None`` to suppress, else how many repeats were suppressed before this one."""
        about = (subject,) if subject else ()
        for failure, successes in _FAILURES.items():
            if reason in successes:  # the action works again: the next failure is news
                self._repeats.clear((sessionset, failure, *about))
        if reason not in _FAILURES:
            return 0
        if len(self._repeats) > MAX_REMEMBERED:  # sessions that failed and went some other way
            self._repeats.expire()
        return self._repeats.admit((sessionset, reason, *about), message)


def evidence(
    logs: str | None, events: Iterable[Event] = (), *, lines: int = LOG_TAIL_LINES,
) -> dict[str, Any]:
    """The fields that keep a failed session's evidence: its log tail and its events.

    Meant for ``AuditLog.event(ENDED, ..., **evidence(logs, events))`` before the session is
    destroyed; the log tail is bounded so one chatty session cannot flood the log.
    """
    tail = "\n".join((logs or "").rstrip("\n").splitlines()[-lines:])
    if len(tail) > LOG_TAIL_CHARS:
        tail = "…" + tail[-LOG_TAIL_CHARS:]
    return {
        "logs_tail": tail,
        "events": [
            {"type": e.type, "reason": e.reason, "message": e.message, "last_time": e.last_time}
            for e in events
        ],
    }
