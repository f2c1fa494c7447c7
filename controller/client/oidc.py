"""An OIDC login that stays valid: the access token is refreshed before it expires, once for everyone.

The refresh is the one canfar makes (``canfar.auth.oidc.refresh``): the refresh-token grant,
POSTed as a form to the record's token endpoint with the client id and secret in HTTP Basic
(``client_secret_basic``). It runs at 80 % of the access token's life, in the background while
the token still works, and once more when the service answers 401. Every caller shares the one
refresh in flight, so 32 concurrent creates meeting an expired token cause one POST, not 32.

A rotated refresh token must outlive the process: it is written back into the canfar config
when that file can be replaced (the user's own ``canfar`` keeps working), and otherwise (a
Kubernetes Secret, a systemd credential) into ``canfar-login.json`` next to the controller's
memory, mode 0600, which is preferred as long as the source file is unchanged. A refused refresh
(``invalid_grant``, ``invalid_client``) makes every request fail with one ``CredentialError``
saying what to do, until the canfar config changes (the user logged in again).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from controller.client.canfarconfig import (
    LOGIN_AGAIN,
    CanfarLogin,
    OidcClient,
    Tokens,
    parse_login,
    replace_file,
    write_tokens,
)
from controller.client.credentials import CredentialStatus, jwt_claim
from controller.errors import CredentialError

log = logging.getLogger("controller.client")

#: Refresh once this part of the access token's life has passed.
REFRESH_AT = 0.8
#: An access token this close to its expiry (at most a tenth of its life) is not sent: the request
#: waits for the refresh.
EXPIRY_MARGIN = 5.0
#: After a refresh failed for a reason other than refusal (endpoint down), wait before trying again.
RETRY_AFTER_FAILURE = 15.0
#: The rotated copy of a read-only canfar config's login, beside the controller's memory.
COPY_NAME = "canfar-login.json"

RefreshHook = Callable[[str], None]


class RefreshRefused(Exception):
    """The token endpoint refused the refresh token or the client: only a new login helps."""


class RefreshFailed(Exception):
    """The refresh did not happen (no answer, 5xx, a malformed answer); a later one may work."""


def refresh_form(client: OidcClient, refresh: SecretStr) -> dict[str, Any]:
    """The refresh-token grant as httpx request arguments, as canfar (Authlib, client_secret_basic) sends it."""
    basic = f"{quote(client.identity, safe='')}:{quote(client.secret.get_secret_value(), safe='')}"
    return {
        "method": "POST",
        "url": client.token_url,
        "data": {"grant_type": "refresh_token", "refresh_token": refresh.get_secret_value()},
        "headers": {"Accept": "application/json",
                    "Authorization": "Basic " + base64.b64encode(basic.encode()).decode()},
    }


def read_answer(status: int, body: bytes, previous: Tokens, now: float) -> Tokens:
    """The new tokens from the token endpoint's answer; ``RefreshRefused`` / ``RefreshFailed`` otherwise.

    Like canfar: a missing ``refresh_token`` keeps the old one; ``expires_in`` dates the access
    token. The refresh token's expiry comes from ``refresh_expires_in`` or its own ``exp``; a
    rotated token of unknown life has none (canfar's ``None``), an unchanged one keeps its own.
    """
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise RefreshFailed(f"the token endpoint answered {status} without JSON")
    if status >= 400 or "error" in answer:
        error = str(answer.get("error", status))
        if error in ("invalid_grant", "invalid_client", "unauthorized_client"):
            raise RefreshRefused(error)
        raise RefreshFailed(f"the token endpoint answered {status} ({error})")
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise RefreshFailed("the token endpoint's answer has no access_token")
    expires_in = _seconds(answer.get("expires_in"))
    rotated = answer.get("refresh_token")
    refresh = SecretStr(rotated) if isinstance(rotated, str) and rotated else previous.refresh
    refresh_expiry: float | None
    if _seconds(answer.get("refresh_expires_in")) is not None:
        refresh_expiry = now + (_seconds(answer.get("refresh_expires_in")) or 0.0)
    elif isinstance(jwt_claim(refresh, "exp"), int | float):
        refresh_expiry = float(jwt_claim(refresh, "exp"))  # type: ignore[arg-type]
    else:
        refresh_expiry = previous.refresh_expiry if refresh == previous.refresh else None
    return Tokens(access=SecretStr(access), refresh=refresh,
                  access_expiry=None if expires_in is None else int(now) + expires_in,
                  refresh_expiry=refresh_expiry, obtained_at=now,
                  token_type=answer.get("token_type") or previous.token_type,
                  scope=answer.get("scope") or previous.scope)


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


class OidcLogin:
    """The access token of a canfar config's OIDC record, kept fresh; the bearer source of a session.

    ``prepare`` (async) or ``prepare_sync`` runs before each request and refreshes when due;
    ``current`` is the token to send; ``renew`` is called after a 401 with the token that got it.
    """

    def __init__(self, login: CanfarLogin, *, store: Path | None = None, timeout: float = 30.0,
                 verify: bool = True, clock: Callable[[], float] = time.time,
                 on_refresh: RefreshHook | None = None) -> None:
        self._path = login.path
        self._store = None if store is None else store / COPY_NAME
        self._timeout, self._verify, self._clock = timeout, verify, clock
        self.on_refresh = on_refresh
        self._sync_lock = threading.Lock()
        self._task: asyncio.Task[bool] | None = None
        self._retry_at = 0.0
        self._adopt(login, self._source_bytes())
        self.last: SecretStr | None = None

    def __repr__(self) -> str:
        return f"OidcLogin({self._login.where})"

    configured = True

    # -- the source file and the rotated copy ------------------------------------------------

    def _source_bytes(self) -> bytes:
        try:
            self._stamp = _stamp(self._path)
            return self._path.read_bytes()
        except OSError as exc:
            raise CredentialError(f"canfar config {self._path}: {(exc.strerror or str(exc)).lower()}") from None

    def _adopt(self, login: CanfarLogin, source: bytes) -> None:
        """Take the login of the file as it is now; the rotated copy wins while the file is unchanged."""
        assert login.tokens is not None
        self._login, self._tokens = login, login.tokens
        self._digest = hashlib.sha256(source).hexdigest()
        self._refused: str | None = None
        copy = self._read_copy()
        if copy is not None:
            self._tokens = copy
            log.info("using the refreshed login kept in %s (the canfar config %s is unchanged)",
                     self._store, self._path)

    def _read_copy(self) -> Tokens | None:
        if self._store is None:
            return None
        try:
            data = json.loads(self._store.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("source_sha256") != self._digest or \
                data.get("record") != self._login.record:
            return None
        try:
            tokens = data["tokens"]
            return Tokens(**{**tokens, "access": SecretStr(tokens["access"]),
                             "refresh": SecretStr(tokens["refresh"]) if tokens.get("refresh") else None})
        except (KeyError, TypeError):
            return None

    def _reload_if_changed(self) -> None:
        """Adopt a changed canfar config (a new ``canfar auth login``); one ``stat`` when it is unchanged."""
        try:
            if _stamp(self._path) == self._stamp:
                return
        except OSError:
            pass  # reported by reading it
        source = self._source_bytes()
        if hashlib.sha256(source).hexdigest() == self._digest:
            return
        try:
            stat_time = self._path.stat().st_mtime
        except OSError:
            stat_time = self._clock()
        login = parse_login(self._path, source.decode("utf-8", "replace"), stat_time)
        if login.mode != "oidc":
            raise login.error("the active record is no longer OIDC; restart the controller to use it")
        log.info("the canfar config %s changed: using its login", self._path)
        self._adopt(login, source)

    def _keep(self, used_refresh: SecretStr | None, tokens: Tokens) -> None:
        """Make the new tokens outlive the process: in the canfar config, else in the rotated copy."""
        try:
            written = write_tokens(self._login, used_refresh, tokens)
        except OSError as exc:
            written = None
            reason = (exc.strerror or str(exc)).lower()
        else:
            reason = "it holds a newer login" if written is None else ""
        if written is not None:
            self._digest = hashlib.sha256(written).hexdigest()
            with contextlib.suppress(OSError):
                self._stamp = _stamp(self._path)
            return
        if self._store is None:
            log.warning("cannot write the refreshed login to %s (%s), and there is no place for a copy: "
                        "it lives in memory only", self._path, reason)
            return
        data = {"source": str(self._path), "source_sha256": self._digest, "record": self._login.record,
                "tokens": {**asdict(tokens), "access": tokens.access.get_secret_value() if tokens.access else None,
                           "refresh": tokens.refresh.get_secret_value() if tokens.refresh else None}}
        try:
            self._store.parent.mkdir(parents=True, exist_ok=True)
            replace_file(self._store, json.dumps(data).encode(), mode=0o600)
        except OSError as exc:
            log.warning("cannot keep the refreshed login in %s: %s", self._store, exc)

    # -- what a request carries --------------------------------------------------------------

    def current(self) -> SecretStr | None:
        """The access token to send now; ``CredentialError`` once a refresh was refused."""
        if self._refused is not None:
            raise self._login.error(self._refused)
        token = self._tokens.access
        if token is None:
            raise self._login.error("no access token could be obtained yet")
        self.last = token
        return token

    def _due(self, now: float) -> tuple[bool, bool]:
        """(refresh due, the current token must not be sent any more)."""
        tokens = self._tokens
        if tokens.refresh is None or self._login.client is None:
            return False, False
        if tokens.access is None or tokens.access_expiry is None:
            return True, True
        life = max(0.0, tokens.access_expiry - tokens.obtained_at)
        expired = now >= tokens.access_expiry - min(EXPIRY_MARGIN, 0.1 * life)
        return now >= tokens.obtained_at + REFRESH_AT * life, expired

    def _may_refresh(self, now: float) -> bool:
        """Whether a refresh may be tried now: not refused, refreshable, and not just failed (endpoint down)."""
        return (self._refused is None and self._login.client is not None and self._tokens.refresh is not None
                and now >= self._retry_at)

    async def prepare(self) -> None:
        """Refresh if due: wait for it only if the current token can no longer be sent."""
        self._reload_if_changed()
        now = self._clock()
        due, expired = self._due(now)
        if due and self._may_refresh(now):
            task = self._shared_refresh()
            if expired:
                await asyncio.shield(task)

    def prepare_sync(self) -> None:
        """``prepare`` for the synchronous client: a due refresh happens now."""
        self._reload_if_changed()
        with self._sync_lock:
            now = self._clock()
            if self._due(now)[0] and self._may_refresh(now):
                self._refresh_sync()

    async def renew(self, used: SecretStr | None) -> bool:
        """After a 401 for ``used``: refresh (once, shared) unless that already happened; True to resend."""
        if used is not None and used != self._tokens.access:
            return True  # another caller refreshed meanwhile
        return self._may_refresh(self._clock()) and await asyncio.shield(self._shared_refresh())

    def renew_sync(self, used: SecretStr | None) -> bool:
        with self._sync_lock:
            if used is not None and used != self._tokens.access:
                return True
            return self._may_refresh(self._clock()) and self._refresh_sync()

    # -- the refresh itself ------------------------------------------------------------------

    def _shared_refresh(self) -> asyncio.Task[bool]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh_async())
        return self._task

    async def _refresh_async(self) -> bool:
        previous = self._tokens
        reply: httpx.Response | httpx.HTTPError
        try:
            async with httpx.AsyncClient(timeout=self._timeout, verify=self._verify) as http:
                reply = await http.request(**self._form(previous))
        except httpx.HTTPError as exc:
            reply = exc
        return self._settle(previous, reply)

    def _refresh_sync(self) -> bool:
        previous = self._tokens
        reply: httpx.Response | httpx.HTTPError
        try:
            with httpx.Client(timeout=self._timeout, verify=self._verify) as http:
                reply = http.request(**self._form(previous))
        except httpx.HTTPError as exc:
            reply = exc
        return self._settle(previous, reply)

    def _form(self, previous: Tokens) -> dict[str, Any]:
        assert self._login.client is not None and previous.refresh is not None
        return refresh_form(self._login.client, previous.refresh)

    def _settle(self, previous: Tokens, reply: httpx.Response | httpx.HTTPError) -> bool:
        """Install the outcome of one refresh, count it and say it; True if there is a new token."""
        now = self._clock()
        try:
            if isinstance(reply, httpx.HTTPError):
                raise RefreshFailed(f"no answer from the token endpoint ({type(reply).__name__})")
            tokens = read_answer(reply.status_code, reply.content, previous, now)
        except RefreshRefused as refused:
            self._refused = (f"the token endpoint refused the refresh ({refused}): the login has expired or "
                             "was revoked; creates and destroys are stopped until the canfar config holds a "
                             "new login")
            log.error("%s: %s; %s (the controller picks the new login up by itself)",
                      self._login.where, self._refused, LOGIN_AGAIN)
            self._count("refused")
            return False
        except RefreshFailed as failed:
            self._retry_at = now + RETRY_AFTER_FAILURE
            log.warning("%s: OIDC refresh failed, retrying in %.0f s: %s", self._login.where,
                        RETRY_AFTER_FAILURE, failed)
            self._count("error")
            return False
        self._tokens = tokens
        self._keep(previous.refresh, tokens)
        log.info("OIDC access token refreshed (%s), valid until %s", self._login.where,
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tokens.access_expiry or now)))
        self._count("success")
        return True

    def _count(self, result: str) -> None:
        if self.on_refresh is not None:
            with contextlib.suppress(Exception):
                self.on_refresh(result)

    # -- what can be shown --------------------------------------------------------------------

    def status(self) -> CredentialStatus:
        tokens = self._tokens
        refreshes = tokens.refresh is not None and self._login.client is not None
        expiry = tokens.refresh_expiry if refreshes else tokens.access_expiry
        if refreshes and expiry is None:  # a refresh token of unknown life: the access token is what we know
            expiry_kind, expiry = "oidc_access", tokens.access_expiry
        else:
            expiry_kind = "oidc_refresh" if refreshes else "oidc_access"
        problem = self._refused
        if problem is None and not refreshes and expiry is not None and expiry <= self._clock():
            problem = "the access token has expired and the record has no refresh token"
        return CredentialStatus(kind="oidc", source=self._login.where, expiry_kind=expiry_kind, expiry=expiry,
                                usable=problem is None, problem=problem)


def _stamp(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns, info.st_size
