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
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller import __version__
from controller.clock import process_time
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
from controller.listanswer import LEFT_OUT_LIVE, LIST_ANOMALY_KINDS
from controller.models import PlatformStats
from controller.observability.autoscale import AutoscaleMetrics
from controller.observability.credentials import CredentialMetrics
from controller.observability.families import (
    CONDITION_STATUSES,
    CREATE_FAILURE_REASONS,
    DESTROY_REASONS,
    SESSION_STATUSES,
    lifecycle_families,
    ownership_families,
    platform_families,
    set_families,
)
from controller.observability.utilisation import Utilisation, UtilisationMetrics
from controller.plan import SetStatus

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

#: Outcomes of a reconcile pass; each starts at 0 so ``rate()`` works before the first failure.
RECONCILE_RESULTS: Final = ("success", "partial", "error")
#: Labels of ``canfar_platform_stats_failures_total``: a failed call's, or an unusable answer's
#: (``controller.models.stats_problem``). Each starts at 0.
STATS_FAILURE_REASONS: Final = (*CREATE_FAILURE_REASONS, "NotANumber", "Infinite", "Negative", "ZeroCapacity")
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
    destroy_failures: Tally[str] = field(default_factory=Tally)


class ControllerMetrics:
    """All metrics of one controller, registered on ``registry`` (a fresh one if not given).

    ``registry`` is injectable so tests and several instances never share global state; the
    daemon hands the same registry to ``observability.health.serve``.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, version: str = __version__,
                 clock: Callable[[], float] = process_time) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock  # only to turn back-off deadlines into seconds left, at scrape time
        self._lock = threading.Lock()
        self._sets: dict[str, _SetState] = {}
        self._stats: PlatformStats | None = None
        self._stats_success: float = 0.0
        self._last_reconcile_success: float = 0.0
        self._manifest_errors: dict[str, int] = {}
        self._unmanaged: dict[str, int] = {}
        self._foreign: dict[str, int] = {}

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
            "Rows of list answers that break one id, one session: a repeated id, no id, an id under two names; "
            "and live sessions a list left out that the service still had when asked by id.",
            ["kind"], registry=self.registry,
        )
        for kind in (*LIST_ANOMALY_KINDS, LEFT_OUT_LIVE):
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

    def destroy_failed(self, sessionset: str, reason: str, count: int = 1) -> None:
        """Count failed destroys of ``sessionset``'s sessions; ``failure_reason(error)`` makes ``reason``."""
        with self._lock:
            self._set(sessionset).destroy_failures[reason] += count

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

    def ownership(self, unmanaged: Mapping[str, int], foreign: Mapping[str, int]) -> None:
        """Replace the sessions of sets never managed, and another writer's live sessions per managed set."""
        with self._lock:
            self._unmanaged, self._foreign = dict(unmanaged), dict(foreign)

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
            destroy_failures = {name: Tally(s.destroy_failures) for name, s in sorted(self._sets.items())}
            stats, stats_success = self._stats, self._stats_success
            last_success = self._last_reconcile_success
            manifest_errors = dict(self._manifest_errors)
            unmanaged, foreign = dict(self._unmanaged), dict(self._foreign)

        yield from platform_families(stats, stats_success)

        yield from set_families(sets, self._clock())
        yield from lifecycle_families({name: s[0] for name, s in sets.items()}, renewals, destroy_failures)

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
        yield from ownership_families(unmanaged, foreign)


class _SnapshotCollector(Collector):
    """Registers the scrape-time families of one ``ControllerMetrics`` on its registry."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics._families()
