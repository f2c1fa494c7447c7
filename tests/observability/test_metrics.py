"""ControllerMetrics: names, values and the lifecycle of labelled series, read from a fresh registry."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    TransportError,
)
from controller.models import PlatformStats
from controller.observability.metrics import (
    CONDITION_STATUSES,
    CREATE_FAILURE_REASONS,
    DESTROY_REASONS,
    SESSION_STATUSES,
    ControllerMetrics,
    failure_reason,
)
from controller.plan import CONDITION_TYPES
from tests.observability.conftest import STATS_WIRE, FakeClock, set_status

GiB = 2**30


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def series_of(registry: CollectorRegistry, sessionset: str) -> list[str]:
    """Every sample carrying ``sessionset=<name>``."""
    return [
        sample.name
        for family in registry.collect()
        for sample in family.samples
        if sample.labels.get("sessionset") == sessionset
    ]


def test_build_info_carries_the_version(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """The build-info series is 1 with the version as a label."""
    assert value(registry, "canfar_controller_build_info", version="9.9.9") == 1.0


def test_default_registry_is_private() -> None:
    """Without a registry argument each instance gets its own, so two never collide."""
    first, second = ControllerMetrics(), ControllerMetrics()
    assert first.registry is not second.registry


@pytest.mark.parametrize("result", ["success", "partial", "error"])
def test_reconcile_results_start_at_zero(
    metrics: ControllerMetrics,
    registry: CollectorRegistry,
    result: str,
) -> None:
    """Every reconcile result exists at 0 before the first pass, so rate() works from the start."""
    assert value(registry, "canfar_controller_reconcile_total", result=result) == 0.0


def test_platform_figures_absent_before_first_stats(
    metrics: ControllerMetrics, registry: CollectorRegistry
) -> None:
    """No stats yet: the capacity gauges are missing rather than a misleading 0; the timestamp is 0."""
    assert value(registry, "canfar_platform_cpu_cores_available") is None
    assert value(registry, "canfar_platform_stats_last_success_timestamp_seconds") == 0.0
    for reason in ("ServerError", "Transport", "NotANumber", "ZeroCapacity"):
        assert value(registry, "canfar_platform_stats_failures_total", reason=reason) == 0.0


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(
            STATS_WIRE,
            {
                "canfar_platform_cpu_cores_requested": 12.0,
                "canfar_platform_cpu_cores_available": 64.0,
                "canfar_platform_ram_requested_bytes": 48e9,
                "canfar_platform_ram_available_bytes": 256e9,
                "canfar_platform_session_max_cpu_cores": 8.0,
                "canfar_platform_session_max_ram_bytes": 32 * GiB,
            },
            id="current-shape-G-and-Gi",
        ),
        pytest.param(
            {
                "cores": {
                    "requestedCPUCores": "3.5",
                    "cpuCoresAvailable": 16,
                    "maxCPUCores": {"cpuCores": 4.0, "withRam": "8Gi"},
                },
                "ram": {
                    "requestedRAM": "1500M",
                    "ramAvailable": "64Gi",
                    "maxRAM": {"ram": "16G", "withCPUCores": 4.0},
                },
            },
            {
                "canfar_platform_cpu_cores_requested": 3.5,
                "canfar_platform_cpu_cores_available": 16.0,
                "canfar_platform_ram_requested_bytes": 1.5e9,
                "canfar_platform_ram_available_bytes": 64 * GiB,
                "canfar_platform_session_max_cpu_cores": 4.0,
                "canfar_platform_session_max_ram_bytes": 16e9,
            },
            id="M-Gi-and-numeric-strings",
        ),
        pytest.param(
            {
                "cores": {"requestedCPUCores": 0, "cpuCoresAvailable": 8},
                "ram": {"requestedRAM": 0, "ramAvailable": 34359738368},
            },
            {
                "canfar_platform_cpu_cores_requested": 0.0,
                "canfar_platform_cpu_cores_available": 8.0,
                "canfar_platform_ram_requested_bytes": 0.0,
                "canfar_platform_ram_available_bytes": 32 * GiB,
            },
            id="bare-numbers-are-bytes",
        ),
        pytest.param(
            {
                "instances": {"session": 1, "desktopApp": 0, "headless": 3, "total": 4},
                "cores": {"coresInUse": 6, "coresAvailable": 96, "maxCores": {"cores": 16, "withRam": "64G"}},
                "ram": {"maxRAM": {"ram": "128G", "withCores": 16}},
            },
            {
                "canfar_platform_cpu_cores_requested": 6.0,
                "canfar_platform_cpu_cores_available": 96.0,
                "canfar_platform_session_max_cpu_cores": 16.0,
                "canfar_platform_session_max_ram_bytes": 128e9,
            },
            id="2022-shape",
        ),
    ],
)
def test_platform_stats_in_base_units(
    metrics: ControllerMetrics,
    registry: CollectorRegistry,
    wire: dict[str, Any],
    expected: dict[str, float],
) -> None:
    """Every unit form and both stats shapes end up as cores and bytes."""
    metrics.record_stats(PlatformStats.from_wire(wire), 1_700_000_000.0)
    assert {name: value(registry, name) for name in expected} == pytest.approx(expected)
    assert value(registry, "canfar_platform_stats_last_success_timestamp_seconds") == 1_700_000_000.0


def test_missing_stats_figure_is_left_out(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A figure the service did not send is absent, not exported as 0 (the 2022 shape has no RAM use)."""
    metrics.record_stats(PlatformStats.from_wire({"cores": {"coresInUse": 1, "coresAvailable": 2}}), 5.0)
    assert value(registry, "canfar_platform_ram_available_bytes") is None


def test_failed_stats_keep_last_values(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A failed stats call is counted and leaves the last good figures and their timestamp alone."""
    metrics.record_stats(PlatformStats.from_wire(STATS_WIRE), 1_700_000_000.0)
    metrics.stats_failed("ServerError")
    metrics.stats_failed("NotANumber")
    metrics.stats_failed("NotANumber")
    assert value(registry, "canfar_platform_stats_failures_total", reason="ServerError") == 1.0
    assert value(registry, "canfar_platform_stats_failures_total", reason="NotANumber") == 2.0
    assert value(registry, "canfar_platform_cpu_cores_available") == 64.0
    assert value(registry, "canfar_platform_stats_last_success_timestamp_seconds") == 1_700_000_000.0


def test_new_set_series_start_at_zero(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A set that appears gets all its series at once, counters and unseen statuses at 0."""
    metrics.sync_sets({"workers": set_status(desired=2, counts={"Running": 1})})
    assert value(registry, "canfar_controller_sessionset_desired_replicas", sessionset="workers") == 2.0
    assert value(registry, "canfar_controller_sessionset_suspended", sessionset="workers") == 0.0
    assert {
        s: value(registry, "canfar_controller_sessions", sessionset="workers", status=s)
        for s in SESSION_STATUSES
    } == {s: 1.0 if s == "Running" else 0.0 for s in SESSION_STATUSES}
    assert value(registry, "canfar_controller_sessions_created_total", sessionset="workers") == 0.0
    assert all(
        value(registry, "canfar_controller_sessions_destroyed_total", sessionset="workers", reason=r) == 0.0
        for r in DESTROY_REASONS
    )
    assert all(
        value(registry, "canfar_controller_create_failures_total", sessionset="workers", reason=r) == 0.0
        for r in CREATE_FAILURE_REASONS
    )


def test_removed_set_loses_all_series(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A set missing from the next sync has no series left; the other sets keep theirs."""
    metrics.sync_sets({"gone": set_status(desired=1), "kept": set_status(desired=1)})
    metrics.created("gone")
    metrics.destroyed("gone", "scaled-down")
    metrics.create_failed("gone", "Transport")
    metrics.sync_sets({"kept": set_status(desired=1)})
    assert series_of(registry, "gone") == []
    assert series_of(registry, "kept") != []


def test_reappearing_set_restarts_at_zero(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A set removed and added again starts its counters afresh (a counter reset, as rate() expects)."""
    metrics.sync_sets({"workers": set_status(desired=1)})
    metrics.created("workers")
    metrics.sync_sets({})
    metrics.sync_sets({"workers": set_status(desired=1)})
    assert value(registry, "canfar_controller_sessions_created_total", sessionset="workers") == 0.0


def test_action_counters_count(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """Creates, destroys and create failures add up per set and reason."""
    metrics.sync_sets({"workers": set_status(desired=3)})
    metrics.created("workers")
    metrics.created("workers")
    metrics.destroyed("workers", "ended")
    metrics.create_failed("workers", "BadRequest")
    assert value(registry, "canfar_controller_sessions_created_total", sessionset="workers") == 2.0
    assert (
        value(registry, "canfar_controller_sessions_destroyed_total", sessionset="workers", reason="ended")
        == 1.0
    )
    assert (
        value(registry, "canfar_controller_create_failures_total", sessionset="workers", reason="BadRequest")
        == 1.0
    )


def test_unlisted_reason_gets_its_own_series(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A reason outside the defaults is still counted, next to the defaults."""
    metrics.sync_sets({"workers": set_status(desired=1)})
    metrics.destroyed("workers", "manual")
    assert (
        value(registry, "canfar_controller_sessions_destroyed_total", sessionset="workers", reason="manual")
        == 1.0
    )


def test_action_before_sync_is_kept(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A create recorded before the pass syncs the sets (the first pass) is not lost."""
    metrics.created("workers")
    metrics.sync_sets({"workers": set_status(desired=1, counts={"Pending": 1})})
    assert value(registry, "canfar_controller_sessions_created_total", sessionset="workers") == 1.0


def test_suspended_set(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A suspended set reports 1 in the suspended gauge."""
    metrics.sync_sets({"paused": set_status(desired=0, suspended=True)})
    assert value(registry, "canfar_controller_sessionset_suspended", sessionset="paused") == 1.0


@pytest.mark.parametrize(("status", "code"), [(200, "200"), (503, "503"), (None, "transport")])
def test_api_requests_by_code(
    metrics: ControllerMetrics,
    registry: CollectorRegistry,
    status: int | None,
    code: str,
) -> None:
    """Each HTTP attempt is counted by operation and code, and its duration observed."""
    metrics.observe_api("create", status, 0.2)
    assert value(registry, "canfar_controller_api_requests_total", operation="create", code=code) == 1.0
    assert value(registry, "canfar_controller_api_request_duration_seconds_count", operation="create") == 1.0
    assert (
        value(
            registry, "canfar_controller_api_request_duration_seconds_bucket", operation="create", le="0.25"
        )
        == 1.0
    )


@pytest.mark.parametrize(("result", "timestamp"), [("success", 50.0), ("partial", 50.0), ("error", 0.0)])
def test_reconcile_done(
    metrics: ControllerMetrics,
    registry: CollectorRegistry,
    result: str,
    timestamp: float,
) -> None:
    """A pass is counted and timed; only a pass that listed the sessions moves the success timestamp."""
    metrics.reconcile_done(result, 0.3, 50.0)
    assert value(registry, "canfar_controller_reconcile_total", result=result) == 1.0
    assert value(registry, "canfar_controller_reconcile_duration_seconds_sum") == pytest.approx(0.3)
    assert value(registry, "canfar_controller_last_reconcile_success_timestamp_seconds") == timestamp


def test_manifest_errors_are_replaced(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """Each report replaces the last: a fixed file's series disappears."""
    metrics.manifest_errors({"a.yaml": 2, "b.yaml": 1})
    metrics.manifest_errors({"b.yaml": 3})
    assert value(registry, "canfar_controller_manifest_errors", file="a.yaml") is None
    assert value(registry, "canfar_controller_manifest_errors", file="b.yaml") == 3.0


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (BadRequestError("create", status=400), "BadRequest"),
        (ClientError("create", status=409), "BadRequest"),
        (AuthenticationError("create", status=401), "Unauthorized"),
        (PermissionDeniedError("create", status=403), "Forbidden"),
        (NotFoundError("create", status=404), "NotFound"),
        (TooManyRequestsError("create", status=429), "TooManyRequests"),
        (ServerError("create", status=500), "ServerError"),
        (ServiceUnavailableError("create", status=503), "ServiceUnavailable"),
        (TransportError("create"), "Transport"),
        (APIError("create", status=302), "Unknown"),
        (RuntimeError("boom"), "Unknown"),
    ],
)
def test_failure_reason(error: BaseException, reason: str) -> None:
    """Errors map to a short bounded label, never to the server's free text."""
    assert failure_reason(error) == reason
    assert reason in CREATE_FAILURE_REASONS


# -- the lifecycle of a set: conditions, back-off, renewals, deadlines ----------------------------


def test_each_condition_has_one_series_per_status(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """Every condition of a set is exported for True, False and Unknown: 1 for its status, 0 for the others."""
    metrics.sync_sets({"batch": set_status(desired=2, conditions={"Complete": "True", "WaitingForCapacity": "Unknown"})})
    exported = {
        (kind, status): value(registry, "canfar_controller_sessionset_condition", sessionset="batch",
                              condition=kind, status=status)
        for kind in CONDITION_TYPES
        for status in CONDITION_STATUSES
    }
    assert {key: v for key, v in exported.items() if v} == {
        ("Complete", "True"): 1.0, ("WaitingForCapacity", "Unknown"): 1.0,
    }
    assert set(CONDITION_TYPES) == {"Ready", "Progressing", "Complete", "CrashLooping", "CreateFailing",
                                    "DestroyFailing", "WaitingForCapacity", "Stuck", "Invalid", "Suspended",
                                    "ScalingActive", "ScalingLimited", "RenewIneffective",
                                    "Conflict"}
    # Only autoscaled sets have the scaling conditions: a fixed set exports no series for them.
    assert exported[("ScalingActive", "False")] is None


def test_condition_reason_is_one_series_per_condition(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """The reason is a 1-valued series of its own; when it changes, the old reason's series is gone."""
    stalled = {"Progressing": "ProgressDeadlineExceeded", "Ready": "NotAllRunning"}
    metrics.sync_sets({"workers": set_status(desired=3, conditions={"Progressing": "False"}, reasons=stalled)})
    name = "canfar_controller_sessionset_condition_reason"
    assert value(registry, name, sessionset="workers", condition="Progressing", reason="ProgressDeadlineExceeded") == 1.0
    metrics.sync_sets({"workers": set_status(desired=3, reasons={"Progressing": "RollingUpdate"})})
    assert value(registry, name, sessionset="workers", condition="Progressing", reason="ProgressDeadlineExceeded") is None
    assert value(registry, name, sessionset="workers", condition="Progressing", reason="RollingUpdate") == 1.0
    assert value(registry, name, sessionset="workers", condition="Ready", reason="NotAllRunning") is None


def test_backoff_is_seconds_left_at_scrape_time(registry: CollectorRegistry, clock: FakeClock) -> None:
    """The back-off gauge counts down with the clock and rests at 0 once the back-off is over."""
    metrics = ControllerMetrics(registry, clock=clock)
    metrics.sync_sets({"bad": set_status(desired=1, backoff_until=clock.now + 40), "ok": set_status(desired=1)})
    assert value(registry, "canfar_controller_sessionset_backoff_seconds", sessionset="bad") == 40.0
    assert value(registry, "canfar_controller_sessionset_backoff_seconds", sessionset="ok") == 0.0
    clock.advance(30)
    assert value(registry, "canfar_controller_sessionset_backoff_seconds", sessionset="bad") == 10.0
    clock.advance(30)
    assert value(registry, "canfar_controller_sessionset_backoff_seconds", sessionset="bad") == 0.0


def test_uncertain_creates_held_slots_and_unschedulable_sessions(
    metrics: ControllerMetrics, registry: CollectorRegistry
) -> None:
    """The per-set gauges of doubt: uncertain creates, held slots, sessions Pending too long."""
    metrics.sync_sets({"workers": set_status(desired=4, uncertain=2, held=1, unschedulable=3)})
    assert value(registry, "canfar_controller_sessionset_uncertain_creates", sessionset="workers") == 2.0
    assert value(registry, "canfar_controller_sessionset_held_slots", sessionset="workers") == 1.0
    assert value(registry, "canfar_controller_sessionset_unschedulable_sessions", sessionset="workers") == 3.0


def test_next_expiry_only_when_a_session_has_a_deadline(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """The soonest deadline is exported as a timestamp; a set with no live session has no series, not 0."""
    metrics.sync_sets({"notebook": set_status(desired=1, next_expiry=1_700_345_600.0), "empty": set_status(desired=0)})
    name = "canfar_controller_sessionset_next_expiry_timestamp_seconds"
    assert value(registry, name, sessionset="notebook") == 1_700_345_600.0
    assert value(registry, name, sessionset="empty") is None


def test_renewals_and_refusals_are_counted_per_set(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """Both renewal counters start at 0 with the set and count separately."""
    metrics.sync_sets({"notebook": set_status(desired=1)})
    assert value(registry, "canfar_controller_sessions_renewed_total", sessionset="notebook") == 0.0
    assert value(registry, "canfar_controller_renew_failures_total", sessionset="notebook") == 0.0
    metrics.renewed("notebook", 2)
    metrics.renew_failed("notebook")
    assert value(registry, "canfar_controller_sessions_renewed_total", sessionset="notebook") == 2.0
    assert value(registry, "canfar_controller_renew_failures_total", sessionset="notebook") == 1.0


def test_suspect_lists_are_counted(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """The suspect-list counter exists at 0 from the start and counts each distrusted answer."""
    assert value(registry, "canfar_controller_suspect_lists_total") == 0.0
    metrics.suspect_list()
    assert value(registry, "canfar_controller_suspect_lists_total") == 1.0


def test_autoscale_series_follow_the_sets(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """Signal values, the recommendation and failed reads per signal; a removed set's series go with it."""
    from controller.observability.autoscale import AutoscaleSnapshot

    metrics.autoscale.sync({"queue": AutoscaleSnapshot({"file /q": 40.0, "platform": None}, 8)}, count_failures=True)
    metrics.autoscale.sync({"queue": AutoscaleSnapshot({"file /q": 45.0, "platform": None}, 9)}, count_failures=True)
    metrics.autoscale.sync({"queue": AutoscaleSnapshot({"file /q": 45.0, "platform": None}, 9)}, count_failures=False)
    labels = {"sessionset": "queue"}
    assert value(registry, "canfar_controller_autoscale_signal_value", **labels, signal="file /q") == 45.0
    assert value(registry, "canfar_controller_autoscale_signal_value", **labels, signal="platform") is None
    assert value(registry, "canfar_controller_autoscale_recommended_replicas", **labels) == 9
    assert value(registry, "canfar_controller_autoscale_signal_failures_total", **labels, signal="platform") == 2
    assert value(registry, "canfar_controller_autoscale_signal_failures_total", **labels, signal="file /q") == 0
    metrics.autoscale.sync({}, count_failures=True)
    assert "queue" not in str([s for f in registry.collect() for s in f.samples if "autoscale" in s.name])


def test_unmanaged_and_second_writer_sessions_are_replaced_each_pass(
        metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """Sessions with our prefix that are not ours: per unmanaged set (label ``set``), and per managed set
    another writer uses; a set that no longer has any loses its series."""
    metrics.ownership({"beta": 2, "gamma": 1}, {"alpha": 3})
    assert value(registry, "canfar_controller_unmanaged_sessions", set="beta") == 2
    assert value(registry, "canfar_controller_second_writer_sessions", sessionset="alpha") == 3
    metrics.ownership({"gamma": 1}, {})
    assert value(registry, "canfar_controller_unmanaged_sessions", set="beta") is None
    assert value(registry, "canfar_controller_second_writer_sessions", sessionset="alpha") is None
