"""Logging, configured once at the edge: structlog's processor chain over one stdlib handler.

Everything ends up in the same stream with the same shape: our own structlog events and the
stdlib records of libraries (APScheduler, httpx) alike. Off a terminal the lines are JSON (one
object per line, for log shippers); on a terminal they are the readable console format.

Redaction is the last processor before rendering, as defence in depth: the client never logs
credentials, but a token pasted into a manifest, an exception text or a library's debug line
must still not reach the output. It removes the configured secrets verbatim, anything shaped
like a bearer token or a JWT, and the values of keys that name credentials.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from controller.errors import ConfigError

__all__ = ["REDACTED", "SecretRedactor", "configure_logging", "register_secret"]

REDACTED = "[REDACTED]"
#: Secrets shorter than this are not replaced verbatim: they would clobber ordinary words.
MIN_SECRET_LENGTH = 6

_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
    "error": logging.ERROR, "critical": logging.CRITICAL,
}
# Libraries that log every request or job run at INFO: useful only when debugging.
_CHATTY = ("httpx", "httpcore", "apscheduler", "watchfiles")

_SENSITIVE_KEY = re.compile(
    r"(?:.*[_-])?(?:token|authorization|password|passwd|secret|cookie|api_?key|credentials?|auth)",
    re.IGNORECASE,
)
#: Prose, not a credential: a value of at most 12 letters only ("token", "expired", "required").
#: Real tokens and keys are long and mixed, so "invalid bearer token" or "token: expired" in a
#: server's text keeps its words, while "Bearer 1f9c..." is still scrubbed.
_WORD = r"(?![A-Za-z]{1,12}(?![A-Za-z0-9._~+/=-]))"
_PATTERNS = (
    (re.compile(rf"\b(Bearer)\s+{_WORD}[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Passwords and secrets may be plain words: always scrubbed.
    (re.compile(
        r"\b((?:password|passwd|secret)[\"']?\s*[=:]\s*[\"']?)(?!\[REDACTED\])[^\s&,;\"'}]+",
        re.IGNORECASE,
    ), rf"\1{REDACTED}"),
    (re.compile(
        rf"\b((?:access_|refresh_|api_|auth_)?(?:token|api_?key|registry-auth)[\"']?\s*[=:]\s*[\"']?)"
        rf"(?!\[REDACTED\]){_WORD}[^\s&,;\"'}}]+",
        re.IGNORECASE,
    ), rf"\1{REDACTED}"),
    # Any scheme (Basic, Digest...): keep the scheme, drop the credentials, which may look like a
    # word (base64 of "user:pass" is twelve letters).
    (re.compile(r"\b(Authorization[\"']?\s*[=:]\s*[\"']?(?!Bearer\s)(?:[A-Za-z]+\s+)?)(?!\[REDACTED\])"
                r"[^\s,;\"'}]+", re.IGNORECASE), rf"\1{REDACTED}"),
)
#: Every pattern above needs one of these words: text without any (most of it) skips the patterns.
_TRIGGER = re.compile(r"bearer|eyJ|passw|secret|token|api_?key|registry-auth|authorization", re.IGNORECASE)


class SecretRedactor:
    """A structlog processor that scrubs credentials from every value of an event, recursively."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Also scrub ``secret`` verbatim from now on (a token read from a file, a rotated one)."""
        secret = (secret or "").strip()
        if len(secret) >= MIN_SECRET_LENGTH:
            with self._lock:
                # Longest first, so a secret containing another is removed whole.
                self._secrets = tuple(sorted({*self._secrets, secret}, key=len, reverse=True))

    def redact_text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if _TRIGGER.search(text) is None:
            return text
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact(self, value: Any, key: str = "") -> Any:
        if key and _SENSITIVE_KEY.fullmatch(key) and value is not None:
            return REDACTED
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, Mapping):
            return {k: self.redact(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(v) for v in value]
        # Objects render through str()/repr() later: look at the text, keep the object if it is clean.
        text = str(value)
        cleaned = self.redact_text(text)
        return value if cleaned == text else cleaned

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self.redact(value, key) for key, value in event_dict.items()}


#: The one redactor of the process, shared by every configuration (secrets survive reconfiguring).
_REDACTOR = SecretRedactor()


def register_secret(secret: str | None) -> None:
    """Scrub ``secret`` from all log output (call it with the token the client will use)."""
    _REDACTOR.add(secret)


def parse_level(level: str | int) -> int:
    """A stdlib level number from ``--log-level`` text (``debug`` .. ``critical``) or a number."""
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        raise ConfigError(f"unknown log level {level!r}: use one of {', '.join(_LEVELS)}") from None


def configure_logging(
    level: str | int = "info",
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Configure structlog and the stdlib root logger; safe to call again (tests do).

    ``json=None`` picks JSON lines unless ``stream`` (default stderr) is a terminal. ``secrets``
    are scrubbed verbatim, as is ``$CANFAR_TOKEN`` when set.
    """
    number = parse_level(level)
    stream = stream if stream is not None else sys.stderr
    if json is None:
        json = not _isatty(stream)
    for secret in (*secrets, os.environ.get("CANFAR_TOKEN")):
        _REDACTOR.add(secret)

    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    # Run for both our events and foreign (stdlib) records before the formatter's final steps.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=_isatty(stream), exception_formatter=structlog.dev.plain_traceback,
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            # Tracebacks become text before redaction, so they are scrubbed too.
            structlog.processors.format_exc_info,
            _REDACTOR,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(number, logging.WARNING))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: loggers made before a reconfiguration must follow it.
        cache_logger_on_first_use=False,
    )


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
