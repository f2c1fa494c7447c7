"""Metrics of autoscaled SessionSets: each signal's value, the recommendation, and failed reads.

The count in force is the ordinary ``canfar_controller_sessionset_desired_replicas`` gauge. Series
of a set go away with the set; a signal's failure counter starts at 0 so that ``increase()`` sees
its first failure.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class AutoscaleSnapshot:
    """One autoscaled set after a pass: each signal's value (None: unreadable) and the recommendation."""

    values: Mapping[str, float | None] = field(default_factory=dict)
    recommended: int | None = None


class AutoscaleMetrics(Collector):
    """The autoscale families, on the controller's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._sets: dict[str, AutoscaleSnapshot] = {}
        self._failures: dict[tuple[str, str], int] = {}
        registry.register(self)

    def sync(self, sets: Mapping[str, AutoscaleSnapshot], *, count_failures: bool) -> None:
        """Replace the view of the autoscaled sets; with ``count_failures``, count each unreadable signal."""
        with self._lock:
            self._sets = dict(sets)
            self._failures = {key: n for key, n in self._failures.items()
                              if key[0] in sets and key[1] in sets[key[0]].values}
            for name, snapshot in sets.items():
                for signal, value in snapshot.values.items():
                    failed = 1 if count_failures and value is None else 0
                    self._failures[(name, signal)] = self._failures.get((name, signal), 0) + failed

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            sets, failures = dict(self._sets), dict(self._failures)
        values = GaugeMetricFamily(
            "canfar_controller_autoscale_signal_value",
            "The last value read from an autoscale signal (absent while it cannot be read).",
            labels=["sessionset", "signal"],
        )
        recommended = GaugeMetricFamily(
            "canfar_controller_autoscale_recommended_replicas",
            "The autoscaler's recommendation for a SessionSet, clamped to its bounds, before windows and steps.",
            labels=["sessionset"],
        )
        failed = CounterMetricFamily(
            "canfar_controller_autoscale_signal_failures",
            "Passes in which an autoscale signal could not be read.",
            labels=["sessionset", "signal"],
        )
        for name, snapshot in sorted(sets.items()):
            for signal, value in sorted(snapshot.values.items()):
                if value is not None:
                    values.add_metric([name, signal], value)
            if snapshot.recommended is not None:
                recommended.add_metric([name], snapshot.recommended)
        for (name, signal), count in sorted(failures.items()):
            failed.add_metric([name, signal], count)
        yield from (values, recommended, failed)
