"""The rule *Slot identity*, and the sessions of a set sorted into what each slot keeps.

Slot N of a set has at most one live session of the current template. A second one (a create
applied later than the window) is destroyed as a duplicate, the newer first; while a rollout is in
flight a slot may keep one outdated session beside the new one. Sessions above the replica count
are scaled down (an autoscaled set's as ``scaleDown.policy`` says, ``autoscaled``); ended ones are
destroyed (and counted by the rule *Ended sessions and restarts*).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.plan import context as ctx
from controller.plan.actions import DestroyReason
from controller.plan.admission import consider_pending
from controller.plan.autoscaled import above_count
from controller.plan.context import Decisions, PassContext
from controller.plan.listing import ENDED, LIVE, Listed
from controller.plan.renew import consider_renew
from controller.plan.restarts import note_end
from controller.spec import SessionSet


@dataclass(slots=True)
class Kept:
    """What one set's slots keep after this list, and what was counted on the way."""

    #: The live sessions each slot keeps (at most one of the current template, one outdated).
    by_slot: dict[int, list[Listed]] = field(default_factory=dict)
    #: Kept live sessions of an older template.
    outdated: list[Listed] = field(default_factory=list)
    #: Every session of the set by phase (ended and scaled-down ones too).
    counts: dict[str, int] = field(default_factory=dict)
    #: The soonest deadline of a live session of the set (epoch seconds).
    next_expiry: float | None = None
    #: Sessions Pending for longer than the limit.
    unschedulable: int = 0
    #: Autoscaled sets: live sessions kept in slots above the count (Drain waits for them to end).
    draining: int = 0


def keep(context: PassContext, decisions: Decisions, session_set: SessionSet, current: str) -> Kept:
    """Sort the set's listed sessions into slots: destroy the ended, the scaled-down and the duplicates."""
    spec = session_set.spec
    replicas, act = ctx.replicas(context, session_set), ctx.acts(context, session_set)
    renewing = not spec.suspend and spec.renew
    kept = Kept()
    above: list[Listed] = []  # autoscaled: sessions in slots above the count
    counts = kept.counts
    strangers = context.ownership.strangers  # another writer's: not counted, never touched
    for slot, sessions in context.listing.slots.get(session_set.name, {}).items():
        if strangers:
            sessions = [seen for seen in sessions if seen.id not in strangers]
            if not sessions:
                continue
        if len(sessions) > 1:
            sessions = sorted(sessions, key=lambda seen: (seen.started, seen.id))
        for seen in sessions:
            phase = seen.phase
            counts[phase] = counts.get(phase, 0) + 1
            if phase in LIVE:
                expires = seen.expires
                if expires is not None and (kept.next_expiry is None or expires < kept.next_expiry):
                    kept.next_expiry = expires
                if renewing and seen.kind != "headless":
                    consider_renew(context, decisions, seen)
                if phase == "Pending":
                    kept.unschedulable += consider_pending(context, decisions, seen)
        if slot > replicas:
            if spec.autoscale is not None:
                above.extend(sessions)
                continue
            if act:
                if len(sessions) > 1:  # a duplicate goes as one even while the scale-down waits
                    sessions = [*dedupe(context, decisions, [s for s in sessions if s.phase not in ENDED], current,
                                        act=act, kill_outdated=False),
                                *(s for s in sessions if s.phase in ENDED)]
                for seen in sessions:
                    ctx.destroy(context, decisions, seen, "scaled-down")
            continue
        if len(sessions) == 1 and sessions[0].phase not in ENDED:
            live = sessions  # the common case, without a new list
        else:
            live = []
            for seen in sessions:
                if seen.phase in ENDED:
                    if act:
                        ctx.destroy(context, decisions, seen, "ended")
                        note_end(context, decisions, seen, spec.restart_policy)
                else:
                    live.append(seen)
            live = dedupe(context, decisions, live, current, act=act,
                          kill_outdated=spec.update_strategy.type != "OnCompletion")
        kept.by_slot[slot] = live
        for seen in live:
            if seen.template_hash != current:
                kept.outdated.append(seen)
    if above:
        def scale_down(seen: Listed, why: str) -> bool:
            return act and ctx.destroy(context, decisions, seen, "ended" if why == "ended" else "scaled-down")

        kept.draining = above_count(session_set, above, scale_down)
    return kept


def dedupe(context: PassContext, decisions: Decisions, live: list[Listed], current: str, *,
           act: bool, kill_outdated: bool) -> list[Listed]:
    """Keep one session of the current template (and one outdated while it rolls)."""
    if len(live) < 2:
        return live
    fresh = sorted((s for s in live if s.template_hash == current), key=Listed.keep_order)
    stale = sorted((s for s in live if s.template_hash != current), key=Listed.keep_order)
    kept = fresh[:1]
    doomed: list[tuple[Listed, DestroyReason]] = [(seen, "duplicate") for seen in fresh[1:]]
    if stale:
        if fresh and fresh[0].phase == "Running" and kill_outdated:
            doomed += [(seen, "outdated") for seen in stale]
        else:
            kept.append(stale[0])
            doomed += [(seen, "duplicate") for seen in stale[1:]]
    if act:
        for seen, reason in doomed:
            if not ctx.destroy(context, decisions, seen, reason):  # held (rule *Destructive settle*):
                kept.append(seen)  # it stays in its slot, and counts there
    return kept
