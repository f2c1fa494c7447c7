"""The one error vocabulary of canfar-controller.

Every failure the package raises on purpose is a ``ControllerError``::

    ControllerError
    ├── ConfigError                 bad settings or arguments (no server URL, bad log level)
    │   └── CredentialError         a token file or certificate that cannot be used (names the file only)
    ├── InvalidRequestError         a request refused client-side, before any I/O (also a ValueError)
    ├── ManifestError               a SessionSet manifest is wrong: carries file, line and field
    ├── LockError                   another controller already owns the state directory
    ├── LedgerError                 the controller's memory on disk cannot be read: act on nothing
    ├── BatchError                  an operation over many ids: each id's result or error, none lost
    ├── SignalError                 an autoscale signal could not be read (file, HTTP, Prometheus)
    └── APIError                    the session service failed: carries operation, status, server text
        ├── TransportError          no HTTP answer at all (refused, timed out, dropped)
        ├── ClientError             4xx
        │   ├── BadRequestError           400
        │   ├── AuthenticationError       401
        │   ├── PermissionDeniedError     403
        │   ├── NotFoundError             404
        │   └── TooManyRequestsError      429 (rate limited: nothing was done; see ``retry_after``)
        └── ServerError             5xx
            └── ServiceUnavailableError   503

``error_for_status`` is the single place that maps an HTTP status to a class. Nothing here
ever holds a credential: errors are built from the operation name, the status, the server's
own text and its ``Retry-After`` header only, never from request headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Server error bodies are cut to this size so that a misbehaving proxy page cannot flood logs.
MAX_SERVER_TEXT = 2000


class ControllerError(Exception):
    """Base class of every error canfar-controller raises on purpose."""


class ConfigError(ControllerError):
    """Settings or command-line arguments that cannot work (missing URL, bad log level)."""


class CredentialError(ConfigError):
    """A token file or certificate that cannot be used: missing, unreadable, not UTF-8, empty, not PEM.

    Raised by any client call, before anything is sent. The message names the file and what is
    wrong with it, never its content.
    """


class InvalidRequestError(ControllerError, ValueError):
    """A request rejected client-side before anything was sent (bad name, bad regex)."""


class SignalError(ControllerError):
    """An autoscale signal that could not be read: the message says what and why, never a credential."""


class LockError(ControllerError):
    """Another controller instance holds the lock on the state directory."""


class LedgerError(ControllerError):
    """The controller's memory (snapshot or journal) is unreadable or of an unknown version."""


class ManifestError(ControllerError):
    """One problem in one manifest file, located precisely enough to fix it."""

    def __init__(
        self,
        path: str,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        document: int | None = None,  # 1-based, only for files holding several documents
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.document = document
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        document = f"document {self.document}: " if self.document else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {document}{what}{self.message}"


class APIError(ControllerError):
    """The session service did not do what was asked.

    ``status`` is the HTTP status (``None`` when no answer came back) and ``server_message``
    the service's own text/plain explanation, which is what a user needs to fix the cause.
    ``retry_after`` is the server's ``Retry-After`` in seconds (any status; 429 and 503 send
    it), ``None`` when it sent none: how long the caller should leave the service alone.
    ``hint`` is what the user can do about it, when the client can tell (no token configured,
    a server URL without the API version), shown after the server's text.
    """

    def __init__(
        self,
        operation: str,
        *,
        status: int | None = None,
        server_message: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.operation = operation
        self.status = status
        self.server_message = _clean(server_message)
        self.retry_after = retry_after
        self.hint: str | None = None
        super().__init__(str(self))

    def __str__(self) -> str:
        code = f"HTTP {self.status}" if self.status is not None else "no response"
        text = f": {self.server_message}" if self.server_message else ""
        wait = f" (retry after {round(self.retry_after, 1):g} s)" if self.retry_after is not None else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.operation} failed ({code}){text}{wait}{hint}"

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later without any change on our side."""
        return False


class TransportError(APIError):
    """No HTTP response: connection refused or dropped, or a timeout."""

    @property
    def retryable(self) -> bool:
        return True


class ClientError(APIError):
    """The service refused the request (4xx); repeating it unchanged will not help."""


class BadRequestError(ClientError):
    """400: invalid parameters, such as a bad name, an unknown image registry or a full quota."""


class AuthenticationError(ClientError):
    """401: missing, invalid or expired credentials."""


class PermissionDeniedError(ClientError):
    """403: authenticated but not allowed."""


class NotFoundError(ClientError):
    """404: no such session (or it was reaped after its TTL)."""


class TooManyRequestsError(ClientError):
    """429: rate limited. The request was refused before it was carried out, so it made nothing.

    Retryable (the same request may succeed once ``retry_after`` has passed), but the client
    resends only idempotent requests itself; see ``controller.client.exchange.RetryPolicy``.
    """

    @property
    def retryable(self) -> bool:
        return True


class ServerError(APIError):
    """5xx: the service failed; the request may succeed if repeated."""

    @property
    def retryable(self) -> bool:
        return True


class ServiceUnavailableError(ServerError):
    """503: the service or its metrics backend is temporarily unavailable."""


class StatsError(ControllerError):
    """Platform statistics that cannot be believed (NaN, infinite, negative, no capacity at all)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        #: A bounded label: ``NotANumber``, ``Infinite``, ``Negative`` or ``ZeroCapacity``.
        self.reason = reason


class BatchError(ControllerError):
    """Some ids of a many-id call failed: ``results`` holds the successes, ``errors`` the failures."""

    def __init__(self, operation: str, results: Mapping[str, Any], errors: Mapping[str, APIError]) -> None:
        self.operation = operation
        self.results = dict(results)
        self.errors = dict(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"{self.operation}: {len(self.errors)} of {len(self.results) + len(self.errors)} failed"]
        lines += [f"  {key}: {error}" for key, error in self.errors.items()]
        return "\n".join(lines)


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: TooManyRequestsError,
    503: ServiceUnavailableError,
}


def error_for_status(
    operation: str, status: int, server_message: str = "", *, retry_after: float | None = None
) -> APIError:
    """Build the most specific ``APIError`` for an HTTP error status."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ClientError if status >= 400 else APIError
    return cls(operation, status=status, server_message=server_message, retry_after=retry_after)


def _clean(text: str) -> str:
    text = text.strip()
    if len(text) > MAX_SERVER_TEXT:
        text = text[:MAX_SERVER_TEXT] + "…"
    return text
