"""The planner: desired sets + observed sessions + memory + capacity + time -> actions and statuses.

This is where every risky decision is made, so it is a pure function: no I/O, no clock reads,
no randomness. The same inputs always give the same plan, in the same order.

Rules, in the order they protect users (each is named in the code that keeps it):

- **Foreign sessions** (``listing``): a session whose name does not parse as
  ``<prefix>-<set>-<hash>-<slot>`` is foreign: never touched.
- **Invalid manifests** (``listing``, ``status``): sessions of a set whose manifest is invalid and
  never was valid are left alone.
- **List trust** (``trust``): a list answer is not trusted blindly. An owned session that was live in
  the last list, that the controller did not destroy and that cannot have been reaped (only ended
  sessions are reaped, after an hour) may be left out of a new answer: its slot is *held* (not
  refilled) until the service confirms it is gone (*Disappearance confirmed*) or, without a usable
  answer from it, until the next list confirms it, by leaving out exactly the same sessions and
  nothing else. Any other answer that leaves sessions out is *lossy* and confirms nothing: every
  slot it left out stays held. An answer with no owned session at all, while the last one had live
  ones, makes the whole pass suspect: nothing is created or destroyed, and nothing is learnt from
  it. Such answers are believed only once they have persisted for ``empty_list_window`` (1 min): an
  account really emptied by hand is refilled then. (Two answers in a row that leave out exactly the
  same sessions and nothing else look like a real deletion; if such a session comes back, the rule
  *Slot identity* removes the extra one.)
- **Disappearance confirmed** (``vanished``, ``trust``): before the slot of a live owned session a
  list left out is refilled, the service is asked for that session by id (``GET /session/{id}``,
  by the reconciler after the list call and before planning; at most 20 per pass, concurrently,
  each within a short timeout). A 404 or an ended status confirms it is gone: the slot is refilled
  in that same pass. A session the service still has live proves the list lossy: its slot stays
  held, nothing is learnt from the answer, and ``canfar_controller_list_anomalies_total
  {kind="left_out_live"}`` counts it. Each vanished session is asked about once, not once per
  pass: while it stays left out it is asked again only after 1 min, doubling to 10 min; one that
  keeps coming and going is asked at most once a minute (a "gone" answer is dropped as soon as a
  list shows the session live). When the lookup itself fails (timeout, 5xx), or was not made,
  the two-list rule of *List trust* decides.
- **Orphans** (here): owned sessions of sets that no longer exist are destroyed only when every
  manifest parsed cleanly and has settled, the desired state is not empty (unless ``allow_empty``),
  and the same orphan was already seen in the previous pass.
- **Expectations** (``expectations``): a create the service confirmed counts as present until the
  list shows its id (or 5 min pass); one we just destroyed counts as gone. A create whose outcome is
  unknown (timeout, 5xx, garbled answer, crash before recording) is looked for by name (never
  taken for a session of that name it destroyed or saw end) and blocks
  its slot until a list shows it, or until it is written off: ``uncertain_window`` (2 min) has
  passed *and* two lists that were not lossy did not show it. A slot has one create in flight at a
  time, whatever its template.
- **Slot identity** (``slots``): slot N of a set has at most one live session of the current
  template. If a second one appears anyway (a create applied later than the window), the newer is
  destroyed as a duplicate.
- **Ended sessions and restarts** (``restarts``): ended sessions are destroyed; whether the slot
  runs again follows ``restartPolicy``, with a per-slot exponential back-off so a session that fails
  at once does not hot-loop (10 s doubling to 5 min, reset once a session has run for 10 min). Three
  early ends (within 10 min of the start) in 30 min make the set ``CrashLooping``; the back-off goes
  on, it never gives up.
- **Refused creates** (``admission``): a set whose creates the service refused (4xx) creates nothing
  until its back-off ends (the reconciler sets it); a 429 or 503 with Retry-After pauses every
  create for that long.
- **Rollout** (``rollout``): a template change replaces outdated sessions as
  ``spec.updateStrategy`` says: ``RollingUpdate`` (a new session beside the old one, the old one
  destroyed once the new one runs, at most ``maxSurge`` slots at a time; or ``maxUnavailable`` old
  sessions destroyed first), ``OnCompletion`` (outdated sessions are never destroyed while they run;
  their slots get the new template when they end) or ``Recreate`` (all outdated sessions go first).
- **Capacity** (``admission``): with platform statistics, creates that do not fit the free capacity
  wait (``WaitingForCapacity``) instead of piling up ``Pending`` sessions; without them, creates go
  ahead and the plan says so.
- **Renewal** (``renew``): interactive sessions are renewed before they expire; a refused renew is
  retried later and never becomes a destroy. A session's lifetime is learnt from the platform (what
  its last renew did to its expiry, else its start to its expiry; ``session_expiry`` only until
  then); it is renewed once less than ``renew_when_remaining`` of it remains, never twice within a
  quarter of it. A renew that did not move the expiry is reported once (``RenewIneffective``) and not
  sent again until the expiry changes or an hour passes.
- **Fair creates** (``admission``): creates are capped per pass and interleaved across sets so one
  big set cannot starve the rest.
- **One id, one session** (``controller.listanswer``, ``context``): a repeated id is one session,
  never "two in one slot"; a row without an id or an id under two names is left out and its slot
  held (not refilled). An answer with any of these is suspect for destroys: nothing is destroyed
  from it.
- **Unbelievable statistics** (the reconciler): statistics with NaN, infinities, negatives or zero
  capacity are no statistics (``StatsUnavailable``): creates go ahead unchecked, never wait on them.
- **Durable intent** (the reconciler, ``controller.memoryhealth``): no create is sent without its
  durable write-ahead record; while the memory cannot be written (``MemoryUnwritable``) none is sent.
- **Autoscale recommendation** (``autoscale``): a signal's recommendation is ceil(value / target)
  (``platform`` gives its count directly); the largest wins, a value at or below ``activation`` on
  every signal means 0, then clamped to [minReplicas, maxReplicas].
- **Autoscale windows** (``autoscale``): a scale-up goes to the lowest recommendation of the last
  ``scaleUp.stabilizationSeconds``, a scale-down to the highest of the last
  ``scaleDown.stabilizationSeconds``, then at most ``maxStep`` per pass; the windows live in the
  memory and survive restarts.
- **Autoscale failures** (``autoscale``): a signal that cannot be read never scales down (``Hold``
  keeps the count, a number sets it); 3 failed reads in a row make ``ScalingActive`` False.
- **Autoscale scale-down** (``autoscaled``, ``slots``): the highest slots go; ``Drain`` never
  destroys a Running session above the count (its slot is not refilled when it ends) and destroys a
  Pending one; ``Destroy`` removes them, Pending first, at most ``scaleDown.maxStep`` per pass.
- **Ignored destroys** (``lingering``): a slot is not refilled in the pass that destroys a live
  session of it, nor while a session the controller destroyed is still listed Pending, Running or
  Unknown (or was left out by only one list since, or, destroyed while live, only by lossy
  answers since), whatever the desired count says; the destroy
  is retried with the destroy back-off (5 s doubling to 10 min), and from the second list still
  showing it Running or Pending the set is ``DestroyFailing`` (reason ``Ignored``, the ids).
- **Inventory** (``ownership``): only sessions this controller created or adopted are destroyed,
  whatever rule wants them gone. The memory keeps the sets it manages and the ids it created (the
  create's answer, or the name of a create written ahead) or adopted; the first pass of a memory
  without an inventory adopts the owned-name sessions of its sets. Sessions of sets it never managed
  are reported (``unmanaged``), never touched.
- **Second writer** (``ownership``): after the first pass, a live session of a managed set that is
  not in the inventory was made by another writer with the same prefix: the set creates and destroys
  nothing (``Conflict``, reason ``SecondWriter``, the ids) until those sessions are gone.
- **Failing destroys** (``lingering``, ``context``): a destroy that failed (a 5xx, no answer, a 4xx
  other than 404, which means already gone) is not planned again before its retry time, which the
  reconciler sets with the destroy back-off (5 s doubling to 10 min, per session) and keeps in the
  memory while the session is listed; the set is ``DestroyFailing`` (reason ``Failed``, the ids and
  the service's message) and not ``Ready`` while a live session it wants gone still runs.
- **Destructive settle** (``settling``): a destroy of a live session that only a manifest change
  gives (``scaled-down``, ``outdated``, ``orphaned``) waits until the set's file has been unchanged
  (a removed set: absent) for ``destructive_settle`` (``--destructive-settle``, 30 s); the session
  stays counted in its slot meanwhile, so nothing is created that the old spec would destroy, and
  the plan says what is pending and when it acts. Creates, ended sessions and duplicates never
  wait. An autoscaled set's scale-down stabilization is at least the same window.
- **Stuck sessions** (``lingering``): a session Terminating or Unknown for longer than
  ``terminating_limit`` (10 min) is reported once with its events and makes the set ``Stuck``; a
  ``Recreate`` set keeps waiting for it and says so in its status.

A run computes its ``PassContext`` once (``context``), plans each set (``sets``), admits the
creates, derives the statuses (``status``) and the next memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.listanswer import NO_ANOMALIES, ListAnomalies
from controller.models import ObservedSession
from controller.plan import context as ctx
from controller.plan import lingering, ownership, settling, vanished
from controller.plan import listing as lists
from controller.plan import trust as trusts
from controller.plan.actions import Plan, PlanOptions, SetStatus
from controller.plan.admission import admit
from controller.plan.autoscale import Reading
from controller.plan.autoscaled import remembered
from controller.plan.capacity import Capacity
from controller.plan.context import Decisions, PassContext
from controller.plan.memory import Memory, SeenSession
from controller.plan.sets import SetPlan, plan_set
from controller.plan.status import idle_statuses, invalid_status, status
from controller.spec import DesiredState


def plan(
    desired: DesiredState,
    observed: Sequence[ObservedSession] | None,
    memory: Memory,
    now: float,
    *,
    options: PlanOptions,
    capacity: Capacity | None = None,
    anomalies: ListAnomalies = NO_ANOMALIES,
    signals: Mapping[str, Sequence[Reading]] | None = None,
) -> Plan:
    """Decide one pass. ``observed`` is ``None`` when the list call failed: then nothing is done.

    ``capacity`` is what the platform has free (``None``: statistics unavailable, creates are not
    checked against it). ``anomalies`` are what broke *One id, one session* in the answer.
    ``signals`` are this pass's readings of each autoscaled set's signals.
    """
    if observed is None:
        return Plan((), (), idle_statuses(desired, memory, now), memory.copy(), blind=True)
    capacity = capacity if options.check_capacity else None
    listing = lists.scan(observed, desired, memory, now, prefix=options.prefix, capacity=capacity)
    gone = trusts.left_out(memory, listing)
    if trusts.is_suspect(memory, listing, gone - memory.missing, now, options):
        return _suspect(desired, memory, now, gone - memory.missing)
    trust = trusts.hold_names(trusts.judge(memory, listing, gone), anomalies.held_names, options.prefix)
    linger = lingering.view(memory.lingering, listing, desired, now, options.terminating_limit, lossy=trust.lossy)
    owners = ownership.judge(memory, listing, desired, now, prefix=options.prefix,
                             trusted=not trust.lossy and not anomalies.suspect)
    context, decisions = ctx.build(desired, listing, memory, now, options, capacity, trust, signals or {}, linger,
                                   destroys_allowed=not anomalies.suspect, ownership=owners)
    return _decide(context, decisions)


def _suspect(desired: DesiredState, memory: Memory, now: float, newly_left_out: frozenset[str]) -> Plan:
    """No owned session in the answer while the last one had live ones: act on, and learn, nothing."""
    remembered = memory.copy()
    if remembered.suspect_since is None:
        remembered.suspect_since = now
    return Plan((), (), idle_statuses(desired, memory, now), remembered, suspect=True,
                left_out=tuple(sorted(newly_left_out)))


def _decide(context: PassContext, decisions: Decisions) -> Plan:
    """Plan every set, admit their creates, and gather the plan."""
    desired, options = context.desired, context.options
    plans = {name: plan_set(context, decisions, desired.sets[name]) for name in sorted(desired.sets)}
    allowed, deferred, waiting_for_capacity = admit(context, (set_plan.creates for set_plan in plans.values()))
    statuses: dict[str, SetStatus] = {
        name: status(context, decisions, desired.sets[name], set_plan, waiting_for_capacity.get(name))
        for name, set_plan in plans.items()}
    for name in sorted(set(desired.invalid) - set(desired.sets)):
        statuses[name] = invalid_status(context, decisions, name)
    orphans_seen = _orphans(context, decisions)
    if context.destroys_allowed:
        decisions.destroys.extend(d for d in context.lingering.destroys
                                  if (d.set_name not in desired.sets or not desired.sets[d.set_name].spec.suspend)
                                  and context.ownership.may_destroy(d.session_id, d.set_name))
    destroys = tuple(sorted(decisions.destroys, key=lambda d: (d.set_name, d.name, d.session_id)))
    renews = tuple(sorted(decisions.renews, key=lambda r: (r.set_name, r.name, r.session_id)))
    unschedulable = tuple(sorted(decisions.unschedulable, key=lambda u: (u.set_name, u.name, u.session_id)))
    stuck = tuple(sorted(context.lingering.reports, key=lambda u: (u.set_name, u.name, u.session_id)))
    capacity_unknown = (None if context.capacity is not None or not options.check_capacity
                        else "platform statistics unavailable: creates are not checked against capacity")
    pending = settling.pending(decisions.held, {name: (ctx.replicas(context, s), s.spec.update_strategy)
                                                for name, s in desired.sets.items()}, options.destructive_settle)
    return Plan(tuple(allowed), destroys, statuses, _next_memory(context, decisions, orphans_seen), renews=renews,
                unschedulable=unschedulable, stuck=stuck, deferred=deferred,
                left_out=tuple(sorted(context.trust.newly_left_out)), capacity_unknown=capacity_unknown,
                renew_ineffective=tuple(sorted(decisions.renew_ineffective,
                                               key=lambda r: (r.set_name, r.name, r.session_id))),
                unmanaged=context.ownership.unmanaged, conflicts=context.ownership.conflicts,
                adopted=tuple(sorted(context.ownership.adopted)),
                pending=pending)


def _orphans(context: PassContext, decisions: Decisions) -> frozenset[str]:
    """The rule *Orphans*: destroy those seen twice, when the desired state can be trusted."""
    orphans = context.listing.orphans
    desired = context.desired
    if desired.complete and (bool(desired.sets) or context.options.allow_empty):
        for seen in orphans:
            if seen.id in context.memory.orphans_seen:
                ctx.destroy(context, decisions, seen, "orphaned")
    return frozenset(seen.id for seen in orphans if context.ownership.ours(seen.id))


def _ours(context: PassContext, live: dict[str, SeenSession]) -> dict[str, SeenSession]:
    """The rule *Inventory*: only this controller's sessions are remembered as seen (another writer's
    are no sessions of its slots, and a memory's first pass must not adopt them from it later)."""
    ownership = context.ownership
    if not ownership.strangers and not ownership.unmanaged_ids:
        return live
    return {sid: seen for sid, seen in live.items() if ownership.ours(sid)}


def _next_memory(context: PassContext, decisions: Decisions, orphans_seen: frozenset[str]) -> Memory:
    """The memory the next pass plans with."""
    memory, listing, sets = context.memory, context.listing, context.desired.sets
    held_ids = context.trust.held_ids
    inventory = ownership.after(context.ownership, memory, listing, context.desired, context.expected_creates,
                                context.now)
    return Memory(
        creates=context.expected_creates,
        destroys=context.expected_destroys,
        orphans_seen=orphans_seen,
        restarts={(name, slot): history for name, histories in decisions.restarts.items() if name in sets
                  for slot, history in histories.items()},
        finished={(name, slot, template) for name, entries in decisions.finished.items() if name in sets
                  for slot, template in entries if slot <= ctx.replicas(context, sets[name])},
        seen_live={**_ours(context, listing.live), **{sid: memory.seen_live[sid] for sid in held_ids}},
        missing=held_ids,
        suspect_since=None,
        lookups=vanished.kept(memory.lookups, held_ids, listing.live, context.now),
        backoffs=context.backoffs,
        creates_paused_until=memory.creates_paused_until,
        ended_reported={sid for sid in memory.ended_reported if sid in listing.ids},
        conditions=decisions.conditions,
        progress=decisions.progress,
        pending_since=listing.pending_since,
        unschedulable_reported={sid for sid in memory.unschedulable_reported if sid in listing.pending_since},
        renew_failures={sid: at for sid, at in memory.renew_failures.items() if sid in listing.ids},
        notes={name: note for name, note in memory.notes.items() if name in sets},
        autoscale=remembered(context.scaling, memory.autoscale, context.desired.complete, sets),
        lingering=context.lingering.after(),
        renews={sid: decisions.renew_marks.get(sid, mark) for sid, mark in memory.renews.items()
                if sid in listing.ids or sid in held_ids},
        inventoried=inventory.inventoried,
        managed_sets=inventory.managed_sets,
        owned=inventory.owned,
        owned_missed=inventory.owned_missed,
        written_off=inventory.written_off,
    )


__all__ = ["SetPlan", "plan"]
