"""The pure core's decisions: ``plan(desired, observed, memory, now)`` and what it decides with.

- ``memory``: what the controller remembers between passes (expectations, back-offs, trust);
- ``actions``: what a plan holds (``Create``, ``Destroy``, ``Renew``, per-set ``SetStatus``) and its knobs;
- ``capacity``: the platform's free capacity and what a session takes of it;
- ``conditions``: Kubernetes-style conditions of a set;
- ``planner``: the planner itself, and its list of rules; each rule has its own module: ``listing``
  (the list sorted by set and slot), ``trust``, ``expectations``, ``slots``, ``restarts``, ``rollout``,
  ``admission``, ``renew``, with ``context`` (a run's state) and ``sets``/``status`` (one set's plan
  and status).
"""

from __future__ import annotations

from controller.plan.actions import (
    CRASH_LOOP_ENDS,
    CRASH_LOOP_WINDOW,
    DESTRUCTIVE_SETTLE,
    EMPTY_LIST_WINDOW,
    EXPECTATION_TTL,
    MAX_CREATES_PER_PASS,
    PENDING_LIMIT,
    PROGRESS_DEADLINE,
    RENEW_WHEN_REMAINING,
    RESTART_BACKOFF_BASE,
    RESTART_BACKOFF_CAP,
    RESTART_RESET_AFTER,
    SESSION_EXPIRY,
    TERMINATING_LIMIT,
    UNCERTAIN_MIN_LISTS,
    UNCERTAIN_WINDOW,
    Create,
    Destroy,
    DestroyReason,
    PendingChange,
    Plan,
    PlanOptions,
    Renew,
    SetStatus,
    Stuck,
    Unschedulable,
    restart_delay,
    spec_key,
)
from controller.plan.capacity import Capacity
from controller.plan.conditions import CONDITION_TYPES, Condition, ConditionType
from controller.plan.memory import (
    ConditionMark,
    CreateBackoff,
    ExpectedCreate,
    Memory,
    SeenSession,
    SetNotes,
    SlotHistory,
    SlotKey,
)
from controller.plan.planner import plan

__all__ = [
    "CONDITION_TYPES",
    "CRASH_LOOP_ENDS",
    "CRASH_LOOP_WINDOW",
    "DESTRUCTIVE_SETTLE",
    "EMPTY_LIST_WINDOW",
    "EXPECTATION_TTL",
    "MAX_CREATES_PER_PASS",
    "PENDING_LIMIT",
    "PROGRESS_DEADLINE",
    "RENEW_WHEN_REMAINING",
    "RESTART_BACKOFF_BASE",
    "RESTART_BACKOFF_CAP",
    "RESTART_RESET_AFTER",
    "SESSION_EXPIRY",
    "TERMINATING_LIMIT",
    "UNCERTAIN_MIN_LISTS",
    "UNCERTAIN_WINDOW",
    "Capacity",
    "Condition",
    "ConditionMark",
    "ConditionType",
    "Create",
    "CreateBackoff",
    "Destroy",
    "DestroyReason",
    "ExpectedCreate",
    "Memory",
    "PendingChange",
    "Plan",
    "PlanOptions",
    "Renew",
    "SeenSession",
    "SetNotes",
    "SetStatus",
    "SlotHistory",
    "SlotKey",
    "Stuck",
    "Unschedulable",
    "plan",
    "restart_delay",
    "spec_key",
]
