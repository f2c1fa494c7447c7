"""Each set's status and conditions, from what its plan counted and what the rules decided.

The progress deadline (a rollout or scale-up that changes nothing for ``progress_deadline`` is
stalled) and the conditions' transition times are remembered in the run's ``Decisions``.
"""

from __future__ import annotations

from controller.plan import context as ctx
from controller.plan.actions import (
    CRASH_LOOP_ENDS,
    CRASH_LOOP_WINDOW,
    RENEW_INEFFECTIVE_RETRY,
    RESTART_RESET_AFTER,
    SetStatus,
)
from controller.plan.autoscaled import count_in_force
from controller.plan.conditions import SetFacts, Status, evaluate, stamp
from controller.plan.context import Decisions, PassContext
from controller.plan.durations import duration
from controller.plan.memory import CreateBackoff, Memory
from controller.plan.sets import SetPlan
from controller.spec import DesiredState, SessionSet


def status(context: PassContext, decisions: Decisions, session_set: SessionSet, set_plan: SetPlan,
           capacity_wait: str | None) -> SetStatus:
    """The set's status and conditions, once capacity has had its say on its creates."""
    spec, name, now = session_set.spec, session_set.name, context.now
    p = set_plan
    kept = p.kept
    outdated, ready, live = len(kept.outdated), p.ready, p.live
    replicas, scaling = ctx.replicas(context, session_set), context.scaling.get(name)
    complete = replicas > 0 and p.finished == replicas and live == 0
    wanted = replicas - p.finished
    progressing = not complete and not spec.suspend and (outdated > 0 or ready < wanted)
    fingerprint = f"{ready}/{wanted}/{outdated}/{p.updated}"
    previous = decisions.progress.get(name)
    since = previous[1] if previous is not None and previous[0] == fingerprint else now
    # OnCompletion waits for running jobs by design: that is no stall.
    waits_for_jobs = spec.update_strategy.type == "OnCompletion" and outdated > 0
    stalled = progressing and not waits_for_jobs and now - since >= context.options.progress_deadline
    if progressing:
        decisions.progress[name] = (fingerprint, since)
    else:
        decisions.progress.pop(name, None)
    notes = context.memory.notes.get(name)
    invalid = context.desired.invalid.get(name)
    facts = SetFacts(
        replicas=replicas, wanted=wanted, ready=ready, complete=complete, suspended=spec.suspend,
        invalid=invalid, strategy=spec.update_strategy.type, outdated=outdated,
        progressing=progressing, stalled=stalled, stall_after=context.options.progress_deadline,
        crash_loop=_crash_message(p.crash_slots, notes.last_failure if notes else ""),
        create_failing=_create_failing(p.refused, p.paused),
        capacity=_capacity_condition(context, capacity_wait, kept.unschedulable,
                                     notes.unschedulable if notes else ""),
        scaling=(scaling.active, scaling.limited) if scaling is not None else None,
        destroy_failing=context.lingering.destroy_failing(name), stuck=context.lingering.stuck_message(name),
        renew_ineffective=_renew_ineffective(decisions.renew_unchanged.get(name)),
        conflict=context.ownership.conflict_message(name),
        stranded=context.lingering.stranded_count(name),
    )
    conditions, marks = stamp(evaluate(facts), decisions.conditions.get(name, {}), now)
    decisions.conditions[name] = marks
    waiting = p.waiting or (f"waiting for capacity: {capacity_wait}" if capacity_wait else None)
    counts = kept.counts
    return SetStatus(
        name=name, desired=replicas, running=counts.get("Running", 0), pending=counts.get("Pending", 0),
        unknown=counts.get("Unknown", 0), completed=counts.get("Completed", 0), failed=counts.get("Failed", 0),
        terminating=context.listing.terminating.get(name, 0), outdated=outdated, updated=p.updated, ready=ready,
        in_flight=p.in_flight, uncertain=p.uncertain, held=p.held,
        suspended=spec.suspend, invalid=invalid, waiting=waiting,
        backoff_until=p.refused.until if p.refused is not None and now < p.refused.until else None,
        backoff_message=p.refused.message if p.refused is not None else None,
        complete=complete, unschedulable=kept.unschedulable, stuck=context.lingering.stuck_count(name),
        next_expiry=kept.next_expiry, conditions=conditions, scaling=scaling, draining=kept.draining,
        destroy_failing=context.lingering.failing_count(name),
    )


def invalid_status(context: PassContext, decisions: Decisions, name: str) -> SetStatus:
    """The status of a set that never had a valid manifest (rule *Invalid manifests*)."""
    invalid = context.desired.invalid[name]
    facts = SetFacts(replicas=0, wanted=0, ready=0, complete=False, suspended=False, invalid=invalid,
                     strategy="RollingUpdate", outdated=0, progressing=False, stalled=False, crash_loop=None,
                     create_failing=None, capacity=None, stall_after=context.options.progress_deadline)
    raw = evaluate(facts)
    raw["Ready"] = ("Unknown", "ManifestInvalid", "the set has no valid spec yet")
    conditions, marks = stamp(raw, decisions.conditions.get(name, {}), context.now)
    decisions.conditions[name] = marks
    return SetStatus(name, None, invalid=invalid, terminating=context.listing.terminating.get(name, 0),
                     conditions=conditions)


def idle_statuses(desired: DesiredState, memory: Memory, now: float) -> dict[str, SetStatus]:
    """Statuses when nothing could be observed: what is known from the manifests and the memory."""
    statuses = {}
    for name, session_set in desired.sets.items():
        backoff = memory.backoffs.get(name)
        statuses[name] = SetStatus(
            name, count_in_force(session_set, memory.autoscale), suspended=session_set.spec.suspend,
            invalid=desired.invalid.get(name),
            backoff_until=backoff.until if backoff is not None and backoff.until > now else None,
            backoff_message=backoff.message if backoff is not None else None)
    return statuses


def _crash_message(crash_slots: list[tuple[int, int]], evidence: str) -> str | None:
    if not crash_slots:
        return None
    slots = ", ".join(f"slot {slot} ({ends} times)" for slot, ends in crash_slots)
    message = (f"sessions ended within {duration(RESTART_RESET_AFTER)} of starting {CRASH_LOOP_ENDS}+ times in "
               f"{duration(CRASH_LOOP_WINDOW)}: {slots}; restarts continue with back-off")
    return f"{message}. Last failure: {evidence}" if evidence else message


def _renew_ineffective(ids: list[str] | None) -> str | None:
    if not ids:
        return None
    return (f"the last renew of {', '.join(sorted(ids))} did not move its expiry: not renewed again until the "
            f"expiry changes or {duration(RENEW_INEFFECTIVE_RETRY)} passes")


def _create_failing(refused: CreateBackoff | None, paused: bool) -> tuple[str, str] | None:
    if refused is not None:  # until a create of the set succeeds, also while the back-off retries
        return "CreateRefused", f"the service refused a create: {refused.message}"
    if paused:
        return "CreatesPaused", "the service asked to slow down (429 or 503 with Retry-After)"
    return None


def _capacity_condition(context: PassContext, wait: str | None, unschedulable: int,
                        events: str) -> tuple[Status, str, str] | None:
    if wait is not None:
        return "True", "InsufficientCapacity", wait
    if unschedulable:
        message = f"{unschedulable} session(s) Pending for more than {duration(context.options.pending_limit)}"
        return "True", "Unschedulable", f"{message}: {events}" if events else message
    if not context.options.check_capacity:
        return "Unknown", "NotChecked", "creates are not checked against the platform's capacity (--no-capacity)"
    if context.capacity is None:
        return "Unknown", "StatsUnavailable", "platform statistics unavailable: creating without checking capacity"
    return None
