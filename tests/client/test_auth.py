"""Settings and credentials: CANFAR_* names, rotated token files, certificates, and no leaked secrets."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.client import ClientSettings, Session
from controller.errors import AuthenticationError, ConfigError
from tests.client.conftest import TOKEN
from tests.tools import require_tool


@pytest.fixture
def proxy_certificate(tmp_path: Path) -> Path:
    """A throw-away self-signed certificate and key in one PEM file, like cadcproxy.pem."""
    openssl = require_tool("openssl")
    pem = tmp_path / "proxy.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sim-user",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )
    pem.write_text((tmp_path / "cert.pem").read_text() + (tmp_path / "key.pem").read_text())
    return pem


def test_settings_read_the_canfar_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The canfar client's variable names configure the client."""
    monkeypatch.setenv("CANFAR_URL", "https://example.org/skaha/v1/")
    monkeypatch.setenv("CANFAR_TOKEN", TOKEN)
    monkeypatch.setenv("CANFAR_TIMEOUT", "12")
    monkeypatch.setenv("CANFAR_CONCURRENCY", "8")
    monkeypatch.setenv("CANFAR_RETRIES", "1")
    monkeypatch.setenv("CANFAR_CERTIFICATE", str(tmp_path / "cert.pem"))
    settings = ClientSettings()
    assert settings.url == "https://example.org/skaha/v1"
    assert settings.token is not None and settings.token.get_secret_value() == TOKEN
    assert (settings.timeout, settings.concurrency, settings.retries) == (12, 8, 1)
    assert settings.certificate == tmp_path / "cert.pem"
    assert settings.auth_mode == "token"  # a token beats the certificate


def test_the_token_file_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """CANFAR_TOKEN_FILE selects token-file auth when no CANFAR_TOKEN is set."""
    monkeypatch.setenv("CANFAR_TOKEN_FILE", str(tmp_path / "token"))
    settings = ClientSettings()
    assert (settings.token_file, settings.auth_mode) == (tmp_path / "token", "token-file")


@pytest.mark.parametrize(
    ("values", "field"),
    [({"url": "ftp://host"}, "CANFAR_URL"), ({"concurrency": 0}, "CANFAR_CONCURRENCY"),
     ({"concurrency": 129}, "CANFAR_CONCURRENCY"), ({"timeout": 0}, "CANFAR_TIMEOUT")],
)
def test_invalid_settings_are_a_config_error_naming_the_variable(values: dict[str, Any], field: str) -> None:
    """Bad values raise ConfigError that names the CANFAR_ variable."""
    with pytest.raises(ConfigError, match=field):
        Session(**values)


def test_a_missing_url_is_a_config_error() -> None:
    """Without CANFAR_URL or url= the client says how to provide it."""
    with pytest.raises(ConfigError, match="CANFAR_URL"):
        Session(token=TOKEN)


@pytest.mark.usefixtures("flavour")
def test_a_rotated_token_file_is_read_again(serve: Any, make_client: Any, tmp_path: Path) -> None:
    """Replacing the token file's content takes effect on the next request, without a new client."""
    _sim, url = serve(token="new-token-abcdef")
    token_file = tmp_path / "token"
    token_file.write_text("old-token-abcdef\n")
    client = make_client(url=url, token=None, token_file=token_file)
    with pytest.raises(AuthenticationError):
        client.fetch()
    replacement = tmp_path / "token.tmp"
    replacement.write_text("new-token-abcdef\n")
    os.replace(replacement, token_file)  # how secret mounts and rotating agents swap files
    assert client.fetch() == []


@pytest.mark.usefixtures("flavour")
def test_a_missing_token_file_is_a_config_error(make_client: Any, tmp_path: Path) -> None:
    """An unreadable token file fails clearly, not as a 401 or a transport error."""
    client = make_client(token=None, token_file=tmp_path / "absent")
    with pytest.raises(ConfigError, match="cannot read token file"):
        client.fetch()


def test_an_empty_token_file_is_a_config_error(url: str, tmp_path: Path) -> None:
    """An empty token file is reported as such."""
    token_file = tmp_path / "token"
    token_file.write_text("\n")
    with Session(url=url, token_file=token_file) as session, pytest.raises(ConfigError, match="is empty"):
        session.fetch()


def test_an_unloadable_certificate_is_a_config_error(url: str, tmp_path: Path) -> None:
    """A certificate file that is not a PEM key pair fails when the client is built, naming the file."""
    bad = tmp_path / "proxy.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load certificate"):
        Session(url=url, certificate=bad)


def test_the_token_is_never_in_reprs(url: str, tmp_path: Path) -> None:
    """repr of the settings and of both session classes hides the token."""
    settings = ClientSettings(url=url, token=TOKEN)
    with Session(settings) as session:
        shown = repr(settings) + str(settings) + repr(session) + repr(session.settings)
    assert TOKEN not in shown
    assert "**" in repr(settings)


def test_the_url_password_is_hidden_in_reprs() -> None:
    """A user:password in the URL does not show in the session's repr."""
    with Session(url="https://user:hunter2@example.org/skaha/v1", token=TOKEN) as session:
        assert "hunter2" not in repr(session)


def test_the_token_is_never_logged(url: str, sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Debug logs of a retried request (ours and httpx's) never contain the token."""
    caplog.set_level(logging.DEBUG)
    sim.inject_fault(method="GET", path="/session", status=500, count=1)
    with Session(url=url, token=TOKEN, backoff=0.001) as session:
        session.fetch()
    assert "retry 1 of 3" in caplog.text
    assert TOKEN not in caplog.text


def test_the_bearer_token_is_sent(url: str, sim: Any) -> None:
    """The configured token is accepted by a server that requires exactly it."""
    with Session(url=url, token=TOKEN) as session:
        assert session.fetch() == []
    assert sim.requests[-1].status == 200


def test_a_certificate_alone_is_used_without_a_token(url: str, sim: Any, proxy_certificate: Path) -> None:
    """With only a certificate it is loaded and no bearer token is sent (over plain HTTP: a 401)."""
    with Session(url=url, certificate=proxy_certificate) as session:
        assert session.settings.auth_mode == "certificate"
        with pytest.raises(AuthenticationError):
            session.fetch()
    assert sim.requests[-1].status == 401


def test_a_token_beats_a_certificate(
    url: str, proxy_certificate: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Given both, the token is sent (the request succeeds) and a warning says the certificate is unused."""
    with Session(url=url, token=TOKEN, certificate=proxy_certificate) as session:
        assert session.fetch() == []
    assert "using the token" in caplog.text
