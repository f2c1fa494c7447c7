"""What the controller tells the outside world: metrics, health endpoints, logs and audit events.

The daemon calls plain-data methods (``ControllerMetrics.created(set)``,
``HealthState.pass_completed()``, ``AuditLog.event(...)``); this package never calls the
session service, so a scrape or a probe cannot touch the API.
"""

from __future__ import annotations

from controller.observability.audit import (
    ENDED,
    FAILED_CREATE,
    FAILED_DESTROY,
    PRUNED,
    REASONS,
    SUCCESSFUL_CREATE,
    SUCCESSFUL_DESTROY,
    AuditLog,
    AuditReason,
    evidence,
)
from controller.observability.health import HealthState, MetricsServer, serve
from controller.observability.logs import SecretRedactor, configure_logging, register_secret
from controller.observability.metrics import (
    CREATE_FAILURE_REASONS,
    DESTROY_REASONS,
    RECONCILE_RESULTS,
    ControllerMetrics,
    failure_reason,
)

__all__ = [
    "CREATE_FAILURE_REASONS",
    "DESTROY_REASONS",
    "ENDED",
    "FAILED_CREATE",
    "FAILED_DESTROY",
    "PRUNED",
    "REASONS",
    "RECONCILE_RESULTS",
    "SUCCESSFUL_CREATE",
    "SUCCESSFUL_DESTROY",
    "AuditLog",
    "AuditReason",
    "ControllerMetrics",
    "HealthState",
    "MetricsServer",
    "SecretRedactor",
    "configure_logging",
    "evidence",
    "failure_reason",
    "register_secret",
    "serve",
]
