"""Persisted times re-based on load: onto the new process's clock, and nothing in the future beyond its window.

A new process anchors its process time on the wall clock as it is now (``controller.clock``). The
times an earlier process persisted are its process time; where its wall clock had stepped since
it started, the ledger says by how much (``clock_offset``), and they are first moved by that, onto
the wall clock, so a window is not cut short by a step forward the old process had seen.

If the wall clock was stepped back while no process ran (or the old process's clock was ahead),
the times lie in the future, and read as they are an *event* (a create sent, a session first seen Pending, a
condition's transition) would not have happened yet, so every window measured from it would last
the step on top of its own length, and a *deadline* (a back-off's end) would be held for hours.

The rule, per field of ``Memory`` (``FIELDS`` below names every one, times or not):

- an event time in the future becomes now: the window measured from it starts again in full, so
  it is never shorter than it was (the uncertain-create window, the expectation TTL, the restart
  and pending limits) and never held for the step;
- a deadline further ahead than the wait that set it becomes now + that wait: a create back-off
  or a destroy retry waits at most what its policy gives its attempt (jitter at the top), a pause
  the service asked for at most ``PAUSE_CAP`` (5 s: the service says 429 again if it still needs one), so
  no back-off is held longer than it was set for; one within that is kept as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from controller.creates import CREATE_BACKOFF, DEFAULT_THROTTLE
from controller.plan import Memory
from controller.plan.actions import DESTROY_BACKOFF
from controller.plan.backoff import Backoff

#: The longest a persisted create pause may still hold after a restart: what a 429 without Retry-After gets.
#: Retry-After has no cap of its own, and a pause cut short costs one create answered 429 again (which
#: sets the pause anew): nothing unsafe.
PAUSE_CAP = DEFAULT_THROTTLE


@dataclass
class _Rebase:
    """Clamps times against ``now`` and counts how many it moved."""

    now: float
    shift: float = 0.0
    moved: int = 0

    def event(self, at: float) -> float:
        at += self.shift
        if at > self.now:
            self.moved += 1
            return self.now
        return at

    def deadline(self, until: float, cap: float) -> float:
        if until == 0.0:  # "none" (a pause never asked for, a retry due at once), not a time
            return until
        until += self.shift
        if until > self.now + cap:
            self.moved += 1
            return self.now + cap
        return until

    def events(self, times: dict[Any, float]) -> dict[Any, float]:
        return {key: self.event(at) for key, at in times.items()}


def _longest(policy: Backoff, attempt: int) -> float:
    """The longest wait ``policy`` gives the ``attempt``-th try (its jitter at the top)."""
    return policy.delay(attempt) * (1 + policy.jitter)


def _lingering(r: _Rebase, value: Any) -> Any:
    value.retries = {sid: replace(retry, retry_at=r.deadline(retry.retry_at, _longest(DESTROY_BACKOFF, retry.attempts)))
                     for sid, retry in value.retries.items()}
    value.since = r.events(value.since)
    return value


_Field = Callable[[_Rebase, Any], Any] | None

#: Every field of ``Memory``: how its times are re-based (``None``: it holds no time).
FIELDS: dict[str, _Field] = {
    "creates": lambda r, v: {k: replace(e, at=r.event(e.at)) for k, e in v.items()},
    "destroys": lambda r, v: r.events(v),
    "orphans_seen": None,
    "restarts": lambda r, v: {k: replace(h, last_end=r.event(h.last_end),
                                         early_ends=tuple(r.event(t) for t in h.early_ends)) for k, h in v.items()},
    "finished": None,
    "seen_live": None,
    "missing": None,
    "suspect_since": lambda r, v: None if v is None else r.event(v),
    "lookups": lambda r, v: {k: replace(lookup, at=r.event(lookup.at)) for k, lookup in v.items()},
    "backoffs": lambda r, v: {k: replace(b, until=r.deadline(b.until, _longest(CREATE_BACKOFF, b.failures)))
                              for k, b in v.items()},
    "creates_paused_until": lambda r, v: r.deadline(v, PAUSE_CAP),
    "ended_reported": None,
    "conditions": lambda r, v: {name: {kind: replace(mark, since=r.event(mark.since)) for kind, mark in marks.items()}
                                for name, marks in v.items()},
    "progress": lambda r, v: {k: (fingerprint, r.event(since)) for k, (fingerprint, since) in v.items()},
    "pending_since": lambda r, v: r.events(v),
    "unschedulable_reported": None,
    "renew_failures": lambda r, v: r.events(v),
    "notes": None,
    "autoscale": lambda r, v: {k: replace(s, history=tuple((r.event(at), n) for at, n in s.history))
                               for k, s in v.items()},
    "lingering": _lingering,
    # ``before`` is the service's expiry (its clock, not ours) and ``lifetime`` a duration: as they are.
    "renews": lambda r, v: {k: replace(m, at=r.event(m.at)) for k, m in v.items()},
    # The inventory (rule *Ownership*): when an owned session was first missed, when a name was written off.
    "inventoried": None,
    "managed_sets": None,
    "owned": None,
    "owned_missed": lambda r, v: r.events(v),
    "written_off": lambda r, v: r.events(v),
}


def rebase(memory: Memory, now: float, shift: float = 0.0) -> int:
    """Move ``memory``'s persisted times by ``shift`` (the writer's clock offset), then clamp them against
    ``now`` (process time), in place; returns how many had to be clamped."""
    r = _Rebase(now, shift)
    for name, field in FIELDS.items():
        if field is not None:
            setattr(memory, name, field(r, getattr(memory, name)))
    return r.moved
