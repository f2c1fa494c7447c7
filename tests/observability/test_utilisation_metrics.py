"""Utilisation families: per set and per owner, requested at 0 by default, in use only where measured."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from controller.models import ObservedSession
from controller.names import NameParser
from controller.observability.metrics import SESSION_STATUSES, ControllerMetrics
from controller.observability.utilisation import LIVE_STATUSES, tally
from tests.observability.conftest import LISTED

GIB = 2**30


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def sync(metrics: ControllerMetrics, rows: tuple[ObservedSession, ...], sets: list[str]) -> None:
    metrics.sync_utilisation(tally(rows, NameParser("cc"), sets, default_cores=1.0, default_ram=4 * GIB))


def test_nothing_before_the_first_list(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """No list answer yet: no utilisation series at all, rather than an account that seems idle."""
    names = {family.name for family in registry.collect()}
    assert {n for n in names if "requested" in n or "in_use" in n} == set()


def test_sums_per_set_and_status(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """Requested cores, RAM bytes and GPUs add up per set and status; in use counts measured sessions only."""
    sync(metrics, LISTED, ["workers"])
    labels = {"sessionset": "workers", "status": "Running"}
    assert {
        name: value(registry, f"canfar_controller_sessionset_{name}", **labels)
        for name in ("requested_cpu_cores", "requested_ram_bytes", "requested_gpus", "cpu_cores_in_use",
                     "ram_in_use_bytes")
    } == {"requested_cpu_cores": 4.0, "requested_ram_bytes": 2 * 8.59e9, "requested_gpus": 2.0,
          "cpu_cores_in_use": 0.5, "ram_in_use_bytes": 2e9}


def test_live_statuses_of_a_set_exist_at_zero(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A set without sessions requests 0 while Pending and Running; other statuses appear only with sessions."""
    sync(metrics, (), ["idle"])
    assert {status: value(registry, "canfar_controller_sessionset_requested_gpus", sessionset="idle", status=status)
            for status in SESSION_STATUSES} == {status: 0.0 if status in LIVE_STATUSES else None
                                                for status in SESSION_STATUSES}
    assert value(registry, "canfar_controller_sessionset_cpu_cores_in_use", sessionset="idle",
                 status="Running") is None


def test_an_ended_session_appears_under_its_status(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """A Completed session still listed counts under Completed, for its set only."""
    sync(metrics, (LISTED[0]._replace(phase="Completed", cores_in_use=None, ram_in_use_bytes=None),), ["workers", "idle"])
    assert (value(registry, "canfar_controller_sessionset_requested_cpu_cores", sessionset="workers",
                  status="Completed"),
            value(registry, "canfar_controller_sessionset_requested_cpu_cores", sessionset="idle",
                  status="Completed")) == (2.0, None)


def test_the_account_is_split_by_owner(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """``controller`` sums this controller's sessions, ``other`` the rest; a flexible session counts its default."""
    sync(metrics, LISTED, ["workers"])
    assert [
        (owner, value(registry, "canfar_controller_account_requested_cpu_cores", owner=owner, status="Running"),
         value(registry, "canfar_controller_account_requested_ram_bytes", owner=owner, status="Running"),
         value(registry, "canfar_controller_account_cpu_cores_in_use", owner=owner, status="Running"))
        for owner in ("controller", "other")
    ] == [("controller", 4.0, 2 * 8.59e9, 0.5), ("other", 1.0, 4 * GIB, 0.1)]


def test_a_new_list_replaces_the_old(metrics: ControllerMetrics, registry: CollectorRegistry) -> None:
    """Sets and sessions gone from the latest list are gone from the metrics."""
    sync(metrics, LISTED, ["workers"])
    sync(metrics, (), [])
    assert (value(registry, "canfar_controller_sessionset_requested_cpu_cores", sessionset="workers",
                  status="Running"),
            value(registry, "canfar_controller_account_requested_cpu_cores", owner="controller",
                  status="Running")) == (None, 0.0)


def test_no_created_series_in_the_exposition(scrape: Callable[[], str]) -> None:
    """Counters and histograms carry no ``_created`` companion series (they would double the exposition)."""
    exposition = scrape()
    names = {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}
    assert ("canfar_controller_reconcile_total" in names,
            sorted(name for name in names if name.endswith("_created"))) == (True, [])
