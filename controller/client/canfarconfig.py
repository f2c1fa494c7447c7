"""The canfar client's own login (``~/.canfar/config.yaml``, schema ``version: 2``) as a credential.

``canfar auth login`` keeps the server and the credential there: ``active`` names the
authentication record and the server; ``authentication`` holds X.509 records (``path`` to a proxy
certificate) and OIDC records (token endpoint, client id and secret, access and refresh tokens
and their expiry); ``servers`` holds each platform's ``url`` and ``version``. This module reads
that document (plain YAML, without importing canfar) and writes rotated tokens back into it the
way canfar itself does: the whole document, atomically, leaving every other field untouched.

Every problem is one ``CredentialError`` naming the file, the record and what to do, never a value.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from controller.client.credentials import jwt_claim
from controller.errors import CredentialError

#: Where canfar keeps its configuration.
DEFAULT_PATH = Path("~/.canfar/config.yaml")
#: The schema version canfar 1.5 writes.
SCHEMA_VERSION = 2
LOGIN_AGAIN = "run `canfar auth login`"


@dataclass(frozen=True, slots=True)
class Tokens:
    """An OIDC record's tokens and expiry (epoch seconds); ``obtained_at`` dates the access token."""

    access: SecretStr | None
    refresh: SecretStr | None
    access_expiry: float | None
    refresh_expiry: float | None
    obtained_at: float
    token_type: str | None = None
    scope: str | None = None

    def __repr__(self) -> str:
        return f"Tokens(access_expiry={self.access_expiry}, refresh_expiry={self.refresh_expiry})"


@dataclass(frozen=True, slots=True)
class OidcClient:
    """Where and as whom a refresh token is exchanged: the record's token endpoint and client."""

    token_url: str
    identity: str
    secret: SecretStr

    def __repr__(self) -> str:
        return f"OidcClient({self.token_url}, {self.identity})"


@dataclass(frozen=True, slots=True)
class CanfarLogin:
    """The active record and server of one canfar config."""

    path: Path
    record: str
    mode: str  # "x509" or "oidc"
    server: str | None
    url: str | None  # the server's base URL with its API version, e.g. https://host/skaha/v1
    certificate: Path | None = None
    client: OidcClient | None = None
    tokens: Tokens | None = None

    @property
    def where(self) -> str:
        """The file and record, as every message names them."""
        return f"canfar config {self.path}, record {self.record!r}"

    def error(self, problem: str) -> CredentialError:
        return CredentialError(f"{self.where}: {problem}; {LOGIN_AGAIN}")


def read_login(path: Path) -> CanfarLogin:
    """The active login of the canfar config at ``path``; ``CredentialError`` if it cannot be used."""
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialError(f"canfar config {path} does not exist; {LOGIN_AGAIN}, "
                              "or pass --token-file / --certificate") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise CredentialError(f"canfar config {path}: {reason}") from None
    return parse_login(path, text, os.stat(path).st_mtime)


def parse_login(path: Path, text: str, written_at: float) -> CanfarLogin:
    """``read_login`` without the reading; ``written_at`` dates tokens that carry no issue time."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        raise CredentialError(f"canfar config {path}: not a YAML mapping; {LOGIN_AGAIN}")
    if data.get("version") != SCHEMA_VERSION:
        raise CredentialError(f"canfar config {path}: schema version {data.get('version')!r}, this controller "
                              f"reads version {SCHEMA_VERSION} (canfar 1.5); {LOGIN_AGAIN} with canfar 1.5")
    active = _mapping(data.get("active"))
    name = active.get("authentication")
    if not isinstance(name, str) or not name:
        raise CredentialError(f"canfar config {path}: no active authentication record; {LOGIN_AGAIN}")
    record = _mapping(data.get("authentication")).get(name)
    login = CanfarLogin(path=path, record=name, mode=str(_mapping(record).get("mode")), server=None, url=None)
    if not isinstance(record, dict):
        raise login.error("the active record is missing from `authentication`")
    server, url = _server(data, active)
    login = replace(login, server=server, url=url)
    if login.mode == "x509":
        return _x509(login, record)
    if login.mode == "oidc":
        return _oidc(login, record, written_at)
    raise login.error(f"mode {login.mode!r} cannot be used (only x509 and oidc)")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _server(data: dict[str, Any], active: dict[str, Any]) -> tuple[str | None, str | None]:
    name = active.get("server")
    if not isinstance(name, str):
        return None, None
    server = _mapping(_mapping(data.get("servers")).get(name))
    url, version = server.get("url"), server.get("version")
    if not isinstance(url, str) or not url:
        return name, None
    return name, url.rstrip("/") + (f"/{version}" if isinstance(version, str) and version else "")


def _x509(login: CanfarLogin, record: dict[str, Any]) -> CanfarLogin:
    path = record.get("path")
    if not isinstance(path, str) or not path:
        raise login.error("the X.509 record names no certificate `path`")
    certificate = Path(path).expanduser()
    if not certificate.is_file():
        raise login.error(f"its certificate {certificate} does not exist")
    return replace(login, certificate=certificate)


def _oidc(login: CanfarLogin, record: dict[str, Any], written_at: float) -> CanfarLogin:
    token, expiry, client = (_mapping(record.get(key)) for key in ("token", "expiry", "client"))
    access, refresh = _secret(token.get("access")), _secret(token.get("refresh"))
    access_expiry, refresh_expiry = _number(expiry.get("access")), _number(expiry.get("refresh"))
    token_url = _mapping(record.get("endpoints")).get("token")
    identity, secret = client.get("identity"), _secret(client.get("secret"))
    oidc_client = (OidcClient(token_url, identity, secret)
                   if isinstance(token_url, str) and token_url and isinstance(identity, str) and identity
                   and secret is not None else None)
    if access is None and (refresh is None or oidc_client is None):
        raise login.error("the OIDC record holds no access token and cannot refresh one "
                          "(it needs a refresh token, a token endpoint and client credentials)")
    if refresh is not None and oidc_client is None:
        refresh = None  # unusable without a client: behave as a record without refresh
    issued = _number(jwt_claim(access, "iat")) if access is not None else None
    obtained = issued if issued is not None else written_at
    if access_expiry is not None:
        obtained = min(obtained, access_expiry)
    tokens = Tokens(access=access, refresh=refresh, access_expiry=access_expiry, refresh_expiry=refresh_expiry,
                    obtained_at=obtained, token_type=_text(token.get("token_type")), scope=_text(token.get("scope")))
    return replace(login, client=oidc_client, tokens=tokens)


def _secret(value: Any) -> SecretStr | None:
    return SecretStr(value.strip()) if isinstance(value, str) and value.strip() else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def write_tokens(login: CanfarLogin, used_refresh: SecretStr | None, tokens: Tokens) -> bytes | None:
    """Store ``tokens`` in the record of ``login`` in its file; returns the bytes written.

    Written as canfar writes its config: the whole document, to a temporary file beside it,
    fsynced, renamed over it, with the file's mode kept (canfar's is 0600). A file without write
    permission for its owner is read-only (``PermissionError``) even to root. Returns
    ``None`` without writing when the record no longer holds ``used_refresh``: the user logged in
    again meanwhile, and their new login wins. ``OSError`` when the file cannot be replaced.
    """
    path = login.path
    mode = os.stat(path).st_mode & 0o777
    if not mode & 0o200:  # made read-only on purpose (a Secret, a systemd credential): even root leaves it
        raise PermissionError(errno.EACCES, "the file is read-only", str(path))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    record = _mapping(_mapping(_mapping(data).get("authentication")).get(login.record))
    current = _secret(_mapping(record.get("token")).get("refresh"))
    if (current.get_secret_value() if current else None) != (used_refresh.get_secret_value()
                                                             if used_refresh else None):
        return None
    token = record.setdefault("token", {})
    assert tokens.access is not None
    token["access"] = tokens.access.get_secret_value()
    if tokens.refresh is not None:
        token["refresh"] = tokens.refresh.get_secret_value()
    for key, value in (("token_type", tokens.token_type), ("scope", tokens.scope)):
        if value is not None:
            token[key] = value
    expiry = record.setdefault("expiry", {})
    for key, when in (("access", tokens.access_expiry), ("refresh", tokens.refresh_expiry)):
        if when is None:
            expiry.pop(key, None)
        else:
            expiry[key] = when
    text = yaml.safe_dump(data, default_flow_style=False, sort_keys=True, indent=2).encode()
    replace_file(path, text, mode=mode)
    return text


def replace_file(path: Path, content: bytes, *, mode: int = 0o600) -> None:
    """Write ``content`` to ``path`` atomically and durably (temporary file, fsync, rename) with ``mode``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself durable too, where directories can be opened
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
