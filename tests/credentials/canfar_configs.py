"""canfar configs written by canfar 1.5.2 itself: its models, validated and saved by its own editor.

Nothing here is hand-written YAML: the records are ``OIDCCredential`` / ``X509Credential``, the
document is ``Configuration`` and the file is written by ``Configuration.editor.save()``, exactly
as ``canfar auth login`` leaves it (mode 0600). ``read_back`` loads a file with the same models,
which is how the user's own ``canfar`` will read it after the controller wrote rotated tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from canfar.models.auth import Client, Endpoint, Expiry, OIDCCredential, Token, X509Credential
from canfar.models.config import Configuration
from canfar.models.http import Server
from pydantic import SecretStr

from tests.credentials.endpoint import CLIENT_ID, CLIENT_SECRET

RECORD = "srcnet"
SERVER = "simulated"


def _server(url: str) -> Server:
    base, version = url.rstrip("/").rsplit("/", 1)
    return Server(url=base, version=version, idp=RECORD, auths=["oidc", "x509"])  # type: ignore[arg-type]


def _save(path: Path, credential: OIDCCredential | X509Credential, url: str,
          monkeypatch: pytest.MonkeyPatch) -> Path:
    config = Configuration.from_document({
        "version": 2,
        "active": {"authentication": RECORD, "server": SERVER},
        "authentication": {RECORD: credential},
        "servers": {SERVER: _server(url)},
    })
    with monkeypatch.context() as patch:
        patch.setattr("canfar.models.config.CONFIG_PATH", path)
        config.editor.save()
    return path


def oidc_config(path: Path, *, url: str, token_url: str, login: dict[str, Any],
                monkeypatch: pytest.MonkeyPatch, refresh: bool = True) -> Path:
    """An OIDC record holding ``login`` (a token endpoint answer), as canfar's device login saves it."""
    credential = OIDCCredential(
        idp=RECORD,
        endpoints=Endpoint(discovery=token_url.rsplit("/", 1)[0] + "/.well-known/openid-configuration",
                           token=token_url),
        client=Client(identity=CLIENT_ID, secret=SecretStr(CLIENT_SECRET)),
        token=Token(access=SecretStr(login["access_token"]),
                    refresh=SecretStr(login["refresh_token"]) if refresh else None,
                    token_type="Bearer", scope=login.get("scope")),
        expiry=Expiry(access=login["expires_at"],
                      refresh=login["expires_at"] - login["expires_in"] + login["refresh_expires_in"]
                      if refresh and "refresh_expires_in" in login else None),
    )
    return _save(path, credential, url, monkeypatch)


def x509_config(path: Path, *, url: str, certificate: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An X.509 record pointing at ``certificate``, as ``canfar auth login`` with a CADC proxy saves it."""
    return _save(path, X509Credential(idp=RECORD, path=certificate), url, monkeypatch)


def read_back(path: Path) -> OIDCCredential:
    """The active OIDC record of ``path`` as canfar 1.5.2 reads it (validation included)."""
    config = Configuration.from_document(yaml.safe_load(path.read_text(encoding="utf-8")))
    record = config.authentication[config.active.authentication]
    assert isinstance(record, OIDCCredential)
    return record
