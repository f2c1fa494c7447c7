"""How to reach the session service: URL, credentials, timeouts, retry and concurrency limits.

Names and the ``CANFAR_`` prefix match the canfar client, so the same environment drives both
(``CANFAR_URL`` is the full base URL including ``/v1``). Credentials are held so that no repr,
log line or error can show them: the token is a ``SecretStr`` and the token file is only a path.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.errors import ConfigError


class ClientSettings(BaseSettings):
    """Settings of ``Session`` and ``AsyncSession``, read from ``CANFAR_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CANFAR_", extra="ignore", validate_default=True)

    url: str | None = None
    """Base URL of the session service including the API version, e.g. ``https://host/skaha/v1``."""

    token: SecretStr | None = None
    """Bearer token; beats ``token_file`` and ``certificate``."""

    token_file: Path | None = None
    """File holding a bearer token, re-read whenever it changes so rotated tokens keep working."""

    certificate: Path | None = None
    """X.509 proxy certificate (PEM with key), used only when no token is configured."""

    config: Path | None = None
    """The canfar client's config (``~/.canfar/config.yaml``, env ``CANFAR_CONFIG``): its active server
    and login are used when no token, token file or certificate is given."""

    credential_dir: Path | None = None
    """Where a login refreshed from a read-only canfar config is kept (the controller's memory directory)."""

    timeout: float = Field(30.0, gt=0, le=300)
    """Seconds allowed for connect, read, write and pool waits of one attempt."""

    concurrency: int = Field(32, ge=1, le=128)
    """Most requests in flight at once (async fan-out and connection pool size)."""

    retries: int = Field(3, ge=0, le=10)
    """Extra attempts for idempotent requests after a transport error or a 5xx."""

    backoff: float = Field(0.5, ge=0, le=60)
    """First retry delay in seconds; doubled per attempt, with jitter."""

    verify: bool = True
    """Verify the server's TLS certificate. Only tests against self-signed servers turn this off."""

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError(f"must be an http(s) URL like https://host/skaha/v1, got {_redact_url(value)!r}")
        return value

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def require_url(self) -> str:
        """The base URL, or a ``ConfigError`` that says how to provide it."""
        if self.url is None:
            raise ConfigError("no session service URL: set CANFAR_URL (https://host/skaha/v1) or --server, "
                              "or log in with `canfar auth login`")
        return self.url

    @property
    def safe_url(self) -> str | None:
        """The URL with any user:password part hidden, for reprs and log lines."""
        return None if self.url is None else _redact_url(self.url)

    @property
    def auth_mode(self) -> str:
        """Which credential requests carry: ``token``, ``token-file``, ``certificate`` or ``none``."""
        if self.token is not None:
            return "token"
        if self.token_file is not None:
            return "token-file"
        if self.certificate is not None:
            return "certificate"
        if self.config is not None:
            return "canfar-config"
        return "none"

    @property
    def explicit_credential(self) -> bool:
        """Whether a token, token file or certificate was given: those always beat the canfar config."""
        return self.token is not None or self.token_file is not None or self.certificate is not None


def load_settings(**values: object) -> ClientSettings:
    """``ClientSettings`` from the environment and ``values``, or a ``ConfigError`` naming each problem.

    The error repeats neither the rejected values nor pydantic's echo of them, so a token that
    ended up in the wrong variable is not printed.
    """
    try:
        return ClientSettings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"CANFAR_{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise ConfigError(f"invalid client settings: {problems}") from None


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
