"""The metric families built at scrape time from what the last pass reported, and their label values.

``ControllerMetrics`` keeps plain data; these functions turn a consistent copy of it into
families, so a set's series appear (at 0) with the set and vanish with it. The label values each
family starts at 0 are defined here, from the planner's own vocabulary where there is one.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from typing import Final, get_args

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from controller.models import Phase, PlatformStats
from controller.plan import CONDITION_TYPES, PENDING_LIMIT, TERMINATING_LIMIT, DestroyReason, SetStatus
from controller.plan.conditions import AUTOSCALE_CONDITIONS
from controller.plan.durations import duration

#: Every status a set's session count is exported for, so ``status="Failed"`` exists at 0.
SESSION_STATUSES: Final[tuple[str, ...]] = get_args(Phase)
#: Why the controller destroys a session (label ``reason`` of ``sessions_destroyed_total``): the
#: planner's own vocabulary, so the two cannot drift apart. Each starts at 0 for every set.
DESTROY_REASONS: Final[tuple[str, ...]] = get_args(DestroyReason)
#: Labels ``failure_reason`` gives to create (and destroy) failures; each starts at 0 for every set.
CREATE_FAILURE_REASONS: Final = (
    "BadRequest", "Unauthorized", "Forbidden", "NotFound", "TooManyRequests", "ServerError",
    "ServiceUnavailable", "Transport", "Unknown",
)
#: The values of a condition's ``status`` label, as Kubernetes writes them.
CONDITION_STATUSES: Final = ("True", "False", "Unknown")


def set_families(sets: Mapping[str, tuple[SetStatus | None, int, Tally[str], Tally[str]]],
                 now: float) -> Iterable[Metric]:
    """Each set's desired count, sessions by status, actions and what holds its creates back."""
    desired = GaugeMetricFamily(
        "canfar_controller_sessionset_desired_replicas", "Replicas a SessionSet asks for.",
        labels=["sessionset"],
    )
    sessions = GaugeMetricFamily(
        "canfar_controller_sessions", "Sessions owned by a SessionSet, by status.",
        labels=["sessionset", "status"],
    )
    suspended = GaugeMetricFamily(
        "canfar_controller_sessionset_suspended", "1 when a SessionSet is suspended.",
        labels=["sessionset"],
    )
    created = CounterMetricFamily(
        "canfar_controller_sessions_created", "Sessions created per SessionSet.", labels=["sessionset"],
    )
    destroyed = CounterMetricFamily(
        "canfar_controller_sessions_destroyed", "Sessions destroyed per SessionSet, by reason.",
        labels=["sessionset", "reason"],
    )
    failures = CounterMetricFamily(
        "canfar_controller_create_failures",
        "Failed or uncertain session creates per SessionSet, by reason.",
        labels=["sessionset", "reason"],
    )
    backoff = GaugeMetricFamily(
        "canfar_controller_sessionset_backoff_seconds",
        "Seconds until a SessionSet may create again after the service refused a create (0: none).",
        labels=["sessionset"],
    )
    uncertain = GaugeMetricFamily(
        "canfar_controller_sessionset_uncertain_creates",
        "Creates of a SessionSet whose outcome is unknown; each blocks its slot until a list settles it.",
        labels=["sessionset"],
    )
    held = GaugeMetricFamily(
        "canfar_controller_sessionset_held_slots",
        "Slots whose session one list left out: refilled only if a second list confirms it is gone.",
        labels=["sessionset"],
    )
    for name, (snapshot, n_created, n_destroyed, n_failures) in sets.items():
        if snapshot is not None:
            desired.add_metric([name], snapshot.desired or 0)
            suspended.add_metric([name], 1 if snapshot.suspended else 0)
            until = snapshot.backoff_until
            backoff.add_metric([name], max(0.0, until - now) if until is not None else 0.0)
            uncertain.add_metric([name], snapshot.uncertain)
            held.add_metric([name], snapshot.held)
            counts = snapshot.counts()
            for status in with_defaults(SESSION_STATUSES, counts):
                sessions.add_metric([name, status], counts.get(status, 0))
        created.add_metric([name], n_created)
        for reason in with_defaults(DESTROY_REASONS, n_destroyed):
            destroyed.add_metric([name, reason], n_destroyed[reason])
        for reason in with_defaults(CREATE_FAILURE_REASONS, n_failures):
            failures.add_metric([name, reason], n_failures[reason])
    yield from (desired, sessions, suspended, created, destroyed, failures, backoff, uncertain, held)


#: PlatformStats attribute -> help text; the metric is ``canfar_platform_<attribute>``.
_PLATFORM_FIGURES = (
    ("cpu_cores_requested", "CPU cores requested by all sessions on the platform."),
    ("cpu_cores_available", "CPU cores the platform has for sessions."),
    ("ram_requested_bytes", "RAM requested by all sessions on the platform."),
    ("ram_available_bytes", "RAM the platform has for sessions."),
    ("session_max_cpu_cores", "Most CPU cores one session may request."),
    ("session_max_ram_bytes", "Most RAM one session may request."),
)


def platform_families(stats: PlatformStats | None, success: float) -> Iterable[Metric]:
    """Platform gauges; a figure the service did not send (or no stats yet) is left out, not 0."""
    for attribute, documentation in _PLATFORM_FIGURES:
        value = None if stats is None else getattr(stats, attribute)
        if value is not None:
            yield GaugeMetricFamily(f"canfar_platform_{attribute}", documentation, value=value)
    yield GaugeMetricFamily(
        "canfar_platform_stats_last_success_timestamp_seconds",
        "Unix time of the last successful view=stats call (0: none yet).", value=success,
    )


def lifecycle_families(snapshots: Mapping[str, SetStatus | None], renewals: Mapping[str, tuple[int, int]],
                       destroy_failures: Mapping[str, Tally[str]] | None = None) -> Iterable[Metric]:
    """Conditions, renewals, deadlines, unschedulable and stuck sessions, failing destroys per set."""
    condition = GaugeMetricFamily(
        "canfar_controller_sessionset_condition",
        "1 for the status each condition of a SessionSet has (True, False or Unknown), 0 for the others.",
        labels=["sessionset", "condition", "status"],
    )
    # The reason is a series of its own, as kube-state-metrics does for container waiting reasons:
    # as a label of the series above it would make a new series (and end the old one) whenever it
    # changes. Alerts need it to tell apart, say, a stalled rollout (ProgressDeadlineExceeded) from
    # an idle set, both of which are Progressing=False. The vocabulary is the planner's, and bounded.
    reason = GaugeMetricFamily(
        "canfar_controller_sessionset_condition_reason",
        "1 for the reason each condition of a SessionSet has now; one series per set and condition.",
        labels=["sessionset", "condition", "reason"],
    )
    expiry = GaugeMetricFamily(
        "canfar_controller_sessionset_next_expiry_timestamp_seconds",
        "Unix time the first live session of a SessionSet reaches its deadline (renewed or not).",
        labels=["sessionset"],
    )
    unschedulable = GaugeMetricFamily(
        "canfar_controller_sessionset_unschedulable_sessions",
        f"Sessions of a SessionSet Pending for longer than the limit ({duration(PENDING_LIMIT)} by default).",
        labels=["sessionset"],
    )
    stuck = GaugeMetricFamily(
        "canfar_controller_sessionset_stuck_sessions",
        f"Sessions of a SessionSet Terminating or Unknown for longer than the limit ({duration(TERMINATING_LIMIT)} "
        "by default).",
        labels=["sessionset"],
    )
    failing = GaugeMetricFamily(
        "canfar_controller_sessionset_failing_destroys",
        "Sessions a SessionSet wants gone whose destroy fails or is ignored (DestroyFailing); each is retried "
        "with back-off.",
        labels=["sessionset"],
    )
    destroy_failed = CounterMetricFamily(
        "canfar_controller_destroy_failures", "Failed session destroys per SessionSet, by reason (404 is not one).",
        labels=["sessionset", "reason"],
    )
    renewed = CounterMetricFamily(
        "canfar_controller_sessions_renewed", "Interactive sessions renewed before their expiry, per SessionSet.",
        labels=["sessionset"],
    )
    renew_failures = CounterMetricFamily(
        "canfar_controller_renew_failures", "Renews the service refused, per SessionSet.", labels=["sessionset"],
    )
    for name, snapshot in snapshots.items():
        if snapshot is not None:
            by_type = {c.type: c for c in snapshot.conditions}
            for kind in CONDITION_TYPES:
                found = by_type.get(kind)
                if found is None and kind in AUTOSCALE_CONDITIONS:
                    continue  # only autoscaled sets have them
                for value in CONDITION_STATUSES:
                    condition.add_metric([name, kind, value], 1 if found is not None and found.status == value else 0)
                if found is not None:
                    reason.add_metric([name, kind, found.reason], 1)
            if snapshot.next_expiry is not None:
                expiry.add_metric([name], snapshot.next_expiry)
            unschedulable.add_metric([name], snapshot.unschedulable)
            stuck.add_metric([name], snapshot.stuck)
            failing.add_metric([name], snapshot.destroy_failing)
        failures = (destroy_failures or {}).get(name, Tally())
        for label in with_defaults(CREATE_FAILURE_REASONS, failures):
            destroy_failed.add_metric([name, label], failures[label])
        n_renewed, n_failed = renewals.get(name, (0, 0))
        renewed.add_metric([name], n_renewed)
        renew_failures.add_metric([name], n_failed)
    yield from (condition, reason, expiry, unschedulable, stuck, failing, destroy_failed, renewed, renew_failures)


def ownership_families(unmanaged: Mapping[str, int], foreign: Mapping[str, int]) -> Iterable[Metric]:
    """The rules *Inventory* and *Second writer*: sessions with our prefix that are not ours."""
    sessions = GaugeMetricFamily(
        "canfar_controller_unmanaged_sessions",
        "Sessions with this controller's prefix of a set it never managed: left alone (prune removes leftovers).",
        labels=["set"],
    )
    for name, count in sorted(unmanaged.items()):
        sessions.add_metric([name], count)
    writers = GaugeMetricFamily(
        "canfar_controller_second_writer_sessions",
        "Live sessions of a managed SessionSet that this controller neither created nor adopted (Conflict, "
        "SecondWriter): nothing is created or destroyed in the set while any remain.",
        labels=["sessionset"],
    )
    for name, count in sorted(foreign.items()):
        writers.add_metric([name], count)
    yield from (sessions, writers)


def with_defaults(defaults: Iterable[str], present: Iterable[str]) -> list[str]:
    """The default label values followed by any others that occurred, without duplicates."""
    return list(dict.fromkeys([*defaults, *present]))
