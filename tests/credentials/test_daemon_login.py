"""The daemon started with only ``--state`` and a canfar login: it refreshes, keeps the login usable, reports.

A real ``canfar-controller run`` process (HOME pointing at a directory holding the canfar config,
so nothing but ``--state`` says where to go and who to be) against the simulator, which trusts
the test's token endpoint. Access tokens live 2 s, so the run spans many lifetimes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from controller.cli import main
from controller.simulator import Simulator
from tests.controller.conftest import manifest, wait_until
from tests.credentials.canfar_configs import oidc_config, read_back
from tests.credentials.endpoint import TokenEndpoint


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_logged_in_user_runs_with_only_state_across_many_token_lifetimes(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, simulator: Simulator,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint.access_life = 2.0
    home = Path(os.environ["HOME"])
    config = oidc_config(home / ".canfar" / "config.yaml", url=url, token_url=endpoint.url,
                         login=endpoint.issue(), monkeypatch=monkeypatch)
    state = tmp_path / "state"
    state.mkdir()
    (state / "workers.yaml").write_text(manifest("workers", 3))
    port = free_port()
    log = tmp_path / "daemon.log"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg"), "CANFAR_CONTROLLER_INTERVAL": "0.5",
           "CANFAR_CONTROLLER_METRICS_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "controller", "run", "--state", str(state)],
                               stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
    try:
        wait_until(lambda: len([r for r in simulator.requests if r.method == "POST" and r.status == 200]) == 3,
                   timeout=20, what=f"three creates (log: {log.read_text()[-800:]})")
        time.sleep(7.0)  # several more access-token lifetimes
        granted_before = len(endpoint.grants)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        granted_after = len(endpoint.grants)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    text = log.read_text()
    assert {r.status for r in simulator.requests} == {200}, "not one call failed"
    assert len(endpoint.grants) >= 4
    # The daemon goes on refreshing while the test reads: the counter matches the grants the endpoint
    # had made by then (one may be in flight, granted but not yet counted).
    counted = re.search(r'^canfar_controller_credential_refreshes_total\{result="success"\} (\S+)$', metrics, re.M)
    assert counted is not None
    assert granted_before - 1 <= float(counted.group(1)) <= granted_after
    assert float(counted.group(1)) >= 4
    assert 'canfar_controller_credential_expiry_timestamp_seconds{kind="oidc_refresh"}' in metrics
    assert "canfar_controller_credential_usable 1.0" in metrics
    assert "credential: oidc (canfar config" in health and "oidc_refresh expires" in health
    assert "credential in use" in text and "OIDC login of canfar config" in text
    for secret in (endpoint.grants[-1]["refresh_token"],):
        assert secret not in text
    record = read_back(config)  # the user's canfar still reads it, with the newest tokens
    assert record.token.refresh is not None and record.token.refresh.get_secret_value() in endpoint._refresh

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert main(["status", "--state", str(state)]) == 0
    shown = capsys.readouterr().out
    assert "credential: oidc (canfar config" in shown and "oidc_refresh expires" in shown


def test_a_refused_login_stops_creates_and_destroys_but_not_the_loop_or_the_metrics(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, simulator: Simulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint.access_life = 0.5
    config = oidc_config(tmp_path / "canfar.yaml", url=url, token_url=endpoint.url, login=endpoint.issue(),
                         monkeypatch=monkeypatch)
    endpoint.refuse = True  # the refresh token was revoked (or has expired)
    state = tmp_path / "state"
    state.mkdir()
    (state / "workers.yaml").write_text(manifest("workers", 2))
    port, log, status_file = free_port(), tmp_path / "daemon.log", tmp_path / "status.json"
    env = {**os.environ, "CANFAR_CONFIG": str(config)}
    time.sleep(0.6)  # the access token has expired: only a refresh could help
    process = subprocess.Popen([sys.executable, "-m", "controller", "run", "--state", str(state), "--interval",
                                "0.3", "--metrics-port", str(port), "--status-file", str(status_file)],
                               stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
    try:
        wait_until(lambda: "canfar_controller_credential_usable 0.0" in _get(port, "/metrics"), timeout=15,
                   what="the credential reported unusable")
        passes = wait_until(lambda: _status(status_file).get("pass_id", 0) >= 3 and _status(status_file),
                            timeout=15, what="passes going on")
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        metrics = _get(port, "/metrics")
        posts_while_refused = [r for r in simulator.requests if r.method in ("POST", "DELETE") and r.status == 200]
        # The user logs in again: the daemon picks the new login up by itself.
        endpoint.refuse = False
        endpoint.access_life = 60.0
        oidc_config(config, url=url, token_url=endpoint.url, login=endpoint.issue(), monkeypatch=monkeypatch)
        wait_until(lambda: len([r for r in simulator.requests if r.method == "POST" and r.status == 200]) == 2,
                   timeout=15, what="the creates after the new login")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    assert posts_while_refused == []
    assert health.status_code == 200 and "UNUSABLE" in health.text and "invalid_grant" in health.text
    assert 'canfar_controller_credential_refreshes_total{result="refused"} 1.0' in metrics
    assert any("invalid_grant" in error and "canfar auth login" in error for error in passes["errors"])
    assert passes["credential"]["usable"] is False
    text = log.read_text()
    assert text.count("the credential cannot be used") == 1, "said once, not every pass"
    assert "the credential works again" in text


def _get(port: int, path: str) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).text
    except httpx.HTTPError:
        return ""


def _status(path: Path) -> dict[str, object]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
