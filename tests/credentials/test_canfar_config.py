"""The canfar client's config as a credential source: the active server and login, and clear errors."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import time
from pathlib import Path

import pytest

from controller.cli.common import client_settings, describe_source
from controller.client import AsyncSession, Session
from controller.errors import CredentialError
from controller.observability.metrics import ControllerMetrics
from controller.simulator import Simulator
from tests.credentials.canfar_configs import RECORD, oidc_config, x509_config
from tests.credentials.certificates import make_proxy
from tests.credentials.endpoint import CLIENT_SECRET, TokenEndpoint


def settings_for(config: Path | None = None, **flags: object) -> object:
    return client_settings(argparse.Namespace(canfar_config=config, **flags))


def test_an_oidc_login_gives_the_server_and_the_token(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    config = oidc_config(tmp_path / "config.yaml", url=url, token_url=endpoint.url, login=endpoint.issue(),
                         monkeypatch=monkeypatch)
    settings = settings_for(config)
    assert settings.url == url  # the active server's url + version
    with Session(settings) as client:
        assert client.fetch() == []
    assert describe_source(settings) == (f"OIDC login of canfar config {config}, record {RECORD!r}",
                                         f"{url} (server 'simulated' of the canfar config)")


def test_the_default_config_is_the_one_in_home(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    home_config = Path.home() / ".canfar" / "config.yaml"
    home_config.parent.mkdir(parents=True)
    oidc_config(home_config, url=url, token_url=endpoint.url, login=endpoint.issue(), monkeypatch=monkeypatch)
    assert settings_for().config == home_config
    monkeypatch.setenv("CANFAR_CONFIG", str(tmp_path / "elsewhere.yaml"))
    with pytest.raises(CredentialError, match=r"elsewhere.yaml does not exist; run `canfar auth login`"):
        settings_for()


def test_explicit_credentials_and_server_win(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    config = oidc_config(tmp_path / "config.yaml", url=url, token_url=endpoint.url, login=endpoint.issue(),
                         monkeypatch=monkeypatch)
    token_file = tmp_path / "token"
    token_file.write_text("explicit")
    assert settings_for(config, token_file=token_file).auth_mode == "token-file"
    monkeypatch.setenv("CANFAR_TOKEN", "from-env")
    assert settings_for(config).auth_mode == "token"
    monkeypatch.delenv("CANFAR_TOKEN")
    assert settings_for(config, server="https://other.example/skaha/v1").url == "https://other.example/skaha/v1"


def test_an_x509_login_uses_its_certificate_and_reads_its_expiry(
        tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = tmp_path / "cadcproxy.pem"
    not_after = make_proxy(proxy, valid_for=datetime.timedelta(days=2, hours=3))
    config = x509_config(tmp_path / "config.yaml", url=url, certificate=proxy, monkeypatch=monkeypatch)
    with Session(settings_for(config)) as client:
        status = client.credential()
    assert (status.kind, status.expiry_kind, status.usable) == ("x509", "x509", True)
    assert status.expiry == not_after.timestamp()
    assert str(proxy) in status.source and RECORD in status.source
    metrics = ControllerMetrics()
    metrics.credential.update(expiry_kind=status.expiry_kind, expiry=status.expiry, usable=status.usable)
    assert metrics.registry.get_sample_value("canfar_controller_credential_expiry_timestamp_seconds",
                                             {"kind": "x509"}) == not_after.timestamp()


@pytest.mark.parametrize(("case", "problem"), [
    ("missing certificate", r"record 'srcnet': its certificate .*cadcproxy.pem does not exist; run `canfar auth login`"),
    ("no tokens", r"record 'srcnet': the OIDC record holds no access token and cannot refresh one .*; run `canfar auth login`"),
    ("no active record", r"no active authentication record; run `canfar auth login`"),
    ("old schema", r"schema version 1, this controller reads version 2 \(canfar 1.5\)"),
])
def test_an_unusable_config_is_one_error_naming_file_record_and_remedy(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch,
        case: str, problem: str) -> None:
    config = tmp_path / "config.yaml"
    if case == "missing certificate":
        x509_config(config, url=url, certificate=tmp_path / "cadcproxy.pem", monkeypatch=monkeypatch)
    else:
        login = endpoint.issue()
        oidc_config(config, url=url, token_url=endpoint.url, login=login, monkeypatch=monkeypatch)
        text = config.read_text()
        if case == "no tokens":
            text = text.replace(login["access_token"], "''").replace(login["refresh_token"], "''")
        elif case == "no active record":
            text = text.replace("authentication: srcnet", "authentication: ''")
        else:
            text = text.replace("version: 2", "version: 1")
        config.write_text(text)
    with pytest.raises(CredentialError, match=problem) as raised:
        settings_for(config)
    assert str(config) in str(raised.value)
    assert CLIENT_SECRET not in str(raised.value)


def test_secrets_are_never_logged_or_shown(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    endpoint.access_life = 0.5
    login = endpoint.issue()
    config = oidc_config(tmp_path / "config.yaml", url=url, token_url=endpoint.url, login=login,
                         monkeypatch=monkeypatch)
    caplog.set_level(logging.DEBUG)
    time.sleep(0.6)  # the access token has expired
    with Session(settings_for(config)) as client:
        client.fetch()
        shown = repr(client) + repr(client._tokens) + repr(client.credential())
    assert endpoint.grants, "the expired access token was refreshed"
    for secret in (login["access_token"], login["refresh_token"], CLIENT_SECRET):
        assert secret not in caplog.text and secret not in shown


def test_the_async_session_uses_the_login_too(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, simulator: Simulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = oidc_config(tmp_path / "config.yaml", url=url, token_url=endpoint.url, login=endpoint.issue(),
                         monkeypatch=monkeypatch)

    async def fetch() -> list[object]:
        async with AsyncSession(settings_for(config)) as client:
            return list(await client.fetch())

    assert asyncio.run(fetch()) == []
    assert [r.status for r in simulator.requests] == [200]
