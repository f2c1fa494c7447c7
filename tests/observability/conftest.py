"""Fixtures of the observability tests: fresh registries, a populated one, and real scrapes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from controller.models import ObservedSession, PlatformStats
from controller.names import NameParser
from controller.observability.autoscale import AutoscaleSnapshot
from controller.observability.health import HealthState, MetricsServer, serve
from controller.observability.metrics import ControllerMetrics
from controller.observability.utilisation import tally
from controller.plan import Condition, SetStatus


def set_status(desired: int, *, counts: dict[str, int] | None = None, conditions: dict[str, str] | None = None,
               reasons: dict[str, str] | None = None, **fields: Any) -> SetStatus:
    """A set's status as the planner reports it, from sessions by phase and conditions by type."""
    phases = {phase.lower(): count for phase, count in (counts or {}).items()}
    kinds = [*(conditions or {}), *(kind for kind in reasons or {} if kind not in (conditions or {}))]
    rows = tuple(Condition(kind, (conditions or {}).get(kind, "Unknown"), (reasons or {}).get(kind, ""), "", 0.0)
                 for kind in kinds)
    return SetStatus("set", desired, **phases, conditions=rows, **fields)


ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "manifests" / "prometheus"
DASHBOARD = ROOT / "manifests" / "grafana" / "canfar-controller.json"

#: Current-shape stats (2025-11) as the service sends them.
STATS_WIRE = {
    "cores": {
        "requestedCPUCores": 12.0,
        "cpuCoresAvailable": 64.0,
        "maxCPUCores": {"cpuCores": 8.0, "withRam": "32Gi"},
    },
    "ram": {"requestedRAM": "48G", "ramAvailable": "256G", "maxRAM": {"ram": "32Gi", "withCPUCores": 8.0}},
}


#: A list answer: two GPU sessions of ``workers`` (one measured), one Pending, and one made by hand.
LISTED = (
    ObservedSession("a1", "cc-workers-0a1b2c-1", "Running", "headless", 1.7e9, None, 2.0, 8.59e9, 1.0, 0.5, 2e9),
    ObservedSession("a2", "cc-workers-0a1b2c-2", "Running", "headless", 1.7e9, None, 2.0, 8.59e9, 1.0),
    ObservedSession("a3", "cc-workers-0a1b2c-3", "Pending", "headless", None, None, 2.0, 8.59e9, 1.0),
    ObservedSession("b1", "notebook-1", "Running", "notebook", 1.7e9, None, None, None, 0.0, 0.1, 1e9),
)


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry: no test sees another's series."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> ControllerMetrics:
    return ControllerMetrics(registry, version="9.9.9")


@pytest.fixture
def populated(metrics: ControllerMetrics) -> ControllerMetrics:
    """Metrics after the kind of passes a running controller sees: every method called once at least."""
    metrics.record_stats(PlatformStats.from_wire(STATS_WIRE), 1_700_000_000.0)
    metrics.stats_failed("ServerError")
    metrics.sync_sets(
        {
            "workers": set_status(
                desired=3,
                counts={"Running": 2, "Pending": 1},
                backoff_until=1_700_000_100.0,
                uncertain=1,
                held=1,
                conditions={"Ready": "False", "Progressing": "False", "WaitingForCapacity": "True",
                            "ScalingActive": "True", "ScalingLimited": "False"},
                reasons={"Ready": "NotAllRunning", "Progressing": "ProgressDeadlineExceeded",
                         "WaitingForCapacity": "Unschedulable", "ScalingActive": "ValidSignal",
                         "ScalingLimited": "DesiredWithinRange"},
                next_expiry=1_700_345_600.0,
                unschedulable=1,
            ),
            "paused": set_status(desired=2, counts={}, suspended=True),
        }
    )
    metrics.sync_utilisation(tally(LISTED, NameParser("cc"), ["workers", "paused"], default_cores=1.0,
                                   default_ram=4 * 2**30))
    metrics.autoscale.sync({"workers": AutoscaleSnapshot({"file /q": 12.0, "http q.example.org n": None}, 3)},
                           count_failures=True)
    metrics.renewed("workers")
    metrics.renew_failed("workers")
    metrics.suspect_list()
    metrics.created("workers")
    metrics.destroyed("workers", "ended")
    metrics.create_failed("workers", "BadRequest")
    metrics.observe_api("list", 200, 0.02)
    metrics.observe_api("create", 400, 0.05)
    metrics.observe_api("create", None, 30.0)
    metrics.reconcile_done("success", 0.4, 1_700_000_001.0)
    metrics.reconcile_done("partial", 1.5, 1_700_000_031.0)
    metrics.manifest_errors({"broken.yaml": 2})
    metrics.ownership({"beta": 2}, {"workers": 1})
    metrics.credential.update(expiry_kind="oidc_refresh", expiry=1_700_172_800.0, usable=True)
    metrics.credential.refreshed("success")
    metrics.list_anomalies({"duplicate_id": 2, "missing_id": 0})
    metrics.memory_unwritable(True)
    return metrics


@pytest.fixture
def health(clock: FakeClock) -> HealthState:
    return HealthState(interval=10.0, clock=clock)


@pytest.fixture
def server(populated: ControllerMetrics, health: HealthState) -> Iterator[MetricsServer]:
    """The HTTP endpoints of ``populated`` on a free loopback port."""
    with serve("127.0.0.1", 0, populated.registry, health) as running:
        yield running


@pytest.fixture
def scrape(server: MetricsServer) -> Callable[[], str]:
    """GET /metrics over real loopback HTTP, as Prometheus does."""

    def get() -> str:
        response = httpx.get(f"{server.url}/metrics", timeout=5)
        response.raise_for_status()
        return response.text

    return get


def sample_names(exposition: str) -> set[str]:
    """Every sample name in a text exposition (``x_bucket``, ``x_total``...)."""
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}
