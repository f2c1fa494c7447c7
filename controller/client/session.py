"""``Session`` and ``AsyncSession``: thin drivers that execute the operations of ``operations``.

All request building, parsing, error mapping and retry decisions live in ``operations``, and
what both drivers need to build a request (credentials, httpx options, the retry policy) in
``base``; the two classes here only move bytes. The sync driver runs a batch's calls one after
another (it serves scripts and the command line, where order and simplicity beat speed; use
``AsyncSession`` for many ids). The async driver runs them concurrently, at most
``concurrency`` requests at a time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import httpx

from controller.client import operations as ops
from controller.client.base import SessionBase, canfar_login, send_kwargs
from controller.client.exchange import Backoff, Call, Reply, RequestHook
from controller.client.oidc import OidcLogin, RefreshHook
from controller.client.operations import Batch, Ids, Operation, Outcomes
from controller.client.settings import ClientSettings
from controller.client.transport import pooled_transport
from controller.errors import APIError, AuthenticationError
from controller.models import Event, ObservedSession, PlatformContext, PlatformStats, SessionInfo
from controller.rules import SessionSpec

__all__ = ["AsyncSession", "Session", "canfar_login"]

R = TypeVar("R")


class Session(SessionBase):
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
                        **send_kwargs(self._base, step, headers)
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


class AsyncSession(SessionBase):
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
                            **send_kwargs(self._base, step, headers)
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
