"""The rule *Renewal*: interactive sessions are renewed before they expire.

A renew the service refused is retried after ``RENEW_RETRY``; it never becomes a destroy.
"""

from __future__ import annotations

from controller.plan.actions import RENEW_RETRY, Renew
from controller.plan.context import Decisions, PassContext
from controller.plan.listing import Listed


def consider_renew(context: PassContext, decisions: Decisions, seen: Listed) -> None:
    """Renew an interactive session once less than the configured part of its lifetime remains."""
    if seen.phase != "Running" or seen.expires is None:
        return
    now, options = context.now, context.options
    if seen.expires - now >= options.renew_when_remaining * options.session_expiry:
        return
    refused = context.memory.renew_failures.get(seen.id)
    if refused is not None and now - refused < RENEW_RETRY:
        return
    decisions.renews.append(Renew(seen.set_name, seen.id, seen.name, seen.expires))
