"""Settings and credentials: CANFAR_* names, rotated token files, certificates, and no leaked secrets."""

from __future__ import annotations

import http.server
import json
import logging
import os
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.client import ClientSettings, Session
from controller.errors import AuthenticationError, ConfigError, CredentialError
from tests.client.conftest import TOKEN
from tests.tools import require_tool


def make_certificate(directory: Path, user: str) -> Path:
    """A throw-away self-signed certificate for ``user`` and its key in one PEM file, like cadcproxy.pem."""
    openssl = require_tool("openssl")
    cert, key, pem = (directory / f"{user}.{suffix}" for suffix in ("crt", "key", "pem"))
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={user}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    pem.write_text(cert.read_text() + key.read_text())
    return pem


@pytest.fixture
def proxy_certificate(tmp_path: Path) -> Path:
    return make_certificate(tmp_path, "sim-user")


@pytest.fixture
def tls_whoami(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    """An HTTPS server that requires a client certificate from two users and lists one session named after it.

    It closes the connection after each answer, so every request makes a new TLS handshake and
    shows the certificate the client holds at that moment.
    """
    users = [make_certificate(tmp_path, user) for user in ("alice", "bob")]
    trusted = tmp_path / "trusted.crt"
    trusted.write_text("".join((tmp_path / f"{user}.crt").read_text() for user in ("alice", "bob")))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(users[0]))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(str(trusted))

    class WhoAmI(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            user = dict(item[0] for item in peer["subject"])["commonName"]
            body = json.dumps([{"id": "abcdefgh", "name": user}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WhoAmI)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/skaha/v1", users
    finally:
        server.shutdown()
        server.server_close()


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


@pytest.mark.parametrize(
    ("make_file", "problem"),
    [
        (lambda path: None, "no such file or directory"),
        (lambda path: path.mkdir(), "is a directory"),
        (lambda path: path.write_bytes(b"\xff\xfe" + TOKEN.encode()), "not UTF-8 text"),
        (lambda path: path.write_text(" \n"), "is empty"),
    ],
    ids=["missing", "directory", "not-utf8", "empty"],
)
@pytest.mark.usefixtures("flavour")
def test_an_unusable_token_file_is_one_credential_error_and_nothing_is_sent(
    make_client: Any, sim: Any, tmp_path: Path, make_file: Callable[[Path], None], problem: str
) -> None:
    """Each way a token file can be unusable is one CredentialError line naming the file; no request leaves."""
    token_file = tmp_path / "token"
    make_file(token_file)
    client = make_client(token=None, token_file=token_file)
    with pytest.raises(CredentialError) as caught:
        client.fetch()
    assert str(caught.value) == f"token file {token_file}: {problem}"
    assert isinstance(caught.value, ConfigError)
    assert TOKEN not in str(caught.value)
    assert sim.requests == []


@pytest.mark.usefixtures("flavour")
def test_a_token_file_that_vanishes_fails_calls_until_it_is_back(make_client: Any, tmp_path: Path) -> None:
    """A token file removed after it worked fails the next call (not a 401 with a stale token); restored, it works."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    client = make_client(token=None, token_file=token_file)
    assert client.fetch() == []
    token_file.unlink()
    with pytest.raises(CredentialError, match="no such file"):
        client.fetch()
    token_file.write_text(TOKEN + "\n")
    assert client.fetch() == []


@pytest.mark.usefixtures("flavour")
def test_every_call_of_a_many_id_operation_fails_with_the_credential_error(
    make_client: Any, sim: Any, tmp_path: Path
) -> None:
    """A batch (destroy of several ids) raises the CredentialError itself, not a BatchError of it."""
    client = make_client(token=None, token_file=tmp_path / "absent")
    with pytest.raises(CredentialError, match="absent"):
        client.destroy(["aaaaaaaa", "bbbbbbbb"])
    assert sim.requests == []


@pytest.mark.usefixtures("flavour")
def test_an_unloadable_certificate_fails_each_call_naming_the_file(
    make_client: Any, sim: Any, tmp_path: Path
) -> None:
    """A certificate file that is not a PEM key pair is a CredentialError from the call, not the constructor."""
    bad = tmp_path / "proxy.pem"
    bad.write_text("not a certificate")
    client = make_client(token=None, certificate=bad)
    with pytest.raises(CredentialError, match=f"certificate {bad}: not a PEM certificate with its private key"):
        client.fetch()
    assert sim.requests == []


def test_a_rotated_certificate_is_used_for_the_next_connection(
    tls_whoami: tuple[str, list[Path]], tmp_path: Path
) -> None:
    """Replacing the certificate file (as a proxy renewal does) takes effect without a new client."""
    url, (alice, bob) = tls_whoami
    certificate = tmp_path / "cadcproxy.pem"
    certificate.write_text(alice.read_text())
    with Session(url=url, certificate=certificate, verify=False) as session:
        assert [s.name for s in session.fetch()] == ["alice"]
        replacement = tmp_path / "cadcproxy.pem.new"
        replacement.write_text(bob.read_text())
        os.replace(replacement, certificate)
        assert [s.name for s in session.fetch()] == ["bob"]


def test_a_vanished_certificate_fails_the_call(url: str, sim: Any, proxy_certificate: Path) -> None:
    """Once the certificate file is gone, calls fail with CredentialError although the old one is still loaded."""
    with Session(url=url, certificate=proxy_certificate) as session:
        with pytest.raises(AuthenticationError):  # plain HTTP: the certificate is loaded but never shown
            session.fetch()
        proxy_certificate.unlink()
        with pytest.raises(CredentialError, match=f"certificate {proxy_certificate}: no such file"):
            session.fetch()
    assert len(sim.requests) == 1


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
