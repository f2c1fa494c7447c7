"""The rule *Ended sessions and restarts*: what an ended session means for its slot.

Whether the slot runs again follows ``restartPolicy``; a slot that restarts waits an exponential
back-off, reset once a session has run for ``RESTART_RESET_AFTER``; early ends in
``CRASH_LOOP_WINDOW`` make the set ``CrashLooping`` (the back-off goes on, it never gives up).
"""

from __future__ import annotations

from controller.plan.actions import (
    CRASH_LOOP_ENDS,
    CRASH_LOOP_WINDOW,
    RESTART_RESET_AFTER,
    restart_delay,
)
from controller.plan.context import Decisions, PassContext
from controller.plan.listing import Listed
from controller.plan.memory import SlotHistory


def note_end(context: PassContext, decisions: Decisions, seen: Listed, policy: str) -> None:
    """Record an ended session: count a restart (and an early end), or mark the slot finished."""
    now = context.now
    restart = policy == "Always" or (policy == "OnFailure" and seen.phase == "Failed")
    if not restart:
        decisions.finished.setdefault(seen.set_name, set()).add((seen.slot, seen.template_hash))
        return
    histories = decisions.restarts.setdefault(seen.set_name, {})
    previous = histories.get(seen.slot)
    if previous is not None and previous.last_session == seen.id:
        return
    count = previous.count + 1 if previous is not None else 1
    early_ends = tuple(t for t in (previous.early_ends if previous else ()) if now - t < CRASH_LOOP_WINDOW)
    if now - seen.started < RESTART_RESET_AFTER:  # never started counts as early too
        early_ends = (*early_ends, now)
    histories[seen.slot] = SlotHistory(count, now, seen.id, early_ends)


def forget_if_healthy(context: PassContext, decisions: Decisions, set_name: str, slot: int,
                      current: list[Listed]) -> None:
    """Drop the slot's history once a session of it has run long enough: the back-off starts afresh."""
    for seen in current:
        if seen.phase == "Running" and context.now - seen.started >= RESTART_RESET_AFTER:
            decisions.restarts.get(set_name, {}).pop(slot, None)


def backing_off(context: PassContext, history: SlotHistory | None) -> bool:
    """The slot ended recently and its restart back-off has not run out."""
    if history is None:
        return False
    options = context.options
    delay = restart_delay(history.count, options.restart_backoff, options.restart_backoff_cap)
    return context.now < history.last_end + delay


def crash_slots(context: PassContext, histories: dict[int, SlotHistory], replicas: int) -> list[tuple[int, int]]:
    """Slots with ``CRASH_LOOP_ENDS`` early ends in the window: (slot, early ends)."""
    found = []
    for slot, recent in sorted(histories.items()):
        early = sum(1 for t in recent.early_ends if context.now - t < CRASH_LOOP_WINDOW)
        if early >= CRASH_LOOP_ENDS and slot <= replicas:
            found.append((slot, early))
    return found
