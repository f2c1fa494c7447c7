"""The planner rules *ignored destroys* and *stuck sessions* (``controller.plan.lingering``), pure."""

from __future__ import annotations

from controller.plan import TERMINATING_LIMIT, Memory, Plan, plan
from controller.plan.lingering import destroy_sent
from tests.unit.test_plan import NOW, OPTIONS, desired, destroyed, running, session_set


def conditions(result: Plan, name: str = "workers") -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in result.statuses[name].conditions}


def after_destroy(memory: Memory, session_id: str, at: float) -> Memory:
    """The memory once the reconciler's destroy was answered 200 at ``at`` (no jitter)."""
    memory = memory.copy()
    memory.destroys[session_id] = at
    destroy_sent(memory.lingering, session_id, at, None)
    return memory


def test_a_destroyed_session_still_running_holds_its_slot_and_is_retried_with_back_off():
    """Scaled 2 -> 1, the destroy ignored, scaled back to 2: slot 2 is not refilled; the destroy goes again
    after 5 s, then 10 s; the set is DestroyFailing from the second list that still shows it Running."""
    one, two = session_set(replicas=1), session_set(replicas=2)
    sessions = [running(two, 1, "a"), running(two, 2, "b")]
    first = plan(desired(one), sessions, Memory(), NOW, options=OPTIONS)
    assert destroyed(first) == {"b": "scaled-down"}
    memory = after_destroy(first.memory, "b", NOW)
    seen_once = plan(desired(two), sessions, memory, NOW + 2, options=OPTIONS)
    assert seen_once.creates == () and seen_once.destroys == ()  # held, and not yet due again
    assert conditions(seen_once)["DestroyFailing"][0] == "False"
    seen_twice = plan(desired(two), sessions, seen_once.memory, NOW + 5, options=OPTIONS)
    assert seen_twice.creates == () and destroyed(seen_twice) == {"b": "retry"}
    status, reason, message = conditions(seen_twice)["DestroyFailing"]
    assert (status, reason) == ("True", "Ignored") and "b" in message
    memory = after_destroy(seen_twice.memory, "b", NOW + 5)
    early = plan(desired(two), sessions, memory, NOW + 14, options=OPTIONS)
    due = plan(desired(two), sessions, early.memory, NOW + 15, options=OPTIONS)
    assert early.destroys == () and destroyed(due) == {"b": "retry"}
    # Long after the expectation window, the slot is still held: never two sessions in it.
    late = plan(desired(two), sessions, due.memory, NOW + 3600, options=OPTIONS)
    assert late.creates == () and "waiting for it to go" in (late.statuses["workers"].waiting or "")
    # It has lingered: one list without it could be a partial answer; the second confirms it is gone.
    missing = plan(desired(two), sessions[:1], late.memory, NOW + 3605, options=OPTIONS)
    assert missing.creates == ()
    gone = plan(desired(two), sessions[:1], missing.memory, NOW + 3610, options=OPTIONS)
    assert [c.slot for c in gone.creates] == [2] and conditions(gone)["DestroyFailing"][0] == "False"


def test_a_destroy_never_ignored_frees_its_slot_at_once():
    """A session gone from the first list after its destroy was never seen lingering: no extra wait."""
    one, two = session_set(replicas=1), session_set(replicas=2)
    first = plan(desired(one), [running(two, 1, "a"), running(two, 2, "b")], Memory(), NOW, options=OPTIONS)
    memory = after_destroy(first.memory, "b", NOW)
    after = plan(desired(two), [running(two, 1, "a")], memory, NOW + 5, options=OPTIONS)
    assert [c.slot for c in after.creates] == [2]


def test_a_session_stuck_unknown_is_reported_once_after_the_limit():
    s = session_set(replicas=1)
    stuck = [running(s, 1, "u", status="Unknown")]
    first = plan(desired(s), stuck, Memory(), NOW, options=OPTIONS)
    assert first.stuck == () and conditions(first)["Stuck"][0] == "False"
    late = plan(desired(s), stuck, first.memory, NOW + TERMINATING_LIMIT, options=OPTIONS)
    assert [(x.session_id, x.phase) for x in late.stuck] == [("u", "Unknown")]
    assert conditions(late)["Stuck"][:2] == ("True", "PastTerminatingLimit") and late.creates == ()
    late.memory.lingering.reported.add("u")
    again = plan(desired(s), stuck, late.memory, NOW + TERMINATING_LIMIT + 30, options=OPTIONS)
    assert again.stuck == () and again.statuses["workers"].stuck == 1


def test_a_destroyed_session_stuck_unknown_keeps_its_slot_through_a_partial_list():
    """Destroyed while Unknown, then left out by one list: still held (it may come back Running)."""
    one, two = session_set(replicas=1), session_set(replicas=2)
    unknown = [running(two, 1, "a"), running(two, 2, "b", status="Unknown")]
    first = plan(desired(one), unknown, Memory(), NOW, options=OPTIONS)
    memory = after_destroy(first.memory, "b", NOW)
    still = plan(desired(two), unknown, memory, NOW + 5, options=OPTIONS)
    assert still.creates == () and conditions(still)["DestroyFailing"][0] == "False"  # Unknown: not proof
    partial = plan(desired(two), unknown[:1], still.memory, NOW + 10, options=OPTIONS)
    assert partial.creates == ()
    back = plan(desired(two), [running(two, 1, "a"), running(two, 2, "b")], partial.memory, NOW + 15,
                options=OPTIONS)
    assert back.creates == () and destroyed(back) == {"b": "retry"}
