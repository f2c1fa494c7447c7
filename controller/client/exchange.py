"""Sending one call: what a request is, when to retry it, and how an answer becomes a result or an error.

``exchange`` is the retry loop written once, without I/O: it yields the ``Request`` to send (the
driver answers with a ``Reply``) or a ``Backoff`` to wait, and returns the parsed result or
raises. ``interpret`` is the single choke point where an httpx response or exception turns into
a typed result or a ``controller.errors`` exception (HTTP status to class via
``error_for_status``; transport failures chained ``from`` the httpx exception).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Generic, TypeVar

import httpx

from controller.errors import APIError, TransportError, error_for_status

log = logging.getLogger("controller.client")

T = TypeVar("T")

#: Longest wait between retries. A server asking (``Retry-After``) for a longer pause than this is
#: not retried at all: the error, carrying ``retry_after``, goes to the caller, which can schedule
#: the retry (the controller pauses creates for that long) instead of blocking a call for minutes.
MAX_DELAY = 30.0


# -- what a call is -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to the service, relative to the base URL."""

    operation: str
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()  # a list of pairs: ``env`` repeats
    idempotent: bool = True  # False: never resent once it may have reached the server
    #: The most retries for this request, below the policy's (``None``: the policy's).
    retries: int | None = None


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A request plus the parser that turns a 2xx body into the typed result."""

    request: Request
    parse: Callable[[str], T]
    #: Give ``parse`` the raw body (bytes) rather than decoded text: a JSON parser reads bytes as
    #: well, and a 4 MB list need not exist a second time as a string.
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Backoff:
    """An instruction to the driver: wait this long, then resend."""

    seconds: float



@dataclass(frozen=True, slots=True)
class Reply:
    """What the driver got for a request: a response or the httpx error, and how long the wire took.

    The driver times the attempt itself so that waiting for a concurrency slot is not counted.
    """

    outcome: httpx.Response | httpx.HTTPError
    seconds: float


#: The retry loop of one call: yields requests (answered with a ``Reply``) and backoffs
#: (answered with None), returns the parsed result or raises ``APIError``.
Exchange = Generator[Request | Backoff, Reply | None, T]
RequestHook = Callable[[str, int | None, float], None]


# -- sending one call: retry policy and error translation ---------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and after how long a failed attempt is repeated.

    Idempotent requests are resent after an answer-less failure, a 5xx or a 429, waiting at least
    what the server's ``Retry-After`` asks for; a wait longer than ``MAX_DELAY`` is not retried.

    A create is resent only after a failure to connect at all, which proves the request never
    left: after a timeout or a 5xx it may have reached the server and made a session, so
    resending could make two. A 429 also proves nothing was made, yet a create is not resent
    after one either: the caller decides when creating resumes (the controller pauses every
    create for ``retry_after``), rather than each of many concurrent creates sleeping and
    retrying on its own and hitting the limit again together.
    """

    retries: int = 3
    backoff: float = 0.5
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def limit(self, request: Request) -> int:
        """The most retries ``request`` gets: the policy's, or fewer if the request says so."""
        return self.retries if request.retries is None else min(self.retries, request.retries)

    def delay(self, request: Request, error: APIError, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up with ``error``."""
        if attempt >= self.limit(request) or not error.retryable:
            return None
        if not request.idempotent and not _never_sent(error):
            return None
        if error.retry_after is not None and error.retry_after > MAX_DELAY:
            return None
        # Exponential backoff with "equal jitter": between half and all of the full step.
        seconds = self.backoff * (2**attempt) * (0.5 + 0.5 * self.jitter())
        if error.retry_after is not None:
            seconds = max(seconds, error.retry_after)
        return min(seconds, MAX_DELAY)


def _never_sent(error: APIError) -> bool:
    return isinstance(error.__cause__, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def exchange(
    call: Call[T],
    policy: RetryPolicy,
    *,
    hook: RequestHook | None = None,
    redact: Callable[[str], str] = str,
    hint: Callable[[APIError], str | None] | None = None,
) -> Exchange[T]:
    """Send ``call`` until it succeeds or the policy gives up; report every attempt to ``hook``.

    ``hint`` may add what the user can do about the final error (``APIError.hint``).
    """
    attempt = 0
    while True:
        answer = yield call.request
        if answer is None:
            raise TypeError("the driver must answer a Request with a Reply")
        reply = answer.outcome
        status = reply.status_code if isinstance(reply, httpx.Response) else None
        _report(hook, call.request.operation, status, answer.seconds)
        try:
            return interpret(call, reply, redact=redact)
        except APIError as error:
            seconds = policy.delay(call.request, error, attempt)
            if seconds is None:
                if hint is not None:
                    error.hint = hint(error)
                raise
            log.warning("%s; retry %d of %d in %.2fs", error, attempt + 1, policy.limit(call.request), seconds)
        yield Backoff(seconds)
        attempt += 1


def _report(hook: RequestHook | None, operation: str, status: int | None, seconds: float) -> None:
    if hook is None:
        return
    try:
        hook(operation, status, seconds)
    except Exception:  # a broken metrics hook must not fail, or retry, the request itself
        log.exception("on_request hook failed for %s", operation)


def interpret(
    call: Call[T], reply: httpx.Response | httpx.HTTPError | None, *, redact: Callable[[str], str] = str
) -> T:
    """The one choke point where httpx outcomes become typed results or ``controller.errors``.

    ``redact`` scrubs the current credential from server text, in case a proxy echoes it back.
    """
    operation = call.request.operation
    if not isinstance(reply, httpx.Response):
        raise transport_error(operation, reply)
    if not 200 <= reply.status_code < 300:
        raise error_for_status(operation, reply.status_code, redact(reply.text),
                               retry_after=retry_after(reply.headers.get("Retry-After")))
    try:
        return call.parse(reply.content if call.raw else reply.text)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise APIError(operation, status=reply.status_code,
                       server_message=f"unexpected response: {exc}") from exc


def transport_error(operation: str, exc: BaseException | None) -> TransportError:
    """An answer-less failure, chained to the httpx exception that caused it."""
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else "no response"
    error = TransportError(operation, server_message=reason.rstrip(": "))
    error.__cause__ = exc
    return error


def retry_after(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Seconds a ``Retry-After`` header asks for: delay-seconds or an HTTP date; ``None`` if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 850 / asctime forms carry no zone: they are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())
