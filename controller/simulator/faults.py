"""Deciding which requests fail: targeted faults for tests, and seeded random faults for soak runs.

A fault is decided before the request is handled, so a failed request has no effect, unless the
targeted fault says ``processed=True``: then the request takes effect and only the answer is lost,
which is how a timed-out create still makes a session. Random faults use one
``random.Random(seed)``, so the same seed and the same request sequence fail the same requests.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from controller.simulator.config import SimulatorConfig

#: Statuses the random error rate picks from: the server's unexpected exception and its transient one.
RANDOM_STATUSES = (500, 503)


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do instead of a normal answer; ``status`` None means close the connection unanswered."""

    status: int | None
    processed: bool = False


@dataclass(slots=True)
class _Rule:
    method: str | None
    path: str | None
    fault: Fault
    remaining: int | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path is None:
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


class FaultInjector:
    """Thread-safe fault decisions: targeted rules first (in order added), then the random rates."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._error_rate = config.error_rate
        self._drop_rate = config.drop_rate
        self._rng = random.Random(config.seed)
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def add(self, *, method: str | None, path: str | None, status: int | None, count: int | None,
            processed: bool) -> None:
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1 (or None for always), got {count}")
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"a fault status must be an HTTP error (400-599), got {status}")
        with self._lock:
            self._rules.append(_Rule(method, path, Fault(status, processed), count))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def decide(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any; consumes one use of a matching targeted rule."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.matches(method, path):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            del self._rules[index]
                    return rule.fault
            if self._drop_rate and self._rng.random() < self._drop_rate:
                return Fault(None)
            if self._error_rate and self._rng.random() < self._error_rate:
                return Fault(self._rng.choice(RANDOM_STATUSES))
        return None
