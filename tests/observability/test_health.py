"""Liveness and readiness, first as state under an injected clock, then over real loopback HTTP."""

from __future__ import annotations

import socket

import httpx
import pytest

from controller.errors import ConfigError
from controller.observability.health import HealthState, MetricsServer, serve
from controller.observability.metrics import ControllerMetrics
from tests.observability.conftest import FakeClock


def test_alive_during_grace_before_first_pass(health: HealthState, clock: FakeClock) -> None:
    """Before any pass the loop counts as alive for three intervals from start."""
    clock.advance(29.0)
    assert health.liveness()[0] is True


def test_stuck_when_first_pass_never_completes(health: HealthState, clock: FakeClock) -> None:
    """No pass within three intervals of start: the loop is reported stuck."""
    clock.advance(31.0)
    alive, reason = health.liveness()
    assert (alive, reason.startswith("stuck")) == (False, True)


def test_stuck_once_last_pass_is_older_than_three_intervals(health: HealthState, clock: FakeClock) -> None:
    """A completed pass resets the clock; three intervals without another one fail liveness."""
    clock.advance(25.0)
    health.pass_completed()
    clock.advance(30.0)
    assert health.liveness()[0] is True
    clock.advance(0.5)
    assert health.liveness()[0] is False


def test_pass_after_stuck_recovers(health: HealthState, clock: FakeClock) -> None:
    """A loop that completes a pass again is alive again."""
    clock.advance(100.0)
    health.pass_completed()
    assert health.liveness()[0] is True


@pytest.mark.parametrize(
    ("manifests", "listed", "ready"),
    [(False, False, False), (True, False, False), (False, True, False), (True, True, True)],
)
def test_ready_needs_manifests_and_a_list(
    health: HealthState, manifests: bool, listed: bool, ready: bool
) -> None:
    """Ready only once the manifests are loaded and one list call succeeded."""
    if manifests:
        health.manifests_loaded()
    if listed:
        health.list_succeeded()
    assert health.readiness()[0] is ready


def test_interval_must_be_positive() -> None:
    """A zero interval would make liveness meaningless: refuse it."""
    with pytest.raises(ValueError, match="interval"):
        HealthState(interval=0)


def test_http_probes_follow_the_state(server: MetricsServer, health: HealthState, clock: FakeClock) -> None:
    """/healthz and /readyz answer 200 or 503 with a short reason, from the shared state."""
    before = [httpx.get(f"{server.url}{path}", timeout=5) for path in ("/healthz", "/readyz")]
    health.manifests_loaded()
    health.list_succeeded()
    clock.advance(31.0)
    after = [httpx.get(f"{server.url}{path}", timeout=5) for path in ("/healthz", "/readyz")]
    assert [r.status_code for r in before + after] == [200, 503, 503, 200]
    assert [r.text.split(":")[0] for r in before + after] == ["ok", "not ready", "stuck", "ready\n"]


def test_http_metrics_is_the_text_exposition(server: MetricsServer) -> None:
    """/metrics serves the registry in the Prometheus text format."""
    response = httpx.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'canfar_controller_sessionset_desired_replicas{sessionset="workers"} 3.0' in response.text


def test_http_metrics_speaks_openmetrics_when_asked(server: MetricsServer) -> None:
    """A scraper that asks for OpenMetrics (as Prometheus does) gets it."""
    response = httpx.get(
        f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=5
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_http_unknown_path_is_404(server: MetricsServer) -> None:
    """Other paths are not found, and say where to look."""
    response = httpx.get(f"{server.url}/", timeout=5)
    assert (response.status_code, "/metrics" in response.text) == (404, True)


def test_serve_on_busy_port_is_a_config_error(
    server: MetricsServer,
    populated: ControllerMetrics,
    health: HealthState,
) -> None:
    """A port already in use is reported as a configuration problem naming the address."""
    with pytest.raises(ConfigError, match=f"127.0.0.1:{server.port}"):
        serve("127.0.0.1", server.port, populated.registry, health)


def test_shutdown_frees_the_port(populated: ControllerMetrics, health: HealthState) -> None:
    """After shutdown nothing listens on the port any more."""
    running = serve("127.0.0.1", 0, populated.registry, health)
    running.shutdown()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", running.port)) != 0
