"""The one back-off policy: a wait that doubles per attempt up to a cap, with optional ± jitter.

Used for a slot's restart delay (no jitter: the planner reads no randomness), a set's create
back-off after a refusal, the retry of a destroy the service ignored, and the jitter of the pass
interval (a policy whose base is its cap).
Randomness is injected by the caller (``random.Random`` or anything with ``uniform``), so the
pure core stays pure and tests are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RandomSource(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """``base`` seconds for the first attempt, doubling per attempt to ``cap``, then ± ``jitter`` (a fraction)."""

    base: float
    cap: float
    jitter: float = 0.0

    def delay(self, attempt: int, rng: RandomSource | None = None) -> float:
        """Seconds to wait before the ``attempt``-th try (1 for the first); jittered only with ``rng``."""
        seconds = min(self.base * 2 ** max(attempt - 1, 0), self.cap)
        if self.jitter and rng is not None:
            seconds *= 1 + rng.uniform(-self.jitter, self.jitter)
        return seconds

    @classmethod
    def steady(cls, seconds: float, jitter: float) -> Backoff:
        """The same wait every time, ± ``jitter``: a period that many processes must not share exactly."""
        return cls(seconds, seconds, jitter)
