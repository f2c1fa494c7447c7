"""A clock that moves only when told to, for deterministic tests of anything time-driven."""

from __future__ import annotations

import threading

#: 2026-01-01T00:00:00Z: a fixed, readable start so rendered times are stable across runs.
DEFAULT_START = 1_767_225_600.0


class ManualClock:
    """Callable like ``time.time``; ``advance`` moves it forward. Thread-safe."""

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never backward) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock does not go backward ({seconds} s)")
        with self._lock:
            self._now += seconds
            return self._now
