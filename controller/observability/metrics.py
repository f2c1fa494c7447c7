"""Prometheus metrics of the controller: plain-data calls in, an exposition out.

The daemon tells ``ControllerMetrics`` what happened (a pass ended, a session was created, the
stats call failed) and the metrics layer never asks anyone anything: a scrape reads only state
already held here, so it can never call the CANFAR API or block on it.

Two kinds of state live here, following prometheus_client's own split:

- event counters and histograms that are updated as things happen (``reconcile_total``, the
  API request metrics), as ordinary ``Counter``/``Histogram`` objects;
- everything keyed by SessionSet, plus the platform figures and manifest errors, held as plain
  data and turned into metric families inside ``collect()`` at scrape time. A set's series
  therefore appear (at 0) in the pass that first reports the set and vanish in the pass that no
  longer reports it, with no bookkeeping of label combinations to forget.

All methods are thread-safe: the HTTP server scrapes from its own thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller import __version__
from controller.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    ServiceUnavailableError,
    StatsError,
    TooManyRequestsError,
    TransportError,
)
from controller.listanswer import LIST_ANOMALY_KINDS
from controller.models import Phase, PlatformStats
from controller.observability.autoscale import AutoscaleMetrics
from controller.observability.credentials import CredentialMetrics
from controller.observability.utilisation import Utilisation, UtilisationMetrics
from controller.plan import CONDITION_TYPES, PENDING_LIMIT, DestroyReason, SetStatus
from controller.plan.conditions import AUTOSCALE_CONDITIONS
from controller.plan.durations import duration

__all__ = [
    "CONDITION_STATUSES",
    "CREATE_FAILURE_REASONS",
    "DESTROY_REASONS",
    "RECONCILE_RESULTS",
    "SESSION_STATUSES",
    "STATS_FAILURE_REASONS",
    "TRANSPORT_CODE",
    "ControllerMetrics",
    "failure_reason",
]

# No ``_created`` series: they double the exposition and no panel or alert reads them. Global in
# prometheus_client, so it is switched off when the metrics module is first imported.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

#: Every status a set's session count is exported for, so ``status="Failed"`` exists at 0.
SESSION_STATUSES: Final[tuple[str, ...]] = get_args(Phase)
#: Outcomes of a reconcile pass; each starts at 0 so ``rate()`` works before the first failure.
RECONCILE_RESULTS: Final = ("success", "partial", "error")
#: Why the controller destroys a session (label ``reason`` of ``sessions_destroyed_total``): the
#: planner's own vocabulary, so the two cannot drift apart. Each starts at 0 for every set.
DESTROY_REASONS: Final[tuple[str, ...]] = get_args(DestroyReason)
#: Labels ``failure_reason`` gives to create failures; each starts at 0 for every set.
CREATE_FAILURE_REASONS: Final = (
    "BadRequest", "Unauthorized", "Forbidden", "NotFound", "TooManyRequests", "ServerError",
    "ServiceUnavailable", "Transport", "Unknown",
)
#: Labels of ``canfar_platform_stats_failures_total``: a failed call's, or an unusable answer's
#: (``controller.models.stats_problem``). Each starts at 0.
STATS_FAILURE_REASONS: Final = (*CREATE_FAILURE_REASONS, "NotANumber", "Infinite", "Negative", "ZeroCapacity")
#: The values of a condition's ``status`` label, as Kubernetes writes them.
CONDITION_STATUSES: Final = ("True", "False", "Unknown")
#: The ``code`` label of an API attempt that got no HTTP answer (refused, dropped, timed out).
TRANSPORT_CODE: Final = "transport"

# One pass lists, plans and acts: sub-second normally, minutes when many creates queue up.
_RECONCILE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# One HTTP attempt to the session service: tens of ms on a good day, up to the client timeout.
_API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_REASON_BY_ERROR: tuple[tuple[type[APIError], str], ...] = (
    # Most specific first: ServiceUnavailableError is also a ServerError.
    (BadRequestError, "BadRequest"),
    (AuthenticationError, "Unauthorized"),
    (PermissionDeniedError, "Forbidden"),
    (NotFoundError, "NotFound"),
    (TooManyRequestsError, "TooManyRequests"),
    (ServiceUnavailableError, "ServiceUnavailable"),
    (ServerError, "ServerError"),
    (TransportError, "Transport"),
    (ClientError, "BadRequest"),
)


def failure_reason(error: BaseException) -> str:
    """A short, bounded label for why an API call failed (never the server's free text)."""
    if isinstance(error, StatsError):
        return error.reason
    for cls, reason in _REASON_BY_ERROR:
        if isinstance(error, cls):
            return reason
    return "Unknown"


@dataclass
class _SetState:
    snapshot: SetStatus | None = None  # None: an action was recorded before the set was synced
    created: int = 0
    destroyed: Tally[str] = field(default_factory=Tally)
    create_failures: Tally[str] = field(default_factory=Tally)
    renewed: int = 0
    renew_failures: int = 0


class ControllerMetrics:
    """All metrics of one controller, registered on ``registry`` (a fresh one if not given).

    ``registry`` is injectable so tests and several instances never share global state; the
    daemon hands the same registry to ``observability.health.serve``.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, version: str = __version__,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock  # only to turn back-off deadlines into seconds left, at scrape time
        self._lock = threading.Lock()
        self._sets: dict[str, _SetState] = {}
        self._stats: PlatformStats | None = None
        self._stats_success: float = 0.0
        self._last_reconcile_success: float = 0.0
        self._manifest_errors: dict[str, int] = {}

        info = Info("canfar_controller_build", "Version of the running controller.", registry=self.registry)
        info.info({"version": version})
        self._stats_failures = Counter(
            "canfar_platform_stats_failures",
            "Failed or unusable view=stats answers by reason (the last good values are kept).",
            ["reason"], registry=self.registry,
        )
        for reason in STATS_FAILURE_REASONS:
            self._stats_failures.labels(reason)
        self._list_anomalies = Counter(
            "canfar_controller_list_anomalies",
            "Rows of list answers that break one id, one session: a repeated id, no id, an id under two names.",
            ["kind"], registry=self.registry,
        )
        for kind in LIST_ANOMALY_KINDS:
            self._list_anomalies.labels(kind)
        self._memory_unwritable = Gauge(
            "canfar_controller_memory_unwritable",
            "1 while the controller's memory cannot be written (MemoryUnwritable: no create is sent).",
            registry=self.registry,
        )
        self._reconcile_total = Counter(
            "canfar_controller_reconcile", "Reconcile passes by result.", ["result"], registry=self.registry,
        )
        for result in RECONCILE_RESULTS:
            self._reconcile_total.labels(result)
        self._suspect_lists = Counter(
            "canfar_controller_suspect_lists",
            "List answers that lost every live owned session at once: the pass did nothing.",
            registry=self.registry,
        )
        self._reconcile_seconds = Histogram(
            "canfar_controller_reconcile_duration_seconds", "Duration of one reconcile pass.",
            buckets=_RECONCILE_BUCKETS, registry=self.registry,
        )
        self._api_requests = Counter(
            "canfar_controller_api_requests",
            f"HTTP attempts to the session service by operation and status ({TRANSPORT_CODE!r}: no answer).",
            ["operation", "code"], registry=self.registry,
        )
        self._api_seconds = Histogram(
            "canfar_controller_api_request_duration_seconds",
            "Duration of one HTTP attempt to the session service.",
            ["operation"], buckets=_API_BUCKETS, registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(self))
        self._utilisation = UtilisationMetrics(self.registry)
        #: Credential expiry, usability and refreshes (``observability.credentials``).
        self.credential = CredentialMetrics(self.registry)
        #: Autoscaled sets: signal values, recommendations, failed reads.
        self.autoscale = AutoscaleMetrics(self.registry)

    # -- the API ----------------------------------------------------------------------------------

    def observe_api(self, operation: str, status: int | None, seconds: float) -> None:
        """Count one HTTP attempt; the signature matches the client's ``on_request`` hook."""
        code = TRANSPORT_CODE if status is None else str(status)
        self._api_requests.labels(operation, code).inc()
        self._api_seconds.labels(operation).observe(max(seconds, 0.0))

    def record_stats(self, stats: PlatformStats, now: float) -> None:
        """Keep the platform figures of a successful ``view=stats`` call made at ``now`` (epoch s)."""
        with self._lock:
            self._stats = stats
            self._stats_success = now

    def stats_failed(self, reason: str) -> None:
        """Count a failed or unusable stats answer; the last good figures stay exported (their timestamp ages)."""
        self._stats_failures.labels(reason).inc()

    def list_anomalies(self, counts: Mapping[str, int]) -> None:
        """Count the rows of one list answer that broke one id, one session, by kind."""
        for kind, count in counts.items():
            if count:
                self._list_anomalies.labels(kind).inc(count)

    def memory_unwritable(self, unwritable: bool) -> None:
        self._memory_unwritable.set(1 if unwritable else 0)

    def sync_sets(self, sets: Mapping[str, SetStatus]) -> None:
        """Replace the view of all SessionSets (each as the planner reported it): new sets start at 0, sets
        not given are removed."""
        with self._lock:
            for name in list(self._sets):
                if name not in sets:
                    del self._sets[name]
            for name, snapshot in sets.items():
                self._set(name).snapshot = snapshot

    def sync_utilisation(self, utilisation: Utilisation) -> None:
        """Replace the resources requested and in use per set and owner (``utilisation.tally``)."""
        self._utilisation.sync(utilisation)

    def created(self, sessionset: str, count: int = 1) -> None:
        """Count sessions created for ``sessionset``."""
        with self._lock:
            self._set(sessionset).created += count

    def destroyed(self, sessionset: str, reason: str, count: int = 1) -> None:
        """Count sessions of ``sessionset`` destroyed; ``reason`` is the planner's ``DestroyReason``."""
        with self._lock:
            self._set(sessionset).destroyed[reason] += count

    def create_failed(self, sessionset: str, reason: str, count: int = 1) -> None:
        """Count failed creates for ``sessionset``; ``failure_reason(error)`` makes ``reason``."""
        with self._lock:
            self._set(sessionset).create_failures[reason] += count

    def renewed(self, sessionset: str, count: int = 1) -> None:
        """Count interactive sessions of ``sessionset`` renewed before their expiry."""
        with self._lock:
            self._set(sessionset).renewed += count

    def renew_failed(self, sessionset: str, count: int = 1) -> None:
        """Count renews of ``sessionset``'s sessions that the service refused."""
        with self._lock:
            self._set(sessionset).renew_failures += count

    def suspect_list(self) -> None:
        """Count a list answer the planner did not trust (it lost every live owned session at once)."""
        self._suspect_lists.inc()

    def reconcile_done(self, result: str, seconds: float, now: float) -> None:
        """Record one finished pass: ``result`` is ``success``, ``partial`` or ``error``.

        A ``partial`` pass (listed and planned, but some actions failed) still moves the last-success
        timestamp: the loop works, and the failed actions have their own counters.
        """
        self._reconcile_total.labels(result).inc()
        self._reconcile_seconds.observe(max(seconds, 0.0))
        if result != "error":
            with self._lock:
                self._last_reconcile_success = now

    def manifest_errors(self, by_file: Mapping[str, int]) -> None:
        """Replace the per-file manifest error counts; files not given are removed."""
        with self._lock:
            self._manifest_errors = dict(by_file)

    # -- scrape side --------------------------------------------------------------------------------

    def _set(self, name: str) -> _SetState:
        state = self._sets.get(name)
        if state is None:
            state = self._sets[name] = _SetState()
        return state

    def _families(self) -> Iterable[Metric]:
        """Build the snapshot-backed families from a consistent copy of the state."""
        with self._lock:
            sets = {
                name: (s.snapshot, s.created, Tally(s.destroyed), Tally(s.create_failures))
                for name, s in sorted(self._sets.items())
            }
            renewals = {name: (s.renewed, s.renew_failures) for name, s in sorted(self._sets.items())}
            stats, stats_success = self._stats, self._stats_success
            last_success = self._last_reconcile_success
            manifest_errors = dict(self._manifest_errors)

        yield from _platform_families(stats, stats_success)

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
        now = self._clock()
        for name, (snapshot, n_created, n_destroyed, n_failures) in sets.items():
            if snapshot is not None:
                desired.add_metric([name], snapshot.desired or 0)
                suspended.add_metric([name], 1 if snapshot.suspended else 0)
                until = snapshot.backoff_until
                backoff.add_metric([name], max(0.0, until - now) if until is not None else 0.0)
                uncertain.add_metric([name], snapshot.uncertain)
                held.add_metric([name], snapshot.held)
                counts = snapshot.counts()
                for status in _with_defaults(SESSION_STATUSES, counts):
                    sessions.add_metric([name, status], counts.get(status, 0))
            created.add_metric([name], n_created)
            for reason in _with_defaults(DESTROY_REASONS, n_destroyed):
                destroyed.add_metric([name, reason], n_destroyed[reason])
            for reason in _with_defaults(CREATE_FAILURE_REASONS, n_failures):
                failures.add_metric([name, reason], n_failures[reason])
        yield from (desired, sessions, suspended, created, destroyed, failures, backoff, uncertain, held)
        yield from _lifecycle_families({name: s[0] for name, s in sets.items()}, renewals)

        reconciled = GaugeMetricFamily(
            "canfar_controller_last_reconcile_success_timestamp_seconds",
            "Unix time the last pass that listed the sessions finished (0: none yet).",
        )
        reconciled.add_metric([], last_success)
        yield reconciled

        errors = GaugeMetricFamily(
            "canfar_controller_manifest_errors", "Problems found in each manifest file at the last load.",
            labels=["file"],
        )
        for path, count in sorted(manifest_errors.items()):
            errors.add_metric([path], count)
        yield errors


#: PlatformStats attribute -> help text; the metric is ``canfar_platform_<attribute>``.
_PLATFORM_FIGURES = (
    ("cpu_cores_requested", "CPU cores requested by all sessions on the platform."),
    ("cpu_cores_available", "CPU cores the platform has for sessions."),
    ("ram_requested_bytes", "RAM requested by all sessions on the platform."),
    ("ram_available_bytes", "RAM the platform has for sessions."),
    ("session_max_cpu_cores", "Most CPU cores one session may request."),
    ("session_max_ram_bytes", "Most RAM one session may request."),
)


def _platform_families(stats: PlatformStats | None, success: float) -> Iterable[Metric]:
    """Platform gauges; a figure the service did not send (or no stats yet) is left out, not 0."""
    for attribute, documentation in _PLATFORM_FIGURES:
        value = None if stats is None else getattr(stats, attribute)
        if value is not None:
            yield GaugeMetricFamily(f"canfar_platform_{attribute}", documentation, value=value)
    yield GaugeMetricFamily(
        "canfar_platform_stats_last_success_timestamp_seconds",
        "Unix time of the last successful view=stats call (0: none yet).", value=success,
    )


def _lifecycle_families(snapshots: Mapping[str, SetStatus | None],
                        renewals: Mapping[str, tuple[int, int]]) -> Iterable[Metric]:
    """Conditions, renewals, deadlines, unschedulable and stuck sessions per set."""
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
        "Sessions of a SessionSet Terminating or Unknown for longer than the limit (10 min by default).",
        labels=["sessionset"],
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
        n_renewed, n_failed = renewals.get(name, (0, 0))
        renewed.add_metric([name], n_renewed)
        renew_failures.add_metric([name], n_failed)
    yield from (condition, reason, expiry, unschedulable, stuck, renewed, renew_failures)


def _with_defaults(defaults: Iterable[str], present: Iterable[str]) -> list[str]:
    """The default label values followed by any others that occurred, without duplicates."""
    return list(dict.fromkeys([*defaults, *present]))


class _SnapshotCollector(Collector):
    """Registers the scrape-time families of one ``ControllerMetrics`` on its registry."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics._families()
