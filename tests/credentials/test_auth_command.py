"""``canfar-controller auth``: what would be used, from where, until when, and one call that proves it."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from controller.cli import main
from tests.credentials.canfar_configs import oidc_config, x509_config
from tests.credentials.certificates import make_proxy
from tests.credentials.endpoint import CLIENT_SECRET, TokenEndpoint


def test_auth_shows_the_login_the_server_and_the_expiry_and_proves_it_works(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    login = endpoint.issue()
    config = oidc_config(tmp_path / "config.yaml", url=url, token_url=endpoint.url, login=login,
                         monkeypatch=monkeypatch)
    assert main(["auth", "--canfar-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"server:     {url} (server 'simulated' of the canfar config)" in out
    assert f"credential: OIDC login of canfar config {config}, record 'srcnet'" in out
    assert "expiry:     oidc_refresh expires" in out and "(in 6d 23h)" in out
    assert "check:      listed 0 session(s) with this credential: it works" in out
    for secret in (login["access_token"], login["refresh_token"], CLIENT_SECRET):
        assert secret not in out


def test_auth_exits_1_when_the_service_refuses_the_credential(
        tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CANFAR_TOKEN", "not-a-token-the-provider-issued")
    assert main(["auth", "--server", url]) == 1
    captured = capsys.readouterr()
    assert "credential: CANFAR_TOKEN" in captured.out
    assert "expiry:     unknown (this token credential carries no expiry)" in captured.out
    assert "the authenticated call failed" in captured.err and "401" in captured.err


def test_auth_reads_an_x509_certificates_expiry(
        tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    proxy = tmp_path / "cadcproxy.pem"
    not_after = make_proxy(proxy, valid_for=datetime.timedelta(days=9, hours=1))
    config = x509_config(tmp_path / "config.yaml", url=url, certificate=proxy, monkeypatch=monkeypatch)
    assert main(["auth", "--canfar-config", str(config)]) == 1  # the simulator serves plain HTTP: bearer only
    out = capsys.readouterr().out
    assert f"credential: X.509 certificate of canfar config {config}, record 'srcnet'" in out
    assert f"x509 expires {not_after:%Y-%m-%dT%H:%M:%SZ} (in 9d 0h)" in out


def test_sessions_and_plan_use_the_login_in_home_with_no_flag(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    oidc_config(Path.home() / ".canfar" / "config.yaml", url=url, token_url=endpoint.url, login=endpoint.issue(),
                monkeypatch=monkeypatch)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert main(["sessions", "ps", "-o", "json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    assert main(["plan", "--state", str(state)]) == 0
    assert "nothing to do" in capsys.readouterr().out
