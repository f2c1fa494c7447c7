"""The planner rules *ignored destroys* and *stuck sessions* (``controller.plan.lingering``), pure."""

from __future__ import annotations

import json

from controller.memorydoc import MemoryDocument, from_document, to_document
from controller.plan import TERMINATING_LIMIT, Memory, Plan, plan
from controller.plan.lingering import destroy_failed, destroy_sent, retry_now
from controller.plan.memory import DestroyRetry
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


def test_a_destroyed_session_a_lossy_list_leaves_out_keeps_its_slot_until_a_trusted_list_confirms():
    """Scaled 3 -> 2 then back to 3: the next answer is partial (it leaves out b too, which is live), so it
    cannot say whether c is gone or its destroy was ignored: slot 3 stays held (it used to be refilled,
    beside c if the destroy was ignored). The first trusted answer without c frees it."""
    two, three = session_set(replicas=2), session_set(replicas=3)
    a, b, c = running(three, 1, "a"), running(three, 2, "b"), running(three, 3, "c")
    first = plan(desired(two), [a, b, c], Memory(), NOW, options=OPTIONS)
    [destroy] = first.destroys
    assert destroy.session_id == "c" and destroy.slot_of is not None
    memory = first.memory.copy()
    memory.destroys["c"] = NOW
    destroy_sent(memory.lingering, "c", NOW, None, destroy.slot_of)
    lossy = plan(desired(three), [a], memory, NOW + 2, options=OPTIONS)
    assert 3 not in [create.slot for create in lossy.creates]
    back = plan(desired(three), [a, b], lossy.memory, NOW + 4, options=OPTIONS)  # b back: this one confirms nothing
    assert back.creates == ()
    trusted = plan(desired(three), [a, b], back.memory, NOW + 6, options=OPTIONS)
    assert [create.slot for create in trusted.creates] == [3]


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


# -- failing destroys ----------------------------------------------------------------------------------

ERROR = "destroy failed (HTTP 500): failed to delete session: the Kubernetes API did not answer in time"


def after_failure(memory: Memory, session_id: str, at: float, error: str = ERROR) -> Memory:
    """The memory once the reconciler's destroy failed at ``at`` (no jitter)."""
    memory = memory.copy()
    destroy_failed(memory.lingering, session_id, at, None, error)
    return memory


def test_a_failed_destroy_is_not_planned_again_before_its_back_off_ends():
    """Scaled 3 -> 1 while every destroy fails: each surplus session is destroyed again after 5 s, 10 s, 20 s...
    never once per pass; the set says DestroyFailing (Failed, the ids, the service's message) and is not Ready."""
    three, one = session_set(replicas=3), session_set(replicas=1)
    sessions = [running(three, 1, "a"), running(three, 2, "b"), running(three, 3, "c")]
    result = plan(desired(one), sessions, Memory(), NOW, options=OPTIONS)
    assert destroyed(result) == {"b": "scaled-down", "c": "scaled-down"}
    sent = {"b": [NOW], "c": [NOW]}
    memory = after_failure(after_failure(result.memory, "b", NOW), "c", NOW)
    for second in range(1, 80):
        result = plan(desired(one), sessions, memory, NOW + second, options=OPTIONS)
        memory = result.memory
        for sid in destroyed(result):
            sent[sid].append(NOW + second)
            memory = after_failure(memory, sid, NOW + second)
    assert sent["b"] == sent["c"] == [NOW, NOW + 5, NOW + 15, NOW + 35, NOW + 75]
    failing = conditions(result)["DestroyFailing"]
    assert failing[:2] == ("True", "Failed") and "b, c" in failing[2] and ERROR in failing[2]
    assert conditions(result)["Ready"][:2] == ("False", "DestroyFailing")
    assert result.statuses["workers"].destroy_failing == 2 and result.creates == ()


def test_a_failed_destroy_keeps_its_back_off_through_a_pass_that_does_not_want_it_and_a_partial_list():
    """An unsettled manifest (the set missing for a pass) or one list leaving the session out must not start the
    back-off afresh; two trusted lists without it mean it is gone, and the memory forgets it."""
    two, one = session_set(replicas=2), session_set(replicas=1)
    sessions = [running(two, 1, "a"), running(two, 2, "b")]
    first = plan(desired(one), sessions, Memory(), NOW, options=OPTIONS)
    memory = after_failure(after_failure(first.memory, "b", NOW), "b", NOW + 5)  # two failures: next at +15
    unsettled = plan(desired(), sessions, memory, NOW + 6, options=OPTIONS)
    partial = plan(desired(one), sessions[:1], unsettled.memory, NOW + 7, options=OPTIONS)
    early = plan(desired(one), sessions, partial.memory, NOW + 14, options=OPTIONS)
    assert early.destroys == () and conditions(early)["DestroyFailing"][1] == "Failed"
    due = plan(desired(one), sessions, early.memory, NOW + 15, options=OPTIONS)
    assert destroyed(due) == {"b": "scaled-down"}
    memory = due.memory
    for second in (20, 25, 30):  # the first list leaving a live session out is lossy: it confirms nothing
        memory = plan(desired(one), sessions[:1], memory, NOW + second, options=OPTIONS).memory
    forgotten = plan(desired(one), sessions[:1], memory, NOW + 35, options=OPTIONS)
    assert "b" not in forgotten.memory.lingering.retries
    assert conditions(forgotten)["DestroyFailing"][0] == "False" and conditions(forgotten)["Ready"][0] == "True"


def test_one_back_off_per_session_whether_its_destroys_fail_or_are_ignored_and_sighup_retries_at_once():
    """A destroy answered after failures clears the message, but the attempts count on: a service that fails
    some destroys and ignores the others still sees them slow down."""
    memory = after_failure(after_failure(Memory(), "b", NOW), "b", NOW + 5)
    assert memory.lingering.retries["b"].attempts == 2 and memory.lingering.retries["b"].retry_at == NOW + 15
    retry_now(memory.lingering)
    assert memory.lingering.retries["b"].retry_at == 0.0
    destroy_sent(memory.lingering, "b", NOW + 16, None)
    assert memory.lingering.retries["b"] == DestroyRetry(3, NOW + 36)


def test_a_failing_destroy_survives_the_memory_document():
    """The retry time and the service's message are rows of the memory document: a restart keeps backing off."""
    memory = after_failure(Memory(), "b", NOW)
    document = MemoryDocument.model_validate(json.loads(json.dumps(to_document(memory, 0))))
    assert from_document(document).lingering.retries["b"] == DestroyRetry(1, NOW + 5, error=ERROR)
