"""The rule *Destructive settle*, with plain data: destroys that a manifest change gives wait for a stable file."""

from __future__ import annotations

import dataclasses

from controller.plan import DESTRUCTIVE_SETTLE, Memory, PendingChange, PlanOptions, plan
from controller.plan.autoscale import Reading, ScaleState, decide
from controller.spec import DesiredState, SessionSet
from tests.unit.test_autoscale import autoscale
from tests.unit.test_plan import NOW, OPTIONS, created, desired, destroyed, running, session_set
from tests.unit.test_plan import slots_created as slots
from tests.unit.test_plan_lifecycle import rolling

THIRTY = session_set(replicas=30)
THREE = session_set(replicas=3)


def changed(state: DesiredState, at: float) -> DesiredState:
    """``state`` as the loader gives it when every file (and the directory) last changed at ``at``."""
    return dataclasses.replace(state, unchanged_since=dict.fromkeys(state.sets, at), directory_unchanged_since=at)


def removed(state: DesiredState, removal: dict[str, float], directory: float | None) -> DesiredState:
    return dataclasses.replace(state, removed_since=removal, directory_unchanged_since=directory)


def all_running(s: SessionSet, count: int, **kwargs: object) -> list:
    return [running(s, n, **kwargs) for n in range(1, count + 1)]  # type: ignore[arg-type]


def test_a_scale_down_waits_until_the_file_has_been_unchanged_for_the_window():
    """30 running, the file now says 3 (changed 2 s ago): nothing destroyed, nothing created, and the
    plan says what waits and when it acts; once the file is 30 s old, the 27 highest slots go."""
    observed = all_running(THIRTY, 30)
    held = plan(changed(desired(THREE), NOW - 2), observed, Memory(), NOW, options=OPTIONS)
    assert (held.creates, held.destroys) == ((), ())
    assert held.pending == (PendingChange("workers", "scale-down 30→3", 27, NOW - 2 + DESTRUCTIVE_SETTLE,
                                          DESTRUCTIVE_SETTLE),)
    assert held.statuses["workers"].running == 30
    acting = plan(changed(desired(THREE), NOW - 2), observed, held.memory, NOW - 2 + DESTRUCTIVE_SETTLE,
                  options=OPTIONS)
    assert sorted(destroyed(acting).values()) == ["scaled-down"] * 27
    assert {d.session_id for d in acting.destroys} == {f"wor{n}" for n in range(4, 31)}
    assert acting.pending == ()


def test_pending_sessions_wait_too_and_ended_ones_and_duplicates_do_not():
    """Held: a Pending session above the count. Not held: an ended session (cleaned up, its slot above the
    count not refilled) and a duplicate in a kept slot."""
    observed = [*all_running(THIRTY, 3), running(THIRTY, 2, "dup", started=NOW - 10),
                running(THIRTY, 4, status="Pending"), running(THIRTY, 5, status="Completed"),
                running(THIRTY, 6), running(THIRTY, 6, "dup6", started=NOW - 10)]
    result = plan(changed(desired(THREE), NOW - 2), observed, Memory(), NOW, options=OPTIONS)
    # ended: nothing is lost; a duplicate goes as one, also in a slot above the count
    assert destroyed(result) == {"dup": "duplicate", "wor5": "scaled-down", "dup6": "duplicate"}
    assert result.creates == ()
    assert [(p.change, p.sessions) for p in result.pending] == [("scale-down 6→3", 2)]


def test_a_recreate_template_change_waits_and_creates_nothing_beside_the_old_sessions():
    old, new = rolling(replicas=4)
    new = new.model_copy(update={"spec": new.spec.model_copy(update={
        "update_strategy": type(new.spec.update_strategy).model_validate({"type": "Recreate"})})})
    observed = [running(old, n, f"o{n}") for n in range(1, 5)]
    held = plan(changed(desired(new), NOW - 5), observed, Memory(), NOW, options=OPTIONS)
    assert (held.creates, held.destroys) == ((), ())
    assert [(p.change, p.sessions) for p in held.pending] == [("template change (Recreate)", 4)]
    assert held.statuses["workers"].outdated == 4
    acting = plan(changed(desired(new), NOW - 5), observed, held.memory, NOW + DESTRUCTIVE_SETTLE, options=OPTIONS)
    assert destroyed(acting) == dict.fromkeys(("o1", "o2", "o3", "o4"), "outdated")


def test_max_unavailable_destroys_wait_and_their_slots_are_not_refilled():
    old, new = rolling(maxSurge=0, maxUnavailable=2)
    observed = [running(old, n, f"o{n}") for n in range(1, 5)]
    held = plan(changed(desired(new), NOW - 5), observed, Memory(), NOW, options=OPTIONS)
    assert (held.creates, held.destroys) == ((), ())
    assert [p.change for p in held.pending] == ["template change (RollingUpdate)"]
    acting = plan(changed(desired(new), NOW - 5), observed, held.memory, NOW + DESTRUCTIVE_SETTLE, options=OPTIONS)
    assert destroyed(acting) == {"o1": "outdated", "o2": "outdated"}


def test_a_surge_create_goes_ahead_but_stays_within_max_surge_while_the_old_session_waits():
    """maxSurge 1 of 4: slot 1 gets its new session at once; once it runs, the old one is kept (held) and
    counts as the surge in flight, so no second slot surges beside it."""
    old, new = rolling(maxUnavailable=0)
    olds = [running(old, n, f"o{n}") for n in range(1, 5)]
    first = plan(changed(desired(new), NOW - 5), olds, Memory(), NOW, options=OPTIONS)
    assert slots(first) == [("workers", 1)]  # creates are not held
    observed = [*olds, running(new, 1, "n1")]
    memory = created(first.memory, first.creates[0], "n1", NOW)  # the create's answer gave its id
    second = plan(changed(desired(new), NOW - 5), observed, memory, NOW + 5, options=OPTIONS)
    assert (second.creates, second.destroys) == ((), ())
    assert [(p.change, p.sessions) for p in second.pending] == [("template change (RollingUpdate)", 1)]
    acting = plan(changed(desired(new), NOW - 5), observed, second.memory, NOW + DESTRUCTIVE_SETTLE,
                  options=OPTIONS)
    assert destroyed(acting) == {"o1": "outdated"}


def orphans_seen(observed: list) -> Memory:
    return Memory(orphans_seen=frozenset(s.id for s in observed))


def test_a_removed_set_waits_until_it_has_been_absent_for_the_window():
    gone = session_set("gone", 2)
    orphans = all_running(gone, 2)
    state = removed(desired(THREE), {"gone": NOW - 10}, NOW - 10)
    held = plan(state, [*all_running(THREE, 3), *orphans], orphans_seen(orphans), NOW, options=OPTIONS)
    assert held.destroys == ()
    assert held.pending == (PendingChange("gone", "set removed", 2, NOW + 20, DESTRUCTIVE_SETTLE),)
    acting = plan(state, [*all_running(THREE, 3), *orphans], held.memory, NOW + 20, options=OPTIONS)
    assert destroyed(acting) == {"gon1": "orphaned", "gon2": "orphaned"}


def test_a_set_removed_unseen_waits_for_the_directory_to_be_unchanged():
    """A restart after the set went: no removal time, the directory's last change stands in."""
    gone = session_set("gone", 1)
    orphans = all_running(gone, 1)
    observed = [*all_running(THREE, 3), *orphans]
    held = plan(removed(desired(THREE), {}, NOW - 1), observed, orphans_seen(orphans), NOW, options=OPTIONS)
    assert held.destroys == () and held.pending[0].acts_at == NOW - 1 + DESTRUCTIVE_SETTLE
    quiet = plan(removed(desired(THREE), {}, NOW - 60), observed, orphans_seen(orphans), NOW, options=OPTIONS)
    assert destroyed(quiet) == {"gon1": "orphaned"}


def test_an_ended_orphan_is_cleaned_up_at_once():
    gone = session_set("gone", 1)
    orphan = [running(gone, 1, status="Failed")]
    result = plan(removed(desired(THREE), {"gone": NOW - 1}, NOW - 1), [*all_running(THREE, 3), *orphan],
                  orphans_seen(orphan), NOW, options=OPTIONS)
    assert destroyed(result) == {"gon1": "orphaned"} and result.pending == ()


def test_zero_turns_the_rule_off_and_a_state_without_times_holds_nothing():
    observed = all_running(THIRTY, 30)
    off = plan(changed(desired(THREE), NOW), observed, Memory(), NOW,
               options=PlanOptions(prefix="cc", destructive_settle=0))
    assert len(off.destroys) == 27 and off.pending == ()
    untimed = plan(desired(THREE), observed, Memory(), NOW, options=OPTIONS)
    assert len(untimed.destroys) == 27


def test_a_scale_up_is_not_held():
    result = plan(changed(desired(THREE), NOW), all_running(THREE, 1), Memory(), NOW, options=OPTIONS)
    assert slots(result) == [("workers", 2), ("workers", 3)] and result.pending == ()


def test_the_autoscaler_scale_down_window_is_at_least_the_settle_window():
    """stabilizationSeconds 0, settle 30: a drop from 8 to 1 takes effect only 30 s later."""
    spec = autoscale(scaleDown={"stabilizationSeconds": 0})
    state = ScaleState(8, ((NOW - 100, 8),))
    early = decide(spec, [Reading(value=5)], state, NOW, settle=30)
    assert early.count == 8 and "last 30 s" in (early.why or "")
    later = decide(spec, [Reading(value=5)], early.state, NOW + 30, settle=30)
    assert later.count == 1
    assert decide(spec, [Reading(value=5)], state, NOW).count == 1  # without it: at once
