"""The pure core's decisions: ``plan(desired, observed, memory, now)`` and what it decides with.

- ``memory``: what the controller remembers between passes (expectations, back-offs, trust);
- ``planner``: the planner itself, its actions (``Create``, ``Destroy``) and per-set ``SetStatus``.
"""

from __future__ import annotations

from controller.plan.memory import CreateBackoff, ExpectedCreate, Memory, SeenSession, SlotHistory, SlotKey
from controller.plan.planner import (
    EMPTY_LIST_WINDOW,
    EXPECTATION_TTL,
    MAX_CREATES_PER_PASS,
    RESTART_RESET_AFTER,
    UNCERTAIN_MIN_LISTS,
    UNCERTAIN_WINDOW,
    Create,
    Destroy,
    DestroyReason,
    Plan,
    PlanOptions,
    SetStatus,
    plan,
    restart_delay,
    spec_key,
)

__all__ = [
    "EMPTY_LIST_WINDOW",
    "EXPECTATION_TTL",
    "MAX_CREATES_PER_PASS",
    "RESTART_RESET_AFTER",
    "UNCERTAIN_MIN_LISTS",
    "UNCERTAIN_WINDOW",
    "Create",
    "CreateBackoff",
    "Destroy",
    "DestroyReason",
    "ExpectedCreate",
    "Memory",
    "Plan",
    "PlanOptions",
    "SeenSession",
    "SetStatus",
    "SlotHistory",
    "SlotKey",
    "plan",
    "restart_delay",
    "spec_key",
]
