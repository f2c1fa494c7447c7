"""Logging a repeated error once: the first time, then once per ``repeat_after`` seconds with a count.

A failure that recurs every pass (a missing token answered 401, a service that is down, a quota
that is full) would otherwise fill the log with one identical line per pass and bury everything
else. ``Repeats`` remembers, per key, the message last logged and when: the same message again is
suppressed and counted until ``repeat_after`` seconds have passed; a different message is news
at once; ``clear`` (the failure is over) makes the next one news too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["RepeatFilter", "Repeats", "repeat_fields"]


@dataclass
class _Seen:
    message: str
    logged_at: float
    suppressed: int = 0


class Repeats:
    """Which repeats of a message to log. ``clock`` (seconds) is injectable for tests; thread-safe."""

    def __init__(self, repeat_after: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.repeat_after = repeat_after
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[Hashable, _Seen] = {}

    def admit(self, key: Hashable, message: str) -> int | None:
        """``None`` to stay quiet, else how many identical repeats were suppressed before this one."""
        with self._lock:
            now = self._clock()
            seen = self._seen.get(key)
            if seen is not None and seen.message == message and now - seen.logged_at < self.repeat_after:
                seen.suppressed += 1
                return None
            self._seen[key] = _Seen(message, now)
            return 0 if seen is None or seen.message != message else seen.suppressed

    def expire(self) -> None:
        """Drop what was last logged ``repeat_after`` ago or more: it would be logged afresh anyway."""
        with self._lock:
            now = self._clock()
            for key in [key for key, seen in self._seen.items() if now - seen.logged_at >= self.repeat_after]:
                del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)

    def clear(self, key: Hashable) -> bool:
        """The failure under ``key`` is over: its next occurrence is news. True if there was one."""
        with self._lock:
            return self._seen.pop(key, None) is not None

    def forget(self, matches: Callable[[Hashable], bool]) -> None:
        """Drop every key ``matches`` accepts (a removed set's), so memory stays bounded."""
        with self._lock:
            for key in [key for key in self._seen if matches(key)]:
                del self._seen[key]


def repeat_fields(suppressed: int) -> dict[str, int]:
    """The count on a repeated error's line: how many identical ones went unlogged since the last."""
    return {"suppressed_repeats": suppressed} if suppressed else {}


class RepeatFilter(logging.Filter):
    """``Repeats`` for a library's stdlib warnings (the client's retry lines, every pass while the
    service is down): the same message, timings aside, once per ``repeat_after`` with a count."""

    #: Remembered messages beyond which the expired ones are dropped, so memory stays bounded.
    MAX_REMEMBERED = 1000

    def __init__(self, repeat_after: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._repeats = Repeats(repeat_after, clock=clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not isinstance(record.args, tuple):
            return True
        # Float arguments are timings (a back-off's seconds): the same failure waits differently each time.
        key = (record.name, str(record.msg), *(str(a) for a in record.args if not isinstance(a, float)))
        if len(self._repeats) > self.MAX_REMEMBERED:
            self._repeats.expire()
        suppressed = self._repeats.admit(key, "")
        if suppressed is None:
            return False
        if suppressed:
            record.msg = f"{record.msg} (suppressed_repeats=%d)"
            record.args = (*record.args, suppressed)
        return True
