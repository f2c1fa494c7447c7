"""What ``Session`` and ``AsyncSession`` share: settings, credentials, httpx options, retry policy.

The two drivers differ only in how they wait and send (one call after another, or concurrently);
everything else a request needs (its URL, its credential headers, the redaction of server text,
the hint added to an error, the exchange with its retry policy) is decided once, here, so the
sync and async clients cannot drift apart. The drivers themselves are in ``session``.
"""

from __future__ import annotations

import logging
import re
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from controller import __version__
from controller.client.canfarconfig import CanfarLogin, read_login
from controller.client.credentials import CertificateSource, CredentialStatus, TokenSource
from controller.client.exchange import Call, Exchange, Request, RequestHook, RetryPolicy, exchange
from controller.client.oidc import OidcLogin, RefreshHook
from controller.client.settings import ClientSettings, load_settings
from controller.errors import APIError

log = logging.getLogger("controller.client")


class SessionBase:
    """What both drivers share: settings, auth, httpx options and the retry policy."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        on_request: RequestHook | None = None,
        on_refresh: RefreshHook | None = None,
        **overrides: Any,
    ) -> None:
        if settings is None:
            settings = load_settings(**overrides)
        elif overrides:
            settings = load_settings(**{**dict(settings), **overrides})
        self.settings = settings
        self._url = settings.require_url()
        self._base = self._url + "/"
        #: A base URL not ending in /v1 (or /v2...): every path under it is likely a 404.
        self._unversioned = re.search(r"/v[0-9]+$", urlsplit(self._url).path) is None
        self._login = canfar_login(settings)
        self._tokens: TokenSource | OidcLogin = TokenSource(token=settings.token, path=settings.token_file)
        certificate = settings.certificate if self._login is None else self._login.certificate
        self._certificate = (CertificateSource(certificate, verify=settings.verify)
                             if certificate is not None and self._use_certificate() else None)
        if self._login is not None and self._login.mode == "oidc":
            self._tokens = OidcLogin(self._login, store=settings.credential_dir, timeout=settings.timeout,
                                     verify=settings.verify, on_refresh=on_refresh)
        self._policy = RetryPolicy(retries=settings.retries, backoff=settings.backoff)
        self._on_request = on_request

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.settings.safe_url!r}, auth={self.settings.auth_mode!r})"

    def _client_options(self) -> dict[str, Any]:
        settings = self.settings
        # Keep every connection of the pool alive: at full concurrency, closing the idle ones
        # would mean a new TCP (and TLS) handshake for most requests of the next burst.
        limits = httpx.Limits(max_connections=settings.concurrency,
                              max_keepalive_connections=settings.concurrency)
        if self._certificate is not None:
            verify: bool | ssl.SSLContext = self._certificate.context
        else:
            # A plain http:// service has no TLS to verify; skipping the CA bundle saves ~17 ms of start.
            verify = settings.verify and self._url.startswith("https:")
        return {
            "verify": verify,
            "timeout": httpx.Timeout(settings.timeout),
            "limits": limits,
            "headers": {
                "Accept": "application/json, text/plain",
                "User-Agent": f"canfar-controller/{__version__}",
            },
            "follow_redirects": False,
        }

    def credential(self) -> CredentialStatus:
        """Which credential requests carry, from where, and until when: nothing secret."""
        if isinstance(self._tokens, OidcLogin):
            return self._tokens.status()
        if self._certificate is not None:
            return self._certificate.status(self._login)
        settings = self.settings
        source = ("CANFAR_TOKEN" if settings.token is not None else
                  f"token file {settings.token_file}" if settings.token_file is not None else "none")
        return CredentialStatus(kind="token" if self._tokens.configured else "none", source=source,
                                usable=self._tokens.configured)

    def _use_certificate(self) -> bool:
        if self._tokens.configured:
            log.warning("both a token and a certificate are configured: using the token")
            return False
        return True

    def _headers(self) -> dict[str, str] | None:
        """This attempt's credential headers; ``CredentialError`` (nothing is sent) if a file is unusable.

        Done here rather than in an ``httpx.Auth`` flow, so the error comes from our own code
        path, before httpx is involved, and each retry picks up a rotated token.
        """
        if self._certificate is not None:
            self._certificate.check()
        token = self._tokens.current()
        return None if token is None else {"Authorization": "Bearer " + token.get_secret_value()}

    def _redact(self, text: str) -> str:
        """Scrub the token we sent from server text, in case a proxy echoes it back."""
        token = self._tokens.last
        secret = token.get_secret_value() if token is not None else ""
        return text.replace(secret, "**********") if secret and secret in text else text

    def _hint(self, error: APIError) -> str | None:
        """What the user can do about ``error``, when it is a mistake of ours the client can see."""
        if error.status == 401 and not self._tokens.configured and self._certificate is None:
            return ("no token set: set CANFAR_TOKEN or CANFAR_TOKEN_FILE (or pass --token-file), "
                    "or CANFAR_CERTIFICATE (--certificate), or log in with `canfar auth login`")
        if error.status == 401 and self._login is not None:
            return f"the service refused the login of {self._login.where}: run `canfar auth login`"
        if error.status == 404 and self._unversioned:
            return (f"the server URL {self.settings.safe_url} has no API version: "
                    f"did you mean {_versioned(self.settings.safe_url or '')}?")
        if isinstance(error.__cause__, httpx.ConnectError):
            return f"cannot connect to {self.settings.safe_url}"
        return None

    def _exchange(self, call: Call[Any]) -> Exchange[Any]:
        return exchange(call, self._policy, hook=self._on_request, redact=self._redact, hint=self._hint)


def _versioned(url: str) -> str:
    """``url`` with the API version: a bare host gets CANFAR's ``/skaha/v1``, any other path ``/v1``."""
    base = url.rstrip("/")
    return f"{base}/skaha/v1" if urlsplit(base).path in ("", "/") else f"{base}/v1"


def canfar_login(settings: ClientSettings) -> CanfarLogin | None:
    """The canfar config's login, when one is configured and no explicit credential beats it."""
    if settings.config is None or settings.explicit_credential:
        return None
    return read_login(settings.config)


def send_kwargs(base: str, request: Request, headers: dict[str, str] | None) -> dict[str, Any]:
    """The arguments of ``httpx``'s ``request`` for one attempt, the same for both drivers."""
    # One absolute URL string: httpx then parses one URL, instead of joining the base URL and
    # merging params into copies (30 of 85 us per request). urlencode is what httpx itself uses.
    url = base + request.path + ("?" + urlencode(request.params) if request.params else "")
    return {"method": request.method, "url": url, "headers": headers}
