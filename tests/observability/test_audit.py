"""AuditLog: one event per create/destroy/failure, Kubernetes-style reasons, no repeated noise."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.models import Event
from controller.observability.audit import REASONS, AuditLog, evidence
from tests.observability.conftest import FakeClock


@pytest.fixture
def audit(clock: FakeClock) -> AuditLog:
    return AuditLog(repeat_after=600.0, clock=clock)


def record(audit: AuditLog, *events: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    with capture_logs() as logs:
        for reason, fields in events:
            audit.event(reason, **fields)  # type: ignore[arg-type]
    return logs


QUOTA = {"sessionset": "workers", "message": "create failed (HTTP 400): quota reached"}


@pytest.mark.parametrize(
    ("reason", "level", "kind"),
    [
        ("SuccessfulCreate", "info", "Normal"),
        ("FailedCreate", "warning", "Warning"),
        ("SuccessfulDestroy", "info", "Normal"),
        ("FailedDestroy", "warning", "Warning"),
        ("Pruned", "info", "Normal"),
        ("Ended", "info", "Normal"),
    ],
)
def test_audit_event_shape(audit: AuditLog, reason: str, level: str, kind: str) -> None:
    """Each audit event is named 'audit' and carries its reason, type, set and fields."""
    [entry] = record(audit, (reason, {"sessionset": "workers", "session_id": "abc12345"}))
    assert entry == {
        "event": "audit",
        "log_level": level,
        "reason": reason,
        "type": kind,
        "sessionset": "workers",
        "message": "",
        "session_id": "abc12345",
    }


def test_ended_in_failure_is_a_warning(audit: AuditLog) -> None:
    """A session that ended Failed is a Warning event, so evidence is easy to find."""
    [entry] = record(audit, ("Ended", {"sessionset": "workers", "phase": "Failed"}))
    assert (entry["log_level"], entry["type"]) == ("warning", "Warning")


def test_identical_failure_is_logged_once(audit: AuditLog) -> None:
    """The same failure pass after pass is logged the first time only."""
    logs = record(audit, ("FailedCreate", QUOTA), ("FailedCreate", QUOTA), ("FailedCreate", QUOTA))
    assert len(logs) == 1


def test_suppressed_event_returns_false(audit: AuditLog) -> None:
    """The caller learns whether the event was written."""
    with capture_logs():
        assert [audit.event("FailedCreate", **QUOTA), audit.event("FailedCreate", **QUOTA)] == [True, False]


def test_changed_failure_is_logged_again(audit: AuditLog) -> None:
    """A different message for the same set and reason is news."""
    other = {**QUOTA, "message": "create failed (HTTP 500)"}
    assert len(record(audit, ("FailedCreate", QUOTA), ("FailedCreate", other))) == 2


def test_repeat_is_logged_after_the_interval_with_a_count(audit: AuditLog, clock: FakeClock) -> None:
    """After repeat_after seconds the failure is logged again, saying how many were suppressed."""
    with capture_logs() as logs:
        for _ in range(4):
            audit.event("FailedCreate", **QUOTA)
            clock.advance(200.0)
    assert [entry.get("suppressed_repeats") for entry in logs] == [None, 2]


def test_success_rearms_the_failure(audit: AuditLog) -> None:
    """Once the action succeeds, the next identical failure is logged again."""
    logs = record(
        audit,
        ("FailedCreate", QUOTA),
        ("SuccessfulCreate", {"sessionset": "workers"}),
        ("FailedCreate", QUOTA),
    )
    assert [entry["reason"] for entry in logs] == ["FailedCreate", "SuccessfulCreate", "FailedCreate"]


def test_sets_are_independent(audit: AuditLog) -> None:
    """The same failure in another set is its own event."""
    assert (
        len(record(audit, ("FailedCreate", QUOTA), ("FailedCreate", {**QUOTA, "sessionset": "other"}))) == 2
    )


def test_a_failure_about_a_session_is_said_once_per_session_and_error() -> None:
    """A destroy failing for several sessions of a set, retried with back-off: each session's error is said once,
    again when it changes, and after that session's destroy (Pruned) succeeds."""
    audit = AuditLog(repeat_after=3600.0, clock=FakeClock())
    failed = {"sessionset": "workers", "message": "destroy failed (HTTP 500): boom"}
    logs = record(audit, *[("FailedDestroy", {**failed, "subject": sid}) for sid in ("a", "b", "a", "b", "a")],
                  ("FailedDestroy", {**failed, "subject": "a", "message": "destroy failed (no response)"}),
                  ("Pruned", {"sessionset": "workers", "subject": "b"}),
                  ("FailedDestroy", {**failed, "subject": "b"}))
    said = [(entry["reason"], entry["message"]) for entry in logs]
    assert said == [("FailedDestroy", failed["message"])] * 2 + [
        ("FailedDestroy", "destroy failed (no response)"), ("Pruned", ""), ("FailedDestroy", failed["message"])]
    assert "subject" not in logs[0]


def test_forget_rearms_a_removed_set(audit: AuditLog) -> None:
    """Forgetting a set drops its repeat memory."""
    with capture_logs() as logs:
        audit.event("FailedCreate", **QUOTA)
        audit.forget("workers")
        audit.event("FailedCreate", **QUOTA)
    assert len(logs) == 2


def test_successes_are_never_suppressed(audit: AuditLog) -> None:
    """Every create and destroy is recorded, however alike."""
    done = {"sessionset": "workers", "message": "created"}
    assert len(record(audit, *[("SuccessfulCreate", done)] * 3)) == 3


def test_unknown_reason_is_refused(audit: AuditLog) -> None:
    """Only the documented Kubernetes-style reasons exist."""
    with pytest.raises(ValueError, match="Created"):
        audit.event("Created", sessionset="workers")  # type: ignore[arg-type]


def test_bound_logger_context_is_kept(audit: AuditLog) -> None:
    """An event written through the pass's bound logger carries the pass context."""
    import structlog

    with capture_logs() as logs:
        audit.event("SuccessfulCreate", sessionset="workers", log=structlog.get_logger().bind(pass_id="p-7"))
    assert logs[0]["pass_id"] == "p-7"


def test_evidence_keeps_the_log_tail_and_events() -> None:
    """The end of a failed session's log and its events survive, bounded in size."""
    logs = "\n".join(f"line {i}" for i in range(1, 201)) + "\n"
    found = evidence(
        logs, [Event(type="Warning", reason="BackOff", message="restarting", last_time="t")], lines=3
    )
    assert found == {
        "logs_tail": "line 198\nline 199\nline 200",
        "events": [{"type": "Warning", "reason": "BackOff", "message": "restarting", "last_time": "t"}],
    }


def test_evidence_of_nothing() -> None:
    """No logs and no events still make well-formed fields."""
    assert evidence(None) == {"logs_tail": "", "events": []}


def test_reasons_are_kubernetes_style() -> None:
    """The reasons, spelled as Kubernetes spells event reasons (CreateUncertain: a create that may exist)."""
    assert set(REASONS) == {
        "SuccessfulCreate",
        "FailedCreate",
        "CreateUncertain",
        "SuccessfulDestroy",
        "FailedDestroy",
        "Pruned",
        "Ended",
        "Renewed",
        "FailedRenew",
        "Unschedulable",
        "DestroyIgnored",
        "Stuck",
        "RenewIneffective",
    }
