"""Utilisation metrics end to end, in-process: what each set and the account request and use.

The controller runs against the simulator as in production; the figures read are the scraped
metrics, which come from the list answer the pass planned with (nothing else is asked).
"""

from __future__ import annotations

import pytest

from tests.reliability.rig import IMAGE, Rig

GIB = 2**30
GB = 1e9


def sessionset(name: str, replicas: int, resources: str) -> str:
    return (f"apiVersion: canfar.controller/v1alpha1\nkind: SessionSet\nmetadata: {{name: {name}}}\n"
            f"spec: {{replicas: {replicas}, template: {{image: {IMAGE}, {resources}cmd: sleep, args: '1000000'}}}}\n")


GPU_SET = sessionset("trainers", 2, "cores: 2, ram: 4, gpu: 1, ")
FLEXIBLE_SET = sessionset("helpers", 1, "")


def gauge(rig: Rig, name: str, **labels: str) -> float | None:
    return rig.metrics.registry.get_sample_value(name, labels)


def running(rig: Rig) -> int:
    return sum(1 for _, _, status in rig.truth() if status == "Running")


@pytest.fixture
def busy(rig: Rig) -> Rig:
    """Two sets (one asking for GPUs, one flexible) and a session of the user's own, all Running."""
    rig.write("trainers", GPU_SET)
    rig.write("helpers", FLEXIBLE_SET)
    rig.add_foreign("by-hand")
    for _ in range(20):
        rig.run_pass()
        if running(rig) == 4:
            break
        rig.clock.advance(5.0)
    rig.clock.advance(5.0)
    rig.run_pass()  # one more list, in which every session is Running
    assert running(rig) == 4
    return rig


def test_each_set_reports_what_its_sessions_request_and_use(busy: Rig) -> None:
    """Per set and status: cores, RAM (bytes) and GPUs requested, and what the service measured in use."""
    # 4 GiB is 4.29 GB as the service writes it (decimal GB, 2 dp): bytes follow the service's figure.
    assert {
        "cores": gauge(busy, "canfar_controller_sessionset_requested_cpu_cores", sessionset="trainers",
                       status="Running"),
        "ram": gauge(busy, "canfar_controller_sessionset_requested_ram_bytes", sessionset="trainers",
                     status="Running"),
        "gpus": gauge(busy, "canfar_controller_sessionset_requested_gpus", sessionset="trainers", status="Running"),
        "cores in use": gauge(busy, "canfar_controller_sessionset_cpu_cores_in_use", sessionset="trainers",
                              status="Running"),
        "ram in use": gauge(busy, "canfar_controller_sessionset_ram_in_use_bytes", sessionset="trainers",
                            status="Running"),
    } == pytest.approx({"cores": 4.0, "ram": 2 * 4.29 * GB, "gpus": 2.0, "cores in use": 0.4,
                        "ram in use": 2 * 0.43 * GB})


def test_a_flexible_set_counts_with_the_platform_default_request(busy: Rig) -> None:
    """The service reports no request for flexible sessions: /context's defaultRequest (1 core, 4 GiB) counts."""
    assert (
        gauge(busy, "canfar_controller_sessionset_requested_cpu_cores", sessionset="helpers", status="Running"),
        gauge(busy, "canfar_controller_sessionset_requested_ram_bytes", sessionset="helpers", status="Running"),
        gauge(busy, "canfar_controller_sessionset_requested_gpus", sessionset="helpers", status="Running"),
    ) == (1.0, 4 * GIB, 0.0)


def test_live_statuses_exist_at_zero_but_nothing_measured_is_invented(busy: Rig) -> None:
    """Pending without sessions requests 0; in-use figures exist only where the service measured some."""
    assert (
        gauge(busy, "canfar_controller_sessionset_requested_cpu_cores", sessionset="trainers", status="Pending"),
        gauge(busy, "canfar_controller_account_requested_gpus", owner="other", status="Pending"),
        gauge(busy, "canfar_controller_sessionset_cpu_cores_in_use", sessionset="trainers", status="Pending"),
        gauge(busy, "canfar_controller_account_ram_in_use_bytes", owner="other", status="Completed"),
    ) == (0.0, 0.0, None, None)


def test_the_account_splits_into_the_controller_and_the_rest(busy: Rig) -> None:
    """Owner ``controller`` is the sum of the sets; ``other`` is the session made by hand."""
    requested = "canfar_controller_account_requested_cpu_cores"
    sets = sum(gauge(busy, "canfar_controller_sessionset_requested_cpu_cores", sessionset=name,
                     status="Running") or 0.0 for name in ("trainers", "helpers"))
    assert (
        gauge(busy, requested, owner="controller", status="Running"),
        gauge(busy, requested, owner="other", status="Running"),
        gauge(busy, "canfar_controller_account_requested_gpus", owner="controller", status="Running"),
        gauge(busy, "canfar_controller_account_requested_gpus", owner="other", status="Running"),
    ) == (sets, 1.0, 2.0, 0.0)
    assert sets == 5.0


def test_the_figures_match_the_list_the_service_sends(busy: Rig) -> None:
    """The simulator's list answer carries requestedGPUCores, cpuCoresInUse and ramInUse as skaha writes them."""
    assert busy.client is not None
    rows = busy.loop.run_until_complete(busy.client.observe())
    trainers = [row for row in rows if "-trainers-" in row.name]
    assert [(row.gpus, row.cores_in_use, row.ram_in_use_bytes) for row in trainers] == [(1.0, 0.2, 0.43e9)] * 2


def test_a_failed_list_keeps_the_last_figures(busy: Rig) -> None:
    """A pass that could not list shows the last figures, not an account that suddenly uses nothing."""
    before = gauge(busy, "canfar_controller_account_requested_cpu_cores", owner="controller", status="Running")
    busy.simulator.inject_fault("GET", "/session", status=500)
    busy.clock.advance(5.0)
    outcome = busy.run_pass()
    assert (before, outcome.list_ok, gauge(busy, "canfar_controller_account_requested_cpu_cores",
                                           owner="controller", status="Running")) == (5.0, False, 5.0)


def test_a_removed_set_leaves_no_series_once_its_sessions_are_gone(busy: Rig) -> None:
    """Series of a set vanish when neither its manifest nor any of its sessions remain."""
    assert gauge(busy, "canfar_controller_sessionset_requested_cpu_cores", sessionset="helpers",
                 status="Running") == 1.0
    (busy.state / "helpers.yaml").unlink()
    for _ in range(10):
        busy.clock.advance(5.0)
        busy.run_pass()
        if gauge(busy, "canfar_controller_sessionset_requested_cpu_cores", sessionset="helpers",
                 status="Running") is None:
            break
    assert gauge(busy, "canfar_controller_sessionset_requested_cpu_cores", sessionset="helpers",
                 status="Running") is None
