"""The rule *Renewal*: interactive sessions are renewed before they expire, as often as the platform needs.

A session's lifetime is learnt from the platform, not assumed: what its last renew did to its
expiry (the expiry it produced minus when it was accepted), else its start to its expiry as listed,
else ``--session-expiry``. It is renewed once less than ``renew_when_remaining`` of that lifetime
remains, and never twice within a quarter of it, whatever the answers say (a lifetime under
``MIN_LIFETIME`` counts as that). A renew that did not move the expiry is reported once
(``RenewIneffective``) and not sent again until the expiry changes or ``RENEW_INEFFECTIVE_RETRY``
(1 h) passes. A renew the service refused is retried after ``RENEW_RETRY``; none becomes a destroy.
"""

from __future__ import annotations

import math
from dataclasses import replace

from controller.plan.actions import (
    MIN_LIFETIME,
    RENEW_INEFFECTIVE_RETRY,
    RENEW_RETRY,
    PlanOptions,
    Renew,
    RenewIneffective,
)
from controller.plan.context import Decisions, PassContext
from controller.plan.listing import Listed
from controller.plan.memory import RenewMark


def consider_renew(context: PassContext, decisions: Decisions, seen: Listed) -> None:
    """Learn what the last renew of ``seen`` did, then renew it if its learnt lifetime says so."""
    if seen.phase != "Running" or seen.expires is None:
        return
    now = context.now
    mark = _observe(context.memory.renews.get(seen.id), seen.expires)
    if mark is not None:
        decisions.renew_marks[seen.id] = mark
        if mark.outcome == "unchanged":
            decisions.renew_unchanged.setdefault(seen.set_name, []).append(seen.id)
            if not mark.reported:
                decisions.renew_marks[seen.id] = replace(mark, reported=True)
                decisions.renew_ineffective.append(
                    RenewIneffective(seen.set_name, seen.id, seen.name, seen.expires, mark.at))
    if not due(mark, seen, now, context.options):
        return
    refused = context.memory.renew_failures.get(seen.id)
    if refused is not None and now - refused < RENEW_RETRY:
        return
    decisions.renews.append(Renew(seen.set_name, seen.id, seen.name, seen.expires))


def lifetime(mark: RenewMark | None, seen: Listed, options: PlanOptions) -> float:
    """The session's lifetime: learnt from a renew, else its start to its expiry, else the flag."""
    learnt = mark.lifetime if mark is not None else None
    if learnt is None and seen.expires is not None and math.isfinite(seen.started) and seen.expires > seen.started:
        learnt = seen.expires - seen.started
    return max(learnt if learnt is not None else options.session_expiry, MIN_LIFETIME)


def due(mark: RenewMark | None, seen: Listed, now: float, options: PlanOptions) -> bool:
    """Whether ``seen`` (Running, with an expiry) is to be renewed now, given its last renew ``mark``."""
    assert seen.expires is not None
    life = lifetime(mark, seen, options)
    if seen.expires - now >= options.renew_when_remaining * life:
        return False
    if mark is None:
        return True
    if now - mark.at < life / 4:  # the hard bound: one renew per quarter of the lifetime
        return False
    return mark.outcome != "unchanged" or now - mark.at >= RENEW_INEFFECTIVE_RETRY


def _observe(mark: RenewMark | None, expires: float) -> RenewMark | None:
    """What a list showing ``expires`` says about the last renew: it moved the expiry, or did not."""
    if mark is None or mark.outcome == "moved":
        return mark
    if expires == mark.before:
        return mark if mark.outcome == "unchanged" else replace(mark, outcome="unchanged")
    produced = expires - mark.at
    return replace(mark, outcome="moved", reported=False,
                   lifetime=produced if produced > 0 and math.isfinite(produced) else mark.lifetime)
