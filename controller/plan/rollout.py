"""The rule *Rollout*: how a template change replaces outdated sessions (``spec.updateStrategy``).

``RollingUpdate`` starts a new session beside an outdated one, at most ``maxSurge`` slots at a time
(the outdated one goes once the new one runs), or destroys up to ``maxUnavailable`` running outdated
sessions first; ``OnCompletion`` never destroys an outdated session while it runs (its slot gets the
new template when it ends); ``Recreate`` destroys every outdated session first.
"""

from __future__ import annotations

from controller.plan import context as ctx
from controller.plan.context import Decisions, PassContext
from controller.plan.listing import Listed
from controller.spec import UpdateStrategy

ON_COMPLETION = "waiting for outdated sessions to end (OnCompletion)"
RECREATE = "waiting for outdated sessions to go (Recreate)"


class Rollout:
    """One set's rollout budget during a run, counted only when a slot needs it."""

    __slots__ = ("_surging", "_unavailable", "current", "keep_by_slot", "recreating", "replicas", "strategy")

    def __init__(self, strategy: UpdateStrategy, replicas: int, current: str,
                 keep_by_slot: dict[int, list[Listed]], *, recreating: bool) -> None:
        self.strategy, self.replicas, self.current = strategy, replicas, current
        self.keep_by_slot = keep_by_slot
        #: ``Recreate`` with outdated sessions still live or terminating: no slot gets a new one yet.
        self.recreating = recreating
        self._surging: int | None = None
        self._unavailable: int | None = None

    def replace(self, context: PassContext, decisions: Decisions, kept: list[Listed],
                *, act: bool) -> tuple[str | None, str | None]:
        """For a slot with only outdated sessions: ("rollout", None) to create a new one beside them,
        or (None, why it waits, if it does). May destroy the outdated sessions (``maxUnavailable``)."""
        strategy = self.strategy
        if strategy.type != "RollingUpdate":
            return None, ON_COMPLETION if strategy.type == "OnCompletion" else RECREATE
        if self._surging is None:
            self._surging = surging(self.keep_by_slot, self.current)
        if self._surging < strategy.surge(self.replicas):
            self._surging += 1
            return "rollout", None
        if self._unavailable is None:
            self._unavailable = strategy.unavailable(self.replicas) - unavailable(self.keep_by_slot, self.replicas)
        if self._unavailable > 0 and all(s.phase == "Running" for s in kept):
            self._unavailable -= 1
            if act:
                for seen in kept:
                    ctx.destroy(context, decisions, seen, "outdated")
        return None, None


def surging(keep_by_slot: dict[int, list[Listed]], current: str) -> int:
    """Slots that run a new session beside an outdated one (a rollout in flight)."""
    return sum(1 for kept in keep_by_slot.values()
               if len(kept) > 1
               and any(s.template_hash == current for s in kept)
               and any(s.template_hash != current for s in kept))


def unavailable(keep_by_slot: dict[int, list[Listed]], replicas: int) -> int:
    """Slots without a Running session, of any template."""
    running = sum(1 for slot, kept in keep_by_slot.items()
                  if slot <= replicas and any(s.phase == "Running" for s in kept))
    return replicas - running
