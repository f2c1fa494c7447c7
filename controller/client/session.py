"""``Session`` and ``AsyncSession``: thin drivers that execute the operations of ``operations``.

All request building, parsing, error mapping and retry decisions live in ``operations``; the two
classes here only move bytes. The sync driver runs a batch's calls one after another (it serves
scripts and the command line, where order and simplicity beat speed; use ``AsyncSession`` for
many ids). The async driver runs them concurrently, at most ``concurrency`` requests at a time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx

from controller import __version__
from controller.client import operations as ops
from controller.client.canfarconfig import CanfarLogin, read_login
from controller.client.credentials import CertificateSource, CredentialStatus, TokenSource
from controller.client.exchange import (
    Backoff,
    Call,
    Exchange,
    Reply,
    Request,
    RequestHook,
    RetryPolicy,
    exchange,
)
from controller.client.oidc import OidcLogin, RefreshHook
from controller.client.operations import Batch, Ids, Operation, Outcomes
from controller.client.settings import ClientSettings, load_settings
from controller.client.transport import pooled_transport
from controller.errors import APIError, AuthenticationError
from controller.models import Event, ObservedSession, PlatformContext, PlatformStats, SessionInfo
from controller.rules import SessionSpec

log = logging.getLogger("controller.client")

R = TypeVar("R")


class _Base:
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


def _send_kwargs(base: str, request: Request, headers: dict[str, str] | None) -> dict[str, Any]:
    # One absolute URL string: httpx then parses one URL, instead of joining the base URL and
    # merging params into copies (30 of 85 us per request). urlencode is what httpx itself uses.
    url = base + request.path + ("?" + urlencode(request.params) if request.params else "")
    return {"method": request.method, "url": url, "headers": headers}


class Session(_Base):
    """Synchronous client of the session service; calls over many ids run one after another."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        on_request: RequestHook | None = None,
        on_refresh: RefreshHook | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(settings, on_request=on_request, on_refresh=on_refresh, **overrides)
        self._http = httpx.Client(transport=transport, **self._client_options())

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- driver --

    def _run(self, operation: Operation[R]) -> R:
        try:
            batch = next(operation)
            while True:
                batch = operation.send(self._execute(batch))
        except StopIteration as stop:
            return stop.value

    def _execute(self, batch: Batch) -> Outcomes:
        outcomes: dict[str, Any] = {}
        for key, call in batch.items():
            try:
                outcomes[key] = self._send(call)
            except APIError as error:
                outcomes[key] = error
        return outcomes

    def _send(self, call: Call[R]) -> R:
        """One call; an OIDC login is refreshed first when due, and once more after a 401."""
        tokens = self._tokens
        if not isinstance(tokens, OidcLogin):
            return self._attempt(call)
        tokens.prepare_sync()
        used = tokens.current()
        try:
            return self._attempt(call)
        except AuthenticationError:
            if not tokens.renew_sync(used):
                raise
        return self._attempt(call)

    def _attempt(self, call: Call[R]) -> R:
        steps = self._exchange(call)
        step = next(steps)
        try:
            while True:
                if isinstance(step, Backoff):
                    time.sleep(step.seconds)
                    step = steps.send(None)
                    continue
                headers = self._headers()
                started = time.monotonic()
                try:
                    reply: httpx.Response | httpx.HTTPError = self._http.request(
                        **_send_kwargs(self._base, step, headers)
                    )
                except httpx.HTTPError as exc:
                    reply = exc
                step = steps.send(Reply(reply, time.monotonic() - started))
        except StopIteration as stop:
            return stop.value

    # -- operations (each one line: the operation is in ``operations``) --

    def fetch(self, kind: str | None = None, status: str | None = None, view: str | None = None
              ) -> list[SessionInfo]:
        """The user's sessions, optionally filtered by kind (wire ``type``), status and view."""
        return self._run(ops.fetch(kind, status, view))

    def observe(self, kind: str | None = None) -> list[ObservedSession]:
        """The user's sessions, only the fields the controller needs (``ObservedSession``)."""
        return self._run(ops.observe(kind))

    def stats(self) -> PlatformStats:
        """Platform statistics (``view=stats``)."""
        return self._run(ops.stats())

    def info(self, ids: Ids) -> list[SessionInfo]:
        """Details of one session or many, in the order given."""
        return self._run(ops.info(ids))

    def logs(self, ids: Ids) -> dict[str, str]:
        """Log text by id."""
        return self._run(ops.logs(ids))

    def events(self, ids: Ids) -> dict[str, list[Event]]:
        """Kubernetes events by id."""
        return self._run(ops.events(ids))

    def create(self, spec: SessionSpec, *, replicas: int = 1) -> list[str]:
        """Create ``spec`` (``name-1``..``name-N`` with ``replicas``); returns the new ids in order."""
        return self._run(ops.create(spec, replicas))

    def destroy(self, ids: Ids) -> list[str]:
        """Delete sessions; returns the ids the service accepted."""
        return self._run(ops.destroy(ids))

    def destroy_with(self, prefix: str, kind: str | None = "headless", status: str | None = "Completed"
                     ) -> list[str]:
        """Delete sessions whose name matches ``prefix`` (literal, or a regex with metacharacters)."""
        return self._run(ops.destroy_with(prefix, kind, status))

    def connect(self, ids: Ids) -> list[str]:
        """Open running sessions in a browser; returns the ids opened, warns about the others."""
        return self._run(ops.connect(ids))

    def context(self) -> PlatformContext:
        """The platform's session resource options and defaults (``/context``)."""
        return self._run(ops.context())

    def renew(self, ids: Ids) -> list[str]:
        """Extend sessions' lifetimes; returns the renewed ids."""
        return self._run(ops.renew(ids))


class AsyncSession(_Base):
    """Asynchronous client; calls over many ids run concurrently, at most ``concurrency`` at once."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: RequestHook | None = None,
        on_refresh: RefreshHook | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(settings, on_request=on_request, on_refresh=on_refresh, **overrides)
        options = self._client_options()
        if transport is None:  # many small pools: the cost of placing a request grows with a pool's size
            transport = pooled_transport(self.settings.concurrency, verify=options["verify"])
        self._http = httpx.AsyncClient(transport=transport, **options)
        # Per session, not per call: concurrent calls share the bound.
        self._slots = asyncio.Semaphore(self.settings.concurrency)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- driver --

    async def _run(self, operation: Operation[R]) -> R:
        try:
            batch = next(operation)
            while True:
                batch = operation.send(await self._execute(batch))
        except StopIteration as stop:
            return stop.value

    async def _execute(self, batch: Batch) -> Outcomes:
        keys = list(batch)
        replies = await asyncio.gather(*(self._send(batch[key]) for key in keys), return_exceptions=True)
        for reply in replies:
            # Only service failures become outcomes; anything else (bad token file, a bug) is raised.
            if isinstance(reply, BaseException) and not isinstance(reply, APIError):
                raise reply
        return dict(zip(keys, replies, strict=True))

    async def _send(self, call: Call[R]) -> R:
        """One call; an OIDC login is refreshed first when due, and once more after a 401.

        A 401 means the service did nothing, so even a create is safe to send again.
        """
        tokens = self._tokens
        if not isinstance(tokens, OidcLogin):
            return await self._attempt(call)
        await tokens.prepare()
        used = tokens.current()
        try:
            return await self._attempt(call)
        except AuthenticationError:
            if not await tokens.renew(used):
                raise
        return await self._attempt(call)

    async def _attempt(self, call: Call[R]) -> R:
        steps = self._exchange(call)
        step = next(steps)
        try:
            while True:
                if isinstance(step, Backoff):
                    await asyncio.sleep(step.seconds)
                    step = steps.send(None)
                    continue
                headers = self._headers()
                async with self._slots:
                    started = time.monotonic()
                    try:
                        reply: httpx.Response | httpx.HTTPError = await self._http.request(
                            **_send_kwargs(self._base, step, headers)
                        )
                    except httpx.HTTPError as exc:
                        reply = exc
                    seconds = time.monotonic() - started
                step = steps.send(Reply(reply, seconds))
        except StopIteration as stop:
            return stop.value

    # -- operations --

    async def fetch(self, kind: str | None = None, status: str | None = None, view: str | None = None
                    ) -> list[SessionInfo]:
        """The user's sessions, optionally filtered by kind (wire ``type``), status and view."""
        return await self._run(ops.fetch(kind, status, view))

    async def observe(self, kind: str | None = None) -> list[ObservedSession]:
        """The user's sessions, only the fields the controller needs (``ObservedSession``)."""
        return await self._run(ops.observe(kind))

    async def stats(self) -> PlatformStats:
        """Platform statistics (``view=stats``)."""
        return await self._run(ops.stats())

    async def info(self, ids: Ids) -> list[SessionInfo]:
        """Details of one session or many, in the order given."""
        return await self._run(ops.info(ids))

    async def logs(self, ids: Ids) -> dict[str, str]:
        """Log text by id."""
        return await self._run(ops.logs(ids))

    async def events(self, ids: Ids) -> dict[str, list[Event]]:
        """Kubernetes events by id."""
        return await self._run(ops.events(ids))

    async def create(self, spec: SessionSpec, *, replicas: int = 1) -> list[str]:
        """Create ``spec`` (``name-1``..``name-N`` with ``replicas``, concurrently); returns the new ids in order."""
        return await self._run(ops.create(spec, replicas))

    async def destroy(self, ids: Ids) -> list[str]:
        """Delete sessions; returns the ids the service accepted."""
        return await self._run(ops.destroy(ids))

    async def destroy_with(self, prefix: str, kind: str | None = "headless", status: str | None = "Completed"
                           ) -> list[str]:
        """Delete sessions whose name matches ``prefix`` (literal, or a regex with metacharacters)."""
        return await self._run(ops.destroy_with(prefix, kind, status))

    async def connect(self, ids: Ids) -> list[str]:
        """Open running sessions in a browser; returns the ids opened, warns about the others."""
        return await self._run(ops.connect(ids))

    async def context(self) -> PlatformContext:
        """The platform's session resource options and defaults (``/context``)."""
        return await self._run(ops.context())

    async def renew(self, ids: Ids) -> list[str]:
        """Extend sessions' lifetimes; returns the renewed ids."""
        return await self._run(ops.renew(ids))
